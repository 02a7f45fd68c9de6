/* .npy reader/writer tests: round trips, files written by numpy (tests/data/npy/, made by
 * scripts/make-npy-fixtures.py), every truncation, corrupted headers, unsupported dtypes and
 * orders, size checks before allocation, allocation failures, and atomic saves. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "alloc_hooks.h"

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "medscreen/core.h"
#include "medscreen/npy.h"

#define FIXTURES MS_SOURCE_DIR "/tests/data/npy"

/* The fixture pattern of scripts/make-npy-fixtures.py. */
static float pat(size_t i) { return (float)(i % 17) * 0.125f - 1.0f; }

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint8_t *read_file(const char *path, size_t *n) {
    uint8_t *d = NULL;
    ms_err err;
    ms_status st = ms_file_read_all(path, 1u << 24, &d, n, &err);
    if (st != MS_OK) fail_msg("%s", err.msg);
    return d;
}

static char *fixture(const char *name) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", FIXTURES, name);
    return buf;
}

/* A .npy file from a header dict and a payload, with the given version; header_len < 0 takes
 * the dict's length. Caller frees. */
static uint8_t *make_npy(int major, const char *dict, const void *payload, size_t payload_len,
                         size_t *out_n) {
    size_t dl = strlen(dict);
    size_t lenfield = major == 1 ? 2 : 4;
    size_t n = 8 + lenfield + dl + payload_len;
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    memcpy(d, "\x93NUMPY", 6);
    d[6] = (uint8_t)major;
    d[7] = 0;
    for (size_t i = 0; i < lenfield; i++) d[8 + i] = (uint8_t)(dl >> (8 * i));
    memcpy(d + 8 + lenfield, dict, dl);
    if (payload_len) memcpy(d + 8 + lenfield + dl, payload, payload_len);
    *out_n = n;
    return d;
}

static ms_status decode(const uint8_t *d, size_t n, ms_npy **out, ms_err *err) {
    ms_limits lim = ms_limits_default();
    ms_err_clear(err);
    return ms_npy_decode(d, n, "test.npy", &lim, out, err);
}

/* ---- round trips ---- */

static void roundtrip(const int64_t *shape, int32_t ndim) {
    size_t count = 1;
    for (int32_t i = 0; i < ndim; i++) count *= (size_t)shape[i];
    float *v = malloc((count ? count : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < count; i++) v[i] = (float)sin((double)i) * 1000.0f;
    if (count > 3) {
        uint32_t nan_payload = 0x7fc01234u; /* a NaN with payload bits survives f4 exactly */
        memcpy(&v[1], &nan_payload, 4);
        v[2] = -0.0f;
        v[3] = FLT_MIN / 8.0f; /* subnormal */
    }
    uint8_t *enc = NULL;
    size_t n = 0;
    ms_err err;
    assert_int_equal(ms_npy_encode(shape, ndim, v, &enc, &n, &err), MS_OK);
    assert_int_equal((8 + 2 + enc[8] + 256 * enc[9]) % 64, 0); /* data starts aligned */
    ms_npy *a = NULL;
    assert_int_equal(decode(enc, n, &a, &err), MS_OK);
    assert_int_equal(a->ndim, ndim);
    for (int32_t i = 0; i < ndim; i++) assert_true(a->shape[i] == shape[i]);
    assert_int_equal(a->count, count);
    assert_non_null(a->data);
    for (size_t i = 0; i < count; i++) assert_int_equal(bits(a->data[i]), bits(v[i]));
    ms_npy_destroy(a);
    ms_free(enc);
    free(v);
}

static void test_roundtrip_memory(void **state) {
    (void)state;
    roundtrip(NULL, 0);
    int64_t s1[] = {7};
    roundtrip(s1, 1);
    int64_t s2[] = {3, 5};
    roundtrip(s2, 2);
    int64_t s4[] = {1, 3, 17, 9};
    roundtrip(s4, 4);
    int64_t s8[] = {2, 1, 2, 3, 1, 2, 2, 1};
    roundtrip(s8, 8);
    int64_t s0[] = {4, 0, 2};
    roundtrip(s0, 3);
    int64_t big[] = {1000000000000LL, 0}; /* long first dimension: header still fits */
    roundtrip(big, 2);
}

static char g_dir[256];

static int setup_dir(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/test_npy_XXXXXX", MS_BINARY_DIR);
    return mkdtemp(g_dir) ? 0 : -1;
}

/* Removes g_dir and the plain files in it. */
static int teardown_dir(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            if (remove(p) != 0) {
                /* a subdirectory made by a test: remove its files first */
                DIR *s = opendir(p);
                struct dirent *f;
                char q[768];
                while (s && (f = readdir(s)) != NULL) {
                    if (f->d_name[0] == '.') continue;
                    snprintf(q, sizeof q, "%s/%s", p, f->d_name);
                    remove(q);
                }
                if (s) closedir(s);
                remove(p);
            }
        }
        closedir(d);
    }
    return rmdir(g_dir);
}

