/* ms_net: parses and validates the `graph` tensor of a .msm model (models/FORMAT.md, "The
 * `graph` tensor") into nodes with inferred shapes and checked weights. The text is untrusted:
 * every rule of the format is checked, and each message names the model, the graph line and
 * the bad token. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "medscreen/core.h"
#include "net_internal.h"

enum { MAX_TOKENS = 64, MAX_DIM = 1 << 24 };

/* ---- a small string -> index hash map (open addressing, FNV-1a) ---- */

typedef struct strmap {
    const char **keys;
    uint32_t *vals;
    uint32_t mask;
} strmap;

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static bool strmap_init(strmap *m, uint32_t n) {
    uint32_t cap = 16;
    while (cap < 2u * n && cap < (1u << 30)) cap *= 2;
    m->keys = ms_calloc(cap, sizeof *m->keys);
    m->vals = ms_calloc(cap, sizeof *m->vals);
    m->mask = cap - 1;
    return m->keys != NULL && m->vals != NULL;
}

static void strmap_free(strmap *m) {
    ms_free(m->keys);
    ms_free(m->vals);
}

/* Index of key or UINT32_MAX. */
static uint32_t strmap_find(const strmap *m, const char *key) {
    for (uint32_t i = fnv1a(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == NULL) return UINT32_MAX;
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    }
}

/* The caller guarantees the map never fills (capacity >= 2 x entries). */
static void strmap_put(strmap *m, const char *key, uint32_t val) {
    uint32_t i = fnv1a(key) & m->mask;
    while (m->keys[i] != NULL) i = (i + 1) & m->mask;
    m->keys[i] = key;
    m->vals[i] = val;
}

/* ---- operators and keys ---- */

typedef enum key_id {
    K_WEIGHT = 0,
    K_BIAS,
    K_MEAN,
    K_VAR,
    K_STRIDE,
    K_PAD,
    K_DIL,
    K_GROUPS,
    K_ACT,
    K_ALPHA,
    K_EPS,
    K_K,
    K_CEIL,
    K_INCLUDE_PAD,
    K_MODE,
    K_ALIGN,
    K_SIZE,
    K_SCALE,
    K_COUNT
} key_id;

static const char *const k_key_names[K_COUNT] = {
    "weight", "bias", "mean", "var",  "stride",      "pad",  "dil",   "groups", "act",
    "alpha",  "eps",  "k",    "ceil", "include_pad", "mode", "align", "size",   "scale"};

#define KB(k) (1u << (k))
static const struct {
    const char *name;
    uint32_t min_in, max_in;
    uint32_t keys;
} k_ops[OP_COUNT] = {
    [OP_CONV2D] = {"conv2d", 1, 1,
                   KB(K_WEIGHT) | KB(K_BIAS) | KB(K_STRIDE) | KB(K_PAD) | KB(K_DIL) | KB(K_GROUPS) |
                       KB(K_ACT) | KB(K_ALPHA)},
    [OP_BATCHNORM] = {"batchnorm", 1, 1,
                      KB(K_WEIGHT) | KB(K_BIAS) | KB(K_MEAN) | KB(K_VAR) | KB(K_EPS)},
    [OP_ACT] = {"act", 1, 1, KB(K_ACT) | KB(K_ALPHA)},
    [OP_MAXPOOL] = {"maxpool", 1, 1, KB(K_K) | KB(K_STRIDE) | KB(K_PAD) | KB(K_CEIL)},
    [OP_AVGPOOL] = {"avgpool", 1, 1,
                    KB(K_K) | KB(K_STRIDE) | KB(K_PAD) | KB(K_CEIL) | KB(K_INCLUDE_PAD)},
    [OP_GLOBALAVGPOOL] = {"globalavgpool", 1, 1, 0},
    [OP_GLOBALMAXPOOL] = {"globalmaxpool", 1, 1, 0},
    [OP_UPSAMPLE] = {"upsample", 1, 1, KB(K_MODE) | KB(K_ALIGN) | KB(K_SIZE) | KB(K_SCALE)},
    [OP_CONCAT] = {"concat", 2, UINT32_MAX, 0},
    [OP_ADD] = {"add", 2, 2, 0},
    [OP_MUL] = {"mul", 2, 2, 0},
    [OP_FC] = {"fc", 1, 1, KB(K_WEIGHT) | KB(K_BIAS)},
    [OP_FLATTEN] = {"flatten", 1, 1, 0},
    [OP_SOFTMAX] = {"softmax", 1, 1, 0},
};

static const char *const k_act_names[] = {"none",    "relu", "leaky_relu", "silu",
                                          "sigmoid", "tanh", "gelu"};

/* ---- parsing context ---- */

typedef struct pctx {
    ms_net *net;
    const char *name; /* the model, for messages */
    ms_err *err;
    uint32_t line;
    strmap values, tensors, node_names;
    bool *tensor_used;
} pctx;

static ms_status gfail(pctx *c, ms_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static ms_status gfail(pctx *c, ms_status st, const char *fmt, ...) {
    char msg[MS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ms_fail(c->err, st, "%s: graph line %u: %s", c->name, c->line, msg);
}

static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > MS_MSM_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == ':' || ch == '/' ||
                  ch == '-';
        if (!ok) return false;
    }
    return true;
}

/* Decimal integer in [lo, hi] spanning exactly [p, e). */
static bool parse_int_span(const char *p, const char *e, int64_t lo, int64_t hi, int64_t *out) {
    if (p == e) return false;
    int64_t v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
        if (v > hi) return false;
    }
    if (v < lo) return false;
    *out = v;
    return true;
}

