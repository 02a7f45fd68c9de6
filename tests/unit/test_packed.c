/* The packed direct convolution (ms_conv2d_packed_*).
 *
 * Every case is compared with a double-precision convolution (nn_ref.h) and with
 * ms_conv2d_forward's im2col path; the error must stay within 1e-5, the bound for the direct
 * path. It is max |got - ref| over the largest |convolution result| before the activation:
 * sigmoid and tanh squash the output's range, not the sum's rounding (relative to the output's
 * own range a 588-term sum before tanh reached 9.8e-6 for both paths alike). Outputs and workspaces
 * sit between guard zones and start as NaN, so a stray or a missing write fails. Shapes cover
 * strides 1 and 2 on each axis, kernels 1x1 to 7x7 and non-square, asymmetric padding, channel
 * counts that are not multiples of the kernel's 8, widths that are not multiples of its 16, several
 * bands of rows, batches, every activation; both the AVX-512 and the portable kernel where the CPU
 * has the first; 1, 2 and 3 threads give the same bits. A perturbed packed weight is shown to be
 * caught. The first layer fused into the packed one (1 input channel, 3x3, stride 1) is
 * checked the same way against the chain of both layers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard_buf.h"
#include "nn_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"
#include "medscreen/nn.h"

#include "../../src/nn/nn_internal.h"

#define TOL_DIRECT 1e-5

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static void fill(rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rng_f(r);
}

/* max |got - ref| / scale; infinite for a non-finite got. */
static double err_scaled(const float *got, const double *ref, size_t n, double scale) {
    double md = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d; /* NaN included */
    }
    return isfinite(md) ? md / (scale > 1e-30 ? scale : 1e-30) : INFINITY;
}

static double worst_ref = 0, worst_im2col = 0;
static int cases = 0;

typedef struct pk_case {
    ms_conv2d p;
    int32_t batch, in_h, in_w;
    bool bias;
} pk_case;

static void describe(char *buf, size_t size, const pk_case *c) {
    const ms_conv2d *p = &c->p;
    snprintf(buf, size, "n=%d %dx%dx%d -> %d, k %dx%d, s %dx%d, pad t%d l%d b%d r%d, act %d%s",
             c->batch, p->in_c, c->in_h, c->in_w, p->out_c, p->kh, p->kw, p->stride_h, p->stride_w,
             p->pad_t, p->pad_l, p->pad_b, p->pad_r, (int)p->act, c->bias ? ", bias" : "");
}

/* Runs one case on every kernel this CPU has and on 1-3 threads, failing the test on any
 * disagreement; returns the worst error against double. perturb: add to one packed weight
 * first (the self-check, which expects a large error instead of failing on it). */
