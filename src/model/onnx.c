/* ONNX import (see include/medscreen/onnx.h).
 *
 * Three steps: parse the protobuf into plain structs (every message read twice: once to count
 * repeated fields, once to fill arrays of exactly that size, so nothing grows); intern value
 * names and resolve Identity/Dropout; then walk the nodes in their (topological) order,
 * emitting graph nodes and fusing as we go: a BatchNormalization or activation whose input is
 * a convolution's output used only by it is folded into that convolution. Shapes (C, H, W; the
 * batch is implicit) are tracked so that every node is checked against nn's shape rules and
 * fc/flatten/broadcast inputs are known. A last pass drops nodes whose output is unused. */
#include "medscreen/onnx.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "medscreen/core.h"
#include "medscreen/nn.h"
#include "onnx_pb.h"

/* ---------------------------------------------------------------- arena */

typedef struct blk {
    struct blk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} blk;

typedef struct arena {
    blk *head;
} arena;

static void *aalloc(arena *a, size_t n) {
    size_t need;
    if (!ms_add_size(n, 15, &need)) return NULL;
    need &= ~(size_t)15;
    if (need == 0) need = 16;
    if (a->head == NULL || a->head->cap - a->head->used < need) {
        size_t cap = need > 65536 ? need : 65536, total;
        if (!ms_add_size(cap, sizeof(blk), &total)) return NULL;
        blk *b = ms_malloc(total);
        if (b == NULL) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += need;
    return p;
}

static void *acalloc(arena *a, size_t count, size_t size) {
    size_t n;
    if (!ms_mul_size(count, size, &n)) return NULL;
    void *p = aalloc(a, n);
    if (p != NULL) memset(p, 0, n);
    return p;
}

static void afree(arena *a) {
    blk *b = a->head;
    while (b != NULL) {
        blk *next = b->next;
        ms_free(b);
        b = next;
    }
    a->head = NULL;
}

static char *astrdup(arena *a, const char *s, size_t n) {
    char *p = aalloc(a, n + 1);
    if (p == NULL) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---------------------------------------------------------------- parsed protobuf */

enum { DT_FLOAT = 1, DT_INT64 = 7 };
enum { AT_FLOAT = 1, AT_INT = 2, AT_STRING = 3, AT_TENSOR = 4, AT_FLOATS = 6, AT_INTS = 7 };

typedef struct ctensor {
    const char *name;
    int32_t dtype;
    uint32_t ndim;
    int64_t dims[MS_ONNX_MAX_DIMS];
    size_t count;
    float *f;   /* DT_FLOAT */
    int64_t *i; /* DT_INT64 */
} ctensor;

typedef struct attr {
    const char *name;
    int32_t type;
    int64_t i;
    float f;
    const char *s;
    const ctensor *t;
    int64_t *ints;
    size_t nints;
    float *floats;
    size_t nfloats;
} attr;

typedef struct onode {
    const char *name, *op, *domain, *label;
    const char **in, **out;
    uint32_t nin, nout;
    int32_t *vin, *vout; /* value ids; -1 for an empty (absent optional) name */
    attr *attrs;
    uint32_t nattr;
    bool done;
} onode;

typedef struct vinfo {
    const char *name;
    int32_t elem;
    uint32_t ndim;
    int64_t dims[MS_ONNX_MAX_DIMS];
    const char *params[MS_ONNX_MAX_DIMS];
    bool has_shape;
} vinfo;

/* ---------------------------------------------------------------- values and graph nodes */

typedef struct val {
    const char *name;  /* ONNX name */
    const char *gname; /* name in the graph text */
    const ctensor *k;  /* a constant (initializer or Constant node) */
    int32_t alias;     /* Identity/Dropout: the value this one is */
    int32_t gnode;     /* producing graph node; -1 the graph input, -2 none yet */
    bool defined, is_out;
    uint32_t consumers;
    int32_t cons; /* the last consuming node */
    int rank;     /* 4: [N][c][h][w]; 2: [N][c] */
    int32_t c, h, w;
    int32_t pad_src; /* a zero Pad not applied yet: its input, or -1 */
    int32_t pad[4];  /* t, l, b, r */
} val;

typedef struct gnode {
    const char *op, *name;
    int32_t *in;
    uint32_t nin;
    int32_t out;
    char keys[160];
    int32_t wt, bt, mt, vt; /* tensor indices or -1 */
    bool is_conv;
    ms_act act;
    float alpha;
    int32_t conv_out_c;
    size_t conv_per_out;
    bool live;
} gnode;

typedef struct otensor {
    const char *name;
    uint32_t ndim;
    uint32_t dims[4];
    size_t count;
    float *data;
} otensor;

typedef struct imp {
    const char *src;
    const ms_limits *lim;
    ms_err *err;
    arena work, *res;
    /* model */
    int64_t opset;
    char producer[128];
    /* graph */
    onode *nodes;
    uint32_t nnodes;
    ctensor *inits;
    uint32_t ninits;
    vinfo *inputs, *outputs;
    uint32_t ninputs, noutputs;
    /* values */
    val *vals;
    uint32_t nvals, cap_vals;
    int32_t *hash;
    size_t hash_mask;
    int32_t image_input;
    /* emission */
    gnode *g;
    uint32_t ng, cap_g;
    otensor *t;
    uint32_t nt, cap_t;
} imp;

#define FAIL(st, ...) ms_fail(I->err, (st), __VA_ARGS__)
#define BADPB(what) FAIL(MS_EFORMAT, "%s: malformed or truncated protobuf in %s", I->src, (what))
#define NOMEM() FAIL(MS_ENOMEM, "%s: out of memory", I->src)

/* ---------------------------------------------------------------- protobuf messages */

static ms_status read_string(imp *I, const ms_pb_field *f, const char **out, const char *what) {
    if (f->wire != MS_PB_LEN) return BADPB(what);
    if (f->len > 4096)
        return FAIL(MS_ELIMIT, "%s: a string of %zu bytes in %s (limit 4096)", I->src, f->len,
                    what);
    if (memchr(f->p, 0, f->len) != NULL)
        return FAIL(MS_EFORMAT, "%s: a string with a NUL byte in %s", I->src, what);
    char *s = astrdup(&I->work, (const char *)f->p, f->len);
    if (s == NULL) return NOMEM();
    *out = s;
    return MS_OK;
}

typedef struct cnt {
    size_t n, max;
} cnt;
static bool count_cb_i(void *u, int64_t v) {
    (void)v;
    cnt *c = u;
    return ++c->n <= c->max;
}
static bool count_cb_f(void *u, float v) {
    (void)v;
    cnt *c = u;
    return ++c->n <= c->max;
}
typedef struct fill_i {
    int64_t *p;
    size_t n, cap;
} fill_i;
typedef struct fill_f {
    float *p;
    size_t n, cap;
} fill_f;
static bool fill_cb_i(void *u, int64_t v) {
    fill_i *c = u;
    if (c->n >= c->cap) return false;
    c->p[c->n++] = v;
    return true;
}
static bool fill_cb_f(void *u, float v) {
    fill_f *c = u;
    if (c->n >= c->cap) return false;
    c->p[c->n++] = v;
    return true;
}

/* TensorProto: dims 1, data_type 2, float_data 4, int64_data 7, name 8, raw_data 9,
 * external_data 13, data_location 14. */
static ms_status parse_tensor(imp *I, const ms_pb *parent, const ms_pb_field *pf, ctensor *t) {
    ms_pb m;
    if (!ms_pb_sub(parent, pf, &m)) return BADPB("a tensor");
    ms_pb_field f;
    ms_pb_res r;
    ms_pb m0 = m;
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    bool has_raw = false;
    cnt nf = {0, SIZE_MAX}, ni = {0, SIZE_MAX};
    memset(t, 0, sizeof *t);
    t->name = "";
    while ((r = ms_pb_next(&m, &f)) == MS_PB_FIELD) {
        ms_status st;
        switch (f.num) {
        case 1: {
            fill_i fi = {t->dims + t->ndim, 0, MS_ONNX_MAX_DIMS - t->ndim};
            if (!ms_pb_each_i64(&f, fill_cb_i, &fi))
                return FAIL(MS_ELIMIT, "%s: tensor '%s' has more than %u dimensions or bad dims",
                            I->src, t->name, MS_ONNX_MAX_DIMS);
            t->ndim += (uint32_t)fi.n;
            break;
        }
        case 2:
            if (f.wire != MS_PB_VARINT) return BADPB("a tensor's data_type");
            t->dtype = (int32_t)(uint32_t)f.v;
            break;
        case 4:
            if (!ms_pb_each_f32(&f, count_cb_f, &nf)) return BADPB("a tensor's float_data");
            break;
        case 7:
            if (!ms_pb_each_i64(&f, count_cb_i, &ni)) return BADPB("a tensor's int64_data");
            break;
        case 8:
            if ((st = read_string(I, &f, &t->name, "a tensor name")) != MS_OK) return st;
            break;
        case 9:
            if (f.wire != MS_PB_LEN) return BADPB("a tensor's raw_data");
            raw = f.p;
            raw_len = f.len;
            has_raw = true;
            break;
        case 3:
        case 13:
        case 14:
            return FAIL(MS_EUNSUPPORTED,
                        "%s: tensor '%s' uses segments or external data (unsupported; save the "
                        "model with its weights inside)",
                        I->src, t->name);
        default: break;
        }
    }
    if (r == MS_PB_BAD) return BADPB("a tensor");
    size_t count = 1;
    for (uint32_t d = 0; d < t->ndim; d++) {
        if (t->dims[d] < 0 || t->dims[d] > INT32_MAX)
            return FAIL(MS_EFORMAT, "%s: tensor '%s' has dimension %u = %lld", I->src, t->name, d,
                        (long long)t->dims[d]);
        if (!ms_mul_size(count, (size_t)t->dims[d], &count))
            return FAIL(MS_EOVERFLOW, "%s: tensor '%s' is too large", I->src, t->name);
    }
    t->count = count;
    if (t->dtype != DT_FLOAT && t->dtype != DT_INT64) return MS_OK; /* refused if used */
    size_t esz = t->dtype == DT_FLOAT ? 4 : 8;
    size_t have = has_raw ? raw_len : (t->dtype == DT_FLOAT ? nf.n : ni.n) * esz, want;
    if (!ms_mul_size(count, esz, &want) || have != want)
        return FAIL(MS_EFORMAT, "%s: tensor '%s' holds %zu bytes of data, its shape needs %zu",
                    I->src, t->name, have, ms_mul_size(count, esz, &want) ? want : SIZE_MAX);
    void *data = acalloc(&I->work, count ? count : 1, esz);
    if (data == NULL) return NOMEM();
    if (t->dtype == DT_FLOAT)
        t->f = data;
    else
        t->i = data;
    if (has_raw) {
        ms_rd rd = ms_rd_init(raw, raw_len);
        for (size_t k = 0; k < count; k++) {
            uint32_t lo, hi = 0;
            if (!ms_rd_u32le(&rd, &lo) || (esz == 8 && !ms_rd_u32le(&rd, &hi)))
                return BADPB("raw_data");
            if (esz == 4)
                memcpy(&t->f[k], &lo, 4);
            else
                t->i[k] = (int64_t)((uint64_t)hi << 32 | lo);
        }
        return MS_OK;
    }
    fill_f ff = {t->f, 0, count};
    fill_i fi = {t->i, 0, count};
    while ((r = ms_pb_next(&m0, &f)) == MS_PB_FIELD) {
        if (f.num == 4 && t->dtype == DT_FLOAT && !ms_pb_each_f32(&f, fill_cb_f, &ff))
            return BADPB("float_data");
        if (f.num == 7 && t->dtype == DT_INT64 && !ms_pb_each_i64(&f, fill_cb_i, &fi))
            return BADPB("int64_data");
    }
    return r == MS_PB_BAD ? BADPB("a tensor") : MS_OK;
}

/* AttributeProto: name 1, f 2, i 3, s 4, t 5, g 6, floats 7, ints 8, strings 9, type 20. */
static ms_status parse_attr(imp *I, const ms_pb *parent, const ms_pb_field *pf, attr *a) {
    ms_pb m;
    if (!ms_pb_sub(parent, pf, &m)) return BADPB("an attribute");
    ms_pb m0 = m;
    ms_pb_field f;
    ms_pb_res r;
    cnt ni = {0, 4096}, nf = {0, 4096};
    memset(a, 0, sizeof *a);
    a->name = "";
    while ((r = ms_pb_next(&m, &f)) == MS_PB_FIELD) {
        ms_status st;
        switch (f.num) {
        case 1:
            if ((st = read_string(I, &f, &a->name, "an attribute name")) != MS_OK) return st;
            break;
        case 2:
            if (f.wire != MS_PB_I32) return BADPB("an attribute's float");
            a->f = ms_pb_f32(&f);
            break;
        case 3:
            if (f.wire != MS_PB_VARINT) return BADPB("an attribute's int");
            a->i = (int64_t)f.v;
            break;
        case 4:
            if ((st = read_string(I, &f, &a->s, "an attribute's string")) != MS_OK) return st;
            break;
        case 5: {
            ctensor *t = aalloc(&I->work, sizeof *t);
            if (t == NULL) return NOMEM();
            if ((st = parse_tensor(I, &m, &f, t)) != MS_OK) return st;
            a->t = t;
            break;
        }
        case 7:
            if (!ms_pb_each_f32(&f, count_cb_f, &nf))
                return FAIL(MS_ELIMIT, "%s: attribute '%s': too many or malformed floats", I->src,
                            a->name);
            break;
        case 8:
            if (!ms_pb_each_i64(&f, count_cb_i, &ni))
                return FAIL(MS_ELIMIT, "%s: attribute '%s': too many or malformed ints", I->src,
                            a->name);
            break;
        case 20:
            if (f.wire != MS_PB_VARINT) return BADPB("an attribute's type");
            a->type = (int32_t)(uint32_t)f.v;
            break;
        default: break;
        }
    }
    if (r == MS_PB_BAD) return BADPB("an attribute");
    if (ni.n > 0 && (a->ints = acalloc(&I->work, ni.n, sizeof *a->ints)) == NULL) return NOMEM();
    if (nf.n > 0 && (a->floats = acalloc(&I->work, nf.n, sizeof *a->floats)) == NULL)
        return NOMEM();
    fill_i fi = {a->ints, 0, ni.n};
    fill_f ff = {a->floats, 0, nf.n};
    while ((r = ms_pb_next(&m0, &f)) == MS_PB_FIELD) {
        if (f.num == 7 && !ms_pb_each_f32(&f, fill_cb_f, &ff)) return BADPB("floats");
        if (f.num == 8 && !ms_pb_each_i64(&f, fill_cb_i, &fi)) return BADPB("ints");
    }
    a->nints = ni.n;
    a->nfloats = nf.n;
    return MS_OK;
}

/* NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7. */
static ms_status parse_node(imp *I, const ms_pb *parent, const ms_pb_field *pf, onode *n,
                            uint32_t index) {
    ms_pb m;
    if (!ms_pb_sub(parent, pf, &m)) return BADPB("a node");
    ms_pb m0 = m;
    ms_pb_field f;
    ms_pb_res r;
    memset(n, 0, sizeof *n);
    n->name = n->op = n->domain = "";
    while ((r = ms_pb_next(&m, &f)) == MS_PB_FIELD) {
        if (f.num == 1) n->nin++;
        if (f.num == 2) n->nout++;
        if (f.num == 5) n->nattr++;
        if (n->nin > MS_ONNX_MAX_NODE_IO || n->nout > MS_ONNX_MAX_NODE_IO ||
            n->nattr > MS_ONNX_MAX_ATTRS)
            return FAIL(MS_ELIMIT, "%s: node %u has too many inputs, outputs or attributes", I->src,
                        index);
    }
    if (r == MS_PB_BAD) return BADPB("a node");
    n->in = acalloc(&I->work, n->nin + 1, sizeof *n->in);
    n->out = acalloc(&I->work, n->nout + 1, sizeof *n->out);
    n->vin = acalloc(&I->work, n->nin + 1, sizeof *n->vin);
    n->vout = acalloc(&I->work, n->nout + 1, sizeof *n->vout);
    n->attrs = acalloc(&I->work, n->nattr + 1, sizeof *n->attrs);
    if (!n->in || !n->out || !n->vin || !n->vout || !n->attrs) return NOMEM();
    uint32_t ki = 0, ko = 0, ka = 0;
    while ((r = ms_pb_next(&m0, &f)) == MS_PB_FIELD) {
        ms_status st = MS_OK;
        switch (f.num) {
        case 1: st = read_string(I, &f, &n->in[ki++], "a node input"); break;
        case 2: st = read_string(I, &f, &n->out[ko++], "a node output"); break;
        case 3: st = read_string(I, &f, &n->name, "a node name"); break;
        case 4: st = read_string(I, &f, &n->op, "an op_type"); break;
        case 5: st = parse_attr(I, &m0, &f, &n->attrs[ka++]); break;
        case 7: st = read_string(I, &f, &n->domain, "a node domain"); break;
        default: break;
        }
        if (st != MS_OK) return st;
    }
    if (r == MS_PB_BAD) return BADPB("a node");
    return MS_OK;
}

/* ValueInfoProto: name 1, type 2 -> TypeProto: tensor_type 1 -> elem_type 1, shape 2 ->
 * TensorShapeProto: dim 1 -> Dimension: dim_value 1, dim_param 2. */
static ms_status parse_vinfo(imp *I, const ms_pb *parent, const ms_pb_field *pf, vinfo *v) {
    ms_pb m, tp, tt, sh, dm;
    ms_pb_field f, g, h, k, l;
    ms_pb_res r;
    memset(v, 0, sizeof *v);
    v->name = "";
    if (!ms_pb_sub(parent, pf, &m)) return BADPB("a value info");
    while ((r = ms_pb_next(&m, &f)) == MS_PB_FIELD) {
        if (f.num == 1) {
            ms_status st = read_string(I, &f, &v->name, "a value name");
            if (st != MS_OK) return st;
        } else if (f.num == 2) {
            if (!ms_pb_sub(&m, &f, &tp)) return BADPB("a type");
            while ((r = ms_pb_next(&tp, &g)) == MS_PB_FIELD) {
                if (g.num != 1) continue;
                if (!ms_pb_sub(&tp, &g, &tt)) return BADPB("a tensor type");
                while ((r = ms_pb_next(&tt, &h)) == MS_PB_FIELD) {
                    if (h.num == 1 && h.wire == MS_PB_VARINT) v->elem = (int32_t)(uint32_t)h.v;
                    if (h.num != 2) continue;
                    if (!ms_pb_sub(&tt, &h, &sh)) return BADPB("a shape");
                    v->has_shape = true;
                    while ((r = ms_pb_next(&sh, &k)) == MS_PB_FIELD) {
                        if (k.num != 1) continue;
                        if (v->ndim >= MS_ONNX_MAX_DIMS)
                            return FAIL(MS_ELIMIT, "%s: value '%s' has more than %u dimensions",
                                        I->src, v->name, MS_ONNX_MAX_DIMS);
                        uint32_t d = v->ndim++;
                        v->dims[d] = -1;
                        if (!ms_pb_sub(&sh, &k, &dm)) return BADPB("a dimension");
                        while ((r = ms_pb_next(&dm, &l)) == MS_PB_FIELD) {
                            if (l.num == 1 && l.wire == MS_PB_VARINT) v->dims[d] = (int64_t)l.v;
                            if (l.num == 2) {
                                ms_status st = read_string(I, &l, &v->params[d], "a dim_param");
                                if (st != MS_OK) return st;
                            }
                        }
                        if (r == MS_PB_BAD) return BADPB("a dimension");
                    }
                    if (r == MS_PB_BAD) return BADPB("a shape");
                }
                if (r == MS_PB_BAD) return BADPB("a tensor type");
            }
            if (r == MS_PB_BAD) return BADPB("a type");
        }
    }
    return r == MS_PB_BAD ? BADPB("a value info") : MS_OK;
}

/* GraphProto: node 1, initializer 5, input 11, output 12. */
static ms_status parse_graph(imp *I, const ms_pb *parent, const ms_pb_field *pf) {
    ms_pb m;
    if (!ms_pb_sub(parent, pf, &m)) return BADPB("the graph");
    ms_pb m0 = m;
    ms_pb_field f;
    ms_pb_res r;
    size_t nn = 0, ni = 0, nin = 0, nout = 0;
    while ((r = ms_pb_next(&m, &f)) == MS_PB_FIELD) {
        if (f.num == 1) nn++;
        if (f.num == 5) ni++;
        if (f.num == 11) nin++;
        if (f.num == 12) nout++;
    }
    if (r == MS_PB_BAD) return BADPB("the graph");
    if (nn > MS_ONNX_MAX_NODES)
        return FAIL(MS_ELIMIT, "%s: %zu nodes (limit %u)", I->src, nn, MS_ONNX_MAX_NODES);
    if (ni > MS_ONNX_MAX_INITIALIZERS)
        return FAIL(MS_ELIMIT, "%s: %zu initializers (limit %u)", I->src, ni,
                    MS_ONNX_MAX_INITIALIZERS);
    if (nin + ni > MS_ONNX_MAX_INITIALIZERS + 64 || nout > 64)
        return FAIL(MS_ELIMIT, "%s: %zu graph inputs and %zu outputs (too many)", I->src, nin,
                    nout);
    I->nodes = acalloc(&I->work, nn + 1, sizeof *I->nodes);
    I->inits = acalloc(&I->work, ni + 1, sizeof *I->inits);
    I->inputs = acalloc(&I->work, nin + 1, sizeof *I->inputs);
    I->outputs = acalloc(&I->work, nout + 1, sizeof *I->outputs);
    if (!I->nodes || !I->inits || !I->inputs || !I->outputs) return NOMEM();
    while ((r = ms_pb_next(&m0, &f)) == MS_PB_FIELD) {
        ms_status st = MS_OK;
        if (f.num == 1) {
            st = parse_node(I, &m0, &f, &I->nodes[I->nnodes], I->nnodes);
            I->nnodes++;
        } else if (f.num == 5) {
            st = parse_tensor(I, &m0, &f, &I->inits[I->ninits++]);
        } else if (f.num == 11) {
            st = parse_vinfo(I, &m0, &f, &I->inputs[I->ninputs++]);
        } else if (f.num == 12) {
            st = parse_vinfo(I, &m0, &f, &I->outputs[I->noutputs++]);
        }
        if (st != MS_OK) return st;
    }
    return r == MS_PB_BAD ? BADPB("the graph") : MS_OK;
}

/* Printable ASCII copy of a protobuf string into dst. */
static void printable(char *dst, size_t cap, const uint8_t *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        dst[k++] = (p[i] >= 32 && p[i] < 127) ? (char)p[i] : '?';
    dst[k] = '\0';
}

/* ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8. */
static ms_status parse_model(imp *I, const uint8_t *data, size_t size) {
    ms_pb m = ms_pb_init(data, size), m0 = m;
    ms_pb_field f, graph;
    ms_pb_res r;
    bool has_graph = false, has_ir = false;
    char pname[64] = "", pver[64] = "";
    I->opset = -1;
    while ((r = ms_pb_next(&m, &f)) == MS_PB_FIELD) {
        if (f.num == 1 && f.wire == MS_PB_VARINT) has_ir = true;
        if (f.num == 2 && f.wire == MS_PB_LEN) printable(pname, sizeof pname, f.p, f.len);
        if (f.num == 3 && f.wire == MS_PB_LEN) printable(pver, sizeof pver, f.p, f.len);
        if (f.num == 7) {
            if (f.wire != MS_PB_LEN || has_graph) return BADPB("the model (graph field)");
            graph = f;
            has_graph = true;
        }
        if (f.num == 8) {
            ms_pb os;
            ms_pb_field g;
            if (!ms_pb_sub(&m, &f, &os)) return BADPB("an opset_import");
            bool dflt = true;
            int64_t ver = -1;
            while ((r = ms_pb_next(&os, &g)) == MS_PB_FIELD) {
                if (g.num == 1 && g.wire == MS_PB_LEN)
                    dflt = g.len == 0 || (g.len == 7 && memcmp(g.p, "ai.onnx", 7) == 0);
                if (g.num == 2 && g.wire == MS_PB_VARINT) ver = (int64_t)g.v;
            }
            if (r == MS_PB_BAD) return BADPB("an opset_import");
            if (dflt) I->opset = ver;
        }
    }
    if (r == MS_PB_BAD || !has_ir || !has_graph)
        return FAIL(MS_EFORMAT, "%s: not an ONNX model (%s)", I->src,
                    r == MS_PB_BAD ? "malformed or truncated protobuf"
                                   : (!has_ir ? "no ir_version" : "no graph"));
    if (I->opset < 9 || I->opset > 17)
        return FAIL(MS_EUNSUPPORTED, "%s: ONNX opset %lld (supported: 9 to 17)", I->src,
                    (long long)I->opset);
    snprintf(I->producer, sizeof I->producer, "%s%s%s", pname, pname[0] && pver[0] ? " " : "",
             pver);
    return parse_graph(I, &m0, &graph);
}

/* ---------------------------------------------------------------- values */

static size_t hash_str(const char *s) {
    size_t h = 1469598103u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The tensor-name alphabet of FORMAT.md; other bytes become '_', a leading '/' is dropped. */
static const char *sanitize(imp *I, const char *s, const char *fallback) {
    while (*s == '/') s++;
    size_t n = strlen(s);
    if (n > 200) n = 200;
    if (n == 0) return fallback;
    char *d = aalloc(&I->work, n + 1);
    if (d == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '/' || c == '-';
        d[i] = ok ? c : '_';
    }
    d[n] = '\0';
    return d;
}

static int32_t val_find(const imp *I, const char *name) {
    for (size_t h = hash_str(name) & I->hash_mask;; h = (h + 1) & I->hash_mask) {
        int32_t id = I->hash[h];
        if (id < 0) return -1;
        if (strcmp(I->vals[id].name, name) == 0) return id;
    }
}

static ms_status val_intern(imp *I, const char *name, int32_t *out) {
    if (name[0] == '\0') {
        *out = -1;
        return MS_OK;
    }
    size_t h = hash_str(name) & I->hash_mask;
    for (;; h = (h + 1) & I->hash_mask) {
        int32_t id = I->hash[h];
        if (id < 0) break;
        if (strcmp(I->vals[id].name, name) == 0) {
            *out = id;
            return MS_OK;
        }
    }
    if (I->nvals >= I->cap_vals) return FAIL(MS_EINTERNAL, "%s: value table full", I->src);
    int32_t id = (int32_t)I->nvals++;
    val *v = &I->vals[id];
    memset(v, 0, sizeof *v);
    v->name = name;
    char fb[32];
    snprintf(fb, sizeof fb, "v%d", id);
    v->gname = sanitize(I, name, NULL);
    if (v->gname == NULL) v->gname = astrdup(&I->work, fb, strlen(fb));
    if (v->gname == NULL) return NOMEM();
    v->alias = -1;
    v->gnode = -2;
    v->cons = -1;
    v->pad_src = -1;
    I->hash[h] = id;
    *out = id;
    return MS_OK;
}

static int32_t resolve(const imp *I, int32_t id) {
    for (int guard = 0; id >= 0 && I->vals[id].alias >= 0 && guard < 1000000; guard++)
        id = I->vals[id].alias;
    return id;
}

static ms_status setup_values(imp *I) {
    size_t bound = (size_t)I->ninits + I->ninputs + I->noutputs + 16;
    for (uint32_t i = 0; i < I->nnodes; i++) bound += (size_t)I->nodes[i].nin + I->nodes[i].nout;
    size_t cap = 64;
    while (cap < 2 * bound) cap *= 2;
    I->vals = acalloc(&I->work, bound, sizeof *I->vals);
    I->hash = aalloc(&I->work, cap * sizeof *I->hash);
    if (I->vals == NULL || I->hash == NULL) return NOMEM();
    for (size_t i = 0; i < cap; i++) I->hash[i] = -1;
    I->hash_mask = cap - 1;
    I->cap_vals = (uint32_t)bound;
    ms_status st;
    int32_t id;
    for (uint32_t i = 0; i < I->ninits; i++) {
        if ((st = val_intern(I, I->inits[i].name, &id)) != MS_OK) return st;
        if (id < 0) return FAIL(MS_EFORMAT, "%s: an initializer without a name", I->src);
        I->vals[id].k = &I->inits[i];
    }
    I->image_input = -1;
    for (uint32_t i = 0; i < I->ninputs; i++) {
        const vinfo *v = &I->inputs[i];
        if ((st = val_intern(I, v->name, &id)) != MS_OK) return st;
        if (id < 0) return FAIL(MS_EFORMAT, "%s: a graph input without a name", I->src);
        if (I->vals[id].k != NULL) continue; /* an initializer listed as an input */
        if (I->image_input >= 0)
            return FAIL(MS_EUNSUPPORTED,
                        "%s: graph inputs '%s' and '%s': only one image input "
                        "is supported",
                        I->src, I->vals[I->image_input].name, v->name);
        if (v->elem != DT_FLOAT || !v->has_shape || v->ndim != 4)
            return FAIL(MS_EUNSUPPORTED,
                        "%s: input '%s' must be a float32 NCHW tensor (elem_type %d, %u dims)",
                        I->src, v->name, v->elem, v->ndim);
        for (uint32_t d = 1; d < 4; d++)
            if (v->dims[d] < 1 || v->dims[d] > 1000000)
                return FAIL(MS_EUNSUPPORTED,
                            "%s: input '%s': dimension %u is %s%s%s; only the batch may be "
                            "dynamic",
                            I->src, v->name, d, v->params[d] ? "symbolic ('" : "invalid",
                            v->params[d] ? v->params[d] : "", v->params[d] ? "')" : "");
        val *x = &I->vals[id];
        x->defined = true;
        x->gnode = -1;
        x->rank = 4;
        x->c = (int32_t)v->dims[1];
        x->h = (int32_t)v->dims[2];
        x->w = (int32_t)v->dims[3];
        I->image_input = id;
    }
    if (I->image_input < 0)
        return FAIL(MS_EUNSUPPORTED, "%s: the graph has no image input", I->src);
    for (uint32_t i = 0; i < I->nnodes; i++) {
        onode *n = &I->nodes[i];
        for (uint32_t k = 0; k < n->nin; k++)
            if ((st = val_intern(I, n->in[k], &n->vin[k])) != MS_OK) return st;
        for (uint32_t k = 0; k < n->nout; k++)
            if ((st = val_intern(I, n->out[k], &n->vout[k])) != MS_OK) return st;
        const char *lb = sanitize(I, n->name, NULL);
        if (lb == NULL) {
            char fb[48];
            snprintf(fb, sizeof fb, "%.24s_%u", n->op[0] ? n->op : "node", i);
            lb = sanitize(I, fb, "node");
        }
        if (lb == NULL) return NOMEM();
        n->label = lb;
    }
    if (I->noutputs == 0) return FAIL(MS_EFORMAT, "%s: the graph has no outputs", I->src);
    for (uint32_t i = 0; i < I->noutputs; i++) {
        if ((st = val_intern(I, I->outputs[i].name, &id)) != MS_OK) return st;
        if (id < 0) return FAIL(MS_EFORMAT, "%s: a graph output without a name", I->src);
        I->vals[id].is_out = true;
    }
    return MS_OK;
}

/* ---------------------------------------------------------------- emission helpers */

static const attr *get_attr(const onode *n, const char *name) {
    for (uint32_t i = 0; i < n->nattr; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

/* Refuses attributes outside allowed (a NULL-terminated list). */
static ms_status check_attrs(imp *I, const onode *n, const char *const *allowed) {
    for (uint32_t i = 0; i < n->nattr; i++) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++) ok = ok || strcmp(*a, n->attrs[i].name) == 0;
        if (!ok)
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): unsupported attribute '%s'", I->src,
                        n->name, n->op, n->attrs[i].name);
    }
    return MS_OK;
}

static ms_status attr_int(imp *I, const onode *n, const char *name, int64_t def, int64_t *out) {
    const attr *a = get_attr(n, name);
    if (a == NULL) {
        *out = def;
        return MS_OK;
    }
    if (a->type != AT_INT && a->type != 0)
        return FAIL(MS_EFORMAT, "%s: node '%s': attribute '%s' is not an int", I->src, n->name,
                    name);
    *out = a->i;
    return MS_OK;
}

static ms_status attr_float(imp *I, const onode *n, const char *name, float def, float *out) {
    const attr *a = get_attr(n, name);
    if (a == NULL) {
        *out = def;
        return MS_OK;
    }
    if ((a->type != AT_FLOAT && a->type != 0) || !isfinite(a->f))
        return FAIL(MS_EFORMAT, "%s: node '%s': attribute '%s' is not a finite float", I->src,
                    n->name, name);
    *out = a->f;
    return MS_OK;
}

static const char *attr_str(const onode *n, const char *name, const char *def) {
    const attr *a = get_attr(n, name);
    return (a != NULL && a->s != NULL) ? a->s : def;
}

/* ints attribute of exactly count values in [lo, hi] (absent: def, when def != NULL). */
static ms_status attr_ints(imp *I, const onode *n, const char *name, size_t count, int64_t lo,
                           int64_t hi, const int64_t *def, int64_t *out) {
    const attr *a = get_attr(n, name);
    if (a == NULL) {
        if (def == NULL)
            return FAIL(MS_EFORMAT, "%s: node '%s' (%s): attribute '%s' is missing", I->src,
                        n->name, n->op, name);
        memcpy(out, def, count * sizeof *out);
        return MS_OK;
    }
    if (a->nints != count)
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (%s): attribute '%s' has %zu values, "
                    "expected %zu (2-D only)",
                    I->src, n->name, n->op, name, a->nints, count);
    for (size_t i = 0; i < count; i++) {
        if (a->ints[i] < lo || a->ints[i] > hi)
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): %s[%zu] = %lld is out of range",
                        I->src, n->name, n->op, name, i, (long long)a->ints[i]);
        out[i] = a->ints[i];
    }
    return MS_OK;
}

