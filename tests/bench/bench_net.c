/* Whole-network inference benchmark: one ms_session running a converted model (.msm) on a
 * random input, as `medscreen scan` will.
 *
 * Usage: bench_net MODEL.msm [--batch N] [--threads N] [--blas-threads N] [--runs N]
 *                  [--warmup N] [--layers] [--soak N] [--act-bytes N] [--peak GFLOPS]
 *                  [--direct] [--json]
 *
 *   --batch N      images per run (default 1); the session is planned for this batch
 *   --threads N    the session's worker threads (ms_session_options.threads, default 1)
 *   --blas-threads N  OpenBLAS threads (default 1; ms_blas_set_threads, process-wide). The
 *                  engine's own mode is --threads with OpenBLAS on one thread; --threads 1
 *                  --blas-threads N measures the other mode (one scan split over BLAS
 *                  threads). "% of peak" counts threads x blas-threads cores.
 *   --runs N       timed runs (default 20), after --warmup N untimed ones (default 3)
 *   --layers       a second pass of --runs runs with the per-node timer on: per node the
 *                  mean and median ms per run, GFLOP/s and % of the measured FMA peak
 *                  (single-core peak from fma_peak.h times the thread count)
 *   --peak G       use G GFLOP/s per core as the peak instead of measuring it
 *   --soak N       N consecutive runs instead of the timed runs: VmRSS and VmHWM (from
 *                  /proc/self/status) after run 1 and at 10%, 50% and 100% of N, the growth
 *                  of both between 10% and 100% (flat: about 0), and the memory the net
 *                  holds against the bound "weights + the two largest live activations + one
 *                  workspace". The net API exposes no intermediate shapes, so the two largest
 *                  activations come from the caller (--act-bytes, per image; the bench script
 *                  computes them from the known layer shapes); the arena we really hold is
 *                  always reported next to it.
 *   --direct       sessions without fast paths (ms_session_options.direct_only: no Winograd or
 *                  packed kernel)
 *   --json         JSON lines (one summary line, then one per node with --layers) instead of
 *                  the text report
 *
 * FLOPs are ms_net_node_flops summed (2 per multiply-add, convolutions and fully connected
 * layers only) times the batch: the direct algorithm's count, so GFLOP/s and % of peak are
 * "effective" figures, and a Winograd layer (fewer multiplications) may exceed 100%. The
 * weights in the memory report are the model's float32 tensors plus the copies the net keeps
 * for its fast paths (Winograd-transformed and packed weights, ms_net_fast_weight_bytes).
 *
 * Debian's OpenBLAS 0.3.21 picks its Prescott kernels on CPUs it does not know; like the
 * medscreen CLI, this program then sets OPENBLAS_CORETYPE and starts again (the variable
 * already being set, by us or by the user, stops the loop), and always prints the kernel set
 * in use. Not a ctest test: build Release for figures worth comparing. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "medscreen/core.h"
#include "medscreen/model.h"
#include "medscreen/net.h"

#include "bench_util.h"
#include "fma_peak.h"

typedef struct options {
    const char *model;
    uint32_t batch, threads, blas_threads, runs, warmup, soak;
    uint64_t act_bytes; /* two largest live activations per image, 0 when not given */
    double peak;        /* GFLOP/s per core, 0: measure */
    bool layers, json, direct;
} options;

typedef struct mem {
    long rss_kib, hwm_kib, anon_kib, file_kib; /* -1 when unknown */
} mem;

static mem mem_now(void) {
    mem m = {-1, -1, -1, -1};
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return m;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        long v;
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1) m.rss_kib = v;
        if (sscanf(line, "VmHWM: %ld kB", &v) == 1) m.hwm_kib = v;
        if (sscanf(line, "RssAnon: %ld kB", &v) == 1) m.anon_kib = v;
        if (sscanf(line, "RssFile: %ld kB", &v) == 1) m.file_kib = v;
    }
    fclose(f);
    return m;
}

/* Counts the library's own allocations (ms_malloc and friends), to show that runs allocate
 * nothing; OpenBLAS and the C library are not counted. */
static void *count_malloc(size_t n, void *user) {
    ++*(uint64_t *)user;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n, void *user) {
    ++*(uint64_t *)user;
    return realloc(p, n);
}
static void count_free(void *p, void *user) {
    (void)user;
    free(p);
}