static double run_case(rng *r, const pk_case *c, float perturb) {
    const ms_conv2d *p = &c->p;
    char what[200];
    describe(what, sizeof what, c);
    assert_true(ms_conv2d_packed_ok(p));
    int32_t oh, ow;
    ms_err err = {0};
    if (ms_conv2d_shape(p, c->in_h, c->in_w, &oh, &ow, &err) != MS_OK)
        fail_msg("%s: %s", what, err.msg);
    const size_t taps = (size_t)p->kh * (size_t)p->kw;
    const size_t n_in = (size_t)c->batch * (size_t)p->in_c * (size_t)c->in_h * (size_t)c->in_w;
    const size_t n_w = (size_t)p->out_c * (size_t)p->in_c * taps;
    const size_t n_out = (size_t)c->batch * (size_t)p->out_c * (size_t)oh * (size_t)ow;
    const size_t n_wp = ms_conv2d_packed_weight_floats(p, c->in_h, c->in_w);
    const size_t ob = ow <= 8 && p->out_c >= 32 ? 32u : 8u; /* channels or positions mode */
    assert_int_equal(n_wp, ((size_t)p->out_c + ob - 1) / ob * ob * (size_t)p->in_c * taps);
    const size_t n_ws = ms_conv2d_packed_workspace(p, c->in_h, c->in_w);
    assert_true(n_ws != SIZE_MAX && n_ws > 0);
    size_t n_ws_im2col = ms_conv2d_workspace(p, c->in_h, c->in_w);

    float *in = xmalloc(n_in * sizeof *in), *in_copy = xmalloc(n_in * sizeof *in);
    float *w = xmalloc(n_w * sizeof *w), *bias = xmalloc((size_t)p->out_c * sizeof *bias);
    float *wp = xmalloc(n_wp * sizeof *wp), *ref_im2col = xmalloc(n_out * sizeof(float));
    float *ws_im2col = xmalloc((n_ws_im2col ? n_ws_im2col : 1) * sizeof(float));
    double *ref = xmalloc(n_out * sizeof *ref), *pre = xmalloc(n_out * sizeof *pre);
    fill(r, in, n_in);
    fill(r, w, n_w);
    fill(r, bias, (size_t)p->out_c);
    memcpy(in_copy, in, n_in * sizeof *in);
    ms_conv2d_packed_weights(p, c->in_h, c->in_w, w, wp);
    if (perturb != 0.0f) wp[n_wp / 2 / 8 * 8] += perturb; /* a real (not padding) channel */
    const float *b = c->bias ? bias : NULL;
    conv_ref(p, c->batch, c->in_h, c->in_w, in, w, b, oh, ow, true, ref);
    conv_ref(p, c->batch, c->in_h, c->in_w, in, w, b, oh, ow, false, pre);
    double scale = 0;
    for (size_t i = 0; i < n_out; i++)
        if (fabs(pre[i]) > scale) scale = fabs(pre[i]);
    ms_tensor ti = {c->batch, p->in_c, c->in_h, c->in_w, in};
    ms_tensor tr = {c->batch, p->out_c, oh, ow, ref_im2col};
    ms_nn_conv2d_forward_generic(p, &ti, w, b, &tr, ws_im2col);

    gbuf go, gws;
    float *out = gbuf_alloc(&go, n_out), *ws = gbuf_alloc(&gws, n_ws);
    float *first = xmalloc(n_out * sizeof *first);
    ms_tensor to = {c->batch, p->out_c, oh, ow, out};
    double worst = 0;
    const ms_nn_isa isas[] = {MS_NN_ISA_BASE, MS_NN_ISA_AVX512};
    for (size_t k = 0; k < 2; k++) {
        if (isas[k] == MS_NN_ISA_AVX512 && !ms_nn_cpu_avx512()) continue;
        for (size_t i = 0; i < n_out; i++) out[i] = NAN;
        ms_nn_conv2d_packed_forward_isa(p, &ti, wp, b, &to, ws, isas[k]);
        gbuf_check(&go, what);
        gbuf_check(&gws, what);
        if (memcmp(in, in_copy, n_in * sizeof *in) != 0) fail_msg("%s: input modified", what);
        const double e = err_scaled(out, ref, n_out, scale);
        double *im = pre; /* the im2col result, in double for err_scaled */
        for (size_t i = 0; i < n_out; i++) im[i] = ref_im2col[i];
        const double e2 = err_scaled(out, im, n_out, scale);
        if (perturb == 0.0f) {
            if (!(e <= TOL_DIRECT))
                fail_msg("%s (isa %d): error %.3g against double > %g", what, (int)isas[k], e,
                         TOL_DIRECT);
            if (!(e2 <= TOL_DIRECT))
                fail_msg("%s (isa %d): error %.3g against im2col > %g", what, (int)isas[k], e2,
                         TOL_DIRECT);
            if (e > worst_ref) worst_ref = e;
            if (e2 > worst_im2col) worst_im2col = e2;
        }
        if (!(e <= worst)) worst = e;
    }

    /* The default entry point and the pool: 1, 2 and 3 threads give the same bits. */
    ms_conv2d_packed_forward(p, &ti, wp, b, &to, ws);
    memcpy(first, out, n_out * sizeof *out);
    for (int32_t threads = 1; threads <= 3; threads++) {
        ms_pool *pool = NULL;
        if (ms_pool_create(threads, &pool, &err) != MS_OK) fail_msg("pool: %s", err.msg);
        float *wss = xmalloc(n_ws * (size_t)threads * sizeof *wss);
        for (size_t i = 0; i < n_out; i++) out[i] = NAN;
        ms_conv2d_packed_forward_pool(p, &ti, wp, b, &to, wss, n_ws, pool);
        if (memcmp(first, out, n_out * sizeof *out) != 0)
            fail_msg("%s: %d threads give other bits than 1", what, threads);
        free(wss);
        ms_pool_destroy(pool);
    }
    cases++;
    gbuf_free(&go);
    gbuf_free(&gws);
    free(in), free(in_copy), free(w), free(bias), free(wp), free(ref), free(pre), free(ref_im2col);
    free(ws_im2col), free(first);
    return worst;
}

