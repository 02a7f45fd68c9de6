/* ONNX import: the PyTorch exports of tests/golden/onnx (scripts/export-onnx-models.py)
 * converted in memory and checked structurally (operators, fusions, shapes, folded weights
 * against torch's fuse_conv_bn_eval), written to .msm and read back; unsupported operators,
 * every truncation of a model, corrupted protobuf and random damage fail cleanly. */
#include <math.h>
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
#include "medscreen/model.h"
#include "medscreen/net.h"
#include "medscreen/npy.h"
#include "medscreen/onnx.h"

#define GOLDEN MS_SOURCE_DIR "/tests/golden/onnx/"

static uint8_t *read_file(const char *path, size_t *size) {
    uint8_t *data = NULL;
    ms_err err = {0};
    ms_status st = ms_file_read_all(path, 1u << 26, &data, size, &err);
    if (st != MS_OK) fail_msg("%s: %s", path, err.msg);
    return data;
}

static ms_onnx_model *import_file(const char *path) {
    size_t size;
    uint8_t *data = read_file(path, &size);
    ms_limits lim = ms_limits_default();
    ms_onnx_model *m = NULL;
    ms_err err = {0};
    ms_status st = ms_onnx_import(data, size, path, &lim, &m, &err);
    ms_free(data);
    if (st != MS_OK) fail_msg("import %s: %s", path, err.msg);
    return m;
}

/* Lines of the graph text starting with "node OP ". */
static int count_nodes(const ms_onnx_model *m, const char *op) {
    char pat[64];
    snprintf(pat, sizeof pat, "\nnode %s ", op);
    int n = 0;
    for (const char *p = m->graph; (p = strstr(p, pat)) != NULL; p++) n++;
    return n;
}

static bool has(const ms_onnx_model *m, const char *s) { return strstr(m->graph, s) != NULL; }

static const ms_onnx_tensor *find_tensor(const ms_onnx_model *m, const char *name) {
    for (uint32_t i = 0; i < m->tensor_count; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* The value of key in the first "node OP" line. */
static void first_key(const ms_onnx_model *m, const char *op, const char *key, char *out,
                      size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\nnode %s ", op);
    const char *line = strstr(m->graph, pat);
    assert_non_null(line);
    const char *end = strchr(line + 1, '\n');
    char k[32];
    snprintf(k, sizeof k, " %s=", key);
    const char *v = strstr(line, k);
    assert_true(v != NULL && v < end);
    v += strlen(k);
    size_t n = strcspn(v, " \n");
    assert_true(n < cap);
    memcpy(out, v, n);
    out[n] = '\0';
}

static void check_close(const ms_onnx_tensor *t, const char *npy_path) {
    ms_npy *ref = NULL;
    ms_limits lim = ms_limits_default();
    ms_err err = {0};
    assert_int_equal(ms_npy_load(npy_path, &lim, &ref, &err), MS_OK);
    assert_int_equal(ref->count, t->count);
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < t->count; i++) {
        maxref = fmax(maxref, fabs(ref->data[i]));
        maxdiff = fmax(maxdiff, fabs((double)ref->data[i] - t->data[i]));
    }
    print_message("  %s vs %s: max |diff| %.3g (max |ref| %.3g)\n", t->name, npy_path, maxdiff,
                  maxref);
    assert_true(maxdiff <= 1e-6 * fmax(1.0, maxref));
    ms_npy_destroy(ref);
}

/* Runs the converted model (written to path) with the runtime on dir/input.npy and compares
 * with PyTorch's dir/output.npy: max |ours - ref| / max |ref| <= 1e-5. */
static void run_and_compare(const char *path, const char *dir) {
    ms_limits lim = ms_limits_default();
    ms_err err = {0};
    ms_net *net = NULL;
    ms_session *s = NULL;
    ms_npy *x = NULL, *ref = NULL;
    char p[512];
    if (ms_net_load(path, &lim, &net, &err) != MS_OK) fail_msg("%s: %s", dir, err.msg);
    snprintf(p, sizeof p, GOLDEN "%s/input.npy", dir);
    assert_int_equal(ms_npy_load(p, &lim, &x, &err), MS_OK);
    snprintf(p, sizeof p, GOLDEN "%s/output.npy", dir);
    assert_int_equal(ms_npy_load(p, &lim, &ref, &err), MS_OK);
    if (ms_session_create(net, 1, &s, &err) != MS_OK) fail_msg("%s: %s", dir, err.msg);
    if (ms_session_run(s, x->data, &err) != MS_OK) fail_msg("%s: %s", dir, err.msg);
    ms_tensor y;
    assert_int_equal(ms_session_output(s, 0, &y), MS_OK);
    assert_int_equal(ms_tensor_count(&y), ref->count);
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < ref->count; i++) {
        maxref = fmax(maxref, fabs(ref->data[i]));
        maxdiff = fmax(maxdiff, fabs((double)ref->data[i] - y.data[i]));
    }
    print_message("  %s: runtime vs torch: max |diff| / max |ref| = %.3g\n", dir, maxdiff / maxref);
    assert_true(maxdiff <= 1e-5 * maxref);
    ms_session_destroy(s);
    ms_net_destroy(net);
    ms_npy_destroy(x);
    ms_npy_destroy(ref);
}

