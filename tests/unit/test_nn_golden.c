/* nn operators against PyTorch: every folder of tests/golden/nn/ (written by
 * scripts/make-nn-goldens.py with torch on the CPU in float32) names an operator and its
 * parameters in params.txt, holds the inputs and PyTorch's output as .npy files, and must be
 * reproduced within max |ours - ref| / max(1e-6, max |ref|) <= 1e-5. An unknown kind or key,
 * a missing or unexpected file, or a shape that differs from PyTorch's fails the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "medscreen/core.h"
#include "medscreen/nn.h"
#include "medscreen/npy.h"

#define GOLDEN_DIR MS_SOURCE_DIR "/tests/golden/nn"
#define TOLERANCE 1e-5
#define MAX_CASES 256
#define MAX_PARAMS 32
#define MAX_FILES 16

/* ---- one case folder ---- */

typedef struct param {
    char key[32];
    char val[64];
    bool used;
} param;

typedef struct golden {
    const char *name;
    char dir[512];
    param params[MAX_PARAMS];
    int nparams;
    char files[MAX_FILES][64]; /* the folder's entries */
    int nfiles;
    bool files_used[MAX_FILES];
    char why[512]; /* first problem found; empty when fine */
} golden;

/* Records the first problem of the case; later ones are usually consequences. */
static void problem(golden *g, const char *fmt, ...) {
    if (g->why[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->why, sizeof g->why, fmt, ap);
    va_end(ap);
}

static bool load_params(golden *g) {
    char path[600];
    snprintf(path, sizeof path, "%s/params.txt", g->dir);
    uint8_t *text = NULL;
    size_t n = 0;
    ms_err err;
    if (ms_file_read_all(path, 1 << 16, &text, &n, &err) != MS_OK) {
        problem(g, "%s", err.msg);
        return false;
    }
    size_t i = 0;
    int line = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && text[j] != '\n') j++;
        line++;
        size_t len = j - i;
        const char *s = (const char *)text + i;
        i = j + 1;
        if (len == 0 || s[0] == '#') continue;
        const char *eq = memchr(s, '=', len);
        size_t kl = eq ? (size_t)(eq - s) : 0, vl = eq ? len - kl - 1 : 0;
        if (!eq || kl == 0 || kl >= sizeof g->params[0].key || vl >= sizeof g->params[0].val) {
            problem(g, "params.txt line %d is not key=value", line);
            break;
        }
        if (g->nparams == MAX_PARAMS) {
            problem(g, "params.txt has more than %d keys", MAX_PARAMS);
            break;
        }
        param *p = &g->params[g->nparams++];
        memcpy(p->key, s, kl);
        p->key[kl] = '\0';
        memcpy(p->val, eq + 1, vl);
        p->val[vl] = '\0';
        p->used = false;
        for (int k = 0; k < g->nparams - 1; k++)
            if (strcmp(g->params[k].key, p->key) == 0) problem(g, "duplicate key %s", p->key);
    }
    ms_free(text);
    return g->why[0] == '\0';
}

static const char *get(golden *g, const char *key) {
    for (int i = 0; i < g->nparams; i++) {
        if (strcmp(g->params[i].key, key) == 0) {
            g->params[i].used = true;
            return g->params[i].val;
        }
    }
    problem(g, "params.txt lacks %s", key);
    return NULL;
}

static int32_t get_int(golden *g, const char *key, uint32_t lo, uint32_t hi) {
    const char *v = get(g, key);
    uint32_t x = 0;
    if (v && !ms_parse_u32(v, lo, hi, &x))
        problem(g, "%s=%s: not an integer in [%u, %u]", key, v, lo, hi);
    return (int32_t)x;
}

static bool get_bool(golden *g, const char *key) { return get_int(g, key, 0, 1) != 0; }

static double get_double(golden *g, const char *key) {
    const char *v = get(g, key);
    double x = 0;
    if (v && !ms_parse_double(v, &x)) problem(g, "%s=%s: not a number", key, v);
    return x;
}

static ms_act get_act(golden *g) {
    static const struct {
        const char *name;
        ms_act act;
    } acts[] = {
        {"none", MS_ACT_NONE}, {"relu", MS_ACT_RELU},       {"leaky_relu", MS_ACT_LEAKY_RELU},
        {"silu", MS_ACT_SILU}, {"sigmoid", MS_ACT_SIGMOID}, {"tanh", MS_ACT_TANH},
        {"gelu", MS_ACT_GELU}};
    const char *v = get(g, "act");
    if (v == NULL) return MS_ACT_NONE;
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (strcmp(v, acts[i].name) == 0) return acts[i].act;
    problem(g, "act=%s: unknown activation", v);
    return MS_ACT_NONE;
}

