/* Helpers shared by the nn operator files; not part of the public API. */
#ifndef MEDSCREEN_NN_INTERNAL_H
#define MEDSCREEN_NN_INTERNAL_H

#include "medscreen/nn.h"

/* y[i] = act(y[i] + bias) over n contiguous values: the one pass that follows a GEMM. */
void ms_nn_bias_act(float *restrict y, size_t n, float bias, ms_act act, float alpha);

#endif
