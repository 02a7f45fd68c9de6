/* Unit tests of the report layer (src/report/): per-scan JSON, overlays and thumbnails,
 * summary.json / summary.csv and report.html. */
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
#include <jpeglib.h>
#include <png.h>

#include "alloc_hooks.h"
#include "medscreen/report.h"

/* ---- a strict little JSON checker (RFC 8259 syntax) ------------------------------------ */

typedef struct jc {
    const char *p;
    int depth;
} jc;

static bool jc_value(jc *c);

static void jc_ws(jc *c) {
    while (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r') c->p++;
}

static bool jc_string(jc *c) {
    if (*c->p != '"') return false;
    c->p++;
    for (;;) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '\0' || ch < 0x20) return false;
        c->p++;
        if (ch == '"') return true;
        if (ch == '\\') {
            char e = *c->p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++, c->p++)
                    if (!strchr("0123456789abcdefABCDEF", *c->p) || *c->p == '\0') return false;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return false;
            }
        }
    }
}

static bool jc_number(jc *c) {
    const char *s = c->p;
    if (*c->p == '-') c->p++;
    if (*c->p == '0') {
        c->p++;
    } else if (*c->p >= '1' && *c->p <= '9') {
        while (*c->p >= '0' && *c->p <= '9') c->p++;
    } else {
        return false;
    }
    if (*c->p == '.') {
        c->p++;
        if (!(*c->p >= '0' && *c->p <= '9')) return false;
        while (*c->p >= '0' && *c->p <= '9') c->p++;
    }
    if (*c->p == 'e' || *c->p == 'E') {
        c->p++;
        if (*c->p == '+' || *c->p == '-') c->p++;
        if (!(*c->p >= '0' && *c->p <= '9')) return false;
        while (*c->p >= '0' && *c->p <= '9') c->p++;
    }
    return c->p > s;
}

static bool jc_lit(jc *c, const char *w) {
    size_t n = strlen(w);
    if (strncmp(c->p, w, n) != 0) return false;
    c->p += n;
    return true;
}

static bool jc_value(jc *c) {
    if (++c->depth > 64) return false;
    jc_ws(c);
    bool ok;
    if (*c->p == '{') {
        c->p++;
        jc_ws(c);
        ok = true;
        if (*c->p == '}') {
            c->p++;
        } else {
            for (;;) {
                jc_ws(c);
                if (!jc_string(c)) return false;
                jc_ws(c);
                if (*c->p++ != ':') return false;
                if (!jc_value(c)) return false;
                jc_ws(c);
                if (*c->p == ',') {
                    c->p++;
                    continue;
                }
                if (*c->p++ != '}') return false;
                break;
            }
        }
    } else if (*c->p == '[') {
        c->p++;
        jc_ws(c);
        ok = true;
        if (*c->p == ']') {
            c->p++;
        } else {
            for (;;) {
                if (!jc_value(c)) return false;
                jc_ws(c);
                if (*c->p == ',') {
                    c->p++;
                    continue;
                }
                if (*c->p++ != ']') return false;
                break;
            }
        }
    } else if (*c->p == '"') {
        ok = jc_string(c);
    } else if (*c->p == 't') {
        ok = jc_lit(c, "true");
    } else if (*c->p == 'f') {
        ok = jc_lit(c, "false");
    } else if (*c->p == 'n') {
        ok = jc_lit(c, "null");
    } else {
        ok = jc_number(c);
    }
    c->depth--;
    return ok;
}

static bool json_valid(const char *s) {
    jc c = {s, 0};
    if (!jc_value(&c)) return false;
    jc_ws(&c);
    return *c.p == '\0';
}

/* The JSON checker itself must reject what it should, or the tests below prove nothing. */
static void test_json_checker(void **state) {
    (void)state;
    assert_true(json_valid("{\"a\":[1,-2.5e3,true,null,\"x\\u00e9\"],\"b\":{}}"));
    assert_false(json_valid("{\"a\":1,}"));
    assert_false(json_valid("{\"a\":\"x\ny\"}"));
    assert_false(json_valid("{\"a\":01}"));
    assert_false(json_valid("{\"a\":nan}"));
    assert_false(json_valid("{\"a\":1} x"));
}

/* ---- fixtures --------------------------------------------------------------------------- */

