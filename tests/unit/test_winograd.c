/* The fast convolution paths: Winograd F(4x4, 3x3) (ms_conv2d_winograd_*) and the first-layer
 * direct kernel that ms_conv2d_forward takes for one input channel, 3x3, stride 1.
 *
 * Each case is compared with a plain double-precision convolution written here and with
 * ms_conv2d_forward's general path (im2col + sgemm). Error is max |got - ref| / max |ref| over
 * the output tensor; Winograd must stay within 1e-4 (the bound for fast paths), the direct
 * kernel within 1e-5. Outputs and workspaces sit between guard zones (outputs start as NaN),
 * so stray or missing writes fail; the worst error per group is printed by the last test.
 * The checks are shown to catch a wrong transform (perturbed or mis-derived weights). */
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
#include "medscreen/npy.h"

#include "../../src/nn/nn_internal.h"

#define TOL_WINO 1e-4
#define TOL_DIRECT 1e-5
#define GOLDEN_DIR MS_SOURCE_DIR "/tests/golden/nn"

static void fill(rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rng_f(r);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- guarded buffers: guard_buf.h ---- */

/* ---- error bookkeeping ---- */

typedef struct group_stat {
    const char *name;
    double worst;
    int cases;
} group_stat;

static group_stat stats[] = {
    {"winograd shapes vs double", 0, 0}, {"  of which sigmoid/tanh", 0, 0},
    {"  of which other acts", 0, 0},     {"winograd shapes vs im2col", 0, 0},
    {"winograd blocks vs double", 0, 0}, {"winograd batch vs double", 0, 0},
    {"winograd golden vs torch", 0, 0},  {"first3x3 vs double", 0, 0},
    {"first3x3 vs im2col", 0, 0},        {"first3x3 clones vs double", 0, 0},
    {"winograd clones vs double", 0, 0}, {"winograd weights vs double", 0, 0},
};

static void record(const char *group, double e) {
    for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++)
        if (strcmp(stats[i].name, group) == 0) {
            stats[i].cases++;
            if (e > stats[i].worst) stats[i].worst = e;
            return;
        }
    fail_msg("unknown group %s", group);
}

/* max |got - ref| / max |ref| (with 1e-30 for an all-zero ref); infinite for a non-finite got. */
static double rel_err_d(const float *got, const double *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        const double d = fabs((double)got[i] - ref[i]);
        if (d > md) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return md / (mr > 1e-30 ? mr : 1e-30);
}

static double rel_err_f(const float *got, const float *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(ref[i])) return INFINITY;
        const double d = fabs((double)got[i] - (double)ref[i]);
        if (d > md) md = d;
        if (fabs((double)ref[i]) > mr) mr = fabs((double)ref[i]);
    }
    return md / (mr > 1e-30 ? mr : 1e-30);
}

/* ---- reference ---- */

/* act_ref: nn_ref.h */

static ms_conv2d conv3x3(int32_t in_c, int32_t out_c, int32_t pt, int32_t pl, int32_t pb,
                         int32_t pr, ms_act act) {
    ms_conv2d p = {in_c, out_c, 3, 3, 1, 1, 1, 1, pt, pl, pb, pr, 1, act, 0.15f};
    return p;
}

static const char *act_names[] = {"none", "relu", "leaky", "silu", "sigmoid", "tanh", "gelu"};

static void describe(char *buf, size_t size, const ms_conv2d *p, int32_t batch, int32_t h,
                     int32_t w, bool bias) {
    snprintf(buf, size, "n=%d %dx%dx%d -> %d, pad t%d l%d b%d r%d, %s%s", batch, p->in_c, h, w,
             p->out_c, p->pad_t, p->pad_l, p->pad_b, p->pad_r, act_names[p->act],
             bias ? ", bias" : "");
}

/* ---- Winograd cases ---- */

/* Runs one Winograd case: against the double reference (group ref_group) and, when im2col_group
 * is not NULL, against ms_conv2d_forward. Also checks the guards of output and workspace, that
 * the input is left alone, and that a second call gives the same bits. */
