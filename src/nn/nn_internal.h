/* Helpers shared by the nn operator files; not part of the public API. */
#ifndef MEDSCREEN_NN_INTERNAL_H
#define MEDSCREEN_NN_INTERNAL_H

#include "medscreen/nn.h"

/* y[i] = act(y[i] + bias) over n contiguous values: the one pass that follows a GEMM. */
void ms_nn_bias_act(float *restrict y, size_t n, float bias, ms_act act, float alpha);

/* ms_conv2d_forward without its first-layer kernel (such layers go through im2col), for the
 * tests and benchmarks that compare the two. Same workspace as ms_conv2d_forward. */
void ms_nn_conv2d_forward_generic(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                                  const float *bias, ms_tensor *out, float *workspace);

/* Hot loops are plain C written once as an always-inline body and compiled twice: for the
 * build's baseline (x86-64: SSE2, 4 lanes, no FMA) and, on x86 with GCC or Clang, for AVX2+FMA
 * (8 lanes), picked at run time with ms_nn_cpu_avx2_fma(). Measured on the reference
 * screener (Xeon, 1 thread): the first-layer kernel (1->16 at 512x512) takes 1.6 ms with AVX2
 * against 2.9 ms; the Winograd transforms, bound by memory more than arithmetic, save 5-7% of
 * a 32->32 or 128->128 layer. */
#if defined(__GNUC__)
#define MS_NN_INLINE static inline __attribute__((always_inline))
#else
#define MS_NN_INLINE static inline
#endif

#if defined(__GNUC__)
#define MS_NN_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#else
#define MS_NN_PREFETCH_W(p) ((void)(p))
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define MS_NN_X86_CLONES 1
#define MS_NN_TARGET_AVX2 __attribute__((target("avx2,fma")))
static inline bool ms_nn_cpu_avx2_fma(void) {
    __builtin_cpu_init(); /* idempotent; needed if called before constructors ran */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static inline bool ms_nn_cpu_avx2_fma(void) { return false; }
#endif

#endif
