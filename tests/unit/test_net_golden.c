/* Golden test of whole networks: every model of tests/golden/net (written from PyTorch by
 * scripts/make-net-goldens.py) is loaded with ms_net_load, run on its input.npy and compared
 * with torch's output.npy: max |ours - ref| / max |ref| <= 1e-5 on the direct path and <= 1e-4
 * with the fast paths a default session takes. Prints the error and the
 * session's arena size per model. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "medscreen/net.h"
#include "medscreen/npy.h"

/* the bounds: direct arithmetic and fast paths (Winograd) */
#define TOL_DIRECT 1e-5
#define TOL_FAST 1e-4

/* Runs net on x in a session with the given options; returns max|ours - ref| / max|ref|. */
static double run_rel_error(const ms_net *net, const ms_npy *x, const ms_npy *ref, bool direct,
                            const char *name) {
    ms_err err = {0};
    ms_session *s = NULL;
    const ms_session_options opt = {(int32_t)x->shape[0], 1, direct};
    if (ms_session_create_opts(net, &opt, &s, &err) != MS_OK) fail_msg("%s", err.msg);
    if (ms_session_run(s, x->data, &err) != MS_OK) fail_msg("%s", err.msg);
    ms_tensor o;
    assert_int_equal(ms_session_output(s, 0, &o), MS_OK);
    assert_int_equal(ref->ndim, 4);
    assert_true(ref->shape[0] == o.n && ref->shape[1] == o.c && ref->shape[2] == o.h &&
                ref->shape[3] == o.w);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < ref->count; i++) {
        double d = fabs((double)o.data[i] - (double)ref->data[i]);
        if (d > worst) worst = d;
        if (fabs((double)ref->data[i]) > scale) scale = fabs((double)ref->data[i]);
    }
    double rel = worst / (scale > 1e-6 ? scale : 1e-6);
    print_message("%-9s %-6s nodes %2u  output [%d][%d][%d][%d]  max|diff|/max|ref| %.3g  arena "
                  "%zu bytes  workspace %zu bytes\n",
                  name, direct ? "direct" : "fast", ms_net_node_count(net), o.n, o.c, o.h, o.w,
                  rel, ms_session_arena_bytes(s), ms_session_workspace_bytes(s));
    ms_session_destroy(s);
    return rel;
}

static void check_model(const char *name) {
    char path[1024];
    ms_err err = {0};
    ms_net *net = NULL;
    ms_npy *x = NULL, *ref = NULL;
    ms_limits lim = ms_limits_default();
    snprintf(path, sizeof path, "%s/tests/golden/net/%s/model.msm", MS_SOURCE_DIR, name);
    if (ms_net_load(path, NULL, &net, &err) != MS_OK) fail_msg("%s", err.msg);
    snprintf(path, sizeof path, "%s/tests/golden/net/%s/input.npy", MS_SOURCE_DIR, name);
    if (ms_npy_load(path, &lim, &x, &err) != MS_OK) fail_msg("%s", err.msg);
    snprintf(path, sizeof path, "%s/tests/golden/net/%s/output.npy", MS_SOURCE_DIR, name);
    if (ms_npy_load(path, &lim, &ref, &err) != MS_OK) fail_msg("%s", err.msg);
    assert_int_equal(x->ndim, 4);
    int32_t c, h, w;
    assert_true(ms_net_input_shape(net, 0, &c, &h, &w));
    assert_true(x->shape[1] == c && x->shape[2] == h && x->shape[3] == w);
    uint32_t wino = 0;
    for (uint32_t i = 0; i < ms_net_node_count(net); i++)
        wino += strcmp(ms_net_node_impl(net, i), "winograd") == 0;
    print_message("%-9s %u convolution(s) on the Winograd path\n", name, wino);
    assert_true(run_rel_error(net, x, ref, true, name) <= TOL_DIRECT);
    assert_true(run_rel_error(net, x, ref, false, name) <= TOL_FAST);
    ms_npy_destroy(x);
    ms_npy_destroy(ref);
    ms_net_destroy(net);
}

static void test_screener(void **state) {
    (void)state;
    check_model("screener");
}
static void test_resnet(void **state) {
    (void)state;
    check_model("resnet");
}
static void test_unet(void **state) {
    (void)state;
    check_model("unet");
}
static void test_densenet(void **state) {
    (void)state;
    check_model("densenet");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_screener),
        cmocka_unit_test(test_resnet),
        cmocka_unit_test(test_unet),
        cmocka_unit_test(test_densenet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