static bool list_files(golden *g) {
    DIR *d = opendir(g->dir);
    if (d == NULL) {
        problem(g, "cannot open %s", g->dir);
        return false;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (g->nfiles == MAX_FILES || strlen(e->d_name) >= sizeof g->files[0]) {
            problem(g, "too many files or a long file name (%s)", e->d_name);
            break;
        }
        ms_str_copy(g->files[g->nfiles++], sizeof g->files[0], e->d_name);
    }
    closedir(d);
    return g->why[0] == '\0';
}

/* Loads <stem>.npy, which must exist; NULL (and a problem) otherwise. */
static ms_npy *load(golden *g, const char *stem) {
    char fname[64];
    snprintf(fname, sizeof fname, "%s.npy", stem);
    bool present = false;
    for (int i = 0; i < g->nfiles; i++) {
        if (strcmp(g->files[i], fname) == 0) {
            g->files_used[i] = true;
            present = true;
        }
    }
    if (!present) {
        problem(g, "missing %s", fname);
        return NULL;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g->dir, fname);
    ms_limits lim = ms_limits_default();
    ms_npy *a = NULL;
    ms_err err;
    if (ms_npy_load(path, &lim, &a, &err) != MS_OK) {
        problem(g, "%s", err.msg);
        return NULL;
    }
    if (ms_npy_check_finite(a, path, &err) != MS_OK) {
        problem(g, "%s", err.msg);
        ms_npy_destroy(a);
        return NULL;
    }
    return a;
}

/* A 4-d array as an NCHW tensor view (data stays owned by a). */
static bool as_tensor(golden *g, const ms_npy *a, const char *what, ms_tensor *t) {
    if (a->ndim != 4) {
        problem(g, "%s has %d dimensions, expected NCHW", what, (int)a->ndim);
        return false;
    }
    for (int i = 0; i < 4; i++) {
        if (a->shape[i] < 1 || a->shape[i] > 1 << 20) {
            problem(g, "%s: dimension %d is %lld", what, i, (long long)a->shape[i]);
            return false;
        }
    }
    t->n = (int32_t)a->shape[0];
    t->c = (int32_t)a->shape[1];
    t->h = (int32_t)a->shape[2];
    t->w = (int32_t)a->shape[3];
    t->data = a->data;
    return true;
}

static bool expect_count(golden *g, const ms_npy *a, const char *what, size_t count) {
    if (a->count != count) {
        problem(g, "%s has %zu values, expected %zu", what, a->count, count);
        return false;
    }
    return true;
}

/* ---- result bookkeeping ---- */

typedef struct kind_stats {
    const char *kind;
    int cases;
    double worst;
    char worst_case[128];
} kind_stats;

static double rel_error(const float *ours, const float *ref, size_t n) {
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(ours[i])) return INFINITY;
        double r = fabs((double)ref[i]);
        if (r > maxref) maxref = r;
        double d = fabs((double)ours[i] - (double)ref[i]);
        if (d > maxdiff) maxdiff = d;
    }
    return maxdiff / (maxref > 1e-6 ? maxref : 1e-6);
}

/* Compares out (shape t) with output.npy; returns the relative error or -1 on a shape problem. */
static double compare(golden *g, const ms_tensor *t, const float *ours, const ms_npy *ref) {
    ms_tensor rt;
    if (!as_tensor(g, ref, "output.npy", &rt)) return -1;
    if (rt.n != t->n || rt.c != t->c || rt.h != t->h || rt.w != t->w) {
        problem(g, "output is %dx%dx%dx%d, PyTorch's is %dx%dx%dx%d", t->n, t->c, t->h, t->w, rt.n,
                rt.c, rt.h, rt.w);
        return -1;
    }
    return rel_error(ours, ref->data, ms_tensor_count(t));
}

/* ---- the operators ---- */

typedef struct run_ctx {
    golden *g;
    ms_npy *arrays[MAX_FILES];
    int narrays;
    void *mem[8];
    int nmem;
} run_ctx;

static ms_npy *ld(run_ctx *c, const char *stem) {
    ms_npy *a = load(c->g, stem);
    if (a) c->arrays[c->narrays++] = a;
    return a;
}

