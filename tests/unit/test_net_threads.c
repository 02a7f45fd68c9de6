/* "1 and N threads give identical outputs": every golden network (tests/golden/net) and a
 * screener-shaped network with many parallel tasks (3x3 convolutions 1->8->16->16 and a 1x1
 * head at 96x96, random weights; Winograd, packed with the first layer fused in, im2col and
 * pointwise paths) is run
 *   - in sessions with 1, 2 and 3 worker threads (OpenBLAS single-threaded, as the CLI runs),
 *     on both the default (fast) and the direct paths,
 *   - in 3 sessions on 3 threads at once (one net shared),
 *   - as a batch of 3 and image by image, and the fast paths against the direct one (1e-4),
 * and every output must be bit-identical to the single-threaded run of the same path. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "medscreen/core.h"
#include "medscreen/net.h"
#include "medscreen/npy.h"

#include "../../src/nn/nn_internal.h"

enum { WORKERS = 3, BATCH = 3 };

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * frand();
}

/* Writes the screener-shaped net to a temporary .msm and loads it. */
static ms_net *make_big_net(void) {
    static const char graph[] =
        "graph 1\ninput x 1 96 96\n"
        "node conv2d c1 in=x out=a weight=c1.w bias=c1.b pad=1,1,1,1 act=relu\n"
        "node conv2d c2 in=a out=b weight=c2.w bias=c2.b pad=1,1,1,1 stride=2,2 act=relu\n"
        "node conv2d c3 in=b out=c weight=c3.w bias=c3.b pad=1,1,1,1 act=relu\n"
        "node conv2d c4 in=c out=d weight=c4.w bias=c4.b pad=1,1,1,1 act=relu\n"
        "node conv2d head in=d out=y weight=h.w bias=h.b\n"
        "output y\n";
    static const struct {
        const char *name;
        uint32_t ndim, dims[4];
    } ts[] = {{"c1.w", 4, {8, 1, 3, 3}},   {"c1.b", 1, {8}},
              {"c2.w", 4, {16, 8, 3, 3}},  {"c2.b", 1, {16}},
              {"c3.w", 4, {16, 16, 3, 3}}, {"c3.b", 1, {16}},
              {"c4.w", 4, {16, 16, 3, 3}}, {"c4.b", 1, {16}},
              {"h.w", 4, {1, 16, 1, 1}},   {"h.b", 1, {1}}};
    ms_msm_writer *w = NULL;
    assert_int_equal(ms_msm_writer_create(&w, NULL), MS_OK);
    uint32_t gl = (uint32_t)strlen(graph);
    assert_int_equal(ms_msm_writer_add(w, "graph", MS_DTYPE_U8, 1, &gl, graph, NULL), MS_OK);
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        size_t n = 1;
        for (uint32_t d = 0; d < ts[i].ndim; d++) n *= ts[i].dims[d];
        float *v = malloc(n * sizeof *v);
        assert_non_null(v);
        fill(v, n, 0.3f);
        assert_int_equal(
            ms_msm_writer_add(w, ts[i].name, MS_DTYPE_F32, ts[i].ndim, ts[i].dims, v, NULL), MS_OK);
        free(v);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/test_net_threads_%ld.msm", MS_BINARY_DIR, (long)getpid());
    assert_int_equal(ms_msm_writer_save(w, path, NULL), MS_OK);
    ms_msm_writer_destroy(w);
    ms_net *net = NULL;
    ms_err err = {0};
    if (ms_net_load(path, NULL, &net, &err) != MS_OK) fail_msg("%s", err.msg);
    remove(path);
    return net;
}

/* Runs net on batch images of x; returns a malloc'd copy of output 0 (count in *n). */
static float *run_copy(const ms_net *net, int32_t batch, int32_t threads, bool direct,
                       const float *x, size_t *n) {
    ms_session *s = NULL;
    ms_err err = {0};
    const ms_session_options opt = {batch, threads, direct};
    if (ms_session_create_opts(net, &opt, &s, &err) != MS_OK) fail_msg("%s", err.msg);
    if (ms_session_run(s, x, &err) != MS_OK) fail_msg("%s", err.msg);
    ms_tensor o;
    assert_int_equal(ms_session_output(s, 0, &o), MS_OK);
    *n = ms_tensor_count(&o);
    float *copy = malloc(*n * sizeof *copy);
    assert_non_null(copy);
    memcpy(copy, o.data, *n * sizeof *copy);
    ms_session_destroy(s);
    return copy;
}

