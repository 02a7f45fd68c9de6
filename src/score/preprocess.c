/* score layer, first half: the geometry between image and model input, the model input itself
 * (resize, pad, colour, normalisation), output calibration, and the map back onto the image.
 *
 * Resampling is separable: each axis gets a table of source taps and weights per output pixel
 * (box-filter overlaps when shrinking with the area filter, two bilinear taps otherwise), and
 * the image goes through a vertical pass (whole source rows, contiguous, vectorisable) and a
 * horizontal pass over the much smaller intermediate. */
#include "medscreen/score.h"

#include <math.h>
#include <string.h>

#include "medscreen/core.h"

/* ---- geometry ---- */

ms_status ms_geometry_make(const ms_model_meta *meta, int32_t image_w, int32_t image_h,
                           ms_geometry *out, ms_err *err) {
    if (meta == NULL || out == NULL)
        return ms_fail(err, MS_EINVAL, "geometry: %s is NULL", meta == NULL ? "meta" : "out");
    if (image_w <= 0 || image_h <= 0)
        return ms_fail(err, MS_EINVAL, "geometry: image size %dx%d (WxH) is not positive",
                       (int)image_w, (int)image_h);
    if (meta->input_w <= 0 || meta->input_h <= 0)
        return ms_fail(err, MS_EINVAL, "geometry: model input_size %dx%d (HxW) is not positive",
                       (int)meta->input_h, (int)meta->input_w);
    ms_geometry g;
    memset(&g, 0, sizeof g);
    g.image_w = image_w;
    g.image_h = image_h;
    g.input_w = meta->input_w;
    g.input_h = meta->input_h;
    g.resize = meta->resize;
    double sx = (double)meta->input_w / image_w, sy = (double)meta->input_h / image_h;
    switch (meta->resize) {
    case MS_META_RESIZE_STRETCH:
        g.scale_x = sx;
        g.scale_y = sy;
        break;
    case MS_META_RESIZE_LETTERBOX:
    case MS_META_RESIZE_CROP: {
        double s = meta->resize == MS_META_RESIZE_LETTERBOX ? fmin(sx, sy) : fmax(sx, sy);
        g.scale_x = g.scale_y = s;
        /* centred: the bars (letterbox, >= 0) or the cut (crop, <= 0) split evenly */
        g.offset_x = ((double)meta->input_w - image_w * s) / 2.0;
        g.offset_y = ((double)meta->input_h - image_h * s) / 2.0;
        break;
    }
    default:
        return ms_fail(err, MS_EINVAL, "geometry: model meta has no usable resize (%s)",
                       ms_meta_resize_name(meta->resize));
    }
    *out = g;
    return MS_OK;
}

/* ---- decode options ---- */

ms_decode_opts ms_score_decode_opts(const ms_model_meta *meta) {
    ms_decode_opts o = ms_decode_opts_default();
    if (meta == NULL) return o;
    if (meta->colour == MS_META_COLOUR_RGB && meta->input_channels == 3) o.color = MS_COLOR_RGB;
    switch (meta->window) {
    case MS_META_WINDOW_FIXED:
        o.user_window = true;
        o.window_center = meta->window_center;
        o.window_width = meta->window_width;
        o.window_function = MS_VOI_FN_LINEAR;
        break;
    case MS_META_WINDOW_AUTO: o.auto_window = true; break;
    case MS_META_WINDOW_FILE:
    case MS_META_WINDOW_NONE:
    default: o.voi_index = 0; break;
    }
    return o;
}

/* ---- resampling tables ---- */

/* One axis of the resize: for output pixel o, count[o] source taps starting at start[o] with
 * weights w[ofs[o] ...]; count 0 marks a letterbox bar. lo..hi is the source range any tap
 * reads. */
typedef struct axis_tab {
    int32_t n_out;
    int32_t *start, *count;
    size_t *ofs;
    float *w;
    int32_t lo, hi;
} axis_tab;

