/* 2-D convolution. Four paths, chosen by conv_plan_make from the parameters alone:
 *   depthwise (groups == in_c == out_c): a direct loop, no workspace;
 *   first layer (one input channel, 3x3, stride 1, dilation 1): a direct loop over output rows
 *     that keeps the three input rows it needs in L1 and computes every output channel from
 *     them, with bias and activation fused (im2col would give sgemm K = 9, where it runs at
 *     ~23 GFLOP/s against its ~100 on the deeper layers). The screener's 1->16 at 512x512
 *     (Xeon, 1 thread): 1.2 ms with the AVX-512 clone, 1.6 with AVX2, 2.9 baseline SSE2,
 *     against 3.3-4.5 ms through im2col;
 *   pointwise (1x1, stride 1, no padding): the input planes of a group already are the column
 *     matrix [in_c/groups][h*w], so one sgemm per image and group, no workspace;
 *   otherwise im2col and sgemm per image and group, in bands of output rows: the column
 *     matrix of a band ([K][rows*out_w], K = in_c/groups*kh*kw) is at most COL_BAND_FLOATS
 *     (1 MiB) unless one row is larger, so it is still in L2 when sgemm reads it. Measured on
 *     the reference network at 512x512 (Xeon, OpenBLAS 0.3.21 SkylakeX kernels, 1 thread):
 *     103-125 ms with the whole [K][out_h*out_w] matrix (72 MiB for 32->32 at 256x256),
 *     70-100 ms banded (medians of 20 runs on a shared 2-core VM).
 * Bias and activation are applied in one pass over each task's output after its product. */
#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "medscreen/core.h"
#include "nn_internal.h"

enum { COL_BAND_FLOATS = 1 << 18 };

typedef enum conv_path { CONV_IM2COL = 0, CONV_POINTWISE, CONV_DEPTHWISE, CONV_FIRST3X3 } conv_path;

/* Output columns per pass of the first-layer kernel: its three padded input rows live on the
 * stack (6 KiB). */
enum { FIRST_CHUNK = 512 };

typedef struct conv_plan {
    int32_t out_h, out_w;
    size_t k;         /* in_c / groups * kh * kw: the reduction length */
    size_t plane_in;  /* in_h * in_w */
    size_t plane_out; /* out_h * out_w */
    int32_t band;     /* output rows per im2col band */
    size_t workspace; /* floats */
    conv_path path;
} conv_plan;

/* Smallest q with q * b >= a, for b > 0 and any sign of a. */
static int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One output axis: checks the kernel against the padded input and writes the output length. */
static ms_status conv_axis(const char *axis, int32_t in, int32_t k, int32_t stride, int32_t dil,
                           int32_t pad0, int32_t pad1, int32_t *out, ms_err *err) {
    int64_t eff = (int64_t)(k - 1) * dil + 1;
    int64_t padded = (int64_t)in + pad0 + pad1;
    if (eff > padded)
        return ms_fail(err, MS_EINVAL,
                       "conv2d: effective kernel %s %lld ((k-1)*dilation+1 with k=%d, "
                       "dilation=%d) exceeds the padded input %s %lld (%d + pads %d, %d)",
                       axis, (long long)eff, k, dil, axis, (long long)padded, in, pad0, pad1);
    int64_t n = (padded - eff) / stride + 1;
    if (n > INT32_MAX)
        return ms_fail(err, MS_EOVERFLOW, "conv2d: output %s %lld does not fit int32", axis,
                       (long long)n);
    *out = (int32_t)n;
    return MS_OK;
}

