/* net tests: graphs written with ms_msm_writer, loaded with ms_net_load and run through a
 * session, checked bit for bit against direct calls of the nn operators; every validation rule
 * of models/FORMAT.md's graph section; no allocation during a run; two threads with two
 * sessions on one net; the arena is smaller than the sum of the values of a chain. */
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

#include "alloc_hooks.h"
#include "medscreen/net.h"

typedef struct wt {
    const char *name;
    uint32_t ndim;
    uint32_t dims[4];
    const float *data;
} wt;

static uint64_t g_rng = 88172645463325252ull;
static float frand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static float *rand_buf(size_t n) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static int g_file_no;

/* Writes graph + tensors (+ optional meta) as a .msm, then loads it. */
static ms_status make_net(const char *graph, const wt *ts, int nts, const char *meta, ms_net **out,
                          ms_err *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/test_net_%ld_%d.msm", MS_BINARY_DIR, (long)getpid(),
             g_file_no++);
    ms_msm_writer *w = NULL;
    assert_int_equal(ms_msm_writer_create(&w, NULL), MS_OK);
    if (graph != NULL) {
        uint32_t gl = (uint32_t)strlen(graph);
        if (gl == 0) {
            uint8_t z = ' ';
            gl = 1;
            assert_int_equal(ms_msm_writer_add(w, "graph", MS_DTYPE_U8, 1, &gl, &z, NULL), MS_OK);
        } else {
            assert_int_equal(ms_msm_writer_add(w, "graph", MS_DTYPE_U8, 1, &gl, graph, NULL),
                             MS_OK);
        }
    }
    if (meta != NULL) {
        uint32_t ml = (uint32_t)strlen(meta);
        assert_int_equal(ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, &ml, meta, NULL), MS_OK);
    }
    for (int i = 0; i < nts; i++)
        assert_int_equal(ms_msm_writer_add(w, ts[i].name, MS_DTYPE_F32, ts[i].ndim, ts[i].dims,
                                           ts[i].data, NULL),
                         MS_OK);
    assert_int_equal(ms_msm_writer_save(w, path, NULL), MS_OK);
    ms_msm_writer_destroy(w);
    ms_status st = ms_net_load(path, NULL, out, err);
    remove(path);
    return st;
}

static void expect_same(const ms_tensor *got, const float *want, int32_t n, int32_t c, int32_t h,
                        int32_t w) {
    assert_int_equal(got->n, n);
    assert_int_equal(got->c, c);
    assert_int_equal(got->h, h);
    assert_int_equal(got->w, w);
    size_t cnt = (size_t)n * (size_t)c * (size_t)h * (size_t)w;
    for (size_t i = 0; i < cnt; i++)
        if (memcmp(&got->data[i], &want[i], sizeof(float)) != 0)
            fail_msg("element %zu: got %.9g, want %.9g", i, (double)got->data[i], (double)want[i]);
}

/* Runs a one-input one-output graph on in (batch n) and returns the session (caller
 * destroys it and the net). */
static ms_session *run1(const char *graph, const wt *ts, int nts, int32_t n, const float *in,
                        ms_net **net, ms_tensor *out) {
    ms_err err = {0};
    if (make_net(graph, ts, nts, NULL, net, &err) != MS_OK) fail_msg("load: %s", err.msg);
    ms_session *s = NULL;
    /* direct_only: the references below are direct ms_conv2d_forward calls, compared bit for
     * bit; test_chain checks the fast paths separately */
    const ms_session_options opt = {n, 1, true};
    if (ms_session_create_opts(*net, &opt, &s, &err) != MS_OK) fail_msg("session: %s", err.msg);
    if (ms_session_run(s, in, &err) != MS_OK) fail_msg("run: %s", err.msg);
    assert_int_equal(ms_session_output(s, 0, out), MS_OK);
    return s;
}

enum { N = 2, C = 3, H = 8, W = 8, CHW = C * H * W };

static void test_conv(void **state) {
    (void)state;
    float *x = rand_buf(N * CHW), *wgt = rand_buf(4 * 3 * 3 * 3), *b = rand_buf(4);
    wt ts[] = {{"c.w", 4, {4, 3, 3, 3}, wgt}, {"c.b", 1, {4}, b}};
    ms_net *net;
    ms_tensor o;
    ms_session *s = run1("graph 1\ninput x 3 8 8\nnode conv2d c in=x out=y weight=c.w bias=c.b "
                         "stride=2,2 pad=1,1,1,1 act=leaky_relu alpha=0.2\noutput y\n",
                         ts, 2, N, x, &net, &o);
    ms_conv2d p = {3, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, MS_ACT_LEAKY_RELU, 0.2f};
    int32_t oh, ow;
    assert_int_equal(ms_conv2d_shape(&p, H, W, &oh, &ow, NULL), MS_OK);
    float *ref = malloc((size_t)N * 4 * H * W * sizeof *ref);
    float *ws = malloc((ms_conv2d_workspace(&p, H, W) + 1) * sizeof *ws);
    ms_tensor ti = {N, C, H, W, x}, to = {N, 4, oh, ow, ref};
    ms_conv2d_forward(&p, &ti, wgt, b, &to, ws);
    expect_same(&o, ref, N, 4, oh, ow);
    /* grouped (depthwise) with dilation, no bias */
    ms_session_destroy(s);
    ms_net_destroy(net);
    wt ts2[] = {{"d.w", 4, {3, 1, 3, 3}, wgt}};
    s = run1("graph 1\ninput x 3 8 8\nnode conv2d d in=x out=y weight=d.w groups=3 dil=2,2 "
             "pad=2,1,2,1\noutput y\n",
             ts2, 1, N, x, &net, &o);
    ms_conv2d q = {3, 3, 3, 3, 1, 1, 2, 2, 2, 1, 2, 1, 3, MS_ACT_NONE, 0.01f};
    assert_int_equal(ms_conv2d_shape(&q, H, W, &oh, &ow, NULL), MS_OK);
    float *ws2 = malloc((ms_conv2d_workspace(&q, H, W) + 1) * sizeof *ws2);
    to = (ms_tensor){N, 3, oh, ow, ref};
    ms_conv2d_forward(&q, &ti, wgt, NULL, &to, ws2);
    expect_same(&o, ref, N, 3, oh, ow);
    ms_session_destroy(s);
    ms_net_destroy(net);
    free(x), free(wgt), free(b), free(ref), free(ws), free(ws2);
}