static void axis_free(axis_tab *t) {
    ms_free(t->start);
    ms_free(t->count);
    ms_free(t->ofs);
    ms_free(t->w);
    memset(t, 0, sizeof *t);
}

/* The output pixels [*c0, *c1) that show the image: those whose centre lies inside the scaled
 * image [off, off + n_src * s). A sliver narrower than one pixel still gets the pixel holding
 * its middle, so every image leaves a trace. */
static void content_range(int32_t n_src, int32_t n_out, double s, double off, int32_t *c0,
                          int32_t *c1) {
    double a = off, b = off + n_src * s;
    double f0 = ceil(a - 0.5), f1 = ceil(b - 0.5);
    if (f0 < 0) f0 = 0;
    if (f1 > n_out) f1 = n_out;
    if (f1 <= f0) {
        f0 = floor((a + b) / 2.0);
        if (f0 < 0) f0 = 0;
        if (f0 > n_out - 1) f0 = n_out - 1;
        f1 = f0 + 1;
    }
    *c0 = (int32_t)f0;
    *c1 = (int32_t)f1;
}

/* Box filter when shrinking (s < 1) with the area filter: output pixel o covers source
 * [(o - off) / s, (o + 1 - off) / s), clipped to the image, and takes the overlap-weighted mean.
 * Otherwise bilinear with half-pixel centres and clamped edges, which is PyTorch's
 * F.interpolate(mode='bilinear', align_corners=False) per axis. */
static bool axis_use_box(ms_meta_filter f, double s) { return f == MS_META_FILTER_AREA && s < 1.0; }

static void box_span(int32_t n_src, double s, double off, int32_t o, double *a, double *b,
                     int32_t *i0, int32_t *i1) {
    *a = (o - off) / s;
    *b = (o + 1 - off) / s;
    if (*a < 0) *a = 0;
    if (*b > n_src) *b = n_src;
    double fa = floor(*a), fb = ceil(*b) - 1;
    if (fa > n_src - 1) fa = n_src - 1;
    if (fb < fa) fb = fa;
    if (fb > n_src - 1) fb = n_src - 1;
    *i0 = (int32_t)fa;
    *i1 = (int32_t)fb;
}

static ms_status axis_build(axis_tab *t, int32_t n_src, int32_t n_out, double s, double off,
                            ms_meta_filter filter, bool pad, const char *axis, ms_err *err) {
    ms_status st = MS_OK;
    memset(t, 0, sizeof *t);
    t->n_out = n_out;
    int32_t c0 = 0, c1 = n_out;
    if (pad) content_range(n_src, n_out, s, off, &c0, &c1);
    bool box = axis_use_box(filter, s);

    size_t n = (size_t)n_out;
    t->start = ms_calloc(n, sizeof *t->start);
    t->count = ms_calloc(n, sizeof *t->count);
    t->ofs = ms_calloc(n, sizeof *t->ofs);
    if (!t->start || !t->count || !t->ofs) {
        st = ms_fail(err, MS_ENOMEM, "preprocess: cannot allocate the %s resampling table", axis);
        goto fail;
    }

    /* first the tap counts, so the weights get one exact allocation */
    size_t total = 0, bytes = 0;
    bool ok = true;
    for (int32_t o = c0; o < c1; o++) {
        int32_t cnt = 2;
        if (box) {
            double a, b;
            int32_t i0, i1;
            box_span(n_src, s, off, o, &a, &b, &i0, &i1);
            cnt = i1 - i0 + 1;
        }
        t->ofs[o] = total;
        t->count[o] = cnt;
        if (!ms_add_size(total, (size_t)cnt, &total)) {
            ok = false;
            break;
        }
    }
    if (!ok || !ms_mul_size(total ? total : 1, sizeof *t->w, &bytes)) {
        st = ms_fail(err, MS_EOVERFLOW, "preprocess: the %s resampling table (%d -> %d) overflows",
                     axis, (int)n_src, (int)n_out);
        goto fail;
    }
    t->w = ms_malloc(bytes);
    if (t->w == NULL) {
        st = ms_fail(err, MS_ENOMEM, "preprocess: cannot allocate the %s resampling table", axis);
        goto fail;
    }

    t->lo = n_src - 1;
    t->hi = 0;
    for (int32_t o = c0; o < c1; o++) {
        float *w = t->w + t->ofs[o];
        int32_t i0, i1;
        if (box) {
            double a, b;
            box_span(n_src, s, off, o, &a, &b, &i0, &i1);
            double len = b - a;
            for (int32_t i = i0; i <= i1; i++) {
                double ov = fmin(b, i + 1.0) - fmax(a, (double)i);
                /* rounding can leave an empty footprint: then its first source pixel */
                w[i - i0] = (float)(len > 0 ? (ov > 0 ? ov / len : 0.0) : (i == i0));
            }
        } else {
            double u = (o + 0.5 - off) / s - 0.5;
            if (u < 0) u = 0;
            if (u > n_src - 1) u = n_src - 1;
            i0 = (int32_t)floor(u);
            double f = u - i0;
            /* the last pixel (and a 1-pixel axis) has one tap */
            t->count[o] = i0 + 1 < n_src ? 2 : 1;
            w[0] = (float)(1.0 - f);
            if (t->count[o] == 2) w[1] = (float)f;
        }
        t->start[o] = i0;
        if (i0 < t->lo) t->lo = i0;
        if (i0 + t->count[o] - 1 > t->hi) t->hi = i0 + t->count[o] - 1;
    }
    return MS_OK;
fail:
    axis_free(t);
    return st;
}

