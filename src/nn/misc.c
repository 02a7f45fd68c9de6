/* Batch normalisation, concatenation, element-wise binary operators, fully connected and
 * softmax. */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "nn_internal.h"

/* Both batch-norm functions compute the per-channel scale gamma / sqrt(var + eps) and shift
 * beta - mean * scale in double and round each once to float, so a folded convolution and an
 * explicit normalisation agree to float rounding. */
static void bn_coeffs(float gamma, float beta, float mean, float var, float eps, double *scale,
                      double *shift) {
    *scale = (double)gamma / sqrt((double)var + (double)eps);
    *shift = (double)beta - (double)mean * *scale;
}

void ms_batchnorm_fold(int32_t out_c, size_t per_out, float *weight, float *bias,
                       const float *gamma, const float *beta, const float *mean, const float *var,
                       float eps) {
    for (int32_t c = 0; c < out_c; c++) {
        double scale, shift;
        bn_coeffs(gamma[c], beta[c], mean[c], var[c], eps, &scale, &shift);
        float *restrict w = weight + (size_t)c * per_out;
        const float fs = (float)scale;
        for (size_t i = 0; i < per_out; i++) w[i] *= fs;
        bias[c] = (float)((double)bias[c] * scale + shift);
    }
}

void ms_batchnorm_forward(ms_tensor *x, const float *gamma, const float *beta, const float *mean,
                          const float *var, float eps) {
    const size_t plane = (size_t)x->h * (size_t)x->w;
    for (int32_t n = 0; n < x->n; n++)
        for (int32_t c = 0; c < x->c; c++) {
            double scale, shift;
            bn_coeffs(gamma[c], beta[c], mean[c], var[c], eps, &scale, &shift);
            const float fs = (float)scale, ft = (float)shift;
            float *restrict p = x->data + ((size_t)n * (size_t)x->c + (size_t)c) * plane;
            for (size_t i = 0; i < plane; i++) p[i] = p[i] * fs + ft;
        }
}

void ms_concat_channels(const ms_tensor *const *ins, int32_t count, ms_tensor *out) {
    const size_t plane = (size_t)out->h * (size_t)out->w;
    for (int32_t n = 0; n < out->n; n++) {
        float *dst = out->data + (size_t)n * (size_t)out->c * plane;
        for (int32_t i = 0; i < count; i++) {
            const ms_tensor *t = ins[i];
            assert(t->n == out->n && t->h == out->h && t->w == out->w);
            const size_t img = (size_t)t->c * plane;
            memcpy(dst, t->data + (size_t)n * img, img * sizeof(float));
            dst += img;
        }
    }
}

/* Shape of b relative to a: the same, per channel ([1|n][c][1][1]) or a scalar. */
typedef enum bcast { BCAST_SAME = 0, BCAST_CHANNEL, BCAST_SCALAR } bcast;

static bool same_shape(const ms_tensor *x, const ms_tensor *y) {
    return x->n == y->n && x->c == y->c && x->h == y->h && x->w == y->w;
}

