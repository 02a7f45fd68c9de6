/* Replays inputs through LLVMFuzzerTestOneInput without libFuzzer, so ctest runs every seed and
 * every committed crasher in the plain and sanitizer builds.
 * Usage: replay_<target> PATH...   (files, or directories whose files are replayed in name
 * order; names starting with '.' and README* are skipped). A missing path is an error. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_BYTES (64u << 20)

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (f == NULL || fstat(fileno(f), &sb) != 0) {
        fprintf(stderr, "replay: %s: cannot open\n", path);
        if (f) fclose(f);
        return 1;
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > REPLAY_MAX_BYTES) {
        fprintf(stderr, "replay: %s: larger than %u bytes\n", path, REPLAY_MAX_BYTES);
        fclose(f);
        return 1;
    }
    size_t n = (size_t)sb.st_size;
    /* Exactly n bytes, so ASan sees any read past the end of the input. */
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL || (n && fread(buf, 1, n, f) != n)) {
        fprintf(stderr, "replay: %s: %s\n", path, buf ? "short read" : "out of memory");
        free(buf);
        fclose(f);
        return 1;
    }
    fclose(f);
    printf("replay: %s (%zu bytes)\n", path, n);
    fflush(stdout);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int replay_dir(const char *dir, unsigned *count) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: %s: cannot open directory\n", dir);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (grown == NULL) {
                rc = 1;
                break;
            }
            names = grown;
        }
        size_t len = strlen(dir) + 1 + strlen(e->d_name) + 1;
        names[n] = malloc(len);
        if (names[n] == NULL) {
            rc = 1;
            break;
        }
        snprintf(names[n], len, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (rc == 0 && n > 1) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct stat sb;
        if (stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
            rc |= replay_file(names[i]);
            (*count)++;
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    int rc = 0;
    unsigned count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
            rc = 1;
        } else if (S_ISDIR(sb.st_mode)) {
            rc |= replay_dir(argv[i], &count);
        } else {
            rc |= replay_file(argv[i]);
            count++;
        }
    }
    printf("replay: %u input%s, %s\n", count, count == 1 ? "" : "s", rc ? "with errors" : "ok");
    return rc;
}
