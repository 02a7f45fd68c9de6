/* Max and average pooling with PyTorch's rules (torch 1.13, aten/src/ATen/native/Pool.h and
 * cpu/AvgPoolKernel.cpp):
 *   out = floor_or_ceil((in + pad0 + pad1 - k) / stride) + 1, and with ceil_mode a last window
 *   that would start in the right/bottom padding ((out-1)*stride >= in + pad0) is dropped;
 *   max pooling treats padding as -inf (and propagates NaN, as PyTorch does);
 *   average pooling with count_include_pad divides by the window clipped to the padded input
 *   (min(start + k, in + pad1) - start), without it by the number of input samples.
 * Padding must be at most half the kernel (PyTorch's rule), so no window is empty. */
#include <assert.h>
#include <math.h>
#include <string.h>
#include <stdint.h>

#include "medscreen/core.h"
#include "nn_internal.h"

static ms_status pool_axis(const char *axis, int32_t in, int32_t k, int32_t stride, int32_t pad0,
                           int32_t pad1, bool ceil_mode, int32_t *out, ms_err *err) {
    if (pad0 > k / 2 || pad1 > k / 2)
        return ms_fail(err, MS_EINVAL,
                       "pool2d: %s padding (%d, %d) exceeds half the kernel %d (PyTorch's rule)",
                       axis, pad0, pad1, k);
    int64_t padded = (int64_t)in + pad0 + pad1;
    if (k > padded)
        return ms_fail(err, MS_EINVAL,
                       "pool2d: kernel %s %d exceeds the padded input %s %lld (%d + pads %d, %d)",
                       axis, k, axis, (long long)padded, in, pad0, pad1);
    int64_t span = padded - k;
    int64_t n = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
    if (ceil_mode && (n - 1) * stride >= (int64_t)in + pad0) n--;
    if (n > INT32_MAX)
        return ms_fail(err, MS_EINVAL, "pool2d: output %s %lld does not fit int32", axis,
                       (long long)n);
    *out = (int32_t)n;
    return MS_OK;
}

ms_status ms_pool2d_shape(const ms_pool2d *p, int32_t in_h, int32_t in_w, int32_t *out_h,
                          int32_t *out_w, ms_err *err) {
    if (p == NULL) return ms_fail(err, MS_EINVAL, "pool2d: NULL parameters");
    if (p->kind != MS_POOL_MAX && p->kind != MS_POOL_AVG)
        return ms_fail(err, MS_EINVAL, "pool2d: unknown kind %d", (int)p->kind);
    if (in_h < 1 || in_w < 1)
        return ms_fail(err, MS_EINVAL, "pool2d: input size %dx%d must be positive", in_h, in_w);
    if (p->kh < 1 || p->kw < 1)
        return ms_fail(err, MS_EINVAL, "pool2d: kernel %dx%d must be positive", p->kh, p->kw);
    if (p->stride_h < 1 || p->stride_w < 1)
        return ms_fail(err, MS_EINVAL, "pool2d: stride %dx%d must be >= 1", p->stride_h,
                       p->stride_w);
    if (p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0)
        return ms_fail(err, MS_EINVAL,
                       "pool2d: padding (top %d, left %d, bottom %d, right %d) must be >= 0",
                       p->pad_t, p->pad_l, p->pad_b, p->pad_r);
    int32_t oh, ow;
    ms_status st =
        pool_axis("height", in_h, p->kh, p->stride_h, p->pad_t, p->pad_b, p->ceil_mode, &oh, err);
    if (st != MS_OK) return st;
    st = pool_axis("width", in_w, p->kw, p->stride_w, p->pad_l, p->pad_r, p->ceil_mode, &ow, err);
    if (st != MS_OK) return st;
    size_t plane;
    if (!ms_mul_size((size_t)oh, (size_t)ow, &plane) || !ms_mul_size(plane, sizeof(float), &plane))
        return ms_fail(err, MS_EINVAL, "pool2d: output plane %dx%d overflows size_t", oh, ow);
    if (out_h) *out_h = oh;
    if (out_w) *out_w = ow;
    return MS_OK;
}

/* Output range [*o0, *o1) whose windows lie wholly inside the input along one axis: no
 * clipping there. */
static void interior(int32_t in, int32_t k, int32_t stride, int32_t pad0, int32_t out, int32_t *o0,
                     int32_t *o1) {
    int64_t a = (pad0 + (int64_t)stride - 1) / stride; /* o * stride >= pad0 */
    int64_t span = (int64_t)in + pad0 - k;
    int64_t b = span < 0 ? 0 : span / stride + 1; /* o * stride + k <= in + pad0 */
    if (a > out) a = out;
    if (b < a) b = a;
    if (b > out) b = out;
    *o0 = (int32_t)a;
    *o1 = (int32_t)b;
}

enum { VMAX_W = 4096 }; /* widest row the max-pooling fast path keeps on the stack */

