/* Shared by the benchmark programs: a monotonic clock, quantiles of run times, the CPU model
 * for the JSON lines, and seeded test data in 64-byte aligned buffers. */
#ifndef MEDSCREEN_BENCH_UTIL_H
#define MEDSCREEN_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "medscreen/core.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of n run times (sorts v in place). */
static double quantile(double *v, int n, double q) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[(int)(q * (n - 1) + 0.5)];
}

/* The CPU model from /proc/cpuinfo, with JSON-unsafe characters replaced by spaces. */
static void cpu_model(char *out, size_t size) {
    ms_str_copy(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *c = strchr(line, ':');
        if (c == NULL) break;
        c++;
        while (*c == ' ') c++;
        ms_str_copy(out, size, c);
        break;
    }
    fclose(f);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = ' ';
}

/* n pseudo-random floats in [-1, 1), the same for the same seed. */
static inline void bench_fill(float *x, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
    }
}

/* n floats, 64-byte aligned; exits on failure (a benchmark, not the library). */
static inline float *bench_alloc_floats(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "benchmark: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

#endif