static ms_scan_context make_ctx(void) {
    ms_scan_context c;
    memset(&c, 0, sizeof c);
    c.tool_version = MS_VERSION_STRING;
    c.model_path = "models/cxr.msm";
    c.model_name = "cxr-fcn";
    c.model_version = "1.2";
    c.model_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    c.operating_point = "high_sensitivity";
    c.threshold = 0.35;
    c.region_threshold = 0.5;
    c.region_low_threshold = 0.3;
    c.min_region_px = 16;
    return c;
}

static ms_region make_region(uint32_t rank, int32_t x, int32_t y, int32_t w, int32_t h,
                             float peak) {
    ms_region g;
    memset(&g, 0, sizeof g);
    g.rank = rank;
    g.x = x, g.y = y, g.w = w, g.h = h;
    g.centroid_x = x + w / 2.0, g.centroid_y = y + h / 2.0;
    g.area_px = (uint64_t)w * (uint64_t)h;
    g.area_mm2 = -1;
    g.peak = peak;
    g.mean = peak * 0.8f;
    g.peak_x = x + 1, g.peak_y = y + 2;
    return g;
}

static ms_scan_result make_ok_result(const ms_region *regions, uint32_t n) {
    ms_scan_result r;
    memset(&r, 0, sizeof r);
    r.path = "in/chest 1.dcm";
    r.stem = "chest_1";
    memset(r.input_sha256, 'a', 64);
    r.input_bytes = 12345;
    r.frame = 0, r.frame_count = 1;
    r.status = MS_SCAN_OK;
    r.decoded = true;
    r.prov.format = MS_FORMAT_DICOM;
    ms_str_copy(r.prov.transfer_syntax, sizeof r.prov.transfer_syntax, "1.2.840.10008.1.2.1");
    ms_str_copy(r.prov.photometric, sizeof r.prov.photometric, "MONOCHROME2");
    ms_str_copy(r.prov.modality, sizeof r.prov.modality, "DX");
    ms_str_copy(r.prov.study_uid, sizeof r.prov.study_uid, "1.2.3.4.5.STUDYUID");
    ms_str_copy(r.prov.sop_uid, sizeof r.prov.sop_uid, "1.2.3.4.5.SOPUID");
    r.prov.bits_allocated = 16, r.prov.bits_stored = 12;
    r.prov.voi = MS_VOI_WINDOW;
    r.prov.window_center = 2048, r.prov.window_width = 4096;
    r.prov.spacing_source = MS_SPACING_PIXEL;
    r.prov.spacing_row_mm = r.prov.spacing_col_mm = 0.139;
    r.width = 2000, r.height = 2500;
    r.score_value = 1.25;
    r.probability = 0.777;
    r.flagged = true;
    r.region_count = n;
    r.regions = regions;
    r.has_overlay = true;
    r.t_read = 0.001, r.t_decode = 0.02, r.t_preprocess = 0.003, r.t_infer = 0.1;
    r.t_regions = 0.0005;
    return r;
}

static char *render_scan(const ms_scan_context *ctx, const ms_scan_result *r) {
    ms_buf b = {0};
    assert_true(ms_report_scan_json(ctx, r, &b));
    assert_false(b.oom);
    assert_non_null(b.p);
    return b.p; /* the caller frees it with free() */
}

/* ---- per-scan JSON ---------------------------------------------------------------------- */

