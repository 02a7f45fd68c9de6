/* PNG loader tests. Fixtures are written here with libpng's writer from a deterministic
 * pattern; expected pixels are computed independently of the decoder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "alloc_hooks.h"
#include "mutate.h"

#include <png.h>
#include <zlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "medscreen/core.h"
#include "medscreen/loader.h"
#include "../../src/loader/loader_internal.h"

#define NAME "scan.png"
#define TOL 1e-6

/* ---- growable byte buffer ---- */

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void mb_append(membuf *m, const void *d, size_t n) {
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->n + n) cap *= 2;
        uint8_t *q = realloc(m->p, cap);
        assert_non_null(q);
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->n, d, n);
    m->n += n;
}

static void mb_u32be(membuf *m, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    mb_append(m, b, 4);
}

/* Appends a chunk with a correct CRC. */
static void mb_chunk(membuf *m, const char *type, const uint8_t *data, uint32_t len) {
    mb_u32be(m, len);
    mb_append(m, type, 4);
    if (len) mb_append(m, data, len);
    uLong crc = crc32(0L, (const Bytef *)type, 4);
    if (len) crc = crc32(crc, data, len);
    mb_u32be(m, (uint32_t)crc);
}

/* ---- deterministic pattern ---- */

static uint32_t pat(uint32_t x, uint32_t y, uint32_t c, uint32_t maxval) {
    uint32_t v = (x * 73856093u) ^ (y * 19349663u) ^ (c * 83492791u);
    v ^= v >> 13;
    v *= 0x5bd1e995u;
    v ^= v >> 15;
    return v % (maxval + 1u);
}

/* Sample value written at (x, y) for file sample c; the corner pixels are pinned to 0 and max
 * so that both ends of the range are always exercised. */
static uint32_t sample(uint32_t w, uint32_t h, uint32_t x, uint32_t y, uint32_t c,
                       uint32_t maxval) {
    if (x == 0 && y == 0) return 0;
    if (x == w - 1 && y == h - 1 && (w > 1 || h > 1)) return maxval;
    return pat(x, y, c, maxval);
}

static uint8_t pal_r(uint32_t i) { return (uint8_t)((i * 37u + 11u) & 255u); }
static uint8_t pal_g(uint32_t i) { return (uint8_t)((i * 91u + 17u) & 255u); }
static uint8_t pal_b(uint32_t i) { return (uint8_t)((255u - i * 13u) & 255u); }

static int file_samples(int ctype) {
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1; /* palette */
    }
}

typedef struct fixture_opts {
    bool phys;
    png_uint_32 phys_x, phys_y;
    int phys_unit;
    bool gama;
    bool trns;
    bool bad_text_crc; /* an ancillary chunk with a wrong CRC before IEND */
} fixture_opts;

static void png_write_cb(png_structp png, png_bytep d, size_t n) {
    mb_append(png_get_io_ptr(png), d, n);
}
static void png_flush_cb(png_structp png) { (void)png; }