static void run_wino(rng *r, const ms_conv2d *p, int32_t batch, int32_t in_h, int32_t in_w,
                     bool with_bias, const char *ref_group, const char *im2col_group) {
    char what[160];
    describe(what, sizeof what, p, batch, in_h, in_w, with_bias);
    assert_true(ms_conv2d_winograd_ok(p));
    int32_t oh, ow;
    ms_err err = {0};
    if (ms_conv2d_shape(p, in_h, in_w, &oh, &ow, &err) != MS_OK) fail_msg("%s: %s", what, err.msg);
    const size_t n_in = (size_t)batch * (size_t)p->in_c * (size_t)in_h * (size_t)in_w;
    const size_t n_w = (size_t)p->out_c * (size_t)p->in_c * 9;
    const size_t n_out = (size_t)batch * (size_t)p->out_c * (size_t)oh * (size_t)ow;
    const size_t n_u = ms_conv2d_winograd_weight_floats(p);
    assert_int_equal(n_u, 36 * n_w / 9);
    const size_t n_ws = ms_conv2d_winograd_workspace(p, in_h, in_w);
    assert_true(n_ws != SIZE_MAX && n_ws > 0);

    float *in = xmalloc(n_in * sizeof *in), *in_copy = xmalloc(n_in * sizeof *in);
    float *w = xmalloc(n_w * sizeof *w), *bias = xmalloc((size_t)p->out_c * sizeof *bias);
    float *u = xmalloc(n_u * sizeof *u);
    double *ref = xmalloc(n_out * sizeof *ref);
    fill(r, in, n_in);
    fill(r, w, n_w);
    fill(r, bias, (size_t)p->out_c);
    memcpy(in_copy, in, n_in * sizeof *in);
    ms_conv2d_winograd_weights(p, w, u);

    gbuf go, gws;
    float *out = gbuf_alloc(&go, n_out), *ws = gbuf_alloc(&gws, n_ws);
    ms_tensor ti = {batch, p->in_c, in_h, in_w, in}, to = {batch, p->out_c, oh, ow, out};
    const float *b = with_bias ? bias : NULL;
    ms_conv2d_winograd_forward(p, &ti, u, b, &to, ws);
    gbuf_check(&go, "winograd output");
    gbuf_check(&gws, "winograd workspace");
    if (memcmp(in, in_copy, n_in * sizeof *in) != 0) fail_msg("%s: input modified", what);

    conv_ref(p, batch, in_h, in_w, in, w, b, oh, ow, true, ref);
    const double e = rel_err_d(out, ref, n_out);
    record(ref_group, e);
    /* sigmoid and tanh flatten large outputs, so their error relative to the largest output
     * (at most 1) is the pre-activation's error times its scale; shown apart */
    record(p->act == MS_ACT_SIGMOID || p->act == MS_ACT_TANH ? "  of which sigmoid/tanh"
                                                             : "  of which other acts",
           e);
    if (!(e <= TOL_WINO)) fail_msg("%s: %s: error %.3g > %.0e", ref_group, what, e, TOL_WINO);

    if (im2col_group) {
        const size_t n_ws2 = ms_conv2d_workspace(p, in_h, in_w);
        gbuf go2, gws2;
        float *out2 = gbuf_alloc(&go2, n_out), *ws2 = gbuf_alloc(&gws2, n_ws2);
        ms_nn_conv2d_forward_generic(p, &ti, w, b, &(ms_tensor){batch, p->out_c, oh, ow, out2},
                                     ws2);
        gbuf_check(&go2, "im2col output");
        const double e2 = rel_err_f(out, out2, n_out);
        record(im2col_group, e2);
        if (!(e2 <= TOL_WINO))
            fail_msg("%s: %s: error %.3g > %.0e", im2col_group, what, e2, TOL_WINO);
        gbuf_free(&go2);
        gbuf_free(&gws2);
    }

    /* every clone this CPU can run (baseline SSE2, AVX2) */
    for (int isa = MS_NN_ISA_BASE; isa < MS_NN_ISA_AVX512; isa++) {
        gbuf gi;
        float *oi = gbuf_alloc(&gi, n_out);
        ms_nn_conv2d_winograd_forward_isa(p, &ti, u, b, &(ms_tensor){batch, p->out_c, oh, ow, oi},
                                          ws, (ms_nn_isa)isa);
        gbuf_check(&gi, "winograd output (clone)");
        gbuf_check(&gws, "winograd workspace (clone)");
        const double ei = rel_err_d(oi, ref, n_out);
        record("winograd clones vs double", ei);
        if (!(ei <= TOL_WINO)) fail_msg("clone %d: %s: error %.3g", isa, what, ei);
        gbuf_free(&gi);
    }

    /* Same bits again, with the workspace left dirty by the first call. */
    float *first = xmalloc(n_out * sizeof *first);
    memcpy(first, out, n_out * sizeof *out);
    ms_conv2d_winograd_forward(p, &ti, u, b, &to, ws);
    if (memcmp(first, out, n_out * sizeof *out) != 0) fail_msg("%s: second call differs", what);
    gbuf_check(&go, "winograd output (second call)");
    gbuf_check(&gws, "winograd workspace (second call)");

    free(first);
    gbuf_free(&go);
    gbuf_free(&gws);
    free(in);
    free(in_copy);
    free(w);
    free(bias);
    free(u);
    free(ref);
}

