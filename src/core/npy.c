/* NumPy .npy reader and writer for float arrays (see include/medscreen/npy.h).
 * Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "medscreen/core.h"
#include "medscreen/npy.h"

#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
/* numpy >= 1.23 leaves room after the dict so the first dimension can grow in place. */
#define NPY_GROWTH_AXIS_MAX_DIGITS 21
#define NPY_STR_MAX 32 /* longest key or descr string we read */

static const uint8_t npy_magic[NPY_MAGIC_LEN] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) &&                                 \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NPY_HOST_LE 1
#else
#define NPY_HOST_LE 0
#endif

/* ---- header dict parsing ----
 * The header is a Python dict literal. We accept the subset numpy's reader accepts for the
 * arrays we support: string keys in ' or " quotes without escapes, True/False, tuples of
 * non-negative decimal ints, whitespace anywhere between tokens, trailing commas. */

typedef struct npy_header {
    char descr[NPY_STR_MAX + 1];
    bool fortran_order;
    int32_t ndim;
    int64_t shape[MS_NPY_MAX_DIMS];
} npy_header;

static bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void skip_ws(ms_rd *rd) {
    while (rd->left > 0 && is_ws(rd->p[0])) ms_rd_skip(rd, 1);
}

/* Skips whitespace, then consumes c if it is next. */
static bool eat(ms_rd *rd, char c) {
    skip_ws(rd);
    if (rd->left == 0 || rd->p[0] != (uint8_t)c) return false;
    ms_rd_skip(rd, 1);
    return true;
}

/* Skips whitespace, then consumes the bare word w if it is next and not followed by another
 * identifier character. */
static bool eat_word(ms_rd *rd, const char *w) {
    skip_ws(rd);
    size_t n = strlen(w);
    if (rd->left < n || memcmp(rd->p, w, n) != 0) return false;
    if (rd->left > n) {
        uint8_t c = rd->p[n];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
            return false;
    }
    ms_rd_skip(rd, n);
    return true;
}

/* What the cursor points at, for messages: up to 16 printable characters. */
static int near_len(const ms_rd *rd) { return (int)(rd->left < 16 ? rd->left : 16); }
#define NEAR(rd) near_len(rd), (const char *)(rd)->p

