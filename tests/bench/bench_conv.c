/* ms_conv2d_forward on the reference screener's layers at 1x1x512x512 (batch 1):
 * 3x3 convolutions (pad 1, bias, ReLU) 1->16, 16->32/s2, 32->32, 32->64/s2, 64->64,
 * 64->128/s2, 128->128, then a 1x1 head 128->1 (about 5.5 GFLOP in all).
 *
 * Usage: bench_conv [--threads N] [--runs N]     (runs >= 20, default 30)
 * --threads calls openblas_set_num_threads (this is a program, not the library); without it
 * OpenBLAS follows OPENBLAS_NUM_THREADS or the core count.
 * Prints one JSON line per layer (median and p90 ms, GFLOP/s where a FLOP count is
 * 2 * out_c * out_h * out_w * K per image, K = in_c/groups * kh * kw) and a total line (the
 * sum of the medians). Each layer gets one untimed warm-up run. Not a ctest test; build
 * Release for figures worth comparing. The path is ms_conv2d_forward's own choice (the first
 * layer takes the direct kernel); bench_winograd compares the paths side by side. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "medscreen/core.h"
#include "medscreen/nn.h"

#include "bench_util.h"

typedef struct layer {
    const char *name;
    int32_t in_c, out_c, k, stride, pad, in_hw;
    ms_act act;
} layer;

static const layer layers[] = {
    {"conv1_1to16", 1, 16, 3, 1, 1, 512, MS_ACT_RELU},
    {"conv2_16to32_s2", 16, 32, 3, 2, 1, 512, MS_ACT_RELU},
    {"conv3_32to32", 32, 32, 3, 1, 1, 256, MS_ACT_RELU},
    {"conv4_32to64_s2", 32, 64, 3, 2, 1, 256, MS_ACT_RELU},
    {"conv5_64to64", 64, 64, 3, 1, 1, 128, MS_ACT_RELU},
    {"conv6_64to128_s2", 64, 128, 3, 2, 1, 128, MS_ACT_RELU},
    {"conv7_128to128", 128, 128, 3, 1, 1, 64, MS_ACT_RELU},
    {"head_1x1_128to1", 128, 1, 1, 1, 0, 64, MS_ACT_NONE},
};
enum { N_LAYERS = sizeof layers / sizeof layers[0] };


int main(int argc, char **argv) {
    uint32_t runs = 30, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc &&
            ms_parse_u32(argv[i + 1], 20, 100000, &runs)) {
            i++;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc &&
                   ms_parse_u32(argv[i + 1], 1, 1024, &threads)) {
            i++;
        } else {
            fprintf(stderr, "usage: bench_conv [--threads N] [--runs N>=20]\n");
            return 2;
        }
    }
    if (threads) openblas_set_num_threads((int)threads);
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    const char *blas = openblas_get_config();
    const int nthreads = openblas_get_num_threads();

    double *t = malloc(runs * sizeof *t);
    if (!t) return 1;
    double total_ms = 0, total_gflop = 0;
    for (int li = 0; li < N_LAYERS; li++) {
        const layer *L = &layers[li];
        ms_conv2d p = {L->in_c, L->out_c, L->k,   L->k,   L->stride, L->stride, 1,   1,
                       L->pad,  L->pad,   L->pad, L->pad, 1,         L->act,    0.0f};
        int32_t oh, ow;
        ms_err err = {0};
        if (ms_conv2d_shape(&p, L->in_hw, L->in_hw, &oh, &ow, &err) != MS_OK) {
            fprintf(stderr, "bench_conv: %s: %s\n", L->name, err.msg);
            return 1;
        }
        const size_t ws = ms_conv2d_workspace(&p, L->in_hw, L->in_hw);
        const size_t n_in = (size_t)L->in_c * (size_t)L->in_hw * (size_t)L->in_hw;
        const size_t n_out = (size_t)L->out_c * (size_t)oh * (size_t)ow;
        const size_t k = (size_t)L->in_c * (size_t)L->k * (size_t)L->k;
        float *in = bench_alloc_floats(n_in), *out = bench_alloc_floats(n_out);
        float *w = bench_alloc_floats((size_t)L->out_c * k), *b = bench_alloc_floats((size_t)L->out_c);
        float *work = ws ? bench_alloc_floats(ws) : NULL;
        bench_fill(in, n_in, 1u + (uint32_t)li);
        bench_fill(w, (size_t)L->out_c * k, 100u + (uint32_t)li);
        bench_fill(b, (size_t)L->out_c, 200u + (uint32_t)li);
        ms_tensor ti = {1, L->in_c, L->in_hw, L->in_hw, in}, to = {1, L->out_c, oh, ow, out};

        ms_conv2d_forward(&p, &ti, w, b, &to, work); /* warm-up: page faults, BLAS threads */
        for (uint32_t r = 0; r < runs; r++) {
            double t0 = now_ms();
            ms_conv2d_forward(&p, &ti, w, b, &to, work);
            t[r] = now_ms() - t0;
        }
        const double med = quantile(t, (int)runs, 0.5), p90 = quantile(t, (int)runs, 0.9);
        const double gflop = 2.0 * (double)n_out * (double)k / 1e9;
        total_ms += med;
        total_gflop += gflop;
        printf("{\"bench\":\"conv2d\",\"layer\":\"%s\",\"in\":[1,%d,%d,%d],\"out\":[1,%d,%d,%d],"
               "\"k\":%d,\"stride\":%d,\"path\":\"%s\",\"workspace_mib\":%.1f,\"runs\":%u,"
               "\"median_ms\":%.3f,\"p90_ms\":%.3f,\"gflop\":%.4f,\"gflops\":%.2f,"
               "\"threads\":%d,\"cpu\":\"%s\",\"openblas\":\"%s\"}\n",
               L->name, L->in_c, L->in_hw, L->in_hw, L->out_c, oh, ow, L->k, L->stride,
               L->in_c == 1 && L->k == 3 && L->stride == 1 ? "first3x3"
               : ws                                        ? "im2col"
                                                           : "pointwise",
               (double)ws * 4.0 / 1048576.0, runs, med, p90, gflop, gflop / (med / 1e3), nthreads,
               cpu, blas ? blas : "unknown");
        free(in);
        free(out);
        free(w);
        free(b);
        free(work);
    }
    printf("{\"bench\":\"conv2d\",\"layer\":\"total\",\"median_ms\":%.3f,\"gflop\":%.4f,"
           "\"gflops\":%.2f,\"threads\":%d,\"cpu\":\"%s\",\"openblas\":\"%s\"}\n",
           total_ms, total_gflop, total_gflop / (total_ms / 1e3), nthreads, cpu,
           blas ? blas : "unknown");
    free(t);
    return 0;
}