static void test_scan_json_ok(void **state) {
    (void)state;
    ms_scan_context ctx = make_ctx();
    ms_region g[2] = {make_region(1, 10, 20, 30, 40, 0.91f), make_region(2, 100, 5, 8, 9, 0.6f)};
    g[1].area_mm2 = 1.5;
    ms_scan_result r = make_ok_result(g, 2);
    char *s = render_scan(&ctx, &r);
    assert_true(json_valid(s));
    assert_null(strchr(s, '\n'));
    assert_non_null(strstr(s, "\"schema\":\"medscreen.scan/1\""));
    assert_non_null(strstr(s, "\"tool\":{\"name\":\"medscreen\",\"version\":\"" MS_VERSION_STRING));
    assert_non_null(
        strstr(s, "\"operating_point\":{\"name\":\"high_sensitivity\",\"threshold\":0.35}"));
    assert_non_null(
        strstr(s, "\"region_threshold\":{\"high\":0.5,\"low\":0.3,\"min_area_px\":16}"));
    assert_non_null(strstr(s, "\"status\":\"ok\""));
    assert_non_null(strstr(s, "\"reason\":null"));
    assert_non_null(strstr(s, "\"score\":{\"flagged\":true,\"probability\":0.777,"));
    assert_non_null(strstr(s, "{\"area_mm2\":null,\"area_px\":1200,\"bbox\":{\"h\":40,\"w\":30,"
                              "\"x\":10,\"y\":20},\"centroid\":{\"x\":25,\"y\":40},\"mean\":"));
    assert_non_null(strstr(s, "\"peak_xy\":[11,22],\"rank\":1}"));
    assert_non_null(strstr(s, "\"area_mm2\":1.5"));
    assert_non_null(strstr(s, "\"timings_ms\":{\"decode\":20,\"infer\":100,"));
    assert_non_null(strstr(s, "\"modality\":\"DX\""));
    assert_non_null(strstr(s, "\"body_part\":null"));
    assert_non_null(strstr(s, "\"pixel_spacing\":{\"col_mm\":0.139,\"row_mm\":0.139,"));
    /* identifying elements never leave the file */
    assert_null(strstr(s, "UID"));
    assert_null(strstr(s, "uid"));
    /* deterministic */
    char *t = render_scan(&ctx, &r);
    assert_string_equal(s, t);
    free(s);
    free(t);
}

static void test_scan_json_hostile(void **state) {
    (void)state;
    ms_scan_context ctx = make_ctx();
    ctx.operating_point = NULL; /* --threshold */
    ctx.model_name = NULL;
    ms_scan_result r;
    memset(&r, 0, sizeof r);
    r.path = "evil\"name\x01\n\xff\xfe<b>.png";
    r.stem = "evil";
    r.status = MS_SCAN_ERROR;
    r.reason_code = "format";
    r.reason = "evil\"name\x01.png: not an image \xc3";
    char *s = render_scan(&ctx, &r);
    assert_true(json_valid(s));
    assert_non_null(strstr(s, "\"path\":\"evil\\\"name\\u0001\\n\\ufffd\\ufffd<b>.png\""));
    assert_non_null(strstr(s, "\"reason\":{\"code\":\"format\",\"message\":\"evil\\\"name"));
    assert_non_null(strstr(s, "\"status\":\"error\""));
    assert_non_null(strstr(s, "\"score\":null"));
    assert_non_null(strstr(s, "\"decode\":null"));
    assert_non_null(strstr(s, "\"regions\":[]"));
    assert_non_null(strstr(s, "\"bytes\":null"));
    assert_non_null(strstr(s, "\"operating_point\":{\"name\":null,"));
    assert_non_null(strstr(s, "\"name\":null,\"path\":\"models/cxr.msm\""));
    free(s);

    /* skipped without a code still says why */
    r.status = MS_SCAN_SKIPPED;
    r.reason_code = NULL;
    r.reason = NULL;
    s = render_scan(&ctx, &r);
    assert_true(json_valid(s));
    assert_non_null(strstr(s, "\"reason\":{\"code\":\"unknown\",\"message\":\"\"}"));
    free(s);
    assert_false(ms_report_scan_json(NULL, &r, &(ms_buf){0}));
}

/* ---- overlays --------------------------------------------------------------------------- */

typedef struct rgb_image {
    uint8_t *px;
    uint32_t w, h;
} rgb_image;

static rgb_image decode_png(const ms_buf *b) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_memory(&im, b->p, b->len));
    im.format = PNG_FORMAT_RGB;
    rgb_image out = {malloc(PNG_IMAGE_SIZE(im)), im.width, im.height};
    assert_non_null(out.px);
    assert_true(png_image_finish_read(&im, NULL, out.px, 0, NULL));
    return out;
}

static bool has_bytes(const ms_buf *b, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->p + i, needle, n) == 0) return true;
    return false;
}

static const uint8_t *px_at(const rgb_image *im, uint32_t x, uint32_t y) {
    return im->px + ((size_t)y * im->w + x) * 3;
}

/* 200 x 100 grey ramp with a hot square at x 150..169, y 40..59. */
typedef struct scene {
    ms_image *img;
    float *prob;
    ms_region region;
} scene;