/* Writes a PNG (raw rows packed here, no writer transforms). */
static membuf make_png(int ctype, int depth, int interlace, uint32_t w, uint32_t h,
                       const fixture_opts *fo) {
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    assert_non_null(png);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng writer failed");
    png_set_write_fn(png, &m, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, w, h, depth, ctype, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    uint32_t maxval = (1u << depth) - 1u;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[256];
        uint32_t n = 1u << depth;
        for (uint32_t i = 0; i < n; i++) {
            pal[i].red = pal_r(i);
            pal[i].green = pal_g(i);
            pal[i].blue = pal_b(i);
        }
        png_set_PLTE(png, info, pal, (int)n);
        if (fo && fo->trns) {
            png_byte alpha[3] = {0, 128, 255};
            png_set_tRNS(png, info, alpha, n < 3 ? (int)n : 3, NULL);
        }
    } else if (fo && fo->trns && !(ctype & PNG_COLOR_MASK_ALPHA)) {
        png_color_16 key = {0, (png_uint_16)(maxval / 2), (png_uint_16)(maxval / 3),
                            (png_uint_16)(maxval / 4), (png_uint_16)(maxval / 2)};
        png_set_tRNS(png, info, NULL, 0, &key);
    }
    if (fo && fo->phys) png_set_pHYs(png, info, fo->phys_x, fo->phys_y, fo->phys_unit);
    if (fo && fo->gama) png_set_gAMA(png, info, 1.0 / 2.2);
    png_write_info(png, info);

    int spp = file_samples(ctype);
    size_t rowbytes = ((size_t)w * (size_t)spp * (size_t)depth + 7) / 8;
    uint8_t *rows = calloc(h, rowbytes);
    assert_non_null(rows);
    png_bytep *rp = calloc(h, sizeof *rp);
    assert_non_null(rp);
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *r = rows + (size_t)y * rowbytes;
        rp[y] = r;
        for (uint32_t x = 0; x < w; x++)
            for (int c = 0; c < spp; c++) {
                uint32_t v = sample(w, h, x, y, (uint32_t)c, maxval);
                size_t s = (size_t)x * (size_t)spp + (size_t)c;
                if (depth == 16) {
                    r[2 * s] = (uint8_t)(v >> 8);
                    r[2 * s + 1] = (uint8_t)v;
                } else if (depth == 8) {
                    r[s] = (uint8_t)v;
                } else {
                    size_t bit = s * (size_t)depth;
                    unsigned shift = 8u - (unsigned)depth - (unsigned)(bit % 8);
                    r[bit / 8] = (uint8_t)(r[bit / 8] | (v << shift));
                }
            }
    }
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rp);
    free(rows);

    if (fo && fo->bad_text_crc) {
        /* Insert "tEXt" with a broken CRC just before IEND (the last 12 bytes). */
        membuf t = {0};
        mb_append(&t, m.p, m.n - 12);
        static const uint8_t text[] = "Comment\0hello";
        mb_chunk(&t, "tEXt", text, (uint32_t)(sizeof text - 1));
        t.p[t.n - 1] ^= 0x55;
        mb_append(&t, m.p + m.n - 12, 12);
        free(m.p);
        m = t;
    }
    return m;
}

/* Expected output channel ch (0 for grey mode) at (x, y), computed from the pattern. */
static double expected(int ctype, int depth, uint32_t w, uint32_t h, uint32_t x, uint32_t y,
                       ms_color_mode mode, int ch) {
    uint32_t maxval = (1u << depth) - 1u;
    double r, g, b;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        uint32_t i = sample(w, h, x, y, 0, maxval);
        r = pal_r(i) / 255.0;
        g = pal_g(i) / 255.0;
        b = pal_b(i) / 255.0;
    } else if (ctype & PNG_COLOR_MASK_COLOR) {
        r = sample(w, h, x, y, 0, maxval) / (double)maxval;
        g = sample(w, h, x, y, 1, maxval) / (double)maxval;
        b = sample(w, h, x, y, 2, maxval) / (double)maxval;
    } else {
        r = g = b = sample(w, h, x, y, 0, maxval) / (double)maxval;
    }
    if (mode == MS_COLOR_GRAY) return 0.299 * r + 0.587 * g + 0.114 * b;
    return ch == 0 ? r : ch == 1 ? g : b;
}

static void check_pixels(const ms_image *img, int ctype, int depth, ms_color_mode mode,
                         const char *what) {
    uint32_t w = (uint32_t)img->width, h = (uint32_t)img->height;
    for (int ch = 0; ch < img->channels; ch++)
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                double want = expected(ctype, depth, w, h, x, y, mode, ch);
                double got = img->data[((size_t)ch * h + y) * w + x];
                if (!(got >= want - TOL && got <= want + TOL))
                    fail_msg("%s: pixel (%u,%u) ch %d is %.9f, expected %.9f", what, x, y, ch, got,
                             want);
            }
}

typedef struct combo {
    int ctype, depth;
} combo;