/* Channels {1, 3, 16, 33, 64} in and out, sizes from {1, 2, 3, 4, 5, 7, 8, 13, 31, 64} (mostly
 * non-square), symmetric paddings 0/1/2 and asymmetric ones, every activation, bias or not. */
static void test_winograd_shapes(void **state) {
    (void)state;
    rng r = {2024};
    static const int32_t chans[] = {1, 3, 16, 33, 64};
    static const int32_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 13, 31, 64};
    static const int32_t pads[][4] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {2, 2, 2, 2}, {0, 1, 2, 1},
                                      {2, 0, 1, 2}, {1, 2, 0, 0}, {0, 0, 1, 2}};
    int cases = 0, nonsquare = 0, edge = 0;
    for (int ci = 0; ci < 5; ci++)
        for (int co = 0; co < 5; co++)
            for (int hi = 0; hi < 10; hi++) {
                const int32_t h = sizes[hi], w = sizes[(hi * 3 + ci + 2 * co) % 10];
                /* big-channel cases get small sizes only, to keep the double reference quick */
                if (chans[ci] * chans[co] >= 33 * 33 && h * w > 31 * 31) continue;
                int k = cases % 7;
                while (h + pads[k][0] + pads[k][2] < 3 || w + pads[k][1] + pads[k][3] < 3)
                    k = (k + 1) % 7;
                const ms_conv2d p = conv3x3(chans[ci], chans[co], pads[k][0], pads[k][1],
                                            pads[k][2], pads[k][3], (ms_act)(cases % 7));
                run_wino(&r, &p, 1, h, w, cases % 3 != 0, "winograd shapes vs double",
                         "winograd shapes vs im2col");
                const int32_t oh = h + pads[k][0] + pads[k][2] - 2;
                const int32_t ow = w + pads[k][1] + pads[k][3] - 2;
                nonsquare += h != w;
                edge += oh % 4 != 0 || ow % 4 != 0;
                cases++;
            }
    assert_true(cases > 200 && nonsquare > 100 && edge > 100);
}

/* Several blocks of whole tile rows, blocks that start and end inside tile rows (wide images,
 * many channels), a partial last block, batches. */