static ms_status conv_plan_make(const ms_conv2d *p, int32_t in_h, int32_t in_w, conv_plan *pl,
                                ms_err *err) {
    if (p == NULL) return ms_fail(err, MS_EINVAL, "conv2d: NULL parameters");
    if (in_h < 1 || in_w < 1)
        return ms_fail(err, MS_EINVAL, "conv2d: input size %dx%d must be positive", in_h, in_w);
    if (p->in_c < 1 || p->out_c < 1)
        return ms_fail(err, MS_EINVAL, "conv2d: in_c=%d and out_c=%d must be positive", p->in_c,
                       p->out_c);
    if (p->kh < 1 || p->kw < 1)
        return ms_fail(err, MS_EINVAL, "conv2d: kernel %dx%d must be positive", p->kh, p->kw);
    if (p->stride_h < 1 || p->stride_w < 1)
        return ms_fail(err, MS_EINVAL, "conv2d: stride %dx%d must be >= 1", p->stride_h,
                       p->stride_w);
    if (p->dil_h < 1 || p->dil_w < 1)
        return ms_fail(err, MS_EINVAL, "conv2d: dilation %dx%d must be >= 1", p->dil_h, p->dil_w);
    if (p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0)
        return ms_fail(err, MS_EINVAL,
                       "conv2d: padding (top %d, left %d, bottom %d, right %d) must be >= 0",
                       p->pad_t, p->pad_l, p->pad_b, p->pad_r);
    if (p->groups < 1) return ms_fail(err, MS_EINVAL, "conv2d: groups=%d must be >= 1", p->groups);
    if (p->in_c % p->groups != 0 || p->out_c % p->groups != 0)
        return ms_fail(err, MS_EINVAL, "conv2d: groups=%d must divide in_c=%d and out_c=%d",
                       p->groups, p->in_c, p->out_c);
    if ((unsigned)p->act > (unsigned)MS_ACT_GELU)
        return ms_fail(err, MS_EINVAL, "conv2d: unknown activation %d", (int)p->act);

    int32_t oh = 0, ow = 0;
    ms_status st =
        conv_axis("height", in_h, p->kh, p->stride_h, p->dil_h, p->pad_t, p->pad_b, &oh, err);
    if (st != MS_OK) return st;
    st = conv_axis("width", in_w, p->kw, p->stride_w, p->dil_w, p->pad_l, p->pad_r, &ow, err);
    if (st != MS_OK) return st;

    size_t plane_in, plane_out, k, tmp;
    size_t ic_g = (size_t)(p->in_c / p->groups);
    /* sgemm takes int dimensions: the output plane (N) and K must fit. */
    if (!ms_mul_size((size_t)in_h, (size_t)in_w, &plane_in) ||
        !ms_mul_size((size_t)oh, (size_t)ow, &plane_out) || plane_out > INT_MAX)
        return ms_fail(err, MS_EOVERFLOW, "conv2d: output plane %dx%d exceeds the int range", oh,
                       ow);
    if (!ms_mul_size(ic_g, (size_t)p->kh, &k) || !ms_mul_size(k, (size_t)p->kw, &k) || k > INT_MAX)
        return ms_fail(err, MS_EOVERFLOW,
                       "conv2d: reduction length in_c/groups*kh*kw = %zu*%d*%d exceeds the int "
                       "range",
                       ic_g, p->kh, p->kw);
    if (!ms_mul_size(plane_in, (size_t)p->in_c, &tmp) || !ms_mul_size(tmp, sizeof(float), &tmp))
        return ms_fail(err, MS_EOVERFLOW, "conv2d: input image %dx%dx%d overflows size_t", p->in_c,
                       in_h, in_w);
    if (!ms_mul_size(plane_out, (size_t)p->out_c, &tmp) || !ms_mul_size(tmp, sizeof(float), &tmp))
        return ms_fail(err, MS_EOVERFLOW, "conv2d: output image %dx%dx%d overflows size_t",
                       p->out_c, oh, ow);
    if (!ms_mul_size(k, (size_t)p->out_c, &tmp) || !ms_mul_size(tmp, sizeof(float), &tmp))
        return ms_fail(err, MS_EOVERFLOW, "conv2d: weight %dx%zu overflows size_t", p->out_c, k);

    conv_path path = CONV_IM2COL;
    if (p->groups == p->in_c && p->in_c == p->out_c)
        path = CONV_DEPTHWISE;
    else if (p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_t == 0 &&
             p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0)
        path = CONV_POINTWISE; /* dilation does not matter for a 1x1 kernel */
    else if (p->in_c == 1 && p->groups == 1 && p->kh == 3 && p->kw == 3 && p->stride_h == 1 &&
             p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1)
        path = CONV_FIRST3X3;

    /* The first-layer kernel needs no workspace, but reports im2col's: callers (and tests)
     * that sized the workspace before that path existed stay valid, and the net's shared
     * workspace is at least that large for its other layers anyway. */
    size_t ws = 0, row;
    int32_t band = oh;
    if (path == CONV_IM2COL || path == CONV_FIRST3X3) {
        if (!ms_mul_size(k, (size_t)ow, &row))
            return ms_fail(err, MS_EOVERFLOW, "conv2d: im2col row %zu x %d floats overflows", k,
                           ow);
        size_t fit = COL_BAND_FLOATS / row;
        band = fit < 1 ? 1 : fit < (size_t)oh ? (int32_t)fit : oh;
        if (!ms_mul_size(row, (size_t)band, &ws) || !ms_mul_size(ws, sizeof(float), &tmp))
            return ms_fail(err, MS_EOVERFLOW, "conv2d: im2col workspace %zu x %d floats overflows",
                           row, band);
    }

    pl->out_h = oh;
    pl->out_w = ow;
    pl->k = k;
    pl->plane_in = plane_in;
    pl->plane_out = plane_out;
    pl->band = band;
    pl->workspace = ws;
    pl->path = path;
    return MS_OK;
}