/* max(a, b) that returns NaN when either is NaN, as max_window does. */
static inline float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

static inline float max_window(const float *restrict s, int32_t in_w, int32_t y0, int32_t y1,
                               int32_t x0, int32_t x1) {
    float m = -INFINITY;
    for (int32_t y = y0; y < y1; y++) {
        const float *restrict r = s + (size_t)y * (size_t)in_w;
        for (int32_t x = x0; x < x1; x++) {
            float v = r[x];
            if (v > m || v != v) m = v;
        }
    }
    return m;
}

static inline float sum_window(const float *restrict s, int32_t in_w, int32_t y0, int32_t y1,
                               int32_t x0, int32_t x1) {
    float acc = 0.0f;
    for (int32_t y = y0; y < y1; y++) {
        const float *restrict r = s + (size_t)y * (size_t)in_w;
        for (int32_t x = x0; x < x1; x++) acc += r[x];
    }
    return acc;
}

/* One output value from the window [y0, y1) x [x0, x1) clipped to the input; div is the
 * average's divisor. */
static inline float pool_one(bool is_max, const float *restrict s, int32_t in_w, int32_t y0,
                             int32_t y1, int32_t x0, int32_t x1, float div) {
    return is_max ? max_window(s, in_w, y0, y1, x0, x1) : sum_window(s, in_w, y0, y1, x0, x1) / div;
}

MS_NN_INLINE void pool_plane_body(const ms_pool2d *p, const float *restrict s, int32_t in_h,
                                  int32_t in_w, float *restrict d, int32_t out_h, int32_t out_w) {
    const bool is_max = p->kind == MS_POOL_MAX;
    const int64_t kw = p->kw, sw = p->stride_w, pad_l = p->pad_l;
    const int64_t x_end_padded = (int64_t)in_w + p->pad_r;
    int32_t ix0, ix1;
    interior(in_w, p->kw, p->stride_w, p->pad_l, out_w, &ix0, &ix1);
    for (int32_t oy = 0; oy < out_h; oy++) {
        int64_t y0 = (int64_t)oy * p->stride_h - p->pad_t, y1 = y0 + p->kh;
        const int64_t wh = (y1 < (int64_t)in_h + p->pad_b ? y1 : (int64_t)in_h + p->pad_b) - y0;
        if (y0 < 0) y0 = 0;
        if (y1 > in_h) y1 = in_h;
        const int32_t cy0 = (int32_t)y0, cy1 = (int32_t)y1;
        const int64_t hy = p->count_include_pad ? wh : y1 - y0;
        float *restrict row = d + (size_t)oy * (size_t)out_w;

        /* Interior columns: the whole kernel width lies inside the input. */
        const float inner_div = (float)(hy * kw);
        if (is_max && ix1 > ix0 && in_w <= VMAX_W && cy1 > cy0) {
            /* The window rows' element-wise maximum first (one vectorisable pass per row),
             * then each window is kw values of that row instead of kh * kw: ResNet's 3x3/s2
             * stem pooling took 4.9 ms of a 41 ms run with the per-window loop. */
            float vmax[VMAX_W];
            const float *restrict r0 = s + (size_t)cy0 * (size_t)in_w;
            memcpy(vmax, r0, (size_t)in_w * sizeof(float));
            for (int32_t y = cy0 + 1; y < cy1; y++) {
                const float *restrict r = s + (size_t)y * (size_t)in_w;
                for (int32_t x = 0; x < in_w; x++) vmax[x] = nan_max(vmax[x], r[x]);
            }
            if (p->kw == 3 && sw == 2) { /* ResNet's stem pooling: vectorises (strided) */
                const float *restrict v = vmax - pad_l;
                for (int32_t ox = ix0; ox < ix1; ox++)
                    row[ox] = nan_max(nan_max(v[2 * ox], v[2 * ox + 1]), v[2 * ox + 2]);
            } else {
                for (int32_t ox = ix0; ox < ix1; ox++) {
                    const int32_t x0 = (int32_t)(ox * sw - pad_l);
                    float m = vmax[x0];
                    for (int32_t x = x0 + 1; x < x0 + p->kw; x++) m = nan_max(m, vmax[x]);
                    row[ox] = m;
                }
            }
        } else {
            for (int32_t ox = ix0; ox < ix1; ox++) {
                const int32_t x0 = (int32_t)(ox * sw - pad_l);
                row[ox] = pool_one(is_max, s, in_w, cy0, cy1, x0, x0 + p->kw, inner_div);
            }
        }
        /* Border columns: clip each window. */
        for (int32_t ox = 0; ox < out_w; ox++) {
            if (ox == ix0) ox = ix1;
            if (ox >= out_w) break;
            int64_t x0 = ox * sw - pad_l, x1 = x0 + kw;
            const int64_t ww = (x1 < x_end_padded ? x1 : x_end_padded) - x0;
            if (x0 < 0) x0 = 0;
            if (x1 > in_w) x1 = in_w;
            const float div = (float)((p->count_include_pad ? ww : x1 - x0) * hy);
            row[ox] = pool_one(is_max, s, in_w, cy0, cy1, (int32_t)x0, (int32_t)x1, div);
        }
    }
}