static const combo k_combos[] = {
    {PNG_COLOR_TYPE_GRAY, 1},        {PNG_COLOR_TYPE_GRAY, 2},       {PNG_COLOR_TYPE_GRAY, 4},
    {PNG_COLOR_TYPE_GRAY, 8},        {PNG_COLOR_TYPE_GRAY, 16},      {PNG_COLOR_TYPE_GRAY_ALPHA, 8},
    {PNG_COLOR_TYPE_GRAY_ALPHA, 16}, {PNG_COLOR_TYPE_RGB, 8},        {PNG_COLOR_TYPE_RGB, 16},
    {PNG_COLOR_TYPE_RGB_ALPHA, 8},   {PNG_COLOR_TYPE_RGB_ALPHA, 16}, {PNG_COLOR_TYPE_PALETTE, 1},
    {PNG_COLOR_TYPE_PALETTE, 2},     {PNG_COLOR_TYPE_PALETTE, 4},    {PNG_COLOR_TYPE_PALETTE, 8},
};
#define N_COMBOS (sizeof k_combos / sizeof k_combos[0])

static void check_provenance(const ms_image *img, int ctype, int depth, int interlace,
                             ms_color_mode mode) {
    const ms_provenance *pv = &img->prov;
    bool pal = ctype == PNG_COLOR_TYPE_PALETTE, color = !pal && (ctype & PNG_COLOR_MASK_COLOR);
    assert_int_equal(pv->format, MS_FORMAT_PNG);
    assert_string_equal(pv->transfer_syntax, "");
    assert_string_equal(pv->photometric, pal ? "PALETTE COLOR" : color ? "RGB" : "MONOCHROME2");
    const char *conv;
    if (mode == MS_COLOR_GRAY)
        conv = pal ? "palette_to_luma" : color ? "rgb_to_luma" : "none";
    else
        conv = pal ? "palette_to_rgb" : color ? "none" : "gray_to_rgb";
    assert_string_equal(pv->color_conversion, conv);
    assert_int_equal(pv->bits_stored, depth);
    assert_int_equal(pv->bits_allocated, depth < 8 ? 8 : depth);
    assert_int_equal(pv->high_bit, depth - 1);
    assert_int_equal(pv->samples_per_pixel, color ? 3 : 1);
    assert_int_equal(pv->interlaced, interlace == PNG_INTERLACE_ADAM7);
    assert_int_equal(pv->frame_index, 0);
    assert_int_equal(pv->frame_count, 1);
    assert_int_equal(pv->voi, MS_VOI_NONE);
    assert_int_equal(pv->modality_lut, MS_MODLUT_NONE);
    assert_false(pv->is_signed);
    assert_int_equal(pv->spacing_source, MS_SPACING_NONE);
    assert_true(pv->spacing_row_mm == 0.0 && pv->spacing_col_mm == 0.0);
}

static void test_png_all_types(void **state) {
    (void)state;
    static const uint32_t sizes[][2] = {{1, 1}, {7, 5}, {37, 23}, {3, 40}};
    int decoded = 0;
    for (size_t k = 0; k < N_COMBOS; k++)
        for (int il = 0; il < 2; il++)
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
                for (int trns = 0; trns < 2; trns++) {
                    int ctype = k_combos[k].ctype, depth = k_combos[k].depth;
                    int interlace = il ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE;
                    uint32_t w = sizes[s][0], h = sizes[s][1];
                    fixture_opts fo = {0};
                    fo.trns = trns != 0;
                    membuf m = make_png(ctype, depth, interlace, w, h, &fo);
                    for (int mode = 0; mode < 2; mode++) {
                        char what[128];
                        snprintf(what, sizeof what, "ctype %d depth %d %s %ux%u trns %d mode %d",
                                 ctype, depth, il ? "adam7" : "plain", w, h, trns, mode);
                        ms_decode_opts o = ms_decode_opts_default();
                        o.color = (ms_color_mode)mode;
                        ms_image *img = NULL;
                        ms_err err;
                        ms_err_clear(&err);
                        ms_status st = ms_image_decode(m.p, m.n, NAME, &o, NULL, &img, &err);
                        if (st != MS_OK) fail_msg("%s: %s", what, err.msg);
                        assert_int_equal(img->width, (int)w);
                        assert_int_equal(img->height, (int)h);
                        assert_int_equal(img->channels, mode == MS_COLOR_RGB ? 3 : 1);
                        check_pixels(img, ctype, depth, o.color, what);
                        check_provenance(img, ctype, depth, interlace, o.color);
                        ms_image_destroy(img);
                        decoded++;
                    }
                    free(m.p);
                }
    assert_int_equal(decoded, (int)(N_COMBOS * 2 * 4 * 2 * 2));
}