/* A runtime (non-constant) input of n, defined before use. */
static ms_status in_val(imp *I, const onode *n, uint32_t k, int32_t *out) {
    if (k >= n->nin || n->vin[k] < 0)
        return FAIL(MS_EFORMAT, "%s: node '%s' (%s) lacks input %u", I->src, n->name, n->op, k);
    int32_t id = resolve(I, n->vin[k]);
    const val *v = &I->vals[id];
    if (v->k != NULL)
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (%s): input '%s' is a constant; only computed values are "
                    "supported there",
                    I->src, n->name, n->op, v->name);
    if (!v->defined)
        return FAIL(MS_EFORMAT,
                    "%s: node '%s' (%s): input '%s' is neither an initializer nor computed "
                    "before it (missing initializer?)",
                    I->src, n->name, n->op, v->name);
    if (v->pad_src >= 0)
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (%s): its input comes from a Pad; only Conv and AveragePool "
                    "may follow a Pad",
                    I->src, n->name, n->op);
    *out = id;
    return MS_OK;
}

/* A constant input: an initializer or a Constant's output, of dtype (or any if 0). */
static ms_status in_const(imp *I, const onode *n, uint32_t k, int32_t dtype, bool optional,
                          const ctensor **out) {
    if (k >= n->nin || n->vin[k] < 0) {
        if (optional) {
            *out = NULL;
            return MS_OK;
        }
        return FAIL(MS_EFORMAT, "%s: node '%s' (%s) lacks input %u", I->src, n->name, n->op, k);
    }
    const val *v = &I->vals[resolve(I, n->vin[k])];
    if (v->k == NULL) {
        if (v->defined)
            return FAIL(MS_EUNSUPPORTED,
                        "%s: node '%s' (%s): input '%s' is computed at run time; it must be an "
                        "initializer or Constant (dynamic shapes are not supported)",
                        I->src, n->name, n->op, v->name);
        return FAIL(MS_EFORMAT, "%s: node '%s' (%s): initializer '%s' is missing", I->src, n->name,
                    n->op, v->name);
    }
    if (dtype != 0 && v->k->dtype != dtype)
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (%s): tensor '%s' has data type %d, expected %s", I->src,
                    n->name, n->op, v->name, v->k->dtype,
                    dtype == DT_FLOAT ? "float32 (1)" : "int64 (7)");
    if (v->k->dtype == DT_FLOAT)
        for (size_t i = 0; i < v->k->count; i++)
            if (!isfinite(v->k->f[i]))
                return FAIL(MS_EFORMAT, "%s: tensor '%s' has a non-finite value at %zu", I->src,
                            v->name, i);
    *out = v->k;
    return MS_OK;
}

