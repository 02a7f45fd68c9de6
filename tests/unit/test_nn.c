/* nn layer tests: every operator against a plain reference written here (double precision,
 * loops that follow the definitions), on many deterministic random cases, plus the shape
 * checks' error paths. Outputs live between guard zones (checked after every call) and start
 * as NaN, so a missed or stray write fails. Criterion: max |ours - ref| / max(1e-6, max |ref|)
 * <= 1e-5; the worst value per operator is printed by the last test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard_buf.h"
#include "nn_ref.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"
#include "medscreen/nn.h"

#define TOL 1e-5

static void fill(rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_f(r);
}

/* ---- guarded buffers: guard_buf.h ---- */

/* ---- error bookkeeping ---- */

typedef struct worst_rec {
    const char *op;
    double err;
    int cases;
} worst_rec;

static worst_rec worst_tab[] = {
    {"act", 0, 0},         {"conv2d", 0, 0},   {"batchnorm", 0, 0}, {"pool2d", 0, 0},
    {"global_pool", 0, 0}, {"upsample", 0, 0}, {"binary", 0, 0},    {"fc", 0, 0},
    {"softmax", 0, 0},     {"concat", 0, 0},
};

static double rel_err(const float *ours, const double *ref, size_t n) {
    double maxd = 0, maxr = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(ours[i])) return INFINITY;
        double d = fabs((double)ours[i] - ref[i]);
        if (d > maxd) maxd = d;
        if (fabs(ref[i]) > maxr) maxr = fabs(ref[i]);
    }
    return maxd / (maxr > 1e-6 ? maxr : 1e-6);
}

static void check_close(const char *op, const float *ours, const double *ref, size_t n,
                        const char *fmt, ...) {
    double e = rel_err(ours, ref, n);
    for (size_t i = 0; i < sizeof worst_tab / sizeof worst_tab[0]; i++)
        if (strcmp(worst_tab[i].op, op) == 0) {
            worst_tab[i].cases++;
            if (e > worst_tab[i].err) worst_tab[i].err = e;
        }
    if (!(e <= TOL)) {
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        fail_msg("%s: relative error %.3g > %.1g (%s)", op, e, TOL, what);
    }
}

/* ---- activations ---- */

/* act_ref: nn_ref.h */

static const char *act_name(ms_act a) {
    static const char *names[] = {"none", "relu", "leaky_relu", "silu", "sigmoid", "tanh", "gelu"};
    return names[a];
}

static void test_act(void **state) {
    (void)state;
    rng r = {1};
    static const float extremes[] = {0.0f,  -0.0f,  1e-30f,  -1e-30f, 88.0f, -88.0f,
                                     89.0f, -89.0f, 100.0f,  -100.0f, 1e4f,  -1e4f,
                                     1e30f, -1e30f, FLT_MAX, -FLT_MAX};
    const size_t n_ext = sizeof extremes / sizeof extremes[0];
    for (int a = MS_ACT_NONE; a <= MS_ACT_GELU; a++) {
        for (int rep = 0; rep < 4; rep++) {
            const size_t n = 1000 + (size_t)rep * 37;
            const float scale = rep == 0 ? 1.0f : rep == 1 ? 8.0f : rep == 2 ? 30.0f : 200.0f;
            gbuf g;
            float *x = gbuf_alloc(&g, n);
            fill(&r, x, n, scale);
            double *ref = malloc(n * sizeof *ref);
            assert_non_null(ref);
            const float alpha = 0.1f + 0.05f * (float)rep;
            for (size_t i = 0; i < n; i++) ref[i] = act_ref((ms_act)a, alpha, x[i]);
            ms_act_forward((ms_act)a, alpha, x, n);
            gbuf_check(&g, "act");
            check_close("act", x, ref, n, "%s scale %g", act_name((ms_act)a), (double)scale);
            free(ref);
            gbuf_free(&g);
        }
        /* Saturation and signed zeros: finite results close to the reference value. */
        float x[sizeof extremes / sizeof extremes[0]];
        memcpy(x, extremes, sizeof x);
        ms_act_forward((ms_act)a, 0.01f, x, n_ext);
        for (size_t i = 0; i < n_ext; i++) {
            double ref = act_ref((ms_act)a, 0.01, extremes[i]);
            if (!isfinite(ref)) continue; /* silu/gelu at +-FLT_MAX in double is finite */
            if (!isfinite(x[i]))
                fail_msg("%s(%g) = %g", act_name((ms_act)a), (double)extremes[i], (double)x[i]);
            double tol = 1e-6 * fmax(1.0, fabs(ref));
            if (fabs(x[i] - ref) > tol)
                fail_msg("%s(%g) = %.9g, expected %.9g", act_name((ms_act)a), (double)extremes[i],
                         (double)x[i], ref);
        }
    }
}

/* ---- convolution ---- */

typedef enum conv_kind { CK_GENERAL = 0, CK_GROUPED, CK_DEPTHWISE, CK_POINTWISE } conv_kind;

/* The path the implementation must take, and so the workspace it must ask for. */
static size_t expected_workspace(const ms_conv2d *p, int32_t oh, int32_t ow, conv_kind *kind) {
    if (p->groups == p->in_c && p->in_c == p->out_c) {
        *kind = CK_DEPTHWISE;
        return 0;
    }
    if (p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_t == 0 &&
        p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0) {
        *kind = CK_POINTWISE;
        return 0;
    }
    *kind = p->groups > 1 ? CK_GROUPED : CK_GENERAL;
    /* im2col works on bands of output rows whose column matrix fits 2^18 floats (at least one
     * row, at most all of them). */
    const size_t row = (size_t)(p->in_c / p->groups) * (size_t)p->kh * (size_t)p->kw * (size_t)ow;
    size_t band = ((size_t)1 << 18) / row;
    if (band < 1) band = 1;
    if (band > (size_t)oh) band = (size_t)oh;
    return row * band;
}

