/* JPEG loader tests. Fixtures are encoded here with libjpeg from a smooth pattern; the
 * decoder is compared with a second decode done here through the plain libjpeg API (exact),
 * and with the original pattern (lossy tolerance, see PATTERN_TOL_*). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "alloc_hooks.h"
#include "mutate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>

#include "medscreen/core.h"
#include "medscreen/loader.h"
#include "../../src/loader/loader_internal.h"

#define NAME "scan.jpg"
#define TOL 1e-6 /* against the reference decode: same libjpeg, same samples */

/* Against the original pattern, quality 100 (all quantisers 1): what is left is DCT rounding
 * (about +-1 code value per sample) and, for colour, the encoder's RGB -> YCbCr rounding and
 * the decoder's YCbCr -> RGB rounding; 4:2:0 adds chroma averaged over 2x2 pixels. Measured on
 * these fixtures (libjpeg-turbo 2.1.5): grey and luma max 1.5/255; RGB output from YCbCr 4:4:4
 * max 4/255, from 4:2:0 max 5/255; mean error at most 0.83/255. Each tolerance adds about one
 * code value to what was measured, so a real regression (a wrong colour conversion or channel
 * order, a half-pixel shift) still fails. */
#define PATTERN_TOL_LUMA (2.5 / 255.0)
#define PATTERN_TOL_RGB444 (5.0 / 255.0)
#define PATTERN_TOL_RGB420 (6.0 / 255.0)
#define PATTERN_TOL_MEAN (1.0 / 255.0)

typedef struct membuf {
    uint8_t *p;
    size_t n;
} membuf;

/* ---- smooth pattern ---- */

static uint8_t clamp8(double v) {
    if (v < 0) return 0;
    if (v > 255) return 255;
    return (uint8_t)lround(v);
}

/* Interleaved 8-bit samples, comps = 1, 3 or 4. */
static uint8_t *make_pattern(uint32_t w, uint32_t h, int comps) {
    uint8_t *p = malloc((size_t)w * h * (size_t)comps);
    assert_non_null(p);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * (size_t)comps;
            double fx = x, fy = y;
            if (comps == 1) {
                q[0] = clamp8(128 + 100 * sin(fx * 0.06 + 0.3) * cos(fy * 0.05));
            } else {
                q[0] = clamp8(128 + 90 * sin(0.07 * fx + 0.03 * fy));
                q[1] = clamp8(128 + 90 * cos(0.05 * fx - 0.04 * fy));
                q[2] = clamp8(128 + 90 * sin(0.04 * (fx + fy) + 1));
                if (comps == 4) q[3] = clamp8(60 + 40 * cos(0.02 * fx));
            }
        }
    return p;
}

/* ---- encoder ---- */

typedef struct enc_opts {
    int comps;             /* 1, 3 or 4 */
    J_COLOR_SPACE in_cs;   /* JCS_GRAYSCALE, JCS_RGB, JCS_CMYK */
    J_COLOR_SPACE jpeg_cs; /* colour space in the file */
    bool progressive;
    bool s444; /* no chroma subsampling */
    bool arith;
    int quality;
} enc_opts;

static membuf encode(uint32_t w, uint32_t h, const enc_opts *eo, const uint8_t *pixels) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long outsize = 0;
    jpeg_mem_dest(&c, &out, &outsize);
    c.image_width = w;
    c.image_height = h;
    c.input_components = eo->comps;
    c.in_color_space = eo->in_cs;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, eo->jpeg_cs);
    jpeg_set_quality(&c, eo->quality, TRUE);
    if (eo->s444)
        for (int i = 0; i < c.num_components; i++)
            c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    if (eo->arith) c.arith_code = TRUE;
    if (eo->progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    size_t stride = (size_t)w * (size_t)eo->comps;
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(pixels + (size_t)c.next_scanline * stride);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    membuf m = {malloc(outsize), outsize};
    assert_non_null(m.p);
    memcpy(m.p, out, outsize);
    free(out);
    return m;
}