static void test_batchnorm_act_softmax(void **state) {
    (void)state;
    float *x = rand_buf(N * CHW), *g = rand_buf(3), *be = rand_buf(3), *m = rand_buf(3);
    float var[3] = {0.5f, 1.0f, 2.0f};
    wt ts[] = {{"g", 1, {3}, g}, {"b", 1, {3}, be}, {"m", 1, {3}, m}, {"v", 1, {3}, var}};
    ms_net *net;
    ms_tensor o;
    ms_session *s = run1("graph 1\ninput x 3 8 8\n# comment\n\nnode batchnorm bn in=x out=y "
                         "weight=g bias=b mean=m var=v eps=0.001\nnode act a in=y out=z act=silu\n"
                         "node softmax sm in=z out=p\noutput p\n",
                         ts, 4, N, x, &net, &o);
    float *ref = malloc(N * CHW * sizeof *ref);
    memcpy(ref, x, N * CHW * sizeof *ref);
    ms_tensor t = {N, C, H, W, ref};
    ms_batchnorm_forward(&t, g, be, m, var, 0.001f);
    ms_act_forward(MS_ACT_SILU, 0.01f, ref, N * CHW);
    ms_softmax_channels(&t);
    expect_same(&o, ref, N, C, H, W);
    ms_session_destroy(s);
    ms_net_destroy(net);
    /* every activation through act */
    static const char *const names[] = {"none",    "relu", "leaky_relu", "silu",
                                        "sigmoid", "tanh", "gelu"};
    for (int a = 0; a < 7; a++) {
        char gtext[256];
        snprintf(gtext, sizeof gtext,
                 "graph 1\ninput x 3 8 8\nnode act a in=x out=y act=%s alpha=0.3\noutput y\n",
                 names[a]);
        s = run1(gtext, NULL, 0, N, x, &net, &o);
        memcpy(ref, x, N * CHW * sizeof *ref);
        ms_act_forward((ms_act)a, 0.3f, ref, N * CHW);
        expect_same(&o, ref, N, C, H, W);
        ms_session_destroy(s);
        ms_net_destroy(net);
    }
    free(x), free(g), free(be), free(m), free(ref);
}