/* Runs one convolution case against the reference; returns the path it took. */
static conv_kind run_conv_case(rng *r, const ms_conv2d *p, int32_t batch, int32_t in_h,
                               int32_t in_w, bool with_bias) {
    int32_t oh = -1, ow = -1;
    ms_err err = {0};
    if (ms_conv2d_shape(p, in_h, in_w, &oh, &ow, &err) != MS_OK)
        fail_msg("conv2d shape refused a valid case: %s", err.msg);
    const int32_t eh = (p->kh - 1) * p->dil_h + 1, ew = (p->kw - 1) * p->dil_w + 1;
    assert_int_equal(oh, (in_h + p->pad_t + p->pad_b - eh) / p->stride_h + 1);
    assert_int_equal(ow, (in_w + p->pad_l + p->pad_r - ew) / p->stride_w + 1);

    conv_kind kind;
    const size_t ws_expect = expected_workspace(p, oh, ow, &kind);
    const size_t ws = ms_conv2d_workspace(p, in_h, in_w);
    if (ws != ws_expect) fail_msg("conv2d workspace %zu, expected %zu", ws, ws_expect);

    const size_t n_in = (size_t)batch * (size_t)p->in_c * (size_t)in_h * (size_t)in_w;
    const size_t n_w =
        (size_t)p->out_c * (size_t)(p->in_c / p->groups) * (size_t)p->kh * (size_t)p->kw;
    const size_t n_out = (size_t)batch * (size_t)p->out_c * (size_t)oh * (size_t)ow;
    float *in = malloc(n_in * sizeof *in), *w = malloc(n_w * sizeof *w);
    float *bias = malloc((size_t)p->out_c * sizeof *bias);
    double *ref = malloc(n_out * sizeof *ref);
    assert_true(in && w && bias && ref);
    fill(r, in, n_in, 1.0f);
    fill(r, w, n_w, 1.0f);
    fill(r, bias, (size_t)p->out_c, 1.0f);

    gbuf go, gw = {0};
    float *out = gbuf_alloc(&go, n_out);
    float *wsp = ws ? gbuf_alloc(&gw, ws) : NULL;
    ms_tensor tin = {batch, p->in_c, in_h, in_w, in};
    ms_tensor tout = {batch, p->out_c, oh, ow, out};
    ms_conv2d_forward(p, &tin, w, with_bias ? bias : NULL, &tout, wsp);
    gbuf_check(&go, "conv2d out");
    if (ws) gbuf_check(&gw, "conv2d workspace");

    conv_ref(p, batch, in_h, in_w, in, w, with_bias ? bias : NULL, oh, ow, true, ref);
    static const char *kinds[] = {"general", "grouped", "depthwise", "pointwise"};
    check_close("conv2d", out, ref, n_out,
                "%s n=%d in=%dx%dx%d out_c=%d k=%dx%d s=%dx%d d=%dx%d pad=%d,%d,%d,%d g=%d %s%s",
                kinds[kind], batch, p->in_c, in_h, in_w, p->out_c, p->kh, p->kw, p->stride_h,
                p->stride_w, p->dil_h, p->dil_w, p->pad_t, p->pad_l, p->pad_b, p->pad_r, p->groups,
                act_name(p->act), with_bias ? " bias" : "");

    gbuf_free(&go);
    if (ws) gbuf_free(&gw);
    free(in);
    free(w);
    free(bias);
    free(ref);
    return kind;
}

static void test_conv_random(void **state) {
    (void)state;
    rng r = {12345};
    static const int32_t ksizes[] = {1, 3, 5, 7};
    int paths[4] = {0}, ks_seen[8] = {0}, stride3 = 0, dil2 = 0, asym = 0, batch3 = 0;
    for (int it = 0; it < 600; it++) {
        ms_conv2d p = {0};
        const conv_kind want = (conv_kind)(it % 4);
        p.kh = ksizes[rng_u32(&r) % 4];
        p.kw = rng_u32(&r) % 3 == 0 ? ksizes[rng_u32(&r) % 4] : p.kh;
        p.stride_h = rng_int(&r, 1, 3);
        p.stride_w = rng_u32(&r) % 2 ? p.stride_h : rng_int(&r, 1, 3);
        p.dil_h = rng_int(&r, 1, 2);
        p.dil_w = rng_u32(&r) % 2 ? p.dil_h : rng_int(&r, 1, 2);
        p.pad_t = rng_int(&r, 0, 3);
        p.pad_l = rng_int(&r, 0, 3);
        p.pad_b = rng_int(&r, 0, 3);
        p.pad_r = rng_int(&r, 0, 3);
        p.act = (ms_act)(it % 7);
        p.act_alpha = 0.2f;
        switch (want) {
        case CK_GENERAL:
            p.groups = 1;
            p.in_c = rng_int(&r, 1, 5);
            p.out_c = rng_int(&r, 1, 6);
            break;
        case CK_GROUPED:
            p.groups = rng_u32(&r) % 2 ? 2 : 4;
            p.in_c = p.groups * rng_int(&r, 1, 3);
            p.out_c = p.groups * rng_int(&r, 1, 3);
            if (p.in_c == p.groups && p.out_c == p.groups) p.out_c *= 2; /* not depthwise */
            break;
        case CK_DEPTHWISE: p.in_c = p.out_c = p.groups = rng_int(&r, 1, 6); break;
        case CK_POINTWISE:
            p.kh = p.kw = 1;
            p.stride_h = p.stride_w = 1;
            p.pad_t = p.pad_l = p.pad_b = p.pad_r = 0;
            p.groups = rng_u32(&r) % 2 ? 1 : 2;
            p.in_c = p.groups * rng_int(&r, 1, 8);
            p.out_c = p.groups * rng_int(&r, 1, 8);
            if (p.in_c == p.groups && p.out_c == p.groups) p.out_c *= 2;
            break;
        }
        const int32_t batch = rng_u32(&r) % 2 ? 1 : 3;
        int32_t in_h = rng_int(&r, 1, 19), in_w = rng_int(&r, 1, 19);
        /* Grow the input until the effective kernel fits the padded input. */
        const int32_t eh = (p.kh - 1) * p.dil_h + 1, ew = (p.kw - 1) * p.dil_w + 1;
        if (in_h + p.pad_t + p.pad_b < eh) in_h = eh - p.pad_t - p.pad_b + rng_int(&r, 0, 4);
        if (in_w + p.pad_l + p.pad_r < ew) in_w = ew - p.pad_l - p.pad_r + rng_int(&r, 0, 4);
        if (in_h < 1) in_h = 1;
        if (in_w < 1) in_w = 1;

        conv_kind got = run_conv_case(&r, &p, batch, in_h, in_w, it % 5 != 0);
        paths[got]++;
        ks_seen[p.kh]++;
        stride3 += p.stride_h == 3 || p.stride_w == 3;
        dil2 += p.dil_h == 2 || p.dil_w == 2;
        asym += p.pad_t != p.pad_b || p.pad_l != p.pad_r;
        batch3 += batch == 3;
    }
    /* Every path and parameter family really ran. */
    for (int k = 0; k < 4; k++)
        if (paths[k] < 100) fail_msg("conv path %d ran only %d times", k, paths[k]);
    for (int k = 1; k <= 7; k += 2)
        if (ks_seen[k] < 20) fail_msg("kernel %d ran only %d times", k, ks_seen[k]);
    assert_true(stride3 > 50 && dil2 > 50 && asym > 50 && batch3 > 50);
}

/* Larger reduction lengths than the random cases (K up to 32*9 and 64 for 1x1) so the GEMM
 * blocking of OpenBLAS is exercised, on the reference network's layer shapes at 24x24. */
static void test_conv_network_shapes(void **state) {
    (void)state;
    rng r = {777};
    static const struct {
        int32_t in_c, out_c, k, s, pad, groups;
    } L[] = {
        {1, 16, 3, 1, 1, 1},  {16, 32, 3, 2, 1, 1},  {32, 32, 3, 1, 1, 1}, {32, 64, 3, 2, 1, 1},
        {64, 1, 1, 1, 0, 1},  {64, 64, 3, 1, 1, 64}, {32, 64, 1, 2, 0, 1}, {64, 32, 1, 1, 0, 1},
        {32, 32, 5, 1, 2, 4}, {16, 32, 7, 2, 3, 2},  {3, 8, 7, 2, 3, 1},
    };
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++)
        for (int32_t batch = 1; batch <= 3; batch += 2) {
            ms_conv2d p = {L[i].in_c, L[i].out_c, L[i].k,      L[i].k,      L[i].s,
                           L[i].s,    1,          1,           L[i].pad,    L[i].pad,
                           L[i].pad,  L[i].pad,   L[i].groups, MS_ACT_RELU, 0};
            run_conv_case(&r, &p, batch, 24 + (int32_t)i % 3, 23, true);
        }
}

/* Outputs large enough for the im2col path to work in several bands of rows (the last one
 * partial), and a row longer than the band budget (one row per band). */
