#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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