ms_status ms_conv2d_shape(const ms_conv2d *p, int32_t in_h, int32_t in_w, int32_t *out_h,
                          int32_t *out_w, ms_err *err) {
    conv_plan pl;
    ms_status st = conv_plan_make(p, in_h, in_w, &pl, err);
    if (st != MS_OK) return st;
    if (out_h) *out_h = pl.out_h;
    if (out_w) *out_w = pl.out_w;
    return MS_OK;
}

size_t ms_conv2d_workspace(const ms_conv2d *p, int32_t in_h, int32_t in_w) {
    conv_plan pl;
    /* A size ms_conv2d_shape refuses is a caller bug; SIZE_MAX makes any allocation fail
     * instead of handing forward a NULL workspace. */
    if (conv_plan_make(p, in_h, in_w, &pl, NULL) != MS_OK) return SIZE_MAX;
    return pl.workspace;
}

/* Output range [*o0, *o1) along one axis whose input index o * stride + off lies in [0, in). */
static void valid_range(int64_t off, int32_t stride, int32_t in, int32_t out, int32_t *o0,
                        int32_t *o1) {
    int64_t a = clamp64(ceil_div(-off, stride), 0, out);
    int64_t b = clamp64(ceil_div((int64_t)in - off, stride), a, out);
    *o0 = (int32_t)a;
    *o1 = (int32_t)b;
}

/* Column matrix of one image and group for output rows [r0, r1): row (c, ky, kx) holds, for
 * every output pixel of the band, the input sample that kernel tap multiplies (zero in the
 * padding). The rows of zeros and the
 * valid span of each output row are computed once per tap, so the copy loops do not test
 * bounds. */
