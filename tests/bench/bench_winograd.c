/* The fast convolution paths against im2col + sgemm, side by side in one run: Winograd
 * F(4x4, 3x3) (ms_conv2d_winograd_forward) on the reference screener's stride-1 3x3 layers at
 * 512x512 input and on ResNet-18's 3x3 layers (224x224 input: 64@56, 128@28, 256@14, 512@7),
 * and the first-layer direct kernel (ms_conv2d_forward with one input channel) on the
 * screener's 1->16 layer. All with bias and ReLU, batch 1.
 *
 * Usage: bench_winograd [--threads N[,N...]] [--runs N]     (runs >= 20, default 30;
 *        threads default 1,2: openblas_set_num_threads for each in turn)
 * For each layer the methods alternate within every run, so a burst of load on a shared machine
 * hits them alike. One JSON line per layer, method and thread count: median and p90 ms,
 * GFLOP/s counting a direct convolution's 2 * out_c * out_h * out_w * in_c * 9 FLOPs (so
 * Winograd's is an effective rate), the speed-up over im2col (median / median), and the
 * largest |method - im2col| / max |im2col|. Not a ctest test; build Release and run with
 * OPENBLAS_CORETYPE set where OpenBLAS misdetects the CPU. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"
#include "medscreen/nn.h"
#include "nn_internal.h"

#include "bench_util.h"

typedef struct layer {
    const char *net, *name;
    int32_t in_c, out_c, hw;
} layer;

static const layer layers[] = {
    {"screener", "conv1_1to16", 1, 16, 512},     {"screener", "conv3_32to32", 32, 32, 256},
    {"screener", "conv5_64to64", 64, 64, 128},   {"screener", "conv7_128to128", 128, 128, 64},
    {"resnet18", "layer1_64@56", 64, 64, 56},    {"resnet18", "layer2_128@28", 128, 128, 28},
    {"resnet18", "layer3_256@14", 256, 256, 14}, {"resnet18", "layer4_512@7", 512, 512, 7},
};
enum { N_LAYERS = sizeof layers / sizeof layers[0], MAX_THREADS = 8 };

typedef enum method { M_IM2COL = 0, M_WINOGRAD, M_DIRECT, N_METHODS } method;
static const char *const method_names[] = {"im2col", "winograd", "direct"};


static double rel_diff(const float *a, const float *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]), r = fabs((double)ref[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (r > mr) mr = r;
    }
    return md / (mr > 1e-30 ? mr : 1e-30);
}

static bool parse_threads(const char *s, uint32_t *list, int *count) {
    char buf[64];
    ms_str_copy(buf, sizeof buf, s);
    *count = 0;
    char *start = buf;
    for (char *c = buf;; c++) {
        if (*c == ',' || *c == '\0') {
            const bool end = *c == '\0';
            *c = '\0';
            if (*count == MAX_THREADS || !ms_parse_u32(start, 1, 1024, &list[*count])) return false;
            (*count)++;
            if (end) return true;
            start = c + 1;
        }
    }
}

int main(int argc, char **argv) {
    uint32_t runs = 30, threads[MAX_THREADS] = {1, 2};
    int n_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc &&
            ms_parse_u32(argv[i + 1], 20, 100000, &runs)) {
            i++;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc &&
                   parse_threads(argv[i + 1], threads, &n_threads)) {
            i++;
        } else {
            fprintf(stderr, "usage: bench_winograd [--threads N[,N...]] [--runs N>=20]\n");
            return 2;
        }
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    const char *blas = openblas_get_config();

    double *t[N_METHODS];
    for (int m = 0; m < N_METHODS; m++) {
        t[m] = malloc(runs * sizeof *t[m]);
        if (!t[m]) return 1;
    }
    for (int ti = 0; ti < n_threads; ti++) {
        openblas_set_num_threads((int)threads[ti]);
        const int nthreads = openblas_get_num_threads();
        for (int li = 0; li < N_LAYERS; li++) {
            const layer *L = &layers[li];
            const ms_conv2d p = {L->in_c, L->out_c, 3, 3, 1, 1,           1,   1,
                                 1,       1,        1, 1, 1, MS_ACT_RELU, 0.0f};
            int32_t oh, ow;
            ms_err err = {0};
            if (ms_conv2d_shape(&p, L->hw, L->hw, &oh, &ow, &err) != MS_OK) {
                fprintf(stderr, "bench_winograd: %s: %s\n", L->name, err.msg);
                return 1;
            }
            const size_t n_in = (size_t)L->in_c * (size_t)L->hw * (size_t)L->hw;
            const size_t n_out = (size_t)L->out_c * (size_t)oh * (size_t)ow;
            const size_t n_w = (size_t)L->out_c * (size_t)L->in_c * 9;
            const size_t ws_gen = ms_conv2d_workspace(&p, L->hw, L->hw);
            const size_t ws_wino = ms_conv2d_winograd_workspace(&p, L->hw, L->hw);
            const size_t n_u = ms_conv2d_winograd_weight_floats(&p);
            float *in = bench_alloc_floats(n_in), *w = bench_alloc_floats(n_w),
                  *b = bench_alloc_floats((size_t)L->out_c);
            float *u = bench_alloc_floats(n_u), *ws = bench_alloc_floats(ws_gen > ws_wino ? ws_gen : ws_wino);
            float *out[N_METHODS];
            for (int m = 0; m < N_METHODS; m++) out[m] = bench_alloc_floats(n_out);
            bench_fill(in, n_in, 1u + (uint32_t)li);
            bench_fill(w, n_w, 100u + (uint32_t)li);
            bench_fill(b, (size_t)L->out_c, 200u + (uint32_t)li);
            ms_conv2d_winograd_weights(&p, w, u);
            ms_tensor ti_ = {1, L->in_c, L->hw, L->hw, in};
            const bool has[N_METHODS] = {true, true, L->in_c == 1};

            for (uint32_t r = 0; r <= runs; r++) /* r == 0: untimed warm-up */
                for (int m = 0; m < N_METHODS; m++) {
                    if (!has[m]) continue;
                    ms_tensor to = {1, L->out_c, oh, ow, out[m]};
                    const double t0 = now_ms();
                    if (m == M_IM2COL)
                        ms_nn_conv2d_forward_generic(&p, &ti_, w, b, &to, ws);
                    else if (m == M_WINOGRAD)
                        ms_conv2d_winograd_forward(&p, &ti_, u, b, &to, ws);
                    else
                        ms_conv2d_forward(&p, &ti_, w, b, &to, ws);
                    if (r > 0) t[m][r - 1] = now_ms() - t0;
                }
            const double gflop = 2.0 * (double)n_out * (double)L->in_c * 9.0 / 1e9;
            const double base = quantile(t[M_IM2COL], (int)runs, 0.5);
            for (int m = 0; m < N_METHODS; m++) {
                if (!has[m]) continue;
                const double med = quantile(t[m], (int)runs, 0.5);
                const double p90 = quantile(t[m], (int)runs, 0.9);
                printf("{\"bench\":\"conv3x3\",\"net\":\"%s\",\"layer\":\"%s\",\"method\":\"%s\","
                       "\"in\":[1,%d,%d,%d],\"out\":[1,%d,%d,%d],\"runs\":%u,\"median_ms\":%.3f,"
                       "\"p90_ms\":%.3f,\"gflop\":%.4f,\"gflops\":%.2f,\"speedup\":%.2f,"
                       "\"max_rel_diff\":%.2e,\"worthwhile\":%s,\"threads\":%d,\"cpu\":\"%s\","
                       "\"openblas\":\"%s\"}\n",
                       L->net, L->name, method_names[m], L->in_c, L->hw, L->hw, L->out_c, oh, ow,
                       runs, med, p90, gflop, gflop / (med / 1e3), base / med,
                       rel_diff(out[m], out[M_IM2COL], n_out),
                       ms_conv2d_winograd_worthwhile(&p, L->hw, L->hw) ? "true" : "false", nthreads,
                       cpu, blas ? blas : "unknown");
            }
            fflush(stdout);
            free(in);
            free(w);
            free(b);
            free(u);
            free(ws);
            for (int m = 0; m < N_METHODS; m++) free(out[m]);
        }
    }
    for (int m = 0; m < N_METHODS; m++) free(t[m]);
    return 0;
}
