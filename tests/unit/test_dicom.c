/* DICOM loader tests on synthetic objects written by a tiny encoder below, so that every
 * expected pixel value follows from the standard's formulas (PS3.3 C.11) and not from the
 * code under test. Real-world files are covered by tests/conformance. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "alloc_hooks.h"

#include "medscreen/core.h"
#include "medscreen/loader.h"

/* cmocka 1.1's float assertion works in float; compare in double. */
#define expect_near(a, b, tol) expect_near_at((double)(a), (double)(b), (tol), __LINE__)
static void expect_near_at(double a, double b, double tol, int line) {
    if (!(fabs(a - b) <= tol)) fail_msg("line %d: %.9g != %.9g (tolerance %g)", line, a, b, tol);
}

/* ---- a minimal DICOM writer ------------------------------------------------------------ */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 4096) + n;
        uint8_t *q = realloc(b->p, cap);
        assert_non_null(q);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

typedef enum enc { EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE } enc;

static void put_u16(buf *b, uint16_t v, bool be) {
    uint8_t x[2] = {be ? (uint8_t)(v >> 8) : (uint8_t)v, be ? (uint8_t)v : (uint8_t)(v >> 8)};
    put(b, x, 2);
}
static void put_u32(buf *b, uint32_t v, bool be) {
    if (be) {
        put_u16(b, (uint16_t)(v >> 16), true);
        put_u16(b, (uint16_t)v, true);
    } else {
        put_u16(b, (uint16_t)v, false);
        put_u16(b, (uint16_t)(v >> 16), false);
    }
}

static bool long_vr(const char *vr) {
    return !strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "SQ") || !strcmp(vr, "UN") ||
           !strcmp(vr, "UT");
}

/* One element with a raw value (already in the target byte order). */
static void elem(buf *b, enc e, uint16_t g, uint16_t el, const char *vr, const void *v,
                 uint32_t len) {
    bool be = e == EXPLICIT_BE && g != 0x0002;
    put_u16(b, g, be);
    put_u16(b, el, be);
    if (e == IMPLICIT_LE && g != 0x0002) {
        put_u32(b, len, false);
    } else {
        put(b, vr, 2);
        if (long_vr(vr)) {
            put_u16(b, 0, be);
            put_u32(b, len, be);
        } else {
            put_u16(b, (uint16_t)len, be);
        }
    }
    if (len && v) put(b, v, len);
}

static void elem_str(buf *b, enc e, uint16_t g, uint16_t el, const char *vr, const char *s) {
    size_t n = strlen(s);
    char tmp[256];
    memcpy(tmp, s, n);
    if (n % 2) tmp[n++] = !strcmp(vr, "UI") ? '\0' : ' ';
    elem(b, e, g, el, vr, tmp, (uint32_t)n);
}

static void elem_us(buf *b, enc e, uint16_t g, uint16_t el, uint16_t v) {
    uint8_t x[2];
    bool be = e == EXPLICIT_BE;
    x[0] = be ? (uint8_t)(v >> 8) : (uint8_t)v;
    x[1] = be ? (uint8_t)v : (uint8_t)(v >> 8);
    elem(b, e, g, el, "US", x, 2);
}

typedef struct spec {
    enc encoding;
    const char *ts; /* NULL: the encoding's own */
    bool no_meta;   /* bare data set */
    const char *photometric;
    uint16_t rows, cols, frames, spp, bits_alloc, bits_stored, high_bit, pixrep, planar;
    const char *rescale_slope, *rescale_intercept;
    const char *window_center, *window_width, *voi_function;
    const char *presentation_shape;
    const char *pixel_spacing, *imager_spacing, *modality;
    /* LUTs: descriptor + 16-bit data (modality LUT, VOI LUT, palette) */
    const uint16_t *mlut_desc, *mlut_data;
    const uint16_t *vlut_desc, *vlut_data;
    const uint16_t *pal_desc, *pal_data[3];
    const void *pixels; /* host order samples; NULL: no pixel data */
    size_t pixel_bytes;
} spec;

static const char *ts_of(const spec *s) {
    if (s->ts) return s->ts;
    return s->encoding == IMPLICIT_LE   ? "1.2.840.10008.1.2"
           : s->encoding == EXPLICIT_BE ? "1.2.840.10008.1.2.2"
                                        : "1.2.840.10008.1.2.1";
}