MS_NN_INLINE void im2col_body(const float *restrict in, int32_t ic, int32_t in_h, int32_t in_w,
                              const ms_conv2d *p, const conv_plan *pl, int32_t r0, int32_t r1,
                              float *restrict col) {
    const int32_t out_w = pl->out_w;
    const int32_t sh = p->stride_h, sw = p->stride_w;
    const size_t plane_in = pl->plane_in, band_n = (size_t)(r1 - r0) * (size_t)out_w;
    for (int32_t c = 0; c < ic; c++) {
        const float *restrict src = in + (size_t)c * plane_in;
        for (int32_t ky = 0; ky < p->kh; ky++) {
            const int64_t y_off = (int64_t)ky * p->dil_h - p->pad_t;
            int32_t oy0, oy1;
            valid_range(y_off, sh, in_h, pl->out_h, &oy0, &oy1);
            oy0 = oy0 < r0 ? r0 : oy0 > r1 ? r1 : oy0;
            oy1 = oy1 < oy0 ? oy0 : oy1 > r1 ? r1 : oy1;
            for (int32_t kx = 0; kx < p->kw; kx++) {
                const int64_t x_off = (int64_t)kx * p->dil_w - p->pad_l;
                int32_t ox0, ox1;
                valid_range(x_off, sw, in_w, out_w, &ox0, &ox1);
                const size_t n_mid = (size_t)(ox1 - ox0), n_right = (size_t)(out_w - ox1);
                float *restrict dst = col;
                col += band_n;

                memset(dst, 0, (size_t)(oy0 - r0) * (size_t)out_w * sizeof(float));
                for (int32_t oy = oy0; oy < oy1; oy++) {
                    float *restrict d = dst + (size_t)(oy - r0) * (size_t)out_w;
                    const int64_t iy = (int64_t)oy * sh + y_off;
                    memset(d, 0, (size_t)ox0 * sizeof(float));
                    memset(d + ox1, 0, n_right * sizeof(float));
                    if (n_mid == 0) continue;
                    const float *restrict s =
                        src + (size_t)iy * (size_t)in_w + (size_t)((int64_t)ox0 * sw + x_off);
                    if (sw == 1) {
                        memcpy(d + ox0, s, n_mid * sizeof(float));
                    } else if (sw == 2) {
                        /* the usual downsampling layer; a constant stride vectorises */
                        float *restrict dm = d + ox0;
                        for (size_t i = 0; i < n_mid; i++) dm[i] = s[2 * i];
                    } else {
                        float *restrict dm = d + ox0;
                        for (size_t i = 0; i < n_mid; i++) dm[i] = s[i * (size_t)sw];
                    }
                }
                memset(dst + (size_t)(oy1 - r0) * (size_t)out_w, 0,
                       (size_t)(r1 - oy1) * (size_t)out_w * sizeof(float));
            }
        }
    }
}

static void im2col(const float *in, int32_t ic, int32_t in_h, int32_t in_w, const ms_conv2d *p,
                   const conv_plan *pl, int32_t r0, int32_t r1, float *col) {
    im2col_body(in, ic, in_h, in_w, p, pl, r0, r1, col);
}

#ifdef MS_NN_X86_CLONES
/* The strided gather of stride-2 layers is most of their im2col time; AVX2 halves it. */
MS_NN_TARGET_AVX2 static void im2col_avx2(const float *in, int32_t ic, int32_t in_h,
                                          int32_t in_w, const ms_conv2d *p, const conv_plan *pl,
                                          int32_t r0, int32_t r1, float *col) {
    im2col_body(in, ic, in_h, in_w, p, pl, r0, r1, col);
}
#endif

/* Depthwise: each output row accumulates kh*kw shifted input rows (the row stays in L1), then
 * gets its bias and activation. */
static void conv_depthwise(const ms_conv2d *p, const conv_plan *pl, const float *restrict src,
                           int32_t in_h, int32_t in_w, const float *restrict w, float bias,
                           float *restrict dst) {
    const int32_t out_h = pl->out_h, out_w = pl->out_w;
    const int32_t sw = p->stride_w;
    for (int32_t oy = 0; oy < out_h; oy++) {
        float *restrict d = dst + (size_t)oy * (size_t)out_w;
        memset(d, 0, (size_t)out_w * sizeof(float));
        for (int32_t ky = 0; ky < p->kh; ky++) {
            const int64_t iy = (int64_t)oy * p->stride_h + (int64_t)ky * p->dil_h - p->pad_t;
            if (iy < 0 || iy >= in_h) continue;
            const float *restrict s = src + (size_t)iy * (size_t)in_w;
            for (int32_t kx = 0; kx < p->kw; kx++) {
                const int64_t x_off = (int64_t)kx * p->dil_w - p->pad_l;
                int32_t ox0, ox1;
                valid_range(x_off, sw, in_w, out_w, &ox0, &ox1);
                if (ox0 == ox1) continue;
                const float wv = w[(size_t)ky * (size_t)p->kw + (size_t)kx];
                const float *restrict sp = s + (size_t)((int64_t)ox0 * sw + x_off);
                float *restrict dm = d + ox0;
                const size_t n = (size_t)(ox1 - ox0);
                if (sw == 1)
                    for (size_t i = 0; i < n; i++) dm[i] += wv * sp[i];
                else
                    for (size_t i = 0; i < n; i++) dm[i] += wv * sp[i * (size_t)sw];
            }
        }
        ms_nn_bias_act(d, (size_t)out_w, bias, p->act, p->act_alpha);
    }
}

