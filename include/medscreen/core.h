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

/* Bounded copy that always terminates dst (dst_size > 0). Returns false if truncated. */
bool ms_str_copy(char *dst, size_t dst_size, const char *src);

#ifdef __cplusplus
}
#endif
#endif
