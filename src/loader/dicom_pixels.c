#include "dicom_pixels.h"

#include <math.h>
#include <string.h>

#include "loader_internal.h"

static bool layout_valid(const ms_sample_layout *l) {
    return (l->bits_allocated == 8 || l->bits_allocated == 16 || l->bits_allocated == 32) &&
           l->bits_stored >= 1 && l->bits_stored <= l->bits_allocated &&
           l->high_bit < l->bits_allocated && l->high_bit + 1u >= l->bits_stored;
}

static inline uint32_t raw_at(const void *raw, uint16_t bits_allocated, size_t i) {
    switch (bits_allocated) {
    case 8: return ((const uint8_t *)raw)[i];
    case 16: return ((const uint16_t *)raw)[i];
    default: return ((const uint32_t *)raw)[i];
    }
}

static inline size_t lut_index(const ms_dcm_lut *lut, double x) {
    double i = floor(x + 0.5) - (double)lut->first_mapped;
    if (!(i > 0)) return 0; /* also NaN */
    if (i >= (double)(lut->entries - 1u)) return lut->entries - 1u;
    return (size_t)i;
}

static inline double lut_max(const ms_dcm_lut *lut) { return (double)((1u << lut->bits) - 1u); }

/* Modality LUT (PS3.3 C.11.1): stored value to modality value. */
static inline double modality_apply(const ms_mono_params *p, int64_t s) {
    switch (p->modality) {
    case MS_MODLUT_RESCALE: return (double)s * p->slope + p->intercept;
    case MS_MODLUT_SEQUENCE: return p->modality_lut->data[lut_index(p->modality_lut, (double)s)];
    case MS_MODLUT_NONE: break;
    }
    return (double)s;
}

double ms_voi_apply(ms_voi_kind kind, ms_voi_function fn, double c, double w, const ms_dcm_lut *lut,
                    double x) {
    if (kind == MS_VOI_LUT_SEQUENCE) return lut->data[lut_index(lut, x)] / lut_max(lut);
    switch (fn) {
    case MS_VOI_FN_LINEAR_EXACT: /* PS3.3 C.11.2.1.3.2 */
        if (x <= c - w / 2) return 0.0;
        if (x > c + w / 2) return 1.0;
        return (x - c) / w + 0.5;
    case MS_VOI_FN_SIGMOID: /* PS3.3 C.11.2.1.3.1 */ return 1.0 / (1.0 + exp(-4.0 * (x - c) / w));
    case MS_VOI_FN_LINEAR: /* PS3.3 C.11.2.1.2.1 */ break;
    }
    if (x <= c - 0.5 - (w - 1) / 2) return 0.0;
    if (x > c - 0.5 + (w - 1) / 2) return 1.0;
    return (x - (c - 0.5)) / (w - 1) + 0.5; /* w > 1 here: the middle interval is empty at 1 */
}

static inline float display_value(const ms_mono_params *p, double c, double w, int64_t s) {
    double y = ms_voi_apply(p->voi, p->voi_function, c, w, p->voi_lut, modality_apply(p, s));
    if (p->invert) y = 1.0 - y;
    return (float)y;
}

static ms_status check_mono(const ms_mono_params *p, ms_err *err) {
    if (!layout_valid(&p->layout))
        return ms_fail(err, MS_EINVAL, "invalid sample layout %u/%u/%u",
                       (unsigned)p->layout.bits_allocated, (unsigned)p->layout.bits_stored,
                       (unsigned)p->layout.high_bit);
    if (p->modality == MS_MODLUT_SEQUENCE &&
        (p->modality_lut == NULL || p->modality_lut->data == NULL || p->modality_lut->entries == 0))
        return ms_fail(err, MS_EINVAL, "modality LUT missing");
    if (p->voi == MS_VOI_LUT_SEQUENCE &&
        (p->voi_lut == NULL || p->voi_lut->data == NULL || p->voi_lut->entries == 0))
        return ms_fail(err, MS_EINVAL, "VOI LUT missing");
    if ((p->voi == MS_VOI_WINDOW || p->voi == MS_VOI_USER_WINDOW) &&
        !(p->voi_function == MS_VOI_FN_LINEAR ? p->width >= 1.0 : p->width > 0.0))
        return ms_fail(err, MS_EINVAL, "window width %g is invalid for %s", p->width,
                       ms_voi_function_name(p->voi_function));
    return MS_OK;
}