/* First layer: one input channel, 3x3, stride 1, dilation 1. For each output row and chunk of
 * FIRST_CHUNK columns, the three input rows it reads are copied once, with the padding's
 * zeros, so the loop over output channels is branch-free and vectorises over columns. */
MS_NN_INLINE void first3x3_body(const ms_conv2d *p, const conv_plan *pl, const float *restrict src,
                                int32_t in_h, int32_t in_w, const float *restrict weight,
                                const float *restrict bias, float *restrict dst, int32_t oy0,
                                int32_t oy1) {
    float rows[3][FIRST_CHUNK + 2];
    const int32_t ow = pl->out_w;
    const size_t plane_out = pl->plane_out;
    for (int32_t oy = oy0; oy < oy1; oy++)
        for (int32_t x0 = 0; x0 < ow; x0 += FIRST_CHUNK) {
            const int32_t n = ow - x0 < FIRST_CHUNK ? ow - x0 : FIRST_CHUNK;
            const int64_t ix0 = (int64_t)x0 - p->pad_l, width = (int64_t)n + 2;
            int64_t xa = -ix0, xb = (int64_t)in_w - ix0; /* valid part of a row: [xa, xb) */
            xa = xa < 0 ? 0 : xa > width ? width : xa;
            xb = xb < xa ? xa : xb > width ? width : xb;
            for (int j = 0; j < 3; j++) {
                float *restrict r = rows[j];
                const int64_t iy = (int64_t)oy + j - p->pad_t;
                if (iy < 0 || iy >= in_h || xa == xb) {
                    memset(r, 0, (size_t)width * sizeof(float));
                    continue;
                }
                memset(r, 0, (size_t)xa * sizeof(float));
                memcpy(r + xa, src + (size_t)iy * (size_t)in_w + (size_t)(ix0 + xa),
                       (size_t)(xb - xa) * sizeof(float));
                memset(r + xb, 0, (size_t)(width - xb) * sizeof(float));
            }
            const float *restrict r0 = rows[0], *restrict r1 = rows[1], *restrict r2 = rows[2];
            for (int32_t oc = 0; oc < p->out_c; oc++) {
                const float *k = weight + 9 * (size_t)oc;
                const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5];
                const float k6 = k[6], k7 = k[7], k8 = k[8], b = bias ? bias[oc] : 0.0f;
                float *restrict d = dst + (size_t)oc * plane_out + (size_t)oy * (size_t)ow + x0;
                /* three independent sums, one per input row, for shorter dependency chains;
                 * ReLU in the same pass (the usual case), other activations after it */
                if (p->act == MS_ACT_RELU) {
                    for (int32_t i = 0; i < n; i++) {
                        const float y = (b + k0 * r0[i] + k1 * r0[i + 1] + k2 * r0[i + 2]) +
                                        (k3 * r1[i] + k4 * r1[i + 1] + k5 * r1[i + 2]) +
                                        (k6 * r2[i] + k7 * r2[i + 1] + k8 * r2[i + 2]);
                        d[i] = y > 0.0f ? y : 0.0f;
                    }
                    continue;
                }
                for (int32_t i = 0; i < n; i++)
                    d[i] = (b + k0 * r0[i] + k1 * r0[i + 1] + k2 * r0[i + 2]) +
                           (k3 * r1[i] + k4 * r1[i + 1] + k5 * r1[i + 2]) +
                           (k6 * r2[i] + k7 * r2[i + 1] + k8 * r2[i + 2]);
                if (p->act != MS_ACT_NONE) ms_nn_bias_act(d, (size_t)n, 0.0f, p->act, p->act_alpha);
            }
        }
}