static ms_status new_tensor(imp *I, const char *node, const char *suffix, uint32_t ndim,
                            const uint32_t *dims, const float *src, int32_t *out) {
    if (I->nt >= I->cap_t) {
        uint32_t cap = I->cap_t ? I->cap_t * 2 : 64;
        otensor *t = aalloc(I->res, cap * sizeof *t);
        if (t == NULL) return NOMEM();
        if (I->nt) memcpy(t, I->t, I->nt * sizeof *t);
        I->t = t;
        I->cap_t = cap;
    }
    otensor *t = &I->t[I->nt];
    memset(t, 0, sizeof *t);
    size_t count = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        t->dims[d] = dims[d];
        if (!ms_mul_size(count, dims[d], &count)) return FAIL(MS_EOVERFLOW, "%s: overflow", I->src);
    }
    t->ndim = ndim;
    t->count = count;
    size_t nl = strlen(node), sl = strlen(suffix);
    char *name = aalloc(I->res, nl + sl + 1);
    t->data = acalloc(I->res, count ? count : 1, sizeof(float));
    if (name == NULL || t->data == NULL) return NOMEM();
    memcpy(name, node, nl);
    memcpy(name + nl, suffix, sl + 1);
    t->name = name;
    if (src != NULL) memcpy(t->data, src, count * sizeof(float));
    *out = (int32_t)I->nt++;
    return MS_OK;
}

