/* A small reader of the protobuf wire format, enough for ONNX: varint, 64-bit,
 * length-delimited and 32-bit fields. Every length is checked against the bytes left
 * (ms_rd), nesting is bounded, and unknown fields are skipped by their wire type. Groups
 * (wire types 3 and 4) are refused: ONNX never uses them. */
#ifndef MEDSCREEN_ONNX_PB_H
#define MEDSCREEN_ONNX_PB_H

#include "medscreen/core.h"

#define MS_PB_MAX_DEPTH 16

enum { MS_PB_VARINT = 0, MS_PB_I64 = 1, MS_PB_LEN = 2, MS_PB_I32 = 5 };

/* A message being read: the bytes left in it and how deep it is nested. */
typedef struct ms_pb {
    ms_rd rd;
    int depth;
} ms_pb;

/* One field: its number and wire type, and either its scalar value (varint, I64, I32: the
 * raw bits) or its bytes (LEN). */
typedef struct ms_pb_field {
    uint32_t num;
    int wire;
    uint64_t v;
    const uint8_t *p;
    size_t len;
} ms_pb_field;

static inline ms_pb ms_pb_init(const uint8_t *p, size_t n) {
    ms_pb m = {{p, n}, 0};
    return m;
}

typedef enum ms_pb_res { MS_PB_END = 0, MS_PB_FIELD = 1, MS_PB_BAD = -1 } ms_pb_res;

/* Reads the next field of m. MS_PB_END at the end of the message, MS_PB_BAD on a malformed
 * key, varint, wire type or a length past the end (the message is then unusable). */
ms_pb_res ms_pb_next(ms_pb *m, ms_pb_field *f);

/* The sub-message carried by a LEN field; false if the field is not LEN or the nesting
 * would exceed MS_PB_MAX_DEPTH. */
bool ms_pb_sub(const ms_pb *parent, const ms_pb_field *f, ms_pb *out);

/* Reads one varint from rd (at most 10 bytes, the last holding at most one bit). */
bool ms_pb_varint(ms_rd *rd, uint64_t *v);

/* Packed or unpacked repeated values: calls fn for each int64 (varint) or float (I32) of f.
 * Returns false on malformed packed data or a wire type that does not fit, or when fn
 * returns false. */
typedef bool (*ms_pb_i64_fn)(void *user, int64_t v);
typedef bool (*ms_pb_f32_fn)(void *user, float v);
bool ms_pb_each_i64(const ms_pb_field *f, ms_pb_i64_fn fn, void *user);
bool ms_pb_each_f32(const ms_pb_field *f, ms_pb_f32_fn fn, void *user);

/* The float of an I32 field. */
float ms_pb_f32(const ms_pb_field *f);

#endif