ms_status ms_binary_forward(ms_binary_op op, const ms_tensor *a, const ms_tensor *b, ms_tensor *out,
                            ms_err *err) {
    if (a == NULL || b == NULL || out == NULL || a->data == NULL || b->data == NULL ||
        out->data == NULL)
        return ms_fail(err, MS_EINVAL, "binary: NULL tensor");
    if (op != MS_BINARY_ADD && op != MS_BINARY_MUL)
        return ms_fail(err, MS_EINVAL, "binary: unknown operator %d", (int)op);
    if (a->n < 1 || a->c < 1 || a->h < 1 || a->w < 1)
        return ms_fail(err, MS_EINVAL, "binary: a is [%d][%d][%d][%d], dimensions must be >= 1",
                       a->n, a->c, a->h, a->w);
    if (!same_shape(a, out))
        return ms_fail(err, MS_EINVAL,
                       "binary: out [%d][%d][%d][%d] differs from a [%d][%d][%d][%d]", out->n,
                       out->c, out->h, out->w, a->n, a->c, a->h, a->w);
    bcast mode;
    if (same_shape(a, b))
        mode = BCAST_SAME;
    else if (b->n == 1 && b->c == 1 && b->h == 1 && b->w == 1)
        mode = BCAST_SCALAR;
    else if ((b->n == 1 || b->n == a->n) && b->c == a->c && b->h == 1 && b->w == 1)
        mode = BCAST_CHANNEL;
    else
        return ms_fail(err, MS_EINVAL,
                       "binary: b [%d][%d][%d][%d] neither matches a [%d][%d][%d][%d] nor "
                       "broadcasts as [1|n][c][1][1] or [1][1][1][1]",
                       b->n, b->c, b->h, b->w, a->n, a->c, a->h, a->w);

    /* out may alias a (and b, when b has a's shape): no restrict here. */
    const size_t plane = (size_t)a->h * (size_t)a->w;
    const bool add = op == MS_BINARY_ADD;
    if (mode == BCAST_SAME) {
        const size_t total = ms_tensor_count(a);
        const float *x = a->data, *y = b->data;
        float *o = out->data;
        if (add)
            for (size_t i = 0; i < total; i++) o[i] = x[i] + y[i];
        else
            for (size_t i = 0; i < total; i++) o[i] = x[i] * y[i];
        return MS_OK;
    }
    for (int32_t n = 0; n < a->n; n++)
        for (int32_t c = 0; c < a->c; c++) {
            const size_t off = ((size_t)n * (size_t)a->c + (size_t)c) * plane;
            const float v = mode == BCAST_SCALAR
                                ? b->data[0]
                                : b->data[(b->n == 1 ? 0 : (size_t)n) * (size_t)a->c + (size_t)c];
            const float *x = a->data + off;
            float *o = out->data + off;
            if (add)
                for (size_t i = 0; i < plane; i++) o[i] = x[i] + v;
            else
                for (size_t i = 0; i < plane; i++) o[i] = x[i] * v;
        }
    return MS_OK;
}

void ms_fc_forward(const ms_tensor *in, int32_t out_features, const float *weight,
                   const float *bias, ms_tensor *out) {
    const size_t k = (size_t)in->c * (size_t)in->h * (size_t)in->w;
    assert(out->n == in->n && out->c == out_features && out->h == 1 && out->w == 1);
    assert(k <= (size_t)INT32_MAX);
    const blasint o = (blasint)out_features, kk = (blasint)k;
    /* One sgemv per image rather than one sgemm for the batch: a batched product sums in
     * another order, and an image's scores must not depend on what it was batched with. */
    for (int32_t i = 0; i < in->n; i++) {
        float *y = out->data + (size_t)i * (size_t)out_features;
        float beta = 0.0f;
        if (bias != NULL) {
            memcpy(y, bias, (size_t)out_features * sizeof(float));
            beta = 1.0f;
        }
        cblas_sgemv(CblasRowMajor, CblasNoTrans, o, kk, 1.0f, weight, kk, in->data + (size_t)i * k,
                    1, beta, y, 1);
    }
}

enum { SOFTMAX_TILE = 256 };

/* Channels are a plane apart, so a tile of positions is processed channel by channel: every
 * inner loop walks contiguous memory, and the running max and sum live on the stack. */
void ms_softmax_channels(ms_tensor *x) {
    const size_t plane = (size_t)x->h * (size_t)x->w;
    float mx[SOFTMAX_TILE], sum[SOFTMAX_TILE];
    for (int32_t n = 0; n < x->n; n++) {
        float *img = x->data + (size_t)n * (size_t)x->c * plane;
        for (size_t t0 = 0; t0 < plane; t0 += SOFTMAX_TILE) {
            const size_t nt = plane - t0 < SOFTMAX_TILE ? plane - t0 : SOFTMAX_TILE;
            for (size_t i = 0; i < nt; i++) {
                mx[i] = -INFINITY;
                sum[i] = 0.0f;
            }
            for (int32_t c = 0; c < x->c; c++) {
                const float *restrict p = img + (size_t)c * plane + t0;
                for (size_t i = 0; i < nt; i++) mx[i] = p[i] > mx[i] ? p[i] : mx[i];
            }
            for (int32_t c = 0; c < x->c; c++) {
                float *restrict p = img + (size_t)c * plane + t0;
                for (size_t i = 0; i < nt; i++) {
                    p[i] = expf(p[i] - mx[i]);
                    sum[i] += p[i];
                }
            }
            for (size_t i = 0; i < nt; i++) sum[i] = 1.0f / sum[i];
            for (int32_t c = 0; c < x->c; c++) {
                float *restrict p = img + (size_t)c * plane + t0;
                for (size_t i = 0; i < nt; i++) p[i] *= sum[i];
            }
        }
    }
}
