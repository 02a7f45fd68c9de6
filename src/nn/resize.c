/* Resizing with PyTorch F.interpolate's arithmetic (torch 1.13, UpSample.h), given an output
 * size (no scale factor):
 *   nearest:  src = min(floor(dst * scale), in - 1) with scale = (float)in / out in float;
 *   bilinear: scale = (float)in / out, src = scale * (dst + 0.5) - 0.5 evaluated in double and
 *             rounded to float, clamped at 0; align_corners: scale = (in-1)/(out-1) (0 when
 *             out == 1), src = scale * dst. i0 = min(floor(src), in-1), i1 = i0 + (i0 < in-1),
 *             lambda = clamp(src - i0, 0, 1).
 * The column indices and weights are computed for a tile of output columns on the stack and
 * reused for every row of every plane. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "nn_internal.h"

enum { TILE = 256 };

static float nearest_scale(int32_t in, int32_t out) { return (float)in / (float)out; }

static int32_t nearest_src(float scale, int32_t dst, int32_t in) {
    int64_t s = (int64_t)floorf((float)dst * scale);
    return (int32_t)(s < in - 1 ? s : in - 1);
}

static float linear_scale(int32_t in, int32_t out, bool align_corners) {
    if (align_corners) return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    return (float)in / (float)out;
}

/* Source index, upper neighbour and weight of the upper neighbour. */
static void linear_src(float scale, int32_t dst, int32_t in, bool align_corners, int32_t *i0,
                       int32_t *i1, float *lambda) {
    float src;
    if (align_corners) {
        src = scale * (float)dst;
    } else {
        src = (float)((double)scale * ((double)dst + 0.5) - 0.5);
        if (src < 0.0f) src = 0.0f;
    }
    int64_t i = (int64_t)floorf(src);
    if (i > in - 1) i = in - 1;
    float l = src - (float)i;
    *i0 = (int32_t)i;
    *i1 = (int32_t)(i < in - 1 ? i + 1 : i);
    *lambda = l < 0.0f ? 0.0f : l > 1.0f ? 1.0f : l;
}

static void resize_nearest(const ms_tensor *in, ms_tensor *out) {
    const size_t planes = (size_t)in->n * (size_t)in->c;
    const size_t pin = (size_t)in->h * (size_t)in->w, pout = (size_t)out->h * (size_t)out->w;
    const float sy = nearest_scale(in->h, out->h), sx = nearest_scale(in->w, out->w);
    int32_t xs[TILE];
    for (int32_t x0 = 0; x0 < out->w; x0 += TILE) {
        const int32_t nx = out->w - x0 < TILE ? out->w - x0 : TILE;
        for (int32_t i = 0; i < nx; i++) xs[i] = nearest_src(sx, x0 + i, in->w);
        for (size_t pl = 0; pl < planes; pl++) {
            const float *src = in->data + pl * pin;
            float *dst = out->data + pl * pout + x0;
            for (int32_t oy = 0; oy < out->h; oy++) {
                const float *restrict r = src + (size_t)nearest_src(sy, oy, in->h) * (size_t)in->w;
                float *restrict d = dst + (size_t)oy * (size_t)out->w;
                for (int32_t i = 0; i < nx; i++) d[i] = r[xs[i]];
            }
        }
    }
}

static void resize_bilinear(bool align_corners, const ms_tensor *in, ms_tensor *out) {
    const size_t planes = (size_t)in->n * (size_t)in->c;
    const size_t pin = (size_t)in->h * (size_t)in->w, pout = (size_t)out->h * (size_t)out->w;
    const float sy = linear_scale(in->h, out->h, align_corners);
    const float sx = linear_scale(in->w, out->w, align_corners);
    int32_t x0s[TILE], x1s[TILE];
    float lx[TILE];
    for (int32_t xt = 0; xt < out->w; xt += TILE) {
        const int32_t nx = out->w - xt < TILE ? out->w - xt : TILE;
        for (int32_t i = 0; i < nx; i++)
            linear_src(sx, xt + i, in->w, align_corners, &x0s[i], &x1s[i], &lx[i]);
        for (size_t pl = 0; pl < planes; pl++) {
            const float *src = in->data + pl * pin;
            float *dst = out->data + pl * pout + xt;
            for (int32_t oy = 0; oy < out->h; oy++) {
                int32_t y0, y1;
                float ly;
                linear_src(sy, oy, in->h, align_corners, &y0, &y1, &ly);
                const float *restrict r0 = src + (size_t)y0 * (size_t)in->w;
                const float *restrict r1 = src + (size_t)y1 * (size_t)in->w;
                const float hy = 1.0f - ly;
                float *restrict d = dst + (size_t)oy * (size_t)out->w;
                for (int32_t i = 0; i < nx; i++) {
                    const float l = lx[i], h = 1.0f - l;
                    d[i] = hy * (h * r0[x0s[i]] + l * r0[x1s[i]]) +
                           ly * (h * r1[x0s[i]] + l * r1[x1s[i]]);
                }
            }
        }
    }
}

void ms_upsample_forward(ms_upsample_mode mode, bool align_corners, const ms_tensor *in,
                         ms_tensor *out) {
    assert(out->n == in->n && out->c == in->c && in->h > 0 && in->w > 0 && out->h > 0 &&
           out->w > 0);
    if (mode == MS_UPSAMPLE_NEAREST)
        resize_nearest(in, out);
    else
        resize_bilinear(align_corners, in, out);
}