static void test_conv_banded(void **state) {
    (void)state;
    rng r = {9090};
    ms_conv2d a = {32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_SILU, 0};
    run_conv_case(&r, &a, 1, 64, 64, true); /* K*ow = 18432: 14 rows a band, 5 bands */
    ms_conv2d b = {16, 8, 5, 5, 2, 1, 2, 1, 3, 0, 1, 2, 2, MS_ACT_RELU, 0};
    run_conv_case(&r, &b, 3, 97, 61, true);
    ms_conv2d c = {64, 2, 7, 7, 1, 1, 1, 1, 0, 3, 0, 3, 1, MS_ACT_NONE, 0};
    run_conv_case(&r, &c, 1, 9, 100, false); /* K*ow = 313600 > 2^18: one row a band */
    conv_kind kind;
    assert_int_equal(expected_workspace(&c, 3, 100, &kind), 313600);
}

static void expect_conv_error(const ms_conv2d *p, int32_t in_h, int32_t in_w, ms_status want,
                              const char *needle) {
    int32_t oh = -7, ow = -7;
    ms_err err = {0};
    ms_status st = ms_conv2d_shape(p, in_h, in_w, &oh, &ow, &err);
    if (st != want)
        fail_msg("conv2d shape: status %d, expected %d (wanted \"%s\"; message \"%s\")", st, want,
                 needle, err.msg);
    assert_int_equal(err.status, want);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("conv2d message \"%s\" lacks \"%s\"", err.msg, needle);
    assert_int_equal(oh, -7); /* out-parameters untouched on failure */
    assert_int_equal(ow, -7);
    assert_int_equal(ms_conv2d_shape(p, in_h, in_w, NULL, NULL, NULL), want); /* NULL err ok */
    assert_true(ms_conv2d_workspace(p, in_h, in_w) == SIZE_MAX);
}

static void test_conv_shape_errors(void **state) {
    (void)state;
    const ms_conv2d ok = {4, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_NONE, 0};
    int32_t oh, ow;
    assert_int_equal(ms_conv2d_shape(&ok, 10, 10, &oh, &ow, NULL), MS_OK);
    assert_int_equal(oh, 10);
    assert_int_equal(ow, 10);

    ms_conv2d p = ok;
    p.groups = 3;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "groups=3");
    p = ok;
    p.groups = 0;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "groups=0");
    p = ok;
    p.groups = 4; /* divides in_c=4 and out_c=8: fine */
    assert_int_equal(ms_conv2d_shape(&p, 10, 10, &oh, &ow, NULL), MS_OK);
    p.out_c = 6;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "out_c=6");
    p = ok;
    p.stride_h = 0;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "stride 0x1");
    p = ok;
    p.stride_w = -2;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "stride");
    p = ok;
    p.dil_w = 0;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "dilation");
    p = ok;
    p.kh = 0;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "kernel 0x3");
    p = ok;
    p.in_c = 0;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "in_c=0");
    p = ok;
    p.pad_b = -1;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "bottom -1");
    p = ok;
    p.act = (ms_act)42;
    expect_conv_error(&p, 10, 10, MS_EINVAL, "activation 42");
    expect_conv_error(&ok, 0, 10, MS_EINVAL, "0x10");
    expect_conv_error(NULL, 10, 10, MS_EINVAL, "NULL");

    /* Effective kernel (k-1)*d+1 against the padded input. */
    p = ok;
    p.kh = 5;
    p.pad_t = p.pad_b = 0;
    expect_conv_error(&p, 4, 10, MS_EINVAL, "effective kernel height 5");
    assert_int_equal(ms_conv2d_shape(&p, 5, 10, &oh, &ow, NULL), MS_OK); /* exactly fits */
    assert_int_equal(oh, 1);
    p = ok;
    p.dil_w = 4; /* (3-1)*4+1 = 9 > 6 + 2 */
    expect_conv_error(&p, 10, 6, MS_EINVAL, "effective kernel width 9");
    p.pad_r = 2; /* 9 <= 6 + 1 + 2 */
    assert_int_equal(ms_conv2d_shape(&p, 10, 6, &oh, &ow, NULL), MS_OK);
    assert_int_equal(ow, 1);

    /* Overflows. */
    p = ok;
    p.kh = p.kw = 1;
    p.pad_t = p.pad_l = p.pad_b = p.pad_r = 0;
    expect_conv_error(&p, 65536, 65536, MS_EOVERFLOW, "output plane"); /* > INT_MAX for BLAS */
    p = ok;
    p.pad_t = p.pad_b = 1000;
    expect_conv_error(&p, INT32_MAX, 4, MS_EOVERFLOW, "does not fit int32");
    p = ok;
    p.in_c = 1 << 20;
    p.kh = p.kw = 64;
    p.groups = 1;
    expect_conv_error(&p, 64, 64, MS_EOVERFLOW, "reduction length");
    p = ok;
    p.in_c = 1 << 20;
    p.out_c = 1;
    p.kh = p.kw = 1;
    p.pad_t = p.pad_l = p.pad_b = p.pad_r = 0;
    p.stride_h = p.stride_w = 1 << 30;
    expect_conv_error(&p, 1 << 30, 1 << 30, MS_EOVERFLOW, "input image");
}

/* ---- batch normalisation ---- */

static void test_batchnorm(void **state) {
    (void)state;
    rng r = {99};
    for (int it = 0; it < 40; it++) {
        const int32_t c = rng_int(&r, 1, 9), batch = it % 2 ? 1 : 3;
        const int32_t h = rng_int(&r, 1, 9), w = rng_int(&r, 1, 9);
        float gamma[9], beta[9], mean[9], var[9];
        for (int32_t i = 0; i < c; i++) {
            gamma[i] = 2.0f * rng_f(&r);
            beta[i] = rng_f(&r);
            mean[i] = rng_f(&r);
            var[i] = it % 3 == 0 ? 1e-4f * (rng_f(&r) + 1.0f) : 2.0f + rng_f(&r);
        }
        const float eps = 1e-5f;

        /* forward against the definition */
        const size_t n = (size_t)batch * (size_t)c * (size_t)h * (size_t)w;
        gbuf g;
        float *x = gbuf_alloc(&g, n);
        fill(&r, x, n, 3.0f);
        double *ref = malloc(n * sizeof *ref);
        assert_non_null(ref);
        const size_t plane = (size_t)h * (size_t)w;
        for (size_t i = 0; i < n; i++) {
            size_t ch = (i / plane) % (size_t)c;
            ref[i] = gamma[ch] * ((double)x[i] - mean[ch]) / sqrt((double)var[ch] + eps) + beta[ch];
        }
        ms_tensor t = {batch, c, h, w, x};
        ms_batchnorm_forward(&t, gamma, beta, mean, var, eps);
        gbuf_check(&g, "batchnorm");
        check_close("batchnorm", x, ref, n, "forward c=%d", c);
        free(ref);
        gbuf_free(&g);

        /* fold into a 3x3 convolution, then compare with conv followed by the normalisation */
        const int32_t in_c = rng_int(&r, 1, 4), in_h = 7, in_w = 6;
        ms_conv2d p = {in_c, c, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_NONE, 0};
        const size_t per_out = (size_t)in_c * 9, n_in = (size_t)batch * (size_t)in_c * 42;
        float *wt = malloc((size_t)c * per_out * sizeof *wt), bias[9];
        float *in = malloc(n_in * sizeof *in);
        assert_true(wt && in);
        fill(&r, wt, (size_t)c * per_out, 1.0f);
        fill(&r, in, n_in, 1.0f);
        const bool had_bias = it % 2 == 0;
        for (int32_t i = 0; i < c; i++) bias[i] = had_bias ? rng_f(&r) : 0.0f;
        const size_t n_out = (size_t)batch * (size_t)c * 42;
        double *cref = malloc(n_out * sizeof *cref);
        assert_non_null(cref);
        conv_ref(&p, batch, in_h, in_w, in, wt, bias, in_h, in_w, false, cref);
        for (size_t i = 0; i < n_out; i++) {
            size_t ch = (i / 42) % (size_t)c;
            cref[i] = gamma[ch] * (cref[i] - mean[ch]) / sqrt((double)var[ch] + eps) + beta[ch];
        }
        ms_batchnorm_fold(c, per_out, wt, bias, gamma, beta, mean, var, eps);
        gbuf go, gw;
        float *out = gbuf_alloc(&go, n_out);
        float *ws = gbuf_alloc(&gw, ms_conv2d_workspace(&p, in_h, in_w));
        ms_tensor ti = {batch, in_c, in_h, in_w, in}, to = {batch, c, in_h, in_w, out};
        ms_conv2d_forward(&p, &ti, wt, bias, &to, ws);
        gbuf_check(&go, "folded conv");
        gbuf_check(&gw, "folded conv workspace");
        check_close("batchnorm", out, cref, n_out, "fold c=%d in_c=%d", c, in_c);
        gbuf_free(&go);
        gbuf_free(&gw);
        free(cref);
        free(wt);
        free(in);
    }
}

