/* Which OpenBLAS kernels to ask for. Debian bookworm's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not
 * know newer Intel CPUs (seen: Xeon family 6 model 207) and falls back to its Prescott (SSE3)
 * kernels: 2.9x slower on the reference screener (1 thread, 210.7 ms against 73.8 ms with the
 * SkylakeX kernels). It reads OPENBLAS_CORETYPE only while it loads, so a program can only
 * fix this by setting the variable and starting again; this file says what to set. */
#include <cblas.h>
#include <string.h>

#include "medscreen/nn.h"

static bool name_in(const char *name, const char *const *list) {
    for (; *list; list++)
        if (strcmp(name, *list) == 0) return true;
    return false;
}

const char *ms_blas_better_coretype(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const char *core = openblas_get_corename();
    if (core == NULL) return NULL;
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                             "SapphireRapids", NULL};
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512cd"))
        return name_in(core, avx512_cores) ? NULL : "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return name_in(core, avx2_cores) ? NULL : "Haswell";
#endif
    return NULL;
}

const char *ms_blas_coretype(void) { return openblas_get_corename(); }

void ms_blas_set_threads(int32_t n) { openblas_set_num_threads(n < 1 ? 1 : n); }

int32_t ms_blas_threads(void) { return openblas_get_num_threads(); }
