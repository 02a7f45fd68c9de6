/* .msm container (models/FORMAT.md): round trip, and every validation rule on files damaged
 * on purpose. Damage that the CRC would catch is re-sealed with a correct CRC so that the
 * structural check itself is exercised. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "medscreen/model.h"

static char g_path[256];

static void write_sample(void) {
    ms_msm_writer *w = NULL;
    ms_err err = {0};
    assert_int_equal(ms_msm_writer_create(&w, &err), MS_OK);
    float conv[2 * 1 * 3 * 3], bias[2] = {0.5f, -0.25f}, scalar = 3.0f;
    for (int i = 0; i < 18; i++) conv[i] = (float)i * 0.1f - 0.7f;
    uint32_t cd[4] = {2, 1, 3, 3}, bd[1] = {2};
    const char *meta = "name=test\nversion=1\n";
    uint32_t md[1] = {(uint32_t)strlen(meta)};
    assert_int_equal(ms_msm_writer_add(w, "c1.weight", MS_DTYPE_F32, 4, cd, conv, &err), MS_OK);
    assert_int_equal(ms_msm_writer_add(w, "c1.bias", MS_DTYPE_F32, 1, bd, bias, &err), MS_OK);
    assert_int_equal(ms_msm_writer_add(w, "scale", MS_DTYPE_F32, 0, NULL, &scalar, &err), MS_OK);
    assert_int_equal(ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, md, meta, &err), MS_OK);
    /* the writer refuses what a reader would */
    assert_int_equal(ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, md, meta, &err), MS_EINVAL);
    assert_int_equal(ms_msm_writer_add(w, "bad name", MS_DTYPE_U8, 1, md, meta, &err), MS_EINVAL);
    float nan = NAN;
    assert_int_equal(ms_msm_writer_add(w, "nan", MS_DTYPE_F32, 0, NULL, &nan, &err), MS_EINVAL);
    assert_int_equal(ms_msm_writer_save(w, g_path, &err), MS_OK);
    ms_msm_writer_destroy(w);
}