/* ---- pooling ---- */

static int32_t pool_out_ref(int32_t in, int32_t k, int32_t s, int32_t p0, int32_t p1, bool ceil_m) {
    double v = (double)(in + p0 + p1 - k) / s;
    int32_t o = (int32_t)(ceil_m ? ceil(v) : floor(v)) + 1;
    if (ceil_m && (o - 1) * s >= in + p0) o--;
    return o;
}

/* PyTorch's avg_pool2d / max_pool2d loops, written out. */
static void pool_ref(const ms_pool2d *p, int32_t planes, int32_t in_h, int32_t in_w,
                     const float *in, int32_t oh, int32_t ow, double *out) {
    for (int32_t pl = 0; pl < planes; pl++)
        for (int32_t oy = 0; oy < oh; oy++)
            for (int32_t ox = 0; ox < ow; ox++) {
                int32_t hs = oy * p->stride_h - p->pad_t, ws = ox * p->stride_w - p->pad_l;
                int32_t he = hs + p->kh, we = ws + p->kw;
                if (he > in_h + p->pad_b) he = in_h + p->pad_b;
                if (we > in_w + p->pad_r) we = in_w + p->pad_r;
                const int32_t pool_size = (he - hs) * (we - ws);
                if (hs < 0) hs = 0;
                if (ws < 0) ws = 0;
                if (he > in_h) he = in_h;
                if (we > in_w) we = in_w;
                double acc = p->kind == MS_POOL_MAX ? -INFINITY : 0.0;
                for (int32_t y = hs; y < he; y++)
                    for (int32_t x = ws; x < we; x++) {
                        double v =
                            in[((size_t)pl * (size_t)in_h + (size_t)y) * (size_t)in_w + (size_t)x];
                        if (p->kind == MS_POOL_MAX)
                            acc = (v > acc || isnan(v)) ? v : acc; /* NaN wins */
                        else
                            acc += v;
                    }
                if (p->kind == MS_POOL_AVG)
                    acc /= p->count_include_pad ? pool_size : (he - hs) * (we - ws);
                out[((size_t)pl * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox] = acc;
            }
}

static void run_pool_case(rng *r, const ms_pool2d *p, int32_t batch, int32_t c, int32_t in_h,
                          int32_t in_w) {
    int32_t oh = -1, ow = -1;
    ms_err err = {0};
    if (ms_pool2d_shape(p, in_h, in_w, &oh, &ow, &err) != MS_OK)
        fail_msg("pool2d shape refused a valid case: %s", err.msg);
    assert_int_equal(oh, pool_out_ref(in_h, p->kh, p->stride_h, p->pad_t, p->pad_b, p->ceil_mode));
    assert_int_equal(ow, pool_out_ref(in_w, p->kw, p->stride_w, p->pad_l, p->pad_r, p->ceil_mode));
    const size_t n_in = (size_t)batch * (size_t)c * (size_t)in_h * (size_t)in_w;
    const size_t n_out = (size_t)batch * (size_t)c * (size_t)oh * (size_t)ow;
    float *in = malloc(n_in * sizeof *in);
    double *ref = malloc(n_out * sizeof *ref);
    assert_true(in && ref);
    fill(r, in, n_in, 1.0f);
    gbuf g;
    float *out = gbuf_alloc(&g, n_out);
    ms_tensor ti = {batch, c, in_h, in_w, in}, to = {batch, c, oh, ow, out};
    ms_pool2d_forward(p, &ti, &to);
    gbuf_check(&g, "pool2d");
    pool_ref(p, batch * c, in_h, in_w, in, oh, ow, ref);
    check_close(
        "pool2d", out, ref, n_out, "%s k=%dx%d s=%dx%d pad=%d,%d,%d,%d ceil=%d cip=%d in=%dx%d",
        p->kind == MS_POOL_MAX ? "max" : "avg", p->kh, p->kw, p->stride_h, p->stride_w, p->pad_t,
        p->pad_l, p->pad_b, p->pad_r, p->ceil_mode, p->count_include_pad, in_h, in_w);
    gbuf_free(&g);
    free(in);
    free(ref);
}

static void test_pool_random(void **state) {
    (void)state;
    rng r = {4242};
    int dropped = 0, ceil_grew = 0;
    for (int it = 0; it < 800; it++) {
        ms_pool2d p = {0};
        p.kind = it % 2 ? MS_POOL_MAX : MS_POOL_AVG;
        p.ceil_mode = (it / 2) % 2;
        p.count_include_pad = (it / 4) % 2;
        p.kh = rng_int(&r, 1, 5);
        p.kw = rng_u32(&r) % 2 ? p.kh : rng_int(&r, 1, 5);
        p.stride_h = rng_int(&r, 1, 3);
        p.stride_w = rng_int(&r, 1, 3);
        p.pad_t = rng_int(&r, 0, p.kh / 2);
        p.pad_b = rng_int(&r, 0, p.kh / 2);
        p.pad_l = rng_int(&r, 0, p.kw / 2);
        p.pad_r = rng_int(&r, 0, p.kw / 2);
        int32_t in_h = rng_int(&r, 1, 15), in_w = rng_int(&r, 1, 15);
        if (in_h + p.pad_t + p.pad_b < p.kh) in_h = p.kh;
        if (in_w + p.pad_l + p.pad_r < p.kw) in_w = p.kw;
        if (p.ceil_mode) {
            int32_t f = pool_out_ref(in_h, p.kh, p.stride_h, p.pad_t, p.pad_b, false);
            double v = (double)(in_h + p.pad_t + p.pad_b - p.kh) / p.stride_h;
            int32_t raw = (int32_t)ceil(v) + 1;
            int32_t c = pool_out_ref(in_h, p.kh, p.stride_h, p.pad_t, p.pad_b, true);
            ceil_grew += c > f;
            dropped += c < raw;
        }
        run_pool_case(&r, &p, it % 3 ? 1 : 3, rng_int(&r, 1, 3), in_h, in_w);
    }
    /* The ceil_mode rules really were exercised. */
    assert_true(ceil_grew > 20);
    assert_true(dropped > 5);
}

/* Max pooling passes NaN on as PyTorch does, also in the vectorised paths (3x3/s2 and a row
 * wider than one vector), and the pool's plane tasks give the same bits on 1-3 threads. */
static void test_pool_nan_and_threads(void **state) {
    (void)state;
    rng r = {77};
    const ms_pool2d ps[] = {{MS_POOL_MAX, 3, 3, 2, 2, 1, 1, 1, 1, false, false},
                            {MS_POOL_MAX, 2, 3, 1, 1, 0, 1, 1, 1, true, false},
                            {MS_POOL_AVG, 3, 3, 2, 2, 1, 1, 1, 1, false, true}};
    const int32_t c = 70, h = 37, w = 61;
    const size_t n_in = (size_t)c * (size_t)h * (size_t)w;
    float *in = malloc(n_in * sizeof *in);
    assert_non_null(in);
    fill(&r, in, n_in, 1.0f);
    for (int k = 0; k < 5; k++) in[rng_u32(&r) % n_in] = NAN;
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        int32_t oh, ow;
        assert_int_equal(ms_pool2d_shape(&ps[i], h, w, &oh, &ow, NULL), MS_OK);
        const size_t n_out = (size_t)c * (size_t)oh * (size_t)ow;
        double *ref = malloc(n_out * sizeof *ref);
        float *one = malloc(n_out * sizeof *one), *out = malloc(n_out * sizeof *out);
        assert_true(ref && one && out);
        pool_ref(&ps[i], c, h, w, in, oh, ow, ref);
        ms_tensor ti = {1, c, h, w, in}, to = {1, c, oh, ow, one};
        ms_pool2d_forward(&ps[i], &ti, &to);
        size_t nans = 0;
        for (size_t j = 0; j < n_out; j++) {
            if (isnan(ref[j]) != isnan(one[j]))
                fail_msg("pool %zu: NaN not passed on at %zu", i, j);
            nans += isnan(one[j]) != 0;
            if (!isnan(ref[j]) && fabs(one[j] - ref[j]) > 1e-6 * (1 + fabs(ref[j])))
                fail_msg("pool %zu: %g against %g at %zu", i, one[j], ref[j], j);
        }
        assert_true(nans >= 5);
        for (int32_t t = 1; t <= 3; t++) {
            ms_pool *pool = NULL;
            assert_int_equal(ms_pool_create(t, &pool, NULL), MS_OK);
            to.data = out;
            ms_pool2d_forward_pool(&ps[i], &ti, &to, pool);
            if (memcmp(out, one, n_out * sizeof *out) != 0)
                fail_msg("pool %zu: %d threads differ from one", i, t);
            ms_pool_destroy(pool);
        }
        free(ref), free(one), free(out);
    }
    free(in);
}