static void test_png_phys_and_gama(void **state) {
    (void)state;
    fixture_opts fo = {0};
    fo.phys = true;
    fo.phys_x = 10000; /* px per metre: 0.1 mm between columns */
    fo.phys_y = 5000;  /* 0.2 mm between rows */
    fo.phys_unit = PNG_RESOLUTION_METER;
    fo.gama = true; /* ignored: values must still be the stored code values */
    membuf m = make_png(PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE, 9, 4, &fo);
    ms_image *img = NULL;
    ms_err err;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, NULL, &img, &err), MS_OK);
    check_pixels(img, PNG_COLOR_TYPE_GRAY, 16, MS_COLOR_GRAY, "gAMA");
    assert_int_equal(img->prov.spacing_source, MS_SPACING_PIXEL);
    assert_true(img->prov.spacing_col_mm > 0.1 - 1e-12 && img->prov.spacing_col_mm < 0.1 + 1e-12);
    assert_true(img->prov.spacing_row_mm > 0.2 - 1e-12 && img->prov.spacing_row_mm < 0.2 + 1e-12);
    ms_image_destroy(img);
    free(m.p);

    fo.phys_unit = PNG_RESOLUTION_UNKNOWN; /* aspect ratio only */
    m = make_png(PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, 9, 4, &fo);
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, NULL, &img, &err), MS_OK);
    assert_int_equal(img->prov.spacing_source, MS_SPACING_NONE);
    assert_true(img->prov.spacing_row_mm == 0.0);
    ms_image_destroy(img);
    free(m.p);
}

static void test_png_bad_args(void **state) {
    (void)state;
    membuf m = make_png(PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, 4, 4, NULL);
    ms_decode_opts o = ms_decode_opts_default();
    o.frame = 1;
    ms_image *img = NULL;
    ms_err err;
    ms_err_clear(&err);
    assert_int_equal(ms_png_decode(m.p, m.n, NAME, &o, NULL, &img, &err), MS_EINVAL);
    assert_null(img);
    assert_non_null(strstr(err.msg, NAME));
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, &o, NULL, &img, &err), MS_EINVAL);
    assert_null(img);
    o.frame = 0;
    o.color = (ms_color_mode)7;
    assert_int_equal(ms_png_decode(m.p, m.n, NAME, &o, NULL, &img, &err), MS_EINVAL);
    assert_int_equal(ms_png_decode(m.p, m.n, NAME, NULL, NULL, NULL, &err), MS_EINVAL);
    assert_null(img);
    /* NULL err and NULL opts/limits are accepted */
    assert_int_equal(ms_png_decode(m.p, m.n, NAME, NULL, NULL, &img, NULL), MS_OK);
    ms_image_destroy(img);
    free(m.p);
}

static void expect_failure(const uint8_t *d, size_t n, const char *what, ms_status *st_out,
                           char *msg_out, size_t msg_size) {
    expect_decode_failure(NAME, d, n, what, st_out, msg_out, msg_size);
}

