/* Core helpers shared by every layer: checked arithmetic, a bounded reader over untrusted
 * bytes, strict number parsing and whole-file reading under a limit. */
#ifndef MEDSCREEN_CORE_H
#define MEDSCREEN_CORE_H

#include "medscreen/medscreen.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline bool ms_mul_size(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return false;
    *out = a * b;
    return true;
}

static inline bool ms_add_size(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return false;
    *out = a + b;
    return true;
}

static inline bool ms_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b != 0 && a > UINT64_MAX / b) return false;
    *out = a * b;
    return true;
}

/* Bounded cursor: never add a file-derived offset to a raw pointer. */
typedef struct ms_rd {
    const uint8_t *p;
    size_t left;
} ms_rd;

static inline ms_rd ms_rd_init(const uint8_t *p, size_t n) {
    ms_rd rd = {p, n};
    return rd;
}
static inline bool ms_rd_skip(ms_rd *rd, size_t n) {
    if (rd->left < n) return false;
    rd->p += n;
    rd->left -= n;
    return true;
}
static inline bool ms_rd_bytes(ms_rd *rd, const uint8_t **out, size_t n) {
    if (rd->left < n) return false;
    *out = rd->p;
    rd->p += n;
    rd->left -= n;
    return true;
}
static inline bool ms_rd_u16le(ms_rd *rd, uint16_t *v) {
    if (rd->left < 2) return false;
    *v = (uint16_t)(rd->p[0] | rd->p[1] << 8);
    rd->p += 2;
    rd->left -= 2;
    return true;
}
static inline bool ms_rd_u32le(ms_rd *rd, uint32_t *v) {
    if (rd->left < 4) return false;
    *v = (uint32_t)rd->p[0] | (uint32_t)rd->p[1] << 8 | (uint32_t)rd->p[2] << 16 |
         (uint32_t)rd->p[3] << 24;
    rd->p += 4;
    rd->left -= 4;
    return true;
}

/* Parses a whole decimal string into [min, max]. Leading/trailing spaces are not accepted. */
bool ms_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);
bool ms_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parses a whole finite decimal floating-point string (DICOM DS style; surrounding spaces ok). */
bool ms_parse_double(const char *s, double *out);

/* Reads a whole regular file, refusing files over max_bytes before allocating.
 * On success *out_data (ms_malloc'd, caller frees with ms_free) and *out_size are set.
 * Errors: MS_EIO (missing, unreadable, not a regular file), MS_ELIMIT, MS_ENOMEM. */
ms_status ms_file_read_all(const char *path, uint64_t max_bytes, uint8_t **out_data,
                           size_t *out_size, ms_err *err);

/* Writes size bytes to path atomically: an exclusively created temp file beside it, fsync,
 * rename, then a best-effort fsync of the directory. On failure the temp file is removed and
 * an existing file at path is left untouched. Errors: MS_EINVAL, MS_EIO, MS_ENOMEM. */
ms_status ms_file_write_atomic(const char *path, const void *data, size_t size, ms_err *err);

/* SHA-256 (FIPS 180-4). Streaming: init, update any number of times, final. */
typedef struct ms_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t fill;
} ms_sha256;
void ms_sha256_init(ms_sha256 *s);
void ms_sha256_update(ms_sha256 *s, const void *data, size_t n);
void ms_sha256_final(ms_sha256 *s, uint8_t out[32]);
/* One call: the lowercase hex digest of n bytes, NUL-terminated. */
void ms_sha256_hex(const void *data, size_t n, char out[65]);

/* A fixed pool of worker threads for parallel loops (one per inference session).
 * ms_pool_run calls fn(ctx, task, worker) once for every task in [0, tasks), on up to
 * ms_pool_threads() threads of which the caller is worker 0, and returns when all are done;
 * worker is in [0, threads), so a task may use a per-worker scratch slot. Tasks run in no
 * particular order or thread. One run at a time per pool (not thread-safe for one pool);
 * NULL runs the tasks inline. ms_pool_create errors: MS_EINVAL (threads outside 1 to
 * MS_POOL_MAX_THREADS), MS_ENOMEM (also when a thread cannot start). */
enum { MS_POOL_MAX_THREADS = 256 };
typedef struct ms_pool ms_pool;
typedef void (*ms_pool_fn)(void *ctx, size_t task, int32_t worker);
ms_status ms_pool_create(int32_t threads, ms_pool **out, ms_err *err);
void ms_pool_destroy(ms_pool *p); /* NULL is a no-op */
int32_t ms_pool_threads(const ms_pool *p); /* 1 for NULL */
void ms_pool_run(ms_pool *p, size_t tasks, ms_pool_fn fn, void *ctx);

/* Bounded copy that always terminates dst (dst_size > 0). Returns false if truncated. */
bool ms_str_copy(char *dst, size_t dst_size, const char *src);

#ifdef __cplusplus
}
#endif
#endif