static void test_winograd_blocks(void **state) {
    (void)state;
    rng r = {77};
    /* 16 channels: blocks of many tile rows; 250 rows give more than one. */
    ms_conv2d p = conv3x3(16, 16, 1, 1, 1, 1, MS_ACT_RELU);
    run_wino(&r, &p, 1, 250, 31, true, "winograd blocks vs double", NULL);
    /* 300 channels: blocks of 16 tiles, across rows of 25 (the last block 11 tiles). */
    p = conv3x3(300, 20, 2, 0, 1, 1, MS_ACT_NONE);
    run_wino(&r, &p, 1, 9, 100, true, "winograd blocks vs double", "winograd shapes vs im2col");
    p = conv3x3(20, 300, 0, 1, 0, 2, MS_ACT_SILU);
    run_wino(&r, &p, 1, 14, 97, false, "winograd blocks vs double", NULL);
    /* one channel, one very long row: 7500 tiles, blocks of 7072 */
    p = conv3x3(1, 1, 1, 1, 1, 1, MS_ACT_TANH);
    run_wino(&r, &p, 1, 1, 30000, true, "winograd blocks vs double", NULL);
    /* many channels: blocks wider than 1 MiB (in * out / 1024 = 32 tiles, here 3 rows of 10) */
    p = conv3x3(512, 64, 1, 1, 1, 1, MS_ACT_RELU);
    run_wino(&r, &p, 1, 20, 40, true, "winograd blocks vs double", "winograd shapes vs im2col");
    /* the reference screener's stride-1 layer shapes at a reduced size */
    p = conv3x3(32, 32, 1, 1, 1, 1, MS_ACT_RELU);
    run_wino(&r, &p, 1, 40, 36, true, "winograd blocks vs double", "winograd shapes vs im2col");
    p = conv3x3(128, 128, 1, 1, 1, 1, MS_ACT_RELU);
    run_wino(&r, &p, 1, 9, 11, true, "winograd blocks vs double", "winograd shapes vs im2col");
    /* one block of an image, 131 output channels: two shares of 66 and 65, batch 2 */
    p = conv3x3(40, 131, 1, 0, 1, 2, MS_ACT_LEAKY_RELU);
    run_wino(&r, &p, 2, 8, 13, true, "winograd blocks vs double", "winograd shapes vs im2col");

    /* batches */
    p = conv3x3(3, 5, 1, 1, 1, 1, MS_ACT_LEAKY_RELU);
    run_wino(&r, &p, 3, 13, 7, true, "winograd batch vs double", "winograd shapes vs im2col");
    p = conv3x3(16, 33, 0, 2, 1, 0, MS_ACT_GELU);
    run_wino(&r, &p, 2, 31, 5, false, "winograd batch vs double", "winograd shapes vs im2col");
    p = conv3x3(64, 16, 2, 2, 2, 2, MS_ACT_SIGMOID);
    run_wino(&r, &p, 4, 3, 4, true, "winograd batch vs double", "winograd shapes vs im2col");

    /* The workspace does not grow with the image: about 1 MiB of tiles plus row scratch at 64
     * channels, at most 16 MiB of tiles at many. */
    p = conv3x3(64, 64, 1, 1, 1, 1, MS_ACT_RELU);
    const size_t small = ms_conv2d_winograd_workspace(&p, 64, 64);
    const size_t huge = ms_conv2d_winograd_workspace(&p, 16384, 16384);
    assert_true(huge != SIZE_MAX && huge * sizeof(float) <= (size_t)3 << 19);
    assert_true(small <= huge);
    p = conv3x3(512, 512, 1, 1, 1, 1, MS_ACT_RELU); /* wider blocks, still bounded */
    const size_t wide = ms_conv2d_winograd_workspace(&p, 16384, 16384);
    assert_true(wide != SIZE_MAX && wide * sizeof(float) <= (size_t)17 << 20);
}

/* U = G g G^T in double, with G's entry (1, 0) optionally changed: the test's own weight
 * transform, and a deliberately wrong one. */
static void weights_ref(const ms_conv2d *p, const float *w, double g10, double *u) {
    const double G[6][3] = {{0.25, 0, 0},
                            {g10, -1.0 / 6, -1.0 / 6},
                            {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                            {1.0 / 24, 1.0 / 12, 1.0 / 6},
                            {1.0 / 24, -1.0 / 12, 1.0 / 6},
                            {0, 0, 1}};
    const size_t plane = (size_t)p->out_c * (size_t)p->in_c;
    for (size_t oi = 0; oi < plane; oi++) {
        const float *g = w + oi * 9;
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) {
                double v = 0;
                for (int a = 0; a < 3; a++)
                    for (int b = 0; b < 3; b++) v += G[i][a] * g[a * 3 + b] * G[j][b];
                u[(size_t)(i * 6 + j) * plane + oi] = v;
            }
    }
}

/* The comparisons catch wrong transforms: each of the 36 transformed-weight planes matters,
 * and a mis-derived G fails the bound by orders of magnitude. */