/* ---- preprocessing ---- */

/* Which mix of the image's planes feeds a model channel: one plane, or Rec. 601 luma (the
 * loader's own grey conversion, loader.h). */
typedef struct plane_mix {
    int32_t n;
    const float *plane[3];
    float coef[3];
} plane_mix;

/* One output plane (input_w x input_h) from mix: vertical pass into tmp (one row of the source
 * range lo..hi of x per content output row), then horizontal; bars get pad. */
static void resample_plane(const plane_mix *mix, int32_t src_w, const axis_tab *tx,
                           const axis_tab *ty, float pad, float *restrict tmp,
                           float *restrict out) {
    int32_t xlo = tx->lo, xn = tx->hi - tx->lo + 1;
    size_t in_w = (size_t)tx->n_out;
    for (int32_t oy = 0; oy < ty->n_out; oy++) {
        float *restrict orow = out + (size_t)oy * in_w;
        if (ty->count[oy] == 0) {
            for (size_t x = 0; x < in_w; x++) orow[x] = pad;
            continue;
        }
        for (int32_t x = 0; x < xn; x++) tmp[x] = 0.0f;
        const float *wy = ty->w + ty->ofs[oy];
        for (int32_t k = 0; k < ty->count[oy]; k++) {
            size_t row = (size_t)(ty->start[oy] + k) * (size_t)src_w + (size_t)xlo;
            for (int32_t c = 0; c < mix->n; c++) {
                float wk = wy[k] * mix->coef[c];
                if (wk == 0.0f) continue;
                const float *restrict src = mix->plane[c] + row;
                for (int32_t x = 0; x < xn; x++) tmp[x] += wk * src[x];
            }
        }
        for (size_t ox = 0; ox < in_w; ox++) {
            int32_t cnt = tx->count[ox];
            if (cnt == 0) {
                orow[ox] = pad;
                continue;
            }
            const float *wx = tx->w + tx->ofs[ox];
            const float *t = tmp + (tx->start[ox] - xlo);
            float acc = 0.0f;
            for (int32_t k = 0; k < cnt; k++) acc += wx[k] * t[k];
            orow[ox] = acc;
        }
    }
}

