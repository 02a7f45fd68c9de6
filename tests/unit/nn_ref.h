/* Double-precision references shared by the operator tests. */
#ifndef MEDSCREEN_TEST_NN_REF_H
#define MEDSCREEN_TEST_NN_REF_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "medscreen/nn.h"

/* The activation applied to x, as PyTorch defines it (GELU exact). */
static inline double act_ref(ms_act act, double alpha, double x) {
    switch (act) {
    case MS_ACT_NONE: return x;
    case MS_ACT_RELU: return x > 0 ? x : 0;
    case MS_ACT_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case MS_ACT_SILU: return x / (1.0 + exp(-x));
    case MS_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case MS_ACT_TANH: return tanh(x);
    case MS_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    }
    return NAN;
}

/* Deterministic random numbers (a 64-bit LCG), the same on every platform. */
typedef struct rng {
    uint64_t s;
} rng;

static inline uint32_t rng_u32(rng *r) {
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(r->s >> 33);
}

/* Uniform in [lo, hi]. */
static inline int32_t rng_int(rng *r, int32_t lo, int32_t hi) {
    return lo + (int32_t)(rng_u32(r) % (uint32_t)(hi - lo + 1));
}

/* Uniform in [-1, 1). */
static inline float rng_f(rng *r) { return (float)rng_u32(r) / 1073741824.0f - 1.0f; }

/* Convolution (any groups, kernel, stride, dilation and padding) in double; the activation
 * too when apply_act. out: [batch][out_c][oh][ow]. */
static inline void conv_ref(const ms_conv2d *p, int32_t batch, int32_t in_h, int32_t in_w,
                            const float *in, const float *w, const float *bias, int32_t oh,
                            int32_t ow, bool apply_act, double *out) {
    const int32_t icg = p->in_c / p->groups, ocg = p->out_c / p->groups;
    for (int32_t b = 0; b < batch; b++)
        for (int32_t oc = 0; oc < p->out_c; oc++) {
            const int32_t g = oc / ocg;
            for (int32_t oy = 0; oy < oh; oy++)
                for (int32_t ox = 0; ox < ow; ox++) {
                    double acc = bias ? bias[oc] : 0.0;
                    for (int32_t ic = 0; ic < icg; ic++)
                        for (int32_t ky = 0; ky < p->kh; ky++)
                            for (int32_t kx = 0; kx < p->kw; kx++) {
                                int32_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                                int32_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                                if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) continue;
                                int32_t c = g * icg + ic;
                                double xv =
                                    in[(((size_t)b * (size_t)p->in_c + (size_t)c) * (size_t)in_h +
                                        (size_t)iy) *
                                           (size_t)in_w +
                                       (size_t)ix];
                                double wv =
                                    w[(((size_t)oc * (size_t)icg + (size_t)ic) * (size_t)p->kh +
                                       (size_t)ky) *
                                          (size_t)p->kw +
                                      (size_t)kx];
                                acc += xv * wv;
                            }
                    out[(((size_t)b * (size_t)p->out_c + (size_t)oc) * (size_t)oh + (size_t)oy) *
                            (size_t)ow +
                        (size_t)ox] = apply_act ? act_ref(p->act, p->act_alpha, acc) : acc;
                }
        }
}

#endif
