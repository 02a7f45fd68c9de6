/* SHA-256 throughput of the portable block function and the SHA-NI one on a 64 MiB buffer (the
 * order of an uncompressed multi-frame DICOM; `scan` hashes every input).
 *
 * Usage: bench_sha256 [--runs N] [--mib N]     (runs >= 20, default 20; mib default 64)
 * The paths alternate within every run, so a burst of load on a shared machine hits them alike.
 * One JSON line per path: median and p90 ms over the runs, and MB/s (10^6 bytes per second) at
 * the median. The SHA-NI line is left out, with a note on stderr, where the CPU lacks it.
 * Not a ctest test; build Release (or RelWithDebInfo) on a quiet machine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"
#include "sha256_internal.h"

#include "bench_util.h"

enum { MAX_RUNS = 1000 };

static double time_one(const uint8_t *buf, size_t n, ms_sha256_impl impl, uint8_t out[32]) {
    ms_sha256 s;
    double t0 = now_ms();
    ms_sha256_init(&s);
    ms_sha256_update_impl(&s, buf, n, impl);
    ms_sha256_final_impl(&s, out, impl);
    return now_ms() - t0;
}

int main(int argc, char **argv) {
    uint32_t runs = 20, mib = 64;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc &&
            ms_parse_u32(argv[i + 1], 20, MAX_RUNS, &runs)) {
            i++;
        } else if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc &&
                   ms_parse_u32(argv[i + 1], 1, 4096, &mib)) {
            i++;
        } else {
            fprintf(stderr, "usage: bench_sha256 [--runs N>=20] [--mib N]\n");
            return 2;
        }
    }
    const size_t n = (size_t)mib << 20;
    uint8_t *buf = malloc(n);
    if (!buf) {
        fprintf(stderr, "bench_sha256: out of memory (%zu bytes)\n", n);
        return 1;
    }
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
    char cpu[128];
    cpu_model(cpu, sizeof cpu);

    const bool shani = ms_sha256_shani_available();
    if (!shani) fprintf(stderr, "bench_sha256: no SHA-NI on this CPU/build; portable only\n");
    static const ms_sha256_impl impls[] = {MS_SHA256_PORTABLE, MS_SHA256_SHANI};
    static const char *const names[] = {"portable", "shani"};
    const int n_impl = shani ? 2 : 1;
    static double ms[2][MAX_RUNS];
    uint8_t ref[32], d[32];
    time_one(buf, n, MS_SHA256_PORTABLE, ref); /* warm the pages and caches */
    for (uint32_t r = 0; r < runs; r++) {
        for (int m = 0; m < n_impl; m++) {
            ms[m][r] = time_one(buf, n, impls[m], d);
            if (memcmp(d, ref, 32) != 0) {
                fprintf(stderr, "bench_sha256: %s digest differs from portable\n", names[m]);
                free(buf);
                return 1;
            }
        }
    }
    for (int m = 0; m < n_impl; m++) {
        double med = quantile(ms[m], (int)runs, 0.5), p90 = quantile(ms[m], (int)runs, 0.9);
        printf("{\"bench\":\"sha256\",\"method\":\"%s\",\"bytes\":%zu,\"runs\":%u,"
               "\"median_ms\":%.3f,\"p90_ms\":%.3f,\"mb_per_s\":%.1f,\"threads\":1,"
               "\"cpu\":\"%s\"}\n",
               names[m], n, runs, med, p90, (double)n / 1e3 / med, cpu);
    }
    free(buf);
    return 0;
}