typedef struct worker {
    const ms_net *net;
    const float *x;
    const float *want;
    size_t count;
    int mismatches;
    pthread_t tid;
} worker;

static void *worker_main(void *arg) {
    worker *wk = arg;
    ms_session *s = NULL;
    if (ms_session_create(wk->net, BATCH, &s, NULL) != MS_OK) {
        wk->mismatches = -1;
        return NULL;
    }
    for (int round = 0; round < 4; round++) {
        ms_tensor o;
        if (ms_session_run(s, wk->x, NULL) != MS_OK || ms_session_output(s, 0, &o) != MS_OK ||
            ms_tensor_count(&o) != wk->count) {
            wk->mismatches = -1;
            break;
        }
        if (memcmp(o.data, wk->want, wk->count * sizeof(float)) != 0) wk->mismatches++;
    }
    ms_session_destroy(s);
    return NULL;
}

static void expect_identical(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s: element %zu differs: %.9g vs %.9g", what, i, (double)got[i],
                     (double)want[i]);
}

static void check_net(const ms_net *net, const char *name) {
    int32_t c, h, w;
    assert_true(ms_net_input_shape(net, 0, &c, &h, &w));
    const size_t img = (size_t)c * (size_t)h * (size_t)w;
    float *x = malloc(BATCH * img * sizeof *x);
    assert_non_null(x);
    fill(x, BATCH * img, 1.0f);

    ms_blas_set_threads(1);
    size_t n1 = 0, n2 = 0, ni = 0;
    float *ref = run_copy(net, BATCH, 1, false, x, &n1);
    for (int direct = 0; direct <= 1; direct++) {
        float *base = direct ? run_copy(net, BATCH, 1, true, x, &n2) : ref;
        for (int32_t threads = 2; threads <= 3; threads++) {
            float *got = run_copy(net, BATCH, threads, direct, x, &n2);
            assert_int_equal(n1, n2);
            expect_identical(direct ? "direct path, N session threads vs 1"
                                    : "fast paths, N session threads vs 1",
                             got, base, n1);
            free(got);
        }
        /* image by image equals the batch */
        for (int32_t b = 0; b < BATCH; b++) {
            float *one = run_copy(net, 1, 2, direct, x + (size_t)b * img, &ni);
            assert_int_equal(ni * BATCH, n1);
            expect_identical("one image vs the batch", one, base + (size_t)b * ni, ni);
            free(one);
        }
        if (direct) {
            /* the fast paths (Winograd, packed, a fused first layer) agree with the direct
             * path within their bound, 1e-4 of the largest output, on the whole batch */
            double worst = 0, scale = 0;
            for (size_t i = 0; i < n1; i++) {
                const double d = fabs((double)ref[i] - (double)base[i]);
                if (!(d <= worst)) worst = d;
                if (fabs((double)base[i]) > scale) scale = fabs((double)base[i]);
            }
            if (!(worst <= 1e-4 * scale))
                fail_msg("%s: fast paths vs direct: max|diff| %.3g > 1e-4 x %.3g", name, worst,
                         scale);
            free(base);
        }
    }

    /* concurrent single-threaded sessions (as scan --jobs runs them) */
    worker wk[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        wk[i] = (worker){net, x, ref, n1, 0, 0};
        assert_int_equal(pthread_create(&wk[i].tid, NULL, worker_main, &wk[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(wk[i].tid, NULL);
        if (wk[i].mismatches != 0)
            fail_msg("%s: worker %d: %d runs differ from the single-threaded run", name, i,
                     wk[i].mismatches);
    }
    uint32_t wino = 0, fused = 0;
    for (uint32_t i = 0; i < ms_net_node_count(net); i++) {
        wino += strcmp(ms_net_node_impl(net, i), "winograd") == 0;
        fused += strcmp(ms_net_node_impl(net, i), "packed+first") == 0;
    }
    print_message("%-9s %zu output values identical across 1/2/3 session threads (fast and direct "
                  "paths, %u Winograd layers, %u fused first layers), %d concurrent sessions, "
                  "batch %d vs single images\n",
                  name, n1, wino, fused, WORKERS, BATCH);
    /* with AVX-512 the big net's first layer is fused into its stride-2 layer */
    if (strcmp(name, "big") == 0 && ms_nn_cpu_avx512()) assert_int_equal(fused, 1);
    free(ref);
    free(x);
}

static void check_golden(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/net/%s/model.msm", MS_SOURCE_DIR, name);
    ms_net *net = NULL;
    ms_err err = {0};
    if (ms_net_load(path, NULL, &net, &err) != MS_OK) fail_msg("%s", err.msg);
    check_net(net, name);
    ms_net_destroy(net);
}

static void test_goldens(void **state) {
    (void)state;
    check_golden("screener");
    check_golden("resnet");
    check_golden("unet");
    check_golden("densenet");
}

static void test_big(void **state) {
    (void)state;
    ms_net *net = make_big_net();
    check_net(net, "big");
    ms_net_destroy(net);
}

/* ms_conv2d_forward_pool directly, on the paths the nets above do not reach: output-channel
 * shares (256->256 on 7x7 is one band, split in two shares of 128), depthwise, a pointwise layer
 * wider than one task, grouped im2col; pools of 1 to 3 threads against ms_conv2d_forward, bit for
 * bit. */
static void test_conv_pool(void **state) {
    (void)state;
    static const struct {
        ms_conv2d p;
        int32_t n, h, w;
    } cases[] = {
        {{256, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_RELU, 0.0f}, 2, 7, 7},
        {{16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 16, MS_ACT_SILU, 0.0f}, 2, 19, 23},
        {{8, 12, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, MS_ACT_NONE, 0.0f}, 2, 80, 81},
        {{8, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, MS_ACT_LEAKY_RELU, 0.1f}, 1, 33, 20},
        {{1, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_RELU, 0.0f}, 2, 37, 41},
    };
    ms_pool *pools[3] = {NULL, NULL, NULL};
    for (int t = 1; t < 3; t++) assert_int_equal(ms_pool_create(t + 1, &pools[t], NULL), MS_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ms_conv2d *p = &cases[i].p;
        int32_t oh, ow;
        assert_int_equal(ms_conv2d_shape(p, cases[i].h, cases[i].w, &oh, &ow, NULL), MS_OK);
        const size_t nin = (size_t)(cases[i].n * p->in_c * cases[i].h * cases[i].w);
        const size_t nout = (size_t)(cases[i].n * p->out_c * oh * ow);
        const size_t nw = (size_t)(p->out_c * (p->in_c / p->groups) * p->kh * p->kw);
        const size_t slot = ms_conv2d_workspace(p, cases[i].h, cases[i].w) + 16;
        float *x = malloc(nin * sizeof *x), *wt = malloc(nw * sizeof *wt);
        float *b = malloc((size_t)p->out_c * sizeof *b), *ws = malloc(3 * slot * sizeof *ws);
        float *want = malloc(nout * sizeof *want), *got = malloc(nout * sizeof *got);
        assert_true(x && wt && b && ws && want && got);
        fill(x, nin, 1.0f);
        fill(wt, nw, 0.2f);
        fill(b, (size_t)p->out_c, 0.1f);
        ms_tensor tin = {cases[i].n, p->in_c, cases[i].h, cases[i].w, x};
        ms_tensor tw = {cases[i].n, p->out_c, oh, ow, want}, tg = tw;
        tg.data = got;
        ms_conv2d_forward(p, &tin, wt, b, &tw, ws);
        for (int t = 0; t < 3; t++) {
            memset(got, 0xff, nout * sizeof *got); /* NaN: an unwritten value cannot pass */
            ms_conv2d_forward_pool(p, &tin, wt, b, &tg, ws, slot, pools[t]);
            char what[80];
            snprintf(what, sizeof what, "conv case %zu, pool of %d", i, t + 1);
            expect_identical(what, got, want, nout);
        }
        free(x), free(wt), free(b), free(ws), free(want), free(got);
    }
    for (int t = 1; t < 3; t++) ms_pool_destroy(pools[t]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_big),
        cmocka_unit_test(test_conv_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