static scene make_scene(int32_t channels) {
    scene s;
    assert_int_equal(ms_image_create(200, 100, channels, &s.img, NULL), MS_OK);
    size_t plane = 200 * 100;
    for (int32_t c = 0; c < channels; c++)
        for (size_t i = 0; i < plane; i++)
            s.img->data[(size_t)c * plane + i] = 0.2f + 0.3f * (float)(i % 200) / 200.0f;
    s.prob = calloc(plane, sizeof *s.prob);
    assert_non_null(s.prob);
    for (int y = 40; y < 60; y++)
        for (int x = 150; x < 170; x++) s.prob[y * 200 + x] = 0.95f;
    s.prob[0] = NAN; /* a NaN in the map draws nothing */
    s.region = make_region(1, 150, 40, 20, 20, 0.95f);
    return s;
}

static void free_scene(scene *s) {
    ms_image_destroy(s->img);
    free(s->prob);
}

static void test_overlay_png(void **state) {
    (void)state;
    scene sc = make_scene(1);
    ms_buf png = {0};
    ms_err err;
    assert_int_equal(ms_report_overlay_png(sc.img, sc.prob, 0.3f, &sc.region, 1, 100, &png, &err),
                     MS_OK);
    assert_memory_equal(png.p, "\x89PNG\r\n\x1a\n", 8);
    assert_true(has_bytes(&png, "IDAT"));
    assert_false(has_bytes(&png, "tIME"));
    assert_false(has_bytes(&png, "tEXt"));
    rgb_image im = decode_png(&png);
    assert_int_equal(im.w, 100);
    assert_int_equal(im.h, 50);

    /* cold: grey, untouched */
    const uint8_t *cold = px_at(&im, 10, 40);
    assert_int_equal(cold[0], cold[1]);
    assert_int_equal(cold[1], cold[2]);
    /* hot, inside the outline: red-dominated heat over the grey */
    const uint8_t *hot = px_at(&im, 80, 25);
    assert_true(hot[0] > hot[1] + 60);
    assert_true(hot[0] > hot[2] + 60);
    assert_true(hot[0] > cold[0] + 40);
    /* the outline: box 150..169 x 40..59 -> 75..84 x 20..29, 2 px of cyan */
    for (uint32_t x = 75; x <= 76; x++) {
        const uint8_t *o = px_at(&im, x, 25);
        assert_int_equal(o[0], 0);
        assert_int_equal(o[1], 255);
        assert_int_equal(o[2], 255);
    }
    const uint8_t *o = px_at(&im, 84, 29);
    assert_int_equal(o[0], 0);
    assert_int_equal(o[2], 255);
    /* the label sits above the box on black, and contains cyan glyph pixels */
    size_t black = 0, cyan = 0;
    for (uint32_t y = 0; y < 20; y++)
        for (uint32_t x = 50; x < 100; x++) {
            const uint8_t *p = px_at(&im, x, y);
            black += p[0] == 0 && p[1] == 0 && p[2] == 0;
            cyan += p[0] == 0 && p[1] == 255 && p[2] == 255;
        }
    assert_true(black > 100);
    assert_true(cyan > 20);
    free(im.px);

    /* deterministic: the same bytes twice */
    ms_buf again = {0};
    assert_int_equal(ms_report_overlay_png(sc.img, sc.prob, 0.3f, &sc.region, 1, 100, &again, &err),
                     MS_OK);
    assert_int_equal(again.len, png.len);
    assert_memory_equal(again.p, png.p, png.len);
    ms_buf_free(&again);

    /* no heat map, no regions, not scaled: grey everywhere at full size */
    assert_int_equal(ms_report_overlay_png(sc.img, NULL, 0.3f, NULL, 0, 0, &png, &err), MS_OK);
    im = decode_png(&png);
    assert_int_equal(im.w, 200);
    assert_int_equal(im.h, 100);
    hot = px_at(&im, 160, 50);
    assert_int_equal(hot[0], hot[2]);
    free(im.px);
    ms_buf_free(&png);
    free_scene(&sc);
}

