/* Activations, applied in place. Each case is its own loop so the compiler sees a plain
 * contiguous loop (vectorisable for the piecewise-linear ones). */
#include <math.h>

#include "nn_internal.h"

/* Sigmoid without overflow: exp is only taken of a non-positive argument, so it never
 * reaches inf and the result keeps its relative precision in the far negative tail. */
static inline float sigmoid_f(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float gelu_f(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

void ms_nn_bias_act(float *restrict y, size_t n, float bias, ms_act act, float alpha) {
    switch (act) {
    case MS_ACT_NONE:
        if (bias != 0.0f)
            for (size_t i = 0; i < n; i++) y[i] += bias;
        return;
    case MS_ACT_RELU:
        for (size_t i = 0; i < n; i++) {
            float v = y[i] + bias;
            y[i] = v > 0.0f ? v : 0.0f;
        }
        return;
    case MS_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++) {
            float v = y[i] + bias;
            y[i] = v > 0.0f ? v : v * alpha;
        }
        return;
    case MS_ACT_SILU:
        for (size_t i = 0; i < n; i++) {
            float v = y[i] + bias;
            y[i] = v * sigmoid_f(v);
        }
        return;
    case MS_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) y[i] = sigmoid_f(y[i] + bias);
        return;
    case MS_ACT_TANH:
        for (size_t i = 0; i < n; i++) y[i] = tanhf(y[i] + bias);
        return;
    case MS_ACT_GELU:
        for (size_t i = 0; i < n; i++) y[i] = gelu_f(y[i] + bias);
        return;
    }
}

void ms_act_forward(ms_act act, float alpha, float *x, size_t n) {
    if (act == MS_ACT_NONE) return;
    ms_nn_bias_act(x, n, 0.0f, act, alpha);
}