static ms_status parse_string(ms_rd *rd, const char *name, const char *what, char *out,
                              ms_err *err) {
    skip_ws(rd);
    if (rd->left == 0 || (rd->p[0] != '\'' && rd->p[0] != '"'))
        return ms_fail(err, MS_EFORMAT, "%s: .npy header: expected a quoted %s near \"%.*s\"", name,
                       what, NEAR(rd));
    uint8_t q = rd->p[0];
    ms_rd_skip(rd, 1);
    size_t n = 0;
    for (;;) {
        if (rd->left == 0)
            return ms_fail(err, MS_EFORMAT, "%s: .npy header: unterminated string", name);
        uint8_t c = rd->p[0];
        ms_rd_skip(rd, 1);
        if (c == q) break;
        if (c == '\\' || c == '\n' || c == '\r')
            return ms_fail(err, MS_EFORMAT, "%s: .npy header: escape or line break inside a string",
                           name);
        if (n == NPY_STR_MAX)
            return ms_fail(err, MS_EFORMAT, "%s: .npy header: %s longer than %d characters", name,
                           what, NPY_STR_MAX);
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return MS_OK;
}

static ms_status parse_bool(ms_rd *rd, const char *name, bool *out, ms_err *err) {
    if (eat_word(rd, "True")) {
        *out = true;
        return MS_OK;
    }
    if (eat_word(rd, "False")) {
        *out = false;
        return MS_OK;
    }
    return ms_fail(err, MS_EFORMAT,
                   "%s: .npy header: fortran_order must be True or False, found \"%.*s\"", name,
                   NEAR(rd));
}

/* A Python int literal as numpy writes it: decimal digits, no sign, no leading zeros. */
static ms_status parse_dim(ms_rd *rd, const char *name, int32_t index, int64_t *out, ms_err *err) {
    skip_ws(rd);
    if (rd->left > 0 && rd->p[0] == '-')
        return ms_fail(err, MS_EFORMAT, "%s: .npy header: shape[%d] is negative", name, (int)index);
    if (rd->left == 0 || rd->p[0] < '0' || rd->p[0] > '9')
        return ms_fail(err, MS_EFORMAT,
                       "%s: .npy header: shape[%d] is not an integer near \"%.*s\"", name,
                       (int)index, NEAR(rd));
    if (rd->p[0] == '0' && rd->left > 1 && rd->p[1] >= '0' && rd->p[1] <= '9')
        return ms_fail(err, MS_EFORMAT, "%s: .npy header: shape[%d] has a leading zero", name,
                       (int)index);
    uint64_t v = 0;
    while (rd->left > 0 && rd->p[0] >= '0' && rd->p[0] <= '9') {
        v = v * 10 + (uint64_t)(rd->p[0] - '0'); /* v <= MS_NPY_MAX_DIM here: no overflow */
        ms_rd_skip(rd, 1);
        if (v > (uint64_t)MS_NPY_MAX_DIM)
            return ms_fail(err, MS_ELIMIT, "%s: .npy shape[%d] is larger than %lld", name,
                           (int)index, (long long)MS_NPY_MAX_DIM);
    }
    if (rd->left > 0 &&
        ((rd->p[0] >= 'a' && rd->p[0] <= 'z') || (rd->p[0] >= 'A' && rd->p[0] <= 'Z') ||
         rd->p[0] == '_' || rd->p[0] == '.'))
        return ms_fail(err, MS_EFORMAT, "%s: .npy header: shape[%d] is not an integer", name,
                       (int)index);
    *out = (int64_t)v;
    return MS_OK;
}

/* '(' [dim (',' dim)* [',']] ')'; a single dimension needs its comma, as in Python. */
static ms_status parse_shape(ms_rd *rd, const char *name, npy_header *h, ms_err *err) {
    if (!eat(rd, '('))
        return ms_fail(err, MS_EFORMAT, "%s: .npy header: shape must be a tuple, found \"%.*s\"",
                       name, NEAR(rd));
    h->ndim = 0;
    if (eat(rd, ')')) return MS_OK;
    bool comma = false;
    for (;;) {
        if (h->ndim == MS_NPY_MAX_DIMS)
            return ms_fail(err, MS_EUNSUPPORTED, "%s: .npy array has more than %d dimensions", name,
                           MS_NPY_MAX_DIMS);
        ms_status st = parse_dim(rd, name, h->ndim, &h->shape[h->ndim], err);
        if (st != MS_OK) return st;
        h->ndim++;
        comma = eat(rd, ',');
        if (eat(rd, ')')) break;
        if (!comma)
            return ms_fail(err, MS_EFORMAT,
                           "%s: .npy header: expected ',' or ')' in shape near \"%.*s\"", name,
                           NEAR(rd));
    }
    if (h->ndim == 1 && !comma)
        return ms_fail(err, MS_EFORMAT,
                       "%s: .npy header: shape \"(n)\" is not a tuple (numpy writes \"(n,)\")",
                       name);
    return MS_OK;
}

static ms_status parse_header(const uint8_t *text, size_t len, const char *name, npy_header *h,
                              ms_err *err) {
    for (size_t i = 0; i < len; i++) {
        if ((text[i] < 0x20 || text[i] > 0x7e) && !is_ws(text[i]))
            return ms_fail(err, MS_EFORMAT,
                           "%s: .npy header: byte 0x%02x at offset %zu is not printable ASCII",
                           name, text[i], i);
    }
    ms_rd rd = ms_rd_init(text, len);
    if (!eat(&rd, '{'))
        return ms_fail(err, MS_EFORMAT, "%s: .npy header is not a dict: \"%.*s\"", name, NEAR(&rd));
    bool have_descr = false, have_fortran = false, have_shape = false;
    ms_status st;
    for (;;) {
        if (eat(&rd, '}')) break;
        char key[NPY_STR_MAX + 1];
        if ((st = parse_string(&rd, name, "key", key, err)) != MS_OK) return st;
        if (!eat(&rd, ':'))
            return ms_fail(err, MS_EFORMAT, "%s: .npy header: expected ':' after '%s'", name, key);
        bool *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &have_descr;
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &have_fortran;
        } else if (strcmp(key, "shape") == 0) {
            seen = &have_shape;
        } else {
            return ms_fail(err, MS_EFORMAT, "%s: .npy header: unexpected key '%s'", name, key);
        }
        if (*seen)
            return ms_fail(err, MS_EFORMAT, "%s: .npy header: duplicate key '%s'", name, key);
        *seen = true;
        if (seen == &have_descr) {
            skip_ws(&rd);
            if (rd.left > 0 && (rd.p[0] == '[' || rd.p[0] == '{'))
                return ms_fail(err, MS_EUNSUPPORTED,
                               "%s: .npy dtype is structured (record fields); only '<f4' and "
                               "'<f8' arrays are supported",
                               name);
            st = parse_string(&rd, name, "descr", h->descr, err);
        } else if (seen == &have_fortran) {
            st = parse_bool(&rd, name, &h->fortran_order, err);
        } else {
            st = parse_shape(&rd, name, h, err);
        }
        if (st != MS_OK) return st;
        if (eat(&rd, '}')) break;
        if (!eat(&rd, ','))
            return ms_fail(err, MS_EFORMAT, "%s: .npy header: expected ',' or '}' near \"%.*s\"",
                           name, NEAR(&rd));
    }
    skip_ws(&rd);
    if (rd.left != 0)
        return ms_fail(err, MS_EFORMAT, "%s: .npy header: unexpected \"%.*s\" after the dict", name,
                       NEAR(&rd));
    if (!have_descr || !have_fortran || !have_shape)
        return ms_fail(err, MS_EFORMAT, "%s: .npy header lacks the key '%s'", name,
                       !have_descr     ? "descr"
                       : !have_fortran ? "fortran_order"
                                       : "shape");
    return MS_OK;
}