static float *alloc_floats(run_ctx *c, size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    c->mem[c->nmem++] = p;
    return p;
}

static float *copy_floats(run_ctx *c, const ms_npy *a) {
    float *p = alloc_floats(c, a->count);
    memcpy(p, a->data, a->count * sizeof(float));
    return p;
}

static void read_conv_params(golden *g, ms_conv2d *p) {
    p->in_c = get_int(g, "in_c", 1, 1 << 16);
    p->out_c = get_int(g, "out_c", 1, 1 << 16);
    p->kh = get_int(g, "kh", 1, 64);
    p->kw = get_int(g, "kw", 1, 64);
    p->stride_h = get_int(g, "stride_h", 1, 64);
    p->stride_w = get_int(g, "stride_w", 1, 64);
    p->dil_h = get_int(g, "dil_h", 1, 64);
    p->dil_w = get_int(g, "dil_w", 1, 64);
    p->pad_t = get_int(g, "pad_t", 0, 64);
    p->pad_l = get_int(g, "pad_l", 0, 64);
    p->pad_b = get_int(g, "pad_b", 0, 64);
    p->pad_r = get_int(g, "pad_r", 0, 64);
    p->groups = get_int(g, "groups", 1, 1 << 16);
    p->act = get_act(g);
    p->act_alpha = (float)get_double(g, "act_alpha");
}

static double run_conv(run_ctx *c, bool fold) {
    golden *g = c->g;
    ms_conv2d p;
    memset(&p, 0, sizeof p);
    read_conv_params(g, &p);
    bool has_bias = get_bool(g, "bias");
    float eps = fold ? (float)get_double(g, "eps") : 0.0f;
    ms_npy *x = ld(c, "input"), *w = ld(c, "weight"), *b = has_bias ? ld(c, "bias") : NULL;
    ms_npy *ref = ld(c, "output");
    ms_npy *gamma = NULL, *beta = NULL, *mean = NULL, *var = NULL;
    if (fold) {
        gamma = ld(c, "gamma");
        beta = ld(c, "beta");
        mean = ld(c, "mean");
        var = ld(c, "var");
    }
    if (g->why[0]) return -1;
    ms_tensor in;
    if (!as_tensor(g, x, "input.npy", &in)) return -1;
    if (in.c != p.in_c) problem(g, "input has %d channels, in_c=%d", in.c, p.in_c);
    size_t per_out = (size_t)(p.in_c / p.groups) * (size_t)p.kh * (size_t)p.kw;
    expect_count(g, w, "weight.npy", (size_t)p.out_c * per_out);
    if (b) expect_count(g, b, "bias.npy", (size_t)p.out_c);
    if (fold) {
        expect_count(g, gamma, "gamma.npy", (size_t)p.out_c);
        expect_count(g, beta, "beta.npy", (size_t)p.out_c);
        expect_count(g, mean, "mean.npy", (size_t)p.out_c);
        expect_count(g, var, "var.npy", (size_t)p.out_c);
    }
    if (g->why[0]) return -1;
    int32_t oh, ow;
    ms_err err;
    if (ms_conv2d_shape(&p, in.h, in.w, &oh, &ow, &err) != MS_OK) {
        problem(g, "ms_conv2d_shape: %s", err.msg);
        return -1;
    }
    const float *weight = w->data, *bias = b ? b->data : NULL;
    if (fold) {
        float *fw = copy_floats(c, w);
        float *fb = b ? copy_floats(c, b) : alloc_floats(c, (size_t)p.out_c);
        ms_batchnorm_fold(p.out_c, per_out, fw, fb, gamma->data, beta->data, mean->data, var->data,
                          eps);
        weight = fw;
        bias = fb;
    }
    ms_tensor out = {in.n, p.out_c, oh, ow, NULL};
    out.data = alloc_floats(c, ms_tensor_count(&out));
    size_t ws = ms_conv2d_workspace(&p, in.h, in.w);
    float *workspace = ws ? alloc_floats(c, ws) : NULL;
    ms_conv2d_forward(&p, &in, weight, bias, &out, workspace);
    return compare(g, &out, out.data, ref);
}