static membuf encode_std(uint32_t w, uint32_t h, int kind, bool progressive) {
    /* kind 0: grey; 1: YCbCr 4:2:0; 2: YCbCr 4:4:4; 3: RGB-coded (Adobe, no transform) */
    enc_opts eo = {0};
    eo.quality = 100;
    eo.progressive = progressive;
    if (kind == 0) {
        eo.comps = 1;
        eo.in_cs = eo.jpeg_cs = JCS_GRAYSCALE;
    } else {
        eo.comps = 3;
        eo.in_cs = JCS_RGB;
        eo.jpeg_cs = kind == 3 ? JCS_RGB : JCS_YCbCr;
        eo.s444 = kind >= 2;
    }
    uint8_t *px = make_pattern(w, h, eo.comps);
    membuf m = encode(w, h, &eo, px);
    free(px);
    return m;
}

/* ---- reference decode through the plain libjpeg API ---- */

static uint8_t *ref_decode(const membuf *m, J_COLOR_SPACE out_cs, int *comps, uint32_t *w,
                           uint32_t *h) {
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr jerr;
    d.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, m->p, (unsigned long)m->n);
    assert_int_equal(jpeg_read_header(&d, TRUE), JPEG_HEADER_OK);
    d.out_color_space = out_cs;
    jpeg_start_decompress(&d);
    *comps = d.output_components;
    *w = d.output_width;
    *h = d.output_height;
    size_t stride = (size_t)d.output_width * (size_t)d.output_components;
    uint8_t *p = malloc(stride * d.output_height);
    assert_non_null(p);
    while (d.output_scanline < d.output_height) {
        JSAMPROW r = p + (size_t)d.output_scanline * stride;
        jpeg_read_scanlines(&d, &r, 1);
    }
    jpeg_finish_decompress(&d);
    assert_int_equal(jerr.num_warnings, 0);
    jpeg_destroy_decompress(&d);
    return p;
}

/* Expected planar output, computed from the reference decode. */
static float *expected_from_ref(const membuf *m, int kind, ms_color_mode mode, uint32_t *w,
                                uint32_t *h) {
    int comps;
    uint8_t *ref;
    if (kind == 0)
        ref = ref_decode(m, JCS_GRAYSCALE, &comps, w, h);
    else if (mode == MS_COLOR_GRAY && kind != 3)
        ref = ref_decode(m, JCS_GRAYSCALE, &comps, w, h); /* Y */
    else
        ref = ref_decode(m, JCS_RGB, &comps, w, h);
    size_t n = (size_t)*w * *h;
    int ch = mode == MS_COLOR_RGB ? 3 : 1;
    float *e = malloc(n * (size_t)ch * sizeof *e);
    assert_non_null(e);
    for (size_t i = 0; i < n; i++) {
        if (comps == 1) {
            for (int c = 0; c < ch; c++) e[(size_t)c * n + i] = (float)(ref[i] / 255.0);
        } else if (ch == 1) {
            double r = ref[3 * i] / 255.0, g = ref[3 * i + 1] / 255.0, b = ref[3 * i + 2] / 255.0;
            e[i] = (float)(0.299 * r + 0.587 * g + 0.114 * b);
        } else {
            for (int c = 0; c < 3; c++)
                e[(size_t)c * n + i] = (float)(ref[3 * i + (size_t)c] / 255.0);
        }
    }
    free(ref);
    return e;
}

static ms_image *decode_ok(const membuf *m, ms_color_mode mode, const char *what) {
    ms_decode_opts o = ms_decode_opts_default();
    o.color = mode;
    ms_image *img = NULL;
    ms_err err;
    ms_err_clear(&err);
    ms_status st = ms_image_decode(m->p, m->n, NAME, &o, NULL, &img, &err);
    if (st != MS_OK) fail_msg("%s: status %d: %s", what, (int)st, err.msg);
    return img;
}