/* Known values, worked by hand from torch 1.13's AvgPoolKernel.cpp arithmetic for
 * F.avg_pool2d(torch.ones(1,1,4,4), 3, 2, 1, ceil_mode=True, count_include_pad=True):
 * rows/columns are windows [-1,2), [1,4) and [3,6), the last clipped to the padded input [3,5),
 * so the divisors are 3x3, 3x3 and 2 wide:
 *   [[4/9, 6/9, 2/6], [6/9, 9/9, 3/6], [2/6, 3/6, 1/4]].
 * With count_include_pad=False every value is 1. */
static void test_pool_known(void **state) {
    (void)state;
    float ones[16];
    for (int i = 0; i < 16; i++) ones[i] = 1.0f;
    ms_pool2d p = {MS_POOL_AVG, 3, 3, 2, 2, 1, 1, 1, 1, true, true};
    int32_t oh, ow;
    assert_int_equal(ms_pool2d_shape(&p, 4, 4, &oh, &ow, NULL), MS_OK);
    assert_int_equal(oh, 3);
    assert_int_equal(ow, 3);
    float out[9];
    ms_tensor ti = {1, 1, 4, 4, ones}, to = {1, 1, 3, 3, out};
    ms_pool2d_forward(&p, &ti, &to);
    const double want[9] = {4 / 9.0, 6 / 9.0, 2 / 6.0, 6 / 9.0, 1, 3 / 6.0, 2 / 6.0, 3 / 6.0, 0.25};
    for (int i = 0; i < 9; i++) assert_float_equal(out[i], want[i], 1e-6);
    p.count_include_pad = false;
    ms_pool2d_forward(&p, &ti, &to);
    for (int i = 0; i < 9; i++) assert_float_equal(out[i], 1.0, 1e-6);

    /* ceil_mode drops a window that would start in the right padding: 5 wide, k=2, s=2,
     * pad 1: floor gives 3, ceil gives 4 but (4-1)*2 = 6 >= 5 + 1, so 3. */
    ms_pool2d q = {MS_POOL_MAX, 2, 2, 2, 2, 1, 1, 1, 1, true, false};
    assert_int_equal(ms_pool2d_shape(&q, 5, 5, &oh, &ow, NULL), MS_OK);
    assert_int_equal(oh, 3);
    /* and 6 wide, k=3, s=2, no pad: floor 2, ceil 3 (window 2 starts at 4 < 6). */
    ms_pool2d q2 = {MS_POOL_MAX, 3, 3, 2, 2, 0, 0, 0, 0, true, false};
    assert_int_equal(ms_pool2d_shape(&q2, 6, 6, &oh, &ow, NULL), MS_OK);
    assert_int_equal(oh, 3);
    q2.ceil_mode = false;
    assert_int_equal(ms_pool2d_shape(&q2, 6, 6, &oh, &ow, NULL), MS_OK);
    assert_int_equal(oh, 2);

    /* Max pooling ignores padding: all-negative input keeps its negative maxima. */
    float neg[16];
    for (int i = 0; i < 16; i++) neg[i] = -1.0f - (float)i;
    ms_pool2d m = {MS_POOL_MAX, 3, 3, 2, 2, 1, 1, 1, 1, false, false};
    ms_tensor tn = {1, 1, 4, 4, neg}, tm = {1, 1, 2, 2, out};
    ms_pool2d_forward(&m, &tn, &tm);
    assert_float_equal(out[0], -1.0, 0);
    assert_float_equal(out[3], -6.0, 0); /* window [1,4)^2: max at (1,1) */
}

static void expect_pool_error(const ms_pool2d *p, int32_t in_h, int32_t in_w, const char *needle) {
    int32_t oh = -7, ow = -7;
    ms_err err = {0};
    assert_int_equal(ms_pool2d_shape(p, in_h, in_w, &oh, &ow, &err), MS_EINVAL);
    assert_int_equal(err.status, MS_EINVAL);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("pool2d message \"%s\" lacks \"%s\"", err.msg, needle);
    assert_int_equal(oh, -7);
    assert_int_equal(ow, -7);
}

