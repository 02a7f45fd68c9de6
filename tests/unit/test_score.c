/* score layer tests: geometry by hand for each resize; the model input against a brute-force
 * double-precision 2-D box filter (area), values from PyTorch's F.interpolate (bilinear), a
 * per-pixel bilinear reference, letterbox bars and crops worked out by hand; channels and
 * normalisation; calibration; the map back onto the image against a per-pixel reference and
 * hot cells placed by hand; regions against a flood-fill reference on random maps plus hand
 * cases (hysteresis, 8-connectivity, ranking, truncation, spacing, thin maps, bad options);
 * allocation failures. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "alloc_hooks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/score.h"

/* ---- helpers ---- */

/* cmocka 1.1's assert_float_equal works in float; these references are double. */
#define assert_near(a, b, tol) near_at((double)(a), (double)(b), (double)(tol), __FILE__, __LINE__)
static void near_at(double a, double b, double tol, const char *file, int line) {
    if (!(fabs(a - b) <= tol))
        fail_msg("%s:%d: %.17g != %.17g (tolerance %g)", file, line, a, b, tol);
}

static uint32_t rng_state = 12345u;
static float frand(void) { /* xorshift32, in [0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return (float)(rng_state >> 8) / 16777216.0f;
}

static ms_model_meta base_meta(int32_t in_w, int32_t in_h, int32_t channels, ms_meta_resize r,
                               ms_meta_filter f) {
    ms_model_meta m;
    memset(&m, 0, sizeof m);
    m.format = 1;
    m.input_w = in_w;
    m.input_h = in_h;
    m.input_channels = channels;
    m.resize = r;
    m.resize_filter = f;
    m.temperature = 1.0f;
    m.window = MS_META_WINDOW_FILE;
    return m;
}

static ms_image *make_image(int32_t w, int32_t h, int32_t c) {
    ms_image *img = NULL;
    assert_int_equal(ms_image_create(w, h, c, &img, NULL), MS_OK);
    size_t n = (size_t)w * (size_t)h * (size_t)c;
    for (size_t i = 0; i < n; i++) img->data[i] = frand();
    return img;
}

static float *run_pre(const ms_model_meta *m, const ms_image *img, ms_geometry *geo) {
    size_t n = (size_t)m->input_w * (size_t)m->input_h * (size_t)m->input_channels;
    float *out = malloc(n * sizeof *out);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) out[i] = NAN; /* every value must be written */
    ms_err err;
    ms_status st = ms_score_preprocess(m, img, out, geo, &err);
    if (st != MS_OK) fail_msg("%s", err.msg);
    return out;
}

/* ---- geometry ---- */