static void test_overlay_rgb_and_edges(void **state) {
    (void)state;
    scene sc = make_scene(3);
    /* make the image red: R=1, G=B=0 */
    for (size_t i = 0; i < 200 * 100; i++) {
        sc.img->data[i] = 1.0f;
        sc.img->data[200 * 100 + i] = 0.0f;
        sc.img->data[2 * 200 * 100 + i] = 0.0f;
    }
    /* regions reaching past the image, a degenerate one and one at the very corner */
    ms_region g[3] = {make_region(1, 190, 90, 50, 50, 0.99f), make_region(2, 300, 300, 5, 5, 0.5f),
                      make_region(3, 0, 0, 1, 1, NAN)};
    ms_buf png = {0};
    assert_int_equal(ms_report_overlay_png(sc.img, sc.prob, 0.3f, g, 3, 64, &png, NULL), MS_OK);
    rgb_image im = decode_png(&png);
    assert_int_equal(im.w, 64);
    assert_int_equal(im.h, 32);
    const uint8_t *p = px_at(&im, 30, 16);
    assert_int_equal(p[0], 255);
    assert_int_equal(p[1], 0);
    free(im.px);
    ms_buf_free(&png);

    ms_err err;
    ms_buf keep = {0};
    ms_buf_puts(&keep, "untouched");
    assert_int_equal(ms_report_overlay_png(sc.img, sc.prob, NAN, NULL, 0, 64, &keep, &err),
                     MS_EINVAL);
    assert_non_null(strstr(err.msg, "low threshold"));
    assert_string_equal(keep.p, "untouched");
    assert_int_equal(ms_report_overlay_png(sc.img, sc.prob, 0.3f, NULL, 2, 64, &keep, &err),
                     MS_EINVAL);
    assert_int_equal(ms_report_overlay_png(sc.img, sc.prob, 0.3f, NULL, 0, -1, &keep, &err),
                     MS_EINVAL);
    sc.img->channels = 2;
    assert_int_equal(ms_report_overlay_png(sc.img, NULL, 0.3f, NULL, 0, 64, &keep, &err),
                     MS_EINVAL);
    assert_non_null(strstr(err.msg, "2 channels"));
    sc.img->channels = 3;
    assert_int_equal(ms_report_thumbnail_jpeg(NULL, NULL, 0.3f, NULL, 0, 64, &keep, &err),
                     MS_EINVAL);
    assert_string_equal(keep.p, "untouched");
    ms_buf_free(&keep);
    free_scene(&sc);
}

static void test_thumbnail_jpeg(void **state) {
    (void)state;
    scene sc = make_scene(1);
    ms_buf jpg = {0};
    ms_err err;
    assert_int_equal(
        ms_report_thumbnail_jpeg(sc.img, sc.prob, 0.3f, &sc.region, 1, 128, &jpg, &err), MS_OK);
    assert_true(jpg.len > 100);
    assert_memory_equal(jpg.p, "\xff\xd8\xff", 3);

    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr jerr;
    d.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, (const unsigned char *)jpg.p, (unsigned long)jpg.len);
    assert_int_equal(jpeg_read_header(&d, TRUE), JPEG_HEADER_OK);
    jpeg_start_decompress(&d);
    assert_int_equal(d.output_width, 128);
    assert_int_equal(d.output_height, 64);
    assert_int_equal(d.output_components, 3);
    uint8_t row[128 * 3];
    uint8_t hot[3] = {0}, cold[3] = {0};
    while (d.output_scanline < d.output_height) {
        JSAMPROW rp = row;
        JDIMENSION y = d.output_scanline;
        jpeg_read_scanlines(&d, &rp, 1);
        if (y == 32) {
            memcpy(hot, row + 102 * 3, 3);
            memcpy(cold, row + 10 * 3, 3);
        }
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    assert_true(hot[0] > hot[2] + 50); /* lossy, but the heat is still there */
    assert_true(abs((int)cold[0] - (int)cold[2]) < 12);

    ms_buf again = {0};
    assert_int_equal(
        ms_report_thumbnail_jpeg(sc.img, sc.prob, 0.3f, &sc.region, 1, 128, &again, &err), MS_OK);
    assert_int_equal(again.len, jpg.len);
    assert_memory_equal(again.p, jpg.p, jpg.len);
    ms_buf_free(&again);
    ms_buf_free(&jpg);
    free_scene(&sc);
}

/* Fail allocation N for N = 1, 2, ... until it succeeds: each failure is MS_ENOMEM, leaves
 * the output untouched and leaks nothing (libpng's allocations go through the hooks too). */