static void test_pool_shape_errors(void **state) {
    (void)state;
    const ms_pool2d ok = {MS_POOL_MAX, 3, 3, 2, 2, 1, 1, 1, 1, false, false};
    ms_pool2d p = ok;
    p.stride_w = 0;
    expect_pool_error(&p, 8, 8, "stride 2x0");
    p = ok;
    p.kh = 0;
    expect_pool_error(&p, 8, 8, "kernel 0x3");
    p = ok;
    p.pad_l = 2; /* > 3/2 */
    expect_pool_error(&p, 8, 8, "half the kernel");
    p = ok;
    p.pad_t = -1;
    expect_pool_error(&p, 8, 8, "top -1");
    p = ok;
    p.kind = (ms_pool_kind)9;
    expect_pool_error(&p, 8, 8, "kind 9");
    p = ok;
    p.kh = p.kw = 7;
    p.pad_t = p.pad_b = p.pad_l = p.pad_r = 0;
    expect_pool_error(&p, 6, 8, "kernel height 7 exceeds the padded input height 6");
    expect_pool_error(&ok, 8, 0, "8x0");
    expect_pool_error(NULL, 8, 8, "NULL");
}

static void test_global_pool(void **state) {
    (void)state;
    rng r = {5};
    for (int it = 0; it < 40; it++) {
        const int32_t n = it % 2 ? 1 : 3, c = rng_int(&r, 1, 6);
        const int32_t h = rng_int(&r, 1, 40), w = rng_int(&r, 1, 40);
        const size_t plane = (size_t)h * (size_t)w, n_in = (size_t)n * (size_t)c * plane;
        float *in = malloc(n_in * sizeof *in);
        assert_non_null(in);
        fill(&r, in, n_in, 5.0f);
        for (int kind = 0; kind < 2; kind++) {
            gbuf g;
            float *out = gbuf_alloc(&g, (size_t)n * (size_t)c);
            double ref[18];
            for (size_t pl = 0; pl < (size_t)n * (size_t)c; pl++) {
                double acc = kind == MS_POOL_MAX ? -INFINITY : 0.0;
                for (size_t i = 0; i < plane; i++) {
                    double v = in[pl * plane + i];
                    acc = kind == MS_POOL_MAX ? (v > acc ? v : acc) : acc + v;
                }
                ref[pl] = kind == MS_POOL_MAX ? acc : acc / (double)plane;
            }
            ms_tensor ti = {n, c, h, w, in}, to = {n, c, 1, 1, out};
            ms_global_pool_forward((ms_pool_kind)kind, &ti, &to);
            gbuf_check(&g, "global pool");
            check_close("global_pool", out, ref, (size_t)n * (size_t)c, "kind %d %dx%d", kind, h,
                        w);
            gbuf_free(&g);
        }
        free(in);
    }
}

/* ---- resizing ---- */

static void upsample_ref(ms_upsample_mode mode, bool ac, int32_t planes, int32_t ih, int32_t iw,
                         const float *in, int32_t oh, int32_t ow, double *out) {
    for (int32_t pl = 0; pl < planes; pl++)
        for (int32_t y = 0; y < oh; y++)
            for (int32_t x = 0; x < ow; x++) {
                const float *src = in + (size_t)pl * (size_t)ih * (size_t)iw;
                double v;
                if (mode == MS_UPSAMPLE_NEAREST) {
                    /* PyTorch: float scale in/out, floor, clamp */
                    float sy = (float)ih / (float)oh, sx = (float)iw / (float)ow;
                    int32_t yy = (int32_t)floorf((float)y * sy),
                            xx = (int32_t)floorf((float)x * sx);
                    if (yy > ih - 1) yy = ih - 1;
                    if (xx > iw - 1) xx = iw - 1;
                    v = src[(size_t)yy * (size_t)iw + (size_t)xx];
                } else {
                    /* PyTorch computes in float for float tensors: the scale is rounded to
                     * float and so is the source coordinate (its ulp at x = 300 moves lambda
                     * by ~1e-5), so the reference rounds both too. */
                    double fy, fx;
                    if (ac) {
                        fy = oh > 1 ? (double)y * (double)((float)(ih - 1) / (float)(oh - 1)) : 0.0;
                        fx = ow > 1 ? (double)x * (double)((float)(iw - 1) / (float)(ow - 1)) : 0.0;
                    } else {
                        fy = ((double)y + 0.5) * (double)((float)ih / (float)oh) - 0.5;
                        fx = ((double)x + 0.5) * (double)((float)iw / (float)ow) - 0.5;
                        if (fy < 0) fy = 0;
                        if (fx < 0) fx = 0;
                    }
                    fy = (float)fy;
                    fx = (float)fx;
                    int32_t y0 = (int32_t)floor(fy), x0 = (int32_t)floor(fx);
                    if (y0 > ih - 1) y0 = ih - 1;
                    if (x0 > iw - 1) x0 = iw - 1;
                    const int32_t y1 = y0 + 1 < ih ? y0 + 1 : ih - 1;
                    const int32_t x1 = x0 + 1 < iw ? x0 + 1 : iw - 1;
                    const double ly = fy - y0, lx = fx - x0;
#define AT(yy, xx) ((double)src[(size_t)(yy) * (size_t)iw + (size_t)(xx)])
                    v = (1 - ly) * ((1 - lx) * AT(y0, x0) + lx * AT(y0, x1)) +
                        ly * ((1 - lx) * AT(y1, x0) + lx * AT(y1, x1));
#undef AT
                }
                out[((size_t)pl * (size_t)oh + (size_t)y) * (size_t)ow + (size_t)x] = v;
            }
}

static void run_upsample_case(rng *r, ms_upsample_mode mode, bool ac, int32_t n, int32_t c,
                              int32_t ih, int32_t iw, int32_t oh, int32_t ow) {
    const size_t n_in = (size_t)n * (size_t)c * (size_t)ih * (size_t)iw;
    const size_t n_out = (size_t)n * (size_t)c * (size_t)oh * (size_t)ow;
    float *in = malloc(n_in * sizeof *in);
    double *ref = malloc(n_out * sizeof *ref);
    assert_true(in && ref);
    fill(r, in, n_in, 1.0f);
    gbuf g;
    float *out = gbuf_alloc(&g, n_out);
    ms_tensor ti = {n, c, ih, iw, in}, to = {n, c, oh, ow, out};
    ms_upsample_forward(mode, ac, &ti, &to);
    gbuf_check(&g, "upsample");
    upsample_ref(mode, ac, n * c, ih, iw, in, oh, ow, ref);
    check_close("upsample", out, ref, n_out, "%s ac=%d %dx%d -> %dx%d",
                mode == MS_UPSAMPLE_NEAREST ? "nearest" : "bilinear", ac, ih, iw, oh, ow);
    gbuf_free(&g);
    free(in);
    free(ref);
}

static void test_upsample_random(void **state) {
    (void)state;
    rng r = {31337};
    int up = 0, down = 0;
    for (int it = 0; it < 600; it++) {
        const ms_upsample_mode mode = it % 2 ? MS_UPSAMPLE_BILINEAR : MS_UPSAMPLE_NEAREST;
        const bool ac = (it / 2) % 2;
        const int32_t ih = rng_int(&r, 1, 13), iw = rng_int(&r, 1, 13);
        int32_t oh, ow;
        switch ((it / 4) % 4) {
        case 0: oh = 2 * ih, ow = 2 * iw; break; /* the common x2 */
        case 1: oh = rng_int(&r, 1, 30), ow = rng_int(&r, 1, 30); break;
        case 2: oh = rng_int(&r, 1, ih), ow = rng_int(&r, 1, iw); break; /* down */
        default: oh = ih * rng_int(&r, 1, 4), ow = rng_int(&r, 1, 3); break;
        }
        up += oh > ih;
        down += oh < ih;
        run_upsample_case(&r, mode, ac, it % 3 ? 1 : 3, rng_int(&r, 1, 3), ih, iw, oh, ow);
    }
    /* wide rows cross the column tile */
    for (int m = 0; m < 2; m++)
        for (int ac = 0; ac < 2; ac++)
            run_upsample_case(&r, (ms_upsample_mode)m, ac, 1, 2, 3, 301, 5, 640);
    assert_true(up > 100 && down > 100);
}