static double run_batchnorm(run_ctx *c) {
    golden *g = c->g;
    float eps = (float)get_double(g, "eps");
    ms_npy *x = ld(c, "input"), *ref = ld(c, "output"), *gamma = ld(c, "gamma"),
           *beta = ld(c, "beta"), *mean = ld(c, "mean"), *var = ld(c, "var");
    if (g->why[0]) return -1;
    ms_tensor t;
    if (!as_tensor(g, x, "input.npy", &t)) return -1;
    size_t ch = (size_t)t.c;
    if (!expect_count(g, gamma, "gamma.npy", ch) || !expect_count(g, beta, "beta.npy", ch) ||
        !expect_count(g, mean, "mean.npy", ch) || !expect_count(g, var, "var.npy", ch))
        return -1;
    t.data = copy_floats(c, x);
    ms_batchnorm_forward(&t, gamma->data, beta->data, mean->data, var->data, eps);
    return compare(g, &t, t.data, ref);
}

static ms_pool_kind get_pool_kind(golden *g) {
    const char *v = get(g, "pool");
    if (v && strcmp(v, "max") == 0) return MS_POOL_MAX;
    if (v && strcmp(v, "avg") == 0) return MS_POOL_AVG;
    if (v) problem(g, "pool=%s: expected max or avg", v);
    return MS_POOL_MAX;
}

static double run_pool(run_ctx *c) {
    golden *g = c->g;
    ms_pool2d p;
    memset(&p, 0, sizeof p);
    p.kind = get_pool_kind(g);
    p.kh = get_int(g, "kh", 1, 64);
    p.kw = get_int(g, "kw", 1, 64);
    p.stride_h = get_int(g, "stride_h", 1, 64);
    p.stride_w = get_int(g, "stride_w", 1, 64);
    p.pad_t = get_int(g, "pad_t", 0, 64);
    p.pad_l = get_int(g, "pad_l", 0, 64);
    p.pad_b = get_int(g, "pad_b", 0, 64);
    p.pad_r = get_int(g, "pad_r", 0, 64);
    p.ceil_mode = get_bool(g, "ceil_mode");
    p.count_include_pad = get_bool(g, "count_include_pad");
    ms_npy *x = ld(c, "input"), *ref = ld(c, "output");
    if (g->why[0]) return -1;
    ms_tensor in;
    if (!as_tensor(g, x, "input.npy", &in)) return -1;
    int32_t oh, ow;
    ms_err err;
    if (ms_pool2d_shape(&p, in.h, in.w, &oh, &ow, &err) != MS_OK) {
        problem(g, "ms_pool2d_shape: %s", err.msg);
        return -1;
    }
    ms_tensor out = {in.n, in.c, oh, ow, NULL};
    out.data = alloc_floats(c, ms_tensor_count(&out));
    ms_pool2d_forward(&p, &in, &out);
    return compare(g, &out, out.data, ref);
}

static double run_global_pool(run_ctx *c) {
    golden *g = c->g;
    ms_pool_kind kind = get_pool_kind(g);
    ms_npy *x = ld(c, "input"), *ref = ld(c, "output");
    if (g->why[0]) return -1;
    ms_tensor in;
    if (!as_tensor(g, x, "input.npy", &in)) return -1;
    ms_tensor out = {in.n, in.c, 1, 1, NULL};
    out.data = alloc_floats(c, ms_tensor_count(&out));
    ms_global_pool_forward(kind, &in, &out);
    return compare(g, &out, out.data, ref);
}

static double run_upsample(run_ctx *c) {
    golden *g = c->g;
    const char *mode = get(g, "mode");
    ms_upsample_mode m = MS_UPSAMPLE_NEAREST;
    if (mode && strcmp(mode, "bilinear") == 0)
        m = MS_UPSAMPLE_BILINEAR;
    else if (mode && strcmp(mode, "nearest") != 0)
        problem(g, "mode=%s: expected nearest or bilinear", mode);
    bool ac = get_bool(g, "align_corners");
    int32_t oh = get_int(g, "out_h", 1, 1 << 16), ow = get_int(g, "out_w", 1, 1 << 16);
    ms_npy *x = ld(c, "input"), *ref = ld(c, "output");
    if (g->why[0]) return -1;
    ms_tensor in;
    if (!as_tensor(g, x, "input.npy", &in)) return -1;
    ms_tensor out = {in.n, in.c, oh, ow, NULL};
    out.data = alloc_floats(c, ms_tensor_count(&out));
    ms_upsample_forward(m, ac, &in, &out);
    return compare(g, &out, out.data, ref);
}