static void test_geometry_modes(void **state) {
    (void)state;
    ms_geometry g;
    ms_model_meta m = base_meta(100, 100, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    assert_int_equal(ms_geometry_make(&m, 400, 200, &g, NULL), MS_OK);
    assert_int_equal(g.image_w, 400);
    assert_int_equal(g.image_h, 200);
    assert_int_equal(g.input_w, 100);
    assert_int_equal(g.input_h, 100);
    assert_true(g.scale_x == 0.25 && g.scale_y == 0.5);
    assert_true(g.offset_x == 0 && g.offset_y == 0);

    /* letterbox: fit inside, 400x200 -> 100x50 in the middle of 100x100 */
    m.resize = MS_META_RESIZE_LETTERBOX;
    assert_int_equal(ms_geometry_make(&m, 400, 200, &g, NULL), MS_OK);
    assert_int_equal(g.resize, MS_META_RESIZE_LETTERBOX);
    assert_true(g.scale_x == 0.25 && g.scale_y == 0.25);
    assert_true(g.offset_x == 0 && g.offset_y == 25);
    /* portrait, odd bars: 30x60 into 100x100 -> scale 5/3, 50 wide, 25 each side */
    assert_int_equal(ms_geometry_make(&m, 30, 60, &g, NULL), MS_OK);
    assert_true(fabs(g.scale_x - 5.0 / 3.0) < 1e-15 && g.scale_y == g.scale_x);
    assert_true(fabs(g.offset_x - 25.0) < 1e-12 && g.offset_y == 0);

    /* crop: cover, 400x200 -> 200x100, 50 cut on each side */
    m.resize = MS_META_RESIZE_CROP;
    assert_int_equal(ms_geometry_make(&m, 400, 200, &g, NULL), MS_OK);
    assert_true(g.scale_x == 0.5 && g.scale_y == 0.5);
    assert_true(g.offset_x == -50 && g.offset_y == 0);
    /* non-square input: 64x32 (WxH) from 100x100 crops rows */
    m.input_w = 64;
    m.input_h = 32;
    assert_int_equal(ms_geometry_make(&m, 100, 100, &g, NULL), MS_OK);
    assert_true(g.scale_x == 0.64 && g.scale_y == 0.64);
    assert_true(fabs(g.offset_x) < 1e-12 && fabs(g.offset_y - -16.0) < 1e-12);
}

static void test_geometry_errors(void **state) {
    (void)state;
    ms_geometry g;
    memset(&g, 0x5a, sizeof g);
    ms_geometry before = g;
    ms_err err;
    ms_model_meta m = base_meta(100, 100, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    assert_int_equal(ms_geometry_make(&m, 0, 10, &g, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "0x10"));
    assert_int_equal(ms_geometry_make(&m, 10, -1, &g, &err), MS_EINVAL);
    assert_int_equal(ms_geometry_make(NULL, 10, 10, &g, &err), MS_EINVAL);
    assert_int_equal(ms_geometry_make(&m, 10, 10, NULL, &err), MS_EINVAL);
    m.resize = MS_META_RESIZE_NONE;
    assert_int_equal(ms_geometry_make(&m, 10, 10, &g, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "resize"));
    m.resize = MS_META_RESIZE_CROP;
    m.input_w = 0;
    assert_int_equal(ms_geometry_make(&m, 10, 10, &g, &err), MS_EINVAL);
    assert_memory_equal(&g, &before, sizeof g); /* untouched on failure */
}

/* ---- decode options ---- */

static void test_decode_opts(void **state) {
    (void)state;
    ms_model_meta m = base_meta(8, 8, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    ms_decode_opts o = ms_score_decode_opts(&m);
    assert_int_equal(o.color, MS_COLOR_GRAY);
    assert_false(o.user_window);
    assert_int_equal(o.voi_index, 0);
    assert_int_equal(o.frame, 0);

    m.input_channels = 3; /* grey replicated: still decoded grey */
    assert_int_equal(ms_score_decode_opts(&m).color, MS_COLOR_GRAY);
    m.colour = MS_META_COLOUR_RGB;
    assert_int_equal(ms_score_decode_opts(&m).color, MS_COLOR_RGB);
    m.input_channels = 1; /* inconsistent, but never RGB into one channel */
    assert_int_equal(ms_score_decode_opts(&m).color, MS_COLOR_GRAY);

    m.window = MS_META_WINDOW_FIXED;
    m.window_center = -600;
    m.window_width = 1500;
    o = ms_score_decode_opts(&m);
    assert_true(o.user_window);
    assert_true(o.window_center == -600 && o.window_width == 1500);
    assert_int_equal(o.window_function, MS_VOI_FN_LINEAR);

    m.window = MS_META_WINDOW_AUTO;
    o = ms_score_decode_opts(&m);
    assert_false(o.user_window);
    assert_true(o.auto_window);

    m.window = MS_META_WINDOW_FILE;
    o = ms_score_decode_opts(&m);
    assert_false(o.user_window || o.auto_window);
    assert_int_equal(o.voi_index, 0);
}

/* ---- model input: references ---- */

/* 1-D weights of output pixel o over n source pixels, straight from the definitions in double:
 * the box filter integrates the footprint's overlap with each pixel; bilinear is PyTorch's
 * align_corners=False formula. Returns false for a letterbox bar. */
static bool ref_weights(int32_t n, double s, double off, int32_t n_out, bool pad, bool box,
                        int32_t o, double *w) {
    for (int32_t i = 0; i < n; i++) w[i] = 0;
    if (pad) {
        double centre = o + 0.5, a = off, b = off + n * s;
        if (!(centre >= a && centre < b)) {
            /* the sliver rule: only the pixel holding a sub-pixel image's middle */
            bool none = true;
            for (int32_t q = 0; q < n_out; q++)
                if (q + 0.5 >= a && q + 0.5 < b) none = false;
            if (!none || floor((a + b) / 2) != o) return false;
        }
    }
    if (box) {
        double lo = (o - off) / s, hi = (o + 1 - off) / s, tot = 0;
        for (int32_t i = 0; i < n; i++) {
            double ov = fmin(hi, i + 1.0) - fmax(lo, (double)i);
            if (ov > 0) {
                w[i] = ov;
                tot += ov;
            }
        }
        for (int32_t i = 0; i < n; i++) w[i] /= tot;
    } else {
        double u = (o + 0.5 - off) / s - 0.5;
        if (u < 0) u = 0;
        int32_t i0 = (int32_t)u;
        if (i0 > n - 1) i0 = n - 1;
        int32_t i1 = i0 < n - 1 ? i0 + 1 : i0;
        double l1 = u - i0;
        if (l1 > 1) l1 = 1;
        w[i0] += 1 - l1;
        w[i1] += l1;
    }
    return true;
}

/* The whole model input plane (before normalisation) by the 2-D double sums; bars = pad. */
static double *ref_plane(const float *plane, int32_t w, int32_t h, const ms_geometry *g,
                         ms_meta_filter f, float pad) {
    bool letter = g->resize == MS_META_RESIZE_LETTERBOX;
    double *out = malloc((size_t)g->input_w * (size_t)g->input_h * sizeof *out);
    double *wx = malloc((size_t)w * sizeof *wx), *wy = malloc((size_t)h * sizeof *wy);
    assert_true(out && wx && wy);
    for (int32_t oy = 0; oy < g->input_h; oy++) {
        bool iny = ref_weights(h, g->scale_y, g->offset_y, g->input_h, letter,
                               f == MS_META_FILTER_AREA && g->scale_y < 1, oy, wy);
        for (int32_t ox = 0; ox < g->input_w; ox++) {
            bool inx = ref_weights(w, g->scale_x, g->offset_x, g->input_w, letter,
                                   f == MS_META_FILTER_AREA && g->scale_x < 1, ox, wx);
            double v = pad;
            if (inx && iny) {
                v = 0;
                for (int32_t y = 0; y < h; y++)
                    for (int32_t x = 0; x < w; x++) v += wy[y] * wx[x] * plane[y * w + x];
            }
            out[oy * g->input_w + ox] = v;
        }
    }
    free(wx);
    free(wy);
    return out;
}

static void check_against_ref(ms_meta_resize r, ms_meta_filter f, int32_t iw, int32_t ih,
                              int32_t in_w, int32_t in_h, float pad) {
    ms_model_meta m = base_meta(in_w, in_h, 1, r, f);
    m.pad_value = pad;
    ms_image *img = make_image(iw, ih, 1);
    ms_geometry g;
    float *out = run_pre(&m, img, &g);
    double *ref = ref_plane(img->data, iw, ih, &g, f, pad);
    double worst = 0;
    for (int32_t i = 0; i < in_w * in_h; i++) {
        double d = fabs(out[i] - ref[i]);
        if (!(d <= worst)) worst = d; /* NaN sticks */
    }
    if (!(worst < 2e-6))
        fail_msg("%s/%s %dx%d -> %dx%d: max |diff| %g", ms_meta_resize_name(r),
                 ms_meta_filter_name(f), iw, ih, in_w, in_h, worst);
    free(ref);
    free(out);
    ms_image_destroy(img);
}

static void test_pre_area_box_filter(void **state) {
    (void)state;
    /* shrinking both axes by non-integer factors, then integer ones, then one pixel */
    check_against_ref(MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA, 37, 23, 10, 7, 0);
    check_against_ref(MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA, 64, 48, 16, 12, 0);
    check_against_ref(MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA, 29, 31, 1, 1, 0);
    /* one axis shrinks (box), the other grows (bilinear) */
    check_against_ref(MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA, 40, 5, 10, 17, 0);
    /* the same size: identity */
    check_against_ref(MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA, 9, 7, 9, 7, 0);
    /* letterbox and crop, with fractional bars and cuts */
    check_against_ref(MS_META_RESIZE_LETTERBOX, MS_META_FILTER_AREA, 50, 17, 12, 12, 0.25f);
    check_against_ref(MS_META_RESIZE_LETTERBOX, MS_META_FILTER_AREA, 13, 41, 16, 9, 0.5f);
    check_against_ref(MS_META_RESIZE_CROP, MS_META_FILTER_AREA, 50, 17, 12, 12, 0);
    check_against_ref(MS_META_RESIZE_CROP, MS_META_FILTER_AREA, 23, 70, 11, 8, 0);
}

static void test_pre_area_box_by_hand(void **state) {
    (void)state;
    /* 4x1 -> 3x1: footprints of 4/3 pixels: [0,4/3), [4/3,8/3), [8/3,4) */
    ms_model_meta m = base_meta(3, 1, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    ms_image *img = make_image(4, 1, 1);
    float px[4] = {0.0f, 0.3f, 0.6f, 0.9f};
    memcpy(img->data, px, sizeof px);
    ms_geometry g;
    float *out = run_pre(&m, img, &g);
    assert_near(out[0], (0.0 + 0.3 / 3) / (4.0 / 3), 1e-6);
    assert_near(out[1], (0.3 * 2 / 3 + 0.6 * 2 / 3) / (4.0 / 3), 1e-6);
    assert_near(out[2], (0.6 / 3 + 0.9) / (4.0 / 3), 1e-6);
    free(out);
    ms_image_destroy(img);
}

static void test_pre_bilinear_pytorch(void **state) {
    (void)state;
    /* F.interpolate(x, size=..., mode='bilinear', align_corners=False), PyTorch 1.13 */
    static const float src[12] = {0.1f, 0.5f, 0.9f, 0.3f, 0.2f, 0.8f,
                                  0.4f, 0.6f, 0.7f, 0.0f, 1.0f, 0.25f};
    static const float to_3x5[15] = {0.166666672f, 0.699999988f, 0.399999946f, 0.220000014f,
                                     0.659999967f, 0.466666639f, 0.300000042f, 0.599999964f,
                                     0.566666663f, 0.470000029f, 0.540000021f, 0.451666623f,
                                     0.583333313f, 0.50000006f,  0.374999911f};
    static const float to_7x2[14] = {0.125f,       0.285714298f, 0.54285717f,  0.675000012f,
                                     0.746428549f, 0.517857075f, 0.37500003f,  0.574999988f,
                                     0.441071391f, 0.226785704f, 0.525000095f, 0.813392878f,
                                     0.520535648f, 0.337500006f};
    ms_image *img = make_image(4, 3, 1);
    memcpy(img->data, src, sizeof src);
    ms_geometry g;
    ms_model_meta m = base_meta(3, 5, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_BILINEAR);
    float *out = run_pre(&m, img, &g);
    for (int i = 0; i < 15; i++) assert_near(out[i], to_3x5[i], 1e-6);
    free(out);
    m = base_meta(7, 2, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_BILINEAR);
    out = run_pre(&m, img, &g);
    for (int i = 0; i < 14; i++) assert_near(out[i], to_7x2[i], 1e-6);
    free(out);
    ms_image_destroy(img);
}

static void test_pre_bilinear_ref(void **state) {
    (void)state;
    /* bilinear never averages: shrinking by 4 samples 2 taps, as PyTorch does without
     * antialias */
    check_against_ref(MS_META_RESIZE_STRETCH, MS_META_FILTER_BILINEAR, 64, 40, 16, 10, 0);
    check_against_ref(MS_META_RESIZE_STRETCH, MS_META_FILTER_BILINEAR, 7, 5, 30, 19, 0);
    check_against_ref(MS_META_RESIZE_STRETCH, MS_META_FILTER_BILINEAR, 1, 1, 5, 3, 0);
    check_against_ref(MS_META_RESIZE_LETTERBOX, MS_META_FILTER_BILINEAR, 9, 30, 20, 20, 1.0f);
    check_against_ref(MS_META_RESIZE_CROP, MS_META_FILTER_BILINEAR, 9, 30, 20, 20, 0);
}

static void test_pre_letterbox_by_hand(void **state) {
    (void)state;
    /* 8x4 of ones into 8x8: rows 0-1 and 6-7 are bars */
    ms_model_meta m = base_meta(8, 8, 1, MS_META_RESIZE_LETTERBOX, MS_META_FILTER_AREA);
    m.pad_value = 0.25f;
    ms_image *img = make_image(8, 4, 1);
    for (int i = 0; i < 32; i++) img->data[i] = 1.0f;
    ms_geometry g;
    float *out = run_pre(&m, img, &g);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) assert_near(out[y * 8 + x], y < 2 || y >= 6 ? 0.25f : 1.0f, 0);
    free(out);
    ms_image_destroy(img);

    /* 10x3 into 4x4: scale 0.4, the image spans rows [1.4, 2.6): rows 1 and 2 (centres 1.5,
     * 2.5) show it. Row 1's footprint [1, 2) is image rows [-1, 1.5) clipped to [0, 1.5):
     * (r0 + r1 / 2) / 1.5; row 2's is [1.5, 4) clipped to [1.5, 3): (r1 / 2 + r2) / 1.5 */
    m = base_meta(4, 4, 1, MS_META_RESIZE_LETTERBOX, MS_META_FILTER_AREA);
    m.pad_value = 0.5f;
    img = make_image(10, 3, 1);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 10; x++) img->data[y * 10 + x] = (float)(y + 1) / 4; /* rows */
    out = run_pre(&m, img, &g);
    for (int x = 0; x < 4; x++) {
        assert_near(out[0 * 4 + x], 0.5f, 0);
        assert_near(out[1 * 4 + x], (0.25 + 0.5 / 2) / 1.5, 1e-6);
        assert_near(out[2 * 4 + x], (0.5 / 2 + 0.75) / 1.5, 1e-6);
        assert_near(out[3 * 4 + x], 0.5f, 0);
    }
    free(out);
    ms_image_destroy(img);
}

static void test_pre_crop_by_hand(void **state) {
    (void)state;
    /* 8x4 into 4x4: scale 1, columns 2..5 exactly */
    ms_model_meta m = base_meta(4, 4, 1, MS_META_RESIZE_CROP, MS_META_FILTER_AREA);
    ms_image *img = make_image(8, 4, 1);
    ms_geometry g;
    float *out = run_pre(&m, img, &g);
    assert_true(g.offset_x == -2 && g.scale_x == 1);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) assert_near(out[y * 4 + x], img->data[y * 8 + x + 2], 0);
    free(out);
    ms_image_destroy(img);
}

/* ---- channels and normalisation ---- */

static void test_pre_channels_norm(void **state) {
    (void)state;
    ms_geometry g;
    ms_image *grey = make_image(6, 6, 1);
    ms_image *rgb = make_image(6, 6, 3);
    size_t px = 36;

    /* grey into 3 channels, per-channel norm */
    ms_model_meta m = base_meta(6, 6, 3, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    m.norm_count = 3;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    memcpy(m.norm_mean, mean, sizeof mean);
    memcpy(m.norm_std, sd, sizeof sd);
    float *out = run_pre(&m, grey, &g);
    for (size_t c = 0; c < 3; c++)
        for (size_t i = 0; i < px; i++)
            assert_near(out[c * px + i], (grey->data[i] - mean[c]) / sd[c], 1e-5);
    free(out);

    /* RGB into RGB: channel by channel */
    m.colour = MS_META_COLOUR_RGB;
    out = run_pre(&m, rgb, &g);
    for (size_t c = 0; c < 3; c++)
        for (size_t i = 0; i < px; i++)
            assert_near(out[c * px + i], (rgb->data[c * px + i] - mean[c]) / sd[c], 1e-5);
    free(out);

    /* RGB into a grey model: luma; one norm value */
    m = base_meta(6, 6, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    m.norm_count = 1;
    m.norm_mean[0] = 0.5f;
    m.norm_std[0] = 0.25f;
    out = run_pre(&m, rgb, &g);
    for (size_t i = 0; i < px; i++) {
        double l = 0.299 * rgb->data[i] + 0.587 * rgb->data[px + i] + 0.114 * rgb->data[2 * px + i];
        assert_near(out[i], (l - 0.5) / 0.25, 1e-5);
    }
    free(out);

    /* RGB image, grey model with 3 channels: luma replicated; one norm for all */
    m.input_channels = 3;
    out = run_pre(&m, rgb, &g);
    for (size_t c = 0; c < 3; c++)
        for (size_t i = 0; i < px; i++) {
            double l =
                0.299 * rgb->data[i] + 0.587 * rgb->data[px + i] + 0.114 * rgb->data[2 * px + i];
            assert_near(out[c * px + i], (l - 0.5) / 0.25, 1e-5);
        }
    free(out);

    /* no norm: identity */
    m = base_meta(6, 6, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_BILINEAR);
    out = run_pre(&m, grey, &g);
    assert_memory_equal(out, grey->data, px * sizeof *out);
    free(out);

    /* letterbox bars are normalised too (pad_value is before normalisation) */
    m = base_meta(6, 8, 1, MS_META_RESIZE_LETTERBOX, MS_META_FILTER_AREA);
    m.pad_value = 0.2f;
    m.norm_count = 1;
    m.norm_mean[0] = 0.1f;
    m.norm_std[0] = 0.5f;
    out = run_pre(&m, grey, &g);
    assert_near(out[0], (0.2 - 0.1) / 0.5, 1e-6);
    assert_near(out[6 * 8 - 1], (0.2 - 0.1) / 0.5, 1e-6);
    assert_near(out[6], (grey->data[0] - 0.1) / 0.5, 1e-6);
    free(out);

    ms_image_destroy(grey);
    ms_image_destroy(rgb);
}

static void test_pre_errors(void **state) {
    (void)state;
    ms_image *img = make_image(4, 4, 1);
    float out[48];
    ms_geometry g;
    ms_err err;
    ms_model_meta m = base_meta(4, 4, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    assert_int_equal(ms_score_preprocess(NULL, img, out, &g, &err), MS_EINVAL);
    assert_int_equal(ms_score_preprocess(&m, NULL, out, &g, &err), MS_EINVAL);
    assert_int_equal(ms_score_preprocess(&m, img, NULL, &g, &err), MS_EINVAL);
    assert_int_equal(ms_score_preprocess(&m, img, out, NULL, &err), MS_EINVAL);
    m.input_channels = 2;
    assert_int_equal(ms_score_preprocess(&m, img, out, &g, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "input_channels=2"));
    m.input_channels = 1;
    m.colour = MS_META_COLOUR_RGB;
    assert_int_equal(ms_score_preprocess(&m, img, out, &g, &err), MS_EINVAL);
    m.colour = MS_META_COLOUR_GREY;
    m.norm_count = 1;
    m.norm_std[0] = 0;
    assert_int_equal(ms_score_preprocess(&m, img, out, &g, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "norm_std[0]=0"));
    m.norm_count = 2; /* neither 1 nor input_channels */
    m.norm_std[0] = m.norm_std[1] = 1;
    assert_int_equal(ms_score_preprocess(&m, img, out, &g, &err), MS_EINVAL);
    m.norm_count = 0;
    m.resize = MS_META_RESIZE_NONE;
    assert_int_equal(ms_score_preprocess(&m, img, out, &g, &err), MS_EINVAL);
    m.resize = MS_META_RESIZE_LETTERBOX;
    m.pad_value = 1.5f;
    assert_int_equal(ms_score_preprocess(&m, img, out, &g, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "pad_value=1.5"));
    m.pad_value = 0;
    img->channels = 2;
    assert_int_equal(ms_score_preprocess(&m, img, out, &g, &err), MS_EINVAL);
    img->channels = 1;
    ms_image_destroy(img);
}

/* ---- calibration ---- */

static void test_probability(void **state) {
    (void)state;
    ms_model_meta m = base_meta(4, 4, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    m.score_kind = MS_META_KIND_LOGIT;
    m.temperature = 2.0f;
    assert_near(ms_score_probability(&m, 2.0), 0.7310585786300049, 1e-15);
    assert_near(ms_score_probability(&m, 0.0), 0.5, 0);
    assert_near(ms_score_probability(&m, -2.0), 1 - 0.7310585786300049, 1e-15);
    assert_near(ms_score_probability(&m, 1e6), 1.0, 0);
    double tiny = ms_score_probability(&m, -1e4); /* e^-5000 underflows to 0, not NaN */
    assert_true(tiny >= 0 && tiny < 1e-300);
    assert_true(ms_score_probability(&m, -80.0) > 0); /* no 1 - 1 cancellation */
    assert_true(isnan(ms_score_probability(&m, NAN)));
    assert_near(ms_score_probability(&m, INFINITY), 1.0, 0);
    assert_near(ms_score_probability(&m, -INFINITY), 0.0, 0);

    m.score_kind = MS_META_KIND_PROBABILITY;
    assert_near(ms_score_probability(&m, 0.3), 0.3, 0);
    assert_near(ms_score_probability(&m, -0.5), 0.0, 0);
    assert_near(ms_score_probability(&m, 1.5), 1.0, 0);
    assert_true(isnan(ms_score_probability(&m, NAN)));

    /* the map shares the score's temperature */
    m.map_kind = MS_META_KIND_LOGIT;
    assert_near(ms_score_map_probability(&m, 2.0), 0.7310585786300049, 1e-15);
    m.map_kind = MS_META_KIND_PROBABILITY;
    assert_near(ms_score_map_probability(&m, 2.0), 1.0, 0);
    m.map_kind = MS_META_KIND_NONE;
    assert_true(isnan(ms_score_map_probability(&m, 0.5)));
}

/* ---- the map back onto the image ---- */

/* One image pixel from the definitions, in double. */
static double ref_map_px(const float *map, int32_t mw, int32_t mh, const ms_geometry *g, int32_t x,
                         int32_t y) {
    double ix = (x + 0.5) * g->scale_x + g->offset_x, iy = (y + 0.5) * g->scale_y + g->offset_y;
    if (ix < 0 || ix >= g->input_w || iy < 0 || iy >= g->input_h) return 0;
    double u = ix / g->input_w * mw - 0.5, v = iy / g->input_h * mh - 0.5;
    u = fmin(fmax(u, 0), mw - 1);
    v = fmin(fmax(v, 0), mh - 1);
    int32_t u0 = (int32_t)u, v0 = (int32_t)v;
    int32_t u1 = u0 + 1 < mw ? u0 + 1 : u0, v1 = v0 + 1 < mh ? v0 + 1 : v0;
    double a = u - u0, b = v - v0;
    return (1 - b) * ((1 - a) * map[v0 * mw + u0] + a * map[v0 * mw + u1]) +
           b * ((1 - a) * map[v1 * mw + u0] + a * map[v1 * mw + u1]);
}

static float *run_map(const float *map, int32_t mw, int32_t mh, const ms_geometry *g) {
    float *out = malloc((size_t)g->image_w * (size_t)g->image_h * sizeof *out);
    assert_non_null(out);
    ms_err err;
    if (ms_score_map_to_image(map, mw, mh, g, out, &err) != MS_OK) fail_msg("%s", err.msg);
    return out;
}

static void check_map_ref(ms_meta_resize r, int32_t iw, int32_t ih, int32_t in_w, int32_t in_h,
                          int32_t mw, int32_t mh) {
    ms_model_meta m = base_meta(in_w, in_h, 1, r, MS_META_FILTER_AREA);
    ms_geometry g;
    assert_int_equal(ms_geometry_make(&m, iw, ih, &g, NULL), MS_OK);
    float *map = malloc((size_t)mw * (size_t)mh * sizeof *map);
    for (int32_t i = 0; i < mw * mh; i++) map[i] = frand();
    float *out = run_map(map, mw, mh, &g);
    for (int32_t y = 0; y < ih; y++)
        for (int32_t x = 0; x < iw; x++) {
            double e = ref_map_px(map, mw, mh, &g, x, y);
            if (!(fabs(out[y * iw + x] - e) < 1e-6))
                fail_msg("%s %dx%d map %dx%d: pixel (%d,%d) %g, expected %g",
                         ms_meta_resize_name(r), iw, ih, mw, mh, x, y, out[y * iw + x], e);
        }
    free(out);
    free(map);
}

static void test_map_reference(void **state) {
    (void)state;
    check_map_ref(MS_META_RESIZE_STRETCH, 37, 23, 16, 16, 4, 4);
    check_map_ref(MS_META_RESIZE_STRETCH, 5, 3, 16, 8, 8, 2); /* map finer than the image */
    check_map_ref(MS_META_RESIZE_LETTERBOX, 40, 17, 32, 32, 8, 8);
    check_map_ref(MS_META_RESIZE_CROP, 40, 17, 32, 32, 8, 8);
    check_map_ref(MS_META_RESIZE_CROP, 17, 40, 24, 12, 6, 3);
    check_map_ref(MS_META_RESIZE_STRETCH, 9, 9, 4, 4, 1, 1);
}

static void test_map_constant_and_hot_cell(void **state) {
    (void)state;
    ms_geometry g;
    /* constant map -> constant image */
    ms_model_meta m = base_meta(8, 8, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    assert_int_equal(ms_geometry_make(&m, 13, 9, &g, NULL), MS_OK);
    float map[16];
    for (int i = 0; i < 16; i++) map[i] = 0.7f;
    float *out = run_map(map, 4, 4, &g);
    for (int i = 0; i < 13 * 9; i++) assert_near(out[i], 0.7f, 1e-6);
    free(out);

    /* stretch 16x16 image -> 8x8 input, 4x4 map: cell (2, 1) is centred at input (5, 3), i.e.
     * image (10, 6), between pixels 9 and 10 (x) and 5 and 6 (y): 0.875^2 on those four */
    memset(map, 0, sizeof map);
    map[1 * 4 + 2] = 1.0f;
    assert_int_equal(ms_geometry_make(&m, 16, 16, &g, NULL), MS_OK);
    out = run_map(map, 4, 4, &g);
    int best = 0;
    for (int i = 1; i < 256; i++)
        if (out[i] > out[best]) best = i;
    assert_int_equal(best, 5 * 16 + 9);
    assert_near(out[5 * 16 + 9], 0.765625, 1e-6);
    assert_near(out[6 * 16 + 10], 0.765625, 1e-6);
    assert_near(out[0], 0.0, 0);
    free(out);

    /* letterbox 16x8 image into 8x8: scale 0.5, bars of 2 above and below; cell (1, 2) is
     * centred at input (3, 5) = image (6, 6) */
    m.resize = MS_META_RESIZE_LETTERBOX;
    memset(map, 0, sizeof map);
    map[2 * 4 + 1] = 1.0f;
    assert_int_equal(ms_geometry_make(&m, 16, 8, &g, NULL), MS_OK);
    out = run_map(map, 4, 4, &g);
    best = 0;
    for (int i = 1; i < 128; i++)
        if (out[i] > out[best]) best = i;
    assert_int_equal(best, 5 * 16 + 5);
    assert_near(out[5 * 16 + 5], 0.765625, 1e-6);
    assert_near(out[6 * 16 + 6], 0.765625, 1e-6);
    free(out);

    /* crop 16x8 into 8x8: scale 1, columns 0-3 and 12-15 are cut away: 0 even on a map of
     * ones; cell (0, 0) sits at input (1, 1) = image (5, 1) */
    m.resize = MS_META_RESIZE_CROP;
    for (int i = 0; i < 16; i++) map[i] = 1.0f;
    assert_int_equal(ms_geometry_make(&m, 16, 8, &g, NULL), MS_OK);
    out = run_map(map, 4, 4, &g);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 16; x++)
            assert_near(out[y * 16 + x], x < 4 || x >= 12 ? 0.0f : 1.0f, 1e-6);
    free(out);
    memset(map, 0, sizeof map);
    map[0] = 1.0f;
    out = run_map(map, 4, 4, &g);
    assert_near(out[0 * 16 + 4], 1.0f, 1e-6); /* clamped edge cell */
    assert_near(out[1 * 16 + 5], 0.75f * 0.75f, 1e-6);
    assert_near(out[1 * 16 + 3], 0.0f, 0);
    free(out);
}

static void test_map_errors(void **state) {
    (void)state;
    ms_model_meta m = base_meta(8, 8, 1, MS_META_RESIZE_STRETCH, MS_META_FILTER_AREA);
    ms_geometry g;
    assert_int_equal(ms_geometry_make(&m, 4, 4, &g, NULL), MS_OK);
    float map[4] = {0}, out[16];
    ms_err err;
    assert_int_equal(ms_score_map_to_image(NULL, 2, 2, &g, out, &err), MS_EINVAL);
    assert_int_equal(ms_score_map_to_image(map, 2, 2, NULL, out, &err), MS_EINVAL);
    assert_int_equal(ms_score_map_to_image(map, 2, 2, &g, NULL, &err), MS_EINVAL);
    assert_int_equal(ms_score_map_to_image(map, 0, 2, &g, out, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "0x2"));
    ms_geometry bad = g;
    bad.scale_x = 0;
    assert_int_equal(ms_score_map_to_image(map, 2, 2, &bad, out, &err), MS_EINVAL);
    bad = g;
    bad.offset_y = NAN;
    assert_int_equal(ms_score_map_to_image(map, 2, 2, &bad, out, &err), MS_EINVAL);
    bad = g;
    bad.image_h = -3;
    assert_int_equal(ms_score_map_to_image(map, 2, 2, &bad, out, &err), MS_EINVAL);
}

/* ---- regions ---- */

static ms_region_opts ropts(float thr, float low, uint64_t min_area, uint32_t max_regions) {
    ms_region_opts o = {thr, low, min_area, max_regions};
    return o;
}

static ms_region *run_regions(const float *p, int32_t w, int32_t h, double rmm, double cmm,
                              ms_region_opts o, uint32_t *n) {
    ms_region *r = (ms_region *)&r; /* must be replaced, also by NULL */
    *n = 12345;
    ms_err err;
    if (ms_score_regions(p, w, h, rmm, cmm, &o, &r, n, &err) != MS_OK) fail_msg("%s", err.msg);
    if (*n == 0) assert_null(r);
    return r;
}

static void fill_rect(float *p, int32_t w, int32_t x, int32_t y, int32_t rw, int32_t rh, float v) {
    for (int32_t j = y; j < y + rh; j++)
        for (int32_t i = x; i < x + rw; i++) p[j * w + i] = v;
}

static void test_regions_two_blobs(void **state) {
    (void)state;
    float p[10 * 8] = {0};
    fill_rect(p, 10, 1, 1, 2, 2, 0.6f); /* A: 2x2, peak 0.9 at (2, 2) */
    p[2 * 10 + 2] = 0.9f;
    fill_rect(p, 10, 6, 4, 3, 3, 0.8f); /* B: 3x3 of 0.8, peak at its first pixel */
    uint32_t n;
    ms_region *r = run_regions(p, 10, 8, 0.5, 0.25, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].rank, 1);
    assert_true(r[0].x == 1 && r[0].y == 1 && r[0].w == 2 && r[0].h == 2);
    assert_int_equal(r[0].area_px, 4);
    assert_near(r[0].centroid_x, 2.0, 1e-12);
    assert_near(r[0].centroid_y, 2.0, 1e-12);
    assert_near(r[0].peak, 0.9f, 0);
    assert_true(r[0].peak_x == 2 && r[0].peak_y == 2);
    assert_near(r[0].mean, (0.6 * 3 + 0.9) / 4, 1e-6);
    assert_near(r[0].area_mm2, 4 * 0.5 * 0.25, 1e-12);
    assert_int_equal(r[1].rank, 2);
    assert_true(r[1].x == 6 && r[1].y == 4 && r[1].w == 3 && r[1].h == 3);
    assert_int_equal(r[1].area_px, 9);
    assert_near(r[1].centroid_x, 7.5, 1e-12);
    assert_near(r[1].centroid_y, 5.5, 1e-12);
    assert_true(r[1].peak_x == 6 && r[1].peak_y == 4); /* first of equal maxima */
    assert_near(r[1].mean, 0.8f, 1e-6);
    ms_free(r);

    /* no spacing (either one 0): -1 */
    r = run_regions(p, 10, 8, 0.0, 0.25, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_near(r[0].area_mm2, -1.0, 0);
    ms_free(r);
    r = run_regions(p, 10, 8, 0.3, 0.0, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_near(r[1].area_mm2, -1.0, 0);
    ms_free(r);
}

static void test_regions_hysteresis(void **state) {
    (void)state;
    /* two seeds joined by a low bridge; a low-only blob elsewhere */
    float p[12 * 5] = {0};
    p[1 * 12 + 1] = 0.9f;
    fill_rect(p, 12, 2, 1, 4, 1, 0.3f);
    p[1 * 12 + 6] = 0.7f;
    fill_rect(p, 12, 9, 3, 2, 2, 0.4f); /* never >= 0.5: dropped */
    uint32_t n;
    ms_region *r = run_regions(p, 12, 5, 0, 0, ropts(0.5f, 0.2f, 1, 10), &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].area_px, 6);
    assert_true(r[0].x == 1 && r[0].w == 6 && r[0].h == 1);
    assert_true(r[0].peak_x == 1 && r[0].peak_y == 1);
    ms_free(r);
    /* without hysteresis the bridge is gone: two regions */
    r = run_regions(p, 12, 5, 0, 0, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_int_equal(n, 2);
    assert_true(r[0].area_px == 1 && r[1].area_px == 1 && r[1].peak_x == 6);
    ms_free(r);
    /* low_threshold 0: every pixel is a candidate, the whole map one component */
    r = run_regions(p, 12, 5, 0, 0, ropts(0.5f, 0.0f, 1, 10), &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].area_px, 60);
    ms_free(r);

    /* NaN is below any threshold: it does not bridge */
    float q[5] = {0.9f, NAN, 0.9f, 0.0f, 0.0f};
    r = run_regions(q, 5, 1, 0, 0, ropts(0.5f, 0.0f, 1, 10), &n);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].area_px, 3); /* same peak, larger area first: {2,3,4} */
    assert_int_equal(r[0].peak_x, 2);
    assert_int_equal(r[1].area_px, 1);
    ms_free(r);
}

static void test_regions_connectivity(void **state) {
    (void)state;
    uint32_t n;
    /* a diagonal and an anti-diagonal are each one region */
    float d[4 * 4] = {0};
    d[0] = d[5] = d[10] = d[15] = 0.9f;
    ms_region *r = run_regions(d, 4, 4, 0, 0, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].area_px, 4);
    assert_true(r[0].w == 4 && r[0].h == 4);
    ms_free(r);
    float a[4 * 4] = {0};
    a[3] = a[6] = a[9] = a[12] = 0.9f;
    r = run_regions(a, 4, 4, 0, 0, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_int_equal(n, 1);
    ms_free(r);
    /* a U and a W: labels that meet only later (NE joins NW or W) */
    static const float u[5 * 4] = {1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0};
    r = run_regions(u, 5, 4, 0, 0, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].area_px, 10);
    ms_free(r);
    /* 4-neighbours only through a corner: two 2x2 blocks touching corners are one region */
    float c[6 * 4] = {0};
    fill_rect(c, 6, 0, 0, 2, 2, 0.9f);
    fill_rect(c, 6, 2, 2, 2, 2, 0.9f);
    r = run_regions(c, 6, 4, 0, 0, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_int_equal(n, 1);
    ms_free(r);
}

/* Reference: flood fill with an explicit stack, then the same statistics and order. */
typedef struct ref_region {
    uint64_t area;
    int32_t x0, y0, x1, y1, px, py;
    float peak;
} ref_region;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_region *a = pa, *b = pb;
    if (a->peak != b->peak) return a->peak > b->peak ? -1 : 1;
    if (a->area != b->area) return a->area > b->area ? -1 : 1;
    if (a->py != b->py) return a->py < b->py ? -1 : 1;
    return a->px < b->px ? -1 : a->px > b->px;
}

static uint32_t ref_regions(const float *p, int32_t w, int32_t h, ms_region_opts o, ref_region *out,
                            uint32_t cap) {
    size_t npx = (size_t)w * (size_t)h;
    int32_t *seen = calloc(npx, sizeof *seen), *stack = malloc(npx * sizeof *stack);
    uint32_t n = 0;
    for (int32_t s = 0; s < (int32_t)npx; s++) {
        if (seen[s] || !(p[s] >= o.low_threshold)) continue;
        ref_region rr = {0, w, h, -1, -1, 0, 0, -1.0f};
        bool seeded = false;
        size_t top = 0;
        stack[top++] = s;
        seen[s] = 1;
        while (top) {
            int32_t q = stack[--top], x = q % w, y = q / w;
            rr.area++;
            if (x < rr.x0) rr.x0 = x;
            if (x > rr.x1) rr.x1 = x;
            if (y < rr.y0) rr.y0 = y;
            if (y > rr.y1) rr.y1 = y;
            /* the first peak in row-major order */
            if (p[q] > rr.peak || (p[q] == rr.peak && (y < rr.py || (y == rr.py && x < rr.px)))) {
                rr.peak = p[q];
                rr.px = x;
                rr.py = y;
            }
            if (p[q] >= o.threshold) seeded = true;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int32_t nx = x + dx, ny = y + dy;
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    int32_t nq = ny * w + nx;
                    if (!seen[nq] && p[nq] >= o.low_threshold) {
                        seen[nq] = 1;
                        stack[top++] = nq;
                    }
                }
        }
        if (seeded && rr.area >= o.min_area_px && n < cap) out[n++] = rr;
    }
    free(seen);
    free(stack);
    qsort(out, n, sizeof *out, ref_cmp);
    return n;
}

static void test_regions_vs_flood_fill(void **state) {
    (void)state;
    enum { W = 67, H = 41, CAP = W * H };
    float *p = malloc(W * H * sizeof *p);
    ref_region *ref = malloc(CAP * sizeof *ref);
    for (int trial = 0; trial < 40; trial++) {
        float dens = 0.2f + 0.02f * (float)trial; /* sparse specks to one big maze */
        for (int i = 0; i < W * H; i++) {
            float v = frand();
            p[i] = v < dens ? (float)(int)(v / dens * 8) / 8 : 0; /* coarse: ties in peak */
        }
        ms_region_opts o = ropts(0.75f, 0.25f, (uint64_t)(trial % 3), (uint32_t)(1 + trial * 7));
        uint32_t n;
        ms_region *r = run_regions(p, W, H, 0, 0, o, &n);
        uint32_t m = ref_regions(p, W, H, o, ref, CAP);
        uint32_t want = m < o.max_regions ? m : o.max_regions;
        if (n != want) fail_msg("trial %d: %u regions, reference %u", trial, n, want);
        for (uint32_t i = 0; i < n; i++) {
            const ms_region *a = &r[i];
            const ref_region *b = &ref[i];
            if (a->rank != i + 1 || a->area_px != b->area || a->x != b->x0 || a->y != b->y0 ||
                a->w != b->x1 - b->x0 + 1 || a->h != b->y1 - b->y0 + 1 || a->peak != b->peak ||
                a->peak_x != b->px || a->peak_y != b->py)
                fail_msg("trial %d region %u: rank %u area %llu box %d,%d %dx%d peak %g at "
                         "%d,%d; reference area %llu box %d,%d %dx%d peak %g at %d,%d",
                         trial, i, a->rank, (unsigned long long)a->area_px, a->x, a->y, a->w, a->h,
                         (double)a->peak, a->peak_x, a->peak_y, (unsigned long long)b->area, b->x0,
                         b->y0, b->x1 - b->x0 + 1, b->y1 - b->y0 + 1, (double)b->peak, b->px,
                         b->py);
        }
        ms_free(r);
    }
    free(p);
    free(ref);
}

static void test_regions_ranking_and_limits(void **state) {
    (void)state;
    float p[20 * 6] = {0};
    fill_rect(p, 20, 0, 0, 1, 1, 0.8f);  /* A: 0.8, area 1, peak (0, 0) */
    fill_rect(p, 20, 3, 0, 2, 1, 0.8f);  /* B: 0.8, area 2 -> before A */
    fill_rect(p, 20, 7, 3, 1, 1, 0.9f);  /* C: 0.9 -> first */
    fill_rect(p, 20, 10, 0, 1, 1, 0.8f); /* D: ties A in peak and area; row 0, column 10 */
    fill_rect(p, 20, 14, 4, 1, 1, 0.6f); /* E: last */
    uint32_t n;
    ms_region *r = run_regions(p, 20, 6, 0, 0, ropts(0.5f, 0.5f, 0, 10), &n);
    assert_int_equal(n, 5);
    int32_t want_x[5] = {7, 3, 0, 10, 14};
    for (uint32_t i = 0; i < 5; i++) {
        assert_int_equal(r[i].rank, i + 1);
        assert_int_equal(r[i].peak_x, want_x[i]);
    }
    ms_free(r);
    /* the tie broken by row before column: A moves to (18, 0), D to (1, 2) */
    p[0] = 0;
    p[10] = 0;
    p[18] = 0.8f;
    p[2 * 20 + 1] = 0.8f;
    r = run_regions(p, 20, 6, 0, 0, ropts(0.5f, 0.5f, 0, 10), &n);
    assert_int_equal(n, 5);
    assert_true(r[2].peak_x == 18 && r[2].peak_y == 0);
    assert_true(r[3].peak_x == 1 && r[3].peak_y == 2);
    ms_free(r);

    /* truncation keeps the best and ranks them 1..n */
    r = run_regions(p, 20, 6, 0, 0, ropts(0.5f, 0.5f, 0, 3), &n);
    assert_int_equal(n, 3);
    assert_true(r[0].peak_x == 7 && r[1].peak_x == 3 && r[2].peak_x == 18);
    assert_int_equal(r[2].rank, 3);
    ms_free(r);
    r = run_regions(p, 20, 6, 0, 0, ropts(0.5f, 0.5f, 0, 1), &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].rank, 1);
    ms_free(r);

    /* min area: only B (2) survives 2; nothing survives 3 */
    r = run_regions(p, 20, 6, 0, 0, ropts(0.5f, 0.5f, 2, 10), &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].area_px, 2);
    ms_free(r);
    r = run_regions(p, 20, 6, 0, 0, ropts(0.5f, 0.5f, 3, 10), &n);
    assert_int_equal(n, 0);
}

