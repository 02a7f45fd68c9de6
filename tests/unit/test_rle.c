/* RLE Lossless (PS3.5 Annex G) decoder: hand-built fragments with known contents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/loader/rle.h"

/* A fragment: 64-byte header (segment count, 15 offsets) then the segments. */
typedef struct frag {
    uint8_t b[512];
    size_t n;
    uint32_t nseg;
} frag;

static void frag_init(frag *f) {
    memset(f, 0, sizeof *f);
    f->n = 64;
}
static void frag_segment(frag *f, const uint8_t *seg, size_t len) {
    uint32_t off = (uint32_t)f->n;
    for (int i = 0; i < 4; i++) f->b[4 + 4 * f->nseg + (unsigned)i] = (uint8_t)(off >> (8 * i));
    f->nseg++;
    for (int i = 0; i < 4; i++) f->b[i] = (uint8_t)(f->nseg >> (8 * i));
    memcpy(f->b + f->n, seg, len);
    f->n += len;
}

static void test_packbits(void **state) {
    (void)state;
    /* 3 literals, a repeat of 4, a no-op, then 1 literal: 8 pixels */
    const uint8_t seg[] = {2, 10, 20, 30, (uint8_t)-3, 7, (uint8_t)-128, 0, 99};
    frag f;
    frag_init(&f);
    frag_segment(&f, seg, sizeof seg);
    uint8_t out[8];
    ms_err err = {0};
    assert_int_equal(ms_rle_decode(f.b, f.n, "t.dcm", 8, 1, 1, out, sizeof out, &err), MS_OK);
    const uint8_t want[8] = {10, 20, 30, 7, 7, 7, 7, 99};
    assert_memory_equal(out, want, 8);
}

/* 16-bit samples: segment 1 holds the high bytes, segment 2 the low bytes. */
static void test_sixteen_bit_and_planes(void **state) {
    (void)state;
    const uint8_t hi[] = {3, 0x12, 0x34, 0x00, 0xFF};
    const uint8_t lo[] = {3, 0x01, 0x02, 0x03, 0x04};
    frag f;
    frag_init(&f);
    frag_segment(&f, hi, sizeof hi);
    frag_segment(&f, lo, sizeof lo);
    uint16_t out[4];
    ms_err err = {0};
    assert_int_equal(ms_rle_decode(f.b, f.n, "t.dcm", 4, 1, 2, out, sizeof out, &err), MS_OK);
    assert_int_equal(out[0], 0x1201);
    assert_int_equal(out[1], 0x3402);
    assert_int_equal(out[2], 0x0003);
    assert_int_equal(out[3], 0xFF04);

    /* RGB 8-bit: three segments become three planes. */
    const uint8_t r[] = {(uint8_t)-1, 1}, g[] = {(uint8_t)-1, 2}, b[] = {1, 3, 4};
    frag_init(&f);
    frag_segment(&f, r, sizeof r);
    frag_segment(&f, g, sizeof g);
    frag_segment(&f, b, sizeof b);
    uint8_t rgb[6];
    assert_int_equal(ms_rle_decode(f.b, f.n, "t.dcm", 2, 3, 1, rgb, sizeof rgb, &err), MS_OK);
    const uint8_t want[6] = {1, 1, 2, 2, 3, 4};
    assert_memory_equal(rgb, want, 6);
}

static void test_malformed(void **state) {
    (void)state;
    const uint8_t seg[] = {3, 1, 2, 3, 4};
    frag f;
    uint8_t out[16];
    ms_err err = {0};

    frag_init(&f);
    frag_segment(&f, seg, sizeof seg);
    /* wrong segment count for 16-bit data */
    assert_int_equal(ms_rle_decode(f.b, f.n, "t.dcm", 4, 1, 2, out, sizeof out, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "t.dcm"));
    /* a segment that decodes short */
    assert_int_equal(ms_rle_decode(f.b, f.n, "t.dcm", 5, 1, 1, out, sizeof out, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "decodes to 4 bytes"));
    /* offsets outside the fragment or inside the header */
    f.b[4] = 0xF0;
    f.b[5] = 0xFF;
    assert_int_equal(ms_rle_decode(f.b, f.n, "t.dcm", 4, 1, 1, out, sizeof out, &err), MS_EFORMAT);
    f.b[4] = 8;
    f.b[5] = 0;
    assert_int_equal(ms_rle_decode(f.b, f.n, "t.dcm", 4, 1, 1, out, sizeof out, &err), MS_EFORMAT);
    /* truncated header, and every truncation of a valid fragment */
    frag_init(&f);
    frag_segment(&f, seg, sizeof seg);
    for (size_t cut = 0; cut < f.n; cut++)
        assert_int_equal(ms_rle_decode(f.b, cut, "t.dcm", 4, 1, 1, out, sizeof out, &err),
                         MS_EFORMAT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packbits),
        cmocka_unit_test(test_sixteen_bit_and_planes),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