static ms_conv2d conv(int32_t in_c, int32_t out_c, int32_t kh, int32_t kw, int32_t sh, int32_t sw,
                      int32_t pt, int32_t pl, int32_t pb, int32_t pr, ms_act act) {
    ms_conv2d p = {in_c, out_c, kh, kw, sh, sw, 1, 1, pt, pl, pb, pr, 1, act, 0.15f};
    return p;
}

/* The layers the path was written for, at small sizes. */
static void test_known_layers(void **state) {
    (void)state;
    rng r = {11};
    const pk_case cs[] = {
        {conv(16, 32, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_RELU), 1, 64, 64, true}, /* screener s2 */
        {conv(3, 64, 7, 7, 2, 2, 3, 3, 3, 3, MS_ACT_NONE), 1, 56, 56, false}, /* ResNet stem */
        {conv(64, 24, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_RELU), 1, 7, 7, true},   /* 512@7, fewer */
        {conv(32, 40, 1, 1, 2, 2, 0, 0, 0, 0, MS_ACT_NONE), 2, 14, 14, true}, /* downsample */
        {conv(24, 16, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_RELU), 1, 14, 14, true}, /* s2 @14 */
        /* channels mode (outputs <= 8 px wide, >= 32 channels): rows of 7, 8 and 6, a 1x1/s2,
         * 70 channels in 3 blocks of 32 */
        {conv(40, 70, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_RELU), 1, 7, 7, true},
        {conv(24, 33, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_TANH), 2, 15, 15, true},
        {conv(16, 64, 5, 3, 1, 1, 2, 0, 2, 0, MS_ACT_NONE), 1, 9, 8, false},
        {conv(48, 96, 1, 1, 2, 2, 0, 0, 0, 0, MS_ACT_NONE), 1, 14, 14, true},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) run_case(&r, &cs[i], 0.0f);
}

/* Random shapes: kernels, strides, paddings, channels, sizes and activations. */
static void test_random_shapes(void **state) {
    (void)state;
    rng r = {12345};
    const int32_t ks[] = {1, 2, 3, 5, 7};
    for (int n = 0; n < 120; n++) {
        pk_case c = {0};
        ms_conv2d *p = &c.p;
        p->kh = ks[rng_u32(&r) % 5];
        p->kw = rng_u32(&r) % 3 == 0 ? ks[rng_u32(&r) % 5] : p->kh;
        p->stride_h = rng_int(&r, 1, 2);
        p->stride_w = rng_u32(&r) % 3 == 0 ? rng_int(&r, 1, 2) : p->stride_h;
        p->dil_h = p->dil_w = 1;
        p->groups = 1;
        p->pad_t = rng_int(&r, 0, p->kh - 1);
        p->pad_b = rng_u32(&r) % 2 ? p->pad_t : rng_int(&r, 0, p->kh - 1);
        p->pad_l = rng_int(&r, 0, p->kw - 1);
        p->pad_r = rng_u32(&r) % 2 ? p->pad_l : rng_int(&r, 0, p->kw - 1);
        p->in_c = rng_int(&r, 1, 20);
        p->out_c = rng_int(&r, 1, 45); /* from 32 on, channels mode where the output is narrow */
        p->act = (ms_act)rng_int(&r, 0, 6);
        p->act_alpha = 0.15f;
        c.batch = rng_u32(&r) % 4 == 0 ? 2 : 1;
        c.in_h = rng_int(&r, p->kh, 37);
        c.in_w = rng_int(&r, p->kw, 53);
        c.bias = rng_u32(&r) % 4 != 0;
        if (!ms_conv2d_packed_ok(p)) fail_msg("case %d should be eligible", n);
        run_case(&r, &c, 0.0f);
    }
}

/* Enough channels x width that a band holds a few rows only: many bands, and with few bands
 * chunks of output channels. */