/* Decides the dtype: itemsize 4 or 8, or a message saying why not. */
static ms_status check_descr(const char *descr, const char *name, size_t *itemsize, ms_err *err) {
    if (strcmp(descr, "<f4") == 0) {
        *itemsize = 4;
        return MS_OK;
    }
    if (strcmp(descr, "<f8") == 0) {
        *itemsize = 8;
        return MS_OK;
    }
    const char *why = "only float32 '<f4' and float64 '<f8' are supported";
    if (descr[0] == '>')
        why = "big-endian data is not supported (save with dtype '<f4')";
    else if (strcmp(descr, "|O") == 0)
        why = "object arrays (pickles) are not supported";
    else if (descr[0] == '\0')
        why = "the dtype is empty";
    return ms_fail(err, MS_EUNSUPPORTED, "%s: .npy dtype '%s': %s", name, descr, why);
}

static void format_shape(const int64_t *shape, int32_t ndim, char *buf, size_t cap) {
    int w = snprintf(buf, cap, "(");
    size_t n = w > 0 ? (size_t)w : 0;
    for (int32_t i = 0; i < ndim && n < cap; i++) {
        w = snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (w < 0) return;
        n += (size_t)w;
    }
    if (n < cap) snprintf(buf + n, cap - n, ndim == 1 ? ",)" : ")");
}

static uint32_t rd32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