/* Writes the model to a .msm and reads it back: the container accepts every tensor; the
 * runtime loads it and matches PyTorch. */
static void round_trip(const ms_onnx_model *m, const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/test_onnx_%d.msm", MS_BINARY_DIR, (int)getpid());
    ms_msm_writer *w = NULL;
    ms_err err = {0};
    assert_int_equal(ms_msm_writer_create(&w, &err), MS_OK);
    ms_status st = ms_onnx_add_to_writer(m, "name=test\n\nlicence=MIT", w, &err);
    if (st != MS_OK) fail_msg("%s", err.msg);
    assert_int_equal(ms_msm_writer_save(w, path, &err), MS_OK);
    ms_msm_writer_destroy(w);
    ms_msm *msm = NULL;
    ms_limits lim = ms_limits_default();
    st = ms_msm_load(path, &lim, &msm, &err);
    if (st != MS_OK) fail_msg("%s", err.msg);
    assert_int_equal(ms_msm_tensor_count(msm), m->tensor_count + 2);
    const ms_msm_tensor *meta = ms_msm_find(msm, "meta"), *graph = ms_msm_find(msm, "graph");
    assert_non_null(meta);
    assert_non_null(graph);
    assert_int_equal(graph->count, m->graph_len);
    char text[256] = {0};
    memcpy(text, meta->data, meta->count < 255 ? meta->count : 255);
    assert_non_null(strstr(text, "source=onnx\nonnx_opset="));
    assert_non_null(strstr(text, "producer=pytorch 1.13"));
    assert_non_null(strstr(text, "name=test\nlicence=MIT\n"));
    ms_msm_destroy(msm);
    run_and_compare(path, dir);
    unlink(path);

    /* meta lines that are not key=value, or that set the importer's keys, are refused */
    static const char *const bad[] = {"novalue", "=x", "source=me", "a=b\nproducer=x", "a=\tb"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ms_msm_writer_create(&w, &err), MS_OK);
        assert_int_equal(ms_onnx_add_to_writer(m, bad[i], w, &err), MS_EINVAL);
        ms_msm_writer_destroy(w);
    }
}

static void test_fcn(void **state) {
    (void)state;
    ms_onnx_model *m = import_file(GOLDEN "fcn/model.onnx");
    print_message("%s", m->graph);
    assert_int_equal(m->opset, 13);
    assert_true(has(m, "\ninput input 1 48 40\n"));
    /* both BatchNormalization nodes folded; ReLU and SiLU fused; LeakyReLU fused with alpha */
    assert_int_equal(count_nodes(m, "batchnorm"), 0);
    assert_int_equal(count_nodes(m, "act"), 0);
    assert_int_equal(count_nodes(m, "conv2d"), 4);
    assert_int_equal(count_nodes(m, "maxpool"), 1);
    assert_int_equal(count_nodes(m, "softmax"), 1);
    assert_true(has(m, " act=relu"));
    assert_true(has(m, " act=silu"));
    assert_true(has(m, " act=leaky_relu alpha=0.1"));
    assert_true(has(m, " dil=2,2 groups=16"));
    assert_true(has(m, "\noutput output\n"));
    char wname[256], bname[256];
    first_key(m, "conv2d", "weight", wname, sizeof wname);
    first_key(m, "conv2d", "bias", bname, sizeof bname);
    check_close(find_tensor(m, wname), GOLDEN "fcn/fold_weight.npy");
    check_close(find_tensor(m, bname), GOLDEN "fcn/fold_bias.npy");
    round_trip(m, "fcn");
    ms_onnx_destroy(m);
}