static void test_jpeg_matches_reference_and_pattern(void **state) {
    (void)state;
    static const uint32_t sizes[][2] = {{1, 1}, {17, 9}, {64, 48}, {5, 70}};
    static const char *kinds[] = {"grey", "ycbcr420", "ycbcr444", "rgb"};
    for (int kind = 0; kind < 4; kind++)
        for (int prog = 0; prog < 2; prog++)
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
                for (int mode = 0; mode < 2; mode++) {
                    uint32_t w = sizes[s][0], h = sizes[s][1];
                    char what[96];
                    snprintf(what, sizeof what, "%s %s %ux%u mode %d", kinds[kind],
                             prog ? "progressive" : "baseline", w, h, mode);
                    membuf m = encode_std(w, h, kind, prog != 0);
                    ms_image *img = decode_ok(&m, (ms_color_mode)mode, what);
                    uint32_t rw, rh;
                    float *e = expected_from_ref(&m, kind, (ms_color_mode)mode, &rw, &rh);
                    assert_int_equal(img->width, (int)w);
                    assert_int_equal(img->height, (int)h);
                    assert_int_equal(rw, w);
                    assert_int_equal(rh, h);
                    int ch = mode == MS_COLOR_RGB ? 3 : 1;
                    assert_int_equal(img->channels, ch);
                    size_t n = (size_t)w * h;

                    /* 1. exact against the reference decode */
                    for (size_t i = 0; i < n * (size_t)ch; i++)
                        if (fabs((double)img->data[i] - (double)e[i]) > TOL)
                            fail_msg("%s: sample %zu is %.7f, reference %.7f", what, i,
                                     (double)img->data[i], (double)e[i]);

                    /* 2. against the original pattern, within the lossy tolerance */
                    uint8_t *px = make_pattern(w, h, kind == 0 ? 1 : 3);
                    double maxerr = 0, sumerr = 0;
                    for (size_t i = 0; i < n; i++)
                        for (int c = 0; c < ch; c++) {
                            double want;
                            if (kind == 0)
                                want = px[i] / 255.0;
                            else if (ch == 1)
                                want = (0.299 * px[3 * i] + 0.587 * px[3 * i + 1] +
                                        0.114 * px[3 * i + 2]) /
                                       255.0;
                            else
                                want = px[3 * i + (size_t)c] / 255.0;
                            double d = fabs(img->data[(size_t)c * n + i] - want);
                            if (d > maxerr) maxerr = d;
                            sumerr += d;
                        }
                    double tol = ch == 1 || kind == 0 || kind == 3 ? PATTERN_TOL_LUMA
                                 : kind == 2                       ? PATTERN_TOL_RGB444
                                                                   : PATTERN_TOL_RGB420;
                    if (maxerr > tol || sumerr / (double)(n * (size_t)ch) > PATTERN_TOL_MEAN)
                        fail_msg("%s: max error %.2f/255, mean %.3f/255 against the pattern", what,
                                 maxerr * 255, sumerr / (double)(n * (size_t)ch) * 255);
                    free(px);
                    if (getenv("MS_PRINT_ERR"))
                        printf("%s: max %.2f mean %.3f\n", what, maxerr * 255,
                               sumerr / (double)(n * (size_t)ch) * 255);

                    /* 3. provenance */
                    const ms_provenance *pv = &img->prov;
                    assert_int_equal(pv->format, MS_FORMAT_JPEG);
                    assert_string_equal(pv->photometric, kind == 0   ? "MONOCHROME2"
                                                         : kind == 3 ? "RGB"
                                                                     : "YBR_FULL");
                    const char *conv;
                    if (kind == 0)
                        conv = mode ? "gray_to_rgb" : "none";
                    else if (kind == 3)
                        conv = mode ? "none" : "rgb_to_luma";
                    else
                        conv = mode ? "ybr_to_rgb" : "ybr_to_luma";
                    assert_string_equal(pv->color_conversion, conv);
                    assert_int_equal(pv->bits_allocated, 8);
                    assert_int_equal(pv->bits_stored, 8);
                    assert_int_equal(pv->high_bit, 7);
                    assert_int_equal(pv->samples_per_pixel, kind == 0 ? 1 : 3);
                    assert_int_equal(pv->interlaced, prog != 0);
                    assert_int_equal(pv->frame_index, 0);
                    assert_int_equal(pv->frame_count, 1);
                    assert_int_equal(pv->voi, MS_VOI_NONE);
                    assert_int_equal(pv->modality_lut, MS_MODLUT_NONE);
                    assert_int_equal(pv->spacing_source, MS_SPACING_NONE);
                    assert_string_equal(pv->transfer_syntax, "");
                    free(e);
                    ms_image_destroy(img);
                    free(m.p);
                }
}