static void test_pools(void **state) {
    (void)state;
    float *x = rand_buf(N * CHW);
    ms_net *net;
    ms_tensor o, ti = {N, C, H, W, x};
    float ref[N * CHW];
    static const struct {
        const char *keys;
        ms_pool2d p;
    } cases[] = {
        {"maxpool k=2,2", {MS_POOL_MAX, 2, 2, 2, 2, 0, 0, 0, 0, false, true}},
        {"maxpool k=3,3 stride=2,2 pad=1,1,1,1 ceil=1",
         {MS_POOL_MAX, 3, 3, 2, 2, 1, 1, 1, 1, true, true}},
        {"avgpool k=3,2 stride=2,1 pad=1,0,1,1 include_pad=0",
         {MS_POOL_AVG, 3, 2, 2, 1, 1, 0, 1, 1, false, false}},
        {"avgpool k=2,2", {MS_POOL_AVG, 2, 2, 2, 2, 0, 0, 0, 0, false, true}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char g[256];
        snprintf(g, sizeof g, "graph 1\ninput x 3 8 8\nnode %s in=x out=y %s\noutput y\n",
                 strncmp(cases[i].keys, "max", 3) == 0 ? "maxpool p" : "avgpool p",
                 cases[i].keys + 8);
        ms_session *s = run1(g, NULL, 0, N, x, &net, &o);
        int32_t oh, ow;
        assert_int_equal(ms_pool2d_shape(&cases[i].p, H, W, &oh, &ow, NULL), MS_OK);
        ms_tensor to = {N, C, oh, ow, ref};
        ms_pool2d_forward(&cases[i].p, &ti, &to);
        expect_same(&o, ref, N, C, oh, ow);
        ms_session_destroy(s);
        ms_net_destroy(net);
    }
    for (int k = 0; k < 2; k++) {
        ms_session *s =
            run1(k ? "graph 1\ninput x 3 8 8\nnode globalmaxpool p in=x out=y\noutput y\n"
                   : "graph 1\ninput x 3 8 8\nnode globalavgpool p in=x out=y\noutput y\n",
                 NULL, 0, N, x, &net, &o);
        ms_tensor to = {N, C, 1, 1, ref};
        ms_global_pool_forward(k ? MS_POOL_MAX : MS_POOL_AVG, &ti, &to);
        expect_same(&o, ref, N, C, 1, 1);
        ms_session_destroy(s);
        ms_net_destroy(net);
    }
    free(x);
}

static void test_upsample_concat(void **state) {
    (void)state;
    float *x = rand_buf(N * CHW);
    ms_net *net;
    ms_tensor o, ti = {N, C, H, W, x};
    float *ref = malloc((size_t)N * C * 16 * 16 * sizeof *ref);
    ms_session *s = run1("graph 1\ninput x 3 8 8\nnode upsample u in=x out=y mode=nearest "
                         "scale=2,2\noutput y\n",
                         NULL, 0, N, x, &net, &o);
    ms_tensor to = {N, C, 16, 16, ref};
    ms_upsample_forward(MS_UPSAMPLE_NEAREST, false, &ti, &to);
    expect_same(&o, ref, N, C, 16, 16);
    ms_session_destroy(s);
    ms_net_destroy(net);
    s = run1("graph 1\ninput x 3 8 8\nnode upsample u in=x out=y mode=bilinear size=5,11 "
             "align=1\noutput y\n",
             NULL, 0, N, x, &net, &o);
    to = (ms_tensor){N, C, 5, 11, ref};
    ms_upsample_forward(MS_UPSAMPLE_BILINEAR, true, &ti, &to);
    expect_same(&o, ref, N, C, 5, 11);
    ms_session_destroy(s);
    ms_net_destroy(net);
    /* concat of x, relu(x) and x again */
    s = run1("graph 1\ninput x 3 8 8\nnode act r in=x out=y act=relu\nnode concat c in=x,y,x "
             "out=z\noutput z\n",
             NULL, 0, N, x, &net, &o);
    float *y = malloc(N * CHW * sizeof *y);
    memcpy(y, x, N * CHW * sizeof *y);
    ms_act_forward(MS_ACT_RELU, 0.01f, y, N * CHW);
    ms_tensor ty = {N, C, H, W, y};
    const ms_tensor *ins[3] = {&ti, &ty, &ti};
    to = (ms_tensor){N, 9, H, W, ref};
    ms_concat_channels(ins, 3, &to);
    expect_same(&o, ref, N, 9, H, W);
    ms_session_destroy(s);
    ms_net_destroy(net);
    free(x), free(y), free(ref);
}

static void test_binary_fc_flatten(void **state) {
    (void)state;
    float *x = rand_buf(N * CHW), *fw = rand_buf(5 * CHW), *fb = rand_buf(5);
    ms_net *net;
    ms_tensor o, ti = {N, C, H, W, x};
    float *ref = malloc(N * CHW * sizeof *ref), gap[N * C], gmax[N];
    ms_tensor tg = {N, C, 1, 1, gap};
    ms_global_pool_forward(MS_POOL_AVG, &ti, &tg);
    /* y = x * gap(x) (channel broadcast) + max(conv1x1(x)) (a per-image scalar), then z + z */
    float kw[3] = {0.5f, -1.0f, 0.25f}, k1[N * H * W];
    wt kt[] = {{"k.w", 4, {1, 3, 1, 1}, kw}};
    ms_session *s = run1("graph 1\ninput x 3 8 8\nnode globalavgpool g in=x out=gx\n"
                         "node mul m in=x,gx out=y\nnode conv2d k in=x out=k1 weight=k.w\n"
                         "node globalmaxpool gm in=k1 out=mx\nnode add a in=y,mx out=z\n"
                         "node add a2 in=z,z out=z2\noutput z2\n",
                         kt, 1, N, x, &net, &o);
    ms_conv2d kp = {3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, MS_ACT_NONE, 0.01f};
    ms_tensor tr = {N, C, H, W, ref}, tk = {N, 1, H, W, k1}, tm = {N, 1, 1, 1, gmax};
    assert_int_equal(ms_binary_forward(MS_BINARY_MUL, &ti, &tg, &tr, NULL), MS_OK);
    ms_conv2d_forward(&kp, &ti, kw, NULL, &tk, NULL);
    ms_global_pool_forward(MS_POOL_MAX, &tk, &tm);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < CHW; i++) ref[n * CHW + i] = ref[n * CHW + i] + gmax[n];
    assert_int_equal(ms_binary_forward(MS_BINARY_ADD, &tr, &tr, &tr, NULL), MS_OK);
    expect_same(&o, ref, N, C, H, W);
    ms_session_destroy(s);
    ms_net_destroy(net);
    /* fc directly and after flatten, then softmax */
    wt ts[] = {{"fc.w", 2, {5, CHW}, fw}, {"fc.b", 1, {5}, fb}};
    for (int k = 0; k < 2; k++) {
        s = run1(k ? "graph 1\ninput x 3 8 8\nnode flatten f in=x out=fx\nnode fc l in=fx out=y "
                     "weight=fc.w bias=fc.b\nnode softmax s in=y out=p\noutput p\n"
                   : "graph 1\ninput x 3 8 8\nnode fc l in=x out=y weight=fc.w bias=fc.b\n"
                     "node softmax s in=y out=p\noutput p\n",
                 ts, 2, N, x, &net, &o);
        ms_tensor to = {N, 5, 1, 1, ref};
        ms_fc_forward(&ti, 5, fw, fb, &to);
        ms_softmax_channels(&to);
        expect_same(&o, ref, N, 5, 1, 1);
        ms_session_destroy(s);
        ms_net_destroy(net);
    }
    free(x), free(fw), free(fb), free(ref);
}

/* A chain: conv-bn-relu, maxpool, conv + skip add, global pool, flatten, fc, softmax. */
static const char *k_chain =
    "graph 1\n"
    "input x 3 16 16\n"
    "node conv2d c1 in=x out=a weight=c1.w bias=c1.b pad=1,1,1,1\n"
    "node batchnorm bn in=a out=b weight=bn.g bias=bn.b mean=bn.m var=bn.v\n"
    "node act r1 in=b out=c act=relu\n"
    "node maxpool p in=c out=d k=2,2\n"
    "node conv2d c2 in=d out=e weight=c2.w pad=1,1,1,1 act=relu\n"
    "node add s in=e,d out=f\n"
    "node conv2d c3 in=f out=g weight=c3.w pad=1,1,1,1 act=silu\n"
    "node globalavgpool gp in=g out=h\n"
    "node flatten fl in=h out=i\n"
    "node fc fc in=i out=j weight=fc.w bias=fc.b\n"
    "node softmax sm in=j out=prob\n"
    "output prob\n";