/* Exactly n comma-separated integers in [lo, hi]. */
static bool parse_ints(const char *s, int n, int64_t lo, int64_t hi, int32_t *out) {
    for (int i = 0; i < n; i++) {
        const char *e = strchr(s, ',');
        if (i == n - 1) {
            if (e != NULL) return false;
            e = s + strlen(s);
        } else if (e == NULL) {
            return false;
        }
        int64_t v;
        if (!parse_int_span(s, e, lo, hi, &v)) return false;
        out[i] = (int32_t)v;
        s = e + (i == n - 1 ? 0 : 1);
    }
    return true;
}

/* A finite C decimal floating-point literal that is finite as a float. */
static bool parse_float(const char *s, float *out) {
    double d;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' ||
              *p == '-'))
            return false;
    if (!ms_parse_double(s, &d) || fabs(d) > 3.4028234663852886e38) return false;
    *out = (float)d;
    return true;
}

static bool parse_flag(const char *s, bool *out) {
    if (strcmp(s, "0") == 0 || strcmp(s, "1") == 0) {
        *out = s[0] == '1';
        return true;
    }
    return false;
}

/* Looks up a float32 tensor that must have exactly ndim dims (dims[i] < 0: any). */
static ms_status want_tensor(pctx *c, const char *key, const char *tname, uint32_t ndim,
                             const int64_t *dims, const ms_msm_tensor **out) {
    uint32_t idx = strmap_find(&c->tensors, tname);
    if (idx == UINT32_MAX)
        return gfail(c, MS_EFORMAT, "%s=%s: no tensor named '%s' in the model", key, tname, tname);
    const ms_msm_tensor *t = ms_msm_tensor_at(c->net->msm, idx);
    if (t->dtype != MS_DTYPE_F32)
        return gfail(c, MS_EFORMAT, "%s=%s: tensor '%s' is uint8, a float32 tensor is needed", key,
                     tname, tname);
    bool ok = t->ndim == ndim;
    for (uint32_t d = 0; ok && d < ndim; d++)
        if (dims[d] >= 0 && (int64_t)t->dims[d] != dims[d]) ok = false;
    if (!ok) {
        char want[128] = "", have[128] = "";
        size_t wl = 0, hl = 0;
        for (uint32_t d = 0; d < ndim && wl < sizeof want; d++) {
            int r = dims[d] >= 0 ? snprintf(want + wl, sizeof want - wl, "%s%lld", d ? "," : "",
                                            (long long)dims[d])
                                 : snprintf(want + wl, sizeof want - wl, "%s?", d ? "," : "");
            if (r > 0) wl += (size_t)r;
        }
        for (uint32_t d = 0; d < t->ndim && hl < sizeof have; d++) {
            int r = snprintf(have + hl, sizeof have - hl, "%s%u", d ? "," : "", t->dims[d]);
            if (r > 0) hl += (size_t)r;
        }
        return gfail(c, MS_EFORMAT, "%s=%s: tensor '%s' has shape [%s], the node needs [%s]", key,
                     tname, tname, have, want);
    }
    c->tensor_used[idx] = true;
    *out = t;
    return MS_OK;
}

static ms_status check_shape(pctx *c, const char *out_name, int64_t ch, int64_t h, int64_t w) {
    if (ch < 1 || h < 1 || w < 1 || ch > INT32_MAX || h > INT32_MAX || w > INT32_MAX ||
        ch * h > INT32_MAX || ch * h * w > INT32_MAX)
        return gfail(c, MS_EUNSUPPORTED,
                     "out=%s: shape [%lld,%lld,%lld] is empty or has more than %d elements per "
                     "image",
                     out_name, (long long)ch, (long long)h, (long long)w, INT32_MAX);
    return MS_OK;
}

/* Parses "in=...", adds the input value indices to net->in_idx. */
static ms_status parse_inputs(pctx *c, char *tok, net_node *nd) {
    ms_net *net = c->net;
    if (strncmp(tok, "in=", 3) != 0)
        return gfail(c, MS_EFORMAT, "expected in=A[,B...] as the fourth token, got '%s'", tok);
    nd->in_first = net->in_idx_count;
    char *p = tok + 3;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (!name_ok(p)) return gfail(c, MS_EFORMAT, "in=: bad value name '%s'", p);
        uint32_t v = strmap_find(&c->values, p);
        if (v == UINT32_MAX)
            return gfail(c, MS_EFORMAT, "in=: value '%s' is used before it is defined", p);
        net->values[v].last_time = net->node_count + 1;
        net->in_idx[net->in_idx_count++] = v;
        if (comma == NULL) break;
        p = comma + 1;
    }
    nd->in_count = net->in_idx_count - nd->in_first;
    const char *opname = k_ops[nd->op].name;
    if (nd->in_count < k_ops[nd->op].min_in || nd->in_count > k_ops[nd->op].max_in) {
        if (k_ops[nd->op].max_in == UINT32_MAX)
            return gfail(c, MS_EFORMAT, "%s takes 2 or more inputs, got %u", opname, nd->in_count);
        return gfail(c, MS_EFORMAT, "%s takes %u input%s, got %u", opname, k_ops[nd->op].min_in,
                     k_ops[nd->op].min_in == 1 ? "" : "s", nd->in_count);
    }
    return MS_OK;
}

static ms_status bad_value(pctx *c, key_id k, const char *v, const char *what) {
    return gfail(c, MS_EFORMAT, "%s=%s: %s", k_key_names[k], v, what);
}

