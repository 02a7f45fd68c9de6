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

/* The instruction sets of the kernels' clones (below), in order. */
typedef enum ms_nn_isa { MS_NN_ISA_BASE = 0, MS_NN_ISA_AVX2, MS_NN_ISA_AVX512 } ms_nn_isa;

/* ms_conv2d_forward and ms_conv2d_winograd_forward using no clone above isa (and none the CPU
 * lacks), so the tests run every clone this CPU has. */
void ms_nn_conv2d_forward_isa(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                              const float *bias, ms_tensor *out, float *workspace, ms_nn_isa isa);
void ms_nn_conv2d_winograd_forward_isa(const ms_conv2d *p, const ms_tensor *in, const float *u,
                                       const float *bias, ms_tensor *out, float *workspace,
                                       ms_nn_isa isa);

void ms_nn_conv2d_packed_forward_isa(const ms_conv2d *p, const ms_tensor *in, const float *wp,
                                     const float *bias, ms_tensor *out, float *workspace,
                                     ms_nn_isa isa);
void ms_nn_conv2d_packed_fused_forward_isa(const ms_conv2d *pre, const float *pre_weight,
                                           const float *pre_bias, const ms_conv2d *p,
                                           const ms_tensor *in, const float *wp, const float *bias,
                                           ms_tensor *out, float *workspace, ms_nn_isa isa);

/* Hot loops are plain C written once as an always-inline body and compiled more than once:
 * for the build's baseline (x86-64: SSE2, 4 lanes, no FMA) and, on x86 with GCC or Clang, for
 * AVX2+FMA (8 lanes) and, where it pays, AVX-512 (16 lanes), picked at run time with
 * ms_nn_cpu_avx2_fma() and ms_nn_cpu_avx512(). Measured on the reference screener (Xeon,
 * 1 thread): the first-layer kernel (1->16 at 512x512) takes 2.9 ms baseline, 1.6 ms with AVX2,
 * 1.2 ms with AVX-512; the Winograd transforms, bound by memory more than arithmetic, save 5-7%
 * of a 32->32 or 128->128 layer with AVX2 and nothing clear with AVX-512 (not used there). */
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
#define MS_NN_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
static inline bool ms_nn_cpu_avx2_fma(void) {
    __builtin_cpu_init(); /* idempotent; needed if called before constructors ran */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static inline bool ms_nn_cpu_avx512(void) {
    return ms_nn_cpu_avx2_fma() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl");
}
#else
static inline bool ms_nn_cpu_avx2_fma(void) { return false; }
static inline bool ms_nn_cpu_avx512(void) { return false; }
#endif

#endif