typedef struct chain {
    float *c1w, *c1b, *g, *b, *m, *v, *c2w, *c3w, *fw, *fb;
    wt ts[10];
} chain;

static void chain_init(chain *ch) {
    ch->c1w = rand_buf(8 * 3 * 9), ch->c1b = rand_buf(8), ch->g = rand_buf(8);
    ch->b = rand_buf(8), ch->m = rand_buf(8), ch->v = rand_buf(8);
    for (int i = 0; i < 8; i++) ch->v[i] = fabsf(ch->v[i]) + 0.1f;
    ch->c2w = rand_buf(8 * 8 * 9), ch->c3w = rand_buf(6 * 8 * 9);
    ch->fw = rand_buf(4 * 6), ch->fb = rand_buf(4);
    wt ts[10] = {{"c1.w", 4, {8, 3, 3, 3}, ch->c1w},
                 {"c1.b", 1, {8}, ch->c1b},
                 {"bn.g", 1, {8}, ch->g},
                 {"bn.b", 1, {8}, ch->b},
                 {"bn.m", 1, {8}, ch->m},
                 {"bn.v", 1, {8}, ch->v},
                 {"c2.w", 4, {8, 8, 3, 3}, ch->c2w},
                 {"c3.w", 4, {6, 8, 3, 3}, ch->c3w},
                 {"fc.w", 2, {4, 6}, ch->fw},
                 {"fc.b", 1, {4}, ch->fb}};
    memcpy(ch->ts, ts, sizeof ts);
}

static void chain_free(chain *ch) {
    free(ch->c1w), free(ch->c1b), free(ch->g), free(ch->b), free(ch->m), free(ch->v);
    free(ch->c2w), free(ch->c3w), free(ch->fw), free(ch->fb);
}

static void test_chain(void **state) {
    (void)state;
    chain ch;
    chain_init(&ch);
    enum { NB = 3, CI = 3 * 16 * 16 };
    float *x = rand_buf(NB * CI);
    ms_net *net;
    ms_tensor o;
    ms_session *s = run1(k_chain, ch.ts, 10, NB, x, &net, &o);
    /* reference by direct calls */
    static float a[NB * 8 * 256], d[NB * 8 * 64], e[NB * 8 * 64], gg[NB * 6 * 64], hh[NB * 6],
        j[NB * 4];
    ms_conv2d p1 = {3, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_NONE, 0.01f};
    ms_conv2d p2 = {8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_RELU, 0.01f};
    ms_conv2d p3 = {8, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, MS_ACT_SILU, 0.01f};
    float *ws = malloc((ms_conv2d_workspace(&p1, 16, 16) + ms_conv2d_workspace(&p2, 8, 8) +
                        ms_conv2d_workspace(&p3, 8, 8) + 1) *
                       sizeof *ws);
    ms_tensor tx = {NB, 3, 16, 16, x}, ta = {NB, 8, 16, 16, a}, td = {NB, 8, 8, 8, d},
              te = {NB, 8, 8, 8, e}, tg = {NB, 6, 8, 8, gg}, th = {NB, 6, 1, 1, hh},
              tj = {NB, 4, 1, 1, j};
    ms_conv2d_forward(&p1, &tx, ch.c1w, ch.c1b, &ta, ws);
    ms_batchnorm_forward(&ta, ch.g, ch.b, ch.m, ch.v, 1e-5f);
    ms_act_forward(MS_ACT_RELU, 0.01f, a, sizeof a / sizeof *a);
    ms_pool2d mp = {MS_POOL_MAX, 2, 2, 2, 2, 0, 0, 0, 0, false, true};
    ms_pool2d_forward(&mp, &ta, &td);
    ms_conv2d_forward(&p2, &td, ch.c2w, NULL, &te, ws);
    assert_int_equal(ms_binary_forward(MS_BINARY_ADD, &te, &td, &te, NULL), MS_OK);
    ms_conv2d_forward(&p3, &te, ch.c3w, NULL, &tg, ws);
    ms_global_pool_forward(MS_POOL_AVG, &tg, &th);
    ms_fc_forward(&th, 4, ch.fw, ch.fb, &tj);
    ms_softmax_channels(&tj);
    expect_same(&o, j, NB, 4, 1, 1);
    /* the default session takes the fast paths where they pay: within the fast-path bound
     * of 1e-4 of the largest value */
    {
        uint32_t wino = 0;
        for (uint32_t i = 0; i < ms_net_node_count(net); i++)
            wino += strcmp(ms_net_node_impl(net, i), "winograd") == 0;
        assert_null(ms_net_node_impl(net, ms_net_node_count(net)));
        print_message("chain: %u node(s) on the Winograd path\n", wino);
        ms_session *fast = NULL;
        assert_int_equal(ms_session_create(net, NB, &fast, NULL), MS_OK);
        assert_int_equal(ms_session_run(fast, x, NULL), MS_OK);
        ms_tensor of;
        assert_int_equal(ms_session_output(fast, 0, &of), MS_OK);
        double worst = 0, scale = 0;
        for (size_t i = 0; i < NB * 4; i++) {
            double diff = fabs((double)of.data[i] - (double)j[i]);
            if (diff > worst) worst = diff;
            if (fabs((double)j[i]) > scale) scale = fabs((double)j[i]);
        }
        print_message("chain: fast paths vs direct: max|diff|/max|ref| %.3g\n", worst / scale);
        assert_true(worst <= 1e-4 * scale);
        ms_session_destroy(fast);
    }
    /* liveness sharing: the arena is smaller than the sum of all values */
    size_t sum = 0;
    size_t per[] = {CI, 8 * 256, 8 * 256, 8 * 256, 8 * 64, 8 * 64, 8 * 64, 6 * 64, 6, 6, 4, 4};
    for (size_t i = 0; i < sizeof per / sizeof *per; i++) sum += per[i] * NB * sizeof(float);
    size_t arena = ms_session_arena_bytes(s);
    print_message("chain: arena %zu bytes, sum of values %zu bytes\n", arena, sum);
    assert_true(arena < sum / 2);
    assert_true(arena >= (size_t)NB * (CI + 8 * 256) * sizeof(float));
    /* outputs by name */
    ms_tensor o2;
    assert_int_equal(ms_session_output_by_name(s, "prob", &o2, NULL), MS_OK);
    assert_ptr_equal(o2.data, o.data);
    assert_int_equal(ms_session_output_by_name(s, "nope", &o2, NULL), MS_EINVAL);
    assert_int_equal(ms_session_output(s, 1, &o2), MS_EINVAL);
    ms_session_destroy(s);
    ms_net_destroy(net);
    free(x);
    free(ws);
    chain_free(&ch);
}