static ms_status parse_act(pctx *c, const char *v, ms_act *out) {
    for (size_t i = 0; i < sizeof k_act_names / sizeof *k_act_names; i++)
        if (strcmp(v, k_act_names[i]) == 0) {
            *out = (ms_act)i;
            return MS_OK;
        }
    return bad_value(c, K_ACT, v,
                     "unknown activation (none, relu, leaky_relu, silu, sigmoid, tanh, gelu)");
}

/* Shape inference and weight checks of one node; kv[k] is the raw value of key k or NULL. */
static ms_status build_node(pctx *c, net_node *nd, const char *const *kv, const char *out_name,
                            net_value *outv) {
    ms_net *net = c->net;
    const net_value *in = &net->values[net->in_idx[nd->in_first]];
    int64_t oc = in->c, oh = in->h, ow = in->w;
    ms_status st = MS_OK;
    const ms_msm_tensor *t;
    int32_t two[2], four[4];
    ms_err sub = {0};

    /* Keys shared by several operators. */
    if (kv[K_ALPHA] && !parse_float(kv[K_ALPHA], &nd->alpha))
        return bad_value(c, K_ALPHA, kv[K_ALPHA], "not a finite decimal float");
    if (kv[K_ACT] && (st = parse_act(c, kv[K_ACT], &nd->act)) != MS_OK) return st;

    switch (nd->op) {
    case OP_CONV2D: {
        ms_conv2d *p = &nd->conv;
        p->stride_h = p->stride_w = p->dil_h = p->dil_w = p->groups = 1;
        if (kv[K_STRIDE] && !parse_ints(kv[K_STRIDE], 2, 1, MAX_DIM, two))
            return bad_value(c, K_STRIDE, kv[K_STRIDE], "expected h,w with each at least 1");
        if (kv[K_STRIDE]) p->stride_h = two[0], p->stride_w = two[1];
        if (kv[K_DIL] && !parse_ints(kv[K_DIL], 2, 1, MAX_DIM, two))
            return bad_value(c, K_DIL, kv[K_DIL], "expected h,w with each at least 1");
        if (kv[K_DIL]) p->dil_h = two[0], p->dil_w = two[1];
        if (kv[K_PAD] && !parse_ints(kv[K_PAD], 4, 0, MAX_DIM, four))
            return bad_value(c, K_PAD, kv[K_PAD], "expected t,l,b,r with each at least 0");
        if (kv[K_PAD])
            p->pad_t = four[0], p->pad_l = four[1], p->pad_b = four[2], p->pad_r = four[3];
        if (kv[K_GROUPS]) {
            int64_t g;
            if (!parse_int_span(kv[K_GROUPS], kv[K_GROUPS] + strlen(kv[K_GROUPS]), 1, MAX_DIM, &g))
                return bad_value(c, K_GROUPS, kv[K_GROUPS], "expected an integer of at least 1");
            p->groups = (int32_t)g;
        }
        if (kv[K_WEIGHT] == NULL) return gfail(c, MS_EFORMAT, "conv2d needs weight=");
        if (in->c % p->groups != 0)
            return bad_value(c, K_GROUPS, kv[K_GROUPS],
                             "does not divide the input's channel count");
        int64_t wd[4] = {-1, in->c / p->groups, -1, -1};
        if ((st = want_tensor(c, "weight", kv[K_WEIGHT], 4, wd, &t)) != MS_OK) return st;
        if (t->dims[0] > MAX_DIM || t->dims[2] > MAX_DIM || t->dims[3] > MAX_DIM)
            return gfail(c, MS_EUNSUPPORTED, "weight=%s: dimensions over %d", kv[K_WEIGHT],
                         MAX_DIM);
        nd->weight = t->data;
        p->in_c = in->c;
        p->out_c = (int32_t)t->dims[0];
        p->kh = (int32_t)t->dims[2];
        p->kw = (int32_t)t->dims[3];
        p->act = nd->act;
        p->act_alpha = nd->alpha;
        if (kv[K_BIAS]) {
            int64_t bd[1] = {p->out_c};
            if ((st = want_tensor(c, "bias", kv[K_BIAS], 1, bd, &t)) != MS_OK) return st;
            nd->bias = t->data;
        }
        int32_t h2, w2;
        if (ms_conv2d_shape(p, in->h, in->w, &h2, &w2, &sub) != MS_OK)
            return gfail(c, MS_EFORMAT, "conv2d on a %dx%dx%d input: %s", in->c, in->h, in->w,
                         sub.msg);
        nd->workspace = ms_conv2d_workspace(p, in->h, in->w);
        oc = p->out_c, oh = h2, ow = w2;
        break;
    }
    case OP_BATCHNORM: {
        nd->eps = 1e-5f;
        if (kv[K_EPS] && (!parse_float(kv[K_EPS], &nd->eps) || nd->eps < 0.0f))
            return bad_value(c, K_EPS, kv[K_EPS], "not a finite non-negative decimal float");
        static const key_id need[4] = {K_WEIGHT, K_BIAS, K_MEAN, K_VAR};
        const float **dst[4] = {&nd->weight, &nd->bias, &nd->mean, &nd->var};
        int64_t cd[1] = {in->c};
        for (int i = 0; i < 4; i++) {
            if (kv[need[i]] == NULL)
                return gfail(c, MS_EFORMAT, "batchnorm needs %s=", k_key_names[need[i]]);
            if ((st = want_tensor(c, k_key_names[need[i]], kv[need[i]], 1, cd, &t)) != MS_OK)
                return st;
            *dst[i] = t->data;
        }
        for (int32_t i = 0; i < in->c; i++)
            if (!(nd->var[i] + nd->eps > 0.0f))
                return gfail(c, MS_EFORMAT, "var=%s: channel %d has var + eps = %g, not positive",
                             kv[K_VAR], i, (double)(nd->var[i] + nd->eps));
        break;
    }
    case OP_ACT:
        if (kv[K_ACT] == NULL) return gfail(c, MS_EFORMAT, "act needs act=");
        break;
    case OP_MAXPOOL:
    case OP_AVGPOOL: {
        ms_pool2d *p = &nd->pool;
        p->kind = nd->op == OP_MAXPOOL ? MS_POOL_MAX : MS_POOL_AVG;
        p->count_include_pad = true;
        if (kv[K_K] == NULL) return gfail(c, MS_EFORMAT, "%s needs k=", k_ops[nd->op].name);
        if (!parse_ints(kv[K_K], 2, 1, MAX_DIM, two))
            return bad_value(c, K_K, kv[K_K], "expected h,w with each at least 1");
        p->kh = p->stride_h = two[0];
        p->kw = p->stride_w = two[1];
        if (kv[K_STRIDE] && !parse_ints(kv[K_STRIDE], 2, 1, MAX_DIM, two))
            return bad_value(c, K_STRIDE, kv[K_STRIDE], "expected h,w with each at least 1");
        if (kv[K_STRIDE]) p->stride_h = two[0], p->stride_w = two[1];
        if (kv[K_PAD] && !parse_ints(kv[K_PAD], 4, 0, MAX_DIM, four))
            return bad_value(c, K_PAD, kv[K_PAD], "expected t,l,b,r with each at least 0");
        if (kv[K_PAD])
            p->pad_t = four[0], p->pad_l = four[1], p->pad_b = four[2], p->pad_r = four[3];
        if (kv[K_CEIL] && !parse_flag(kv[K_CEIL], &p->ceil_mode))
            return bad_value(c, K_CEIL, kv[K_CEIL], "expected 0 or 1");
        if (kv[K_INCLUDE_PAD] && !parse_flag(kv[K_INCLUDE_PAD], &p->count_include_pad))
            return bad_value(c, K_INCLUDE_PAD, kv[K_INCLUDE_PAD], "expected 0 or 1");
        int32_t h2, w2;
        if (ms_pool2d_shape(p, in->h, in->w, &h2, &w2, &sub) != MS_OK)
            return gfail(c, MS_EFORMAT, "%s on a %dx%dx%d input: %s", k_ops[nd->op].name, in->c,
                         in->h, in->w, sub.msg);
        oh = h2, ow = w2;
        break;
    }
    case OP_GLOBALAVGPOOL:
    case OP_GLOBALMAXPOOL: oh = ow = 1; break;
    case OP_UPSAMPLE: {
        if (kv[K_MODE] == NULL) return gfail(c, MS_EFORMAT, "upsample needs mode=");
        if (strcmp(kv[K_MODE], "nearest") == 0)
            nd->mode = MS_UPSAMPLE_NEAREST;
        else if (strcmp(kv[K_MODE], "bilinear") == 0)
            nd->mode = MS_UPSAMPLE_BILINEAR;
        else
            return bad_value(c, K_MODE, kv[K_MODE], "expected nearest or bilinear");
        if (kv[K_ALIGN] && !parse_flag(kv[K_ALIGN], &nd->align))
            return bad_value(c, K_ALIGN, kv[K_ALIGN], "expected 0 or 1");
        if (nd->align && nd->mode == MS_UPSAMPLE_NEAREST)
            return bad_value(c, K_ALIGN, kv[K_ALIGN], "align=1 needs mode=bilinear");
        if ((kv[K_SIZE] == NULL) == (kv[K_SCALE] == NULL))
            return gfail(c, MS_EFORMAT, "upsample needs exactly one of size= and scale=");
        if (kv[K_SIZE]) {
            if (!parse_ints(kv[K_SIZE], 2, 1, MAX_DIM, two))
                return bad_value(c, K_SIZE, kv[K_SIZE], "expected h,w with each at least 1");
            oh = two[0], ow = two[1];
        } else {
            if (!parse_ints(kv[K_SCALE], 2, 1, MAX_DIM, two))
                return bad_value(c, K_SCALE, kv[K_SCALE],
                                 "expected h,w integer factors of at least 1");
            oh = (int64_t)in->h * two[0], ow = (int64_t)in->w * two[1];
        }
        break;
    }
    case OP_CONCAT:
        oc = 0;
        for (uint32_t i = 0; i < nd->in_count; i++) {
            const net_value *v = &net->values[net->in_idx[nd->in_first + i]];
            if (v->h != in->h || v->w != in->w)
                return gfail(c, MS_EFORMAT,
                             "concat: input '%s' is %dx%dx%d, '%s' is %dx%dx%d; heights and "
                             "widths must match",
                             v->name, v->c, v->h, v->w, in->name, in->c, in->h, in->w);
            oc += v->c;
            if (oc > INT32_MAX) break;
        }
        break;
    case OP_ADD:
    case OP_MUL: {
        const net_value *b = &net->values[net->in_idx[nd->in_first + 1]];
        bool same = b->c == in->c && b->h == in->h && b->w == in->w;
        bool chan = b->c == in->c && b->h == 1 && b->w == 1;
        bool scalar = b->c == 1 && b->h == 1 && b->w == 1;
        if (!same && !chan && !scalar)
            return gfail(c, MS_EFORMAT,
                         "%s: input '%s' is %dx%dx%d and does not broadcast to '%s' (%dx%dx%d)",
                         k_ops[nd->op].name, b->name, b->c, b->h, b->w, in->name, in->c, in->h,
                         in->w);
        break;
    }
    case OP_FC: {
        if (kv[K_WEIGHT] == NULL) return gfail(c, MS_EFORMAT, "fc needs weight=");
        int64_t wd[2] = {-1, (int64_t)net_value_count(in)};
        if ((st = want_tensor(c, "weight", kv[K_WEIGHT], 2, wd, &t)) != MS_OK) return st;
        nd->weight = t->data;
        nd->fc_out = (int32_t)(t->dims[0] > INT32_MAX ? INT32_MAX : t->dims[0]);
        if (kv[K_BIAS]) {
            int64_t bd[1] = {t->dims[0]};
            if ((st = want_tensor(c, "bias", kv[K_BIAS], 1, bd, &t)) != MS_OK) return st;
            nd->bias = t->data;
        }
        oc = nd->fc_out, oh = ow = 1;
        break;
    }
    case OP_FLATTEN: oc = (int64_t)net_value_count(in), oh = ow = 1; break;
    case OP_SOFTMAX: break;
    case OP_COUNT: return gfail(c, MS_EINTERNAL, "bad operator");
    }
    if ((st = check_shape(c, out_name, oc, oh, ow)) != MS_OK) return st;
    outv->c = (int32_t)oc, outv->h = (int32_t)oh, outv->w = (int32_t)ow;
    return MS_OK;
}