static ms_status new_gnode(imp *I, const char *op, const onode *n, uint32_t nin, int32_t out,
                           gnode **g) {
    if (I->ng >= I->cap_g) {
        uint32_t cap = I->cap_g ? I->cap_g * 2 : 64;
        gnode *a = aalloc(&I->work, cap * sizeof *a);
        if (a == NULL) return NOMEM();
        if (I->ng) memcpy(a, I->g, I->ng * sizeof *a);
        I->g = a;
        I->cap_g = cap;
    }
    gnode *x = &I->g[I->ng];
    memset(x, 0, sizeof *x);
    x->op = op;
    x->name = n->label;
    x->in = acalloc(&I->work, nin ? nin : 1, sizeof *x->in);
    if (x->in == NULL) return NOMEM();
    x->nin = nin;
    x->out = out;
    x->wt = x->bt = x->mt = x->vt = -1;
    x->alpha = 0.01f;
    I->vals[out].gnode = (int32_t)I->ng;
    I->vals[out].defined = true;
    I->ng++;
    *g = x;
    return MS_OK;
}

static void set_shape(imp *I, int32_t id, int rank, int32_t c, int32_t h, int32_t w) {
    val *v = &I->vals[id];
    v->rank = rank;
    v->c = c;
    v->h = h;
    v->w = w;
}

static ms_status need_rank4(imp *I, const onode *n, int32_t id) {
    if (I->vals[id].rank != 4)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): input '%s' must be NCHW (it is %d-D)",
                    I->src, n->name, n->op, I->vals[id].name, I->vals[id].rank);
    return MS_OK;
}

/* The only consumer of value id, if it has exactly one and is not a graph output. */
static onode *sole_consumer(imp *I, int32_t id, const char *op) {
    const val *v = &I->vals[id];
    if (v->consumers != 1 || v->is_out || v->cons < 0) return NULL;
    onode *c = &I->nodes[v->cons];
    if (c->done || strcmp(c->op, op) != 0) return NULL;
    return c;
}

/* Moves the result of activation act from value x to value y: fused into the convolution
 * that produced x when x is used by nothing else (uses: how many uses of x the pattern makes),
 * else a standalone act node. */
static ms_status emit_act(imp *I, const onode *n, int32_t x, uint32_t uses, int32_t y, ms_act act,
                          float alpha) {
    val *xv = &I->vals[x];
    if (xv->gnode >= 0 && I->g[xv->gnode].is_conv && I->g[xv->gnode].act == MS_ACT_NONE &&
        xv->consumers == uses && !xv->is_out) {
        gnode *c = &I->g[xv->gnode];
        c->act = act;
        c->alpha = alpha;
        c->out = y;
        I->vals[y].gnode = xv->gnode;
        I->vals[y].defined = true;
        set_shape(I, y, xv->rank, xv->c, xv->h, xv->w);
        return MS_OK;
    }
    gnode *g = NULL;
    ms_status st = new_gnode(I, "act", n, 1, y, &g);
    if (st != MS_OK) return st;
    g->in[0] = x;
    g->act = act;
    g->alpha = alpha;
    set_shape(I, y, xv->rank, xv->c, xv->h, xv->w);
    return MS_OK;
}

static bool is_scalar(const ctensor *t, float want, float tol) {
    return t != NULL && t->dtype == DT_FLOAT && t->count == 1 && fabsf(t->f[0] - want) <= tol;
}

/* Constant operand of a binary node with the other operand being value x: the constant, or
 * NULL when the node is not (x, const) in either order. */
static const ctensor *other_const(const imp *I, const onode *n, int32_t x) {
    if (n->nin != 2 || n->vin[0] < 0 || n->vin[1] < 0) return NULL;
    int32_t a = resolve(I, n->vin[0]), b = resolve(I, n->vin[1]);
    if (a == x && I->vals[b].k != NULL) return I->vals[b].k;
    if (b == x && I->vals[a].k != NULL) return I->vals[a].k;
    return NULL;
}

static bool is_pair(const imp *I, const onode *n, int32_t x, int32_t y) {
    if (n->nin != 2 || n->vin[0] < 0 || n->vin[1] < 0) return false;
    int32_t a = resolve(I, n->vin[0]), b = resolve(I, n->vin[1]);
    return (a == x && b == y) || (a == y && b == x);
}

/* Value y is value x (Identity, Dropout, a zero Pad, a 1-input Concat, a 2-D Flatten): its
 * uses become uses of x, so fusion sees every use. */
static void set_alias(imp *I, int32_t y, int32_t x) {
    val *vy = &I->vals[y], *vx = &I->vals[x];
    vy->alias = x;
    vx->consumers = vx->consumers - 1 + vy->consumers;
    vx->is_out = vx->is_out || vy->is_out;
    vx->cons = -1;
}

static ms_status extra_outputs_unused(imp *I, const onode *n, uint32_t keep) {
    for (uint32_t k = keep; k < n->nout; k++)
        if (n->vout[k] >= 0 && (I->vals[n->vout[k]].consumers > 0 || I->vals[n->vout[k]].is_out))
            return FAIL(MS_EUNSUPPORTED,
                        "%s: node '%s' (%s): output %u ('%s') is used; only the "
                        "first output is supported",
                        I->src, n->name, n->op, k, n->out[k]);
    return MS_OK;
}

static ms_status need_out(imp *I, const onode *n) {
    if (n->nout < 1 || n->vout[0] < 0)
        return FAIL(MS_EFORMAT, "%s: node '%s' (%s) has no output", I->src, n->name, n->op);
    const val *v = &I->vals[n->vout[0]];
    if (v->defined || v->k != NULL)
        return FAIL(MS_EFORMAT, "%s: node '%s' (%s): value '%s' is defined twice", I->src, n->name,
                    n->op, v->name);
    return MS_OK;
}

/* ---------------------------------------------------------------- operators */

static ms_status op_conv(imp *I, onode *n) {
    static const char *const ok[] = {"auto_pad", "dilations", "group", "kernel_shape",
                                     "pads",     "strides",   NULL};
    ms_status st = check_attrs(I, n, ok);
    if (st != MS_OK) return st;
    int32_t x = -1;
    const ctensor *w, *b;
    int64_t dil[2] = {0}, str[2] = {0}, pads[4] = {0}, group = 0, ks[2] = {0};
    static const int64_t one2[2] = {1, 1}, zero4[4] = {0, 0, 0, 0};
    if (strcmp(attr_str(n, "auto_pad", "NOTSET"), "NOTSET") != 0)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Conv): auto_pad '%s' (only NOTSET)", I->src,
                    n->name, attr_str(n, "auto_pad", ""));
    /* The input may be a pending Pad (zero padding folded into the convolution). */
    int32_t pad_extra[4] = {0, 0, 0, 0};
    if (n->nin >= 1 && n->vin[0] >= 0) {
        val *pv = &I->vals[resolve(I, n->vin[0])];
        if (pv->pad_src >= 0) {
            memcpy(pad_extra, pv->pad, sizeof pad_extra);
            x = pv->pad_src;
        }
    }
    if (x < 0 && (st = in_val(I, n, 0, &x)) != MS_OK) return st;
    if ((st = need_rank4(I, n, x)) != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = in_const(I, n, 1, DT_FLOAT, false, &w)) != MS_OK ||
        (st = in_const(I, n, 2, DT_FLOAT, true, &b)) != MS_OK ||
        (st = attr_ints(I, n, "dilations", 2, 1, 65535, one2, dil)) != MS_OK ||
        (st = attr_ints(I, n, "strides", 2, 1, 65535, one2, str)) != MS_OK ||
        (st = attr_ints(I, n, "pads", 4, 0, 65535, zero4, pads)) != MS_OK ||
        (st = attr_int(I, n, "group", 1, &group)) != MS_OK)
        return st;
    if (w->ndim != 4)
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (Conv): weight '%s' is %u-D (2-D convolution "
                    "only)",
                    I->src, n->name, w->name, w->ndim);
    int64_t defks[2] = {w->dims[2], w->dims[3]};
    if ((st = attr_ints(I, n, "kernel_shape", 2, 1, 65535, defks, ks)) != MS_OK) return st;
    const val *xv = &I->vals[x];
    if (ks[0] != w->dims[2] || ks[1] != w->dims[3] || group < 1 || group > xv->c ||
        w->dims[0] % group != 0 || w->dims[1] * group != xv->c || w->dims[0] < 1)
        return FAIL(MS_EFORMAT,
                    "%s: node '%s' (Conv): weight [%lld,%lld,%lld,%lld], group %lld and kernel "
                    "do not fit an input of %d channels",
                    I->src, n->name, (long long)w->dims[0], (long long)w->dims[1],
                    (long long)w->dims[2], (long long)w->dims[3], (long long)group, xv->c);
    if (b != NULL && (b->ndim != 1 || b->dims[0] != w->dims[0]))
        return FAIL(MS_EFORMAT, "%s: node '%s' (Conv): bias '%s' does not have %lld values", I->src,
                    n->name, b->name, (long long)w->dims[0]);
    ms_conv2d p = {0};
    p.in_c = xv->c;
    p.out_c = (int32_t)w->dims[0];
    p.kh = (int32_t)w->dims[2];
    p.kw = (int32_t)w->dims[3];
    p.stride_h = (int32_t)str[0];
    p.stride_w = (int32_t)str[1];
    p.dil_h = (int32_t)dil[0];
    p.dil_w = (int32_t)dil[1];
    p.pad_t = (int32_t)pads[0] + pad_extra[0];
    p.pad_l = (int32_t)pads[1] + pad_extra[1];
    p.pad_b = (int32_t)pads[2] + pad_extra[2];
    p.pad_r = (int32_t)pads[3] + pad_extra[3];
    p.groups = (int32_t)group;
    int32_t oh, ow;
    ms_err e2;
    if (ms_conv2d_shape(&p, xv->h, xv->w, &oh, &ow, &e2) != MS_OK)
        return FAIL(MS_EFORMAT, "%s: node '%s' (Conv): %s", I->src, n->name, e2.msg);
    int32_t y = n->vout[0];
    gnode *g;
    if ((st = new_gnode(I, "conv2d", n, 1, y, &g)) != MS_OK) return st;
    g->in[0] = x;
    g->is_conv = true;
    g->act = MS_ACT_NONE;
    g->conv_out_c = p.out_c;
    g->conv_per_out = (size_t)w->dims[1] * (size_t)p.kh * (size_t)p.kw;
    uint32_t wd[4] = {(uint32_t)w->dims[0], (uint32_t)w->dims[1], (uint32_t)w->dims[2],
                      (uint32_t)w->dims[3]};
    if ((st = new_tensor(I, g->name, ".weight", 4, wd, w->f, &g->wt)) != MS_OK) return st;
    if (b != NULL && (st = new_tensor(I, g->name, ".bias", 1, wd, b->f, &g->bt)) != MS_OK)
        return st;
    int len = snprintf(g->keys, sizeof g->keys, "stride=%d,%d pad=%d,%d,%d,%d", p.stride_h,
                       p.stride_w, p.pad_t, p.pad_l, p.pad_b, p.pad_r);
    if (p.dil_h != 1 || p.dil_w != 1)
        len +=
            snprintf(g->keys + len, sizeof g->keys - (size_t)len, " dil=%d,%d", p.dil_h, p.dil_w);
    if (p.groups != 1)
        snprintf(g->keys + len, sizeof g->keys - (size_t)len, " groups=%d", p.groups);
    set_shape(I, y, 4, p.out_c, oh, ow);
    return MS_OK;
}