ms_status ms_npy_decode(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                        ms_npy **out, ms_err *err) {
    if (name == NULL) name = "<memory>";
    if ((data == NULL && size != 0) || lim == NULL || out == NULL)
        return ms_fail(err, MS_EINVAL, "%s: ms_npy_decode: NULL argument", name);
    if ((uint64_t)size > lim->max_file_bytes)
        return ms_fail(err, MS_ELIMIT, "%s: .npy file is %zu bytes, limit is %llu", name, size,
                       (unsigned long long)lim->max_file_bytes);

    ms_rd rd = ms_rd_init(data, size);
    const uint8_t *ver;
    size_t have = size < NPY_MAGIC_LEN ? size : NPY_MAGIC_LEN;
    if (have == 0 || memcmp(data, npy_magic, have) != 0)
        return ms_fail(err, MS_EFORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    if (!ms_rd_skip(&rd, NPY_MAGIC_LEN) || !ms_rd_bytes(&rd, &ver, 2))
        return ms_fail(err, MS_EFORMAT, "%s: truncated .npy file: %zu bytes, no version", name,
                       size);
    if (ver[0] < 1 || ver[0] > 3 || ver[1] != 0)
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: .npy format version %u.%u; versions 1.0, 2.0 and 3.0 are supported",
                       name, ver[0], ver[1]);
    uint32_t hlen;
    if (ver[0] == 1) {
        uint16_t h16;
        if (!ms_rd_u16le(&rd, &h16))
            return ms_fail(err, MS_EFORMAT, "%s: truncated .npy file: no header length", name);
        hlen = h16;
    } else if (!ms_rd_u32le(&rd, &hlen)) {
        return ms_fail(err, MS_EFORMAT, "%s: truncated .npy file: no header length", name);
    }
    if (hlen > MS_NPY_MAX_HEADER)
        return ms_fail(err, MS_ELIMIT, "%s: .npy header is %u bytes, limit is %u", name, hlen,
                       MS_NPY_MAX_HEADER);
    const uint8_t *text;
    if (!ms_rd_bytes(&rd, &text, hlen))
        return ms_fail(err, MS_EFORMAT,
                       "%s: truncated .npy file: header declares %u bytes, %zu present", name, hlen,
                       rd.left);

    npy_header h;
    memset(&h, 0, sizeof h);
    ms_status st = parse_header(text, hlen, name, &h, err);
    if (st != MS_OK) return st;
    size_t itemsize = 0;
    if ((st = check_descr(h.descr, name, &itemsize, err)) != MS_OK) return st;
    if (h.fortran_order)
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: .npy array is in Fortran (column-major) order; only C order is "
                       "supported (save np.ascontiguousarray(x))",
                       name);

    char shape_str[8 * 24];
    format_shape(h.shape, h.ndim, shape_str, sizeof shape_str);
    uint64_t count = 1, out_bytes, payload;
    for (int32_t i = 0; i < h.ndim; i++) {
        if (!ms_mul_u64(count, (uint64_t)h.shape[i], &count))
            return ms_fail(err, MS_EOVERFLOW, "%s: .npy shape %s: element count overflows", name,
                           shape_str);
    }
    if (!ms_mul_u64(count, sizeof(float), &out_bytes) || !ms_mul_u64(count, itemsize, &payload))
        return ms_fail(err, MS_EOVERFLOW, "%s: .npy shape %s: byte size overflows", name,
                       shape_str);
    if (out_bytes > lim->max_decoded_bytes || out_bytes > SIZE_MAX)
        return ms_fail(err, MS_ELIMIT, "%s: .npy shape %s needs %llu bytes, limit is %llu", name,
                       shape_str, (unsigned long long)out_bytes,
                       (unsigned long long)lim->max_decoded_bytes);
    if (payload != (uint64_t)rd.left)
        return ms_fail(err, MS_EFORMAT,
                       "%s: .npy payload is %zu bytes, shape %s of '%s' needs %llu (%s)", name,
                       rd.left, shape_str, h.descr, (unsigned long long)payload,
                       payload > (uint64_t)rd.left ? "truncated" : "trailing data");

    size_t n = (size_t)count;
    ms_npy *arr = ms_calloc(1, sizeof *arr);
    float *vals = ms_malloc(n ? (size_t)out_bytes : sizeof(float));
    if (arr == NULL || vals == NULL) {
        ms_free(arr);
        ms_free(vals);
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate %llu bytes for a .npy array", name,
                       (unsigned long long)out_bytes);
    }
    const uint8_t *src = rd.p;
    if (itemsize == 4) {
        if (NPY_HOST_LE) {
            if (n) memcpy(vals, src, n * 4);
        } else {
            for (size_t i = 0; i < n; i++) {
                uint32_t u = rd32le(src + 4 * i);
                memcpy(&vals[i], &u, 4);
            }
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint64_t u = (uint64_t)rd32le(src + 8 * i) | (uint64_t)rd32le(src + 8 * i + 4) << 32;
            double d;
            memcpy(&d, &u, 8);
            /* Refuse instead of rounding to infinity (and never convert out of range). */
            if (isfinite(d) && fabs(d) > (double)FLT_MAX) {
                ms_free(vals);
                ms_free(arr);
                return ms_fail(err, MS_EFORMAT,
                               "%s: .npy float64 value %g at index %zu is outside float32 range",
                               name, d, i);
            }
            vals[i] = (float)d;
        }
    }
    arr->ndim = h.ndim;
    for (int32_t i = 0; i < h.ndim; i++) arr->shape[i] = h.shape[i];
    arr->data = vals;
    arr->count = n;
    *out = arr;
    return MS_OK;
}