static void test_winograd_catches_errors(void **state) {
    (void)state;
    rng r = {5};
    const ms_conv2d p = conv3x3(3, 4, 1, 1, 1, 1, MS_ACT_NONE);
    const int32_t h = 11, w_ = 9;
    const size_t n_in = 3 * (size_t)h * (size_t)w_, n_w = 4 * 3 * 9,
                 n_out = 4 * (size_t)h * (size_t)w_;
    const size_t n_u = ms_conv2d_winograd_weight_floats(&p);
    const size_t n_ws = ms_conv2d_winograd_workspace(&p, h, w_);
    float *in = xmalloc(n_in * sizeof *in), *w = xmalloc(n_w * sizeof *w);
    float *u = xmalloc(n_u * sizeof *u), *bad = xmalloc(n_u * sizeof *bad);
    float *out = xmalloc(n_out * sizeof *out), *ws = xmalloc(n_ws * sizeof *ws);
    double *ref = xmalloc(n_out * sizeof *ref), *ud = xmalloc(n_u * sizeof *ud);
    fill(&r, in, n_in);
    fill(&r, w, n_w);
    ms_tensor ti = {1, 3, h, w_, in}, to = {1, 4, h, w_, out};
    conv_ref(&p, 1, h, w_, in, w, NULL, h, w_, true, ref);

    /* the library's weight transform against the test's */
    ms_conv2d_winograd_weights(&p, w, u);
    weights_ref(&p, w, -1.0 / 6, ud);
    double md = 0, mr = 0;
    for (size_t i = 0; i < n_u; i++) {
        md = fmax(md, fabs((double)u[i] - ud[i]));
        mr = fmax(mr, fabs(ud[i]));
    }
    record("winograd weights vs double", md / mr);
    assert_true(md / mr <= 1e-6);

    ms_conv2d_winograd_forward(&p, &ti, u, NULL, &to, ws);
    assert_true(rel_err_d(out, ref, n_out) <= TOL_WINO);

    /* each plane U_e perturbed in one entry */
    const size_t plane = 4 * 3;
    for (size_t e = 0; e < 36; e++) {
        memcpy(bad, u, n_u * sizeof *u);
        bad[e * plane + e % plane] += 0.25f;
        ms_conv2d_winograd_forward(&p, &ti, bad, NULL, &to, ws);
        const double err = rel_err_d(out, ref, n_out);
        if (!(err > 100 * TOL_WINO)) fail_msg("U_%zu perturbed: error only %.3g", e, err);
    }
    /* G with -1/5 for -1/6 in one entry */
    weights_ref(&p, w, -1.0 / 5, ud);
    for (size_t i = 0; i < n_u; i++) bad[i] = (float)ud[i];
    ms_conv2d_winograd_forward(&p, &ti, bad, NULL, &to, ws);
    const double err = rel_err_d(out, ref, n_out);
    if (!(err > 100 * TOL_WINO)) fail_msg("wrong G: error only %.3g", err);

    free(in);
    free(w);
    free(u);
    free(bad);
    free(out);
    free(ws);
    free(ref);
    free(ud);
}

/* ---- PyTorch goldens through Winograd ---- */

static ms_npy *load_npy(const char *dir, const char *stem) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s.npy", GOLDEN_DIR, dir, stem);
    ms_limits lim = ms_limits_default();
    ms_npy *a = NULL;
    ms_err err = {0};
    if (ms_npy_load(path, &lim, &a, &err) != MS_OK) fail_msg("%s", err.msg);
    return a;
}

/* The value of key in the case's params.txt (key=value lines). */
static double param(const char *dir, const char *key) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/params.txt", GOLDEN_DIR, dir);
    uint8_t *text = NULL;
    size_t n = 0;
    ms_err err = {0};
    if (ms_file_read_all(path, 1 << 16, &text, &n, &err) != MS_OK) fail_msg("%s", err.msg);
    char *s = xmalloc(n + 1);
    memcpy(s, text, n);
    s[n] = '\0';
    ms_free(text);
    const size_t kl = strlen(key);
    double v = NAN;
    for (char *line = s; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, kl) == 0 && line[kl] == '=') {
            char buf[64];
            size_t len = strcspn(line + kl + 1, "\n");
            if (len >= sizeof buf) break;
            memcpy(buf, line + kl + 1, len);
            buf[len] = '\0';
            if (!ms_parse_double(buf, &v)) fail_msg("%s: %s=%s", dir, key, buf);
            break;
        }
    }
    free(s);
    if (isnan(v)) fail_msg("%s: no %s", dir, key);
    return v;
}

/* The 3x3 stride-1 groups-1 conv cases of tests/golden/nn (ReLU, one with batch norm folded
 * into the weights), against PyTorch's output. */