/* Progressive at quality 100 carries the same coefficients as baseline: identical pixels. */
static void test_jpeg_progressive_equals_baseline(void **state) {
    (void)state;
    for (int kind = 0; kind < 4; kind++) {
        membuf b = encode_std(40, 33, kind, false), p = encode_std(40, 33, kind, true);
        assert_true(b.n != p.n || memcmp(b.p, p.p, b.n) != 0);
        for (int mode = 0; mode < 2; mode++) {
            ms_image *ib = decode_ok(&b, (ms_color_mode)mode, "baseline");
            ms_image *ip = decode_ok(&p, (ms_color_mode)mode, "progressive");
            size_t n = (size_t)40 * 33 * (size_t)ib->channels;
            assert_memory_equal(ib->data, ip->data, n * sizeof(float));
            ms_image_destroy(ib);
            ms_image_destroy(ip);
        }
        free(b.p);
        free(p.p);
    }
    /* arithmetic coding decodes to the same pixels too */
    enc_opts eo = {3, JCS_RGB, JCS_YCbCr, false, false, true, 100};
    uint8_t *px = make_pattern(40, 33, 3);
    membuf a = encode(40, 33, &eo, px);
    eo.arith = false;
    membuf h = encode(40, 33, &eo, px);
    free(px);
    ms_image *ia = decode_ok(&a, MS_COLOR_RGB, "arithmetic");
    ms_image *ih = decode_ok(&h, MS_COLOR_RGB, "huffman");
    assert_memory_equal(ia->data, ih->data, (size_t)40 * 33 * 3 * sizeof(float));
    ms_image_destroy(ia);
    ms_image_destroy(ih);
    free(a.p);
    free(h.p);
}

static void expect_failure(const uint8_t *d, size_t n, const char *what, ms_status *st_out,
                           char *msg_out, size_t msg_size) {
    expect_decode_failure(NAME, d, n, what, st_out, msg_out, msg_size);
}

static void test_jpeg_truncated(void **state) {
    (void)state;
    for (int kind = 0; kind < 4; kind += 1)
        for (int prog = 0; prog < 2; prog++) {
            membuf m = encode_std(19, 14, kind, prog != 0);
            for (size_t cut = 0; cut < m.n; cut++) {
                char what[64], msg[MS_ERR_MSG_MAX];
                snprintf(what, sizeof what, "kind %d prog %d cut %zu of %zu", kind, prog, cut, m.n);
                uint8_t *d = malloc(cut ? cut : 1); /* exact size: ASan sees over-reads */
                assert_non_null(d);
                memcpy(d, m.p, cut);
                ms_status st;
                expect_failure(d, cut, what, &st, msg, sizeof msg);
                free(d);
                if (cut < 3) {
                    assert_int_equal(st, MS_ENOTIMAGE);
                } else {
                    if (st != MS_EFORMAT) fail_msg("%s: status %d: %s", what, (int)st, msg);
                    char want[64];
                    snprintf(want, sizeof want, "%s: truncated JPEG data", NAME);
                    if (strstr(msg, want) == NULL) fail_msg("%s: message %s", what, msg);
                }
            }
            free(m.p);
        }
}

/* Offset of the first marker m after SOI (walking segment lengths), or 0. */
static size_t find_marker(const membuf *m, uint8_t marker) {
    size_t off = 2;
    while (off + 4 <= m->n && m->p[off] == 0xFF) {
        if (m->p[off + 1] == marker) return off;
        if (m->p[off + 1] == 0xDA) return 0; /* entropy data follows */
        off += 2 + ((size_t)m->p[off + 2] << 8 | m->p[off + 3]);
    }
    return 0;
}