static void test_overlay_alloc_failures(void **state) {
    (void)state;
    scene sc = make_scene(1);
    for (int jpeg = 0; jpeg < 2; jpeg++) {
        bool done = false;
        for (long n = 1; n < 1000 && !done; n++) {
            hook_state hs = {n, 0, 0, 0};
            hooks_install(&hs);
            ms_buf out = {0};
            ms_err err;
            ms_status st =
                jpeg
                    ? ms_report_thumbnail_jpeg(sc.img, sc.prob, 0.3f, &sc.region, 1, 50, &out, &err)
                    : ms_report_overlay_png(sc.img, sc.prob, 0.3f, &sc.region, 1, 50, &out, &err);
            ms_alloc_set_hooks(NULL);
            if (st == MS_OK) {
                assert_true(out.len > 0);
                done = true;
            } else {
                assert_int_equal(st, MS_ENOMEM);
                assert_null(out.p);
            }
            assert_int_equal(hs.live, 0);
            ms_buf_free(&out);
        }
        assert_true(done);
    }
    free_scene(&sc);
}

/* ---- summary.json and summary.csv -------------------------------------------------------- */

static ms_summary_row make_row(const char *path, const char *stem, ms_scan_status st, double prob) {
    ms_summary_row r;
    memset(&r, 0, sizeof r);
    r.path = (char *)path;
    r.stem = (char *)stem;
    r.status = st;
    r.probability = st == MS_SCAN_OK ? prob : NAN;
    r.flagged = st == MS_SCAN_OK && prob >= 0.35;
    r.has_overlay = st == MS_SCAN_OK;
    if (st == MS_SCAN_ERROR) {
        r.reason_code = (char *)"format";
        r.reason = (char *)"bad, \"file\"\nsecond line";
    } else if (st == MS_SCAN_SKIPPED) {
        r.reason_code = (char *)"modality";
        r.reason = (char *)"=modality CT is not accepted";
    }
    return r;
}

static void test_summary_json(void **state) {
    (void)state;
    ms_scan_context ctx = make_ctx();
    ms_summary_row rows[3] = {make_row("a.png", "a", MS_SCAN_OK, 0.5),
                              make_row("b\"\x02\xff.dcm", "b", MS_SCAN_ERROR, 0),
                              make_row("c.dcm", "c", MS_SCAN_SKIPPED, 0)};
    rows[0].region_count = 12;
    rows[0].kept_regions = 2;
    rows[0].regions[0] = make_region(1, 1, 2, 3, 4, 0.9f);
    rows[0].regions[1] = make_region(2, 5, 6, 7, 8, 0.8f);
    ms_summary_totals tot = {3, 1, 1, 1, 1, true, 2.5};
    ms_buf b = {0};
    assert_true(ms_report_summary_json(&ctx, rows, 3, &tot, &b));
    assert_true(json_valid(b.p));
    assert_non_null(strstr(b.p, "\"schema\":\"medscreen.summary/1\""));
    assert_non_null(strstr(b.p, "\"totals\":{\"errors\":1,\"flagged\":1,\"interrupted\":true,"
                                "\"ok\":1,\"scans\":3,\"skipped\":1,\"wall_seconds\":2.5}"));
    assert_non_null(strstr(b.p, "\"overlay\":\"overlays/a.png\""));
    assert_non_null(strstr(b.p, "\"report\":\"scans/a.json\""));
    assert_non_null(strstr(b.p, "\"region_count\":12,\"regions\":[{\"bbox\":{\"h\":4,\"w\":3,"
                                "\"x\":1,\"y\":2},\"peak\":0.9,\"rank\":1},{"));
    assert_non_null(strstr(b.p, "\"flagged\":false,\"frame\":0,\"overlay\":null,\"path\":"
                                "\"b\\\"\\u0002\\ufffd.dcm\",\"probability\":null"));
    assert_non_null(strstr(b.p, "\"reason\":{\"code\":\"modality\""));
    ms_buf_free(&b);

    /* an empty batch is still a valid document */
    ms_summary_totals zero = {0};
    assert_true(ms_report_summary_json(&ctx, NULL, 0, &zero, &b));
    assert_true(json_valid(b.p));
    assert_non_null(strstr(b.p, "\"scans\":[]"));
    ms_buf_free(&b);
}