static void conv_first3x3(const ms_conv2d *p, const conv_plan *pl, const float *src, int32_t in_h,
                          int32_t in_w, const float *weight, const float *bias, float *dst,
                          int32_t oy0, int32_t oy1) {
    first3x3_body(p, pl, src, in_h, in_w, weight, bias, dst, oy0, oy1);
}

#ifdef MS_NN_X86_CLONES
MS_NN_TARGET_AVX512 static void conv_first3x3_avx512(const ms_conv2d *p, const conv_plan *pl,
                                                     const float *src, int32_t in_h, int32_t in_w,
                                                     const float *weight, const float *bias,
                                                     float *dst, int32_t oy0, int32_t oy1) {
    first3x3_body(p, pl, src, in_h, in_w, weight, bias, dst, oy0, oy1);
}

MS_NN_TARGET_AVX2 static void conv_first3x3_avx2(const ms_conv2d *p, const conv_plan *pl,
                                                 const float *src, int32_t in_h, int32_t in_w,
                                                 const float *weight, const float *bias, float *dst,
                                                 int32_t oy0, int32_t oy1) {
    first3x3_body(p, pl, src, in_h, in_w, weight, bias, dst, oy0, oy1);
}
#endif

/* ---- the work as independent tasks ----
 * A convolution splits into tasks that depend only on its shapes (never on the thread
 * count), each writing its own part of the output with its own workspace slot: any number of
 * threads computes the same bits. Per image: depthwise, one task per channel; first layer,
 * FIRST_ROWS output rows; pointwise, POINTWISE_COLS output columns of a group; im2col, one
 * band of a group, and when a layer has fewer than MIN_TASKS bands (deep layers on small
 * maps, e.g. ResNet-18's 512 channels at 7x7 are one band) also a share of at least
 * MIN_SHARE output channels, each share filling the band's columns itself. Shares cost the
 * single-threaded run (ResNet-18, 1 thread: 32.9 ms without them, 38.4 with up to 4 shares of
 * 32+ channels, 34.4 with up to 2 of 128+), so there are just enough for two threads. */
enum { FIRST_ROWS = 8, POINTWISE_COLS = 4096, MIN_TASKS = 2, MIN_SHARE = 128 };

typedef struct conv_job {
    const ms_conv2d *p;
    conv_plan pl;
    const ms_tensor *in;
    const float *weight, *bias;
    ms_tensor *out;
    float *workspace;
    size_t ws_stride; /* floats between workers' slots */
    size_t per_group; /* tasks per image and group (im2col, pointwise) or per image */
    int32_t bands, shares, share_rows;
    bool avx2, avx512;
} conv_job;

static size_t ceil_div_size(size_t a, size_t b) { return a / b + (a % b != 0); }

static void conv_job_init(conv_job *j) {
    const conv_plan *pl = &j->pl;
    const ms_conv2d *p = j->p;
    j->shares = 1;
    j->share_rows = p->out_c / p->groups;
    switch (pl->path) {
    case CONV_DEPTHWISE: j->per_group = (size_t)p->out_c; break;
    case CONV_FIRST3X3: j->per_group = ceil_div_size((size_t)pl->out_h, FIRST_ROWS); break;
    case CONV_POINTWISE: j->per_group = ceil_div_size(pl->plane_out, POINTWISE_COLS); break;
    case CONV_IM2COL: {
        const int32_t oc_g = p->out_c / p->groups;
        j->bands = (int32_t)ceil_div_size((size_t)pl->out_h, (size_t)pl->band);
        if ((size_t)j->bands * (size_t)p->groups < MIN_TASKS && oc_g >= 2 * MIN_SHARE) {
            int32_t want = (MIN_TASKS + j->bands * p->groups - 1) / (j->bands * p->groups);
            if (want > oc_g / MIN_SHARE) want = oc_g / MIN_SHARE;
            j->share_rows = (oc_g + want - 1) / want;
            j->shares = (oc_g + j->share_rows - 1) / j->share_rows;
        }
        j->per_group = (size_t)j->bands * (size_t)j->shares;
        break;
    }
    }
}