/* Defines a new value (an input or a node output). */
static ms_status define_value(pctx *c, const char *what, const char *vname, uint32_t *out) {
    ms_net *net = c->net;
    if (!name_ok(vname)) return gfail(c, MS_EFORMAT, "%s: bad value name '%s'", what, vname);
    uint32_t prev = strmap_find(&c->values, vname);
    if (prev != UINT32_MAX)
        return gfail(c, MS_EFORMAT, "%s: value '%s' is already defined on line %u", what, vname,
                     net->values[prev].line);
    uint32_t v = net->value_count++;
    net_value *nv = &net->values[v];
    memset(nv, 0, sizeof *nv);
    nv->name = vname;
    nv->line = c->line;
    nv->def_time = net->node_count + 1;
    strmap_put(&c->values, vname, v);
    *out = v;
    return MS_OK;
}

static ms_status parse_node(pctx *c, char **tok, uint32_t ntok) {
    ms_net *net = c->net;
    if (ntok < 5)
        return gfail(c, MS_EFORMAT, "expected 'node OP NAME in=A[,B...] out=Y [key=value ...]'");
    net_node *nd = &net->nodes[net->node_count];
    memset(nd, 0, sizeof *nd);
    nd->line = c->line;
    nd->alpha = 0.01f;
    nd->op = OP_COUNT;
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(tok[1], k_ops[i].name) == 0) nd->op = (net_op)i;
    if (nd->op == OP_COUNT) return gfail(c, MS_EFORMAT, "unknown operator '%s'", tok[1]);
    if (!name_ok(tok[2])) return gfail(c, MS_EFORMAT, "bad node name '%s'", tok[2]);
    uint32_t prev = strmap_find(&c->node_names, tok[2]);
    if (prev != UINT32_MAX)
        return gfail(c, MS_EFORMAT, "node name '%s' is already used on line %u", tok[2],
                     net->nodes[prev].line);
    nd->name = tok[2];
    ms_status st = parse_inputs(c, tok[3], nd);
    if (st != MS_OK) return st;
    if (strncmp(tok[4], "out=", 4) != 0)
        return gfail(c, MS_EFORMAT, "expected out=Y as the fifth token, got '%s'", tok[4]);
    const char *kv[K_COUNT] = {0};
    for (uint32_t i = 5; i < ntok; i++) {
        char *eq = strchr(tok[i], '=');
        if (eq == NULL) return gfail(c, MS_EFORMAT, "expected key=value, got '%s'", tok[i]);
        *eq = '\0';
        int k = -1;
        for (int j = 0; j < K_COUNT; j++)
            if (strcmp(tok[i], k_key_names[j]) == 0) k = j;
        if (k < 0 || !(k_ops[nd->op].keys & KB(k))) {
            return gfail(c, MS_EFORMAT, "unknown key '%s' for %s (in '%s=%s')", tok[i],
                         k_ops[nd->op].name, tok[i], eq + 1);
        }
        if (kv[k]) return gfail(c, MS_EFORMAT, "key '%s' appears twice", tok[i]);
        if (eq[1] == '\0') return gfail(c, MS_EFORMAT, "key '%s' has an empty value", tok[i]);
        kv[k] = eq + 1;
    }
    uint32_t v;
    if ((st = define_value(c, "out=", tok[4] + 4, &v)) != MS_OK) return st;
    nd->out = v;
    if ((st = build_node(c, nd, kv, tok[4] + 4, &net->values[v])) != MS_OK) return st;
    if (nd->workspace > net->workspace) net->workspace = nd->workspace;
    strmap_put(&c->node_names, nd->name, net->node_count);
    net->node_count++;
    return MS_OK;
}