static void test_jpeg_corrupt(void **state) {
    (void)state;
    membuf m = encode_std(24, 16, 1, false);
    uint8_t *d = malloc(m.n + 16);
    assert_non_null(d);
    ms_status st;
    char msg[MS_ERR_MSG_MAX];

    /* Every byte flipped: no crash; any failure names the file. JPEG has no checksum, so
     * flips inside entropy data may decode to other pixels. */
    int failures = 0;
    for (size_t i = 0; i < m.n; i++) {
        memcpy(d, m.p, m.n);
        d[i] ^= 0xFF;
        ms_image *img = NULL;
        ms_err err;
        ms_err_clear(&err);
        if (ms_image_decode(d, m.n, NAME, NULL, NULL, &img, &err) == MS_OK) {
            ms_image_destroy(img);
        } else {
            assert_null(img);
            if (strstr(err.msg, NAME) == NULL) fail_msg("flip at %zu: %s", i, err.msg);
            failures++;
        }
    }
    assert_true(failures > 10);

    /* An entropy segment cut by a marker: libjpeg would zero the rest; we refuse. */
    size_t sos = find_marker(&m, 0xDA);
    assert_true(sos > 0);
    size_t data = sos + 2 + ((size_t)m.p[sos + 2] << 8 | m.p[sos + 3]);
    size_t mid = data + (m.n - 2 - data) / 3;
    while (m.p[mid - 1] == 0xFF || m.p[mid] == 0xFF) mid++;
    memcpy(d, m.p, m.n);
    d[mid] = 0xFF;
    d[mid + 1] = 0xD9;
    expect_failure(d, m.n, "marker in entropy data", &st, msg, sizeof msg);
    assert_int_equal(st, MS_EFORMAT);
    assert_non_null(strstr(msg, "premature end of data segment"));

    /* Bogus SOF length */
    size_t sof = find_marker(&m, 0xC0);
    assert_true(sof > 0);
    memcpy(d, m.p, m.n);
    d[sof + 2] = 0;
    d[sof + 3] = 3;
    expect_failure(d, m.n, "SOF length", &st, msg, sizeof msg);
    assert_int_equal(st, MS_EFORMAT);
    assert_non_null(strstr(msg, "scan.jpg: JPEG error: "));

    /* Zero width */
    memcpy(d, m.p, m.n);
    d[sof + 7] = d[sof + 8] = 0;
    expect_failure(d, m.n, "zero width", &st, NULL, 0);
    assert_int_equal(st, MS_EFORMAT);

    /* Missing quantisation tables: every DQT renamed to COM. (A missing DHT is not an error:
     * libjpeg-turbo falls back to the standard tables, as Motion-JPEG requires.) */
    memcpy(d, m.p, m.n);
    for (size_t off = 2; off + 4 <= m.n && d[off] == 0xFF && d[off + 1] != 0xDA;
         off += 2 + ((size_t)d[off + 2] << 8 | d[off + 3]))
        if (d[off + 1] == 0xDB) d[off + 1] = 0xFE;
    expect_failure(d, m.n, "no DQT", &st, msg, sizeof msg);
    assert_int_equal(st, MS_EFORMAT);
    assert_non_null(strstr(msg, "Quantization table 0x00 was not defined"));

    /* Extraneous bytes before a marker: a warning only (pixels intact), logged not fatal. */
    size_t dqt = find_marker(&m, 0xDB);
    assert_true(dqt > 0);
    memcpy(d, m.p, dqt);
    d[dqt] = 0x12;
    d[dqt + 1] = 0x34;
    memcpy(d + dqt + 2, m.p + dqt, m.n - dqt);
    membuf x = {d, m.n + 2};
    ms_image *a = decode_ok(&x, MS_COLOR_GRAY, "extraneous");
    ms_image *b = decode_ok(&m, MS_COLOR_GRAY, "original");
    assert_memory_equal(a->data, b->data, (size_t)24 * 16 * sizeof(float));
    ms_image_destroy(a);
    ms_image_destroy(b);
    free(d);
    free(m.p);
}

static void test_jpeg_mutations(void **state) {
    (void)state;
    uint32_t rng = 777u;
    for (int kind = 0; kind < 4; kind++) {
        membuf m = encode_std(23, 18, kind, (kind & 1) != 0);
        mutate_and_decode(m.p, m.n, 3, 500, &rng, NAME);
        free(m.p);
    }
}