static void test_resnet(void **state) {
    (void)state;
    ms_onnx_model *m = import_file(GOLDEN "resnet/model.onnx");
    assert_int_equal(m->opset, 11);
    assert_int_equal(count_nodes(m, "batchnorm"), 0);
    /* stem + 8 blocks x 2 + 3 downsampling 1x1 convolutions */
    assert_int_equal(count_nodes(m, "conv2d"), 1 + 16 + 3);
    assert_int_equal(count_nodes(m, "add"), 8);
    assert_int_equal(count_nodes(m, "act"), 8); /* ReLU after each residual add */
    assert_int_equal(count_nodes(m, "globalavgpool"), 1);
    assert_int_equal(count_nodes(m, "flatten"), 1);
    assert_int_equal(count_nodes(m, "fc"), 1);
    assert_true(has(m, "k=3,3 stride=2,2 pad=1,1,1,1 ceil=0"));
    char wname[256], bname[256];
    first_key(m, "conv2d", "weight", wname, sizeof wname);
    first_key(m, "conv2d", "bias", bname, sizeof bname); /* created by the fold */
    check_close(find_tensor(m, wname), GOLDEN "resnet/fold_weight.npy");
    check_close(find_tensor(m, bname), GOLDEN "resnet/fold_bias.npy");
    first_key(m, "fc", "weight", wname, sizeof wname);
    const ms_onnx_tensor *fc = find_tensor(m, wname);
    assert_non_null(fc);
    assert_int_equal(fc->ndim, 2);
    assert_int_equal(fc->dims[0], 3);
    assert_int_equal(fc->dims[1], 32);
    round_trip(m, "resnet");
    ms_onnx_destroy(m);
}

static void test_densenet(void **state) {
    (void)state;
    ms_onnx_model *m = import_file(GOLDEN "densenet/model.onnx");
    assert_int_equal(m->opset, 17);
    /* pre-activation BNs (after the stem, a concat or the input) stay; torch folded the rest */
    assert_int_equal(count_nodes(m, "batchnorm"), 6);
    assert_int_equal(count_nodes(m, "concat"), 4);
    assert_int_equal(count_nodes(m, "avgpool"), 1);
    /* Pad(0) + AveragePool becomes one pool */
    assert_true(has(m, "k=2,2 stride=2,2 pad=0,0,0,0 ceil=0 include_pad="));
    assert_true(has(m, " eps=9.99999975e-06"));
    assert_int_equal(count_nodes(m, "fc"), 1);
    round_trip(m, "densenet");
    ms_onnx_destroy(m);
}

static void test_unet(void **state) {
    (void)state;
    ms_onnx_model *m = import_file(GOLDEN "unet/model.onnx");
    assert_int_equal(m->opset, 16);
    assert_true(has(m, " act=gelu"));
    assert_true(has(m, " act=silu"));
    assert_true(has(m, " act=leaky_relu alpha=0.2"));
    assert_true(has(m, " act=tanh"));
    assert_true(has(m, "mode=bilinear align=0 scale=2,2"));
    assert_true(has(m, "mode=nearest align=0 scale=2,2"));
    assert_int_equal(count_nodes(m, "act"), 0); /* every activation fused, sigmoid head too */
    assert_int_equal(count_nodes(m, "concat"), 2);
    assert_int_equal(count_nodes(m, "maxpool"), 2);
    assert_int_equal(count_nodes(m, "conv2d"), 6);
    round_trip(m, "unet");
    ms_onnx_destroy(m);
}