static size_t conv_job_tasks(const conv_job *j) {
    const size_t groups =
        (j->pl.path == CONV_IM2COL || j->pl.path == CONV_POINTWISE) ? (size_t)j->p->groups : 1;
    return (size_t)j->in->n * groups * j->per_group;
}

static void conv_task(void *ctx, size_t task, int32_t worker) {
    const conv_job *j = ctx;
    const ms_conv2d *p = j->p;
    const conv_plan *pl = &j->pl;
    const ms_tensor *in = j->in;
    const int32_t ic_g = p->in_c / p->groups, oc_g = p->out_c / p->groups;
    const size_t in_img = (size_t)p->in_c * pl->plane_in;
    const size_t out_img = (size_t)p->out_c * pl->plane_out;
    float *ws = j->workspace ? j->workspace + (size_t)worker * j->ws_stride : NULL;

    if (pl->path == CONV_DEPTHWISE) {
        const size_t n = task / j->per_group, c = task % j->per_group;
        const size_t taps = (size_t)p->kh * (size_t)p->kw;
        conv_depthwise(p, pl, in->data + n * in_img + c * pl->plane_in, in->h, in->w,
                       j->weight + c * taps, j->bias ? j->bias[c] : 0.0f,
                       j->out->data + n * out_img + c * pl->plane_out);
        return;
    }
    if (pl->path == CONV_FIRST3X3) {
        const size_t n = task / j->per_group;
        const int32_t oy0 = (int32_t)(task % j->per_group) * FIRST_ROWS;
        const int32_t oy1 = pl->out_h - oy0 > FIRST_ROWS ? oy0 + FIRST_ROWS : pl->out_h;
        const float *img = in->data + n * in_img;
        float *oimg = j->out->data + n * out_img;
#ifdef MS_NN_X86_CLONES
        if (j->avx512) {
            conv_first3x3_avx512(p, pl, img, in->h, in->w, j->weight, j->bias, oimg, oy0, oy1);
            return;
        }
        if (j->avx2) {
            conv_first3x3_avx2(p, pl, img, in->h, in->w, j->weight, j->bias, oimg, oy0, oy1);
            return;
        }
#endif
        conv_first3x3(p, pl, img, in->h, in->w, j->weight, j->bias, oimg, oy0, oy1);
        return;
    }

    const size_t per_image = (size_t)p->groups * j->per_group;
    const size_t n = task / per_image, g = task % per_image / j->per_group;
    const size_t part = task % j->per_group;
    const float *in_g = in->data + n * in_img + g * (size_t)ic_g * pl->plane_in;
    const float *w_g = j->weight + g * (size_t)oc_g * pl->k;
    float *out_g = j->out->data + n * out_img + g * (size_t)oc_g * pl->plane_out;
    const float *b_g = j->bias ? j->bias + g * (size_t)oc_g : NULL;
    const blasint nn = (blasint)pl->plane_out, kk = (blasint)pl->k;
    size_t col0, cols;
    int32_t m0 = 0, m1 = oc_g;
    if (pl->path == CONV_POINTWISE) {
        /* Row-major: out_g [oc_g x cols] = W_g [oc_g x K] * in_g[:, col0 .. col0 + cols] */
        col0 = part * POINTWISE_COLS;
        cols = pl->plane_out - col0 < POINTWISE_COLS ? pl->plane_out - col0 : POINTWISE_COLS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)oc_g, (blasint)cols, kk,
                    1.0f, w_g, kk, in_g + col0, nn, 0.0f, out_g + col0, nn);
    } else {
        const int32_t band = (int32_t)(part / (size_t)j->shares);
        const int32_t share = (int32_t)(part % (size_t)j->shares);
        const int32_t r0 = band * pl->band;
        const int32_t r1 = pl->out_h - r0 > pl->band ? r0 + pl->band : pl->out_h;
        m0 = share * j->share_rows;
        m1 = oc_g - m0 > j->share_rows ? m0 + j->share_rows : oc_g;
#ifdef MS_NN_X86_CLONES
        if (j->avx2)
            im2col_avx2(in_g, ic_g, in->h, in->w, p, pl, r0, r1, ws);
        else
#endif
            im2col(in_g, ic_g, in->h, in->w, p, pl, r0, r1, ws);
        col0 = (size_t)r0 * (size_t)pl->out_w;
        cols = (size_t)(r1 - r0) * (size_t)pl->out_w;
        /* A band's columns are a block of out_g's columns (ldc = N). */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)(m1 - m0), (blasint)cols,
                    kk, 1.0f, w_g + (size_t)m0 * pl->k, kk, ws, (blasint)cols, 0.0f,
                    out_g + (size_t)m0 * pl->plane_out + col0, nn);
    }
    if (b_g != NULL || p->act != MS_ACT_NONE)
        for (int32_t c = m0; c < m1; c++)
            ms_nn_bias_act(out_g + (size_t)c * pl->plane_out + col0, cols, b_g ? b_g[c] : 0.0f,
                           p->act, p->act_alpha);
}