ms_status ms_npy_load(const char *path, const ms_limits *lim, ms_npy **out, ms_err *err) {
    if (path == NULL || lim == NULL || out == NULL)
        return ms_fail(err, MS_EINVAL, "ms_npy_load: NULL argument");
    uint8_t *data = NULL;
    size_t size = 0;
    ms_status st = ms_file_read_all(path, lim->max_file_bytes, &data, &size, err);
    if (st != MS_OK) return st;
    st = ms_npy_decode(data, size, path, lim, out, err);
    ms_free(data);
    return st;
}

void ms_npy_destroy(ms_npy *arr) {
    if (arr == NULL) return;
    ms_free(arr->data);
    ms_free(arr);
}

ms_status ms_npy_check_finite(const ms_npy *arr, const char *name, ms_err *err) {
    if (name == NULL) name = "<memory>";
    if (arr == NULL) return ms_fail(err, MS_EINVAL, "%s: ms_npy_check_finite: NULL array", name);
    for (size_t i = 0; i < arr->count; i++) {
        if (!isfinite(arr->data[i]))
            return ms_fail(err, MS_EFORMAT, "%s: value at index %zu is %g (not finite)", name, i,
                           (double)arr->data[i]);
    }
    return MS_OK;
}

/* ---- writing ---- */

/* The preamble numpy 1.24 writes for a '<f4' C-order array: magic, version 1.0, header length,
 * dict, growth spaces, padding and '\n' up to a multiple of NPY_ALIGN. 8 dimensions of 20
 * digits need well under 320 bytes. */
#define NPY_PREAMBLE_MAX 384

