/* Double-precision references shared by the operator tests. */
#ifndef MEDSCREEN_TEST_NN_REF_H
#define MEDSCREEN_TEST_NN_REF_H

#include <math.h>

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

#endif