static void pool_plane(const ms_pool2d *p, const float *s, int32_t in_h, int32_t in_w, float *d,
                       int32_t out_h, int32_t out_w) {
    pool_plane_body(p, s, in_h, in_w, d, out_h, out_w);
}

#ifdef MS_NN_X86_CLONES
/* Measured on ResNet-18's 3x3/s2 stem pooling (64x112x112, Xeon, 1 thread): 1.74 ms for the
 * baseline build, see the commit for the clones. */
MS_NN_TARGET_AVX2 static void pool_plane_avx2(const ms_pool2d *p, const float *s, int32_t in_h,
                                              int32_t in_w, float *d, int32_t out_h,
                                              int32_t out_w) {
    pool_plane_body(p, s, in_h, in_w, d, out_h, out_w);
}
MS_NN_TARGET_AVX512 static void pool_plane_avx512(const ms_pool2d *p, const float *s, int32_t in_h,
                                                  int32_t in_w, float *d, int32_t out_h,
                                                  int32_t out_w) {
    pool_plane_body(p, s, in_h, in_w, d, out_h, out_w);
}
#endif

enum { POOL_TASK_FLOATS = 1 << 15 }; /* input floats per task: planes are grouped up to this */

typedef struct pool_job {
    const ms_pool2d *p;
    const ms_tensor *in;
    ms_tensor *out;
    size_t planes, per_task;
    void (*fn)(const ms_pool2d *, const float *, int32_t, int32_t, float *, int32_t, int32_t);
} pool_job;

static void pool_task(void *ctx, size_t task, int32_t worker) {
    (void)worker;
    const pool_job *j = ctx;
    const size_t pin = (size_t)j->in->h * (size_t)j->in->w;
    const size_t pout = (size_t)j->out->h * (size_t)j->out->w;
    const size_t i0 = task * j->per_task;
    const size_t i1 = j->planes - i0 < j->per_task ? j->planes : i0 + j->per_task;
    for (size_t i = i0; i < i1; i++)
        j->fn(j->p, j->in->data + i * pin, j->in->h, j->in->w, j->out->data + i * pout, j->out->h,
              j->out->w);
}

void ms_pool2d_forward_pool(const ms_pool2d *p, const ms_tensor *in, ms_tensor *out,
                            ms_pool *pool) {
    int32_t oh, ow;
    if (ms_pool2d_shape(p, in->h, in->w, &oh, &ow, NULL) != MS_OK) {
        assert(!"ms_pool2d_forward: parameters that ms_pool2d_shape refuses");
        return;
    }
    assert(out->n == in->n && out->c == in->c && out->h == oh && out->w == ow);
    pool_job j = {.p = p, .in = in, .out = out, .fn = pool_plane};
#ifdef MS_NN_X86_CLONES
    if (ms_nn_cpu_avx512())
        j.fn = pool_plane_avx512;
    else if (ms_nn_cpu_avx2_fma())
        j.fn = pool_plane_avx2;
#endif
    j.planes = (size_t)in->n * (size_t)in->c;
    const size_t pin = (size_t)in->h * (size_t)in->w;
    j.per_task = pin >= POOL_TASK_FLOATS ? 1 : POOL_TASK_FLOATS / pin;
    if (j.planes == 0) return;
    ms_pool_run(pool, (j.planes + j.per_task - 1) / j.per_task, pool_task, &j);
}

void ms_pool2d_forward(const ms_pool2d *p, const ms_tensor *in, ms_tensor *out) {
    ms_pool2d_forward_pool(p, in, out, NULL);
}

void ms_global_pool_forward(ms_pool_kind kind, const ms_tensor *in, ms_tensor *out) {
    assert(out->n == in->n && out->c == in->c && out->h == 1 && out->w == 1);
    const size_t planes = (size_t)in->n * (size_t)in->c;
    const size_t pin = (size_t)in->h * (size_t)in->w;
    for (size_t i = 0; i < planes; i++) {
        const float *restrict s = in->data + i * pin;
        if (kind == MS_POOL_MAX) {
            float m = -INFINITY;
            for (size_t j = 0; j < pin; j++)
                if (s[j] > m || s[j] != s[j]) m = s[j];
            out->data[i] = m;
        } else {
            /* A double sum keeps large planes (512x512) accurate to float precision. */
            double acc = 0.0;
            for (size_t j = 0; j < pin; j++) acc += s[j];
            out->data[i] = (float)(acc / (double)pin);
        }
    }
}
