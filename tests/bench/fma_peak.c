/* The single-core FMA peak of this CPU in GFLOP/s (one fused multiply-add = 2 FLOPs), for
 * AVX2+FMA (8 floats a vector) and AVX-512F (16 floats), and the better of the two: the
 * 100% that bench_net's "% of peak" refers to (per core; times the thread count).
 *
 * Usage: fma_peak [--ms N] [--reps N] [--json]   (a run of about N ms, default 200; best of
 * reps, default 5). Not a ctest test. The figure is the core's clock times its FMA ports times
 * the vector width times 2; on a shared or virtual machine it drops when another process runs
 * on the core, so the best of several runs is kept. */
#include <stdio.h>
#include <string.h>

#include "medscreen/core.h"

#include "bench_util.h"
#include "fma_peak.h"

int main(int argc, char **argv) {
    uint32_t ms = 200, reps = 5;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc &&
            ms_parse_u32(argv[i + 1], 10, 100000, &ms)) {
            i++;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc &&
                   ms_parse_u32(argv[i + 1], 1, 1000, &reps)) {
            i++;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            fprintf(stderr, "usage: fma_peak [--ms N>=10] [--reps N] [--json]\n");
            return 2;
        }
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    double avx2_med, avx512_med;
    const double avx2 = fma_peak_gflops(8, (double)ms, (int)reps, &avx2_med);
    const double avx512 = fma_peak_gflops(16, (double)ms, (int)reps, &avx512_med);
    const double best = avx512 > avx2 ? avx512 : avx2;
    if (json) {
        printf("{\"bench\":\"fma_peak\",\"avx2_fma_gflops\":%.1f,\"avx512_gflops\":%.1f,"
               "\"avx2_fma_median_gflops\":%.1f,\"avx512_median_gflops\":%.1f,\"best_gflops\":%.1f,"
               "\"best_isa\":\"%s\",\"chains\":%d,\"reps\":%u,\"cpu\":\"%s\"}\n",
               avx2, avx512, avx2_med, avx512_med, best, avx512 > avx2 ? "avx512" : "avx2",
               FMA_CHAINS, reps, cpu);
    } else {
        printf("CPU: %s\n", cpu);
        printf("single-core FMA peak, %d independent chains, best of %u runs of ~%u ms:\n",
               FMA_CHAINS, reps, ms);
        if (avx2 > 0)
            printf("  AVX2+FMA  (8-wide):  %7.1f GFLOP/s (median %.1f)\n", avx2, avx2_med);
        else
            printf("  AVX2+FMA  (8-wide):  not supported\n");
        if (avx512 > 0)
            printf("  AVX-512F (16-wide):  %7.1f GFLOP/s (median %.1f)\n", avx512, avx512_med);
        else
            printf("  AVX-512F (16-wide):  not supported\n");
        printf("  best:                %7.1f GFLOP/s (%s)\n", best,
               avx512 > avx2 ? "AVX-512" : "AVX2");
    }
    return 0;
}
