/* The .msm container: reading with full validation, and an atomic writer. models/FORMAT.md
 * is the specification; every check below cites the field it guards. */
#include "medscreen/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "medscreen/core.h"

static const uint8_t k_magic[8] = {'M', 'S', 'M', 'O', 'D', 'E', 'L', 0};
enum { HEADER_SIZE = 32, ALIGN = 64 };

struct ms_msm {
    uint8_t *bytes; /* the whole file; tensors point into it */
    uint32_t count;
    ms_msm_tensor *tensors;
    char *names; /* NUL-terminated copies, in table order */
};

static bool rd_u64le(ms_rd *rd, uint64_t *v) {
    uint32_t lo, hi;
    if (!ms_rd_u32le(rd, &lo) || !ms_rd_u32le(rd, &hi)) return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
}

static bool name_char_ok(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '/' || c == '-';
}

static size_t dtype_size(uint8_t dtype) { return dtype == MS_DTYPE_F32 ? 4u : 1u; }

static int cmp_by_offset(const void *a, const void *b) {
    const uint8_t *pa = ((const ms_msm_tensor *)a)->data, *pb = ((const ms_msm_tensor *)b)->data;
    return pa < pb ? -1 : pa > pb;
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) { /* zlib takes uInt lengths */
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
}

/* Validates bytes (owned by m on success) per models/FORMAT.md. */
static ms_status parse(ms_msm *m, size_t size, const char *name, ms_err *err) {
    const uint8_t *b = m->bytes;
    ms_rd rd = ms_rd_init(b, size);
    const uint8_t *magic;
    uint32_t version, count;
    uint64_t table_size, payload_size;
    if (!ms_rd_bytes(&rd, &magic, 8) || memcmp(magic, k_magic, 8) != 0)
        return ms_fail(err, MS_EFORMAT, "%s: not a medscreen model (bad magic)", name);
    if (!ms_rd_u32le(&rd, &version) || !ms_rd_u32le(&rd, &count) || !rd_u64le(&rd, &table_size) ||
        !rd_u64le(&rd, &payload_size))
        return ms_fail(err, MS_EFORMAT, "%s: model header is truncated", name);
    if (version == 0) return ms_fail(err, MS_EFORMAT, "%s: model version 0 is invalid", name);
    if (version > MS_MSM_VERSION)
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: model format version %u is newer than this medscreen reads (%u)", name,
                       version, MS_MSM_VERSION);
    if (count == 0 || count > MS_MSM_MAX_TENSORS)
        return ms_fail(err, MS_EFORMAT, "%s: tensor count %u is outside 1..%u", name, count,
                       MS_MSM_MAX_TENSORS);
    /* P = 32 + table size rounded up to 64; file = P + payload + 4 */
    uint64_t p, end;
    if (table_size > size || payload_size > size)
        return ms_fail(err, MS_EFORMAT, "%s: table (%llu) or payload (%llu) larger than the file",
                       name, (unsigned long long)table_size, (unsigned long long)payload_size);
    p = (HEADER_SIZE + table_size + ALIGN - 1) / ALIGN * ALIGN;
    end = p + payload_size + 4;
    if (end != size)
        return ms_fail(err, MS_EFORMAT, "%s: file is %zu bytes, its header implies %llu", name,
                       size, (unsigned long long)end);
    uint32_t stored = (uint32_t)b[size - 4] | (uint32_t)b[size - 3] << 8 |
                      (uint32_t)b[size - 2] << 16 | (uint32_t)b[size - 1] << 24;
    uint32_t actual = crc32_of(b, size - 4);
    if (stored != actual)
        return ms_fail(err, MS_EFORMAT,
                       "%s: CRC-32 mismatch (stored %08x, computed %08x): the file is damaged",
                       name, stored, actual);
    for (uint64_t i = HEADER_SIZE + table_size; i < p; i++)
        if (b[i] != 0)
            return ms_fail(err, MS_EFORMAT, "%s: non-zero padding before the payload", name);

    m->tensors = ms_calloc(count, sizeof *m->tensors);
    size_t names_cap;
    if (m->tensors == NULL || !ms_add_size((size_t)table_size, count, &names_cap) ||
        (m->names = ms_malloc(names_cap)) == NULL)
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate the tensor table", name);
    m->count = count;
    ms_rd table = ms_rd_init(b + HEADER_SIZE, (size_t)table_size);
    const uint8_t *payload = b + p;
    char *np = m->names;
    for (uint32_t i = 0; i < count; i++) {
        ms_msm_tensor *t = &m->tensors[i];
        uint16_t nlen;
        const uint8_t *nb, *hdr;
        if (!ms_rd_u16le(&table, &nlen) || nlen == 0 || nlen > MS_MSM_MAX_NAME ||
            !ms_rd_bytes(&table, &nb, nlen))
            return ms_fail(err, MS_EFORMAT, "%s: tensor %u: bad or truncated name", name, i);
        for (uint16_t k = 0; k < nlen; k++)
            if (!name_char_ok(nb[k]))
                return ms_fail(err, MS_EFORMAT, "%s: tensor %u: name has byte 0x%02x", name, i,
                               nb[k]);
        memcpy(np, nb, nlen);
        np[nlen] = '\0';
        t->name = np;
        np += nlen + 1u;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(m->tensors[j].name, t->name) == 0)
                return ms_fail(err, MS_EFORMAT, "%s: tensor name '%s' appears twice", name,
                               t->name);
        if (!ms_rd_bytes(&table, &hdr, 2))
            return ms_fail(err, MS_EFORMAT, "%s: tensor '%s': truncated entry", name, t->name);
        if (hdr[0] != MS_DTYPE_F32 && hdr[0] != MS_DTYPE_U8)
            return ms_fail(err, MS_EFORMAT, "%s: tensor '%s': unknown dtype %u", name, t->name,
                           hdr[0]);
        if (hdr[1] > MS_MSM_MAX_NDIM)
            return ms_fail(err, MS_EFORMAT, "%s: tensor '%s': %u dimensions, at most %u", name,
                           t->name, hdr[1], MS_MSM_MAX_NDIM);
        t->dtype = (ms_dtype)hdr[0];
        t->ndim = hdr[1];
        size_t n = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            if (!ms_rd_u32le(&table, &t->dims[d]))
                return ms_fail(err, MS_EFORMAT, "%s: tensor '%s': truncated entry", name, t->name);
            if (t->dims[d] == 0)
                return ms_fail(err, MS_EFORMAT, "%s: tensor '%s': dimension %u is 0", name, t->name,
                               d);
            if (!ms_mul_size(n, t->dims[d], &n))
                return ms_fail(err, MS_EOVERFLOW, "%s: tensor '%s': element count overflows", name,
                               t->name);
        }
        uint64_t off, nbytes;
        size_t want;
        if (!rd_u64le(&table, &off) || !rd_u64le(&table, &nbytes))
            return ms_fail(err, MS_EFORMAT, "%s: tensor '%s': truncated entry", name, t->name);
        if (!ms_mul_size(n, dtype_size(hdr[0]), &want) || nbytes != want)
            return ms_fail(err, MS_EFORMAT, "%s: tensor '%s': %llu bytes for %zu elements", name,
                           t->name, (unsigned long long)nbytes, n);
        if (off % ALIGN != 0 || off > payload_size || nbytes > payload_size - off)
            return ms_fail(
                err, MS_EFORMAT,
                "%s: tensor '%s': data at %llu+%llu outside the payload (%llu) or unaligned", name,
                t->name, (unsigned long long)off, (unsigned long long)nbytes,
                (unsigned long long)payload_size);
        t->count = n;
        t->data = payload + off;
        if (t->dtype == MS_DTYPE_F32) {
            for (size_t k = 0; k < n; k++) {
                float v;
                memcpy(&v, (const uint8_t *)t->data + 4 * k, 4);
                if (!isfinite(v))
                    return ms_fail(err, MS_EFORMAT, "%s: tensor '%s': element %zu is not finite",
                                   name, t->name, k);
            }
        }
    }
    if (table.left != 0)
        return ms_fail(err, MS_EFORMAT, "%s: %zu bytes left over after the tensor table", name,
                       table.left);
    /* Non-overlap: sort a copy by offset and compare neighbours. */
    ms_msm_tensor *sorted = ms_malloc(count * sizeof *sorted);
    if (sorted == NULL) return ms_fail(err, MS_ENOMEM, "%s: cannot allocate", name);
    memcpy(sorted, m->tensors, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, cmp_by_offset);
    ms_status st = MS_OK;
    for (uint32_t i = 1; i < count && st == MS_OK; i++) {
        const uint8_t *prev_end = (const uint8_t *)sorted[i - 1].data +
                                  sorted[i - 1].count * dtype_size((uint8_t)sorted[i - 1].dtype);
        if ((const uint8_t *)sorted[i].data < prev_end)
            st = ms_fail(err, MS_EFORMAT, "%s: tensors '%s' and '%s' overlap", name,
                         sorted[i - 1].name, sorted[i].name);
    }
    ms_free(sorted);
    return st;
}