static void test_no_alloc_in_run(void **state) {
    (void)state;
    chain ch;
    chain_init(&ch);
    float *x = rand_buf(2 * 3 * 256);
    ms_net *net;
    ms_err err = {0};
    ms_session *s;
    assert_int_equal(make_net(k_chain, ch.ts, 10, NULL, &net, &err), MS_OK);
    assert_int_equal(ms_session_create(net, 2, &s, &err), MS_OK);
    hook_state hs = {0};
    hooks_install(&hs);
    for (int i = 0; i < 3; i++) assert_int_equal(ms_session_run(s, x, &err), MS_OK);
    ms_alloc_set_hooks(NULL);
    assert_int_equal(hs.count, 0);
    ms_session_destroy(s);
    ms_net_destroy(net);
    free(x);
    chain_free(&ch);
}

/* Allocation failures during load and session creation: MS_ENOMEM, nothing leaked. */
static void test_alloc_failures(void **state) {
    (void)state;
    chain ch;
    chain_init(&ch);
    char path[512];
    snprintf(path, sizeof path, "%s/test_net_af_%ld.msm", MS_BINARY_DIR, (long)getpid());
    ms_msm_writer *w;
    assert_int_equal(ms_msm_writer_create(&w, NULL), MS_OK);
    uint32_t gl = (uint32_t)strlen(k_chain), ml = 7;
    assert_int_equal(ms_msm_writer_add(w, "graph", MS_DTYPE_U8, 1, &gl, k_chain, NULL), MS_OK);
    assert_int_equal(ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, &ml, "a=b\nc=d", NULL), MS_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ms_msm_writer_add(w, ch.ts[i].name, MS_DTYPE_F32, ch.ts[i].ndim,
                                           ch.ts[i].dims, ch.ts[i].data, NULL),
                         MS_OK);
    assert_int_equal(ms_msm_writer_save(w, path, NULL), MS_OK);
    ms_msm_writer_destroy(w);
    for (long k = 1;; k++) {
        hook_state hs = {.fail_at = k};
        hooks_install(&hs);
        ms_net *net = NULL;
        ms_session *s = NULL;
        ms_status st = ms_net_load(path, NULL, &net, NULL);
        if (st == MS_OK) st = ms_session_create(net, 2, &s, NULL);
        bool done = st == MS_OK;
        ms_session_destroy(s);
        ms_net_destroy(net);
        ms_alloc_set_hooks(NULL);
        assert_int_equal(hs.live, 0);
        if (done) break;
        assert_int_equal(st, MS_ENOMEM);
        assert_true(k < 1000);
    }
    remove(path);
    chain_free(&ch);
}

typedef struct thr {
    const ms_net *net;
    const float *x;
    float *out;
    size_t count;
    int rc;
} thr;

static void *thr_main(void *arg) {
    thr *t = arg;
    ms_session *s = NULL;
    ms_tensor o;
    t->rc = 1;
    if (ms_session_create(t->net, 4, &s, NULL) != MS_OK) return NULL;
    for (int i = 0; i < 20; i++)
        if (ms_session_run(s, t->x, NULL) != MS_OK) goto done;
    ms_session_output(s, 0, &o);
    t->count = ms_tensor_count(&o);
    memcpy(t->out, o.data, t->count * sizeof(float));
    t->rc = 0;
done:
    ms_session_destroy(s);
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    chain ch;
    chain_init(&ch);
    float *x = rand_buf(4 * 3 * 256);
    ms_net *net;
    assert_int_equal(make_net(k_chain, ch.ts, 10, NULL, &net, NULL), MS_OK);
    float o0[16], o1[16], o2[16];
    thr serial = {net, x, o0, 0, 1};
    thr_main(&serial);
    assert_int_equal(serial.rc, 0);
    thr t1 = {net, x, o1, 0, 1}, t2 = {net, x, o2, 0, 1};
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, thr_main, &t1), 0);
    assert_int_equal(pthread_create(&b, NULL, thr_main, &t2), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    assert_int_equal(t1.rc, 0);
    assert_int_equal(t2.rc, 0);
    assert_int_equal(serial.count, 16);
    assert_memory_equal(o0, o1, sizeof o0);
    assert_memory_equal(o0, o2, sizeof o0);
    ms_net_destroy(net);
    free(x);
    chain_free(&ch);
}