static ms_status op_batchnorm(imp *I, onode *n) {
    static const char *const ok[] = {"epsilon", "momentum", "training_mode", "spatial", NULL};
    ms_status st = check_attrs(I, n, ok);
    if (st != MS_OK) return st;
    int32_t x;
    const ctensor *t[4];
    int64_t tm = 0, spatial = 0;
    float eps = 0.0f;
    if ((st = in_val(I, n, 0, &x)) != MS_OK || (st = need_rank4(I, n, x)) != MS_OK ||
        (st = need_out(I, n)) != MS_OK || (st = extra_outputs_unused(I, n, 1)) != MS_OK ||
        (st = attr_float(I, n, "epsilon", 1e-5f, &eps)) != MS_OK ||
        (st = attr_int(I, n, "training_mode", 0, &tm)) != MS_OK ||
        (st = attr_int(I, n, "spatial", 1, &spatial)) != MS_OK)
        return st;
    if (tm != 0 || spatial != 1 || !(eps >= 0.0f))
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (BatchNormalization): training_mode=%lld spatial=%lld "
                    "epsilon=%g (inference, spatial, eps >= 0 only)",
                    I->src, n->name, (long long)tm, (long long)spatial, (double)eps);
    const val *xv = &I->vals[x];
    for (uint32_t k = 0; k < 4; k++) {
        if ((st = in_const(I, n, k + 1, DT_FLOAT, false, &t[k])) != MS_OK) return st;
        if (t[k]->ndim != 1 || t[k]->dims[0] != xv->c)
            return FAIL(MS_EFORMAT,
                        "%s: node '%s' (BatchNormalization): '%s' does not have %d values", I->src,
                        n->name, t[k]->name, xv->c);
    }
    for (int32_t c = 0; c < xv->c; c++)
        if (!(t[3]->f[c] + eps > 0.0f))
            return FAIL(MS_EFORMAT,
                        "%s: node '%s' (BatchNormalization): variance %g + eps is not positive",
                        I->src, n->name, (double)t[3]->f[c]);
    int32_t y = n->vout[0];
    if (xv->gnode >= 0 && I->g[xv->gnode].is_conv && I->g[xv->gnode].act == MS_ACT_NONE &&
        xv->consumers == 1 && !xv->is_out) {
        gnode *c = &I->g[xv->gnode];
        if (c->bt < 0) {
            uint32_t d = (uint32_t)c->conv_out_c;
            if ((st = new_tensor(I, c->name, ".bias", 1, &d, NULL, &c->bt)) != MS_OK) return st;
        }
        ms_batchnorm_fold(c->conv_out_c, c->conv_per_out, I->t[c->wt].data, I->t[c->bt].data,
                          t[0]->f, t[1]->f, t[2]->f, t[3]->f, eps);
        for (size_t i = 0; i < I->t[c->wt].count; i++)
            if (!isfinite(I->t[c->wt].data[i]))
                return FAIL(MS_EFORMAT, "%s: node '%s': folding into '%s' overflows", I->src,
                            n->name, c->name);
        for (size_t i = 0; i < I->t[c->bt].count; i++)
            if (!isfinite(I->t[c->bt].data[i]))
                return FAIL(MS_EFORMAT, "%s: node '%s': folding into '%s' overflows", I->src,
                            n->name, c->name);
        c->out = y;
        I->vals[y].gnode = xv->gnode;
        I->vals[y].defined = true;
        set_shape(I, y, 4, xv->c, xv->h, xv->w);
        return MS_OK;
    }
    gnode *g;
    if ((st = new_gnode(I, "batchnorm", n, 1, y, &g)) != MS_OK) return st;
    g->in[0] = x;
    uint32_t d = (uint32_t)xv->c;
    if ((st = new_tensor(I, g->name, ".weight", 1, &d, t[0]->f, &g->wt)) != MS_OK ||
        (st = new_tensor(I, g->name, ".bias", 1, &d, t[1]->f, &g->bt)) != MS_OK ||
        (st = new_tensor(I, g->name, ".mean", 1, &d, t[2]->f, &g->mt)) != MS_OK ||
        (st = new_tensor(I, g->name, ".var", 1, &d, t[3]->f, &g->vt)) != MS_OK)
        return st;
    snprintf(g->keys, sizeof g->keys, "eps=%.9g", (double)eps);
    set_shape(I, y, 4, xv->c, xv->h, xv->w);
    return MS_OK;
}

static ms_status op_simple_act(imp *I, onode *n) {
    static const char *const none[] = {NULL};
    static const char *const lk[] = {"alpha", NULL};
    bool leaky = strcmp(n->op, "LeakyRelu") == 0;
    ms_status st = check_attrs(I, n, leaky ? lk : none);
    if (st != MS_OK) return st;
    int32_t x;
    float alpha = 0.01f;
    if ((st = in_val(I, n, 0, &x)) != MS_OK || (st = need_out(I, n)) != MS_OK) return st;
    if (leaky && (st = attr_float(I, n, "alpha", 0.01f, &alpha)) != MS_OK) return st;
    ms_act act = MS_ACT_RELU;
    if (leaky) act = MS_ACT_LEAKY_RELU;
    if (strcmp(n->op, "Tanh") == 0) act = MS_ACT_TANH;
    if (strcmp(n->op, "Sigmoid") == 0) {
        act = MS_ACT_SIGMOID;
        /* x * sigmoid(x) is SiLU */
        onode *mul = sole_consumer(I, n->vout[0], "Mul");
        if (mul != NULL && is_pair(I, mul, x, n->vout[0]) && mul->nout >= 1 && mul->vout[0] >= 0 &&
            !I->vals[mul->vout[0]].defined) {
            mul->done = true;
            return emit_act(I, n, x, 2, mul->vout[0], MS_ACT_SILU, 0.01f);
        }
    }
    return emit_act(I, n, x, 1, n->vout[0], act, alpha);
}

/* Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5): torch's exact GELU. */
static ms_status op_div(imp *I, onode *n) {
    ms_status st;
    int32_t x;
    if ((st = check_attrs(I, n, (const char *const[]){NULL})) != MS_OK) return st;
    if (n->nin == 2 && n->vin[0] >= 0 && (st = in_val(I, n, 0, &x)) == MS_OK && n->nout == 1 &&
        n->vout[0] >= 0 && is_scalar(other_const(I, n, x), 1.41421356f, 1e-6f) &&
        resolve(I, n->vin[1]) != x) {
        onode *erf = sole_consumer(I, n->vout[0], "Erf");
        onode *add = erf && erf->nout == 1 && erf->vout[0] >= 0
                         ? sole_consumer(I, erf->vout[0], "Add")
                         : NULL;
        onode *mul = add && add->nout == 1 && add->vout[0] >= 0 &&
                             is_scalar(other_const(I, add, erf->vout[0]), 1.0f, 0.0f)
                         ? sole_consumer(I, add->vout[0], "Mul")
                         : NULL;
        onode *half = mul && mul->nout == 1 && mul->vout[0] >= 0 && is_pair(I, mul, x, add->vout[0])
                          ? sole_consumer(I, mul->vout[0], "Mul")
                          : NULL;
        if (half && half->nout == 1 && half->vout[0] >= 0 &&
            is_scalar(other_const(I, half, mul->vout[0]), 0.5f, 0.0f) &&
            !I->vals[half->vout[0]].defined && erf->nin == 1 && erf->nattr == 0 &&
            add->nattr == 0 && mul->nattr == 0 && half->nattr == 0) {
            erf->done = add->done = mul->done = half->done = true;
            return emit_act(I, n, x, 2, half->vout[0], MS_ACT_GELU, 0.01f);
        }
    }
    return FAIL(MS_EUNSUPPORTED,
                "%s: node '%s': unsupported operator 'Div' (only as part of the exact GELU "
                "pattern x * 0.5 * (1 + erf(x / sqrt 2)))",
                I->src, n->name);
}

static ms_status op_pool(imp *I, onode *n, bool avg) {
    static const char *const okm[] = {"auto_pad", "ceil_mode", "dilations",     "kernel_shape",
                                      "pads",     "strides",   "storage_order", NULL};
    static const char *const oka[] = {
        "auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides", NULL};
    ms_status st = check_attrs(I, n, avg ? oka : okm);
    if (st != MS_OK) return st;
    static const int64_t one2[2] = {1, 1}, zero4[4] = {0, 0, 0, 0};
    int64_t ks[2] = {0}, str[2] = {0}, pads[4] = {0}, dil[2] = {0}, ceil = 0, cip = 0, so = 0;
    int32_t x = -1, pad_extra[4] = {0, 0, 0, 0};
    if (strcmp(attr_str(n, "auto_pad", "NOTSET"), "NOTSET") != 0)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): auto_pad '%s' (only NOTSET)", I->src,
                    n->name, n->op, attr_str(n, "auto_pad", ""));
    if (avg && n->nin >= 1 && n->vin[0] >= 0) {
        val *pv = &I->vals[resolve(I, n->vin[0])];
        if (pv->pad_src >= 0) {
            memcpy(pad_extra, pv->pad, sizeof pad_extra);
            x = pv->pad_src;
        }
    }
    if (x < 0 && (st = in_val(I, n, 0, &x)) != MS_OK) return st;
    if ((st = need_rank4(I, n, x)) != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = extra_outputs_unused(I, n, 1)) != MS_OK ||
        (st = attr_ints(I, n, "kernel_shape", 2, 1, 65535, NULL, ks)) != MS_OK ||
        (st = attr_ints(I, n, "strides", 2, 1, 65535, one2, str)) != MS_OK ||
        (st = attr_ints(I, n, "pads", 4, 0, 65535, zero4, pads)) != MS_OK ||
        (st = attr_ints(I, n, "dilations", 2, 1, 1, one2, dil)) != MS_OK ||
        (st = attr_int(I, n, "ceil_mode", 0, &ceil)) != MS_OK ||
        (st = attr_int(I, n, "count_include_pad", 0, &cip)) != MS_OK ||
        (st = attr_int(I, n, "storage_order", 0, &so)) != MS_OK)
        return st;
    if ((ceil != 0 && ceil != 1) || (cip != 0 && cip != 1) || so != 0)
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (%s): ceil_mode=%lld count_include_pad=%lld "
                    "storage_order=%lld",
                    I->src, n->name, n->op, (long long)ceil, (long long)cip, (long long)so);
    bool extra = pad_extra[0] || pad_extra[1] || pad_extra[2] || pad_extra[3];
    bool own = pads[0] || pads[1] || pads[2] || pads[3];
    if (extra && own && cip == 0)
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (AveragePool): a Pad before a pool that excludes its own "
                    "padding",
                    I->src, n->name);
    if (extra) cip = 1;
    const val *xv = &I->vals[x];
    ms_pool2d p = {0};
    p.kind = avg ? MS_POOL_AVG : MS_POOL_MAX;
    p.kh = (int32_t)ks[0];
    p.kw = (int32_t)ks[1];
    p.stride_h = (int32_t)str[0];
    p.stride_w = (int32_t)str[1];
    p.pad_t = (int32_t)pads[0] + pad_extra[0];
    p.pad_l = (int32_t)pads[1] + pad_extra[1];
    p.pad_b = (int32_t)pads[2] + pad_extra[2];
    p.pad_r = (int32_t)pads[3] + pad_extra[3];
    p.ceil_mode = ceil != 0;
    p.count_include_pad = cip != 0;
    int32_t oh, ow;
    ms_err e2;
    if (ms_pool2d_shape(&p, xv->h, xv->w, &oh, &ow, &e2) != MS_OK)
        return FAIL(MS_EFORMAT, "%s: node '%s' (%s): %s", I->src, n->name, n->op, e2.msg);
    gnode *g;
    int32_t y = n->vout[0];
    if ((st = new_gnode(I, avg ? "avgpool" : "maxpool", n, 1, y, &g)) != MS_OK) return st;
    g->in[0] = x;
    int len =
        snprintf(g->keys, sizeof g->keys, "k=%d,%d stride=%d,%d pad=%d,%d,%d,%d ceil=%d", p.kh,
                 p.kw, p.stride_h, p.stride_w, p.pad_t, p.pad_l, p.pad_b, p.pad_r, (int)ceil);
    if (avg) snprintf(g->keys + len, sizeof g->keys - (size_t)len, " include_pad=%d", (int)cip);
    set_shape(I, y, 4, xv->c, oh, ow);
    return MS_OK;
}