static ms_status try_import(const uint8_t *data, size_t size, ms_err *err) {
    ms_limits lim = ms_limits_default();
    ms_onnx_model *m = NULL;
    ms_status st = ms_onnx_import(data, size, "t.onnx", &lim, &m, err);
    if (st == MS_OK) {
        assert_non_null(m);
        ms_onnx_destroy(m);
    } else {
        assert_null(m);
        assert_true(err->msg[0] != '\0');
    }
    return st;
}

static void test_unsupported(void **state) {
    (void)state;
    size_t size;
    uint8_t *data = read_file(GOLDEN "fcn/unsupported.onnx", &size);
    ms_err err = {0};
    assert_int_equal(try_import(data, size, &err), MS_EUNSUPPORTED);
    print_message("  %s\n", err.msg);
    assert_non_null(strstr(err.msg, "unsupported operator 'Abs'"));
    assert_non_null(strstr(err.msg, "node '/Abs'"));
    ms_free(data);

    /* not ONNX at all */
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
    assert_int_equal(try_import(png, sizeof png, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "not an ONNX model"));
    assert_int_equal(try_import(png, 0, &err), MS_EFORMAT);

    /* the file size limit comes first */
    data = read_file(GOLDEN "fcn/model.onnx", &size);
    ms_limits lim = ms_limits_default();
    lim.max_model_bytes = size - 1;
    ms_onnx_model *m = NULL;
    assert_int_equal(ms_onnx_import(data, size, "t", &lim, &m, &err), MS_ELIMIT);
    ms_free(data);
}

/* Every prefix of a model fails with a message, never a crash. */
static void test_truncations(void **state) {
    (void)state;
    size_t size;
    uint8_t *data = read_file(GOLDEN "fcn/model.onnx", &size);
    for (size_t n = 0; n < size; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        assert_non_null(copy);
        memcpy(copy, data, n);
        ms_err err = {0};
        ms_status st = try_import(copy, n, &err);
        if (st == MS_OK) fail_msg("prefix of %zu bytes imported", n);
        free(copy);
    }
    ms_free(data);
}

/* Hand-made protobuf damage: lengths past the end, bad varints, groups, deep nesting. */
static void test_corrupt(void **state) {
    (void)state;
    ms_err err = {0};
    /* ir_version=7, graph with a length past the end */
    static const uint8_t past[] = {0x08, 0x07, 0x3a, 0x7f, 0x0a, 0x00};
    assert_int_equal(try_import(past, sizeof past, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "protobuf"));
    /* an 11-byte varint */
    static const uint8_t longv[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(try_import(longv, sizeof longv, &err), MS_EFORMAT);
    /* a start-group wire type */
    static const uint8_t group[] = {0x08, 0x07, 0x0b};
    assert_int_equal(try_import(group, sizeof group, &err), MS_EFORMAT);
    /* field number 0 */
    static const uint8_t zero[] = {0x00, 0x01};
    assert_int_equal(try_import(zero, sizeof zero, &err), MS_EFORMAT);
    /* a length of 2^63 */
    static const uint8_t huge[] = {0x08, 0x07, 0x3a, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    assert_int_equal(try_import(huge, sizeof huge, &err), MS_EFORMAT);
    /* valid protobuf, no graph */
    static const uint8_t nograph[] = {0x08, 0x07, 0x12, 0x01, 'x'};
    assert_int_equal(try_import(nograph, sizeof nograph, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "no graph"));

    /* random byte damage to a real model: anything may happen except a crash */
    size_t size;
    uint8_t *data = read_file(GOLDEN "unet/model.onnx", &size);
    uint8_t *copy = malloc(size);
    assert_non_null(copy);
    uint32_t rng = 12345;
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, data, size);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % size;
            rng = rng * 1664525u + 1013904223u;
            copy[at] = (uint8_t)(rng >> 24);
        }
        if (try_import(copy, size, &err) == MS_OK)
            ok++;
        else
            failed++;
    }
    print_message("  random damage: %d imported, %d refused\n", ok, failed);
    free(copy);
    ms_free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fcn),         cmocka_unit_test(test_resnet),
        cmocka_unit_test(test_densenet),    cmocka_unit_test(test_unet),
        cmocka_unit_test(test_unsupported), cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_corrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