static void test_upsample_known(void **state) {
    (void)state;
    /* torch 1.13: F.interpolate(x=[0,1,2] as 1x1x1x3, size=(1,5), mode='nearest') picks
     * floor(d * 0.6) = 0,0,1,1,2. */
    float a[3] = {0, 1, 2}, o[5];
    ms_tensor ti = {1, 1, 1, 3, a}, to = {1, 1, 1, 5, o};
    ms_upsample_forward(MS_UPSAMPLE_NEAREST, false, &ti, &to);
    const float want_n[5] = {0, 0, 1, 1, 2};
    for (int i = 0; i < 5; i++) assert_float_equal(o[i], want_n[i], 0);
    /* bilinear [0,1] -> 4, align_corners=False: src = -0.25 (clamped to 0), 0.25, 0.75, 1.25
     * (upper neighbour clamped) -> 0, 0.25, 0.75, 1. */
    float b[2] = {0, 1}, ob[4];
    ms_tensor tb = {1, 1, 1, 2, b}, tob = {1, 1, 1, 4, ob};
    ms_upsample_forward(MS_UPSAMPLE_BILINEAR, false, &tb, &tob);
    const float want_b[4] = {0, 0.25f, 0.75f, 1};
    for (int i = 0; i < 4; i++) assert_float_equal(ob[i], want_b[i], 1e-7);
    /* align_corners=True: 0, 1/3, 2/3, 1; and a single output takes the first sample. */
    ms_upsample_forward(MS_UPSAMPLE_BILINEAR, true, &tb, &tob);
    const float want_c[4] = {0, 1 / 3.0f, 2 / 3.0f, 1};
    for (int i = 0; i < 4; i++) assert_float_equal(ob[i], want_c[i], 1e-7);
    ms_tensor t1 = {1, 1, 1, 1, ob};
    ms_upsample_forward(MS_UPSAMPLE_BILINEAR, true, &ti, &t1);
    assert_float_equal(ob[0], 0, 0);
}

/* ---- plumbing: concat, binary ---- */

static void test_concat(void **state) {
    (void)state;
    rng r = {8};
    for (int it = 0; it < 20; it++) {
        const int32_t n = it % 2 ? 1 : 3, h = rng_int(&r, 1, 7), w = rng_int(&r, 1, 7);
        const int32_t count = rng_int(&r, 1, 4);
        ms_tensor parts[4];
        const ms_tensor *ptrs[4];
        int32_t total_c = 0;
        for (int32_t i = 0; i < count; i++) {
            const int32_t c = rng_int(&r, 1, 4);
            parts[i] = (ms_tensor){
                n, c, h, w, malloc((size_t)n * (size_t)c * (size_t)h * (size_t)w * sizeof(float))};
            assert_non_null(parts[i].data);
            fill(&r, parts[i].data, ms_tensor_count(&parts[i]), 1.0f);
            ptrs[i] = &parts[i];
            total_c += c;
        }
        ms_tensor out = {n, total_c, h, w, NULL};
        gbuf g;
        out.data = gbuf_alloc(&g, ms_tensor_count(&out));
        ms_concat_channels(ptrs, count, &out);
        gbuf_check(&g, "concat");
        double *ref = malloc(ms_tensor_count(&out) * sizeof *ref);
        assert_non_null(ref);
        const size_t plane = (size_t)h * (size_t)w;
        for (int32_t b = 0; b < n; b++) {
            int32_t c0 = 0;
            for (int32_t i = 0; i < count; i++) {
                for (int32_t c = 0; c < parts[i].c; c++)
                    for (size_t j = 0; j < plane; j++)
                        ref[((size_t)b * (size_t)total_c + (size_t)(c0 + c)) * plane + j] =
                            parts[i].data[((size_t)b * (size_t)parts[i].c + (size_t)c) * plane + j];
                c0 += parts[i].c;
            }
        }
        check_close("concat", out.data, ref, ms_tensor_count(&out), "count %d", count);
        assert_true(rel_err(out.data, ref, ms_tensor_count(&out)) == 0.0);
        free(ref);
        gbuf_free(&g);
        for (int32_t i = 0; i < count; i++) free(parts[i].data);
    }
}

static void test_binary(void **state) {
    (void)state;
    rng r = {77};
    for (int it = 0; it < 96; it++) {
        const ms_binary_op op = it % 2 ? MS_BINARY_MUL : MS_BINARY_ADD;
        const int bmode = (it / 2) % 4; /* same, [1][c], [n][c], scalar */
        const bool alias = (it / 8) % 2;
        const int32_t n = (it / 16) % 2 ? 1 : 3, c = rng_int(&r, 1, 5);
        const int32_t h = rng_int(&r, 1, 9), w = rng_int(&r, 1, 9);
        ms_tensor a = {n, c, h, w, NULL}, b = a;
        if (bmode == 1) b = (ms_tensor){1, c, 1, 1, NULL};
        if (bmode == 2) b = (ms_tensor){n, c, 1, 1, NULL};
        if (bmode == 3) b = (ms_tensor){1, 1, 1, 1, NULL};
        const size_t na = ms_tensor_count(&a), nb = ms_tensor_count(&b);
        gbuf ga, go;
        a.data = gbuf_alloc(&ga, na);
        b.data = malloc(nb * sizeof(float));
        assert_non_null(b.data);
        fill(&r, a.data, na, 2.0f);
        fill(&r, b.data, nb, 2.0f);
        double *ref = malloc(na * sizeof *ref);
        assert_non_null(ref);
        const size_t plane = (size_t)h * (size_t)w;
        for (size_t i = 0; i < na; i++) {
            size_t ch = (i / plane) % (size_t)c, img = i / (plane * (size_t)c);
            double bv = bmode == 0   ? b.data[i]
                        : bmode == 1 ? b.data[ch]
                        : bmode == 2 ? b.data[img * (size_t)c + ch]
                                     : b.data[0];
            ref[i] = op == MS_BINARY_ADD ? a.data[i] + bv : a.data[i] * bv;
        }
        ms_tensor out = a;
        if (!alias) out.data = gbuf_alloc(&go, na);
        ms_err err = {0};
        assert_int_equal(ms_binary_forward(op, &a, &b, &out, &err), MS_OK);
        gbuf_check(&ga, "binary a");
        if (!alias) gbuf_check(&go, "binary out");
        check_close("binary", out.data, ref, na, "op %d bmode %d alias %d", op, bmode, alias);
        if (!alias) gbuf_free(&go);
        gbuf_free(&ga);
        free(b.data);
        free(ref);
    }

    /* shape errors */
    float buf[64] = {0};
    ms_tensor a = {2, 3, 2, 2, buf}, out = a;
    ms_err err = {0};
    ms_tensor bad[] = {
        {2, 3, 2, 1, buf}, /* spatial mismatch */
        {1, 2, 1, 1, buf}, /* channels differ */
        {3, 3, 1, 1, buf}, /* batch neither 1 nor n */
        {1, 1, 2, 2, buf}, /* [1][1][h][w] is not supported */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ms_binary_forward(MS_BINARY_ADD, &a, &bad[i], &out, &err), MS_EINVAL);
        assert_non_null(strstr(err.msg, "broadcasts"));
    }
    ms_tensor out_bad = {2, 3, 2, 3, buf};
    assert_int_equal(ms_binary_forward(MS_BINARY_MUL, &a, &a, &out_bad, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "out [2][3][2][3]"));
    assert_int_equal(ms_binary_forward((ms_binary_op)5, &a, &a, &out, &err), MS_EINVAL);
    assert_int_equal(ms_binary_forward(MS_BINARY_ADD, NULL, &a, &out, &err), MS_EINVAL);
}