static void lut_item(buf *b, enc e, uint16_t seq, const uint16_t *desc, const uint16_t *data) {
    buf item = {0};
    uint8_t d[6];
    for (int i = 0; i < 3; i++) {
        d[2 * i] = (uint8_t)desc[i];
        d[2 * i + 1] = (uint8_t)(desc[i] >> 8);
    }
    elem(&item, e, 0x0028, 0x3002, "US", d, 6);
    uint32_t n = desc[0] ? desc[0] : 65536u;
    elem(&item, e, 0x0028, 0x3006, "OW", data, n * 2);
    buf sq = {0};
    put_u16(&sq, 0xFFFE, false);
    put_u16(&sq, 0xE000, false);
    put_u32(&sq, (uint32_t)item.n, false);
    put(&sq, item.p, item.n);
    elem(b, e, 0x0028, seq, "SQ", sq.p, (uint32_t)sq.n);
    free(item.p);
    free(sq.p);
}

/* Builds the data set (explicit/implicit little endian only for LUTs). */
static void dataset(buf *b, const spec *s) {
    enc e = s->encoding;
    elem_str(b, e, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.1.1");
    elem_str(b, e, 0x0008, 0x0018, "UI", "1.2.3.4.5.6");
    elem_str(b, e, 0x0008, 0x0060, "CS", s->modality ? s->modality : "DX");
    elem_str(b, e, 0x0018, 0x0015, "CS", "CHEST");
    if (s->imager_spacing) elem_str(b, e, 0x0018, 0x1164, "DS", s->imager_spacing);
    elem_str(b, e, 0x0018, 0x5101, "CS", "PA");
    elem_str(b, e, 0x0020, 0x000D, "UI", "1.2.3.4.1");
    elem_str(b, e, 0x0020, 0x000E, "UI", "1.2.3.4.2");
    elem_us(b, e, 0x0028, 0x0002, s->spp ? s->spp : 1);
    if (s->photometric) elem_str(b, e, 0x0028, 0x0004, "CS", s->photometric);
    if (s->spp == 3) elem_us(b, e, 0x0028, 0x0006, s->planar);
    if (s->frames) {
        char f[16];
        snprintf(f, sizeof f, "%u", s->frames);
        elem_str(b, e, 0x0028, 0x0008, "IS", f);
    }
    elem_us(b, e, 0x0028, 0x0010, s->rows);
    elem_us(b, e, 0x0028, 0x0011, s->cols);
    if (s->pixel_spacing) elem_str(b, e, 0x0028, 0x0030, "DS", s->pixel_spacing);
    elem_us(b, e, 0x0028, 0x0100, s->bits_alloc);
    elem_us(b, e, 0x0028, 0x0101, s->bits_stored);
    elem_us(b, e, 0x0028, 0x0102, s->high_bit);
    elem_us(b, e, 0x0028, 0x0103, s->pixrep);
    if (s->pal_desc) {
        for (uint16_t c = 0; c < 3; c++) {
            uint8_t d[6];
            for (int i = 0; i < 3; i++) {
                d[2 * i] = (uint8_t)s->pal_desc[i];
                d[2 * i + 1] = (uint8_t)(s->pal_desc[i] >> 8);
            }
            elem(b, e, 0x0028, (uint16_t)(0x1101 + c), "US", d, 6);
        }
    }
    if (s->window_center) elem_str(b, e, 0x0028, 0x1050, "DS", s->window_center);
    if (s->window_width) elem_str(b, e, 0x0028, 0x1051, "DS", s->window_width);
    if (s->rescale_intercept) elem_str(b, e, 0x0028, 0x1052, "DS", s->rescale_intercept);
    if (s->rescale_slope) elem_str(b, e, 0x0028, 0x1053, "DS", s->rescale_slope);
    if (s->voi_function) elem_str(b, e, 0x0028, 0x1056, "CS", s->voi_function);
    if (s->pal_desc) {
        uint32_t n = s->pal_desc[0] ? s->pal_desc[0] : 65536u;
        for (uint16_t c = 0; c < 3; c++)
            elem(b, e, 0x0028, (uint16_t)(0x1201 + c), "OW", s->pal_data[c], n * 2);
    }
    if (s->mlut_desc) lut_item(b, e, 0x3000, s->mlut_desc, s->mlut_data);
    if (s->vlut_desc) lut_item(b, e, 0x3010, s->vlut_desc, s->vlut_data);
    if (s->presentation_shape) elem_str(b, e, 0x2050, 0x0020, "CS", s->presentation_shape);
    if (s->pixels) {
        const char *vr = s->bits_alloc > 8 ? "OW" : "OB";
        if (e == EXPLICIT_BE && s->bits_alloc == 16) {
            uint8_t *sw = malloc(s->pixel_bytes);
            assert_non_null(sw);
            const uint8_t *src = s->pixels;
            for (size_t i = 0; i + 1 < s->pixel_bytes; i += 2) {
                sw[i] = src[i + 1];
                sw[i + 1] = src[i];
            }
            elem(b, e, 0x7FE0, 0x0010, vr, sw, (uint32_t)s->pixel_bytes);
            free(sw);
        } else {
            elem(b, e, 0x7FE0, 0x0010, vr, s->pixels, (uint32_t)s->pixel_bytes);
        }
    }
}

static buf make_dicom(const spec *s) {
    buf b = {0};
    if (!s->no_meta) {
        uint8_t pre[128] = {0};
        put(&b, pre, 128);
        put(&b, "DICM", 4);
        buf meta = {0};
        uint8_t ver[2] = {0, 1};
        elem(&meta, EXPLICIT_LE, 0x0002, 0x0001, "OB", ver, 2);
        elem_str(&meta, EXPLICIT_LE, 0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.1.1");
        elem_str(&meta, EXPLICIT_LE, 0x0002, 0x0003, "UI", "1.2.3.4.5.6");
        elem_str(&meta, EXPLICIT_LE, 0x0002, 0x0010, "UI", ts_of(s));
        uint8_t gl[4] = {(uint8_t)meta.n, (uint8_t)(meta.n >> 8), 0, 0};
        elem(&b, EXPLICIT_LE, 0x0002, 0x0000, "UL", gl, 4);
        put(&b, meta.p, meta.n);
        free(meta.p);
    }
    dataset(&b, s);
    return b;
}

static ms_image *decode_ok(const buf *b, const ms_decode_opts *o) {
    ms_image *img = NULL;
    ms_err err = {0};
    ms_limits lim = ms_limits_default();
    ms_status st = ms_image_decode(b->p, b->n, "synthetic.dcm", o, &lim, &img, &err);
    if (st != MS_OK) fail_msg("decode failed: %s (%s)", err.msg, ms_status_name(st));
    return img;
}

static ms_status decode_status(const buf *b, const ms_limits *lim, ms_err *err) {
    ms_image *img = NULL;
    ms_limits deflim = ms_limits_default();
    ms_status st =
        ms_image_decode(b->p, b->n, "synthetic.dcm", NULL, lim ? lim : &deflim, &img, err);
    ms_image_destroy(img);
    return st;
}

/* PS3.3 C.11.2.1.2.1, written out again for the test with y in [0,1]. */
static double linear_window(double x, double c, double w) {
    if (x <= c - 0.5 - (w - 1) / 2) return 0;
    if (x > c - 0.5 + (w - 1) / 2) return 1;
    return (x - (c - 0.5)) / (w - 1) + 0.5;
}

#define W 16
#define H 8

static spec mono16(uint16_t *px) {
    spec s;
    memset(&s, 0, sizeof s);
    s.encoding = EXPLICIT_LE;
    s.photometric = "MONOCHROME2";
    s.rows = H;
    s.cols = W;
    s.spp = 1;
    s.bits_alloc = 16;
    s.bits_stored = 12;
    s.high_bit = 11;
    s.pixels = px;
    s.pixel_bytes = W * H * 2;
    return s;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* Bits above High Bit are garbage (overlay bits in old files) and must be masked off. */
static void test_masking_rescale_window(void **state) {
    (void)state;
    uint16_t px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (uint16_t)((i * 37) % 4096 | 0xF000);
    spec s = mono16(px);
    s.rescale_slope = "2";
    s.rescale_intercept = "-1024";
    s.window_center = "1000";
    s.window_width = "3001";
    buf b = make_dicom(&s);
    ms_image *img = decode_ok(&b, NULL);
    assert_int_equal(img->width, W);
    assert_int_equal(img->height, H);
    for (int i = 0; i < W * H; i++) {
        double x = ((i * 37) % 4096) * 2.0 - 1024;
        expect_near(img->data[i], linear_window(x, 1000, 3001), 1e-6);
    }
    assert_int_equal(img->prov.voi, MS_VOI_WINDOW);
    assert_int_equal(img->prov.modality_lut, MS_MODLUT_RESCALE);
    expect_near(img->prov.rescale_slope, 2.0, 0);
    expect_near(img->prov.window_center, 1000, 0);
    assert_string_equal(img->prov.transfer_syntax, "1.2.840.10008.1.2.1");
    assert_string_equal(img->prov.modality, "DX");
    assert_string_equal(img->prov.body_part, "CHEST");
    assert_string_equal(img->prov.view_position, "PA");
    assert_string_equal(img->prov.sop_uid, "1.2.3.4.5.6");
    assert_int_equal(img->prov.spacing_source, MS_SPACING_NONE);
    ms_image_destroy(img);
    free(b.p);
}

/* Signed 12-bit in 16: the sign bit is bit 11; higher bits may be anything. */
static void test_signed_and_high_bit(void **state) {
    (void)state;
    uint16_t px[W * H];
    int16_t vals[W * H];
    for (int i = 0; i < W * H; i++) {
        vals[i] = (int16_t)(i * 31 - 2048);
        if (vals[i] > 2047) vals[i] = 2047;
        /* stored at bits 11..0, with bits 15..12 garbage */
        px[i] = (uint16_t)(((uint16_t)vals[i] & 0x0FFF) | ((i & 1) ? 0xA000 : 0));
    }
    spec s = mono16(px);
    s.pixrep = 1;
    s.window_center = "0";
    s.window_width = "4096";
    s.voi_function = "LINEAR_EXACT";
    buf b = make_dicom(&s);
    ms_image *img = decode_ok(&b, NULL);
    for (int i = 0; i < W * H; i++) {
        double y = vals[i] / 4096.0 + 0.5; /* LINEAR_EXACT, PS3.3 C.11.2.1.3.2 */
        expect_near(img->data[i], y < 0 ? 0 : y, 1e-6);
    }
    assert_true(img->prov.is_signed);
    assert_int_equal(img->prov.voi_function, MS_VOI_FN_LINEAR_EXACT);
    ms_image_destroy(img);
    free(b.p);

    /* High Bit above Bits Stored - 1: values sit in bits 13..2. */
    for (int i = 0; i < W * H; i++) px[i] = (uint16_t)(((i * 29) % 4096) << 2 | 0x3);
    s = mono16(px);
    s.high_bit = 13;
    b = make_dicom(&s);
    img = decode_ok(&b, NULL);
    int mn = 4096, mx = -1;
    for (int i = 0; i < W * H; i++) {
        int v = (i * 29) % 4096;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
    }
    for (int i = 0; i < W * H; i++)
        expect_near(img->data[i], ((i * 29) % 4096 - mn) / (double)(mx - mn), 1e-6);
    ms_image_destroy(img);
    free(b.p);
}

static void test_sigmoid_and_auto_window(void **state) {
    (void)state;
    uint16_t px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (uint16_t)(100 + i * 3);
    spec s = mono16(px);
    s.window_center = "300";
    s.window_width = "200";
    s.voi_function = "SIGMOID";
    buf b = make_dicom(&s);
    ms_image *img = decode_ok(&b, NULL);
    for (int i = 0; i < W * H; i++) {
        double x = 100 + i * 3;
        expect_near(img->data[i], 1.0 / (1.0 + exp(-4.0 * (x - 300) / 200)), 1e-6);
    }
    ms_image_destroy(img);
    free(b.p);

    /* No window: documented automatic min-max window over the modality values. */
    s.window_center = s.window_width = s.voi_function = NULL;
    s.rescale_slope = "-1"; /* a decreasing modality LUT must still map min to 0 */
    s.rescale_intercept = "0";
    b = make_dicom(&s);
    img = decode_ok(&b, NULL);
    double lo = -(100 + (W * H - 1) * 3.0), hi = -100;
    for (int i = 0; i < W * H; i++)
        expect_near(img->data[i], (-(100 + i * 3.0) - lo) / (hi - lo), 1e-6);
    assert_int_equal(img->prov.voi, MS_VOI_AUTO_MINMAX);
    expect_near(img->prov.window_width, hi - lo, 1e-9);
    ms_image_destroy(img);
    free(b.p);

    /* A user window overrides the file; an out-of-range VOI index is refused. */
    s.window_center = "500";
    s.window_width = "100";
    b = make_dicom(&s);
    ms_decode_opts o = ms_decode_opts_default();
    o.user_window = true;
    o.window_center = -200;
    o.window_width = 50;
    img = decode_ok(&b, &o);
    for (int i = 0; i < W * H; i++)
        expect_near(img->data[i], linear_window(-(100 + i * 3.0), -200, 50), 1e-6);
    assert_int_equal(img->prov.voi, MS_VOI_USER_WINDOW);
    ms_image_destroy(img);
    /* auto_window ignores the file's window: the min-max mapping from above again. */
    o = ms_decode_opts_default();
    o.auto_window = true;
    img = decode_ok(&b, &o);
    for (int i = 0; i < W * H; i++)
        expect_near(img->data[i], (-(100 + i * 3.0) - lo) / (hi - lo), 1e-6);
    assert_int_equal(img->prov.voi, MS_VOI_AUTO_MINMAX);
    ms_image_destroy(img);
    o = ms_decode_opts_default();
    o.voi_index = 3;
    ms_err err = {0};
    img = NULL;
    assert_int_equal(ms_image_decode(b.p, b.n, "synthetic.dcm", &o, NULL, &img, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "VOI index 3"));
    free(b.p);
}

/* MONOCHROME1 is inverted; INVERSE inverts MONOCHROME2; both together invert once. */
static void test_inversion(void **state) {
    (void)state;
    uint16_t px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (uint16_t)(i * 20);
    const struct {
        const char *pi, *shape;
        bool inverted;
        ms_inversion why;
    } cases[] = {{"MONOCHROME2", NULL, false, MS_INVERT_NONE},
                 {"MONOCHROME1", NULL, true, MS_INVERT_MONOCHROME1},
                 {"MONOCHROME2", "INVERSE", true, MS_INVERT_PRESENTATION_LUT},
                 {"MONOCHROME1", "INVERSE", true, MS_INVERT_MONOCHROME1},
                 {"MONOCHROME2", "IDENTITY", false, MS_INVERT_NONE}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        spec s = mono16(px);
        s.photometric = cases[c].pi;
        s.presentation_shape = cases[c].shape;
        s.window_center = "1270";
        s.window_width = "2541";
        buf b = make_dicom(&s);
        ms_image *img = decode_ok(&b, NULL);
        for (int i = 0; i < W * H; i++) {
            double y = linear_window(i * 20, 1270, 2541);
            expect_near(img->data[i], cases[c].inverted ? 1 - y : y, 1e-6);
        }
        assert_int_equal(img->prov.inversion, cases[c].why);
        ms_image_destroy(img);
        free(b.p);
    }
}

static void test_lut_sequences(void **state) {
    (void)state;
    uint16_t px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (uint16_t)(i % 64);
    /* Modality LUT: 32 entries from stored value 10; below/above clamp to the ends. */
    uint16_t mdesc[3] = {32, 10, 16}, mdata[32];
    for (int i = 0; i < 32; i++) mdata[i] = (uint16_t)(1000 + i * i);
    /* VOI LUT: 4096 entries from modality value 900, 12-bit output. */
    static uint16_t vdata[4096];
    uint16_t vdesc[3] = {4096, 900, 12};
    for (int i = 0; i < 4096; i++) vdata[i] = (uint16_t)(4095 - i);
    spec s = mono16(px);
    s.mlut_desc = mdesc;
    s.mlut_data = mdata;
    s.vlut_desc = vdesc;
    s.vlut_data = vdata;
    buf b = make_dicom(&s);
    ms_image *img = decode_ok(&b, NULL);
    for (int i = 0; i < W * H; i++) {
        int k = i % 64 - 10;
        k = k < 0 ? 0 : k > 31 ? 31 : k;
        int m = mdata[k] - 900;
        m = m < 0 ? 0 : m > 4095 ? 4095 : m;
        expect_near(img->data[i], vdata[m] / 4095.0, 1e-6);
    }
    assert_int_equal(img->prov.modality_lut, MS_MODLUT_SEQUENCE);
    assert_int_equal(img->prov.voi, MS_VOI_LUT_SEQUENCE);
    ms_image_destroy(img);
    free(b.p);
}

static void test_frames_and_encodings(void **state) {
    (void)state;
    enum { F = 3 };
    uint16_t px[F * W * H];
    for (int f = 0; f < F; f++)
        for (int i = 0; i < W * H; i++) px[f * W * H + i] = (uint16_t)(f * 1000 + i);
    const enc encs[3] = {EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE};
    for (int e = 0; e < 3; e++) {
        for (int bare = 0; bare < 2; bare++) {
            if (bare && encs[e] == EXPLICIT_BE) continue; /* big endian needs its meta header */
            spec s = mono16(px);
            s.encoding = encs[e];
            s.no_meta = bare;
            s.frames = F;
            s.pixel_bytes = sizeof px;
            s.window_center = "1500";
            s.window_width = "3001";
            s.pixel_spacing = "0.2\\0.25";
            buf b = make_dicom(&s);
            assert_int_equal(ms_format_detect(b.p, b.n), MS_FORMAT_DICOM);
            ms_source *src = NULL;
            ms_err err = {0};
            assert_int_equal(ms_source_open_memory(b.p, b.n, "multi.dcm", NULL, &src, &err), MS_OK);
            assert_int_equal(ms_source_frame_count(src), F);
            for (uint32_t f = 0; f < F; f++) {
                ms_decode_opts o = ms_decode_opts_default();
                o.frame = f;
                ms_image *img = NULL;
                assert_int_equal(ms_source_decode(src, &o, &img, &err), MS_OK);
                for (int i = 0; i < W * H; i++)
                    expect_near(img->data[i], linear_window(f * 1000.0 + i, 1500, 3001), 1e-6);
                assert_int_equal(img->prov.frame_index, f);
                assert_int_equal(img->prov.frame_count, F);
                assert_int_equal(img->prov.spacing_source, MS_SPACING_PIXEL);
                expect_near(img->prov.spacing_row_mm, 0.2, 1e-12);
                expect_near(img->prov.spacing_col_mm, 0.25, 1e-12);
                ms_image_destroy(img);
            }
            ms_decode_opts o = ms_decode_opts_default();
            o.frame = F;
            ms_image *img = NULL;
            assert_int_equal(ms_source_decode(src, &o, &img, &err), MS_EINVAL);
            assert_non_null(strstr(err.msg, "multi.dcm"));
            ms_source_destroy(src);
            free(b.p);
        }
    }
}

static void test_color(void **state) {
    (void)state;
    uint8_t inter[W * H * 3], planar[W * H * 3];
    for (int i = 0; i < W * H; i++)
        for (int c = 0; c < 3; c++) {
            uint8_t v = (uint8_t)((i * (c + 3) * 7) & 0xFF);
            inter[i * 3 + c] = v;
            planar[c * W * H + i] = v;
        }
    for (int pc = 0; pc < 2; pc++) {
        spec s;
        memset(&s, 0, sizeof s);
        s.encoding = EXPLICIT_LE;
        s.photometric = "RGB";
        s.rows = H;
        s.cols = W;
        s.spp = 3;
        s.planar = (uint16_t)pc;
        s.bits_alloc = s.bits_stored = 8;
        s.high_bit = 7;
        s.pixels = pc ? planar : inter;
        s.pixel_bytes = sizeof inter;
        buf b = make_dicom(&s);
        ms_image *img = decode_ok(&b, NULL);
        ms_decode_opts o = ms_decode_opts_default();
        o.color = MS_COLOR_RGB;
        ms_image *rgb = decode_ok(&b, &o);
        assert_int_equal(rgb->channels, 3);
        for (int i = 0; i < W * H; i++) {
            double r = inter[i * 3] / 255.0, g = inter[i * 3 + 1] / 255.0,
                   bl = inter[i * 3 + 2] / 255.0;
            expect_near(img->data[i], 0.299 * r + 0.587 * g + 0.114 * bl, 1e-6);
            expect_near(rgb->data[i], r, 1e-6);
            expect_near(rgb->data[W * H + i], g, 1e-6);
            expect_near(rgb->data[2 * W * H + i], bl, 1e-6);
        }
        assert_string_equal(img->prov.color_conversion, "rgb_to_luma");
        ms_image_destroy(img);
        ms_image_destroy(rgb);
        /* YBR_FULL: the luma is Y itself. */
        s.photometric = "YBR_FULL";
        free(b.p);
        b = make_dicom(&s);
        img = decode_ok(&b, NULL);
        for (int i = 0; i < W * H; i++) expect_near(img->data[i], inter[i * 3] / 255.0, 1e-6);
        ms_image_destroy(img);
        free(b.p);
    }

    /* Palette colour with 8-bit indices and 16-bit entries. */
    uint8_t idx[W * H];
    for (int i = 0; i < W * H; i++) idx[i] = (uint8_t)(i % 200);
    uint16_t pdesc[3] = {256, 0, 16}, pr[256], pg[256], pb[256];
    for (int i = 0; i < 256; i++) {
        pr[i] = (uint16_t)(i * 256);
        pg[i] = (uint16_t)(65535 - i * 256);
        pb[i] = (uint16_t)(i * 100);
    }
    spec s;
    memset(&s, 0, sizeof s);
    s.encoding = EXPLICIT_LE;
    s.photometric = "PALETTE COLOR";
    s.rows = H;
    s.cols = W;
    s.spp = 1;
    s.bits_alloc = s.bits_stored = 8;
    s.high_bit = 7;
    s.pal_desc = pdesc;
    s.pal_data[0] = pr;
    s.pal_data[1] = pg;
    s.pal_data[2] = pb;
    s.pixels = idx;
    s.pixel_bytes = sizeof idx;
    buf b = make_dicom(&s);
    ms_image *img = decode_ok(&b, NULL);
    for (int i = 0; i < W * H; i++) {
        int k = i % 200;
        double y = 0.299 * pr[k] / 65535.0 + 0.587 * pg[k] / 65535.0 + 0.114 * pb[k] / 65535.0;
        expect_near(img->data[i], y, 1e-5);
    }
    assert_string_equal(img->prov.color_conversion, "palette_to_luma");
    ms_image_destroy(img);
    free(b.p);
}

/* 1-bit data: packed from the least significant bit, frames not byte-aligned (PS3.5 8.1.1). */
static void test_one_bit(void **state) {
    (void)state;
    enum { R = 3, C = 5, F = 3 }; /* 15 bits a frame: frames 1 and 2 start mid-byte */
    uint8_t packed[(R * C * F + 7) / 8 + 1] = {0};
    bool bits[R * C * F];
    for (int i = 0; i < R * C * F; i++) {
        bits[i] = ((i * 7) % 5) < 2;
        if (bits[i]) packed[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    spec s;
    memset(&s, 0, sizeof s);
    s.encoding = EXPLICIT_LE;
    s.photometric = "MONOCHROME2";
    s.rows = R;
    s.cols = C;
    s.frames = F;
    s.spp = 1;
    s.bits_alloc = s.bits_stored = 1;
    s.pixels = packed;
    s.pixel_bytes = sizeof packed;
    buf b = make_dicom(&s);
    for (uint32_t f = 0; f < F; f++) {
        ms_decode_opts o = ms_decode_opts_default();
        o.frame = f;
        ms_image *img = decode_ok(&b, &o);
        for (int i = 0; i < R * C; i++)
            expect_near(img->data[i], bits[f * R * C + (uint32_t)i] ? 1 : 0, 0);
        ms_image_destroy(img);
    }
    free(b.p);
}

/* HTJ2K (no corpus file uses it): a committed fixture, see tests/data/README.md. */
static void test_htj2k_fixture(void **state) {
    (void)state;
    ms_image *img = NULL;
    ms_err err = {0};
    ms_status st =
        ms_image_load(MS_SOURCE_DIR "/tests/data/htj2k_lossless_12bit.dcm", NULL, NULL, &img, &err);
    if (st != MS_OK) fail_msg("%s", err.msg);
    assert_int_equal(img->width, 64);
    assert_int_equal(img->height, 48);
    assert_string_equal(img->prov.transfer_syntax, "1.2.840.10008.1.2.4.201");
    int mn = 1 << 30, mx = -1;
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 64; x++) {
            int v = (x * 37 + y * 101 + (x * y) % 251) % 4096;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 64; x++) {
            int v = (x * 37 + y * 101 + (x * y) % 251) % 4096;
            expect_near(img->data[y * 64 + x], (v - mn) / (double)(mx - mn), 1e-6);
        }
    ms_image_destroy(img);
}

static void expect_error(const buf *b, const ms_limits *lim, ms_status want, const char *needle) {
    ms_err err = {0};
    ms_status st = decode_status(b, lim, &err);
    if (st != want)
        fail_msg("expected %s, got %s: %s", ms_status_name(want), ms_status_name(st), err.msg);
    assert_non_null(strstr(err.msg, "synthetic.dcm"));
    if (needle && !strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_errors(void **state) {
    (void)state;
    uint16_t px[W * H] = {0};
    spec s = mono16(px);

    s.pixels = NULL; /* an SR-like object */
    buf b = make_dicom(&s);
    expect_error(&b, NULL, MS_ENOPIXELS, "no pixel data");
    free(b.p);

    s = mono16(px);
    s.ts = "1.2.840.10008.1.2.4.100"; /* MPEG2 */
    b = make_dicom(&s);
    expect_error(&b, NULL, MS_EUNSUPPORTED, "1.2.840.10008.1.2.4.100");
    free(b.p);

    s = mono16(px);
    s.bits_stored = 17;
    b = make_dicom(&s);
    expect_error(&b, NULL, MS_EFORMAT, "Bits Stored");
    free(b.p);

    s = mono16(px);
    s.photometric = "HSV";
    b = make_dicom(&s);
    expect_error(&b, NULL, MS_EUNSUPPORTED, "HSV");
    free(b.p);

    s = mono16(px);
    s.pixel_bytes = sizeof px - 2; /* too short for the frame */
    b = make_dicom(&s);
    ms_err err = {0};
    assert_int_not_equal(decode_status(&b, NULL, &err), MS_OK);
    assert_non_null(strstr(err.msg, "synthetic.dcm"));
    free(b.p);

    /* Limits are checked from the header, before any pixel buffer exists. */
    s = mono16(px);
    b = make_dicom(&s);
    ms_limits lim = ms_limits_default();
    lim.max_pixels = W * H - 1;
    expect_error(&b, &lim, MS_ELIMIT, "limit");
    lim = ms_limits_default();
    lim.max_width = W - 1;
    expect_error(&b, &lim, MS_ELIMIT, NULL);
    free(b.p);

    s = mono16(px);
    s.rows = 60000;
    s.cols = 60000;
    s.frames = 60000; /* 400 TB claimed by a tiny file */
    b = make_dicom(&s);
    expect_error(&b, NULL, MS_ELIMIT, NULL);
    free(b.p);
}

/* Every prefix of a valid file fails cleanly (ASan/UBSan catch any overrun). */
static void test_truncation(void **state) {
    (void)state;
    uint16_t px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (uint16_t)i;
    spec s = mono16(px);
    s.window_center = "100";
    s.window_width = "200";
    buf b = make_dicom(&s);
    size_t ok = 0;
    for (size_t cut = 0; cut < b.n; cut += (cut < 400 ? 1 : 7)) {
        ms_err err = {0};
        ms_image *img = NULL;
        ms_status st = ms_image_decode(b.p, cut, "synthetic.dcm", NULL, NULL, &img, &err);
        if (st == MS_OK) {
            ok++;
            ms_image_destroy(img);
        } else {
            assert_true(err.msg[0] != '\0');
        }
    }
    assert_int_equal(ok, 0);
    /* Corrupt bytes in the header region must not crash either. */
    for (size_t i = 132; i < 400 && i < b.n; i++) {
        uint8_t save = b.p[i];
        b.p[i] = (uint8_t)(save ^ 0xFF);
        ms_err err = {0};
        ms_image *img = NULL;
        if (ms_image_decode(b.p, b.n, "synthetic.dcm", NULL, NULL, &img, &err) == MS_OK)
            ms_image_destroy(img);
        b.p[i] = save;
    }
    free(b.p);
}

/* Deflated data set: decodes, and a decompression bomb is refused by the limit. */
static buf deflate_dicom(const spec *s, size_t pad_zeros) {
    buf plain = {0};
    dataset(&plain, s);
    if (pad_zeros) {
        /* a huge private OB element of zeros inflates from almost nothing */
        uint8_t *z = calloc(1, pad_zeros);
        assert_non_null(z);
        buf tail = {0};
        elem(&tail, EXPLICIT_LE, 0x0009, 0x1010, "OB", z, (uint32_t)pad_zeros);
        buf all = {0};
        put(&all, tail.p, tail.n); /* private group before group 0x0028 keeps order valid */
        put(&all, plain.p, plain.n);
        free(plain.p);
        free(tail.p);
        free(z);
        plain = all;
    }
    uLongf cap = compressBound((uLong)plain.n);
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = plain.p;
    zs.avail_in = (uInt)plain.n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t zn = zs.total_out;
    deflateEnd(&zs);
    spec meta_only = *s;
    meta_only.ts = "1.2.840.10008.1.2.1.99";
    meta_only.pixels = NULL;
    buf b = {0};
    /* meta header only, then the deflated data set */
    buf full = make_dicom(&meta_only);
    size_t meta_end = 0;
    for (size_t i = 132; i + 4 <= full.n; i++)
        if (full.p[i] == 0x08 && full.p[i + 1] == 0x00 && full.p[i + 2] == 0x16) {
            meta_end = i;
            break;
        }
    assert_true(meta_end > 0);
    put(&b, full.p, meta_end);
    put(&b, out, zn);
    free(full.p);
    free(out);
    free(plain.p);
    return b;
}

static void test_deflate(void **state) {
    (void)state;
    uint16_t px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (uint16_t)(i * 7);
    spec s = mono16(px);
    s.window_center = "400";
    s.window_width = "801";
    buf b = deflate_dicom(&s, 0);
    ms_image *img = decode_ok(&b, NULL);
    for (int i = 0; i < W * H; i++)
        expect_near(img->data[i], linear_window(i * 7.0, 400, 801), 1e-6);
    assert_string_equal(img->prov.transfer_syntax, "1.2.840.10008.1.2.1.99");
    ms_image_destroy(img);
    free(b.p);

    b = deflate_dicom(&s, 8u << 20); /* 8 MiB of zeros, about 8 KiB deflated */
    assert_true(b.n < 64 * 1024);
    ms_limits lim = ms_limits_default();
    lim.max_decoded_bytes = 1u << 20;
    expect_error(&b, &lim, MS_ELIMIT, "decompression bomb");
    free(b.p);
}

/* Allocation failure: fail allocation N for N = 1, 2, ... until the decode succeeds. Each
 * failure must be a clean MS_ENOMEM with nothing leaked. DCMTK's own allocations do not
 * pass through the hooks. */
static void test_alloc_failures(void **state) {
    (void)state;
    uint16_t px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (uint16_t)i;
    spec s = mono16(px);
    buf b = make_dicom(&s);
    bool done = false;
    for (long n = 1; n < 1000 && !done; n++) {
        hook_state hs = {0};
        hs.fail_at = n;
        hooks_install(&hs);
        ms_image *img = NULL;
        ms_err err = {0};
        ms_status st = ms_image_decode(b.p, b.n, "synthetic.dcm", NULL, NULL, &img, &err);
        ms_image_destroy(img);
        ms_alloc_set_hooks(NULL);
        assert_int_equal(hs.live, 0);
        if (st == MS_OK)
            done = true;
        else if (st != MS_ENOMEM)
            fail_msg("allocation %ld failed with %s: %s", n, ms_status_name(st), err.msg);
    }
    assert_true(done);
    free(b.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masking_rescale_window),
        cmocka_unit_test(test_signed_and_high_bit),
        cmocka_unit_test(test_sigmoid_and_auto_window),
        cmocka_unit_test(test_inversion),
        cmocka_unit_test(test_lut_sequences),
        cmocka_unit_test(test_frames_and_encodings),
        cmocka_unit_test(test_color),
        cmocka_unit_test(test_one_bit),
        cmocka_unit_test(test_htj2k_fixture),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_deflate),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