static void test_accessors_meta(void **state) {
    (void)state;
    float wgt[4 * 3 * 9] = {0};
    wt ts[] = {{"c.w", 4, {4, 3, 3, 3}, wgt}};
    ms_net *net;
    ms_err err = {0};
    assert_int_equal(make_net("graph 1\ninput a 3 8 8\ninput b 4 6 6\nnode conv2d c in=a out=y "
                              "weight=c.w\nnode add s in=y,b out=z\noutput z\noutput y\n",
                              ts, 1, "name=tiny\nnoequals\nthreshold=0.5\nname=second", &net, &err),
                     MS_OK);
    assert_int_equal(ms_net_input_count(net), 2);
    assert_int_equal(ms_net_output_count(net), 2);
    assert_string_equal(ms_net_input_name(net, 1), "b");
    assert_string_equal(ms_net_output_name(net, 0), "z");
    assert_null(ms_net_output_name(net, 2));
    int32_t c, h, w;
    assert_true(ms_net_input_shape(net, 1, &c, &h, &w));
    assert_true(c == 4 && h == 6 && w == 6);
    assert_true(ms_net_output_shape(net, 1, &c, &h, &w));
    assert_true(c == 4 && h == 6 && w == 6);
    assert_false(ms_net_input_shape(net, 2, &c, &h, &w));
    assert_string_equal(ms_net_meta(net, "name"), "tiny");
    assert_string_equal(ms_net_meta(net, "threshold"), "0.5");
    assert_null(ms_net_meta(net, "noequals"));
    assert_null(ms_net_meta(net, "absent"));
    assert_int_equal(ms_net_node_count(net), 2);
    assert_string_equal(ms_net_node_name(net, 0), "c");
    assert_string_equal(ms_net_node_op(net, 1), "add");
    assert_null(ms_net_node_name(net, 2));
    assert_null(ms_net_node_op(net, 2));
    /* 2 * (in_c * kh * kw) * out_c * out_h * out_w = 2 * 27 * 4 * 6 * 6 */
    assert_int_equal(ms_net_node_flops(net, 0), 2 * 27 * 4 * 36);
    assert_int_equal(ms_net_node_flops(net, 1), 0);
    assert_int_equal(ms_net_node_flops(net, 2), 0);
    ms_session *s;
    assert_int_equal(ms_session_create(net, 1, &s, &err), MS_OK);
    float xa[3 * 64] = {0}, xb[4 * 36];
    for (int i = 0; i < 4 * 36; i++) xb[i] = (float)i;
    assert_int_equal(ms_session_run(s, xa, &err), MS_EINVAL); /* two inputs */
    const float *ins[2] = {xa, xb};
    double node_s[2] = {-1.0, -1.0};
    ms_session_set_node_timer(s, node_s);
    assert_int_equal(ms_session_run_inputs(s, ins, &err), MS_OK);
    /* each node's time was added: the conv takes some time, nothing takes a second */
    assert_true(node_s[0] > -1.0 && node_s[0] < 0.0);
    assert_true(node_s[1] >= -1.0 && node_s[1] < 0.0);
    ms_session_set_node_timer(s, NULL);
    double before = node_s[0];
    assert_int_equal(ms_session_run_inputs(s, ins, &err), MS_OK);
    assert_true(node_s[0] == before); /* timer off: untouched */
    ms_tensor o;
    assert_int_equal(ms_session_output(s, 0, &o), MS_OK);
    assert_memory_equal(o.data, xb, sizeof xb);
    assert_int_equal(ms_session_create(net, 0, &(ms_session *){NULL}, &err), MS_EINVAL);
    ms_session_destroy(s);
    ms_net_destroy(net);
    /* no meta at all */
    assert_int_equal(make_net("graph 1\ninput x 1 1 1\noutput x\n", NULL, 0, NULL, &net, &err),
                     MS_OK);
    assert_null(ms_net_meta(net, "name"));
    ms_net_destroy(net);
}

/* ---- validation: each rule fails naming the line and the token ---- */

