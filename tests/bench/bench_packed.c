/* The packed direct convolution against im2col + sgemm on the layers it was written for: the
 * reference screener's stride-2 layers at 512x512 and ResNet-18's stem, stride-2 and 512@7
 * layers at 224x224 (batch 1, 1 thread, bias + ReLU).
 *
 * Usage: bench_packed [--runs N] [--only NAME] [--cold]     (default 30 runs)
 * Prints one line per layer: median ms and GFLOP/s of im2col, Winograd (stride-1 3x3 only;
 * effective GFLOP/s) and packed (FLOPs = 2 * out_c * out_h * out_w * in_c * kh * kw), and the
 * faster of the first two over packed. Not a ctest test; build Release. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"
#include "medscreen/nn.h"

#include "bench_util.h"

typedef struct layer {
    const char *name;
    int32_t in_c, out_c, k, stride, pad, in_hw;
} layer;

static const layer layers[] = {
    {"scr_16to32_s2@512", 16, 32, 3, 2, 1, 512},
    {"scr_32to64_s2@256", 32, 64, 3, 2, 1, 256},
    {"scr_64to128_s2@128", 64, 128, 3, 2, 1, 128},
    {"r18_stem_7x7_s2@224", 3, 64, 7, 2, 3, 224},
    {"r18_64to128_s2@56", 64, 128, 3, 2, 1, 56},
    {"r18_128to256_s2@28", 128, 256, 3, 2, 1, 28},
    {"r18_256to512_s2@14", 256, 512, 3, 2, 1, 14},
    {"r18_512to512@7", 512, 512, 3, 1, 1, 7},
    {"r18_256to256@14", 256, 256, 3, 1, 1, 14},
    {"r18_128to128@28", 128, 128, 3, 1, 1, 28},
    {"r18_64to64@56", 64, 64, 3, 1, 1, 56},
    {"scr_128to128@64", 128, 128, 3, 1, 1, 64},
    {"r18_1x1_256to512_s2@14", 256, 512, 1, 2, 0, 14},
};
enum { N_LAYERS = sizeof layers / sizeof layers[0] };

/* --cold: a 256 MiB write before every timed run evicts weights and input from the caches, as
 * the other layers of a network do between two runs of one layer. */
enum { COLD_BYTES = 256 << 20 };
static unsigned char *cold_buf;

typedef void (*run_fn)(const ms_conv2d *, const ms_tensor *, const float *, const float *,
                       ms_tensor *, float *);

static double time_ms(run_fn f, const ms_conv2d *p, const ms_tensor *in, const float *w,
                      const float *b, ms_tensor *out, float *ws, int runs) {
    double *t = malloc((size_t)runs * sizeof *t);
    if (t == NULL) exit(1);
    f(p, in, w, b, out, ws); /* warm-up */
    for (int r = 0; r < runs; r++) {
        if (cold_buf) memset(cold_buf, r, COLD_BYTES); /* evicts the weights, as in a net */
        const double t0 = now_ms();
        f(p, in, w, b, out, ws);
        t[r] = now_ms() - t0;
    }
    const double med = quantile(t, runs, 0.5);
    free(t);
    return med;
}

int main(int argc, char **argv) {
    int runs = 30;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        uint32_t v;
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc &&
            ms_parse_u32(argv[i + 1], 1, 100000, &v)) {
            runs = (int)v;
            i++;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--cold") == 0 && cold_buf == NULL) {
            cold_buf = malloc(COLD_BYTES);
            if (cold_buf == NULL) return 1;
        } else {
            fprintf(stderr, "usage: bench_packed [--runs N] [--only NAME] [--cold]\n");
            return 2;
        }
    }
    openblas_set_num_threads(1);
    char cpu[128];
    cpu_model(cpu, sizeof cpu);
    printf("CPU %s; 1 thread; median of %d runs per path\n", cpu, runs);
    printf("%-24s %10s %8s %10s %8s %10s %8s %7s\n", "layer", "im2col_ms", "GFLOP/s", "wino_ms",
           "GFLOP/s", "packed_ms", "GFLOP/s", "ratio");
    for (int l = 0; l < N_LAYERS; l++) {
        const layer *L = &layers[l];
        if (only && strcmp(only, L->name) != 0) continue;
        ms_conv2d p = {.in_c = L->in_c,
                       .out_c = L->out_c,
                       .kh = L->k,
                       .kw = L->k,
                       .stride_h = L->stride,
                       .stride_w = L->stride,
                       .pad_t = L->pad,
                       .pad_l = L->pad,
                       .pad_b = L->pad,
                       .pad_r = L->pad,
                       .dil_h = 1,
                       .dil_w = 1,
                       .groups = 1,
                       .act = MS_ACT_RELU};
        int32_t oh, ow;
        if (ms_conv2d_shape(&p, L->in_hw, L->in_hw, &oh, &ow, NULL) != MS_OK) return 1;
        const size_t hw = (size_t)L->in_hw, k = (size_t)L->k;
        const size_t nin = (size_t)L->in_c * hw * hw;
        const size_t nout = (size_t)L->out_c * (size_t)oh * (size_t)ow;
        const size_t nw = (size_t)L->out_c * (size_t)L->in_c * k * k;
        float *x = bench_alloc_floats(nin), *y = bench_alloc_floats(nout);
        float *w = bench_alloc_floats(nw), *b = bench_alloc_floats((size_t)L->out_c);
        float *wp = bench_alloc_floats(ms_conv2d_packed_weight_floats(&p, L->in_hw, L->in_hw));
        bench_fill(w, nw, 2);
        size_t ws1 = ms_conv2d_workspace(&p, L->in_hw, L->in_hw);
        const size_t ws2 = ms_conv2d_packed_workspace(&p, L->in_hw, L->in_hw);
        const bool wino = ms_conv2d_winograd_ok(&p);
        const size_t ws3 = wino ? ms_conv2d_winograd_workspace(&p, L->in_hw, L->in_hw) : 0;
        if (ws2 > ws1) ws1 = ws2;
        if (ws3 > ws1) ws1 = ws3;
        float *ws = bench_alloc_floats(ws1 + 16);
        float *u = wino ? bench_alloc_floats(ms_conv2d_winograd_weight_floats(&p)) : NULL;
        if (wino) ms_conv2d_winograd_weights(&p, w, u);
        bench_fill(x, nin, 1);
        bench_fill(b, (size_t)L->out_c, 3);
        ms_conv2d_packed_weights(&p, L->in_hw, L->in_hw, w, wp);
        ms_tensor tin = {1, L->in_c, L->in_hw, L->in_hw, x}, tout = {1, L->out_c, oh, ow, y};
        const double flop = 2.0 * (double)nout * L->in_c * L->k * L->k;
        const double a = time_ms(ms_conv2d_forward, &p, &tin, w, b, &tout, ws, runs);
        const double c = time_ms(ms_conv2d_packed_forward, &p, &tin, wp, b, &tout, ws, runs);
        const double v =
            wino ? time_ms(ms_conv2d_winograd_forward, &p, &tin, u, b, &tout, ws, runs) : 0.0;
        printf("%-24s %10.3f %8.1f %10.3f %8.1f %10.3f %8.1f %7.2f\n", L->name, a, flop / a / 1e6,
               v, wino ? flop / v / 1e6 : 0.0, c, flop / c / 1e6, (wino && v < a ? v : a) / c);
        free(x), free(y), free(w), free(b), free(wp), free(ws), free(u);
    }
    return 0;
}
