#define _XOPEN_SOURCE 700 /* realpath */
/* Input lists for batch commands (scan, calibrate): files, folders walked recursively in a
 * fixed order, and path lists on stdin. */
#include "inputs.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "medscreen/core.h"

void cli_inputs_free(cli_inputs *in) {
    for (size_t i = 0; i < in->n; i++) {
        free(in->items[i].path);
        free(in->items[i].rel);
    }
    free(in->items);
    memset(in, 0, sizeof *in);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static bool push(cli_inputs *in, const char *path, const char *rel) {
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 64;
        cli_input *items = realloc(in->items, cap * sizeof *items);
        if (!items) return false;
        in->items = items;
        in->cap = cap;
    }
    char *p = dup_str(path), *r = dup_str(rel);
    if (!p || !r) {
        free(p);
        free(r);
        return false;
    }
    in->items[in->n].path = p;
    in->items[in->n].rel = r;
    in->n++;
    return true;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Entries of one directory, sorted bytewise so every machine walks the same order. Hidden
 * entries (".name") are skipped: PACS exports and editors leave lock and index files there. */
static int list_dir(const char *dir, char ***names_out, size_t *count_out) {
    DIR *d = opendir(dir);
    if (!d) return errno ? errno : EIO;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            char **t = realloc(names, ncap * sizeof *t);
            if (!t) {
                rc = ENOMEM;
                break;
            }
            names = t;
            cap = ncap;
        }
        if (!(names[n] = dup_str(e->d_name))) {
            rc = ENOMEM;
            break;
        }
        n++;
    }
    if (!rc && errno) rc = errno;
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        return rc;
    }
    if (n) qsort(names, n, sizeof *names, cmp_name);
    *names_out = names;
    *count_out = n;
    return 0;
}

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    bool slash = la > 0 && a[la - 1] != '/';
    char *p = malloc(la + slash + lb + 1);
    if (!p) return NULL;
    memcpy(p, a, la);
    if (slash) p[la] = '/';
    memcpy(p + la + slash, b, lb + 1);
    return p;
}

/* Walks dir depth-first. Symbolic links to files are followed; links to directories are
 * not (they could loop), and are reported. Unreadable subfolders are reported and skipped:
 * one bad folder must not stop a batch. */
static int walk(cli_inputs *in, const char *dir, const char *rel, int depth) {
    if (depth > 64) {
        cli_diag("%s: folders nested deeper than 64 levels; not descending", dir);
        in->walk_errors++;
        return 0;
    }
    char **names = NULL;
    size_t n = 0;
    int rc = list_dir(dir, &names, &n);
    if (rc == ENOMEM) return -1;
    if (rc) {
        cli_diag("%s: cannot read folder: %s", dir, strerror(rc));
        in->walk_errors++;
        return 0;
    }
    int out = 0;
    for (size_t i = 0; i < n && out == 0; i++) {
        char *path = join(dir, names[i]);
        char *r = join(rel, names[i]);
        if (!path || !r) {
            free(path);
            free(r);
            out = -1;
            break;
        }
        struct stat lsb, sb;
        if (lstat(path, &lsb) != 0) {
            cli_diag("%s: %s", path, strerror(errno));
            in->walk_errors++;
        } else if (S_ISLNK(lsb.st_mode) && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            cli_diag("%s: link to a folder; not followed", path);
            in->walk_errors++;
        } else if (S_ISDIR(lsb.st_mode)) {
            out = walk(in, path, r, depth + 1);
        } else if (!push(in, path, r)) {
            out = -1;
        }
        free(path);
        free(r);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return out;
}

/* The folder's own name (trailing slashes ignored; "." and ".." resolved), so that a walked
 * file's name does not depend on where the folder lives or how it was spelt. */
static char *root_name(const char *dir) {
    char *real = NULL;
    const char *d = dir;
    size_t len = strlen(d);
    while (len > 1 && d[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && d[start - 1] != '/') start--;
    if ((len - start == 1 && d[start] == '.') ||
        (len - start == 2 && d[start] == '.' && d[start + 1] == '.') || len - start == 0) {
        real = realpath(dir, NULL);
        if (!real) return dup_str("root");
        d = real;
        len = strlen(d);
        start = len;
        while (start > 0 && d[start - 1] != '/') start--;
        if (start == len) {
            free(real);
            return dup_str("root");
        }
    }
    char *out = malloc(len - start + 1);
    if (out) {
        memcpy(out, d + start, len - start);
        out[len - start] = '\0';
    }
    free(real);
    return out;
}

int cli_inputs_add(cli_inputs *in, const char *arg) {
    struct stat sb;
    if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char *root = root_name(arg);
        if (!root) return -1;
        int rc = walk(in, arg, root, 0);
        free(root);
        return rc;
    }
    /* Missing files and other errors are reported per file by the command itself. */
    const char *rel = arg;
    while (rel[0] == '.' && rel[1] == '/') rel += 2;
    return push(in, arg, rel[0] ? rel : arg) ? 0 : -1;
}

int cli_inputs_read_list(cli_inputs *in, FILE *f, bool nul_separated) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getdelim(&line, &cap, nul_separated ? '\0' : '\n', f)) != -1) {
        if (len > 0 && line[len - 1] == (nul_separated ? '\0' : '\n')) line[--len] = '\0';
        if (!nul_separated && len > 0 && line[len - 1] == '\r') line[--len] = '\0';
        if (len == 0) continue;
        if ((size_t)len != strlen(line)) {
            cli_diag("stdin: a path contains a NUL byte (use -0 for NUL-separated lists)");
            in->walk_errors++;
            continue;
        }
        /* A listed folder is walked like one on the command line. */
        if ((rc = cli_inputs_add(in, line)) != 0) break;
    }
    if (rc == 0 && ferror(f)) {
        cli_diag("stdin: read error: %s", strerror(errno));
        in->walk_errors++;
    }
    free(line);
    return rc;
}