/* Number of entries in dir other than . and .., and whether one contains ".tmp-". */
static int count_entries(const char *dir, bool *has_tmp) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    *has_tmp = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        n++;
        if (strstr(e->d_name, ".tmp-")) *has_tmp = true;
    }
    closedir(d);
    return n;
}

static void test_save_load(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/out.npy", g_dir);
    int64_t shape[] = {2, 3, 4, 5};
    float v[120];
    for (size_t i = 0; i < 120; i++) v[i] = pat(i);
    ms_err err;
    assert_int_equal(ms_npy_save(path, shape, 4, v, &err), MS_OK);

    /* byte for byte what numpy 1.24 wrote for the same array */
    size_t n1, n2;
    uint8_t *ours = read_file(path, &n1);
    uint8_t *numpy = read_file(fixture("f4_4d.npy"), &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(ours, numpy, n1);
    free(ours);
    free(numpy);

    ms_npy *a = NULL;
    ms_limits lim = ms_limits_default();
    assert_int_equal(ms_npy_load(path, &lim, &a, &err), MS_OK);
    assert_int_equal(a->count, 120);
    assert_memory_equal(a->data, v, sizeof v);
    ms_npy_destroy(a);

    /* overwrite with a smaller array: the file is replaced, not patched */
    int64_t s1[] = {2};
    assert_int_equal(ms_npy_save(path, s1, 1, v, &err), MS_OK);
    assert_int_equal(ms_npy_load(path, &lim, &a, &err), MS_OK);
    assert_int_equal(a->ndim, 1);
    assert_int_equal(a->count, 2);
    ms_npy_destroy(a);

    bool tmp;
    assert_int_equal(count_entries(g_dir, &tmp), 1);
    assert_false(tmp);
    remove(path);
}

/* The encoder matches numpy's bytes for every shape numpy wrote. */
static void test_encode_matches_numpy(void **state) {
    (void)state;
    static const struct {
        const char *file;
        int32_t ndim;
        int64_t shape[4];
    } cases[] = {
        {"f4_2x3.npy", 2, {2, 3}},      {"f4_scalar.npy", 0, {0}},   {"f4_vec5.npy", 1, {5}},
        {"f4_4d.npy", 4, {2, 3, 4, 5}}, {"f4_empty.npy", 2, {0, 3}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n;
        uint8_t *ref = read_file(fixture(cases[c].file), &n);
        ms_npy *a = NULL;
        ms_err err;
        assert_int_equal(decode(ref, n, &a, &err), MS_OK);
        uint8_t *enc = NULL;
        size_t m = 0;
        assert_int_equal(ms_npy_encode(cases[c].shape, cases[c].ndim, a->data, &enc, &m, &err),
                         MS_OK);
        if (m != n || memcmp(enc, ref, n) != 0) fail_msg("%s: encoding differs", cases[c].file);
        ms_free(enc);
        ms_npy_destroy(a);
        free(ref);
    }
}

/* ---- files written by numpy ---- */

static void expect_pattern(const char *file, int32_t ndim, const int64_t *shape) {
    ms_npy *a = NULL;
    ms_err err;
    ms_limits lim = ms_limits_default();
    if (ms_npy_load(fixture(file), &lim, &a, &err) != MS_OK) fail_msg("%s", err.msg);
    assert_int_equal(a->ndim, ndim);
    size_t count = 1;
    for (int32_t i = 0; i < ndim; i++) {
        assert_true(a->shape[i] == shape[i]);
        count *= (size_t)shape[i];
    }
    assert_int_equal(a->count, count);
    for (size_t i = 0; i < count; i++)
        if (bits(a->data[i]) != bits(pat(i))) fail_msg("%s[%zu] = %g", file, i, a->data[i]);
    ms_npy_destroy(a);
}

static void test_numpy_files(void **state) {
    (void)state;
    int64_t s23[] = {2, 3}, s5[] = {5}, s4d[] = {2, 3, 4, 5}, s03[] = {0, 3};
    expect_pattern("f4_2x3.npy", 2, s23);
    expect_pattern("f4_v2.npy", 2, s23);
    expect_pattern("f4_v3.npy", 2, s23);
    expect_pattern("f4_vec5.npy", 1, s5);
    expect_pattern("f4_4d.npy", 4, s4d);
    expect_pattern("f4_empty.npy", 2, s03);

    ms_limits lim = ms_limits_default();
    ms_npy *a = NULL;
    ms_err err;
    assert_int_equal(ms_npy_load(fixture("f4_scalar.npy"), &lim, &a, &err), MS_OK);
    assert_int_equal(a->ndim, 0);
    assert_int_equal(a->count, 1);
    assert_true(a->data[0] == 3.25f);
    ms_npy_destroy(a);

    /* special values bit for bit; NaN and infinities pass (check_finite is the caller's) */
    assert_int_equal(ms_npy_load(fixture("f4_special.npy"), &lim, &a, &err), MS_OK);
    assert_int_equal(a->count, 10);
    const float want[] = {0.0f,      -0.0f, 1.0f,   -1.0f,   INFINITY,
                          -INFINITY, 0.0f,  1e-45f, FLT_MAX, 1.0f / 3.0f};
    for (size_t i = 0; i < 10; i++) {
        if (i == 6)
            assert_true(isnan(a->data[i]));
        else
            assert_int_equal(bits(a->data[i]), bits(want[i]));
    }
    assert_int_equal(ms_npy_check_finite(a, "special.npy", &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "special.npy"));
    assert_non_null(strstr(err.msg, "index 4"));
    ms_npy_destroy(a);

    /* float64 is rounded to the nearest float32 */
    assert_int_equal(ms_npy_load(fixture("f8_2x3.npy"), &lim, &a, &err), MS_OK);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->count, 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(bits(a->data[i]), bits((float)((double)pat(i) + 0.1)));
    assert_int_equal(ms_npy_check_finite(a, "f8", &err), MS_OK);
    ms_npy_destroy(a);

    /* ... but never to infinity */
    a = NULL;
    assert_int_equal(ms_npy_load(fixture("f8_too_big.npy"), &lim, &a, &err), MS_EFORMAT);
    assert_null(a);
    assert_non_null(strstr(err.msg, "f8_too_big.npy"));
    assert_non_null(strstr(err.msg, "index 1"));
}

static void test_numpy_unsupported(void **state) {
    (void)state;
    static const struct {
        const char *file, *mention;
    } cases[] = {
        {"f4_fortran.npy", "Fortran"},
        {"f4_bigendian.npy", "'>f4'"},
        {"f8_bigendian.npy", "'>f8'"},
        {"i4.npy", "'<i4'"},
        {"u1.npy", "'|u1'"},
        {"bool.npy", "'|b1'"},
        {"f2.npy", "'<f2'"},
        {"c8.npy", "'<c8'"},
        {"unicode.npy", "'<U2'"},
        {"object.npy", "object"},
        {"structured.npy", "structured"},
    };
    ms_limits lim = ms_limits_default();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ms_npy *a = NULL;
        ms_err err;
        ms_err_clear(&err);
        ms_status st = ms_npy_load(fixture(cases[c].file), &lim, &a, &err);
        if (st != MS_EUNSUPPORTED) fail_msg("%s: status %d: %s", cases[c].file, st, err.msg);
        assert_null(a);
        if (!strstr(err.msg, cases[c].file) || !strstr(err.msg, cases[c].mention))
            fail_msg("%s: message \"%s\" should name the file and %s", cases[c].file, err.msg,
                     cases[c].mention);
    }
}

/* ---- damaged input ---- */

static void test_every_truncation(void **state) {
    (void)state;
    static const char *files[] = {"f4_2x3.npy", "f4_v2.npy", "f4_scalar.npy", "f8_2x3.npy",
                                  "f4_empty.npy"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t n;
        uint8_t *full = read_file(fixture(files[f]), &n);
        for (size_t len = 0; len < n; len++) {
            uint8_t *d = malloc(len ? len : 1); /* exactly len bytes, for ASan */
            assert_non_null(d);
            memcpy(d, full, len);
            ms_npy *a = NULL;
            ms_err err;
            ms_status st = decode(len ? d : NULL, len, &a, &err);
            if (st != MS_EFORMAT) fail_msg("%s cut to %zu: status %d", files[f], len, st);
            assert_null(a);
            assert_non_null(strstr(err.msg, "test.npy"));
            free(d);
        }
        /* one byte too many is trailing data */
        uint8_t *d = malloc(n + 1);
        assert_non_null(d);
        memcpy(d, full, n);
        d[n] = 0;
        ms_npy *a = NULL;
        ms_err err;
        assert_int_equal(decode(d, n + 1, &a, &err), MS_EFORMAT);
        assert_non_null(strstr(err.msg, "trailing"));
        free(d);
        free(full);
    }
}

static void test_header_variants(void **state) {
    (void)state;
    float v[6];
    for (size_t i = 0; i < 6; i++) v[i] = pat(i);
    static const char *ok[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr':'<f4','fortran_order':False,'shape':(2,3)}",
        "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f4\"}",
        "  {\n\t'descr' : '<f4' ,\r\n 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }  \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        "                    \n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        for (int major = 1; major <= 3; major++) {
            size_t n;
            uint8_t *d = make_npy(major, ok[i], v, sizeof v, &n);
            ms_npy *a = NULL;
            ms_err err;
            if (decode(d, n, &a, &err) != MS_OK) fail_msg("v%d \"%s\": %s", major, ok[i], err.msg);
            assert_int_equal(a->ndim, 2);
            assert_true(a->shape[0] == 2 && a->shape[1] == 3);
            assert_memory_equal(a->data, v, sizeof v);
            ms_npy_destroy(a);
            free(d);
        }
    }
    static const struct {
        const char *dict;
        ms_status st;
        const char *mention;
    } bad[] = {
        {"", MS_EFORMAT, "not a dict"},
        {"[]", MS_EFORMAT, "not a dict"},
        {"{", MS_EFORMAT, "quoted key"},
        {"{}", MS_EFORMAT, "lacks the key 'descr'"},
        {"{'descr': '<f4', 'shape': (2, 3)}", MS_EFORMAT, "fortran_order"},
        {"{'descr': '<f4', 'fortran_order': False}", MS_EFORMAT, "'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", MS_EFORMAT,
         "unexpected key 'x'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", MS_EFORMAT,
         "duplicate key 'descr'"},
        {"{'descr': '<f4', 'fortran_order': false, 'shape': (2, 3)}", MS_EFORMAT, "True or False"},
        {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3)}", MS_EFORMAT, "True or False"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", MS_EFORMAT, "True or False"},
        {"{'descr': <f4, 'fortran_order': False, 'shape': (2, 3)}", MS_EFORMAT, "quoted descr"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3)}", MS_EFORMAT, "',' or '}'"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}", MS_EFORMAT, "expected ':'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", MS_EFORMAT, "not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", MS_EFORMAT, "tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}", MS_EFORMAT, "negative"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (02, 3)}", MS_EFORMAT, "leading"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3)}", MS_EFORMAT, "integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 3)}", MS_EFORMAT, "integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, , 3)}", MS_EFORMAT, "integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (,)}", MS_EFORMAT, "integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", MS_EFORMAT, "',' or ')'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", MS_EFORMAT, "',' or '}'"},
        {"{'descr': '<f4', 'fortran_order': False 'shape': (2, 3)}", MS_EFORMAT, "',' or '}'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}}", MS_EFORMAT,
         "after the dict"},
        {"{'descr': '<\\x66', 'fortran_order': False, 'shape': (2, 3)}", MS_EFORMAT, "escape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} \x01", MS_EFORMAT, "0x01"},
        {"{'d\xc3\xa9scr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", MS_EFORMAT, "0xc3"},
        {"{'descrdescrdescrdescrdescrdescrdescr': 1}", MS_EFORMAT, "longer than"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 6)}",
         MS_EUNSUPPORTED, "more than 8"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2000000000000, 3)}", MS_ELIMIT,
         "shape[0]"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 3)}",
         MS_ELIMIT, "shape[0]"},
        {"{'descr': '', 'fortran_order': False, 'shape': (2, 3)}", MS_EUNSUPPORTED, "empty"},
        {"{'descr': 'f4', 'fortran_order': False, 'shape': (2, 3)}", MS_EUNSUPPORTED, "'f4'"},
        {"{'descr': '=f4', 'fortran_order': False, 'shape': (2, 3)}", MS_EUNSUPPORTED, "'=f4'"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3)}", MS_EUNSUPPORTED,
         "structured"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}", MS_EUNSUPPORTED, "Fortran"},
        /* shape / payload mismatch */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}", MS_EFORMAT, "trailing"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (7,)}", MS_EFORMAT, "truncated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()}", MS_EFORMAT, "payload"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}", MS_EFORMAT, "payload"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)}", MS_EFORMAT, "truncated"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n;
        uint8_t *d = make_npy(1, bad[i].dict, v, sizeof v, &n);
        ms_npy *a = NULL;
        ms_err err;
        ms_status st = decode(d, n, &a, &err);
        if (st != bad[i].st || !strstr(err.msg, bad[i].mention) || !strstr(err.msg, "test.npy"))
            fail_msg("\"%s\": status %d (want %d), message \"%s\" (want \"%s\")", bad[i].dict, st,
                     bad[i].st, err.msg, bad[i].mention);
        assert_null(a);
        free(d);
    }
}