/* Pad with zeros on H and W only: folded into the following Conv or AveragePool. */
static ms_status op_pad(imp *I, onode *n) {
    static const char *const ok[] = {"mode", "pads", "value", NULL};
    ms_status st = check_attrs(I, n, ok);
    if (st != MS_OK) return st;
    int32_t x;
    if ((st = in_val(I, n, 0, &x)) != MS_OK || (st = need_rank4(I, n, x)) != MS_OK ||
        (st = need_out(I, n)) != MS_OK)
        return st;
    if (strcmp(attr_str(n, "mode", "constant"), "constant") != 0)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Pad): mode '%s' (only constant zeros)", I->src,
                    n->name, attr_str(n, "mode", ""));
    int64_t pads[8];
    float value = 0.0f;
    if (I->opset < 11) {
        if ((st = attr_ints(I, n, "pads", 8, 0, 65535, NULL, pads)) != MS_OK ||
            (st = attr_float(I, n, "value", 0.0f, &value)) != MS_OK)
            return st;
    } else {
        const ctensor *pt, *vt;
        if ((st = in_const(I, n, 1, DT_INT64, false, &pt)) != MS_OK ||
            (st = in_const(I, n, 2, DT_FLOAT, true, &vt)) != MS_OK)
            return st;
        if (pt->count != 8 || (vt != NULL && vt->count != 1))
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Pad): pads must have 8 values", I->src,
                        n->name);
        for (int k = 0; k < 8; k++) pads[k] = pt->i[k];
        if (vt != NULL) value = vt->f[0];
        if (n->nin > 3)
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Pad): axes are not supported", I->src,
                        n->name);
    }
    if (value != 0.0f || pads[0] || pads[1] || pads[4] || pads[5])
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Pad): only zero padding of H and W", I->src,
                    n->name);
    for (int k = 0; k < 8; k++)
        if (pads[k] < 0 || pads[k] > 65535)
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Pad): pad %lld", I->src, n->name,
                        (long long)pads[k]);
    val *y = &I->vals[n->vout[0]];
    if (!pads[2] && !pads[3] && !pads[6] && !pads[7]) {
        set_alias(I, n->vout[0], x);
        return MS_OK;
    }
    y->pad_src = x;
    y->pad[0] = (int32_t)pads[2];
    y->pad[1] = (int32_t)pads[3];
    y->pad[2] = (int32_t)pads[6];
    y->pad[3] = (int32_t)pads[7];
    y->defined = true;
    return MS_OK;
}

static ms_status op_global_pool(imp *I, onode *n, bool avg) {
    ms_status st = check_attrs(I, n, (const char *const[]){NULL});
    int32_t x;
    if (st != MS_OK || (st = in_val(I, n, 0, &x)) != MS_OK || (st = need_rank4(I, n, x)) != MS_OK ||
        (st = need_out(I, n)) != MS_OK)
        return st;
    gnode *g;
    if ((st = new_gnode(I, avg ? "globalavgpool" : "globalmaxpool", n, 1, n->vout[0], &g)) != MS_OK)
        return st;
    g->in[0] = x;
    set_shape(I, n->vout[0], 4, I->vals[x].c, 1, 1);
    return MS_OK;
}

static ms_status op_resize(imp *I, onode *n) {
    static const char *const ok[] = {"mode",
                                     "coordinate_transformation_mode",
                                     "nearest_mode",
                                     "cubic_coeff_a",
                                     "exclude_outside",
                                     "extrapolation_value",
                                     "scales",
                                     NULL};
    ms_status st = check_attrs(I, n, ok);
    if (st != MS_OK) return st;
    int32_t x;
    if ((st = in_val(I, n, 0, &x)) != MS_OK || (st = need_rank4(I, n, x)) != MS_OK ||
        (st = need_out(I, n)) != MS_OK)
        return st;
    bool upsample = strcmp(n->op, "Upsample") == 0;
    bool old = upsample || I->opset < 11;
    const char *mode = attr_str(n, "mode", "nearest");
    const char *ctm =
        attr_str(n, "coordinate_transformation_mode", old ? "asymmetric" : "half_pixel");
    const char *nm = attr_str(n, "nearest_mode", old ? "floor" : "round_prefer_floor");
    int64_t excl = 0;
    if ((st = attr_int(I, n, "exclude_outside", 0, &excl)) != MS_OK) return st;
    bool bilinear, align = false;
    if (strcmp(mode, "nearest") == 0) {
        if (strcmp(ctm, "asymmetric") != 0 || strcmp(nm, "floor") != 0)
            return FAIL(MS_EUNSUPPORTED,
                        "%s: node '%s' (%s): nearest with coordinate_transformation_mode '%s' "
                        "and nearest_mode '%s' (only asymmetric + floor)",
                        I->src, n->name, n->op, ctm, nm);
        bilinear = false;
    } else if (strcmp(mode, "linear") == 0 || strcmp(mode, "bilinear") == 0) {
        if (strcmp(ctm, "half_pixel") == 0 || strcmp(ctm, "pytorch_half_pixel") == 0)
            align = false;
        else if (strcmp(ctm, "align_corners") == 0)
            align = true;
        else
            return FAIL(MS_EUNSUPPORTED,
                        "%s: node '%s' (%s): linear with coordinate_transformation_mode '%s' "
                        "(only half_pixel, pytorch_half_pixel, align_corners)",
                        I->src, n->name, n->op, ctm);
        bilinear = true;
    } else {
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): mode '%s' (only nearest and linear)",
                    I->src, n->name, n->op, mode);
    }
    if (excl != 0)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): exclude_outside=%lld", I->src, n->name,
                    n->op, (long long)excl);
    const ctensor *scales = NULL, *sizes = NULL;
    float sc[4] = {0, 0, 0, 0};
    bool have_scales = false;
    const attr *sa = get_attr(n, "scales");
    if (sa != NULL) {
        if (sa->nfloats != 4)
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): scales must have 4 values", I->src,
                        n->name, n->op);
        memcpy(sc, sa->floats, sizeof sc);
        have_scales = true;
    } else {
        uint32_t si = (upsample || I->opset < 11) ? 1 : 2;
        if ((st = in_const(I, n, si, DT_FLOAT, true, &scales)) != MS_OK) return st;
        if (!upsample && I->opset >= 11 &&
            (st = in_const(I, n, 3, DT_INT64, true, &sizes)) != MS_OK)
            return st;
        if (scales != NULL && scales->count == 4) {
            memcpy(sc, scales->f, sizeof sc);
            have_scales = true;
        } else if (scales != NULL && scales->count != 0) {
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): scales must have 4 values", I->src,
                        n->name, n->op);
        }
    }
    const val *xv = &I->vals[x];
    gnode *g;
    int32_t y = n->vout[0];
    if (have_scales) {
        if (sc[0] != 1.0f || sc[1] != 1.0f)
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): scales of N and C must be 1", I->src,
                        n->name, n->op);
        for (int k = 2; k < 4; k++)
            if (!(sc[k] >= 1.0f && sc[k] <= 1024.0f) || sc[k] != floorf(sc[k]))
                return FAIL(MS_EUNSUPPORTED,
                            "%s: node '%s' (%s): scale %g (only integer factors 1 to 1024)", I->src,
                            n->name, n->op, (double)sc[k]);
        int64_t oh = (int64_t)xv->h * (int64_t)sc[2], ow = (int64_t)xv->w * (int64_t)sc[3];
        if (oh > 1000000 || ow > 1000000)
            return FAIL(MS_ELIMIT, "%s: node '%s' (%s): output too large", I->src, n->name, n->op);
        if ((st = new_gnode(I, "upsample", n, 1, y, &g)) != MS_OK) return st;
        snprintf(g->keys, sizeof g->keys, "mode=%s align=%d scale=%d,%d",
                 bilinear ? "bilinear" : "nearest", align ? 1 : 0, (int)sc[2], (int)sc[3]);
        set_shape(I, y, 4, xv->c, (int32_t)oh, (int32_t)ow);
    } else if (sizes != NULL) {
        if (sizes->count != 4 || sizes->i[1] != xv->c || sizes->i[2] < 1 || sizes->i[3] < 1 ||
            sizes->i[2] > 1000000 || sizes->i[3] > 1000000)
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): sizes must be [N, %d, H, W]", I->src,
                        n->name, n->op, xv->c);
        if ((st = new_gnode(I, "upsample", n, 1, y, &g)) != MS_OK) return st;
        snprintf(g->keys, sizeof g->keys, "mode=%s align=%d size=%lld,%lld",
                 bilinear ? "bilinear" : "nearest", align ? 1 : 0, (long long)sizes->i[2],
                 (long long)sizes->i[3]);
        set_shape(I, y, 4, xv->c, (int32_t)sizes->i[2], (int32_t)sizes->i[3]);
    } else {
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): neither constant scales nor sizes",
                    I->src, n->name, n->op);
    }
    g->in[0] = x;
    return MS_OK;
}

static ms_status op_concat(imp *I, onode *n) {
    static const char *const ok[] = {"axis", NULL};
    ms_status st = check_attrs(I, n, ok);
    int64_t axis = 0;
    if (st != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = attr_int(I, n, "axis", 1, &axis)) != MS_OK)
        return st;
    if (n->nin < 1 || n->nin > MS_ONNX_MAX_NODE_IO)
        return FAIL(MS_EFORMAT, "%s: node '%s' (Concat) has no inputs", I->src, n->name);
    int32_t x0;
    if ((st = in_val(I, n, 0, &x0)) != MS_OK) return st;
    const val *v0 = &I->vals[x0];
    if (axis != 1 && axis != 1 - v0->rank)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Concat): axis %lld (only channels)", I->src,
                    n->name, (long long)axis);
    if (n->nin == 1) {
        set_alias(I, n->vout[0], x0);
        return MS_OK;
    }
    gnode *g;
    if ((st = new_gnode(I, "concat", n, n->nin, n->vout[0], &g)) != MS_OK) return st;
    int64_t c = 0;
    for (uint32_t k = 0; k < n->nin; k++) {
        int32_t x;
        if ((st = in_val(I, n, k, &x)) != MS_OK) return st;
        const val *v = &I->vals[x];
        if (v->rank != v0->rank || v->h != v0->h || v->w != v0->w)
            return FAIL(MS_EFORMAT, "%s: node '%s' (Concat): input '%s' is %dx%d, '%s' %dx%d",
                        I->src, n->name, v->name, v->h, v->w, v0->name, v0->h, v0->w);
        c += v->c;
        g->in[k] = x;
    }
    if (c > INT32_MAX)
        return FAIL(MS_EOVERFLOW, "%s: node '%s': too many channels", I->src, n->name);
    set_shape(I, n->vout[0], v0->rank, (int32_t)c, v0->h, v0->w);
    return MS_OK;
}

static bool broadcasts(const val *a, const val *b) {
    if (a->rank != b->rank) return false;
    if (b->c == a->c && b->h == a->h && b->w == a->w) return true;
    return a->rank == 4 && b->h == 1 && b->w == 1 && (b->c == a->c || b->c == 1);
}

static ms_status op_binary(imp *I, onode *n, bool add) {
    ms_status st = check_attrs(I, n, (const char *const[]){NULL});
    int32_t a, b;
    if (st != MS_OK) return st;
    if (n->nin == 2 && ((n->vin[0] >= 0 && I->vals[resolve(I, n->vin[0])].k) ||
                        (n->vin[1] >= 0 && I->vals[resolve(I, n->vin[1])].k)))
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (%s): a constant operand is not supported (only two computed "
                    "tensors)",
                    I->src, n->name, n->op);
    if ((st = in_val(I, n, 0, &a)) != MS_OK || (st = in_val(I, n, 1, &b)) != MS_OK ||
        (st = need_out(I, n)) != MS_OK)
        return st;
    if (!broadcasts(&I->vals[a], &I->vals[b])) {
        int32_t t = a;
        a = b;
        b = t;
        if (!broadcasts(&I->vals[a], &I->vals[b]))
            return FAIL(MS_EUNSUPPORTED,
                        "%s: node '%s' (%s): shapes [%d,%d,%d] and [%d,%d,%d] do not broadcast "
                        "as the graph format allows",
                        I->src, n->name, n->op, I->vals[a].c, I->vals[a].h, I->vals[a].w,
                        I->vals[b].c, I->vals[b].h, I->vals[b].w);
    }
    gnode *g;
    if ((st = new_gnode(I, add ? "add" : "mul", n, 2, n->vout[0], &g)) != MS_OK) return st;
    g->in[0] = a;
    g->in[1] = b;
    const val *va = &I->vals[a];
    set_shape(I, n->vout[0], va->rank, va->c, va->h, va->w);
    return MS_OK;
}

static ms_status emit_fc(imp *I, const onode *n, int32_t x, const ctensor *w, bool trans,
                         const ctensor *b, int32_t y) {
    const val *xv = &I->vals[x];
    ms_status st;
    if (xv->rank != 2)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): input '%s' must be 2-D (after Flatten)",
                    I->src, n->name, n->op, xv->name);
    if (w->ndim != 2 || w->dims[0] < 1 || w->dims[1] < 1)
        return FAIL(MS_EFORMAT, "%s: node '%s' (%s): weight '%s' must be 2-D", I->src, n->name,
                    n->op, w->name);
    int64_t out = trans ? w->dims[0] : w->dims[1], in = trans ? w->dims[1] : w->dims[0];
    if (in != xv->c || out > INT32_MAX)
        return FAIL(MS_EFORMAT, "%s: node '%s' (%s): weight [%lld,%lld] does not fit %d inputs",
                    I->src, n->name, n->op, (long long)w->dims[0], (long long)w->dims[1], xv->c);
    if (b != NULL &&
        !(b->count == (size_t)out && (b->ndim == 1 || (b->ndim == 2 && b->dims[0] == 1))))
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (%s): bias '%s' must have %lld values", I->src,
                    n->name, n->op, b->name, (long long)out);
    gnode *g;
    if ((st = new_gnode(I, "fc", n, 1, y, &g)) != MS_OK) return st;
    g->in[0] = x;
    uint32_t d[2] = {(uint32_t)out, (uint32_t)in};
    if ((st = new_tensor(I, g->name, ".weight", 2, d, trans ? w->f : NULL, &g->wt)) != MS_OK)
        return st;
    if (!trans) {
        float *dst = I->t[g->wt].data;
        for (size_t o = 0; o < (size_t)out; o++)
            for (size_t i = 0; i < (size_t)in; i++)
                dst[o * (size_t)in + i] = w->f[i * (size_t)out + o];
    }
    if (b != NULL && (st = new_tensor(I, g->name, ".bias", 1, d, b->f, &g->bt)) != MS_OK) return st;
    set_shape(I, y, 2, (int32_t)out, 1, 1);
    return MS_OK;
}