static void test_winograd_golden(void **state) {
    (void)state;
    static const char *cases[] = {"conv_3x3_s1_p1_relu", "conv_bnfold_relu"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *dir = cases[c];
        const bool fold = strstr(dir, "bnfold") != NULL;
        ms_conv2d p =
            conv3x3((int32_t)param(dir, "in_c"), (int32_t)param(dir, "out_c"),
                    (int32_t)param(dir, "pad_t"), (int32_t)param(dir, "pad_l"),
                    (int32_t)param(dir, "pad_b"), (int32_t)param(dir, "pad_r"), MS_ACT_RELU);
        assert_true(param(dir, "kh") == 3 && param(dir, "kw") == 3 && param(dir, "stride_h") == 1 &&
                    param(dir, "stride_w") == 1 && param(dir, "dil_h") == 1 &&
                    param(dir, "dil_w") == 1 && param(dir, "groups") == 1);
        ms_npy *x = load_npy(dir, "input"), *wt = load_npy(dir, "weight");
        ms_npy *b = load_npy(dir, "bias"), *ref = load_npy(dir, "output");
        assert_int_equal(x->ndim, 4);
        assert_int_equal(x->shape[1], p.in_c);
        assert_int_equal(wt->count, (size_t)p.out_c * (size_t)p.in_c * 9);
        assert_int_equal(b->count, (size_t)p.out_c);
        if (fold) {
            ms_npy *g = load_npy(dir, "gamma"), *be = load_npy(dir, "beta");
            ms_npy *m = load_npy(dir, "mean"), *v = load_npy(dir, "var");
            ms_batchnorm_fold(p.out_c, (size_t)p.in_c * 9, wt->data, b->data, g->data, be->data,
                              m->data, v->data, (float)param(dir, "eps"));
            ms_npy_destroy(g);
            ms_npy_destroy(be);
            ms_npy_destroy(m);
            ms_npy_destroy(v);
        }
        const int32_t n = (int32_t)x->shape[0], h = (int32_t)x->shape[2], w = (int32_t)x->shape[3];
        int32_t oh, ow;
        assert_int_equal(ms_conv2d_shape(&p, h, w, &oh, &ow, NULL), MS_OK);
        const size_t n_out = (size_t)n * (size_t)p.out_c * (size_t)oh * (size_t)ow;
        assert_int_equal(ref->count, n_out);
        float *u = xmalloc(ms_conv2d_winograd_weight_floats(&p) * sizeof(float));
        float *ws = xmalloc(ms_conv2d_winograd_workspace(&p, h, w) * sizeof(float));
        float *out = xmalloc(n_out * sizeof *out);
        ms_conv2d_winograd_weights(&p, wt->data, u);
        ms_tensor ti = {n, p.in_c, h, w, x->data}, to = {n, p.out_c, oh, ow, out};
        ms_conv2d_winograd_forward(&p, &ti, u, b->data, &to, ws);
        const double e = rel_err_f(out, ref->data, n_out);
        record("winograd golden vs torch", e);
        if (!(e <= TOL_WINO)) fail_msg("%s: error %.3g > %.0e", dir, e, TOL_WINO);
        free(u);
        free(ws);
        free(out);
        ms_npy_destroy(x);
        ms_npy_destroy(wt);
        ms_npy_destroy(b);
        ms_npy_destroy(ref);
    }
}

/* ---- eligibility and sizes ---- */