static double run_concat(run_ctx *c) {
    golden *g = c->g;
    int32_t count = get_int(g, "count", 1, 8);
    ms_tensor ts[8];
    const ms_tensor *ptrs[8];
    ms_npy *ref = ld(c, "output");
    int32_t total_c = 0;
    for (int32_t i = 0; i < count; i++) {
        char stem[24];
        snprintf(stem, sizeof stem, "input%d", (int)i);
        ms_npy *x = ld(c, stem);
        if (x == NULL || !as_tensor(g, x, stem, &ts[i])) return -1;
        ptrs[i] = &ts[i];
        total_c += ts[i].c;
    }
    if (g->why[0]) return -1;
    ms_tensor out = {ts[0].n, total_c, ts[0].h, ts[0].w, NULL};
    out.data = alloc_floats(c, ms_tensor_count(&out));
    ms_concat_channels(ptrs, count, &out);
    return compare(g, &out, out.data, ref);
}

static double run_binary(run_ctx *c) {
    golden *g = c->g;
    const char *op = get(g, "op");
    ms_binary_op bop = MS_BINARY_ADD;
    if (op && strcmp(op, "mul") == 0)
        bop = MS_BINARY_MUL;
    else if (op && strcmp(op, "add") != 0)
        problem(g, "op=%s: expected add or mul", op);
    ms_npy *a = ld(c, "input0"), *b = ld(c, "input1"), *ref = ld(c, "output");
    if (g->why[0]) return -1;
    ms_tensor ta, tb;
    if (!as_tensor(g, a, "input0.npy", &ta) || !as_tensor(g, b, "input1.npy", &tb)) return -1;
    ms_tensor out = ta;
    out.data = alloc_floats(c, ms_tensor_count(&ta));
    ms_err err;
    if (ms_binary_forward(bop, &ta, &tb, &out, &err) != MS_OK) {
        problem(g, "ms_binary_forward: %s", err.msg);
        return -1;
    }
    double e1 = compare(g, &out, out.data, ref);
    /* in place (out aliases a), as nn.h allows */
    ms_tensor inplace = ta;
    inplace.data = copy_floats(c, a);
    if (ms_binary_forward(bop, &inplace, &tb, &inplace, &err) != MS_OK) {
        problem(g, "ms_binary_forward in place: %s", err.msg);
        return -1;
    }
    double e2 = compare(g, &inplace, inplace.data, ref);
    return e1 < 0 || e2 < 0 ? -1 : (e1 > e2 ? e1 : e2);
}

static double run_fc(run_ctx *c) {
    golden *g = c->g;
    int32_t out_f = get_int(g, "out_features", 1, 1 << 20);
    bool has_bias = get_bool(g, "bias");
    ms_npy *x = ld(c, "input"), *w = ld(c, "weight"), *b = has_bias ? ld(c, "bias") : NULL;
    ms_npy *ref = ld(c, "output");
    if (g->why[0]) return -1;
    ms_tensor in;
    if (!as_tensor(g, x, "input.npy", &in)) return -1;
    size_t in_f = (size_t)in.c * (size_t)in.h * (size_t)in.w;
    if (!expect_count(g, w, "weight.npy", (size_t)out_f * in_f)) return -1;
    if (b && !expect_count(g, b, "bias.npy", (size_t)out_f)) return -1;
    ms_tensor out = {in.n, out_f, 1, 1, NULL};
    out.data = alloc_floats(c, ms_tensor_count(&out));
    ms_fc_forward(&in, out_f, w->data, b ? b->data : NULL, &out);
    return compare(g, &out, out.data, ref);
}

static double run_softmax(run_ctx *c) {
    golden *g = c->g;
    ms_npy *x = ld(c, "input"), *ref = ld(c, "output");
    if (g->why[0]) return -1;
    ms_tensor t;
    if (!as_tensor(g, x, "input.npy", &t)) return -1;
    t.data = copy_floats(c, x);
    ms_softmax_channels(&t);
    return compare(g, &t, t.data, ref);
}

static double run_act(run_ctx *c) {
    golden *g = c->g;
    ms_act act = get_act(g);
    float alpha = (float)get_double(g, "act_alpha");
    ms_npy *x = ld(c, "input"), *ref = ld(c, "output");
    if (g->why[0]) return -1;
    ms_tensor t;
    if (!as_tensor(g, x, "input.npy", &t)) return -1;
    t.data = copy_floats(c, x);
    ms_act_forward(act, alpha, t.data, x->count);
    return compare(g, &t, t.data, ref);
}