ms_status ms_msm_decode(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                        ms_msm **out, ms_err *err) {
    ms_limits deflim = ms_limits_default();
    if (lim == NULL) lim = &deflim;
    if (name == NULL) name = "<memory>";
    if (size > lim->max_model_bytes)
        return ms_fail(err, MS_ELIMIT, "%s: model is %zu bytes, limit is %llu", name, size,
                       (unsigned long long)lim->max_model_bytes);
    ms_msm *m = ms_calloc(1, sizeof *m);
    if (m == NULL || (m->bytes = ms_malloc(size)) == NULL) {
        ms_free(m);
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate %zu bytes", name, size);
    }
    if (size) memcpy(m->bytes, data, size);
    ms_status st = parse(m, size, name, err);
    if (st != MS_OK) {
        ms_msm_destroy(m);
        return st;
    }
    *out = m;
    return MS_OK;
}

ms_status ms_msm_load(const char *path, const ms_limits *lim, ms_msm **out, ms_err *err) {
    ms_limits deflim = ms_limits_default();
    if (lim == NULL) lim = &deflim;
    uint8_t *data = NULL;
    size_t size = 0;
    ms_status st = ms_file_read_all(path, lim->max_model_bytes, &data, &size, err);
    if (st != MS_OK) return st;
    st = ms_msm_decode(data, size, path, lim, out, err);
    ms_free(data);
    return st;
}