static void test_regions_thin_and_empty(void **state) {
    (void)state;
    uint32_t n;
    float row[9] = {0.9f, 0.9f, 0, 0.6f, 0, 0, 0.7f, 0.7f, 0.7f};
    ms_region *r = run_regions(row, 9, 1, 1, 2, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_int_equal(n, 3);
    assert_true(r[0].x == 0 && r[0].w == 2 && r[0].h == 1 && r[0].y == 0);
    assert_true(r[1].x == 6 && r[1].w == 3);
    assert_near(r[1].centroid_x, 7.5, 1e-12);
    assert_near(r[1].centroid_y, 0.5, 1e-12);
    assert_near(r[1].area_mm2, 6.0, 1e-12);
    assert_true(r[2].x == 3 && r[2].w == 1);
    ms_free(r);
    /* the same as a column */
    r = run_regions(row, 1, 9, 1, 2, ropts(0.5f, 0.5f, 1, 10), &n);
    assert_int_equal(n, 3);
    assert_true(r[0].y == 0 && r[0].h == 2 && r[0].w == 1 && r[0].x == 0);
    assert_true(r[1].y == 6 && r[1].h == 3 && r[1].peak_y == 6);
    assert_near(r[1].centroid_y, 7.5, 1e-12);
    ms_free(r);
    /* 1x1 */
    float one = 1.0f;
    r = run_regions(&one, 1, 1, 0, 0, ropts(1.0f, 1.0f, 1, 1), &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].area_px, 1);
    ms_free(r);

    float *zero = calloc(64 * 32, sizeof *zero);
    r = run_regions(zero, 64, 32, 0, 0, ropts(0.5f, 0.1f, 0, 5), &n);
    assert_int_equal(n, 0);
    assert_null(r);
    free(zero);
}