static const struct {
    const char *kind;
    double (*run)(run_ctx *c);
} KINDS[] = {
    {"conv2d", NULL},
    {"conv2d_bnfold", NULL},
    {"batchnorm", run_batchnorm},
    {"pool2d", run_pool},
    {"global_pool", run_global_pool},
    {"upsample", run_upsample},
    {"concat", run_concat},
    {"binary", run_binary},
    {"fc", run_fc},
    {"softmax", run_softmax},
    {"act", run_act},
};
#define NKINDS (sizeof KINDS / sizeof KINDS[0])

/* Runs one case; returns its relative error, or -1 with g->why set. */
static double run_case(golden *g, size_t *kind_index) {
    if (!list_files(g) || !load_params(g)) return -1;
    const char *kind = get(g, "kind");
    if (kind == NULL) return -1;
    size_t k = 0;
    while (k < NKINDS && strcmp(KINDS[k].kind, kind) != 0) k++;
    if (k == NKINDS) {
        problem(g, "unknown kind=%s", kind);
        return -1;
    }
    *kind_index = k;
    run_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    double e;
    if (strcmp(kind, "conv2d") == 0)
        e = run_conv(&c, false);
    else if (strcmp(kind, "conv2d_bnfold") == 0)
        e = run_conv(&c, true);
    else
        e = KINDS[k].run(&c);
    for (int i = 0; i < c.narrays; i++) ms_npy_destroy(c.arrays[i]);
    for (int i = 0; i < c.nmem; i++) free(c.mem[i]);
    if (g->why[0]) return -1;
    /* everything in the folder and in params.txt must have been used */
    for (int i = 0; i < g->nparams; i++)
        if (!g->params[i].used) problem(g, "params.txt: unused key %s", g->params[i].key);
    for (int i = 0; i < g->nfiles; i++)
        if (!g->files_used[i] && strcmp(g->files[i], "params.txt") != 0)
            problem(g, "unexpected file %s", g->files[i]);
    return g->why[0] ? -1 : e;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_golden(void **state) {
    (void)state;
    DIR *d = opendir(GOLDEN_DIR);
    if (d == NULL) fail_msg("cannot open %s (run scripts/make-nn-goldens.py)", GOLDEN_DIR);
    char *names[MAX_CASES];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == MAX_CASES) fail_msg("more than %d cases", MAX_CASES);
        names[n] = strdup(e->d_name);
        assert_non_null(names[n]);
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);

    kind_stats stats[NKINDS];
    memset(stats, 0, sizeof stats);
    for (size_t k = 0; k < NKINDS; k++) stats[k].kind = KINDS[k].kind;
    int failed = 0;
    golden *g = malloc(sizeof *g);
    assert_non_null(g);
    for (int i = 0; i < n; i++) {
        memset(g, 0, sizeof *g);
        g->name = names[i];
        snprintf(g->dir, sizeof g->dir, "%s/%s", GOLDEN_DIR, names[i]);
        struct stat sb;
        if (stat(g->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            printf("FAIL %-40s not a case folder\n", names[i]);
            failed++;
            continue;
        }
        size_t k = NKINDS;
        double err = run_case(g, &k);
        if (err < 0 || !(err <= TOLERANCE)) {
            if (err < 0)
                printf("FAIL %-40s %s\n", names[i], g->why);
            else
                printf("FAIL %-40s relative error %.3g > %g\n", names[i], err, TOLERANCE);
            failed++;
        }
        if (k < NKINDS) {
            stats[k].cases++;
            double shown = err < 0 ? INFINITY : err;
            if (stats[k].cases == 1 || !(shown <= stats[k].worst)) {
                stats[k].worst = shown;
                ms_str_copy(stats[k].worst_case, sizeof stats[k].worst_case, names[i]);
            }
        }
    }
    free(g);
    printf("nn golden: %d cases against PyTorch, tolerance %g (max |ours - ref| "
           "/ max |ref|)\n",
           n, TOLERANCE);
    for (size_t k = 0; k < NKINDS; k++) {
        printf("  %-14s %3d cases, worst %.3g (%s)\n", stats[k].kind, stats[k].cases,
               stats[k].worst, stats[k].cases ? stats[k].worst_case : "-");
    }
    for (int i = 0; i < n; i++) free(names[i]);
    if (n < 30) fail_msg("only %d golden cases in %s", n, GOLDEN_DIR);
    for (size_t k = 0; k < NKINDS; k++)
        if (stats[k].cases == 0) fail_msg("no golden case of kind %s", stats[k].kind);
    if (failed) fail_msg("%d of %d golden cases failed", failed, n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
