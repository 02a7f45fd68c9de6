#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "medscreen/core.h"

ms_status ms_file_read_all(const char *path, uint64_t max_bytes, uint8_t **out_data,
                           size_t *out_size, ms_err *err) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return ms_fail(err, MS_EIO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *data = NULL;
    ms_status st;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        st = ms_fail(err, MS_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = ms_fail(err, MS_EIO, "%s: not a regular file", path);
        goto fail;
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > max_bytes || (uint64_t)sb.st_size > SIZE_MAX) {
        st = ms_fail(err, MS_ELIMIT, "%s: file is %lld bytes, limit is %llu", path,
                     (long long)sb.st_size, (unsigned long long)max_bytes);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    data = ms_malloc(size);
    if (data == NULL) {
        st = ms_fail(err, MS_ENOMEM, "%s: cannot allocate %zu bytes", path, size);
        goto fail;
    }
    if (size && fread(data, 1, size, f) != size) {
        st = ms_fail(err, MS_EIO, "%s: short read (file changed while reading?)", path);
        goto fail;
    }
    fclose(f);
    *out_data = data;
    *out_size = size;
    return MS_OK;
fail:
    ms_free(data);
    fclose(f);
    return st;
}

static bool write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (w == 0) {
            errno = EIO;
            return false;
        }
        p += (size_t)w;
        n -= (size_t)w;
    }
    return true;
}

/* Best effort: makes the rename itself durable. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    int fd;
    if (slash == NULL) {
        fd = open(".", O_RDONLY);
    } else if (slash == path) {
        fd = open("/", O_RDONLY);
    } else {
        size_t n = (size_t)(slash - path);
        char *dir = ms_malloc(n + 1);
        if (dir == NULL) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
        fd = open(dir, O_RDONLY);
        ms_free(dir);
    }
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

ms_status ms_file_write_atomic(const char *path, const void *data, size_t size, ms_err *err) {
    if (path == NULL || path[0] == '\0')
        return ms_fail(err, MS_EINVAL, "ms_file_write_atomic: NULL or empty path");
    /* <path>.tmp-<pid>-<n>, created exclusively with 0666 so the umask applies as for any new
     * file; n moves on when another writer (thread or process) holds the name. */
    size_t cap = strlen(path) + 48;
    char *tmp = ms_malloc(cap);
    if (tmp == NULL) return ms_fail(err, MS_ENOMEM, "%s: out of memory", path);
    int fd = -1;
    for (unsigned n = 0; n < 1000 && fd < 0; n++) {
        snprintf(tmp, cap, "%s.tmp-%ld-%u", path, (long)getpid(), n);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    ms_status st;
    if (fd < 0) {
        st = ms_fail(err, MS_EIO, "%s: cannot create a temporary file %s: %s", path, tmp,
                     strerror(errno));
        ms_free(tmp);
        return st;
    }
    const char *what = "write";
    bool ok = write_all(fd, data, size);
    if (ok && fsync(fd) != 0) {
        ok = false;
        what = "fsync";
    }
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        what = "close";
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        what = "rename";
        saved = errno;
    }
    if (!ok) {
        (void)unlink(tmp);
        st = ms_fail(err, MS_EIO, "%s: cannot write (%s failed: %s)", path, what, strerror(saved));
        ms_free(tmp);
        return st;
    }
    ms_free(tmp);
    sync_parent_dir(path);
    return MS_OK;
}