static ms_status parse_graph(pctx *c, const ms_msm_tensor *g) {
    ms_net *net = c->net;
    size_t n = g->count;
    const char *src = g->data;
    if (memchr(src, '\0', n) != NULL)
        return ms_fail(c->err, MS_EFORMAT, "%s: graph: text has a NUL byte", c->name);
    net->text = ms_malloc(n + 1);
    if (net->text == NULL) return ms_fail(c->err, MS_ENOMEM, "%s: cannot copy the graph", c->name);
    memcpy(net->text, src, n);
    net->text[n] = '\0';
    size_t lines = 1, commas = 0;
    for (size_t i = 0; i < n; i++) lines += src[i] == '\n', commas += src[i] == ',';
    if (lines > UINT32_MAX / 4 || commas > UINT32_MAX / 4)
        return ms_fail(c->err, MS_ELIMIT, "%s: graph has too many lines", c->name);
    net->values = ms_calloc(lines, sizeof *net->values);
    net->nodes = ms_calloc(lines, sizeof *net->nodes);
    net->in_idx = ms_calloc(lines + commas, sizeof *net->in_idx);
    net->inputs = ms_calloc(lines, sizeof *net->inputs);
    net->outputs = ms_calloc(lines, sizeof *net->outputs);
    if (!net->values || !net->nodes || !net->in_idx || !net->inputs || !net->outputs ||
        !strmap_init(&c->values, (uint32_t)lines) || !strmap_init(&c->node_names, (uint32_t)lines))
        return ms_fail(c->err, MS_ENOMEM, "%s: cannot allocate the graph (%zu lines)", c->name,
                       lines);

    bool seen_graph = false;
    char *p = net->text;
    ms_status st;
    for (c->line = 1; p != NULL; c->line++) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        char *line = p;
        p = nl ? nl + 1 : NULL;
        if (line[0] == '\0' || line[0] == '#') continue;
        char *tok[MAX_TOKENS];
        uint32_t ntok = 0;
        for (char *q = line;;) {
            char *sp = strchr(q, ' ');
            if (sp) *sp = '\0';
            if (*q == '\0')
                return gfail(c, MS_EFORMAT,
                             "empty token at column %zu (tokens are separated by single spaces)",
                             (size_t)(q - line) + 1);
            if (ntok == MAX_TOKENS)
                return gfail(c, MS_EFORMAT, "more than %d tokens, at '%s'", MAX_TOKENS, q);
            tok[ntok++] = q;
            if (sp == NULL) break;
            q = sp + 1;
        }
        if (!seen_graph) {
            if (strcmp(tok[0], "graph") != 0)
                return gfail(c, MS_EFORMAT, "the first statement must be 'graph 1', not '%s'",
                             tok[0]);
            int64_t ver;
            if (ntok != 2 || !parse_int_span(tok[1], tok[1] + strlen(tok[1]), 0, UINT32_MAX, &ver))
                return gfail(c, MS_EFORMAT, "expected 'graph 1', got '%s%s%s'", tok[0],
                             ntok > 1 ? " " : "", ntok > 1 ? tok[1] : "");
            if (ver != 1)
                return gfail(c, ver > 1 ? MS_EUNSUPPORTED : MS_EFORMAT,
                             "graph format version '%s': this medscreen reads version 1", tok[1]);
            seen_graph = true;
        } else if (strcmp(tok[0], "graph") == 0) {
            return gfail(c, MS_EFORMAT, "'graph' statement repeated");
        } else if (strcmp(tok[0], "input") == 0) {
            if (ntok != 5) return gfail(c, MS_EFORMAT, "expected 'input NAME C H W'");
            int32_t d[3];
            for (int i = 0; i < 3; i++)
                if (!parse_ints(tok[2 + i], 1, 1, MAX_DIM, &d[i]))
                    return gfail(c, MS_EFORMAT, "input %s: bad dimension '%s' (1..%d)", tok[1],
                                 tok[2 + i], MAX_DIM);
            uint32_t v;
            if ((st = define_value(c, "input", tok[1], &v)) != MS_OK) return st;
            if ((st = check_shape(c, tok[1], d[0], d[1], d[2])) != MS_OK) return st;
            net->values[v].c = d[0], net->values[v].h = d[1], net->values[v].w = d[2];
            net->values[v].def_time = 0;
            net->inputs[net->input_count++] = v;
        } else if (strcmp(tok[0], "node") == 0) {
            if ((st = parse_node(c, tok, ntok)) != MS_OK) return st;
        } else if (strcmp(tok[0], "output") == 0) {
            if (ntok != 2) return gfail(c, MS_EFORMAT, "expected 'output NAME'");
            uint32_t v = strmap_find(&c->values, tok[1]);
            if (v == UINT32_MAX)
                return gfail(c, MS_EFORMAT, "output: value '%s' is not defined before", tok[1]);
            for (uint32_t i = 0; i < net->output_count; i++)
                if (net->outputs[i] == v)
                    return gfail(c, MS_EFORMAT, "output: '%s' is already an output", tok[1]);
            net->outputs[net->output_count++] = v;
        } else {
            return gfail(c, MS_EFORMAT, "unknown statement '%s'", tok[0]);
        }
    }
    c->line--;
    if (!seen_graph) return ms_fail(c->err, MS_EFORMAT, "%s: graph: the text is empty", c->name);
    if (net->input_count == 0)
        return ms_fail(c->err, MS_EFORMAT, "%s: graph: no input statement", c->name);
    if (net->output_count == 0)
        return ms_fail(c->err, MS_EFORMAT, "%s: graph: no output statement", c->name);
    for (uint32_t i = 0; i < net->output_count; i++)
        net->values[net->outputs[i]].last_time = net->node_count + 1;
    for (uint32_t v = 0; v < net->value_count; v++)
        if (net->values[v].last_time == 0) {
            c->line = net->values[v].line;
            return gfail(c, MS_EFORMAT, "value '%s' is neither used nor an output",
                         net->values[v].name);
        }
    return MS_OK;
}