static void test_png_truncated(void **state) {
    (void)state;
    const combo cs[] = {{PNG_COLOR_TYPE_RGB, 16},
                        {PNG_COLOR_TYPE_PALETTE, 4},
                        {PNG_COLOR_TYPE_GRAY, 8},
                        {PNG_COLOR_TYPE_GRAY_ALPHA, 8}};
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++)
        for (int il = 0; il < 2; il++) {
            membuf m = make_png(cs[k].ctype, cs[k].depth, il, 13, 11, NULL);
            for (size_t cut = 0; cut < m.n; cut++) {
                char what[96], msg[MS_ERR_MSG_MAX];
                snprintf(what, sizeof what, "ctype %d depth %d il %d cut %zu of %zu", cs[k].ctype,
                         cs[k].depth, il, cut, m.n);
                ms_status st;
                /* A heap copy of exactly cut bytes lets ASan catch any over-read. */
                uint8_t *d = malloc(cut ? cut : 1);
                assert_non_null(d);
                memcpy(d, m.p, cut);
                expect_failure(d, cut, what, &st, msg, sizeof msg);
                free(d);
                if (cut < 8) {
                    assert_int_equal(st, MS_ENOTIMAGE);
                } else {
                    if (st != MS_EFORMAT) fail_msg("%s: status %d: %s", what, (int)st, msg);
                    if (strstr(msg, "truncated PNG data") == NULL)
                        fail_msg("%s: unexpected message %s", what, msg);
                }
            }
            free(m.p);
        }
}

static size_t find_chunk(const membuf *m, const char *type) {
    for (size_t off = 8; off + 12 <= m->n;) {
        uint32_t len = (uint32_t)m->p[off] << 24 | (uint32_t)m->p[off + 1] << 16 |
                       (uint32_t)m->p[off + 2] << 8 | m->p[off + 3];
        if (memcmp(m->p + off + 4, type, 4) == 0) return off;
        off += 12 + (size_t)len;
    }
    fail_msg("chunk %s not found", type);
    return 0;
}

static void test_png_corrupt(void **state) {
    (void)state;
    membuf m = make_png(PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_ADAM7, 9, 7, NULL);
    uint8_t *d = malloc(m.n);
    assert_non_null(d);
    char msg[MS_ERR_MSG_MAX];

    /* Every single-byte change anywhere in the file is caught (signature, chunk lengths and
     * types, and CRC-protected data) and reported with the file name. */
    for (size_t i = 0; i < m.n; i++)
        for (int flip = 0; flip < 2; flip++) {
            memcpy(d, m.p, m.n);
            d[i] ^= flip ? 0xFF : 0x01;
            char what[64];
            snprintf(what, sizeof what, "flip 0x%02x at %zu of %zu", flip ? 0xFF : 1, i, m.n);
            expect_failure(d, m.n, what, NULL, NULL, 0);
        }

    /* Bad CRCs name the chunk, with libpng's message. */
    size_t ihdr = find_chunk(&m, "IHDR"), idat = find_chunk(&m, "IDAT");
    memcpy(d, m.p, m.n);
    d[ihdr + 8 + 13] ^= 0x10; /* IHDR CRC */
    ms_status st;
    expect_failure(d, m.n, "IHDR crc", &st, msg, sizeof msg);
    assert_int_equal(st, MS_EFORMAT);
    assert_non_null(strstr(msg, "scan.png: PNG error: IHDR: CRC error"));
    memcpy(d, m.p, m.n);
    d[idat + 10] ^= 0x10; /* IDAT data */
    expect_failure(d, m.n, "IDAT data", &st, msg, sizeof msg);
    assert_int_equal(st, MS_EFORMAT);
    assert_non_null(strstr(msg, "scan.png: PNG error: IDAT: CRC error"));

    /* Invalid IHDR fields with a correct CRC: depth 3, colour type 5, filter 1. */
    static const struct {
        size_t off;
        uint8_t v;
    } bad[] = {{8, 3}, {9, 5}, {11, 1}, {12, 2}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        memcpy(d, m.p, m.n);
        d[ihdr + 8 + bad[k].off] = bad[k].v;
        uLong crc = crc32(0L, d + ihdr + 4, 17);
        d[ihdr + 21] = (uint8_t)(crc >> 24);
        d[ihdr + 22] = (uint8_t)(crc >> 16);
        d[ihdr + 23] = (uint8_t)(crc >> 8);
        d[ihdr + 24] = (uint8_t)crc;
        expect_failure(d, m.n, "bad IHDR field", &st, msg, sizeof msg);
        assert_int_equal(st, MS_EFORMAT);
    }

    /* Damaged zlib data with a recomputed CRC: must not crash; if it fails, it says why. */
    uint32_t idat_len = (uint32_t)m.p[idat] << 24 | (uint32_t)m.p[idat + 1] << 16 |
                        (uint32_t)m.p[idat + 2] << 8 | m.p[idat + 3];
    int failures = 0;
    for (uint32_t j = 0; j < idat_len; j++) {
        memcpy(d, m.p, m.n);
        d[idat + 8 + j] ^= 0xA5;
        uLong crc = crc32(0L, d + idat + 4, 4 + idat_len);
        size_t c = idat + 8 + idat_len;
        d[c] = (uint8_t)(crc >> 24);
        d[c + 1] = (uint8_t)(crc >> 16);
        d[c + 2] = (uint8_t)(crc >> 8);
        d[c + 3] = (uint8_t)crc;
        ms_image *img = NULL;
        ms_err err;
        ms_err_clear(&err);
        if (ms_image_decode(d, m.n, NAME, NULL, NULL, &img, &err) == MS_OK) {
            ms_image_destroy(img);
        } else {
            assert_null(img);
            assert_non_null(strstr(err.msg, NAME));
            failures++;
        }
    }
    assert_true(failures > 0); /* zlib's header and Adler-32 catch at least some */

    /* A chunk length of 2^31 - 1 */
    memcpy(d, m.p, m.n);
    d[idat] = 0x7F;
    d[idat + 1] = d[idat + 2] = d[idat + 3] = 0xFF;
    expect_failure(d, m.n, "huge IDAT length", NULL, NULL, 0);
    free(d);
    free(m.p);
}