static void test_validation(void **state) {
    (void)state;
    float wgt[4 * 3 * 9] = {0}, b4[4] = {0}, b3[3] = {0}, v3[3] = {1, 1, 1}, z3[3] = {0, 0, -1};
    wt ts[] = {{"w", 4, {4, 3, 3, 3}, wgt},
               {"b", 1, {4}, b4},
               {"b3", 1, {3}, b3},
               {"v3", 1, {3}, v3},
               {"z3", 1, {3}, z3}};
    /* A valid prefix, then one bad line; every case names its line and token. */
#define HDR "graph 1\ninput x 3 8 8\n"
#define USE "node conv2d c in=x out=y weight=w bias=b\n"
    static const struct {
        const char *graph;
        ms_status st;
        const char *want;
    } cases[] = {
        {"graph 2\n", MS_EUNSUPPORTED, "graph line 1: graph format version '2'"},
        {"graph 0\n", MS_EFORMAT, "graph line 1: graph format version '0'"},
        {"graph one\n", MS_EFORMAT, "graph line 1: expected 'graph 1', got 'graph one'"},
        {"# c\ninput x 3 8 8\n", MS_EFORMAT, "graph line 2: the first statement must be"},
        {"graph 1\ngraph 1\n", MS_EFORMAT, "graph line 2: 'graph' statement repeated"},
        {"graph 1\ninput x  3 8 8\n", MS_EFORMAT, "graph line 2: empty token at column 9"},
        {"graph 1\ninput x 3 8 8 \n", MS_EFORMAT, "graph line 2: empty token at column 15"},
        {" graph 1\n", MS_EFORMAT, "graph line 1: empty token at column 1"},
        {"graph 1\r\n", MS_EFORMAT, "graph line 1: expected 'graph 1'"},
        {"graph 1\nlayer x 3\n", MS_EFORMAT, "graph line 2: unknown statement 'layer'"},
        {"graph 1\ninput x 0 8 8\n", MS_EFORMAT, "graph line 2: input x: bad dimension '0'"},
        {"graph 1\ninput x 3 8\n", MS_EFORMAT, "graph line 2: expected 'input NAME C H W'"},
        {"graph 1\ninput x 3 +8 8\n", MS_EFORMAT, "graph line 2: input x: bad dimension '+8'"},
        {"graph 1\ninput x$ 3 8 8\n", MS_EFORMAT, "graph line 2: input: bad value name 'x$'"},
        {HDR "input x 3 8 8\n", MS_EFORMAT,
         "graph line 3: input: value 'x' is already defined on line 2"},
        {HDR "node act a in=q out=y act=relu\n", MS_EFORMAT,
         "graph line 3: in=: value 'q' is used before it is defined"},
        {HDR "node act a in=y out=y act=relu\n", MS_EFORMAT,
         "graph line 3: in=: value 'y' is used before it is defined"},
        {HDR "node act a in=x out=x act=relu\n", MS_EFORMAT,
         "graph line 3: out=: value 'x' is already defined on line 2"},
        {HDR "node conv3d c in=x out=y\n", MS_EFORMAT, "graph line 3: unknown operator 'conv3d'"},
        {HDR "node act a in=x out=y act=relu foo=1\n", MS_EFORMAT,
         "graph line 3: unknown key 'foo' for act"},
        {HDR "node act a in=x out=y act=relu eps=1\n", MS_EFORMAT,
         "graph line 3: unknown key 'eps' for act"},
        {HDR "node act a in=x out=y act=swish\n", MS_EFORMAT,
         "graph line 3: act=swish: unknown activation"},
        {HDR "node act a in=x out=y act=relu act=relu\n", MS_EFORMAT,
         "graph line 3: key 'act' appears twice"},
        {HDR "node act a in=x out=y relu\n", MS_EFORMAT,
         "graph line 3: expected key=value, got 'relu'"},
        {HDR "node act a in=x out=y act=\n", MS_EFORMAT,
         "graph line 3: key 'act' has an empty value"},
        {HDR "node act a in=x out=y\n", MS_EFORMAT, "graph line 3: act needs act="},
        {HDR "node act a in=x out=y act=leaky_relu alpha=nan\n", MS_EFORMAT,
         "graph line 3: alpha=nan: not a finite decimal float"},
        {HDR "node act a in=x out=y act=leaky_relu alpha=1e39\n", MS_EFORMAT,
         "graph line 3: alpha=1e39"},
        {HDR "node act a in=x out=y act=leaky_relu alpha=0x1p3\n", MS_EFORMAT,
         "graph line 3: alpha=0x1p3"},
        {HDR "node act a out=y in=x act=relu\n", MS_EFORMAT,
         "graph line 3: expected in=A[,B...] as the fourth token, got 'out=y'"},
        {HDR "node act a in=x act=relu out=y\n", MS_EFORMAT,
         "graph line 3: expected out=Y as the fifth token, got 'act=relu'"},
        {HDR "node act a in=x\n", MS_EFORMAT, "graph line 3: expected 'node OP NAME"},
        {HDR "node act a in=x, out=y act=relu\n", MS_EFORMAT,
         "graph line 3: in=: bad value name ''"},
        {HDR "node act a in=x,x out=y act=relu\n", MS_EFORMAT,
         "graph line 3: act takes 1 input, got 2"},
        {HDR "node concat a in=x out=y\n", MS_EFORMAT,
         "graph line 3: concat takes 2 or more inputs, got 1"},
        {HDR "node add a in=x out=y\n", MS_EFORMAT, "graph line 3: add takes 2 inputs, got 1"},
        {HDR "node act a in=x out=y act=relu\nnode act a in=y out=z act=relu\n", MS_EFORMAT,
         "graph line 4: node name 'a' is already used on line 3"},
        {HDR "node conv2d c in=x out=y\n", MS_EFORMAT, "graph line 3: conv2d needs weight="},
        {HDR "node conv2d c in=x out=y weight=nope\n", MS_EFORMAT,
         "graph line 3: weight=nope: no tensor named 'nope'"},
        {HDR "node conv2d c in=x out=y weight=b\n", MS_EFORMAT,
         "graph line 3: weight=b: tensor 'b' has shape [4], the node needs [?,3,?,?]"},
        {HDR "node conv2d c in=x out=y weight=w bias=b3\n", MS_EFORMAT,
         "graph line 3: bias=b3: tensor 'b3' has shape [3], the node needs [4]"},
        {HDR "node conv2d c in=x out=y weight=w groups=2\n", MS_EFORMAT,
         "graph line 3: groups=2: does not divide"},
        {HDR "node conv2d c in=x out=y weight=w stride=0,1\n", MS_EFORMAT,
         "graph line 3: stride=0,1: expected h,w"},
        {HDR "node conv2d c in=x out=y weight=w pad=1,1,1\n", MS_EFORMAT,
         "graph line 3: pad=1,1,1: expected t,l,b,r"},
        {HDR "node conv2d c in=x out=y weight=w dil=9,9\n", MS_EFORMAT,
         "graph line 3: conv2d on a 3x8x8 input"},
        {HDR "node conv2d c in=x out=y weight=graph\n", MS_EFORMAT,
         "graph line 3: weight=graph: tensor 'graph' is uint8"},
        {HDR "node batchnorm n in=x out=y weight=b3 bias=b3 mean=b3\n", MS_EFORMAT,
         "graph line 3: batchnorm needs var="},
        {HDR "node batchnorm n in=x out=y weight=b3 bias=b3 mean=b3 var=z3\n", MS_EFORMAT,
         "graph line 3: var=z3: channel 2 has var + eps"},
        {HDR "node batchnorm n in=x out=y weight=b3 bias=b3 mean=b3 var=v3 eps=-1\n", MS_EFORMAT,
         "graph line 3: eps=-1"},
        {HDR "node maxpool p in=x out=y\n", MS_EFORMAT, "graph line 3: maxpool needs k="},
        {HDR "node maxpool p in=x out=y k=9,9\n", MS_EFORMAT,
         "graph line 3: maxpool on a 3x8x8 input"},
        {HDR "node maxpool p in=x out=y k=2,2 include_pad=1\n", MS_EFORMAT,
         "graph line 3: unknown key 'include_pad' for maxpool"},
        {HDR "node avgpool p in=x out=y k=2,2 ceil=2\n", MS_EFORMAT, "graph line 3: ceil=2"},
        {HDR "node upsample u in=x out=y scale=2,2\n", MS_EFORMAT,
         "graph line 3: upsample needs mode="},
        {HDR "node upsample u in=x out=y mode=cubic scale=2,2\n", MS_EFORMAT,
         "graph line 3: mode=cubic"},
        {HDR "node upsample u in=x out=y mode=nearest\n", MS_EFORMAT,
         "graph line 3: upsample needs exactly one of size= and scale="},
        {HDR "node upsample u in=x out=y mode=nearest size=4,4 scale=2,2\n", MS_EFORMAT,
         "graph line 3: upsample needs exactly one of"},
        {HDR "node upsample u in=x out=y mode=nearest scale=1.5,2\n", MS_EFORMAT,
         "graph line 3: scale=1.5,2"},
        {HDR "node upsample u in=x out=y mode=nearest scale=2,2 align=1\n", MS_EFORMAT,
         "graph line 3: align=1: align=1 needs mode=bilinear"},
        {HDR "node maxpool p in=x out=p k=2,2\nnode concat c in=x,p out=y\n", MS_EFORMAT,
         "graph line 4: concat: input 'p' is 3x4x4"},
        {HDR "node maxpool p in=x out=p k=2,2\nnode add c in=x,p out=y\n", MS_EFORMAT,
         "graph line 4: add: input 'p' is 3x4x4 and does not broadcast"},
        {HDR "node fc f in=x out=y weight=w\n", MS_EFORMAT,
         "graph line 3: weight=w: tensor 'w' has shape [4,3,3,3], the node needs [?,192]"},
        {HDR "node softmax s in=x out=y\noutput x\n", MS_EFORMAT,
         "graph line 3: value 'y' is neither used nor an output"},
        {HDR "input z 3 8 8\nnode softmax s in=x out=y\noutput y\n", MS_EFORMAT,
         "graph line 3: value 'z' is neither used nor an output"},
        {HDR "output q\n", MS_EFORMAT, "graph line 3: output: value 'q' is not defined before"},
        {HDR "output x\noutput x\n", MS_EFORMAT, "graph line 4: output: 'x' is already an output"},
        {HDR "output x extra\n", MS_EFORMAT, "graph line 3: expected 'output NAME'"},
        {HDR "node upsample u in=x out=y mode=nearest scale=100000,100000\noutput y\n",
         MS_EUNSUPPORTED, "graph line 3: out=y: shape [3,800000,800000]"},
        {"graph 1\n", MS_EFORMAT, "graph: no input statement"},
        {HDR, MS_EFORMAT, "graph: no output statement"},
        {"", MS_EFORMAT, "graph line 1: empty token at column 1"},
        {"\n\n# only comments\n", MS_EFORMAT, "graph: the text is empty"},
        /* every float32 tensor must be used (the graph above uses none) */
        {HDR "output x\n", MS_EFORMAT, "float32 tensor 'w' is not used by any graph node"},
        {HDR USE "output y\n", MS_EFORMAT, "float32 tensor 'b3' is not used by any graph node"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ms_net *net = NULL;
        ms_err err = {0};
        ms_status st = make_net(cases[i].graph, ts, 5, NULL, &net, &err);
        if (st == MS_OK || strstr(err.msg, cases[i].want) == NULL || st != cases[i].st)
            fail_msg("case %zu (%s): status %s, message '%s', want '%s'", i, cases[i].graph,
                     ms_status_name(st), err.msg, cases[i].want);
        if (strstr(cases[i].want, "graph line") != NULL && strncmp(err.msg, MS_BINARY_DIR, 8) != 0)
            fail_msg("case %zu: message does not name the model: %s", i, err.msg);
        assert_null(net);
    }
    /* model-level errors: no graph tensor, a float32 graph */
    ms_net *net = NULL;
    ms_err err = {0};
    assert_int_equal(make_net(NULL, ts, 1, NULL, &net, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "no 'graph' tensor"));
    wt fg[] = {{"graph", 1, {4}, b4}};
    assert_int_equal(make_net(NULL, fg, 1, NULL, &net, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "tensor 'graph' is float32"));
    /* a graph with a NUL byte */
    {
        char path[512];
        snprintf(path, sizeof path, "%s/test_net_nul_%ld.msm", MS_BINARY_DIR, (long)getpid());
        ms_msm_writer *w;
        assert_int_equal(ms_msm_writer_create(&w, NULL), MS_OK);
        uint32_t gl = 9;
        assert_int_equal(ms_msm_writer_add(w, "graph", MS_DTYPE_U8, 1, &gl, "graph 1\n\0", NULL),
                         MS_OK);
        assert_int_equal(ms_msm_writer_save(w, path, NULL), MS_OK);
        ms_msm_writer_destroy(w);
        assert_int_equal(ms_net_load(path, NULL, &net, &err), MS_EFORMAT);
        assert_non_null(strstr(err.msg, "NUL byte"));
        remove(path);
    }
    /* a missing file */
    assert_int_equal(ms_net_load("/nonexistent/x.msm", NULL, &net, &err), MS_EIO);
#undef HDR
#undef USE
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_batchnorm_act_softmax),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_upsample_concat),
        cmocka_unit_test(test_binary_fc_flatten),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_no_alloc_in_run),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_accessors_meta),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