void ms_msm_destroy(ms_msm *m) {
    if (m == NULL) return;
    ms_free(m->tensors);
    ms_free(m->names);
    ms_free(m->bytes);
    ms_free(m);
}

uint32_t ms_msm_tensor_count(const ms_msm *m) { return m->count; }

const ms_msm_tensor *ms_msm_tensor_at(const ms_msm *m, uint32_t index) {
    return index < m->count ? &m->tensors[index] : NULL;
}

const ms_msm_tensor *ms_msm_find(const ms_msm *m, const char *name) {
    for (uint32_t i = 0; i < m->count; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* ---- writer ---- */

typedef struct pending {
    char name[MS_MSM_MAX_NAME + 1];
    uint8_t dtype;
    uint32_t ndim, dims[MS_MSM_MAX_NDIM];
    size_t nbytes;
    uint8_t *data;
} pending;

struct ms_msm_writer {
    pending *items;
    uint32_t count, cap;
};

ms_status ms_msm_writer_create(ms_msm_writer **out, ms_err *err) {
    ms_msm_writer *w = ms_calloc(1, sizeof *w);
    if (w == NULL) return ms_fail(err, MS_ENOMEM, "cannot allocate a model writer");
    *out = w;
    return MS_OK;
}

void ms_msm_writer_destroy(ms_msm_writer *w) {
    if (w == NULL) return;
    for (uint32_t i = 0; i < w->count; i++) ms_free(w->items[i].data);
    ms_free(w->items);
    ms_free(w);
}

ms_status ms_msm_writer_add(ms_msm_writer *w, const char *name, ms_dtype dtype, uint32_t ndim,
                            const uint32_t *dims, const void *data, ms_err *err) {
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > MS_MSM_MAX_NAME)
        return ms_fail(err, MS_EINVAL, "tensor name must have 1..%u characters", MS_MSM_MAX_NAME);
    for (size_t k = 0; k < len; k++)
        if (!name_char_ok((uint8_t)name[k]))
            return ms_fail(err, MS_EINVAL,
                           "tensor name '%s' has a character outside [A-Za-z0-9_.:/-]", name);
    if (dtype != MS_DTYPE_F32 && dtype != MS_DTYPE_U8)
        return ms_fail(err, MS_EINVAL, "tensor '%s': unknown dtype %d", name, (int)dtype);
    if (ndim > MS_MSM_MAX_NDIM)
        return ms_fail(err, MS_EINVAL, "tensor '%s': %u dimensions, at most %u", name, ndim,
                       MS_MSM_MAX_NDIM);
    if (w->count >= MS_MSM_MAX_TENSORS)
        return ms_fail(err, MS_EINVAL, "more than %u tensors", MS_MSM_MAX_TENSORS);
    for (uint32_t i = 0; i < w->count; i++)
        if (strcmp(w->items[i].name, name) == 0)
            return ms_fail(err, MS_EINVAL, "tensor name '%s' added twice", name);
    size_t n = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        if (dims[d] == 0) return ms_fail(err, MS_EINVAL, "tensor '%s': dimension %u is 0", name, d);
        if (!ms_mul_size(n, dims[d], &n))
            return ms_fail(err, MS_EOVERFLOW, "tensor '%s': element count overflows", name);
    }
    size_t nbytes;
    if (!ms_mul_size(n, dtype_size((uint8_t)dtype), &nbytes))
        return ms_fail(err, MS_EOVERFLOW, "tensor '%s': size overflows", name);
    if (dtype == MS_DTYPE_F32)
        for (size_t k = 0; k < n; k++)
            if (!isfinite(((const float *)data)[k]))
                return ms_fail(err, MS_EINVAL, "tensor '%s': element %zu is not finite", name, k);
    if (w->count == w->cap) {
        uint32_t cap = w->cap ? w->cap * 2 : 16;
        pending *grown = ms_realloc(w->items, cap * sizeof *grown);
        if (grown == NULL) return ms_fail(err, MS_ENOMEM, "cannot grow the tensor list");
        w->items = grown;
        w->cap = cap;
    }
    pending *p = &w->items[w->count];
    memset(p, 0, sizeof *p);
    p->data = ms_malloc(nbytes);
    if (p->data == NULL)
        return ms_fail(err, MS_ENOMEM, "tensor '%s': cannot copy %zu bytes", name, nbytes);
    memcpy(p->data, data, nbytes);
    memcpy(p->name, name, len + 1);
    p->dtype = (uint8_t)dtype;
    p->ndim = ndim;
    for (uint32_t d = 0; d < ndim; d++) p->dims[d] = dims[d];
    p->nbytes = nbytes;
    w->count++;
    return MS_OK;
}

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