/* Random multi-byte mutations: no crash, no leak (ASan), every failure names the file. */
static void test_png_mutations(void **state) {
    (void)state;
    uint32_t rng = 12345u;
    const combo cs[] = {
        {PNG_COLOR_TYPE_PALETTE, 2}, {PNG_COLOR_TYPE_RGB, 16}, {PNG_COLOR_TYPE_GRAY, 1}};
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        membuf m = make_png(cs[k].ctype, cs[k].depth, (int)(k & 1), 21, 17, NULL);
        mutate_and_decode(m.p, m.n, 8, 700, &rng, NAME);
        free(m.p);
    }
}

/* A PNG header claiming w x h with a tiny, truncated IDAT: decoding must stop at the limits. */
static membuf make_bomb_header(uint32_t w, uint32_t h) {
    membuf m = {0};
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    mb_append(&m, sig, 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24),
                        (uint8_t)(w >> 16),
                        (uint8_t)(w >> 8),
                        (uint8_t)w,
                        (uint8_t)(h >> 24),
                        (uint8_t)(h >> 16),
                        (uint8_t)(h >> 8),
                        (uint8_t)h,
                        8,
                        0,
                        0,
                        0,
                        0};
    mb_chunk(&m, "IHDR", ihdr, 13);
    static const uint8_t idat[] = {0x78, 0x9C, 0x63, 0x00, 0x00};
    mb_chunk(&m, "IDAT", idat, sizeof idat);
    mb_chunk(&m, "IEND", NULL, 0);
    return m;
}