static void test_winograd_api(void **state) {
    (void)state;
    const ms_conv2d ok = conv3x3(16, 32, 1, 1, 1, 1, MS_ACT_RELU);
    assert_true(ms_conv2d_winograd_ok(&ok));
    assert_int_equal(ms_conv2d_winograd_weight_floats(&ok), 36 * 16 * 32);
    ms_conv2d p = ok;
    p.pad_t = 0;
    p.pad_r = 2; /* asymmetric padding is fine */
    assert_true(ms_conv2d_winograd_ok(&p));

    const ms_conv2d bad[] = {
        {16, 32, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_NONE, 0},  /* stride */
        {16, 32, 3, 3, 1, 1, 2, 1, 1, 1, 1, 1, 1, MS_ACT_NONE, 0},  /* dilation */
        {16, 32, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, 1, MS_ACT_NONE, 0},  /* kernel */
        {16, 32, 3, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, MS_ACT_NONE, 0},  /* kernel */
        {16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, MS_ACT_NONE, 0},  /* groups */
        {16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 16, MS_ACT_NONE, 0}, /* depthwise */
        {0, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_NONE, 0},   /* invalid */
        {16, 32, 3, 3, 1, 1, 1, 1, -1, 1, 1, 1, 1, MS_ACT_NONE, 0}, /* invalid */
        {16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, (ms_act)42, 0},   /* invalid */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (ms_conv2d_winograd_ok(&bad[i])) fail_msg("case %zu accepted", i);
        assert_true(ms_conv2d_winograd_weight_floats(&bad[i]) == SIZE_MAX);
        assert_true(ms_conv2d_winograd_workspace(&bad[i], 16, 16) == SIZE_MAX);
        assert_false(ms_conv2d_winograd_worthwhile(&bad[i], 16, 16));
    }
    assert_false(ms_conv2d_winograd_ok(NULL));

    /* sizes ms_conv2d_shape refuses */
    p = conv3x3(4, 4, 0, 0, 0, 0, MS_ACT_NONE);
    assert_true(ms_conv2d_winograd_workspace(&p, 2, 5) == SIZE_MAX);
    assert_true(ms_conv2d_winograd_workspace(&p, 0, 5) == SIZE_MAX);
    assert_false(ms_conv2d_winograd_worthwhile(&p, 2, 5));
    assert_true(ms_conv2d_winograd_workspace(&p, 3, 3) != SIZE_MAX);

    /* where it pays: the screener's stride-1 layers; not for one input channel (the direct
     * kernel is faster) */
    const ms_conv2d s32 = conv3x3(32, 32, 1, 1, 1, 1, MS_ACT_RELU);
    const ms_conv2d s128 = conv3x3(128, 128, 1, 1, 1, 1, MS_ACT_RELU);
    const ms_conv2d first = conv3x3(1, 16, 1, 1, 1, 1, MS_ACT_RELU);
    assert_true(ms_conv2d_winograd_worthwhile(&s32, 256, 256));
    assert_true(ms_conv2d_winograd_worthwhile(&s128, 64, 64));
    assert_false(ms_conv2d_winograd_worthwhile(&first, 512, 512));
    /* ResNet-18's: all but 512 channels at 7x7 (4 tiles); where the packed kernel runs (AVX-512)
     * it also takes 256@14 (16 tiles) */
    static const int32_t resnet[][2] = {{64, 56}, {128, 28}, {256, 14}, {512, 7}};
    const int32_t wino_upto = ms_nn_cpu_avx512() ? 2 : 3;
    for (int i = 0; i < 4; i++) {
        const ms_conv2d q = conv3x3(resnet[i][0], resnet[i][0], 1, 1, 1, 1, MS_ACT_RELU);
        assert_true(ms_conv2d_winograd_worthwhile(&q, resnet[i][1], resnet[i][1]) ==
                    (i < wino_upto));
    }
    const ms_conv2d c512 = conv3x3(512, 512, 1, 1, 1, 1, MS_ACT_RELU);
    assert_true(ms_conv2d_winograd_worthwhile(&c512, 14, 14) == !ms_nn_cpu_avx512()); /* 16 */
    assert_true(ms_conv2d_winograd_worthwhile(&c512, 20, 20)); /* 25 tiles */
    const ms_conv2d c256 = conv3x3(256, 256, 1, 1, 1, 1, MS_ACT_RELU);
    assert_false(ms_conv2d_winograd_worthwhile(&c256, 4, 4)); /* one tile */
}

/* ---- the first-layer direct kernel ---- */