static void test_preamble(void **state) {
    (void)state;
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}";
    float one = 1.0f;
    size_t n;
    ms_npy *a = NULL;
    ms_err err;
    uint8_t *d = make_npy(1, dict, &one, 4, &n);

    static const struct {
        uint8_t major, minor;
        ms_status st;
    } ver[] = {{0, 0, MS_EUNSUPPORTED},
               {1, 1, MS_EUNSUPPORTED},
               {4, 0, MS_EUNSUPPORTED},
               {255, 0, MS_EUNSUPPORTED}};
    for (size_t i = 0; i < sizeof ver / sizeof ver[0]; i++) {
        d[6] = ver[i].major;
        d[7] = ver[i].minor;
        assert_int_equal(decode(d, n, &a, &err), ver[i].st);
        assert_non_null(strstr(err.msg, "version"));
    }
    d[6] = 1;
    d[7] = 0;
    assert_int_equal(decode(d, n, &a, &err), MS_OK);
    ms_npy_destroy(a);
    a = NULL;

    /* magic */
    d[1] = 'n';
    assert_int_equal(decode(d, n, &a, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "not a .npy"));
    assert_int_equal(decode(d, 3, &a, &err), MS_EFORMAT); /* short and wrong */
    assert_non_null(strstr(err.msg, "not a .npy"));
    d[1] = 'N';
    d[0] = 0x92;
    assert_int_equal(decode(d, n, &a, &err), MS_EFORMAT);
    d[0] = 0x93;

    /* a NUL inside the header */
    d[8] = (uint8_t)(strlen(dict) + 1);
    d[10 + strlen(dict)] = '\0';
    assert_int_equal(decode(d, n, &a, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "0x00"));
    d[8] = (uint8_t)strlen(dict);

    /* header length past the end, and over the cap */
    d[8] = 0xff;
    d[9] = 0x00;
    assert_int_equal(decode(d, n, &a, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "header declares 255 bytes"));
    free(d);

    d = make_npy(2, dict, &one, 4, &n);
    d[8] = 0x01;
    d[9] = 0x00;
    d[10] = 0x01; /* 65537 */
    d[11] = 0x00;
    assert_int_equal(decode(d, n, &a, &err), MS_ELIMIT);
    d[10] = 0xff;
    d[11] = 0xff; /* ~4 GiB */
    assert_int_equal(decode(d, n, &a, &err), MS_ELIMIT);
    assert_null(a);
    free(d);

    /* NULL arguments */
    ms_limits lim = ms_limits_default();
    assert_int_equal(ms_npy_decode(NULL, 4, "x", &lim, &a, &err), MS_EINVAL);
    assert_int_equal(ms_npy_decode((const uint8_t *)"x", 1, "x", NULL, &a, &err), MS_EINVAL);
    assert_int_equal(ms_npy_decode((const uint8_t *)"x", 1, "x", &lim, NULL, &err), MS_EINVAL);
    assert_int_equal(ms_npy_decode((const uint8_t *)"x", 1, NULL, &lim, &a, NULL), MS_EFORMAT);
    assert_int_equal(ms_npy_load(NULL, &lim, &a, &err), MS_EINVAL);
    assert_int_equal(ms_npy_load("/nonexistent/x.npy", &lim, &a, &err), MS_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/x.npy"));
    assert_int_equal(ms_npy_load(FIXTURES, &lim, &a, &err), MS_EIO); /* a directory */
    assert_null(a);
    ms_npy_destroy(NULL);
}