static void conv_forward(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                         const float *bias, ms_tensor *out, float *workspace, size_t ws_stride,
                         ms_pool *pool, bool generic, ms_nn_isa isa) {
    conv_job j = {.p = p,
                  .in = in,
                  .weight = weight,
                  .bias = bias,
                  .out = out,
                  .workspace = workspace,
                  .ws_stride = ws_stride};
    if (conv_plan_make(p, in->h, in->w, &j.pl, NULL) != MS_OK) {
        assert(0 && "ms_conv2d_forward: parameters that ms_conv2d_shape refuses");
        return;
    }
    assert(in->c == p->in_c && out->n == in->n && out->c == p->out_c && out->h == j.pl.out_h &&
           out->w == j.pl.out_w);
    if (generic && j.pl.path == CONV_FIRST3X3) j.pl.path = CONV_IM2COL; /* same workspace */
    assert(j.pl.workspace == 0 || j.pl.path == CONV_FIRST3X3 || workspace != NULL);
    assert(ms_pool_threads(pool) == 1 || ws_stride >= j.pl.workspace);
    j.avx2 = isa >= MS_NN_ISA_AVX2 && ms_nn_cpu_avx2_fma();
    j.avx512 = isa >= MS_NN_ISA_AVX512 && ms_nn_cpu_avx512();
    conv_job_init(&j);
    ms_pool_run(pool, conv_job_tasks(&j), conv_task, &j);
}

void ms_conv2d_forward(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                       const float *bias, ms_tensor *out, float *workspace) {
    conv_forward(p, in, weight, bias, out, workspace, 0, NULL, false, MS_NN_ISA_AVX512);
}

void ms_conv2d_forward_pool(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                            const float *bias, ms_tensor *out, float *workspace, size_t ws_stride,
                            ms_pool *pool) {
    conv_forward(p, in, weight, bias, out, workspace, ws_stride, pool, false, MS_NN_ISA_AVX512);
}

void ms_nn_conv2d_forward_generic(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                                  const float *bias, ms_tensor *out, float *workspace) {
    conv_forward(p, in, weight, bias, out, workspace, 0, NULL, true, MS_NN_ISA_AVX512);
}

void ms_nn_conv2d_forward_isa(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                              const float *bias, ms_tensor *out, float *workspace, ms_nn_isa isa) {
    conv_forward(p, in, weight, bias, out, workspace, 0, NULL, false, isa);
}