/* Strict for meta format 1 (checked against the graph, so parse the graph first), indexed
 * only for legacy free-form text: see meta.c. */
static ms_status parse_meta(ms_net *net, const ms_msm_tensor *meta, ms_err *err) {
    return ms_model_meta_parse(meta->data, meta->count, net, net->name, &net->meta, err);
}

/* Fuses a first layer (one input channel, 3x3, stride 1) into the packed layer that is the
 * only reader of its output: that output (16 MiB per image on the screener) is then never
 * written, and the pair ran 7.8 -> 5.1 ms (Xeon, 1 thread; see packed.c). */
static void fuse_first_layers(ms_net *net) {
    for (uint32_t i = 0; i < net->node_count; i++) {
        net_node *nd = &net->nodes[i];
        if (nd->op != OP_CONV2D || nd->packed_w == NULL || nd->in_count != 1) continue;
        const uint32_t v = net->in_idx[nd->in_first];
        const net_value *mid = &net->values[v];
        /* the first layer right before, its output read by this node alone (nothing comes
         * between them, and nothing later or the net's outputs read it: last_time); no node
         * between can write over the first's input either, which the packed layer now reads
         * (the session keeps it live that long) */
        if (i == 0 || mid->def_time != i || mid->last_time != i + 1) continue;
        net_node *first = &net->nodes[mid->def_time - 1];
        if (first->op != OP_CONV2D || first->wino_u != NULL || first->packed_w != NULL ||
            first->fused_into || !ms_conv2d_packed_fusable(&first->conv, &nd->conv))
            continue;
        const net_value *src = &net->values[net->in_idx[first->in_first]];
        const size_t ws = ms_conv2d_packed_fused_workspace(&first->conv, &nd->conv, src->h, src->w);
        if (ws == SIZE_MAX) continue;
        first->fused_into = true;
        nd->fused_pre = mid->def_time;
        nd->fast_workspace = ws;
        if (ws > net->workspace) net->workspace = ws;
    }
}

