/* The measured single-core FMA peak (GFLOP/s, one FMA = 2 FLOPs), shared by fma_peak and
 * bench_net so "% of peak" always means the same measurement.
 *
 * Each kernel runs FMA_CHAINS independent accumulator chains: the FMA latency (4 cycles) times
 * two FMA ports needs at least 8 chains in flight; 12 leaves slack. The chains converge to a
 * fixed point near 0.1 (acc = acc * 0.9999999 + 1e-8 ...), so no value grows to infinity or
 * decays into denormals, which would slow the FMA units. Without -ffast-math the compiler
 * may not reassociate the chains, and the sum of the accumulators is returned so the loop
 * cannot be removed. The kernels are compiled for their ISA with target attributes and
 * chosen at run time, so the benchmark builds with the project's default flags. */
#ifndef MEDSCREEN_FMA_PEAK_H
#define MEDSCREEN_FMA_PEAK_H

#include <immintrin.h>
#include <stdint.h>

#include "bench_util.h"

enum { FMA_CHAINS = 12 };

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FMA_PEAK_X86 1

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(uint64_t iters) {
    __m256 acc[FMA_CHAINS];
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_set1_ps(0.01f * (float)i);
    const __m256 m = _mm256_set1_ps(0.9999999f), a = _mm256_set1_ps(1e-8f);
    for (uint64_t it = 0; it < iters; it++)
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
    __m256 s = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++) s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

__attribute__((target("avx512f"))) static float fma_loop_avx512(uint64_t iters) {
    __m512 acc[FMA_CHAINS];
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_set1_ps(0.01f * (float)i);
    const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-8f);
    for (uint64_t it = 0; it < iters; it++)
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
    __m512 s = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}
#endif

enum { FMA_MAX_REPS = 1000 };

/* The best of `reps` (1 to FMA_MAX_REPS) timed runs of about budget_ms each, in GFLOP/s; 0
 * when the CPU lacks the instructions. width is 8 (AVX2+FMA) or 16 (AVX-512F). median, when
 * not NULL, receives the median run (the gap to the best shows how busy the core was). */
static double fma_peak_gflops(int width, double budget_ms, int reps, double *median) {
    if (median) *median = 0.0;
    if (reps < 1 || reps > FMA_MAX_REPS) return 0.0;
#ifdef FMA_PEAK_X86
    __builtin_cpu_init();
    float (*loop)(uint64_t);
    if (width == 8 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        loop = fma_loop_avx2;
    else if (width == 16 && __builtin_cpu_supports("avx512f"))
        loop = fma_loop_avx512;
    else
        return 0.0;
    /* Calibrate: grow the iteration count until one run takes a tenth of the budget (this
     * also wakes the core from a low frequency and, for AVX-512, settles its licence). */
    uint64_t iters = 1u << 16;
    volatile float sink = 0.0f;
    for (;;) {
        double t0 = now_ms();
        sink += loop(iters);
        double dt = now_ms() - t0;
        if (dt > budget_ms / 10.0 || iters > (1ull << 40)) {
            iters = (uint64_t)((double)iters * budget_ms / (dt > 1e-3 ? dt : 1e-3));
            break;
        }
        iters *= 2;
    }
    double best = 0.0, runs[FMA_MAX_REPS];
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        sink += loop(iters);
        double dt = now_ms() - t0;
        runs[r] = (double)iters * FMA_CHAINS * width * 2.0 / (dt * 1e6);
        if (runs[r] > best) best = runs[r];
    }
    (void)sink;
    if (median) *median = quantile(runs, reps, 0.5);
    return best;
#else
    (void)width;
    (void)budget_ms;
    (void)reps;
    return 0.0;
#endif
}

#endif