static void test_summary_csv(void **state) {
    (void)state;
    ms_summary_row rows[6] = {make_row("plain.png", "p", MS_SCAN_OK, 0.25),
                              make_row("a,\"b\".png", "a", MS_SCAN_OK, 0.5),
                              make_row("=HYPERLINK(\"x\").png", "h", MS_SCAN_OK, 0.125),
                              make_row("-2+3.dcm", "m", MS_SCAN_ERROR, 0),
                              make_row("@x\xff.dcm", "x", MS_SCAN_SKIPPED, 0),
                              make_row("line\nbreak.png", "l", MS_SCAN_OK, NAN)};
    rows[1].region_count = 3;
    rows[1].kept_regions = 1;
    rows[1].regions[0] = make_region(1, 10, 20, 30, 40, 0.75f);
    rows[1].frame = 2;
    ms_buf b = {0};
    assert_true(ms_report_summary_csv(rows, 6, &b));
    const char *want =
        "path,frame,status,probability,flagged,regions,top_peak,top_x,top_y,top_w,top_h,reason\n"
        "plain.png,0,ok,0.25,false,0,,,,,,\n"
        "\"a,\"\"b\"\".png\",2,ok,0.5,true,3,0.75,10,20,30,40,\n"
        "\"'=HYPERLINK(\"\"x\"\").png\",0,ok,0.125,false,0,,,,,,\n"
        "'-2+3.dcm,0,error,,,,,,,,,\"bad, \"\"file\"\"\nsecond line\"\n"
        "'@x\xef\xbf\xbd.dcm,0,skipped,,,,,,,,,'=modality CT is not accepted\n"
        "\"line\nbreak.png\",0,ok,,false,0,,,,,,\n";
    assert_string_equal(b.p, want);
    ms_buf_free(&b);
}

/* ---- report.html ------------------------------------------------------------------------ */

static char *html_render(const ms_summary_row *rows, size_t n, const char *thumbs_dir,
                         ms_status want) {
    ms_scan_context ctx = make_ctx();
    ms_summary_totals tot = {n, n, 1, 0, 0, false, 1.0};
    char *p = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&p, &len);
    assert_non_null(f);
    ms_err err;
    assert_int_equal(ms_report_html_write(f, &ctx, rows, n, &tot, thumbs_dir, &err), want);
    fclose(f);
    return p;
}

static void test_html_escaping(void **state) {
    (void)state;
    ms_summary_row rows[2] = {
        make_row("<script>alert(1)</script>&'\"\x01\xff.png", "x", MS_SCAN_OK, 0.5),
        make_row("e<img src=x onerror=alert(2)>.dcm", "e", MS_SCAN_ERROR, 0)};
    rows[1].reason = (char *)"<b>bad</b>";
    char *s = html_render(rows, 2, NULL, MS_OK);
    assert_null(strstr(s, "<script>alert"));
    assert_null(strstr(s, "<img src=x"));
    assert_null(strstr(s, "<b>bad"));
    assert_non_null(strstr(s, "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#39;&quot;"
                              "\xef\xbf\xbd\xef\xbf\xbd.png"));
    assert_non_null(strstr(s, "&lt;b&gt;bad&lt;/b&gt;"));
    /* self-contained: no external URL */
    assert_null(strstr(s, "http:"));
    assert_null(strstr(s, "https:"));
    assert_null(strstr(s, "src=\"//"));
    assert_non_null(strstr(s, "<!DOCTYPE html>"));
    assert_non_null(strstr(s, "</html>\n"));
    /* the overlay link is a relative, percent-safe path */
    assert_non_null(strstr(s, "href=\"overlays/x.png\""));
    free(s);
}