/* Minimal hand-made headers: SOI, SOFn (1 component), EOI. */
static membuf sof_header(uint8_t sof, uint8_t precision) {
    static const uint8_t t[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J',  'F',  'I',
                                'F',  0,    1,    1,    0,    0,    1,    0,    1,
                                0,    0,    0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x10,
                                0x00, 0x10, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9};
    membuf m = {malloc(sizeof t), sizeof t};
    assert_non_null(m.p);
    memcpy(m.p, t, sizeof t);
    m.p[21] = sof;
    m.p[24] = precision;
    return m;
}

static void test_jpeg_unsupported(void **state) {
    (void)state;
    ms_status st;
    char msg[MS_ERR_MSG_MAX];
    static const struct {
        uint8_t sof, precision;
        const char *words;
    } cases[] = {
        {0xC1, 12, "12-bit JPEG is not supported"}, {0xC2, 12, "12-bit JPEG is not supported"},
        {0xC0, 16, "16-bit JPEG is not supported"}, {0xC3, 8, "lossless JPEG (SOF3)"},
        {0xC3, 16, "lossless JPEG (SOF3)"},         {0xCB, 12, "lossless JPEG (SOF11)"},
        {0xC7, 8, "lossless JPEG (SOF7)"},          {0xC5, 8, "hierarchical JPEG (SOF5)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        membuf m = sof_header(cases[k].sof, cases[k].precision);
        expect_failure(m.p, m.n, cases[k].words, &st, msg, sizeof msg);
        assert_int_equal(st, MS_EUNSUPPORTED);
        if (strstr(msg, cases[k].words) == NULL) fail_msg("message: %s", msg);
        free(m.p);
    }

    /* A real 8-bit file whose SOF claims 12 bits. */
    membuf m = encode_std(16, 16, 1, false);
    size_t sof = find_marker(&m, 0xC0);
    m.p[sof + 4] = 12;
    expect_failure(m.p, m.n, "patched precision", &st, msg, sizeof msg);
    assert_int_equal(st, MS_EUNSUPPORTED);
    assert_non_null(strstr(msg, "scan.jpg: 12-bit JPEG"));
    free(m.p);

    /* CMYK (Adobe) is refused rather than converted with a guessed profile. */
    enc_opts eo = {4, JCS_CMYK, JCS_CMYK, false, false, false, 95};
    uint8_t *px = make_pattern(16, 8, 4);
    m = encode(16, 8, &eo, px);
    free(px);
    expect_failure(m.p, m.n, "cmyk", &st, msg, sizeof msg);
    assert_int_equal(st, MS_EUNSUPPORTED);
    assert_non_null(strstr(msg, "scan.jpg: CMYK"));
    free(m.p);
}

static void put_u16be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void test_jpeg_limits(void **state) {
    (void)state;
    membuf m = encode_std(40, 30, 1, true);
    ms_image *img = NULL;
    ms_err err;
    ms_limits lim = ms_limits_default();
    lim.max_pixels = 40 * 30;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_OK);
    ms_image_destroy(img);
    img = NULL;
    lim.max_pixels = 40 * 30 - 1;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    assert_non_null(strstr(err.msg, NAME));
    assert_null(img);
    lim = ms_limits_default();
    lim.max_width = 39;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    lim = ms_limits_default();
    lim.max_height = 29;
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    lim = ms_limits_default();
    lim.max_decoded_bytes = 40 * 30 - 1; /* grey output: 1 byte per pixel */
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
    assert_null(img);

    /* Progressive decoding holds every coefficient (2 bytes per sample here), capped at
     * 2 x max_decoded_bytes; baseline streams rows and needs no such buffer. */
    {
        membuf p512 = encode_std(512, 512, 0, true), b512 = encode_std(512, 512, 0, false);
        lim = ms_limits_default();
        lim.max_decoded_bytes = 512 * 512; /* the grey output itself fits exactly */
        ms_err_clear(&err);
        assert_int_equal(ms_image_decode(p512.p, p512.n, NAME, NULL, &lim, &img, &err), MS_ELIMIT);
        assert_non_null(strstr(err.msg, "scan.jpg: JPEG needs more than 524288 bytes"));
        assert_null(img);
        assert_int_equal(ms_image_decode(b512.p, b512.n, NAME, NULL, &lim, &img, &err), MS_OK);
        ms_image_destroy(img);
        img = NULL;
        lim.max_decoded_bytes = 2 * 512 * 512;
        assert_int_equal(ms_image_decode(p512.p, p512.n, NAME, NULL, &lim, &img, &err), MS_OK);
        ms_image_destroy(img);
        img = NULL;
        free(p512.p);
        free(b512.p);
    }

    /* The same tiny file claiming huge sizes: refused before any image-sized allocation. */
    size_t sof = find_marker(&m, 0xC2);
    assert_true(sof > 0);
    static const uint32_t dims[][2] = {{65535, 65535}, {60000, 60000}, {50000, 1}, {20000, 20000}};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        put_u16be(m.p + sof + 5, dims[k][1]);
        put_u16be(m.p + sof + 7, dims[k][0]);
        lim = ms_limits_default();
        if (k == 2) lim.max_width = 40000;
        if (k == 3) lim.max_pixels = 1u << 20; /* lowered limit */
        hook_state hs = {0};
        hooks_install(&hs);
        ms_err_clear(&err);
        ms_status st = ms_image_decode(m.p, m.n, NAME, NULL, &lim, &img, &err);
        ms_alloc_set_hooks(NULL);
        if (st != MS_ELIMIT)
            fail_msg("%ux%u: status %d: %s", dims[k][0], dims[k][1], (int)st, err.msg);
        assert_null(img);
        assert_non_null(strstr(err.msg, NAME));
        assert_int_equal(hs.live, 0);
        assert_true(hs.biggest < 64 * 1024);
    }
    free(m.p);
}