static void test_bands_and_chunks(void **state) {
    (void)state;
    rng r = {7};
    const pk_case cs[] = {
        {conv(48, 12, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_RELU), 1, 150, 190, true},
        {conv(96, 20, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_LEAKY_RELU), 1, 40, 230, true},
        {conv(8, 70, 5, 5, 1, 2, 2, 2, 2, 2, MS_ACT_SILU), 2, 33, 47, true},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) run_case(&r, &cs[i], 0.0f);
}

/* The check catches a wrong weight: one packed value off by 0.05 on a [-1, 1) scale. */
static void test_catches_wrong_weight(void **state) {
    (void)state;
    rng r = {99};
    const pk_case cs[] = {
        {conv(8, 16, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_NONE), 1, 20, 20, true}, /* positions */
        {conv(8, 40, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_NONE), 1, 14, 14, true}, /* channels */
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        const double e = run_case(&r, &cs[i], 0.05f);
        if (!(e > 100 * TOL_DIRECT)) fail_msg("a perturbed weight gave error %.3g only", e);
    }
}

static void test_eligibility(void **state) {
    (void)state;
    ms_conv2d p = conv(4, 4, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_NONE);
    assert_true(ms_conv2d_packed_ok(&p));
    assert_false(ms_conv2d_packed_ok(NULL));
    ms_conv2d q = p;
    q.groups = 2;
    assert_false(ms_conv2d_packed_ok(&q));
    assert_int_equal(ms_conv2d_packed_weight_floats(&q, 20, 20), SIZE_MAX);
    q = p;
    q.dil_h = 2;
    assert_false(ms_conv2d_packed_ok(&q));
    q = p;
    q.stride_w = 3;
    assert_false(ms_conv2d_packed_ok(&q));
    q = conv(4, 4, 9, 9, 1, 1, 0, 0, 0, 0, MS_ACT_NONE); /* 81 taps */
    assert_false(ms_conv2d_packed_ok(&q));
    assert_int_equal(ms_conv2d_packed_workspace(&q, 20, 20), SIZE_MAX);
    /* too small an input for the kernel */
    assert_int_equal(ms_conv2d_packed_workspace(&p, 1, 0), SIZE_MAX);
    /* One input row of all channels past the band limit: refused, so the net keeps im2col. */
    q = conv(1 << 14, 8, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_NONE);
    assert_int_equal(ms_conv2d_packed_workspace(&q, 4, 1 << 12), SIZE_MAX);
    assert_false(ms_conv2d_packed_worthwhile(&q, 4, 1 << 12));
    /* First layers keep conv.c's kernel; 1x1 stride 1 without padding keeps sgemm. */
    q = conv(1, 16, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_RELU);
    assert_false(ms_conv2d_packed_worthwhile(&q, 64, 64));
    q = conv(64, 64, 1, 1, 1, 1, 0, 0, 0, 0, MS_ACT_RELU);
    assert_false(ms_conv2d_packed_worthwhile(&q, 16, 16));
    q = conv(64, 128, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_RELU);
    assert_int_equal(ms_conv2d_packed_worthwhile(&q, 64, 64), ms_nn_cpu_avx512());
}

/* ---- a first layer fused into the packed layer ----
 * The reference is the chain in double: pre (with its activation) rounded to float, then p.
 * The fused result must match it and the unfused engine chain (ms_conv2d_forward, then the
 * packed kernel) within the direct path's bound, on every kernel and thread count, with the
 * same bits for 1 to 3 threads. perturb: added to one of pre's weights given to the fused call
 * only (the self-check). Returns the worst error against the reference. */
static double worst_fused = 0;
static int fused_cases = 0;

