/* SHA-256 against the FIPS 180-2 / NIST example vectors, on the automatic path (SHA-NI where the
 * CPU has it) and the portable one, and the two paths against each other on random data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "medscreen/core.h"
#include "../../src/core/sha256_internal.h"

static void digest_impl(const void *data, size_t n, ms_sha256_impl impl, uint8_t out[32]) {
    ms_sha256 s;
    ms_sha256_init(&s);
    ms_sha256_update_impl(&s, data, n, impl);
    ms_sha256_final_impl(&s, out, impl);
}

static void hex_of(const uint8_t d[32], char out[65]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

/* The NIST vectors through one explicit path (the public functions pick AUTO). */
static void check_vectors_impl(ms_sha256_impl impl) {
    static const struct {
        const char *msg, *want;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
         "lmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t d[32];
        char hex[65];
        digest_impl(v[i].msg, strlen(v[i].msg), impl, d);
        hex_of(d, hex);
        assert_string_equal(hex, v[i].want);
    }
    /* One million 'a' in one update. */
    char *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    uint8_t d[32];
    char hex[65];
    digest_impl(a, 1000000, impl, d);
    hex_of(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

static void test_vectors_portable(void **state) {
    (void)state;
    check_vectors_impl(MS_SHA256_PORTABLE);
}

static void test_vectors_shani(void **state) {
    (void)state;
    if (!ms_sha256_shani_available()) {
        print_message("SHA-NI not available on this CPU/build: SHA-NI vectors skipped\n");
        skip();
    }
    check_vectors_impl(MS_SHA256_SHANI);
}

static uint32_t rng_next(uint32_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* n bytes hashed in random pieces (zero-length pieces included) through one path. */
static void digest_split(const uint8_t *data, size_t n, ms_sha256_impl impl, uint32_t *rng,
                         uint8_t out[32]) {
    ms_sha256 s;
    ms_sha256_init(&s);
    size_t done = 0;
    while (done < n) {
        uint32_t r = rng_next(rng);
        /* Mostly short pieces around the block size, sometimes long ones. */
        size_t cap = (r & 7u) == 0 ? n : 200;
        size_t take = (size_t)(rng_next(rng) % (cap + 1));
        if (take > n - done) take = n - done;
        ms_sha256_update_impl(&s, data + done, take, impl);
        done += take;
    }
    ms_sha256_final_impl(&s, out, impl);
}

/* SHA-NI against the portable code: every length 0..300 (all padding cases, one to five
 * blocks), in one piece and in random pieces, at every offset mod 16 of the input. */
static void test_shani_matches_portable_small(void **state) {
    (void)state;
    if (!ms_sha256_shani_available()) {
        print_message("SHA-NI not available on this CPU/build: comparison skipped\n");
        skip();
    }
    enum { MAX_LEN = 300 };
    uint8_t buf[MAX_LEN + 16];
    uint32_t rng = 0x9e3779b9u;
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rng_next(&rng);
    for (size_t len = 0; len <= MAX_LEN; len++) {
        const uint8_t *p = buf + len % 16;
        uint8_t a[32], b[32], c[32];
        digest_impl(p, len, MS_SHA256_PORTABLE, a);
        digest_impl(p, len, MS_SHA256_SHANI, b);
        assert_memory_equal(a, b, 32);
        digest_split(p, len, MS_SHA256_SHANI, &rng, c);
        assert_memory_equal(a, c, 32);
        /* The public function picks SHA-NI here. */
        ms_sha256 s;
        ms_sha256_init(&s);
        ms_sha256_update(&s, p, len);
        ms_sha256_final(&s, c);
        assert_memory_equal(a, c, 32);
    }
}

/* Large inputs, with random split points for the streaming update on each side. */
static void test_shani_matches_portable_large(void **state) {
    (void)state;
    if (!ms_sha256_shani_available()) {
        print_message("SHA-NI not available on this CPU/build: comparison skipped\n");
        skip();
    }
    static const size_t sizes[] = {4096, 65536 + 37, 1000003, 8u << 20};
    size_t max = 8u << 20;
    uint8_t *buf = malloc(max);
    assert_non_null(buf);
    uint32_t rng = 12345u;
    for (size_t i = 0; i < max; i++) buf[i] = (uint8_t)rng_next(&rng);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t a[32], b[32], c[32];
        digest_impl(buf, sizes[i], MS_SHA256_PORTABLE, a);
        digest_impl(buf, sizes[i], MS_SHA256_SHANI, b);
        assert_memory_equal(a, b, 32);
        digest_split(buf, sizes[i], MS_SHA256_SHANI, &rng, b);
        assert_memory_equal(a, b, 32);
        digest_split(buf, sizes[i], MS_SHA256_PORTABLE, &rng, c);
        assert_memory_equal(a, c, 32);
    }
    free(buf);
}

static void test_vectors(void **state) {
    (void)state;
    char hex[65];
    ms_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ms_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ms_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* One million 'a', fed in uneven pieces to exercise the buffering. */
static void test_million_a_streamed(void **state) {
    (void)state;
    char *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    ms_sha256 s;
    ms_sha256_init(&s);
    size_t done = 0, step = 1;
    while (done < 1000000) {
        size_t n = step < 1000000 - done ? step : 1000000 - done;
        ms_sha256_update(&s, a + done, n);
        done += n;
        step = step * 7 % 1013 + 1;
    }
    uint8_t d[32];
    ms_sha256_final(&s, d);
    static const uint8_t want[32] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92,
                                     0x81, 0xa1, 0xc7, 0xe2, 0x84, 0xd7, 0x3e, 0x67,
                                     0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97, 0x20, 0x0e,
                                     0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    assert_memory_equal(d, want, 32);
    char hex[65];
    ms_sha256_hex(a, 1000000, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_vectors),
                                       cmocka_unit_test(test_million_a_streamed),
                                       cmocka_unit_test(test_vectors_portable),
                                       cmocka_unit_test(test_vectors_shani),
                                       cmocka_unit_test(test_shani_matches_portable_small),
                                       cmocka_unit_test(test_shani_matches_portable_large)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