/* A random-mutation loop over a valid file: never crash, and errors name the file. */
static void test_mutations(void **state) {
    (void)state;
    size_t n;
    uint8_t *orig = read_file(fixture("f4_2x3.npy"), &n);
    uint8_t *d = malloc(n);
    assert_non_null(d);
    uint32_t rng = 12345;
    for (int it = 0; it < 20000; it++) {
        memcpy(d, orig, n);
        int edits = 1 + (int)(rng % 4);
        for (int e = 0; e < edits; e++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % 80; /* mostly the preamble and dict */
            rng = rng * 1664525u + 1013904223u;
            d[at] = (uint8_t)(rng >> 24);
        }
        ms_npy *a = NULL;
        ms_err err;
        if (decode(d, n, &a, &err) == MS_OK) {
            size_t count = 1;
            for (int32_t i = 0; i < a->ndim; i++) count *= (size_t)a->shape[i];
            assert_int_equal(count, a->count);
            ms_npy_destroy(a);
        } else {
            assert_null(a);
            assert_non_null(strstr(err.msg, "test.npy"));
        }
    }
    free(d);
    free(orig);
}

/* ---- limits and allocation ---- */

static void test_limits_before_allocation(void **state) {
    (void)state;
    size_t n;
    uint8_t *file = read_file(fixture("f4_2x3.npy"), &n);
    hook_state hs = {0};
    hooks_install(&hs);
    ms_limits lim = ms_limits_default();
    float v[6] = {0};
    static const struct {
        const char *dict;
        ms_status st;
    } huge[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776)}",
         MS_EOVERFLOW},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536, 65536, 65536)}",
         MS_EOVERFLOW},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,)}", MS_ELIMIT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576)}", MS_ELIMIT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 65536, 65536)}", MS_ELIMIT},
    };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        size_t m;
        uint8_t *d = make_npy(1, huge[i].dict, v, sizeof v, &m);
        ms_npy *a = NULL;
        ms_err err;
        hs.count = 0;
        ms_status st = ms_npy_decode(d, m, "huge.npy", &lim, &a, &err);
        if (st != huge[i].st) fail_msg("%s: status %d: %s", huge[i].dict, st, err.msg);
        assert_int_equal(hs.count, 0); /* refused before any allocation */
        assert_non_null(strstr(err.msg, "huge.npy"));
        free(d);
    }

    /* a valid file over max_decoded_bytes or max_file_bytes */
    uint8_t *d = file;
    ms_npy *a = NULL;
    ms_err err;
    hs.count = 0;
    lim.max_decoded_bytes = 23;
    assert_int_equal(ms_npy_decode(d, n, "x.npy", &lim, &a, &err), MS_ELIMIT);
    lim.max_decoded_bytes = 24;
    lim.max_file_bytes = n - 1;
    assert_int_equal(ms_npy_decode(d, n, "x.npy", &lim, &a, &err), MS_ELIMIT);
    assert_int_equal(ms_npy_load(fixture("f4_2x3.npy"), &lim, &a, &err), MS_ELIMIT);
    assert_int_equal(hs.count, 0);
    lim.max_file_bytes = n;
    assert_int_equal(ms_npy_decode(d, n, "x.npy", &lim, &a, &err), MS_OK);
    ms_npy_destroy(a);
    ms_alloc_set_hooks(NULL);
    assert_int_equal(hs.live, 0);
    ms_free(file);
}