static double run_fused_case(rng *r, const ms_conv2d *pre, const ms_conv2d *p, int32_t batch,
                             int32_t in_h, int32_t in_w, bool bias_on, float perturb) {
    char what[240];
    snprintf(what, sizeof what,
             "fused n=%d 1x%dx%d -> %d (pad t%d l%d b%d r%d, act %d) -> %d, k %dx%d, s %dx%d, "
             "pad t%d l%d b%d r%d, act %d%s",
             batch, in_h, in_w, pre->out_c, pre->pad_t, pre->pad_l, pre->pad_b, pre->pad_r,
             (int)pre->act, p->out_c, p->kh, p->kw, p->stride_h, p->stride_w, p->pad_t, p->pad_l,
             p->pad_b, p->pad_r, (int)p->act, bias_on ? ", bias" : "");
    assert_true(ms_conv2d_packed_fusable(pre, p));
    int32_t mh, mw, oh, ow;
    ms_err err = {0};
    if (ms_conv2d_shape(pre, in_h, in_w, &mh, &mw, &err) != MS_OK ||
        ms_conv2d_shape(p, mh, mw, &oh, &ow, &err) != MS_OK)
        fail_msg("%s: %s", what, err.msg);
    const size_t n_in = (size_t)batch * (size_t)in_h * (size_t)in_w;
    const size_t n_mid = (size_t)batch * (size_t)pre->out_c * (size_t)mh * (size_t)mw;
    const size_t n_out = (size_t)batch * (size_t)p->out_c * (size_t)oh * (size_t)ow;
    const size_t n_w1 = 9 * (size_t)pre->out_c;
    const size_t n_w2 = (size_t)p->out_c * (size_t)p->in_c * (size_t)p->kh * (size_t)p->kw;
    const size_t n_wp = ms_conv2d_packed_weight_floats(p, mh, mw);
    const size_t n_ws = ms_conv2d_packed_fused_workspace(pre, p, in_h, in_w);
    assert_true(n_wp != SIZE_MAX && n_ws != SIZE_MAX);
    assert_true(n_ws > ms_conv2d_packed_workspace(p, mh, mw));
    const size_t n_ws_pre = ms_conv2d_workspace(pre, in_h, in_w);
    const size_t n_ws_pk = ms_conv2d_packed_workspace(p, mh, mw);

    float *in = xmalloc(n_in * sizeof *in), *w1 = xmalloc(n_w1 * sizeof *w1);
    float *w1p = xmalloc(n_w1 * sizeof *w1p), *w2 = xmalloc(n_w2 * sizeof *w2);
    float *b1 = xmalloc((size_t)pre->out_c * sizeof *b1), *b2 = xmalloc((size_t)p->out_c * 4);
    float *wp = xmalloc(n_wp * sizeof *wp), *mid = xmalloc(n_mid * sizeof *mid);
    float *chain = xmalloc(n_out * sizeof *chain), *first = xmalloc(n_out * sizeof *first);
    float *ws_pre = xmalloc((n_ws_pre ? n_ws_pre : 1) * sizeof(float));
    float *ws_pk = xmalloc(n_ws_pk * sizeof(float));
    double *mid_ref = xmalloc(n_mid * sizeof *mid_ref), *ref = xmalloc(n_out * sizeof *ref);
    double *pre_act = xmalloc(n_out * sizeof *pre_act);
    fill(r, in, n_in);
    fill(r, w1, n_w1);
    fill(r, w2, n_w2);
    fill(r, b1, (size_t)pre->out_c);
    fill(r, b2, (size_t)p->out_c);
    memcpy(w1p, w1, n_w1 * sizeof *w1);
    w1p[4] += perturb; /* the centre tap of channel 0 */
    const float *bias1 = bias_on ? b1 : NULL, *bias2 = bias_on ? b2 : NULL;
    ms_conv2d_packed_weights(p, mh, mw, w2, wp);

    conv_ref(pre, batch, in_h, in_w, in, w1, bias1, mh, mw, true, mid_ref);
    for (size_t i = 0; i < n_mid; i++) mid[i] = (float)mid_ref[i];
    conv_ref(p, batch, mh, mw, mid, w2, bias2, oh, ow, true, ref);
    conv_ref(p, batch, mh, mw, mid, w2, bias2, oh, ow, false, pre_act);
    double scale = 0;
    for (size_t i = 0; i < n_out; i++)
        if (fabs(pre_act[i]) > scale) scale = fabs(pre_act[i]);
    /* the unfused engine chain */
    ms_tensor ti = {batch, 1, in_h, in_w, in}, tm = {batch, pre->out_c, mh, mw, mid};
    ms_tensor tc = {batch, p->out_c, oh, ow, chain};
    ms_conv2d_forward(pre, &ti, w1, bias1, &tm, ws_pre);
    ms_conv2d_packed_forward(p, &tm, wp, bias2, &tc, ws_pk);
    double *chain_d = pre_act;
    for (size_t i = 0; i < n_out; i++) chain_d[i] = chain[i];

    gbuf go, gws;
    float *out = gbuf_alloc(&go, n_out), *ws = gbuf_alloc(&gws, n_ws);
    ms_tensor to = {batch, p->out_c, oh, ow, out};
    double worst = 0;
    const ms_nn_isa isas[] = {MS_NN_ISA_BASE, MS_NN_ISA_AVX512};
    for (size_t k = 0; k < 2; k++) {
        if (isas[k] == MS_NN_ISA_AVX512 && !ms_nn_cpu_avx512()) continue;
        for (size_t i = 0; i < n_out; i++) out[i] = NAN;
        ms_nn_conv2d_packed_fused_forward_isa(pre, w1p, bias1, p, &ti, wp, bias2, &to, ws, isas[k]);
        gbuf_check(&go, what);
        gbuf_check(&gws, what);
        const double e = err_scaled(out, ref, n_out, scale);
        const double e2 = err_scaled(out, chain_d, n_out, scale);
        if (perturb == 0.0f) {
            if (!(e <= TOL_DIRECT))
                fail_msg("%s (isa %d): error %.3g against double > %g", what, (int)isas[k], e,
                         TOL_DIRECT);
            if (!(e2 <= TOL_DIRECT))
                fail_msg("%s (isa %d): error %.3g against the unfused layers > %g", what,
                         (int)isas[k], e2, TOL_DIRECT);
            if (e > worst_fused) worst_fused = e;
        }
        if (!(e <= worst)) worst = e;
    }
    /* 1, 2 and 3 threads: the same bits */
    for (int32_t threads = 1; threads <= 3; threads++) {
        ms_pool *pool = NULL;
        if (ms_pool_create(threads, &pool, &err) != MS_OK) fail_msg("pool: %s", err.msg);
        float *wss = xmalloc(n_ws * (size_t)threads * sizeof *wss);
        for (size_t i = 0; i < n_out; i++) out[i] = NAN;
        ms_conv2d_packed_fused_forward_pool(pre, w1p, bias1, p, &ti, wp, bias2, &to, wss, n_ws,
                                            pool);
        if (threads == 1)
            memcpy(first, out, n_out * sizeof *out);
        else if (memcmp(first, out, n_out * sizeof *out) != 0)
            fail_msg("%s: %d threads give other bits than 1", what, threads);
        free(wss);
        ms_pool_destroy(pool);
    }
    fused_cases++;
    gbuf_free(&go);
    gbuf_free(&gws);
    free(in), free(w1), free(w1p), free(w2), free(b1), free(b2), free(wp), free(mid);
    free(chain), free(first), free(ws_pre), free(ws_pk), free(mid_ref), free(ref), free(pre_act);
    return worst;
}