static ms_status make_preamble(const char *label, const int64_t *shape, int32_t ndim,
                               const float *data, uint8_t *pre, size_t *pre_len, size_t *payload,
                               ms_err *err) {
    if (ndim < 0 || ndim > MS_NPY_MAX_DIMS || (ndim > 0 && shape == NULL))
        return ms_fail(err, MS_EINVAL, "%s: .npy: ndim %d (0..%d) or NULL shape", label, (int)ndim,
                       MS_NPY_MAX_DIMS);
    uint64_t count = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ms_fail(err, MS_EINVAL, "%s: .npy: shape[%d] = %lld is negative", label, (int)i,
                           (long long)shape[i]);
        if (!ms_mul_u64(count, (uint64_t)shape[i], &count))
            return ms_fail(err, MS_EOVERFLOW, "%s: .npy: element count overflows", label);
    }
    uint64_t bytes;
    if (!ms_mul_u64(count, sizeof(float), &bytes) || bytes > SIZE_MAX)
        return ms_fail(err, MS_EOVERFLOW, "%s: .npy: byte size overflows", label);
    if (data == NULL && count != 0)
        return ms_fail(err, MS_EINVAL, "%s: .npy: NULL data for %llu elements", label,
                       (unsigned long long)count);

    char shape_str[8 * 24];
    format_shape(shape, ndim, shape_str, sizeof shape_str);
    char dict[NPY_PREAMBLE_MAX];
    int w = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                     shape_str);
    if (w < 0 || (size_t)w >= sizeof dict)
        return ms_fail(err, MS_EINTERNAL, "%s: .npy header does not fit", label);
    size_t len = (size_t)w;
    if (ndim > 0) {
        char first[24];
        int fw = snprintf(first, sizeof first, "%lld", (long long)shape[0]);
        for (int i = fw; i < NPY_GROWTH_AXIS_MAX_DIGITS; i++) dict[len++] = ' ';
    }
    size_t hlen = len + 1; /* the final '\n' */
    size_t pad = NPY_ALIGN - (NPY_MAGIC_LEN + 2 + 2 + hlen) % NPY_ALIGN;
    size_t total = NPY_MAGIC_LEN + 2 + 2 + hlen + pad;
    if (total > NPY_PREAMBLE_MAX)
        return ms_fail(err, MS_EINTERNAL, "%s: .npy header does not fit", label);
    size_t header_len = hlen + pad;
    memcpy(pre, npy_magic, NPY_MAGIC_LEN);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (uint8_t)(header_len & 0xff);
    pre[9] = (uint8_t)(header_len >> 8);
    memcpy(pre + 10, dict, len);
    memset(pre + 10 + len, ' ', pad);
    pre[total - 1] = '\n';
    *pre_len = total;
    *payload = (size_t)bytes;
    return MS_OK;
}

/* Little-endian float32 bytes of data[0..n) into dst. */
static void put_f32le(uint8_t *dst, const float *data, size_t n) {
    if (NPY_HOST_LE) {
        if (n) memcpy(dst, data, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        dst[4 * i] = (uint8_t)u;
        dst[4 * i + 1] = (uint8_t)(u >> 8);
        dst[4 * i + 2] = (uint8_t)(u >> 16);
        dst[4 * i + 3] = (uint8_t)(u >> 24);
    }
}

ms_status ms_npy_encode(const int64_t *shape, int32_t ndim, const float *data, uint8_t **out_data,
                        size_t *out_size, ms_err *err) {
    if (out_data == NULL || out_size == NULL)
        return ms_fail(err, MS_EINVAL, "ms_npy_encode: NULL output");
    uint8_t pre[NPY_PREAMBLE_MAX];
    size_t pre_len = 0, payload = 0, total = 0;
    ms_status st = make_preamble("<memory>", shape, ndim, data, pre, &pre_len, &payload, err);
    if (st != MS_OK) return st;
    if (!ms_add_size(pre_len, payload, &total))
        return ms_fail(err, MS_EOVERFLOW, ".npy: encoded size overflows");
    uint8_t *buf = ms_malloc(total);
    if (buf == NULL)
        return ms_fail(err, MS_ENOMEM, ".npy: cannot allocate %zu bytes to encode", total);
    memcpy(buf, pre, pre_len);
    put_f32le(buf + pre_len, data, payload / 4);
    *out_data = buf;
    *out_size = total;
    return MS_OK;
}

ms_status ms_npy_save(const char *path, const int64_t *shape, int32_t ndim, const float *data,
                      ms_err *err) {
    if (path == NULL || path[0] == '\0')
        return ms_fail(err, MS_EINVAL, "ms_npy_save: NULL or empty path");
    uint8_t *buf = NULL;
    size_t n = 0;
    ms_status st = ms_npy_encode(shape, ndim, data, &buf, &n, err);
    if (st != MS_OK) return ms_fail(err, st, "%s: %s", path, err ? err->msg : "cannot encode");
    st = ms_file_write_atomic(path, buf, n, err);
    ms_free(buf);
    return st;
}