static double mib(double bytes) { return bytes / 1048576.0; }
static double kib_mib(long kib) { return (double)kib / 1024.0; }

static void usage(void) {
    fprintf(stderr,
            "usage: bench_net MODEL.msm [--batch N] [--threads N] [--blas-threads N]\n"
            "                 [--runs N>=1] [--warmup N] [--layers] [--soak N] [--act-bytes N]\n"
            "                 [--peak GFLOPS] [--direct] [--json]\n");
}

static bool u32_opt(const char *name, int argc, char **argv, int *i, uint32_t min, uint32_t max,
                    uint32_t *out, bool *bad) {
    if (strcmp(argv[*i], name) != 0) return false;
    if (*i + 1 >= argc || !ms_parse_u32(argv[*i + 1], min, max, out)) {
        fprintf(stderr, "bench_net: %s needs an integer in [%u, %u]\n", name, min, max);
        *bad = true;
    }
    (*i)++;
    return true;
}

static bool parse(int argc, char **argv, options *o) {
    *o = (options){NULL, 1, 1, 1, 20, 3, 0, 0, 0.0, false, false, false};
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        uint32_t v;
        if (u32_opt("--batch", argc, argv, &i, 1, 4096, &o->batch, &bad) ||
            u32_opt("--threads", argc, argv, &i, 1, MS_POOL_MAX_THREADS, &o->threads, &bad) ||
            u32_opt("--blas-threads", argc, argv, &i, 1, 1024, &o->blas_threads, &bad) ||
            u32_opt("--runs", argc, argv, &i, 1, 10000000, &o->runs, &bad) ||
            u32_opt("--warmup", argc, argv, &i, 0, 100000, &o->warmup, &bad) ||
            u32_opt("--soak", argc, argv, &i, 1, 100000000, &o->soak, &bad)) {
            continue;
        } else if (u32_opt("--peak", argc, argv, &i, 1, 100000, &v, &bad)) {
            o->peak = v;
        } else if (strcmp(argv[i], "--act-bytes") == 0) {
            char *end = NULL;
            if (i + 1 >= argc || argv[i + 1][0] < '0' || argv[i + 1][0] > '9') {
                bad = true;
            } else {
                o->act_bytes = strtoull(argv[++i], &end, 10);
                if (*end != '\0') bad = true;
            }
        } else if (strcmp(argv[i], "--layers") == 0) {
            o->layers = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            o->json = true;
        } else if (strcmp(argv[i], "--direct") == 0) {
            o->direct = true;
        } else if (argv[i][0] == '-' || o->model != NULL) {
            bad = true;
        } else {
            o->model = argv[i];
        }
    }
    if (bad || o->model == NULL) {
        usage();
        return false;
    }
    return true;
}

/* The medscreen CLI does the same (src/cli/main.c): OpenBLAS reads the variable only when it
 * loads, so the only fix is to start again with it set. */
static void blas_kernels_fixup(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") != NULL) return;
    const char *core = ms_blas_better_coretype();
    if (core == NULL || setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
    fflush(NULL);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: go on with the slow kernels */
}

static void fill_uniform(float *x, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 16777216.0f;
    }
}

static bool run_once(ms_session *s, const float *in, const char *model) {
    ms_err err = {0};
    if (ms_session_run(s, in, &err) != MS_OK) {
        fprintf(stderr, "bench_net: %s: run failed: %s\n", model, err.msg);
        return false;
    }
    return true;
}