static void run_first(rng *r, const ms_conv2d *p, int32_t batch, int32_t in_h, int32_t in_w,
                      bool with_bias) {
    char what[160];
    describe(what, sizeof what, p, batch, in_h, in_w, with_bias);
    int32_t oh, ow;
    ms_err err = {0};
    if (ms_conv2d_shape(p, in_h, in_w, &oh, &ow, &err) != MS_OK) fail_msg("%s: %s", what, err.msg);
    const size_t n_in = (size_t)batch * (size_t)in_h * (size_t)in_w;
    const size_t n_w = (size_t)p->out_c * 9;
    const size_t n_out = (size_t)batch * (size_t)p->out_c * (size_t)oh * (size_t)ow;
    const size_t n_ws = ms_conv2d_workspace(p, in_h, in_w);
    float *in = xmalloc(n_in * sizeof *in), *w = xmalloc(n_w * sizeof *w);
    float *bias = xmalloc((size_t)p->out_c * sizeof *bias);
    double *ref = xmalloc(n_out * sizeof *ref);
    fill(r, in, n_in);
    fill(r, w, n_w);
    fill(r, bias, (size_t)p->out_c);
    const float *b = with_bias ? bias : NULL;

    /* The workspace is reported (im2col's size, for compatibility) but not touched. */
    gbuf go, gws;
    float *out = gbuf_alloc(&go, n_out), *ws = gbuf_alloc(&gws, n_ws);
    for (size_t i = 0; i < n_ws; i++) memcpy(&ws[i], &GUARD_BITS, sizeof GUARD_BITS);
    ms_tensor ti = {batch, 1, in_h, in_w, in}, to = {batch, p->out_c, oh, ow, out};
    ms_conv2d_forward(p, &ti, w, b, &to, ws);
    gbuf_check(&go, "first3x3 output");
    gbuf_check(&gws, "first3x3 workspace");
    for (size_t i = 0; i < n_ws; i++)
        if (memcmp(&ws[i], &GUARD_BITS, sizeof GUARD_BITS) != 0)
            fail_msg("%s: workspace float %zu written", what, i);

    conv_ref(p, batch, in_h, in_w, in, w, b, oh, ow, true, ref);
    const double e = rel_err_d(out, ref, n_out);
    record("first3x3 vs double", e);
    if (!(e <= TOL_DIRECT)) fail_msg("first3x3: %s: error %.3g > %.0e", what, e, TOL_DIRECT);

    for (int isa = MS_NN_ISA_BASE; isa < MS_NN_ISA_AVX512; isa++) { /* the other clones */
        gbuf gi;
        float *oi = gbuf_alloc(&gi, n_out);
        ms_nn_conv2d_forward_isa(p, &ti, w, b, &(ms_tensor){batch, p->out_c, oh, ow, oi}, ws,
                                 (ms_nn_isa)isa);
        gbuf_check(&gi, "first3x3 output (clone)");
        const double ei = rel_err_d(oi, ref, n_out);
        record("first3x3 clones vs double", ei);
        if (!(ei <= TOL_DIRECT)) fail_msg("first3x3 clone %d: %s: error %.3g", isa, what, ei);
        gbuf_free(&gi);
    }

    gbuf go2;
    float *out2 = gbuf_alloc(&go2, n_out);
    ms_nn_conv2d_forward_generic(p, &ti, w, b, &(ms_tensor){batch, p->out_c, oh, ow, out2}, ws);
    gbuf_check(&go2, "im2col output");
    const double e2 = rel_err_f(out, out2, n_out);
    record("first3x3 vs im2col", e2);
    if (!(e2 <= TOL_DIRECT)) fail_msg("first3x3 vs im2col: %s: error %.3g", what, e2);

    gbuf_free(&go);
    gbuf_free(&go2);
    gbuf_free(&gws);
    free(in);
    free(w);
    free(bias);
    free(ref);
}

static void test_first3x3(void **state) {
    (void)state;
    rng r = {31337};
    static const int32_t outs[] = {2, 3, 16, 33};
    static const int32_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 13, 31, 64, 511, 512, 513, 1100};
    static const int32_t pads[][4] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {2, 2, 2, 2}, {0, 1, 2, 1},
                                      {2, 0, 1, 2}, {1, 2, 0, 0}, {0, 0, 1, 2}, {5, 3, 0, 4}};
    int cases = 0;
    for (int oi = 0; oi < 4; oi++)
        for (int hi = 0; hi < 14; hi++) {
            int32_t h = sizes[hi], w = sizes[(hi * 5 + oi) % 14];
            if (h * w > 64 * 1100) h = 3; /* keep the reference quick */
            int k = cases % 8;
            while (h + pads[k][0] + pads[k][2] < 3 || w + pads[k][1] + pads[k][3] < 3)
                k = (k + 1) % 8;
            const ms_conv2d p = conv3x3(1, outs[oi], pads[k][0], pads[k][1], pads[k][2], pads[k][3],
                                        (ms_act)(cases % 7));
            run_first(&r, &p, cases % 5 == 0 ? 2 : 1, h, w, cases % 3 != 0);
            cases++;
        }
    /* the screener's first layer at a reduced height */
    const ms_conv2d p = conv3x3(1, 16, 1, 1, 1, 1, MS_ACT_RELU);
    run_first(&r, &p, 1, 6, 512, true);
}

static void test_report(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++)
        printf("%-28s %3d cases, max relative error %.2e\n", stats[i].name, stats[i].cases,
               stats[i].worst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_winograd_api),    cmocka_unit_test(test_winograd_shapes),
        cmocka_unit_test(test_winograd_blocks), cmocka_unit_test(test_winograd_catches_errors),
        cmocka_unit_test(test_winograd_golden), cmocka_unit_test(test_first3x3),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