/* Builds a progressive file with the first scan (DC first pass, which does not depend on
 * earlier scans) repeated reps extra times. */
static membuf repeat_first_scan(const membuf *m, size_t reps) {
    size_t sos = find_marker(m, 0xDA);
    assert_true(sos > 0);
    size_t end = sos + 2 + ((size_t)m->p[sos + 2] << 8 | m->p[sos + 3]);
    while (end + 1 < m->n &&
           !(m->p[end] == 0xFF && m->p[end + 1] != 0 && (m->p[end + 1] & 0xF8) != 0xD0))
        end++;
    size_t seg = end - sos;
    membuf b = {malloc(m->n + seg * reps), m->n + seg * reps};
    assert_non_null(b.p);
    memcpy(b.p, m->p, end);
    for (size_t r = 0; r < reps; r++) memcpy(b.p + end + r * seg, m->p + sos, seg);
    memcpy(b.p + end + reps * seg, m->p + end, m->n - end);
    return b;
}

/* Progressive scans repeated past the scan cap: refused as a limit, not decoded forever. */
static void test_jpeg_scan_bomb(void **state) {
    (void)state;
    membuf m = encode_std(16, 16, 0, true);
    membuf b = repeat_first_scan(&m, 600);
    ms_status st;
    char msg[MS_ERR_MSG_MAX];
    expect_failure(b.p, b.n, "scan bomb", &st, msg, sizeof msg);
    if (st != MS_ELIMIT) fail_msg("scan bomb: %s", msg);
    assert_non_null(strstr(msg, "scan.jpg: JPEG has more than 500 scans"));
    free(b.p);

    /* A few repeated scans stay under the cap and decode to the same pixels. */
    b = repeat_first_scan(&m, 3);
    ms_image *a = decode_ok(&b, MS_COLOR_GRAY, "3 repeated scans");
    ms_image *o = decode_ok(&m, MS_COLOR_GRAY, "original");
    assert_memory_equal(a->data, o->data, 16 * 16 * sizeof(float));
    ms_image_destroy(a);
    ms_image_destroy(o);
    free(b.p);
    free(m.p);
}