static void test_alloc_failures(void **state) {
    (void)state;
    ms_limits lim = ms_limits_default();
    for (long fail_at = 1;; fail_at++) {
        hook_state hs = {.fail_at = fail_at};
        hooks_install(&hs);
        ms_npy *a = NULL;
        ms_err err;
        ms_status st = ms_npy_load(fixture("f8_2x3.npy"), &lim, &a, &err);
        ms_npy_destroy(a);
        ms_alloc_set_hooks(NULL);
        assert_int_equal(hs.live, 0);
        if (st == MS_OK) {
            assert_true(fail_at > 2); /* file buffer, struct, data */
            break;
        }
        assert_int_equal(st, MS_ENOMEM);
        assert_null(a);
    }
    for (long fail_at = 1;; fail_at++) {
        hook_state hs = {.fail_at = fail_at};
        hooks_install(&hs);
        int64_t shape[] = {3};
        float v[] = {1, 2, 3};
        uint8_t *enc = NULL;
        size_t n;
        ms_status st = ms_npy_encode(shape, 1, v, &enc, &n, NULL);
        ms_free(enc);
        char path[512];
        snprintf(path, sizeof path, "%s/alloc.npy", g_dir);
        ms_status st2 = ms_npy_save(path, shape, 1, v, NULL);
        ms_alloc_set_hooks(NULL);
        assert_int_equal(hs.live, 0);
        remove(path);
        if (st == MS_OK && st2 == MS_OK) break;
        assert_true(st == MS_ENOMEM || st2 == MS_ENOMEM);
        assert_true(fail_at < 10);
    }
}