ms_status ms_msm_writer_encode(const ms_msm_writer *w, uint8_t **out, size_t *size, ms_err *err) {
    if (w == NULL || out == NULL || size == NULL)
        return ms_fail(err, MS_EINVAL, "ms_msm_writer_encode: NULL argument");
    if (w->count == 0) return ms_fail(err, MS_EINVAL, "a model needs at least one tensor");
    size_t table = 0, payload = 0;
    for (uint32_t i = 0; i < w->count; i++) {
        const pending *p = &w->items[i];
        table += 2 + strlen(p->name) + 2 + 4u * p->ndim + 16;
        payload = (payload + ALIGN - 1) / ALIGN * ALIGN + p->nbytes;
    }
    size_t start = (HEADER_SIZE + table + ALIGN - 1) / ALIGN * ALIGN, total = start + payload + 4;
    uint8_t *buf = ms_calloc(1, total);
    if (buf == NULL) return ms_fail(err, MS_ENOMEM, "cannot allocate %zu bytes for a model", total);
    memcpy(buf, k_magic, 8);
    put_le(buf + 8, MS_MSM_VERSION, 4);
    put_le(buf + 12, w->count, 4);
    put_le(buf + 16, table, 8);
    put_le(buf + 24, payload, 8);
    size_t t = HEADER_SIZE, off = 0;
    for (uint32_t i = 0; i < w->count; i++) {
        const pending *p = &w->items[i];
        size_t len = strlen(p->name);
        off = (off + ALIGN - 1) / ALIGN * ALIGN;
        put_le(buf + t, len, 2);
        memcpy(buf + t + 2, p->name, len);
        t += 2 + len;
        buf[t++] = p->dtype;
        buf[t++] = (uint8_t)p->ndim;
        for (uint32_t d = 0; d < p->ndim; d++, t += 4) put_le(buf + t, p->dims[d], 4);
        put_le(buf + t, off, 8);
        put_le(buf + t + 8, p->nbytes, 8);
        t += 16;
        memcpy(buf + start + off, p->data, p->nbytes);
        off += p->nbytes;
    }
    put_le(buf + total - 4, crc32_of(buf, total - 4), 4);
    *out = buf;
    *size = total;
    return MS_OK;
}

ms_status ms_msm_writer_save(const ms_msm_writer *w, const char *path, ms_err *err) {
    uint8_t *buf = NULL;
    size_t total = 0;
    ms_err sub = {0};
    ms_status st = ms_msm_writer_encode(w, &buf, &total, &sub);
    if (st != MS_OK) return ms_fail(err, st, "%s: %s", path, sub.msg);
    st = ms_file_write_atomic(path, buf, total, err);
    ms_free(buf);
    return st;
}