/* The screener's first two layers, several bands and a batch; other paddings, kernels,
 * strides, widths that are not multiples of 16 and activations of either layer. */
static void test_fused_layers(void **state) {
    (void)state;
    rng r = {31};
    const ms_conv2d pre16 = conv(1, 16, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_RELU);
    const ms_conv2d s2 = conv(16, 32, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_RELU);
    run_fused_case(&r, &pre16, &s2, 1, 64, 64, true, 0.0f);
    run_fused_case(&r, &pre16, &s2, 2, 150, 190, true, 0.0f); /* many bands */
    run_fused_case(&r, &pre16, &s2, 1, 37, 45, false, 0.0f);
    const struct {
        ms_conv2d pre, p;
        int32_t h, w;
    } cs[] = {
        {conv(1, 8, 3, 3, 1, 1, 0, 0, 0, 0, MS_ACT_NONE),
         conv(8, 12, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_NONE), 30, 33},
        {conv(1, 20, 3, 3, 1, 1, 2, 0, 1, 2, MS_ACT_LEAKY_RELU),
         conv(20, 9, 1, 1, 2, 2, 0, 0, 0, 0, MS_ACT_RELU), 41, 29},
        {conv(1, 12, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_SILU),
         conv(12, 40, 5, 5, 2, 2, 2, 2, 2, 2, MS_ACT_TANH), 17, 16}, /* channels mode */
        {conv(1, 16, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_RELU),
         conv(16, 24, 7, 7, 2, 1, 3, 3, 3, 3, MS_ACT_RELU), 50, 70},
        {conv(1, 5, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_GELU),
         conv(5, 16, 2, 3, 1, 2, 0, 1, 1, 1, MS_ACT_SIGMOID), 3, 3},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        run_fused_case(&r, &cs[i].pre, &cs[i].p, 1, cs[i].h, cs[i].w, true, 0.0f);
    for (int n = 0; n < 30; n++) {
        ms_conv2d pre =
            conv(1, rng_int(&r, 1, 24), 3, 3, 1, 1, rng_int(&r, 0, 2), rng_int(&r, 0, 2),
                 rng_int(&r, 0, 2), rng_int(&r, 0, 2), (ms_act)rng_int(&r, 0, 6));
        const int32_t k = rng_int(&r, 1, 5), st = rng_int(&r, 1, 2);
        ms_conv2d p = conv(pre.out_c, rng_int(&r, 1, 40), k, k, st, st, rng_int(&r, 0, k - 1),
                           rng_int(&r, 0, k - 1), rng_int(&r, 0, k - 1), rng_int(&r, 0, k - 1),
                           (ms_act)rng_int(&r, 0, 6));
        run_fused_case(&r, &pre, &p, rng_u32(&r) % 4 == 0 ? 2 : 1, rng_int(&r, k + 2, 40),
                       rng_int(&r, k + 2, 60), rng_u32(&r) % 4 != 0, 0.0f);
    }
    /* the check sees the first layer's weights: one off by 0.05 */
    const double e = run_fused_case(&r, &pre16, &s2, 1, 40, 40, true, 0.05f);
    if (!(e > 100 * TOL_DIRECT)) fail_msg("a perturbed first-layer weight gave error %.3g", e);
}

static void test_fusable(void **state) {
    (void)state;
    const ms_conv2d pre = conv(1, 16, 3, 3, 1, 1, 1, 1, 1, 1, MS_ACT_RELU);
    const ms_conv2d p = conv(16, 32, 3, 3, 2, 2, 1, 1, 1, 1, MS_ACT_RELU);
    assert_true(ms_conv2d_packed_fusable(&pre, &p));
    assert_false(ms_conv2d_packed_fusable(NULL, &p));
    assert_false(ms_conv2d_packed_fusable(&pre, NULL));
    ms_conv2d q = pre;
    q.in_c = 2; /* two input channels */
    assert_false(ms_conv2d_packed_fusable(&q, &p));
    q = pre;
    q.stride_h = 2;
    assert_false(ms_conv2d_packed_fusable(&q, &p));
    q = pre;
    q.kh = q.kw = 5;
    assert_false(ms_conv2d_packed_fusable(&q, &p));
    q = pre;
    q.dil_w = 2;
    assert_false(ms_conv2d_packed_fusable(&q, &p));
    q = pre;
    q.out_c = 8; /* not p's input channels */
    assert_false(ms_conv2d_packed_fusable(&q, &p));
    assert_int_equal(ms_conv2d_packed_fused_workspace(&q, &p, 64, 64), SIZE_MAX);
    q = p;
    q.groups = 2;
    assert_false(ms_conv2d_packed_fusable(&pre, &q));
    /* an input too small for the pair */
    assert_int_equal(ms_conv2d_packed_fused_workspace(&pre, &p, 0, 8), SIZE_MAX);
}

static int report(void **state) {
    (void)state;
    printf("packed: %d cases; worst error against double %.3g, against im2col %.3g (bound %g)\n",
           cases, worst_ref, worst_im2col, TOL_DIRECT);
    printf("fused first layer: %d cases; worst error against double %.3g\n", fused_cases,
           worst_fused);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eligibility),          cmocka_unit_test(test_known_layers),
        cmocka_unit_test(test_random_shapes),        cmocka_unit_test(test_bands_and_chunks),
        cmocka_unit_test(test_catches_wrong_weight), cmocka_unit_test(test_fusable),
        cmocka_unit_test(test_fused_layers),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