static uint8_t *read_file(size_t *n) {
    FILE *f = fopen(g_path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void reseal(uint8_t *b, size_t n) {
    uLong c = crc32(crc32(0L, Z_NULL, 0), b, (uInt)(n - 4));
    for (int i = 0; i < 4; i++) b[n - 4 + (size_t)i] = (uint8_t)(c >> (8 * i));
}

static ms_status decode(const uint8_t *b, size_t n, ms_err *err) {
    ms_msm *m = NULL;
    ms_status st = ms_msm_decode(b, n, "model.msm", NULL, &m, err);
    ms_msm_destroy(m);
    return st;
}

static void test_round_trip(void **state) {
    (void)state;
    write_sample();
    ms_msm *m = NULL;
    ms_err err = {0};
    assert_int_equal(ms_msm_load(g_path, NULL, &m, &err), MS_OK);
    assert_int_equal(ms_msm_tensor_count(m), 4);
    const ms_msm_tensor *t = ms_msm_find(m, "c1.weight");
    assert_non_null(t);
    assert_int_equal(t->ndim, 4);
    assert_int_equal(t->dims[0], 2);
    assert_int_equal(t->dims[3], 3);
    assert_int_equal(t->count, 18);
    for (int i = 0; i < 18; i++) {
        float v;
        memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
        assert_true(v == (float)i * 0.1f - 0.7f);
    }
    assert_int_equal(
        (uintptr_t)((const uint8_t *)t->data - (const uint8_t *)ms_msm_find(m, "c1.bias")->data) %
            64,
        0);
    t = ms_msm_find(m, "scale");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->count, 1);
    t = ms_msm_find(m, "meta");
    assert_int_equal(t->dtype, MS_DTYPE_U8);
    assert_memory_equal(t->data, "name=test\nversion=1\n", t->count);
    assert_null(ms_msm_find(m, "absent"));
    assert_string_equal(ms_msm_tensor_at(m, 1)->name, "c1.bias");
    ms_msm_destroy(m);
}

static void expect_bad(uint8_t *b, size_t n, bool seal, ms_status want, const char *needle) {
    if (seal) reseal(b, n);
    ms_err err = {0};
    ms_status st = decode(b, n, &err);
    if (st != want)
        fail_msg("expected %s, got %s: %s", ms_status_name(want), ms_status_name(st), err.msg);
    assert_non_null(strstr(err.msg, "model.msm"));
    if (needle && !strstr(err.msg, needle)) fail_msg("'%s' lacks '%s'", err.msg, needle);
}

static void test_every_rule(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *orig = read_file(&n), *b = malloc(n);
    assert_non_null(b);
    /* first entry starts at 32: u16 len (9) "c1.weight" dtype ndim dims[4] off nbytes */
    const size_t e0 = 32, dt = e0 + 2 + 9, dims0 = dt + 2, off0 = dims0 + 16;

#define RESET() memcpy(b, orig, n)
    RESET();
    b[0] = 'X';
    expect_bad(b, n, true, MS_EFORMAT, "magic");
    RESET();
    b[8] = 2;
    expect_bad(b, n, true, MS_EUNSUPPORTED, "newer");
    RESET();
    b[8] = 0;
    expect_bad(b, n, true, MS_EFORMAT, "version 0");
    RESET();
    b[12] = 0;
    expect_bad(b, n, true, MS_EFORMAT, "tensor count");
    RESET();
    b[n / 2] ^= 0x55;
    expect_bad(b, n, false, MS_EFORMAT, "CRC");
    RESET();
    b[n - 1] ^= 1;
    expect_bad(b, n, false, MS_EFORMAT, "CRC");
    RESET();
    b[e0 + 2] = ' ';
    expect_bad(b, n, true, MS_EFORMAT, "name has byte");
    RESET();
    b[dt] = 9;
    expect_bad(b, n, true, MS_EFORMAT, "dtype");
    RESET();
    b[dt + 1] = 9;
    expect_bad(b, n, true, MS_EFORMAT, NULL);
    RESET();
    memset(b + dims0, 0, 4);
    expect_bad(b, n, true, MS_EFORMAT, "dimension 0 is 0");
    RESET();
    b[dims0] = 3;
    expect_bad(b, n, true, MS_EFORMAT, "bytes for");
    RESET();
    b[off0] = 8;
    expect_bad(b, n, true, MS_EFORMAT, "outside the payload");
    RESET();
    b[off0 + 3] = 0x40;
    expect_bad(b, n, true, MS_EFORMAT, "outside the payload");
    /* second entry's data moved onto the first's */
    {
        size_t e1 = off0 + 16, off1 = e1 + 2 + 7 + 2 + 4;
        RESET();
        memset(b + off1, 0, 8);
        expect_bad(b, n, true, MS_EFORMAT, "overlap");
    }
    /* a NaN as the first weight (the sample's table is under 256 bytes: its size is byte 16) */
    {
        RESET();
        const uint8_t nan_bits[4] = {0, 0, 0xc0, 0x7f};
        size_t payload = ((32 + (size_t)orig[16] + 63) / 64) * 64;
        memcpy(b + payload, nan_bits, 4);
        expect_bad(b, n, true, MS_EFORMAT, "not finite");
    }
    /* every truncation and a few extensions */
    for (size_t cut = 0; cut < n; cut++) {
        ms_err err = {0};
        assert_int_not_equal(decode(orig, cut, &err), MS_OK);
    }
    uint8_t *longer = calloc(1, n + 8);
    assert_non_null(longer);
    memcpy(longer, orig, n);
    expect_bad(longer, n + 8, true, MS_EFORMAT, "header implies");
    free(longer);
    /* the size limit is checked first */
    ms_limits lim = ms_limits_default();
    lim.max_model_bytes = n - 1;
    ms_msm *m = NULL;
    ms_err err = {0};
    assert_int_equal(ms_msm_decode(orig, n, "model.msm", &lim, &m, &err), MS_ELIMIT);
    assert_int_equal(ms_msm_load("/nonexistent/model.msm", NULL, &m, &err), MS_EIO);
#undef RESET
    free(b);
    free(orig);
}

/* Random single-byte damage, re-sealed: never a crash, and never a silently different model. */
static void test_mutations(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *orig = read_file(&n), *b = malloc(n);
    assert_non_null(b);
    uint32_t rng = 12345u;
    for (int it = 0; it < 3000; it++) {
        memcpy(b, orig, n);
        rng = rng * 1664525u + 1013904223u;
        size_t at = (rng >> 8) % (n - 4);
        rng = rng * 1664525u + 1013904223u;
        b[at] = (uint8_t)(rng >> 24);
        reseal(b, n);
        ms_msm *m = NULL;
        ms_err err = {0};
        if (ms_msm_decode(b, n, "model.msm", NULL, &m, &err) == MS_OK) {
            for (uint32_t i = 0; i < ms_msm_tensor_count(m); i++)
                assert_non_null(ms_msm_tensor_at(m, i)->data);
            ms_msm_destroy(m);
        } else {
            assert_non_null(strstr(err.msg, "model.msm"));
        }
    }
    free(b);
    free(orig);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_path, sizeof g_path, "%s/test_msm_%ld.msm", MS_BINARY_DIR, (long)getpid());
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove(g_path);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_every_rule),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