static ms_status op_gemm(imp *I, onode *n) {
    static const char *const ok[] = {"alpha", "beta", "transA", "transB", NULL};
    ms_status st = check_attrs(I, n, ok);
    int32_t x;
    const ctensor *w, *b;
    float alpha, beta;
    int64_t ta, tb;
    if (st != MS_OK || (st = in_val(I, n, 0, &x)) != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = in_const(I, n, 1, DT_FLOAT, false, &w)) != MS_OK ||
        (st = in_const(I, n, 2, DT_FLOAT, true, &b)) != MS_OK ||
        (st = attr_float(I, n, "alpha", 1.0f, &alpha)) != MS_OK ||
        (st = attr_float(I, n, "beta", 1.0f, &beta)) != MS_OK ||
        (st = attr_int(I, n, "transA", 0, &ta)) != MS_OK ||
        (st = attr_int(I, n, "transB", 0, &tb)) != MS_OK)
        return st;
    if (alpha != 1.0f || beta != 1.0f || ta != 0 || (tb != 0 && tb != 1))
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (Gemm): alpha=%g beta=%g transA=%lld transB=%lld (only alpha = "
                    "beta = 1, transA = 0)",
                    I->src, n->name, (double)alpha, (double)beta, (long long)ta, (long long)tb);
    return emit_fc(I, n, x, w, tb == 1, b, n->vout[0]);
}

static ms_status op_matmul(imp *I, onode *n) {
    ms_status st = check_attrs(I, n, (const char *const[]){NULL});
    int32_t x;
    const ctensor *w;
    if (st != MS_OK || (st = in_val(I, n, 0, &x)) != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = in_const(I, n, 1, DT_FLOAT, false, &w)) != MS_OK)
        return st;
    onode *add = sole_consumer(I, n->vout[0], "Add");
    const ctensor *b = add ? other_const(I, add, n->vout[0]) : NULL;
    if (b != NULL && b->dtype == DT_FLOAT && add->nout == 1 && add->vout[0] >= 0 &&
        !I->vals[add->vout[0]].defined && add->nattr == 0) {
        for (size_t i = 0; i < b->count; i++)
            if (!isfinite(b->f[i]))
                return FAIL(MS_EFORMAT, "%s: tensor '%s' has a non-finite value", I->src, b->name);
        add->done = true;
        return emit_fc(I, n, x, w, false, b, add->vout[0]);
    }
    return emit_fc(I, n, x, w, false, NULL, n->vout[0]);
}

static ms_status emit_flatten(imp *I, const onode *n, int32_t x) {
    const val *xv = &I->vals[x];
    int64_t c = (int64_t)xv->c * xv->h * xv->w;
    if (c > INT32_MAX) return FAIL(MS_EOVERFLOW, "%s: node '%s': too large", I->src, n->name);
    if (xv->rank == 2) {
        set_alias(I, n->vout[0], x);
        return MS_OK;
    }
    gnode *g = NULL;
    ms_status st = new_gnode(I, "flatten", n, 1, n->vout[0], &g);
    if (st != MS_OK) return st;
    g->in[0] = x;
    set_shape(I, n->vout[0], 2, (int32_t)c, 1, 1);
    return MS_OK;
}

static ms_status op_flatten(imp *I, onode *n) {
    static const char *const ok[] = {"axis", NULL};
    ms_status st = check_attrs(I, n, ok);
    int32_t x;
    int64_t axis = 0;
    if (st != MS_OK || (st = in_val(I, n, 0, &x)) != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = attr_int(I, n, "axis", 1, &axis)) != MS_OK)
        return st;
    if (axis != 1 && axis != 1 - I->vals[x].rank)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Flatten): axis %lld (only 1)", I->src, n->name,
                    (long long)axis);
    return emit_flatten(I, n, x);
}

static ms_status op_reshape(imp *I, onode *n) {
    static const char *const ok[] = {"allowzero", NULL};
    ms_status st = check_attrs(I, n, ok);
    int32_t x;
    const ctensor *s;
    int64_t az;
    if (st != MS_OK || (st = in_val(I, n, 0, &x)) != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = in_const(I, n, 1, DT_INT64, false, &s)) != MS_OK ||
        (st = attr_int(I, n, "allowzero", 0, &az)) != MS_OK)
        return st;
    const val *xv = &I->vals[x];
    int64_t chw = (int64_t)xv->c * xv->h * xv->w;
    const vinfo *in = NULL;
    for (uint32_t i = 0; i < I->ninputs; i++)
        if (val_find(I, I->inputs[i].name) == I->image_input) in = &I->inputs[i];
    bool batch_ok = s->count == 2 && (s->i[0] == 0 || (s->i[0] == -1 && s->i[1] == chw) ||
                                      (in != NULL && in->dims[0] >= 1 && s->i[0] == in->dims[0]));
    if (az != 0 || !batch_ok || (s->i[1] != -1 && s->i[1] != chw))
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (Reshape): only a flatten to [N, -1] or [0, -1] is supported "
                    "(shape has %zu values%s)",
                    I->src, n->name, s->count, s->count == 2 ? ", not a flatten" : "");
    return emit_flatten(I, n, x);
}

static ms_status op_softmax(imp *I, onode *n) {
    static const char *const ok[] = {"axis", NULL};
    ms_status st = check_attrs(I, n, ok);
    int32_t x;
    int64_t axis = 0;
    if (st != MS_OK || (st = in_val(I, n, 0, &x)) != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = attr_int(I, n, "axis", I->opset >= 13 ? -1 : 1, &axis)) != MS_OK)
        return st;
    const val *xv = &I->vals[x];
    if (axis < 0) axis += xv->rank;
    /* Before opset 13, Softmax flattens from axis on: channels only when H = W = 1. */
    if (axis != 1 || (xv->rank == 4 && I->opset < 13 && xv->h * xv->w != 1))
        return FAIL(MS_EUNSUPPORTED,
                    "%s: node '%s' (Softmax): axis %lld on a %d-D input (only "
                    "over channels)",
                    I->src, n->name, (long long)axis, xv->rank);
    gnode *g;
    if ((st = new_gnode(I, "softmax", n, 1, n->vout[0], &g)) != MS_OK) return st;
    g->in[0] = x;
    set_shape(I, n->vout[0], xv->rank, xv->c, xv->h, xv->w);
    return MS_OK;
}

static ms_status op_constant(imp *I, onode *n) {
    ms_status st = need_out(I, n);
    if (st != MS_OK) return st;
    if (n->nattr != 1)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Constant): expected one attribute", I->src,
                    n->name);
    const attr *a = &n->attrs[0];
    ctensor *t = aalloc(&I->work, sizeof *t);
    if (t == NULL) return NOMEM();
    memset(t, 0, sizeof *t);
    t->name = n->out[0];
    if (strcmp(a->name, "value") == 0 && a->t != NULL) {
        *t = *a->t;
        t->name = n->out[0];
    } else if (strcmp(a->name, "value_float") == 0 || strcmp(a->name, "value_floats") == 0) {
        bool one = a->name[11] == '\0';
        t->dtype = DT_FLOAT;
        t->ndim = one ? 0 : 1;
        t->count = one ? 1 : a->nfloats;
        t->dims[0] = (int64_t)t->count;
        t->f = one ? aalloc(&I->work, sizeof(float)) : a->floats;
        if (one && t->f == NULL) return NOMEM();
        if (one) t->f[0] = a->f;
    } else if (strcmp(a->name, "value_int") == 0 || strcmp(a->name, "value_ints") == 0) {
        bool one = a->name[9] == '\0';
        t->dtype = DT_INT64;
        t->ndim = one ? 0 : 1;
        t->count = one ? 1 : a->nints;
        t->dims[0] = (int64_t)t->count;
        t->i = one ? aalloc(&I->work, sizeof(int64_t)) : a->ints;
        if (one && t->i == NULL) return NOMEM();
        if (one) t->i[0] = a->i;
    } else {
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Constant): attribute '%s'", I->src, n->name,
                    a->name);
    }
    if (t->dtype == DT_FLOAT && t->f == NULL && t->count > 0)
        return FAIL(MS_EFORMAT, "%s: node '%s' (Constant): no data", I->src, n->name);
    if (t->dtype == DT_INT64 && t->i == NULL && t->count > 0)
        return FAIL(MS_EFORMAT, "%s: node '%s' (Constant): no data", I->src, n->name);
    I->vals[n->vout[0]].k = t;
    return MS_OK;
}

static ms_status op_identity(imp *I, onode *n) {
    static const char *const ok[] = {"ratio", "seed", "is_test", NULL};
    ms_status st = check_attrs(I, n, ok);
    int32_t x;
    if (st != MS_OK || (st = in_val(I, n, 0, &x)) != MS_OK || (st = need_out(I, n)) != MS_OK ||
        (st = extra_outputs_unused(I, n, 1)) != MS_OK)
        return st;
    if (strcmp(n->op, "Dropout") == 0 && n->nin >= 3 && n->vin[2] >= 0) {
        const val *tm = &I->vals[resolve(I, n->vin[2])];
        if (tm->k == NULL || tm->k->count != 1 ||
            (tm->k->dtype != 9 /* bool: not materialised */ && tm->k->dtype != DT_INT64))
            return FAIL(MS_EUNSUPPORTED,
                        "%s: node '%s' (Dropout): training_mode must be a "
                        "constant false",
                        I->src, n->name);
        if (tm->k->dtype == DT_INT64 && tm->k->i[0] != 0)
            return FAIL(MS_EUNSUPPORTED, "%s: node '%s' (Dropout): training_mode is true", I->src,
                        n->name);
    }
    set_alias(I, n->vout[0], x);
    return MS_OK;
}

static ms_status run_node(imp *I, onode *n) {
    const char *op = n->op;
    if (n->domain[0] != '\0' && strcmp(n->domain, "ai.onnx") != 0)
        return FAIL(MS_EUNSUPPORTED, "%s: node '%s': operator '%s' of domain '%s' is not supported",
                    I->src, n->name, op, n->domain);
    if (strcmp(op, "Conv") == 0) return op_conv(I, n);
    if (strcmp(op, "BatchNormalization") == 0) return op_batchnorm(I, n);
    if (strcmp(op, "Relu") == 0 || strcmp(op, "LeakyRelu") == 0 || strcmp(op, "Sigmoid") == 0 ||
        strcmp(op, "Tanh") == 0)
        return op_simple_act(I, n);
    if (strcmp(op, "Div") == 0) return op_div(I, n);
    if (strcmp(op, "MaxPool") == 0) return op_pool(I, n, false);
    if (strcmp(op, "AveragePool") == 0) return op_pool(I, n, true);
    if (strcmp(op, "GlobalAveragePool") == 0) return op_global_pool(I, n, true);
    if (strcmp(op, "GlobalMaxPool") == 0) return op_global_pool(I, n, false);
    if (strcmp(op, "Resize") == 0 || strcmp(op, "Upsample") == 0) return op_resize(I, n);
    if (strcmp(op, "Concat") == 0) return op_concat(I, n);
    if (strcmp(op, "Add") == 0) return op_binary(I, n, true);
    if (strcmp(op, "Mul") == 0) return op_binary(I, n, false);
    if (strcmp(op, "Gemm") == 0) return op_gemm(I, n);
    if (strcmp(op, "MatMul") == 0) return op_matmul(I, n);
    if (strcmp(op, "Flatten") == 0) return op_flatten(I, n);
    if (strcmp(op, "Reshape") == 0) return op_reshape(I, n);
    if (strcmp(op, "Softmax") == 0) return op_softmax(I, n);
    if (strcmp(op, "Constant") == 0) return op_constant(I, n);
    if (strcmp(op, "Identity") == 0 || strcmp(op, "Dropout") == 0) return op_identity(I, n);
    if (strcmp(op, "Pad") == 0) return op_pad(I, n);
    return FAIL(MS_EUNSUPPORTED, "%s: node '%s': unsupported operator '%s'", I->src, n->name, op);
}