int main(int argc, char **argv) {
    blas_kernels_fixup(argv);
    options o;
    if (!parse(argc, argv, &o)) return 2;
    ms_blas_set_threads((int32_t)o.blas_threads);
    const uint32_t cores = o.threads * o.blas_threads; /* for % of peak */

    static uint64_t allocs;
    const ms_alloc_hooks hooks = {count_malloc, count_realloc, count_free, &allocs};
    ms_alloc_set_hooks(&hooks);
    const mem m_start = mem_now();
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    const char *blas_cfg = openblas_get_config(), *core = openblas_get_corename();
    const char *env_core = getenv("OPENBLAS_CORETYPE");
#ifdef NDEBUG
    const char *build = "release";
#else
    const char *build = "debug";
#endif

    int rc = 1;
    ms_limits lim = ms_limits_default();
    ms_err err = {0};
    ms_net *net = NULL;
    ms_session *s = NULL;
    float *in = NULL;
    double *t = NULL, *node_sec = NULL, *node_runs = NULL;
    if (ms_net_load(o.model, &lim, &net, &err) != MS_OK) {
        fprintf(stderr, "bench_net: %s: %s\n", o.model, err.msg);
        goto done;
    }
    const mem m_loaded = mem_now();
    if (ms_net_input_count(net) != 1) {
        fprintf(stderr, "bench_net: %s: %u inputs, this benchmark feeds one\n", o.model,
                ms_net_input_count(net));
        goto done;
    }
    const ms_session_options so = {(int32_t)o.batch, (int32_t)o.threads, o.direct};
    if (ms_session_create_opts(net, &so, &s, &err) != MS_OK) {
        fprintf(stderr, "bench_net: %s: session for batch %u: %s\n", o.model, o.batch, err.msg);
        goto done;
    }
    const mem m_session = mem_now();
    int32_t c, h, w;
    ms_net_input_shape(net, 0, &c, &h, &w);
    const size_t n_in = (size_t)o.batch * (size_t)c * (size_t)h * (size_t)w;
    const uint32_t nodes = ms_net_node_count(net);
    const uint32_t nt = o.soak ? o.soak : o.runs;
    in = malloc(n_in * sizeof *in);
    t = malloc((size_t)nt * sizeof *t);
    node_sec = calloc(nodes ? nodes : 1, sizeof *node_sec);
    if (o.layers) node_runs = malloc((size_t)nodes * o.runs * sizeof *node_runs);
    if (!in || !t || !node_sec || (o.layers && !node_runs)) {
        fprintf(stderr, "bench_net: out of memory\n");
        goto done;
    }
    fill_uniform(in, n_in, 12345u);
    /* Touch the benchmark's own arrays now: pages first written during a soak would show up
     * as growth (10,000 run times are 78 KiB) that is not the engine's. */
    memset(t, 0, (size_t)nt * sizeof *t);
    if (node_runs) memset(node_runs, 0, (size_t)nodes * o.runs * sizeof *node_runs);

    double flop_image = 0;
    for (uint32_t i = 0; i < nodes; i++) flop_image += (double)ms_net_node_flops(net, i);
    const double gflop_run = flop_image * o.batch / 1e9;
    size_t weight_bytes = 0;
    const ms_msm *msm = ms_net_msm(net);
    for (uint32_t i = 0; i < ms_msm_tensor_count(msm); i++) {
        const ms_msm_tensor *tt = ms_msm_tensor_at(msm, i);
        if (tt->dtype == MS_DTYPE_F32) weight_bytes += tt->count * sizeof(float);
    }
    /* the net holds its fast paths' weight copies whatever the session uses */
    const size_t wino_bytes = ms_net_fast_weight_bytes(net);
    const size_t arena = ms_session_arena_bytes(s), ws = ms_session_workspace_bytes(s);

    for (uint32_t r = 0; r < o.warmup; r++)
        if (!run_once(s, in, o.model)) goto done;

    /* Timed runs, or the soak with its memory checkpoints. */
    mem ck[4];
    for (int k = 0; k < 4; k++) ck[k] = (mem){-1, -1, -1, -1};
    const uint64_t allocs_before = allocs;
    const uint32_t at[4] = {1, o.soak / 10 ? o.soak / 10 : 1, o.soak / 2 ? o.soak / 2 : 1, o.soak};
    for (uint32_t r = 0; r < nt; r++) {
        const double t0 = now_ms();
        if (!run_once(s, in, o.model)) goto done;
        t[r] = now_ms() - t0;
        if (o.soak)
            for (int k = 0; k < 4; k++)
                if (r + 1 == at[k]) ck[k] = mem_now();
    }
    const uint64_t run_allocs = allocs - allocs_before;
    double mean = 0;
    for (uint32_t r = 0; r < nt; r++) mean += t[r];
    mean /= nt;
    const double med = quantile(t, (int)nt, 0.5), p90 = quantile(t, (int)nt, 0.9);

    /* Per-node pass with the timer on. */
    double peak_core = o.peak, avx2 = 0, avx512 = 0;
    if (o.layers) {
        if (peak_core <= 0) {
            avx2 = fma_peak_gflops(8, 100.0, 5, NULL);
            avx512 = fma_peak_gflops(16, 100.0, 5, NULL);
            peak_core = avx512 > avx2 ? avx512 : avx2;
        }
        ms_session_set_node_timer(s, node_sec);
        for (uint32_t r = 0; r < o.runs; r++) {
            memset(node_sec, 0, nodes * sizeof *node_sec);
            if (!run_once(s, in, o.model)) goto done;
            for (uint32_t i = 0; i < nodes; i++) node_runs[(size_t)i * o.runs + r] = node_sec[i];
        }
        ms_session_set_node_timer(s, NULL);
    }

    const double ms_img = med / o.batch, ips = 1e3 * o.batch / med;
    if (o.json) {
        printf("{\"bench\":\"net\",\"model\":\"%s\",\"batch\":%u,\"threads\":%u,"
               "\"session_threads\":%u,\"blas_threads\":%u,\"runs\":%u,"
               "\"warmup\":%u,\"median_ms\":%.3f,\"p90_ms\":%.3f,\"mean_ms\":%.3f,"
               "\"ms_per_image\":%.3f,\"images_per_s\":%.3f,\"gflop_per_image\":%.4f,"
               "\"gflops\":%.2f,\"weights_bytes\":%zu,\"fast_path_weights_bytes\":%zu,"
               "\"direct_only\":%s,\"arena_bytes\":%zu,"
               "\"workspace_bytes\":%zu,\"cpu\":\"%s\",\"openblas_core\":\"%s\","
               "\"openblas_coretype_env\":\"%s\",\"openblas\":\"%s\",\"build\":\"%s\"",
               o.model, o.batch, cores, o.threads, o.blas_threads, nt, o.warmup, med, p90, mean,
               ms_img, ips, flop_image / 1e9, gflop_run / (med / 1e3), weight_bytes, wino_bytes,
               o.direct ? "true" : "false", arena, ws, cpu, core ? core : "unknown",
               env_core ? env_core : "", blas_cfg ? blas_cfg : "unknown", build);
        if (o.layers)
            printf(",\"peak_gflops_core\":%.1f,\"peak_gflops\":%.1f,\"pct_peak\":%.1f", peak_core,
                   peak_core * cores, 100.0 * gflop_run / (med / 1e3) / (peak_core * cores));
        printf("}\n");
    } else {
        printf("model %s: batch %u, %u session thread%s x %u OpenBLAS thread%s, %u %s run%s "
               "after %u warm-up\n",
               o.model, o.batch, o.threads, o.threads == 1 ? "" : "s", o.blas_threads,
               o.blas_threads == 1 ? "" : "s", nt, o.soak ? "soak" : "timed", nt == 1 ? "" : "s",
               o.warmup);
        printf("CPU %s; OpenBLAS core %s (OPENBLAS_CORETYPE=%s); %s; %s build\n", cpu,
               core ? core : "unknown", env_core ? env_core : "unset",
               blas_cfg ? blas_cfg : "unknown", build);
        printf("per batch: median %.3f ms, p90 %.3f ms, mean %.3f ms | %.3f ms/image, "
               "%.2f images/s | %.3f GFLOP/image, %.1f GFLOP/s\n",
               med, p90, mean, ms_img, ips, flop_image / 1e9, gflop_run / (med / 1e3));
    }

    if (o.layers) {
        const double peak = peak_core * cores;
        if (!o.json) {
            if (avx2 > 0 || avx512 > 0)
                printf("FMA peak per core (measured): AVX2 %.1f, AVX-512 %.1f GFLOP/s; "
                       "100%% = %.1f x %u core%s = %.1f GFLOP/s\n",
                       avx2, avx512, peak_core, cores, cores == 1 ? "" : "s", peak);
            else
                printf("FMA peak per core (given): %.1f GFLOP/s; 100%% = %.1f GFLOP/s\n", peak_core,
                       peak);
            printf("%4s  %-28s %-13s %-12s %9s %9s %6s %8s %9s %6s\n", "node", "name", "op", "impl",
                   "mean_ms", "med_ms", "share", "GFLOP", "GFLOP/s", "%peak");
        }
        double sum_mean = 0;
        double *means = node_sec; /* reused: the timer is off */
        for (uint32_t i = 0; i < nodes; i++) {
            double s_ = 0;
            for (uint32_t r = 0; r < o.runs; r++) s_ += node_runs[(size_t)i * o.runs + r];
            means[i] = s_ / o.runs * 1e3;
            sum_mean += means[i];
        }
        for (uint32_t i = 0; i < nodes; i++) {
            const double node_med =
                quantile(node_runs + (size_t)i * o.runs, (int)o.runs, 0.5) * 1e3;
            const char *impl = o.direct ? "direct" : ms_net_node_impl(net, i);
            if (impl == NULL) impl = "?";
            /* a fused first layer's work is timed in the packed layer after it */
            const bool fused_away = strcmp(impl, "fused") == 0;
            uint64_t flops = fused_away ? 0 : ms_net_node_flops(net, i);
            if (strcmp(impl, "packed+first") == 0 && i > 0) flops += ms_net_node_flops(net, i - 1);
            const double gf = (double)flops * o.batch / 1e9;
            const double gfs = means[i] > 0 ? gf / (means[i] / 1e3) : 0.0;
            if (o.json)
                printf("{\"bench\":\"net_layer\",\"model\":\"%s\",\"batch\":%u,\"threads\":%u,"
                       "\"node\":%u,\"name\":\"%s\",\"op\":\"%s\",\"impl\":\"%s\","
                       "\"mean_ms\":%.4f,\"median_ms\":%.4f,\"gflop\":%.4f,\"gflops\":%.2f,"
                       "\"pct_peak\":%.1f}\n",
                       o.model, o.batch, cores, i, ms_net_node_name(net, i), ms_net_node_op(net, i),
                       impl, means[i], node_med, gf, gfs, 100.0 * gfs / peak);
            else if (gf > 0)
                printf("%4u  %-28.28s %-13s %-12s %9.3f %9.3f %5.1f%% %8.4f %9.1f %5.1f%%\n", i,
                       ms_net_node_name(net, i), ms_net_node_op(net, i), impl, means[i], node_med,
                       100.0 * means[i] / sum_mean, gf, gfs, 100.0 * gfs / peak);
            else
                printf("%4u  %-28.28s %-13s %-12s %9.3f %9.3f %5.1f%% %8s %9s %6s\n", i,
                       ms_net_node_name(net, i), ms_net_node_op(net, i), impl, means[i], node_med,
                       100.0 * means[i] / sum_mean, "-", "-", "-");
        }
        if (!o.json)
            printf("%4s  %-28s %-13s %-12s %9.3f %9s %6s %8.4f %9.1f %5.1f%%\n", "",
                   "total (timed)", "", "", sum_mean, "", "", gflop_run,
                   gflop_run / (sum_mean / 1e3), 100.0 * gflop_run / (sum_mean / 1e3) / peak);
    }

    if (o.soak) {
        const double act = (double)o.act_bytes * o.batch;
        const double weights_held = (double)weight_bytes + (double)wino_bytes;
        const double bound = weights_held + act + (double)ws;
        const double held = weights_held + (double)arena + (double)ws;
        const long d_hwm = ck[3].hwm_kib - ck[1].hwm_kib, d_rss = ck[3].rss_kib - ck[1].rss_kib;
        const long d_anon = ck[3].anon_kib - ck[1].anon_kib;
        const long d_file = ck[3].file_kib - ck[1].file_kib;
        const long grown = ck[3].hwm_kib - m_start.rss_kib;
        /* Flat: the library allocated nothing while running, and anonymous memory (heap,
         * arena, stacks) did not grow; file-backed pages (code and libraries paged in by the
         * kernel) may still add a few KiB to VmRSS and VmHWM without any leak. */
        const bool flat = run_allocs == 0 && d_anon <= 64;
        if (o.json) {
            printf("{\"bench\":\"net_soak\",\"model\":\"%s\",\"batch\":%u,\"threads\":%u,"
                   "\"inferences\":%u,\"rss_kib_start\":%ld,\"rss_kib_loaded\":%ld,"
                   "\"rss_kib_session\":%ld",
                   o.model, o.batch, cores, o.soak, m_start.rss_kib, m_loaded.rss_kib,
                   m_session.rss_kib);
            const char *names[4] = {"first", "p10", "p50", "p100"};
            for (int k = 0; k < 4; k++)
                printf(",\"rss_kib_%s\":%ld,\"hwm_kib_%s\":%ld,\"anon_kib_%s\":%ld,"
                       "\"file_kib_%s\":%ld",
                       names[k], ck[k].rss_kib, names[k], ck[k].hwm_kib, names[k], ck[k].anon_kib,
                       names[k], ck[k].file_kib);
            printf(",\"hwm_growth_kib_p10_p100\":%ld,\"rss_growth_kib_p10_p100\":%ld,"
                   "\"anon_growth_kib_p10_p100\":%ld,\"file_growth_kib_p10_p100\":%ld,"
                   "\"library_allocations_in_runs\":%llu,\"flat\":%s,"
                   "\"weights_bytes\":%zu,\"fast_path_weights_bytes\":%zu,\"arena_bytes\":%zu,"
                   "\"workspace_bytes\":%zu,\"input_bytes\":%zu,\"act_bytes_two_largest\":%.0f,"
                   "\"bound_bytes\":%.0f,"
                   "\"held_bytes\":%.0f,\"hwm_over_start_kib\":%ld}\n",
                   d_hwm, d_rss, d_anon, d_file, (unsigned long long)run_allocs,
                   flat ? "true" : "false", weight_bytes, wino_bytes, arena, ws,
                   n_in * sizeof(float), act, bound, held, grown);
        } else {
            printf("soak: %u consecutive runs; memory from /proc/self/status (MiB):\n", o.soak);
            printf("  %-26s %10s %10s %10s %10s\n", "checkpoint", "VmRSS", "VmHWM", "RssAnon",
                   "RssFile");
            const mem *rows[7] = {&m_start, &m_loaded, &m_session, &ck[0], &ck[1], &ck[2], &ck[3]};
            const char *labels[7] = {"start (before load)",
                                     "net loaded",
                                     "session created",
                                     "after run 1",
                                     "10%",
                                     "50%",
                                     "100%"};
            char lab[64];
            for (int k = 0; k < 7; k++) {
                if (k >= 3)
                    snprintf(lab, sizeof lab, "%s (run %u)", labels[k], at[k - 3]);
                else
                    snprintf(lab, sizeof lab, "%s", labels[k]);
                printf("  %-26s %10.2f %10.2f %10.2f %10.2f\n", lab, kib_mib(rows[k]->rss_kib),
                       kib_mib(rows[k]->hwm_kib), kib_mib(rows[k]->anon_kib),
                       kib_mib(rows[k]->file_kib));
            }
            printf("  growth 10%% -> 100%%: VmHWM %+ld KiB, VmRSS %+ld KiB (RssAnon %+ld, "
                   "RssFile %+ld); library allocations during the %u runs: %llu -> %s\n",
                   d_hwm, d_rss, d_anon, d_file, o.soak, (unsigned long long)run_allocs,
                   flat ? "flat" : "NOT FLAT");
            printf("  weights %.2f MiB (model %.2f + fast-path copies %.2f), arena %.2f MiB, "
                   "workspace %.2f MiB (%u slot%s), input %.2f MiB\n",
                   mib(weights_held), mib((double)weight_bytes), mib((double)wino_bytes),
                   mib((double)arena), mib((double)ws), o.threads, o.threads == 1 ? "" : "s",
                   mib((double)(n_in * sizeof(float))));
            if (o.act_bytes)
                printf("  bound = weights + two largest live activations (%.2f MiB) + workspace"
                       " = %.2f MiB; held by the net (weights + arena + workspace) = %.2f MiB "
                       "(%s the bound)\n",
                       mib(act), mib(bound), mib(held), held <= bound ? "within" : "OVER");
            else
                printf("  held by the net (weights + arena + workspace) = %.2f MiB "
                       "(no --act-bytes: bound not computed)\n",
                       mib(held));
            printf("  process VmHWM over its start: %.2f MiB (also counts the input, the model "
                   "file's other bytes, OpenBLAS's buffers and libraries paged in)\n",
                   kib_mib(grown));
        }
    }
    rc = 0;
done:
    free(node_runs);
    free(node_sec);
    free(t);
    free(in);
    ms_session_destroy(s);
    ms_net_destroy(net);
    return rc;
}