/* The frame's modality range, for the automatic window. */
static void modality_range(const ms_mono_params *p, const void *raw, size_t n, uint8_t *seen,
                           double *lo, double *hi) {
    double mn = INFINITY, mx = -INFINITY;
    if (seen != NULL) {
        size_t codes = (size_t)1 << p->layout.bits_allocated;
        memset(seen, 0, codes);
        if (p->layout.bits_allocated == 8) {
            const uint8_t *r = raw;
            for (size_t i = 0; i < n; i++) seen[r[i]] = 1;
        } else {
            const uint16_t *r = raw;
            for (size_t i = 0; i < n; i++) seen[r[i]] = 1;
        }
        for (size_t code = 0; code < codes; code++) {
            if (!seen[code]) continue;
            double v = modality_apply(p, ms_sample_value(&p->layout, (uint32_t)code));
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            double v = modality_apply(p, ms_sample_value(&p->layout, raw_at(raw, 32, i)));
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
    }
    *lo = mn;
    *hi = mx;
}

/* When the whole grayscale pipeline is y = clamp(a * stored + b, 0, 1) (identity or rescale
 * modality, a LINEAR or LINEAR_EXACT window, optional inversion), it vectorises; the lookup
 * table's gather does not. Equal to the table up to float rounding (about 1e-7). */
static bool affine_form(const ms_mono_params *p, double c, double w, double *a, double *b) {
    if (p->modality == MS_MODLUT_SEQUENCE || p->voi == MS_VOI_LUT_SEQUENCE) return false;
    if (p->voi_function == MS_VOI_FN_SIGMOID) return false;
    double slope = p->modality == MS_MODLUT_RESCALE ? p->slope : 1.0;
    double icpt = p->modality == MS_MODLUT_RESCALE ? p->intercept : 0.0;
    double lo, den; /* y = (x - lo) / den, clamped; x = slope * s + icpt */
    if (p->voi_function == MS_VOI_FN_LINEAR_EXACT) {
        lo = c - w / 2;
        den = w;
    } else {
        lo = c - 0.5 - (w - 1) / 2;
        den = w - 1;
        if (!(den > 0)) return false; /* width 1 is a step; the table handles it */
    }
    *a = slope / den;
    *b = (icpt - lo) / den;
    if (p->invert) {
        *a = -*a;
        *b = 1.0 - *b;
    }
    return true;
}

static void affine_map(const ms_sample_layout *l, const void *raw, size_t n, float a, float b,
                       float *restrict out) {
    unsigned shift = (unsigned)(l->high_bit + 1u - l->bits_stored);
    int32_t mask = (int32_t)((1u << l->bits_stored) - 1u);
    int32_t sign = l->is_signed ? (int32_t)(1u << (l->bits_stored - 1u)) : 0;
    if (l->bits_allocated == 8) {
        const uint8_t *restrict r = raw;
        for (size_t i = 0; i < n; i++) {
            int32_t v = (((int32_t)r[i] >> shift) & mask);
            v = (v ^ sign) - sign; /* sign-extend from bits_stored */
            float y = (float)v * a + b;
            out[i] = y < 0.0f ? 0.0f : y > 1.0f ? 1.0f : y;
        }
    } else {
        const uint16_t *restrict r = raw;
        for (size_t i = 0; i < n; i++) {
            int32_t v = (((int32_t)r[i] >> shift) & mask);
            v = (v ^ sign) - sign;
            float y = (float)v * a + b;
            out[i] = y < 0.0f ? 0.0f : y > 1.0f ? 1.0f : y;
        }
    }
}

ms_status ms_mono_to_float(const ms_mono_params *p, const void *raw, size_t n, float *out,
                           double *center, double *width, ms_err *err) {
    ms_status st = check_mono(p, err);
    if (st != MS_OK) return st;
    bool small = p->layout.bits_allocated <= 16;
    size_t codes = small ? (size_t)1 << p->layout.bits_allocated : 0;
    float *table = NULL;
    uint8_t *seen = NULL;
    double c = p->center, w = p->width;
    ms_mono_params q = *p;

    if (p->voi == MS_VOI_AUTO_MINMAX) {
        if (small && (seen = ms_malloc(codes)) == NULL)
            return ms_fail(err, MS_ENOMEM, "cannot allocate %zu bytes", codes);
        double lo, hi;
        modality_range(p, raw, n, seen, &lo, &hi);
        ms_free(seen);
        /* LINEAR_EXACT over [lo, hi] maps lo to 0 and hi to 1; a flat frame maps to 0. */
        q.voi_function = MS_VOI_FN_LINEAR_EXACT;
        c = n ? (lo + hi) / 2 : 0;
        w = n ? hi - lo : 0;
        if (!(w > 0)) w = 0;
    }
    bool flat = q.voi == MS_VOI_AUTO_MINMAX && w == 0;

    double a, b;
    if (!flat && small && affine_form(&q, c, w, &a, &b)) {
        affine_map(&q.layout, raw, n, (float)a, (float)b, out);
    } else if (small) {
        table = ms_malloc(codes * sizeof *table);
        if (table == NULL) return ms_fail(err, MS_ENOMEM, "cannot allocate lookup table");
        for (size_t code = 0; code < codes; code++)
            table[code] = flat
                              ? (q.invert ? 1.0f : 0.0f)
                              : display_value(&q, c, w, ms_sample_value(&q.layout, (uint32_t)code));
        if (p->layout.bits_allocated == 8) {
            const uint8_t *restrict r = raw;
            for (size_t i = 0; i < n; i++) out[i] = table[r[i]];
        } else {
            const uint16_t *restrict r = raw;
            for (size_t i = 0; i < n; i++) out[i] = table[r[i]];
        }
        ms_free(table);
    } else {
        const uint32_t *restrict r = raw;
        for (size_t i = 0; i < n; i++)
            out[i] = flat ? (q.invert ? 1.0f : 0.0f)
                          : display_value(&q, c, w, ms_sample_value(&q.layout, r[i]));
    }
    if (center) *center = c;
    if (width) *width = w;
    return MS_OK;
}

/* Full-range YCbCr to RGB, PS3.3 C.7.6.3.1.2, on normalised values. */
static inline void ybr_to_rgb(float y, float cb, float cr, float *r, float *g, float *b) {
    float pb = cb - 0.5f, pr = cr - 0.5f;
    float rr = y + 1.402f * pr, gg = y - 0.344136f * pb - 0.714136f * pr, bb = y + 1.772f * pb;
    *r = rr < 0 ? 0 : rr > 1 ? 1 : rr;
    *g = gg < 0 ? 0 : gg > 1 ? 1 : gg;
    *b = bb < 0 ? 0 : bb > 1 ? 1 : bb;
}

static inline void put_pixel(float *out, size_t plane, size_t i, bool gray, float r, float g,
                             float b) {
    if (gray) {
        out[i] = ms_luma601(r, g, b);
    } else {
        out[i] = r;
        out[plane + i] = g;
        out[2 * plane + i] = b;
    }
}

ms_status ms_color_to_float(const ms_color_params *p, const void *raw, int32_t width,
                            int32_t height, bool gray, float *out, ms_err *err) {
    const ms_sample_layout *l = &p->layout;
    if (!layout_valid(l) || width <= 0 || height <= 0)
        return ms_fail(err, MS_EINVAL, "invalid colour layout");
    size_t plane = (size_t)width * (size_t)height;
    uint16_t ba = l->bits_allocated;
    float scale = (float)(1.0 / (double)((1ull << l->bits_stored) - 1u));

    if (p->model == MS_CM_PALETTE) {
        const ms_dcm_lut *lut = p->palette;
        for (int c = 0; c < 3; c++)
            if (lut == NULL || lut[c].data == NULL || lut[c].entries == 0)
                return ms_fail(err, MS_EINVAL, "palette LUT missing");
        float s[3] = {1.0f / (float)lut_max(&lut[0]), 1.0f / (float)lut_max(&lut[1]),
                      1.0f / (float)lut_max(&lut[2])};
        for (size_t i = 0; i < plane; i++) {
            double idx = (double)ms_sample_value(l, raw_at(raw, ba, i));
            put_pixel(out, plane, i, gray, lut[0].data[lut_index(&lut[0], idx)] * s[0],
                      lut[1].data[lut_index(&lut[1], idx)] * s[1],
                      lut[2].data[lut_index(&lut[2], idx)] * s[2]);
        }
        return MS_OK;
    }
    if (p->model == MS_CM_YBR_FULL_422) {
        /* PS3.3 C.7.6.3.1.2: each pair of pixels is stored as Y1 Y2 Cb Cr. */
        if (width % 2 != 0) return ms_fail(err, MS_EINVAL, "YBR_FULL_422 with odd width");
        size_t k = 0;
        for (size_t i = 0; i < plane; i += 2, k += 4) {
            float y0 = (float)ms_sample_value(l, raw_at(raw, ba, k)) * scale;
            float y1 = (float)ms_sample_value(l, raw_at(raw, ba, k + 1)) * scale;
            float cb = (float)ms_sample_value(l, raw_at(raw, ba, k + 2)) * scale;
            float cr = (float)ms_sample_value(l, raw_at(raw, ba, k + 3)) * scale;
            float r, g, b;
            if (gray) {
                out[i] = y0;
                out[i + 1] = y1;
                continue;
            }
            ybr_to_rgb(y0, cb, cr, &r, &g, &b);
            put_pixel(out, plane, i, false, r, g, b);
            ybr_to_rgb(y1, cb, cr, &r, &g, &b);
            put_pixel(out, plane, i + 1, false, r, g, b);
        }
        return MS_OK;
    }
    /* Interleaved (planar 0) or planes (planar 1): sample c of pixel i. */
    size_t step = p->planar_configuration ? 1 : 3, cstep = p->planar_configuration ? plane : 1;
    for (size_t i = 0; i < plane; i++) {
        size_t base = i * step;
        float a = (float)ms_sample_value(l, raw_at(raw, ba, base)) * scale;
        float b = (float)ms_sample_value(l, raw_at(raw, ba, base + cstep)) * scale;
        float c = (float)ms_sample_value(l, raw_at(raw, ba, base + 2 * cstep)) * scale;
        if (p->model == MS_CM_YBR_FULL) {
            if (gray) {
                out[i] = a; /* Y of YBR_FULL is Rec. 601 luma */
                continue;
            }
            float r, g, bb;
            ybr_to_rgb(a, b, c, &r, &g, &bb);
            put_pixel(out, plane, i, false, r, g, bb);
        } else {
            put_pixel(out, plane, i, gray, a, b, c);
        }
    }
    return MS_OK;
}