static ms_status check_meta(const ms_model_meta *meta, ms_err *err) {
    if (meta->input_w <= 0 || meta->input_h <= 0)
        return ms_fail(err, MS_EINVAL, "preprocess: model input_size %dx%d is not positive",
                       (int)meta->input_h, (int)meta->input_w);
    if (meta->input_channels != 1 && meta->input_channels != 3)
        return ms_fail(err, MS_EINVAL, "preprocess: model input_channels=%d, expected 1 or 3",
                       (int)meta->input_channels);
    if (meta->colour == MS_META_COLOUR_RGB && meta->input_channels != 3)
        return ms_fail(err, MS_EINVAL, "preprocess: colour=rgb with input_channels=%d",
                       (int)meta->input_channels);
    if (meta->resize_filter != MS_META_FILTER_AREA &&
        meta->resize_filter != MS_META_FILTER_BILINEAR)
        return ms_fail(err, MS_EINVAL, "preprocess: unknown resize_filter %d",
                       (int)meta->resize_filter);
    if (!(meta->pad_value >= 0.0f && meta->pad_value <= 1.0f))
        return ms_fail(err, MS_EINVAL, "preprocess: pad_value=%g is outside [0, 1]",
                       (double)meta->pad_value);
    if (meta->norm_count != 0 && meta->norm_count != 1 &&
        meta->norm_count != (uint32_t)meta->input_channels)
        return ms_fail(err, MS_EINVAL,
                       "preprocess: %u norm_mean/norm_std values for %d input channels",
                       meta->norm_count, (int)meta->input_channels);
    for (uint32_t c = 0; c < meta->norm_count; c++)
        if (!isfinite(meta->norm_mean[c]) || !(meta->norm_std[c] > 0.0f) ||
            !isfinite(meta->norm_std[c]))
            return ms_fail(err, MS_EINVAL,
                           "preprocess: norm_mean[%u]=%g / norm_std[%u]=%g: need a finite mean "
                           "and a finite std > 0",
                           c, (double)meta->norm_mean[c], c, (double)meta->norm_std[c]);
    return MS_OK;
}

ms_status ms_score_preprocess(const ms_model_meta *meta, const ms_image *img, float *out,
                              ms_geometry *geo, ms_err *err) {
    if (meta == NULL || img == NULL || out == NULL || geo == NULL)
        return ms_fail(err, MS_EINVAL, "preprocess: %s is NULL",
                       meta == NULL  ? "meta"
                       : img == NULL ? "image"
                       : out == NULL ? "out"
                                     : "geo");
    if (img->data == NULL || (img->channels != 1 && img->channels != 3))
        return ms_fail(err, MS_EINVAL, "preprocess: image with %d channel(s)%s, expected 1 or 3",
                       (int)img->channels, img->data == NULL ? " and no data" : "");
    ms_status st = check_meta(meta, err);
    if (st != MS_OK) return st;
    ms_geometry g;
    st = ms_geometry_make(meta, img->width, img->height, &g, err);
    if (st != MS_OK) return st;

    axis_tab tx, ty;
    memset(&tx, 0, sizeof tx);
    memset(&ty, 0, sizeof ty);
    float *tmp = NULL;
    bool pad = meta->resize == MS_META_RESIZE_LETTERBOX;
    st = axis_build(&tx, g.image_w, g.input_w, g.scale_x, g.offset_x, meta->resize_filter, pad, "x",
                    err);
    if (st != MS_OK) goto fail;
    st = axis_build(&ty, g.image_h, g.input_h, g.scale_y, g.offset_y, meta->resize_filter, pad, "y",
                    err);
    if (st != MS_OK) goto fail;

    size_t plane_px, tmp_bytes;
    if (!ms_mul_size((size_t)g.input_w, (size_t)g.input_h, &plane_px) ||
        !ms_mul_size((size_t)(tx.hi - tx.lo + 1), sizeof *tmp, &tmp_bytes)) {
        st = ms_fail(err, MS_EOVERFLOW, "preprocess: model input %dx%d overflows", (int)g.input_h,
                     (int)g.input_w);
        goto fail;
    }
    tmp = ms_malloc(tmp_bytes);
    if (tmp == NULL) {
        st = ms_fail(err, MS_ENOMEM, "preprocess: cannot allocate %zu bytes", tmp_bytes);
        goto fail;
    }

    size_t img_px = (size_t)img->width * (size_t)img->height; /* the image exists: no overflow */
    int32_t channels = meta->input_channels;
    /* RGB straight through only when both sides are colour; otherwise one grey plane (luma of a
     * colour image), replicated into every model channel */
    bool rgb = img->channels == 3 && channels == 3 && meta->colour == MS_META_COLOUR_RGB;
    int32_t distinct = rgb ? 3 : 1;
    for (int32_t c = 0; c < distinct; c++) {
        plane_mix mix;
        memset(&mix, 0, sizeof mix);
        if (rgb || img->channels == 1) {
            mix.n = 1;
            mix.plane[0] = img->data + (size_t)c * img_px;
            mix.coef[0] = 1.0f;
        } else {
            static const float luma[3] = {0.299f, 0.587f, 0.114f};
            mix.n = 3;
            for (int32_t k = 0; k < 3; k++) {
                mix.plane[k] = img->data + (size_t)k * img_px;
                mix.coef[k] = luma[k];
            }
        }
        resample_plane(&mix, img->width, &tx, &ty, meta->pad_value, tmp,
                       out + (size_t)c * plane_px);
    }
    for (int32_t c = distinct; c < channels; c++)
        memcpy(out + (size_t)c * plane_px, out, plane_px * sizeof *out);

    for (int32_t c = 0; c < channels && meta->norm_count > 0; c++) {
        uint32_t k = meta->norm_count == 1 ? 0 : (uint32_t)c;
        float mean = meta->norm_mean[k], sd = meta->norm_std[k];
        float *restrict p = out + (size_t)c * plane_px;
        for (size_t i = 0; i < plane_px; i++) p[i] = (p[i] - mean) / sd;
    }
    *geo = g;
    st = MS_OK;
fail:
    ms_free(tmp);
    axis_free(&tx);
    axis_free(&ty);
    return st;
}