/* ---- fully connected, softmax ---- */

static void test_fc(void **state) {
    (void)state;
    rng r = {2024};
    for (int it = 0; it < 60; it++) {
        const int32_t n = it % 3 == 0 ? 3 : 1, c = rng_int(&r, 1, 8), h = rng_int(&r, 1, 5),
                      w = rng_int(&r, 1, 5), o = rng_int(&r, 1, 40);
        const bool with_bias = it % 2;
        const size_t k = (size_t)c * (size_t)h * (size_t)w;
        float *in = malloc((size_t)n * k * sizeof *in), *wt = malloc((size_t)o * k * sizeof *wt);
        float *bias = malloc((size_t)o * sizeof *bias);
        double *ref = malloc((size_t)n * (size_t)o * sizeof *ref);
        assert_true(in && wt && bias && ref);
        fill(&r, in, (size_t)n * k, 1.0f);
        fill(&r, wt, (size_t)o * k, 1.0f);
        fill(&r, bias, (size_t)o, 1.0f);
        for (int32_t b = 0; b < n; b++)
            for (int32_t j = 0; j < o; j++) {
                double acc = with_bias ? bias[j] : 0.0;
                for (size_t i = 0; i < k; i++)
                    acc += (double)in[(size_t)b * k + i] * wt[(size_t)j * k + i];
                ref[(size_t)b * (size_t)o + (size_t)j] = acc;
            }
        gbuf g;
        ms_tensor ti = {n, c, h, w, in}, to = {n, o, 1, 1, NULL};
        to.data = gbuf_alloc(&g, (size_t)n * (size_t)o);
        ms_fc_forward(&ti, o, wt, with_bias ? bias : NULL, &to);
        gbuf_check(&g, "fc");
        check_close("fc", to.data, ref, (size_t)n * (size_t)o, "n=%d k=%zu o=%d bias=%d", n, k, o,
                    with_bias);
        gbuf_free(&g);
        free(in);
        free(wt);
        free(bias);
        free(ref);
    }
}

static void test_softmax(void **state) {
    (void)state;
    rng r = {555};
    for (int it = 0; it < 60; it++) {
        const int32_t n = it % 2 ? 1 : 3, c = rng_int(&r, 1, 9);
        const int32_t h = rng_int(&r, 1, 20), w = rng_int(&r, 1, 30); /* plane crosses a tile */
        const float scale = it % 3 == 0 ? 1000.0f : it % 3 == 1 ? 50.0f : 2.0f;
        const float offset = it % 4 == 0 ? 5000.0f : it % 4 == 1 ? -5000.0f : 0.0f;
        ms_tensor t = {n, c, h, w, NULL};
        const size_t total = ms_tensor_count(&t), plane = (size_t)h * (size_t)w;
        gbuf g;
        t.data = gbuf_alloc(&g, total);
        fill(&r, t.data, total, scale);
        for (size_t i = 0; i < total; i++) t.data[i] += offset;
        double *ref = malloc(total * sizeof *ref);
        assert_non_null(ref);
        for (int32_t b = 0; b < n; b++)
            for (size_t j = 0; j < plane; j++) {
                const size_t base = (size_t)b * (size_t)c * plane + j;
                double m = -INFINITY, s = 0;
                for (int32_t ch = 0; ch < c; ch++) m = fmax(m, t.data[base + (size_t)ch * plane]);
                for (int32_t ch = 0; ch < c; ch++) s += exp(t.data[base + (size_t)ch * plane] - m);
                for (int32_t ch = 0; ch < c; ch++)
                    ref[base + (size_t)ch * plane] = exp(t.data[base + (size_t)ch * plane] - m) / s;
            }
        ms_softmax_channels(&t);
        gbuf_check(&g, "softmax");
        check_close("softmax", t.data, ref, total, "c=%d scale %g offset %g", c, (double)scale,
                    (double)offset);
        gbuf_free(&g);
        free(ref);
    }
}

static void test_report(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof worst_tab / sizeof worst_tab[0]; i++)
        print_message("worst relative error %-12s %.3g over %d cases\n", worst_tab[i].op,
                      worst_tab[i].err, worst_tab[i].cases);
}

/* Max pooling propagates NaN (as PyTorch does) on interior and border windows, also through
 * the row-maximum fast path, and a window without NaN is unaffected by a NaN elsewhere. */
static void test_maxpool_nan(void **state) {
    (void)state;
    enum { H = 9, W = 11 };
    float x[H * W], y[5 * 6];
    for (int i = 0; i < H * W; i++) x[i] = (float)(i % 7) - 3.0f;
    x[4 * W + 5] = NAN; /* interior: rows 3-5, cols 4-6 */
    x[0] = NAN;         /* the top-left border window */
    ms_pool2d p = {MS_POOL_MAX, 3, 3, 2, 2, 1, 1, 1, 1, false, true};
    int32_t oh, ow;
    assert_int_equal(ms_pool2d_shape(&p, H, W, &oh, &ow, NULL), MS_OK);
    assert_true(oh == 5 && ow == 6);
    ms_tensor tin = {1, 1, H, W, x}, tout = {1, 1, oh, ow, y};
    ms_pool2d_forward(&p, &tin, &tout);
    for (int32_t oy = 0; oy < oh; oy++)
        for (int32_t ox = 0; ox < ow; ox++) {
            bool has_nan = false;
            float m = -INFINITY;
            for (int32_t ky = 0; ky < 3; ky++)
                for (int32_t kx = 0; kx < 3; kx++) {
                    int32_t iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                    float v = x[iy * W + ix];
                    if (isnan(v))
                        has_nan = true;
                    else if (v > m)
                        m = v;
                }
            float got = y[oy * ow + ox];
            if (has_nan) {
                if (!isnan(got))
                    fail_msg("window (%d,%d) holds a NaN, got %g", oy, ox, (double)got);
            } else if (got != m) {
                fail_msg("window (%d,%d): got %g, want %g", oy, ox, (double)got, (double)m);
            }
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act),
        cmocka_unit_test(test_conv_random),
        cmocka_unit_test(test_conv_network_shapes),
        cmocka_unit_test(test_conv_banded),
        cmocka_unit_test(test_conv_shape_errors),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_pool_random),
        cmocka_unit_test(test_pool_nan_and_threads),
        cmocka_unit_test(test_pool_known),
        cmocka_unit_test(test_pool_shape_errors),
        cmocka_unit_test(test_global_pool),
        cmocka_unit_test(test_upsample_random),
        cmocka_unit_test(test_upsample_known),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_fc),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_maxpool_nan),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