static void test_jpeg_alloc_failure(void **state) {
    (void)state;
    for (int kind = 0; kind < 4; kind++)
        for (int mode = 0; mode < 2; mode++) {
            membuf m = encode_std(21, 13, kind, kind == 1);
            ms_decode_opts o = ms_decode_opts_default();
            o.color = (ms_color_mode)mode;
            long n;
            for (n = 1; n < 1000; n++) {
                hook_state hs = {0};
                hs.fail_at = n;
                hooks_install(&hs);
                ms_image *img = NULL;
                ms_err err;
                ms_err_clear(&err);
                ms_status st = ms_image_decode(m.p, m.n, NAME, &o, NULL, &img, &err);
                ms_alloc_set_hooks(NULL);
                if (st == MS_OK) {
                    assert_true(hs.count < n);
                    ms_image_destroy(img);
                    break;
                }
                if (st != MS_ENOMEM) fail_msg("allocation %ld: status %d: %s", n, (int)st, err.msg);
                assert_null(img);
                assert_non_null(strstr(err.msg, NAME));
                if (hs.live != 0) fail_msg("allocation %ld: %ld blocks leaked", n, hs.live);
            }
            /* Ours only (libjpeg allocates with its own malloc): source, row, image, pixels. */
            assert_int_equal(n, 5);
            free(m.p);
        }
}

static void test_jpeg_bad_args(void **state) {
    (void)state;
    membuf m = encode_std(8, 8, 0, false);
    ms_decode_opts o = ms_decode_opts_default();
    o.frame = 1;
    ms_image *img = NULL;
    ms_err err;
    ms_err_clear(&err);
    assert_int_equal(ms_jpeg_decode(m.p, m.n, NAME, &o, NULL, &img, &err), MS_EINVAL);
    assert_null(img);
    assert_non_null(strstr(err.msg, NAME));
    assert_int_equal(ms_image_decode(m.p, m.n, NAME, &o, NULL, &img, &err), MS_EINVAL);
    o.frame = 0;
    o.color = (ms_color_mode)9;
    assert_int_equal(ms_jpeg_decode(m.p, m.n, NAME, &o, NULL, &img, &err), MS_EINVAL);
    assert_int_equal(ms_jpeg_decode(m.p, m.n, NAME, NULL, NULL, NULL, &err), MS_EINVAL);
    assert_int_equal(ms_jpeg_decode(m.p, m.n, NAME, NULL, NULL, &img, NULL), MS_OK);
    ms_image_destroy(img);
    free(m.p);
}

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

/* libjpeg's warnings and errors reach ms_log, never stderr. */
static void test_jpeg_messages_not_on_stderr(void **state) {
    (void)state;
    membuf m = encode_std(24, 16, 0, false);
    size_t dqt = find_marker(&m, 0xDB);
    membuf x = {malloc(m.n + 2), m.n + 2};
    assert_non_null(x.p);
    memcpy(x.p, m.p, dqt);
    x.p[dqt] = 0x00;
    x.p[dqt + 1] = 0x00;
    memcpy(x.p + dqt + 2, m.p + dqt, m.n - dqt);

    fflush(stderr);
    char path[] = "/tmp/ms_test_jpeg_stderrXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) >= 0);
    log_capture lc = {0};
    ms_log_set_callback(log_cb, &lc, MS_LOG_DEBUG);
    ms_image *img = NULL;
    ms_err err;
    ms_status st = ms_image_decode(x.p, x.n, NAME, NULL, NULL, &img, &err);
    ms_status st2 = ms_image_decode(x.p, x.n / 2, NAME, NULL, NULL, &img, &err);
    ms_log_set_callback(NULL, NULL, MS_LOG_WARN);
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    off_t end = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);

    assert_int_equal(st, MS_OK);
    ms_image_destroy(img);
    assert_int_equal(st2, MS_EFORMAT);
    assert_true(lc.count >= 1);
    assert_non_null(strstr(lc.last, "scan.jpg: JPEG warning: Corrupt JPEG data: 2 extraneous"));
    assert_int_equal(end, 0);
    free(x.p);
    free(m.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg_matches_reference_and_pattern),
        cmocka_unit_test(test_jpeg_progressive_equals_baseline),
        cmocka_unit_test(test_jpeg_truncated),
        cmocka_unit_test(test_jpeg_corrupt),
        cmocka_unit_test(test_jpeg_mutations),
        cmocka_unit_test(test_jpeg_unsupported),
        cmocka_unit_test(test_jpeg_limits),
        cmocka_unit_test(test_jpeg_scan_bomb),
        cmocka_unit_test(test_jpeg_alloc_failure),
        cmocka_unit_test(test_jpeg_bad_args),
        cmocka_unit_test(test_jpeg_messages_not_on_stderr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