static void test_regions_errors(void **state) {
    (void)state;
    float p[4] = {1, 1, 1, 1};
    ms_region *r = (ms_region *)p;
    uint32_t n = 7;
    ms_err err;
    struct {
        ms_region_opts o;
        const char *msg;
    } bad[] = {
        {{0.5f, 0.6f, 0, 1}, "low_threshold=0.6"}, {{1.5f, 0.5f, 0, 1}, "threshold=1.5"},
        {{NAN, 0.1f, 0, 1}, "threshold=nan"},      {{0.5f, -0.1f, 0, 1}, "low_threshold=-0.1"},
        {{INFINITY, 0.1f, 0, 1}, "threshold=inf"}, {{0.5f, 0.1f, 0, 0}, "max_regions=0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(ms_score_regions(p, 2, 2, 0, 0, &bad[i].o, &r, &n, &err), MS_EINVAL);
        if (strstr(err.msg, bad[i].msg) == NULL) fail_msg("case %zu: %s", i, err.msg);
    }
    ms_region_opts o = ropts(0.5f, 0.5f, 0, 1);
    assert_int_equal(ms_score_regions(NULL, 2, 2, 0, 0, &o, &r, &n, &err), MS_EINVAL);
    assert_int_equal(ms_score_regions(p, 0, 2, 0, 0, &o, &r, &n, &err), MS_EINVAL);
    assert_int_equal(ms_score_regions(p, 2, -2, 0, 0, &o, &r, &n, &err), MS_EINVAL);
    assert_int_equal(ms_score_regions(p, 2, 2, 0, 0, NULL, &r, &n, &err), MS_EINVAL);
    assert_int_equal(ms_score_regions(p, 2, 2, 0, 0, &o, NULL, &n, &err), MS_EINVAL);
    assert_int_equal(ms_score_regions(p, 2, 2, 0, 0, &o, &r, NULL, &err), MS_EINVAL);
    assert_ptr_equal(r, (ms_region *)p); /* outputs untouched on failure */
    assert_int_equal(n, 7);
}

/* ---- allocation failures ---- */

static void test_alloc_failures(void **state) {
    (void)state;
    ms_image *img = make_image(50, 30, 3);
    ms_model_meta m = base_meta(16, 16, 1, MS_META_RESIZE_LETTERBOX, MS_META_FILTER_AREA);
    float out[256];
    float p[8 * 8] = {0};
    fill_rect(p, 8, 1, 1, 2, 2, 0.9f);
    fill_rect(p, 8, 5, 5, 2, 2, 0.8f);
    ms_region_opts o = ropts(0.5f, 0.5f, 0, 1); /* truncation: one more allocation */
    ms_geometry g;
    assert_int_equal(ms_geometry_make(&m, 50, 30, &g, NULL), MS_OK);
    float *img_out = malloc(50 * 30 * sizeof *img_out);

    for (int fn = 0; fn < 3; fn++) {
        bool done = false;
        for (long k = 1; !done && k < 100; k++) {
            hook_state hs = {0};
            hs.fail_at = k;
            hooks_install(&hs);
            ms_err err;
            ms_status st;
            ms_region *r = NULL;
            uint32_t n = 0;
            if (fn == 0)
                st = ms_score_preprocess(&m, img, out, &g, &err);
            else if (fn == 1)
                st = ms_score_map_to_image(p, 8, 8, &g, img_out, &err);
            else
                st = ms_score_regions(p, 8, 8, 0, 0, &o, &r, &n, &err);
            if (st == MS_OK) {
                ms_free(r);
                done = true;
            } else if (st != MS_ENOMEM) {
                ms_alloc_set_hooks(NULL);
                fail_msg("fn %d, allocation %ld: %s", fn, k, err.msg);
            }
            ms_alloc_set_hooks(NULL);
            if (hs.live != 0) fail_msg("fn %d, allocation %ld: %ld blocks leaked", fn, k, hs.live);
            if (done) assert_true(k > 1); /* each function allocated something */
        }
        assert_true(done);
    }
    free(img_out);
    ms_image_destroy(img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry_modes),
        cmocka_unit_test(test_geometry_errors),
        cmocka_unit_test(test_decode_opts),
        cmocka_unit_test(test_pre_area_box_filter),
        cmocka_unit_test(test_pre_area_box_by_hand),
        cmocka_unit_test(test_pre_bilinear_pytorch),
        cmocka_unit_test(test_pre_bilinear_ref),
        cmocka_unit_test(test_pre_letterbox_by_hand),
        cmocka_unit_test(test_pre_crop_by_hand),
        cmocka_unit_test(test_pre_channels_norm),
        cmocka_unit_test(test_pre_errors),
        cmocka_unit_test(test_probability),
        cmocka_unit_test(test_map_reference),
        cmocka_unit_test(test_map_constant_and_hot_cell),
        cmocka_unit_test(test_map_errors),
        cmocka_unit_test(test_regions_two_blobs),
        cmocka_unit_test(test_regions_hysteresis),
        cmocka_unit_test(test_regions_connectivity),
        cmocka_unit_test(test_regions_vs_flood_fill),
        cmocka_unit_test(test_regions_ranking_and_limits),
        cmocka_unit_test(test_regions_thin_and_empty),
        cmocka_unit_test(test_regions_errors),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