/* Prepares the fast path of every convolution where one was measured faster, once: the net
 * is shared read-only by all sessions. Winograd where it pays (its transformed weights cost
 * 36/9 = 4x those layers' weight memory), else the packed direct kernel where that pays (a
 * second copy of the weights, padded to 8 output channels). */
static ms_status prepare_fast_paths(ms_net *net, ms_err *err) {
    for (uint32_t i = 0; i < net->node_count; i++) {
        net_node *nd = &net->nodes[i];
        if (nd->op != OP_CONV2D) continue;
        const net_value *in = &net->values[net->in_idx[nd->in_first]];
        const bool wino = ms_conv2d_winograd_worthwhile(&nd->conv, in->h, in->w);
        if (!wino && !ms_conv2d_packed_worthwhile(&nd->conv, in->h, in->w)) continue;
        const char *what = wino ? "Winograd" : "packed";
        size_t n = wino ? ms_conv2d_winograd_weight_floats(&nd->conv)
                        : ms_conv2d_packed_weight_floats(&nd->conv, in->h, in->w);
        size_t ws = wino ? ms_conv2d_winograd_workspace(&nd->conv, in->h, in->w)
                         : ms_conv2d_packed_workspace(&nd->conv, in->h, in->w);
        size_t bytes;
        if (n == SIZE_MAX || ws == SIZE_MAX || !ms_mul_size(n, sizeof(float), &bytes))
            return ms_fail(err, MS_EOVERFLOW, "%s: node '%s': %s weights overflow", net->name,
                           nd->name, what);
        float *w = ms_malloc(bytes);
        if (w == NULL)
            return ms_fail(err, MS_ENOMEM,
                           "%s: node '%s': cannot allocate %zu bytes of "
                           "%s weights",
                           net->name, nd->name, bytes, what);
        if (wino) {
            ms_conv2d_winograd_weights(&nd->conv, nd->weight, w);
            nd->wino_u = w;
        } else {
            ms_conv2d_packed_weights(&nd->conv, in->h, in->w, nd->weight, w);
            nd->packed_w = w;
        }
        nd->fast_workspace = ws;
        net->fast_bytes += bytes;
        if (ws > net->workspace) net->workspace = ws;
    }
    fuse_first_layers(net);
    return MS_OK;
}