static void test_png_limits(void **state) {
    (void)state;
    membuf m = make_png(PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, 37, 23, NULL);
    ms_image *img = NULL;
    ms_err err;
    ms_limits lim = ms_limits_default();
    lim.max_pixels = 37 * 23;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_OK);
    ms_image_destroy(img);
    img = NULL;
    lim.max_pixels = 37 * 23 - 1;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    assert_non_null(strstr(err.msg, NAME));
    assert_null(img);
    lim = ms_limits_default();
    lim.max_width = 36;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    lim = ms_limits_default();
    lim.max_height = 22;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    lim = ms_limits_default();
    lim.max_decoded_bytes = 37 * 23 * 3 - 1;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    assert_non_null(strstr(err.msg, NAME));
    assert_null(img);
    free(m.p);

    /* Headers claiming huge sizes, refused before any image-sized allocation. */
    static const uint32_t dims[][3] = {
        /* w, h, expected status */
        {65535, 65535, MS_ELIMIT},                               /* 4.3 Gpixel > 256 Mpixel */
        {100000, 1, MS_ELIMIT},                                  /* width > 65535 */
        {1, 70000, MS_ELIMIT},     {0x80000000u, 1, MS_EFORMAT}, /* forbidden by the PNG spec */
        {0, 5, MS_EFORMAT},
    };
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        membuf b = make_bomb_header(dims[k][0], dims[k][1]);
        hook_state hs = {0};
        hooks_install(&hs);
        ms_err_clear(&err);
        ms_status st = ms_image_decode(b.p, b.n, NAME, NULL, NULL, &img, &err);
        ms_alloc_set_hooks(NULL);
        if (st != (ms_status)dims[k][2])
            fail_msg("%ux%u: status %d (%s)", dims[k][0], dims[k][1], (int)st, err.msg);
        assert_null(img);
        assert_non_null(strstr(err.msg, NAME));
        assert_int_equal(hs.live, 0);
        if (hs.biggest > (1u << 20)) fail_msg("allocated %zu bytes before refusing", hs.biggest);
        free(b.p);
    }

    /* 65535 x 65535 with the pixel limit lifted: still refused by max_decoded_bytes. */
    membuf b = make_bomb_header(65535, 65535);
    lim = ms_limits_default();
    lim.max_pixels = UINT64_MAX;
    assert_int_equal(ms_image_decode(b.p, b.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    free(b.p);

    /* A real, highly compressible image (4096 x 4096 zeros, a few KiB) under a 1 Mpixel cap. */
    {
        membuf z = {0};
        png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
        png_infop info = png_create_info_struct(png);
        assert_non_null(info);
        if (setjmp(png_jmpbuf(png))) fail_msg("writer failed");
        png_set_write_fn(png, &z, png_write_cb, png_flush_cb);
        png_set_IHDR(png, info, 4096, 4096, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        uint8_t *row = calloc(4096, 1);
        assert_non_null(row);
        for (int y = 0; y < 4096; y++) png_write_row(png, row);
        png_write_end(png, NULL);
        png_destroy_write_struct(&png, &info);
        free(row);
        assert_true(z.n < 64 * 1024);
        lim = ms_limits_default();
        lim.max_pixels = 1u << 20;
        hook_state hs = {0};
        hooks_install(&hs);
        ms_status st = ms_image_decode(z.p, z.n, NAME, NULL, &lim, &img, &err);
        ms_alloc_set_hooks(NULL);
        assert_int_equal(st, MS_ELIMIT);
        assert_int_equal(hs.live, 0);
        assert_true(hs.biggest < (1u << 20));
        free(z.p);
    }
}

static void alloc_failure_loop(int ctype, int depth, int interlace, ms_color_mode mode) {
    fixture_opts fo = {0};
    fo.trns = true;
    fo.phys = true;
    fo.phys_x = fo.phys_y = 3000;
    fo.phys_unit = PNG_RESOLUTION_METER;
    membuf m = make_png(ctype, depth, interlace, 19, 13, &fo);
    ms_decode_opts o = ms_decode_opts_default();
    o.color = mode;
    long n;
    for (n = 1; n < 10000; n++) {
        hook_state hs = {0};
        hs.fail_at = n;
        hooks_install(&hs);
        ms_image *img = NULL;
        ms_err err;
        ms_err_clear(&err);
        ms_status st = ms_image_decode(m.p, m.n, NAME, &o, NULL, &img, &err);
        if (st == MS_OK) {
            assert_true(hs.count < n); /* succeeded because nothing failed */
            check_pixels(img, ctype, depth, mode, "after alloc loop");
            ms_image_destroy(img);
            ms_alloc_set_hooks(NULL);
            assert_int_equal(hs.live, 0);
            break;
        }
        ms_alloc_set_hooks(NULL);
        if (st != MS_ENOMEM) fail_msg("allocation %ld failed: status %d: %s", n, (int)st, err.msg);
        assert_null(img);
        assert_non_null(strstr(err.msg, NAME));
        if (hs.live != 0) fail_msg("allocation %ld failed: %ld blocks leaked", n, hs.live);
    }
    /* source, decoder context, png_struct, info, zlib state, rows, image header and data */
    if (n < 8) fail_msg("only %ld allocations: hooks do not see libpng", n - 1);
    free(m.p);
}

static void test_png_alloc_failure(void **state) {
    (void)state;
    alloc_failure_loop(PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_ADAM7, MS_COLOR_GRAY);
    alloc_failure_loop(PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE, MS_COLOR_RGB);
    alloc_failure_loop(PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE, MS_COLOR_GRAY);
}

/* ---- logging: warnings go to ms_log, nothing to stderr ---- */

typedef struct log_capture {
    int count;
    char last[512];
} log_capture;

static void log_cb(ms_log_level level, const char *msg, void *user) {
    log_capture *lc = user;
    assert_int_equal(level, MS_LOG_DEBUG);
    lc->count++;
    ms_str_copy(lc->last, sizeof lc->last, msg);
}

static void test_png_warnings_logged(void **state) {
    (void)state;
    fixture_opts fo = {0};
    fo.bad_text_crc = true; /* ancillary chunk CRC errors are warnings in libpng */
    membuf m = make_png(PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, 6, 6, &fo);

    fflush(stderr);
    char path[] = "/tmp/ms_test_png_stderrXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) >= 0);

    log_capture lc = {0};
    ms_log_set_callback(log_cb, &lc, MS_LOG_DEBUG);
    ms_image *img = NULL;
    ms_err err;
    ms_status st = ms_image_decode(m.p, m.n, NAME, NULL, NULL, &img, &err);
    /* and an error path */
    ms_image *img2 = NULL;
    ms_status st2 = ms_image_decode(m.p, m.n - 20, NAME, NULL, NULL, &img2, &err);
    ms_log_set_callback(NULL, NULL, MS_LOG_WARN);

    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    off_t end = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);

    assert_int_equal(st, MS_OK);
    check_pixels(img, PNG_COLOR_TYPE_GRAY, 8, MS_COLOR_GRAY, "bad tEXt crc");
    ms_image_destroy(img);
    assert_int_not_equal(st2, MS_OK);
    assert_true(lc.count >= 1);
    assert_non_null(strstr(lc.last, NAME));
    assert_non_null(strstr(lc.last, "PNG warning"));
    assert_int_equal(end, 0); /* libpng wrote nothing to stderr */
    free(m.p);
}

static void test_check_dimensions(void **state) {
    (void)state;
    ms_limits lim = ms_limits_default();
    ms_err err;
    assert_int_equal(ms_check_dimensions("a", 65535, 4096, &lim, &err), MS_OK);
    assert_int_equal(ms_check_dimensions("a", 65536, 1, &lim, &err), MS_ELIMIT);
    assert_int_equal(ms_check_dimensions("a", 0, 1, &lim, &err), MS_EFORMAT);
    assert_int_equal(ms_check_dimensions("a", 65535, 65535, &lim, &err), MS_ELIMIT);
    assert_int_equal(ms_check_dimensions("a", UINT64_MAX, UINT64_MAX, &lim, &err), MS_ELIMIT);
    assert_non_null(strstr(err.msg, "a: "));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_all_types),       cmocka_unit_test(test_png_phys_and_gama),
        cmocka_unit_test(test_png_bad_args),        cmocka_unit_test(test_png_truncated),
        cmocka_unit_test(test_png_corrupt),         cmocka_unit_test(test_png_mutations),
        cmocka_unit_test(test_png_limits),          cmocka_unit_test(test_png_alloc_failure),
        cmocka_unit_test(test_png_warnings_logged), cmocka_unit_test(test_check_dimensions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
