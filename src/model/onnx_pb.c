/* Protobuf wire-format reader for the ONNX importer; see onnx_pb.h. */
#include "onnx_pb.h"

#include <string.h>

bool ms_pb_varint(ms_rd *rd, uint64_t *v) {
    uint64_t x = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (rd->left == 0) return false;
        uint8_t b = rd->p[0];
        rd->p++;
        rd->left--;
        /* The tenth byte may only carry bit 63. */
        if (i == 9 && (b & 0xFEu) != 0) return false;
        x |= (uint64_t)(b & 0x7Fu) << (7u * i);
        if ((b & 0x80u) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

ms_pb_res ms_pb_next(ms_pb *m, ms_pb_field *f) {
    if (m->rd.left == 0) return MS_PB_END;
    uint64_t key;
    if (!ms_pb_varint(&m->rd, &key)) return MS_PB_BAD;
    uint64_t num = key >> 3;
    if (num == 0 || num > 536870911u) return MS_PB_BAD; /* 2^29 - 1 */
    memset(f, 0, sizeof *f);
    f->num = (uint32_t)num;
    f->wire = (int)(key & 7u);
    switch (f->wire) {
    case MS_PB_VARINT: return ms_pb_varint(&m->rd, &f->v) ? MS_PB_FIELD : MS_PB_BAD;
    case MS_PB_I64: {
        const uint8_t *b;
        if (!ms_rd_bytes(&m->rd, &b, 8)) return MS_PB_BAD;
        for (unsigned i = 0; i < 8; i++) f->v |= (uint64_t)b[i] << (8u * i);
        return MS_PB_FIELD;
    }
    case MS_PB_I32: {
        uint32_t x;
        if (!ms_rd_u32le(&m->rd, &x)) return MS_PB_BAD;
        f->v = x;
        return MS_PB_FIELD;
    }
    case MS_PB_LEN: {
        uint64_t len;
        if (!ms_pb_varint(&m->rd, &len)) return MS_PB_BAD;
        if (len > m->rd.left) return MS_PB_BAD;
        if (!ms_rd_bytes(&m->rd, &f->p, (size_t)len)) return MS_PB_BAD;
        f->len = (size_t)len;
        return MS_PB_FIELD;
    }
    default: return MS_PB_BAD;
    }
}

bool ms_pb_sub(const ms_pb *parent, const ms_pb_field *f, ms_pb *out) {
    if (f->wire != MS_PB_LEN || parent->depth + 1 > MS_PB_MAX_DEPTH) return false;
    out->rd = ms_rd_init(f->p, f->len);
    out->depth = parent->depth + 1;
    return true;
}

float ms_pb_f32(const ms_pb_field *f) {
    uint32_t bits = (uint32_t)f->v;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

bool ms_pb_each_i64(const ms_pb_field *f, ms_pb_i64_fn fn, void *user) {
    if (f->wire == MS_PB_VARINT) return fn(user, (int64_t)f->v);
    if (f->wire != MS_PB_LEN) return false;
    ms_rd rd = ms_rd_init(f->p, f->len);
    while (rd.left > 0) {
        uint64_t v;
        if (!ms_pb_varint(&rd, &v)) return false;
        if (!fn(user, (int64_t)v)) return false;
    }
    return true;
}

bool ms_pb_each_f32(const ms_pb_field *f, ms_pb_f32_fn fn, void *user) {
    if (f->wire == MS_PB_I32) return fn(user, ms_pb_f32(f));
    if (f->wire != MS_PB_LEN || f->len % 4 != 0) return false;
    ms_rd rd = ms_rd_init(f->p, f->len);
    while (rd.left > 0) {
        uint32_t bits;
        float x;
        if (!ms_rd_u32le(&rd, &bits)) return false;
        memcpy(&x, &bits, sizeof x);
        if (!fn(user, x)) return false;
    }
    return true;
}