ms_status ms_net_from_msm(ms_msm *m, const char *name, ms_net **out, ms_err *err) {
    if (m == NULL || out == NULL) return ms_fail(err, MS_EINVAL, "ms_net_from_msm: NULL argument");
    if (name == NULL) name = "<model>";
    ms_status st;
    pctx c = {0};
    ms_net *net = ms_calloc(1, sizeof *net);
    size_t nlen = strlen(name);
    if (net == NULL || (net->name = ms_malloc(nlen + 1)) == NULL) {
        ms_free(net);
        ms_msm_destroy(m);
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate the net", name);
    }
    memcpy(net->name, name, nlen + 1);
    net->msm = m;
    c.net = net;
    c.name = net->name;
    c.err = err;
    uint32_t nt = ms_msm_tensor_count(m);
    c.tensor_used = ms_calloc(nt, sizeof *c.tensor_used);
    if (c.tensor_used == NULL || !strmap_init(&c.tensors, nt)) {
        st = ms_fail(err, MS_ENOMEM, "%s: cannot allocate", name);
        goto fail;
    }
    for (uint32_t i = 0; i < nt; i++) strmap_put(&c.tensors, ms_msm_tensor_at(m, i)->name, i);
    const ms_msm_tensor *g = ms_msm_find(m, "graph");
    if (g == NULL) {
        st = ms_fail(err, MS_EFORMAT, "%s: the model has no 'graph' tensor", name);
        goto fail;
    }
    if (g->dtype != MS_DTYPE_U8) {
        st = ms_fail(err, MS_EFORMAT, "%s: tensor 'graph' is float32, expected uint8 text", name);
        goto fail;
    }
    if ((st = parse_graph(&c, g)) != MS_OK) goto fail;
    for (uint32_t i = 0; i < nt; i++) {
        const ms_msm_tensor *t = ms_msm_tensor_at(m, i);
        if (t->dtype == MS_DTYPE_F32 && !c.tensor_used[i]) {
            st = ms_fail(err, MS_EFORMAT, "%s: float32 tensor '%s' is not used by any graph node",
                         name, t->name);
            goto fail;
        }
    }
    const ms_msm_tensor *meta = ms_msm_find(m, "meta");
    if (meta != NULL && meta->dtype == MS_DTYPE_U8 && (st = parse_meta(net, meta, err)) != MS_OK)
        goto fail;
    if ((st = prepare_fast_paths(net, err)) != MS_OK) goto fail;
    strmap_free(&c.values);
    strmap_free(&c.node_names);
    strmap_free(&c.tensors);
    ms_free(c.tensor_used);
    *out = net;
    return MS_OK;
fail:
    strmap_free(&c.values);
    strmap_free(&c.node_names);
    strmap_free(&c.tensors);
    ms_free(c.tensor_used);
    ms_net_destroy(net);
    return st;
}

ms_status ms_net_load(const char *path, const ms_limits *lim, ms_net **out, ms_err *err) {
    if (path == NULL || out == NULL) return ms_fail(err, MS_EINVAL, "ms_net_load: NULL argument");
    ms_msm *m = NULL;
    ms_status st = ms_msm_load(path, lim, &m, err);
    if (st != MS_OK) return st;
    return ms_net_from_msm(m, path, out, err);
}

void ms_net_destroy(ms_net *net) {
    if (net == NULL) return;
    for (uint32_t i = 0; net->nodes != NULL && i < net->node_count; i++) {
        ms_free(net->nodes[i].wino_u);
        ms_free(net->nodes[i].packed_w);
    }
    ms_msm_destroy(net->msm);
    ms_free(net->name);
    ms_free(net->text);
    ms_free(net->values);
    ms_free(net->nodes);
    ms_free(net->in_idx);
    ms_free(net->inputs);
    ms_free(net->outputs);
    ms_model_meta_destroy(net->meta);
    ms_free(net);
}

uint32_t ms_net_input_count(const ms_net *net) { return net->input_count; }
uint32_t ms_net_output_count(const ms_net *net) { return net->output_count; }
uint32_t ms_net_node_count(const ms_net *net) { return net->node_count; }
const ms_msm *ms_net_msm(const ms_net *net) { return net->msm; }

const char *ms_net_input_name(const ms_net *net, uint32_t index) {
    return index < net->input_count ? net->values[net->inputs[index]].name : NULL;
}

const char *ms_net_output_name(const ms_net *net, uint32_t index) {
    return index < net->output_count ? net->values[net->outputs[index]].name : NULL;
}

static bool value_shape(const net_value *v, int32_t *c, int32_t *h, int32_t *w) {
    if (c) *c = v->c;
    if (h) *h = v->h;
    if (w) *w = v->w;
    return true;
}

bool ms_net_input_shape(const ms_net *net, uint32_t index, int32_t *c, int32_t *h, int32_t *w) {
    return index < net->input_count && value_shape(&net->values[net->inputs[index]], c, h, w);
}

bool ms_net_output_shape(const ms_net *net, uint32_t index, int32_t *c, int32_t *h, int32_t *w) {
    return index < net->output_count && value_shape(&net->values[net->outputs[index]], c, h, w);
}

const char *ms_net_meta(const ms_net *net, const char *key) {
    return ms_model_meta_get(net->meta, key);
}

const ms_model_meta *ms_net_model_meta(const ms_net *net) { return net->meta; }

const char *ms_net_node_name(const ms_net *net, uint32_t index) {
    return index < net->node_count ? net->nodes[index].name : NULL;
}

const char *ms_net_node_op(const ms_net *net, uint32_t index) {
    return index < net->node_count ? k_ops[net->nodes[index].op].name : NULL;
}

const char *ms_net_node_impl(const ms_net *net, uint32_t index) {
    if (index >= net->node_count) return NULL;
    const net_node *nd = &net->nodes[index];
    if (nd->fused_into) return "fused";
    return nd->wino_u != NULL     ? "winograd"
           : nd->fused_pre != 0   ? "packed+first"
           : nd->packed_w != NULL ? "packed"
                                  : "direct";
}

size_t ms_net_fast_weight_bytes(const ms_net *net) { return net ? net->fast_bytes : 0; }

uint64_t ms_net_node_flops(const ms_net *net, uint32_t index) {
    if (index >= net->node_count) return 0;
    const net_node *nd = &net->nodes[index];
    const net_value *in = &net->values[net->in_idx[nd->in_first]], *out = &net->values[nd->out];
    if (nd->op == OP_CONV2D) {
        const ms_conv2d *p = &nd->conv;
        const uint64_t k = (uint64_t)(p->in_c / p->groups) * (uint64_t)p->kh * (uint64_t)p->kw;
        return 2u * k * (uint64_t)out->c * (uint64_t)out->h * (uint64_t)out->w;
    }
    if (nd->op == OP_FC) return 2u * (uint64_t)net_value_count(in) * (uint64_t)nd->fc_out;
    return 0;
}