/* ---------------------------------------------------------------- text output */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *p = ms_realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true;
        return;
    }
    sb_put(b, tmp, (size_t)n);
}

static const char *act_name(ms_act a) {
    switch (a) {
    case MS_ACT_RELU: return "relu";
    case MS_ACT_LEAKY_RELU: return "leaky_relu";
    case MS_ACT_SILU: return "silu";
    case MS_ACT_SIGMOID: return "sigmoid";
    case MS_ACT_TANH: return "tanh";
    case MS_ACT_GELU: return "gelu";
    default: return "none";
    }
}

typedef struct priv {
    arena res;
    char *graph;
    ms_onnx_tensor *tensors;
} priv;

/* Dead nodes out, names checked unique, the text and the tensor list written. */
static ms_status finish(imp *I, ms_onnx_model *m) {
    ms_status st;
    /* liveness, in reverse order: producers come before consumers */
    bool *used = acalloc(&I->work, I->nvals + 1, sizeof *used);
    if (used == NULL) return NOMEM();
    int32_t *outs = acalloc(&I->work, I->noutputs, sizeof *outs);
    if (outs == NULL) return NOMEM();
    for (uint32_t i = 0; i < I->noutputs; i++) {
        int32_t id = resolve(I, val_find(I, I->outputs[i].name));
        const val *v = &I->vals[id];
        if (v->k != NULL || !v->defined || v->pad_src >= 0 || id == I->image_input)
            return FAIL(MS_EUNSUPPORTED, "%s: graph output '%s' is %s", I->src, I->outputs[i].name,
                        v->k ? "a constant"
                             : (id == I->image_input ? "the input itself" : "never computed"));
        for (uint32_t j = 0; j < i; j++)
            if (outs[j] == id)
                return FAIL(MS_EUNSUPPORTED, "%s: graph outputs '%s' and '%s' are the same value",
                            I->src, I->outputs[j].name, I->outputs[i].name);
        outs[i] = id;
        used[id] = true;
    }
    for (uint32_t gi = I->ng; gi-- > 0;) {
        gnode *g = &I->g[gi];
        g->live = used[g->out];
        if (!g->live) continue;
        for (uint32_t k = 0; k < g->nin; k++) used[g->in[k]] = true;
    }
    if (!used[I->image_input])
        return FAIL(MS_EUNSUPPORTED, "%s: the outputs do not depend on input '%s'", I->src,
                    I->vals[I->image_input].name);
    /* unique names: emitted values, and graph nodes (separate namespaces) */
    size_t cap = 64, total = (size_t)I->ng * 2 + 2;
    while (cap < 2 * total) cap *= 2;
    const char **hs = acalloc(&I->work, cap, sizeof *hs);
    int *hp = acalloc(&I->work, cap, sizeof *hp);
    if (hs == NULL || hp == NULL) return NOMEM();
    for (uint32_t gi = 0; gi <= I->ng; gi++) {
        for (int pass = 0; pass < 2; pass++) {
            const char *s;
            if (gi == I->ng) {
                if (pass == 1) break;
                s = I->vals[I->image_input].gname;
            } else {
                if (!I->g[gi].live) break;
                s = pass == 0 ? I->vals[I->g[gi].out].gname : I->g[gi].name;
            }
            for (size_t h = hash_str(s) & (cap - 1);; h = (h + 1) & (cap - 1)) {
                if (hs[h] == NULL) {
                    hs[h] = s;
                    hp[h] = pass;
                    break;
                }
                if (hp[h] == pass && strcmp(hs[h], s) == 0)
                    return FAIL(MS_EUNSUPPORTED,
                                "%s: the %s name '%s' is used twice after mapping ONNX names to "
                                "the graph alphabet",
                                I->src, pass ? "node" : "value", s);
            }
        }
    }
    sbuf b = {0};
    const val *in = &I->vals[I->image_input];
    sb_printf(&b, "graph 1\n# imported from ONNX (opset %lld, producer '%s')\n",
              (long long)I->opset, I->producer);
    sb_printf(&b, "input %s %d %d %d\n", in->gname, in->c, in->h, in->w);
    uint32_t nlive_t = 0;
    for (uint32_t gi = 0; gi < I->ng; gi++) {
        const gnode *g = &I->g[gi];
        if (!g->live) continue;
        sb_printf(&b, "node %s %s in=", g->op, g->name);
        for (uint32_t k = 0; k < g->nin; k++) {
            if (k) sb_puts(&b, ",");
            sb_puts(&b, I->vals[g->in[k]].gname);
        }
        sb_printf(&b, " out=%s", I->vals[g->out].gname);
        static const char *const tk[4] = {"weight", "bias", "mean", "var"};
        const int32_t ti[4] = {g->wt, g->bt, g->mt, g->vt};
        for (int k = 0; k < 4; k++)
            if (ti[k] >= 0) {
                sb_printf(&b, " %s=%s", tk[k], I->t[ti[k]].name);
                nlive_t++;
            }
        if (g->keys[0]) sb_printf(&b, " %s", g->keys);
        if (g->is_conv || strcmp(g->op, "act") == 0) {
            if (g->act != MS_ACT_NONE || !g->is_conv) sb_printf(&b, " act=%s", act_name(g->act));
            if (g->act == MS_ACT_LEAKY_RELU) sb_printf(&b, " alpha=%.9g", (double)g->alpha);
        }
        sb_puts(&b, "\n");
    }
    for (uint32_t i = 0; i < I->noutputs; i++) sb_printf(&b, "output %s\n", I->vals[outs[i]].gname);
    if (b.oom) {
        ms_free(b.p);
        return NOMEM();
    }
    priv *pv = m->priv_;
    pv->graph = b.p;
    m->graph = b.p;
    m->graph_len = b.len;
    pv->tensors = ms_calloc(nlive_t + 1, sizeof *pv->tensors);
    if (pv->tensors == NULL) return NOMEM();
    uint32_t k = 0;
    for (uint32_t gi = 0; gi < I->ng; gi++) {
        const gnode *g = &I->g[gi];
        if (!g->live) continue;
        const int32_t ti[4] = {g->wt, g->bt, g->mt, g->vt};
        for (int j = 0; j < 4; j++) {
            if (ti[j] < 0) continue;
            const otensor *t = &I->t[ti[j]];
            ms_onnx_tensor *o = &pv->tensors[k++];
            o->name = t->name;
            o->ndim = t->ndim;
            memcpy(o->dims, t->dims, sizeof o->dims);
            o->count = t->count;
            o->data = t->data;
        }
    }
    m->tensors = pv->tensors;
    m->tensor_count = k;
    st = MS_OK;
    return st;
}

/* ---------------------------------------------------------------- entry points */

void ms_onnx_destroy(ms_onnx_model *m) {
    if (m == NULL) return;
    priv *pv = m->priv_;
    if (pv != NULL) {
        ms_free(pv->graph);
        ms_free(pv->tensors);
        afree(&pv->res);
        ms_free(pv);
    }
    ms_free(m);
}

ms_status ms_onnx_import(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                         ms_onnx_model **out, ms_err *err) {
    if ((data == NULL && size > 0) || out == NULL)
        return ms_fail(err, MS_EINVAL, "ms_onnx_import: NULL argument");
    ms_limits dl = ms_limits_default();
    if (lim == NULL) lim = &dl;
    if (name == NULL) name = "<memory>";
    if ((uint64_t)size > lim->max_model_bytes)
        return ms_fail(err, MS_ELIMIT, "%s: %zu bytes exceeds the model size limit of %llu", name,
                       size, (unsigned long long)lim->max_model_bytes);
    imp *I = ms_calloc(1, sizeof *I);
    ms_onnx_model *m = ms_calloc(1, sizeof *m);
    priv *pv = ms_calloc(1, sizeof *pv);
    if (I == NULL || m == NULL || pv == NULL) {
        ms_free(I);
        ms_free(m);
        ms_free(pv);
        return ms_fail(err, MS_ENOMEM, "%s: out of memory", name);
    }
    m->priv_ = pv;
    I->src = name;
    I->lim = lim;
    I->err = err;
    I->res = &pv->res;
    ms_status st = parse_model(I, data, size);
    if (st == MS_OK) st = setup_values(I);
    if (st == MS_OK) {
        /* consumer counts, through Identity/Dropout resolved lazily: count raw uses */
        for (uint32_t i = 0; i < I->nnodes; i++) {
            onode *n = &I->nodes[i];
            for (uint32_t k = 0; k < n->nin; k++) {
                if (n->vin[k] < 0) continue;
                val *v = &I->vals[n->vin[k]];
                v->consumers++;
                v->cons = (int32_t)i;
            }
        }
        /* Constants have no inputs: define them all first, so patterns that look ahead
         * (GELU's Add 1 and Mul 0.5) see constants that appear later in the node list. */
        for (uint32_t i = 0; i < I->nnodes && st == MS_OK; i++) {
            onode *n = &I->nodes[i];
            if (strcmp(n->op, "Constant") != 0 || n->nin != 0) continue;
            if (n->domain[0] != '\0' && strcmp(n->domain, "ai.onnx") != 0) continue;
            st = op_constant(I, n);
            n->done = true;
        }
        for (uint32_t i = 0; i < I->nnodes && st == MS_OK; i++) {
            onode *n = &I->nodes[i];
            if (n->done) continue;
            st = run_node(I, n);
            n->done = true;
        }
    }
    if (st == MS_OK) {
        /* Identity/Dropout/zero Pad aliases: a value used through an alias counts for the
         * value itself; fusion above looked at direct uses only, which is conservative
         * because an alias is itself a use. */
        st = finish(I, m);
    }
    if (st == MS_OK) {
        char *prod = aalloc(&pv->res, strlen(I->producer) + 1);
        if (prod == NULL) {
            st = ms_fail(err, MS_ENOMEM, "%s: out of memory", name);
        } else {
            memcpy(prod, I->producer, strlen(I->producer) + 1);
            m->producer = prod;
            m->opset = I->opset;
        }
    }
    afree(&I->work);
    ms_free(I);
    if (st != MS_OK) {
        ms_onnx_destroy(m);
        return st;
    }
    *out = m;
    return MS_OK;
}

ms_status ms_onnx_add_to_writer(const ms_onnx_model *m, const char *extra_meta, ms_msm_writer *w,
                                ms_err *err) {
    if (m == NULL || w == NULL) return ms_fail(err, MS_EINVAL, "ms_onnx_add_to_writer: NULL");
    ms_status st;
    for (uint32_t i = 0; i < m->tensor_count; i++) {
        const ms_onnx_tensor *t = &m->tensors[i];
        if ((st = ms_msm_writer_add(w, t->name, MS_DTYPE_F32, t->ndim, t->dims, t->data, err)) !=
            MS_OK)
            return st;
    }
    uint32_t gd = (uint32_t)m->graph_len;
    if (m->graph_len > UINT32_MAX) return ms_fail(err, MS_ELIMIT, "graph text too large");
    if ((st = ms_msm_writer_add(w, "graph", MS_DTYPE_U8, 1, &gd, m->graph, err)) != MS_OK)
        return st;
    sbuf b = {0};
    sb_printf(&b, "source=onnx\nonnx_opset=%lld\nproducer=%s\n", (long long)m->opset, m->producer);
    const char *p = extra_meta ? extra_meta : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > 0 && p[len - 1] == '\r') len--;
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            bool ctl = false;
            for (size_t i = 0; i < len; i++) ctl = ctl || (unsigned char)p[i] < 32 || p[i] == 127;
            size_t kl = eq ? (size_t)(eq - p) : 0;
            if (eq == NULL || kl == 0 || ctl) {
                ms_free(b.p);
                return ms_fail(err, MS_EINVAL, "meta line '%.*s' is not key=value", (int)len, p);
            }
            if ((kl == 6 && memcmp(p, "source", 6) == 0) ||
                (kl == 10 && memcmp(p, "onnx_opset", 10) == 0) ||
                (kl == 8 && memcmp(p, "producer", 8) == 0)) {
                ms_free(b.p);
                return ms_fail(err, MS_EINVAL, "meta key '%.*s' is set by the importer", (int)kl,
                               p);
            }
            sb_put(&b, p, len);
            sb_puts(&b, "\n");
        }
        p += nl ? (size_t)(nl - p) + 1 : strlen(p);
    }
    if (b.oom || b.len > UINT32_MAX) {
        ms_free(b.p);
        return ms_fail(err, MS_ENOMEM, "out of memory for meta");
    }
    uint32_t md = (uint32_t)b.len;
    st = ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, &md, b.p, err);
    ms_free(b.p);
    return st;
}