/* ---- writing ---- */

static void test_encode_errors(void **state) {
    (void)state;
    uint8_t *enc = NULL;
    size_t n = 0;
    ms_err err;
    float v[4] = {0};
    int64_t neg[] = {2, -1}, ok[] = {2, 2}, over[] = {INT64_MAX, 4}, empty[] = {0, 5};
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(ms_npy_encode(neg, 2, v, &enc, &n, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "shape[1]"));
    assert_int_equal(ms_npy_encode(nine, 9, v, &enc, &n, &err), MS_EINVAL);
    assert_int_equal(ms_npy_encode(ok, -1, v, &enc, &n, &err), MS_EINVAL);
    assert_int_equal(ms_npy_encode(NULL, 2, v, &enc, &n, &err), MS_EINVAL);
    assert_int_equal(ms_npy_encode(ok, 2, NULL, &enc, &n, &err), MS_EINVAL);
    assert_int_equal(ms_npy_encode(ok, 2, v, NULL, &n, &err), MS_EINVAL);
    assert_int_equal(ms_npy_encode(over, 2, v, &enc, &n, &err), MS_EOVERFLOW);
    assert_null(enc);
    assert_int_equal(ms_npy_encode(empty, 2, NULL, &enc, &n, &err), MS_OK); /* no elements */
    ms_free(enc);
}