/* ---- calibration ---- */

/* exp of a non-positive number only: no overflow for any finite z */
static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

static double calibrate(ms_meta_kind kind, float temperature, double value) {
    if (isnan(value)) return value;
    switch (kind) {
    case MS_META_KIND_LOGIT: {
        double t = temperature > 0.0f && isfinite(temperature) ? (double)temperature : 1.0;
        return sigmoid(value / t);
    }
    case MS_META_KIND_PROBABILITY: return value < 0 ? 0.0 : value > 1 ? 1.0 : value;
    default: return NAN; /* no kind: nothing to calibrate against */
    }
}

double ms_score_probability(const ms_model_meta *meta, double value) {
    if (meta == NULL) return NAN;
    return calibrate(meta->score_kind, meta->temperature, value);
}

double ms_score_map_probability(const ms_model_meta *meta, double value) {
    if (meta == NULL) return NAN;
    return calibrate(meta->map_kind, meta->temperature, value);
}

/* ---- map back onto the image ---- */

/* Per image column (or row): the two map cells and the weight of the second, or -1 in i0 when
 * the pixel's centre falls outside the model input (cropped away). */
static void map_axis(int32_t n_img, double s, double off, int32_t n_in, int32_t n_map,
                     int32_t *restrict i0, int32_t *restrict i1, float *restrict f) {
    double cells = (double)n_map / n_in;
    for (int32_t x = 0; x < n_img; x++) {
        double in = (x + 0.5) * s + off;
        if (!(in >= 0 && in < n_in)) {
            i0[x] = i1[x] = -1;
            f[x] = 0;
            continue;
        }
        double u = in * cells - 0.5;
        if (u < 0) u = 0;
        if (u > n_map - 1) u = n_map - 1;
        int32_t a = (int32_t)floor(u);
        int32_t b = a + 1 < n_map ? a + 1 : a;
        i0[x] = a;
        i1[x] = b;
        f[x] = (float)(u - a);
    }
}