static const char *nth_row_path(const char *s, int rank, char *out, size_t cap) {
    char key[48];
    snprintf(key, sizeof key, "data-rank=\"%d\"", rank);
    const char *p = strstr(s, key);
    if (p == NULL) return NULL;
    p = strstr(p, "data-path=\"");
    assert_non_null(p);
    p += strlen("data-path=\"");
    const char *e = strchr(p, '"');
    size_t n = (size_t)(e - p) < cap - 1 ? (size_t)(e - p) : cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static void test_html_order(void **state) {
    (void)state;
    ms_summary_row rows[7] = {
        make_row("z-err.dcm", "ze", MS_SCAN_ERROR, 0), make_row("low.png", "l", MS_SCAN_OK, 0.1),
        make_row("skip.dcm", "s", MS_SCAN_SKIPPED, 0), make_row("b-tie.png", "b", MS_SCAN_OK, 0.5),
        make_row("high.png", "h", MS_SCAN_OK, 0.9),    make_row("a-tie.png", "a", MS_SCAN_OK, 0.5),
        make_row("a-err.dcm", "ae", MS_SCAN_ERROR, 0)};
    const char *want[7] = {"high.png", "a-tie.png", "b-tie.png", "low.png",
                           "skip.dcm", "a-err.dcm", "z-err.dcm"};
    char *s = html_render(rows, 7, NULL, MS_OK);
    char buf[64];
    for (int i = 0; i < 7; i++) {
        assert_non_null(nth_row_path(s, i + 1, buf, sizeof buf));
        assert_string_equal(buf, want[i]);
    }
    assert_null(nth_row_path(s, 8, buf, sizeof buf));
    /* the rows appear in the document in rank order */
    const char *h = strstr(s, "data-path=\"high.png\""), *l = strstr(s, "data-path=\"low.png\"");
    assert_true(h != NULL && l != NULL && h < l);
    assert_non_null(strstr(s, "class=\"scan ok flagged\" id=\"scan-1\""));
    assert_non_null(strstr(s, "data-probability=\"0.9\""));
    char *t = html_render(rows, 7, NULL, MS_OK);
    assert_string_equal(s, t);
    free(s);
    free(t);
}

static void test_html_thumbnails(void **state) {
    (void)state;
    char dir[] = "/tmp/ms_report_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    scene sc = make_scene(1);
    ms_buf jpg = {0};
    assert_int_equal(ms_report_thumbnail_jpeg(sc.img, sc.prob, 0.3f, &sc.region, 1, 32, &jpg, NULL),
                     MS_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/have.jpg", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(jpg.p, 1, jpg.len, f), jpg.len);
    fclose(f);

    ms_summary_row rows[2] = {make_row("have.png", "have", MS_SCAN_OK, 0.9),
                              make_row("missing.png", "missing", MS_SCAN_OK, 0.1)};
    char *s = html_render(rows, 2, dir, MS_OK);
    const char *img = strstr(s, "src=\"data:image/jpeg;base64,/9j/");
    const char *ph = strstr(s, "<div class=\"ph\">no thumbnail</div>");
    const char *miss = strstr(s, "data-path=\"missing.png\"");
    assert_non_null(img);
    assert_non_null(ph);
    assert_non_null(miss);
    assert_true(img < miss && miss < ph); /* the placeholder is in the missing row */
    free(s);

    unlink(path);
    rmdir(dir);
    ms_buf_free(&jpg);
    free_scene(&sc);
}

static void test_html_write_error(void **state) {
    (void)state;
    FILE *f = fopen("/dev/full", "w");
    if (f == NULL) skip();
    ms_scan_context ctx = make_ctx();
    ms_summary_totals tot = {0};
    ms_err err;
    assert_int_equal(ms_report_html_write(f, &ctx, NULL, 0, &tot, NULL, &err), MS_EIO);
    assert_non_null(strstr(err.msg, "report.html"));
    fclose(f);
    assert_int_equal(ms_report_html_write(NULL, &ctx, NULL, 0, &tot, NULL, &err), MS_EINVAL);
}

static void test_status_names(void **state) {
    (void)state;
    assert_string_equal(ms_scan_status_name(MS_SCAN_OK), "ok");
    assert_string_equal(ms_scan_status_name(MS_SCAN_SKIPPED), "skipped");
    assert_string_equal(ms_scan_status_name(MS_SCAN_ERROR), "error");
    assert_string_equal(ms_scan_status_name((ms_scan_status)42), "error");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_checker),
        cmocka_unit_test(test_scan_json_ok),
        cmocka_unit_test(test_scan_json_hostile),
        cmocka_unit_test(test_overlay_png),
        cmocka_unit_test(test_overlay_rgb_and_edges),
        cmocka_unit_test(test_thumbnail_jpeg),
        cmocka_unit_test(test_overlay_alloc_failures),
        cmocka_unit_test(test_summary_json),
        cmocka_unit_test(test_summary_csv),
        cmocka_unit_test(test_html_escaping),
        cmocka_unit_test(test_html_order),
        cmocka_unit_test(test_html_thumbnails),
        cmocka_unit_test(test_html_write_error),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