static void test_save_failures(void **state) {
    (void)state;
    ms_err err;
    float v[1024];
    for (size_t i = 0; i < 1024; i++) v[i] = pat(i);
    int64_t shape[] = {1024};
    bool tmp;

    /* invalid arguments touch nothing */
    char path[512];
    snprintf(path, sizeof path, "%s/a.npy", g_dir);
    int64_t bad[] = {-4};
    assert_int_equal(ms_npy_save(path, bad, 1, v, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "a.npy"));
    assert_int_equal(ms_npy_save(NULL, shape, 1, v, &err), MS_EINVAL);
    assert_int_equal(ms_npy_save("", shape, 1, v, &err), MS_EINVAL);
    assert_int_equal(count_entries(g_dir, &tmp), 0);

    /* a missing directory */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no/such/dir/a.npy", g_dir);
    assert_int_equal(ms_npy_save(missing, shape, 1, v, &err), MS_EIO);
    assert_non_null(strstr(err.msg, missing));

    /* the target is a non-empty directory: the rename fails after the temporary file was
     * fully written; the temporary file must be gone */
    char sub[512], inner[600];
    snprintf(sub, sizeof sub, "%s/sub", g_dir);
    assert_int_equal(mkdir(sub, 0777), 0);
    snprintf(inner, sizeof inner, "%s/keep", sub);
    FILE *f = fopen(inner, "wb");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(ms_npy_save(sub, shape, 1, v, &err), MS_EIO);
    assert_non_null(strstr(err.msg, "rename"));
    assert_int_equal(count_entries(g_dir, &tmp), 1);
    assert_false(tmp);

    /* a write that fails part-way (file size limit): the old file survives untouched and the
     * temporary file is removed */
    int64_t s2[] = {2};
    assert_int_equal(ms_npy_save(path, s2, 1, v, &err), MS_OK);
    size_t n_before;
    uint8_t *before = read_file(path, &n_before);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    struct rlimit small = old;
    small.rlim_cur = 1000; /* header + 1024 floats is 4224 bytes */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    ms_status st = ms_npy_save(path, shape, 1, v, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(st, MS_EIO);
    assert_non_null(strstr(err.msg, "write failed"));
    size_t n_after;
    uint8_t *after = read_file(path, &n_after);
    assert_int_equal(n_after, n_before);
    assert_memory_equal(after, before, n_before);
    free(before);
    free(after);
    assert_int_equal(count_entries(g_dir, &tmp), 2); /* sub and a.npy */
    assert_false(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_memory),
        cmocka_unit_test(test_encode_matches_numpy),
        cmocka_unit_test(test_numpy_files),
        cmocka_unit_test(test_numpy_unsupported),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_header_variants),
        cmocka_unit_test(test_preamble),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_limits_before_allocation),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test_setup_teardown(test_save_load, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_save_failures, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