ms_status ms_score_map_to_image(const float *map, int32_t map_w, int32_t map_h,
                                const ms_geometry *geo, float *out, ms_err *err) {
    if (map == NULL || geo == NULL || out == NULL)
        return ms_fail(err, MS_EINVAL, "map_to_image: %s is NULL",
                       map == NULL   ? "map"
                       : geo == NULL ? "geometry"
                                     : "out");
    if (map_w <= 0 || map_h <= 0)
        return ms_fail(err, MS_EINVAL, "map_to_image: map size %dx%d (WxH) is not positive",
                       (int)map_w, (int)map_h);
    if (geo->image_w <= 0 || geo->image_h <= 0 || geo->input_w <= 0 || geo->input_h <= 0 ||
        !(geo->scale_x > 0) || !(geo->scale_y > 0) || !isfinite(geo->scale_x) ||
        !isfinite(geo->scale_y) || !isfinite(geo->offset_x) || !isfinite(geo->offset_y))
        return ms_fail(err, MS_EINVAL,
                       "map_to_image: bad geometry (image %dx%d, input %dx%d, scale %g,%g)",
                       (int)geo->image_w, (int)geo->image_h, (int)geo->input_w, (int)geo->input_h,
                       geo->scale_x, geo->scale_y);
    size_t npx, row_bytes, col_bytes, cols;
    if (!ms_mul_size((size_t)geo->image_w, (size_t)geo->image_h, &npx) ||
        !ms_mul_size((size_t)geo->image_w + (size_t)geo->image_h,
                     2 * sizeof(int32_t) + sizeof(float), &col_bytes) ||
        !ms_mul_size((size_t)map_w, sizeof(float), &row_bytes) ||
        !ms_add_size(col_bytes, row_bytes, &cols))
        return ms_fail(err, MS_EOVERFLOW, "map_to_image: image %dx%d overflows", (int)geo->image_w,
                       (int)geo->image_h);

    /* one block: column tables, row tables, one interpolated map row */
    unsigned char *mem = ms_malloc(cols);
    if (mem == NULL)
        return ms_fail(err, MS_ENOMEM, "map_to_image: cannot allocate %zu bytes", cols);
    size_t W = (size_t)geo->image_w, H = (size_t)geo->image_h;
    float *fx = (float *)mem, *fy = fx + W, *mrow = fy + H;
    int32_t *x0 = (int32_t *)(mrow + map_w), *x1 = x0 + W, *y0 = x1 + W, *y1 = y0 + H;
    map_axis(geo->image_w, geo->scale_x, geo->offset_x, geo->input_w, map_w, x0, x1, fx);
    map_axis(geo->image_h, geo->scale_y, geo->offset_y, geo->input_h, map_h, y0, y1, fy);

    for (size_t y = 0; y < H; y++) {
        float *restrict orow = out + y * W;
        if (y0[y] < 0) {
            memset(orow, 0, W * sizeof *orow);
            continue;
        }
        /* rows sharing cells and weight (upsampling by more than one) repeat the row above */
        if (y > 0 && y0[y] == y0[y - 1] && y1[y] == y1[y - 1] && fy[y] == fy[y - 1]) {
            memcpy(orow, orow - W, W * sizeof *orow);
            continue;
        }
        const float *restrict ra = map + (size_t)y0[y] * (size_t)map_w;
        const float *restrict rb = map + (size_t)y1[y] * (size_t)map_w;
        float b = fy[y], a = 1.0f - b;
        for (int32_t i = 0; i < map_w; i++) mrow[i] = a * ra[i] + b * rb[i];
        for (size_t x = 0; x < W; x++) {
            if (x0[x] < 0) {
                orow[x] = 0.0f;
                continue;
            }
            float t = fx[x];
            orow[x] = (1.0f - t) * mrow[x0[x]] + t * mrow[x1[x]];
        }
    }
    ms_free(mem);
    return MS_OK;
}
