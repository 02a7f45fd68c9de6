/* libFuzzer target: the .npy reader (ms_npy_decode), and for every file it accepts, a re-encode
 * that must decode to the same shape and bits. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "medscreen/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ms_limits lim = ms_fuzz_limits();
    ms_npy *a = NULL;
    ms_err err;
    if (ms_npy_decode(data, size, "fuzz", &lim, &a, &err) != MS_OK) return 0;

    uint8_t *enc = NULL;
    size_t n = 0;
    ms_npy *b = NULL;
    if (ms_npy_encode(a->shape, a->ndim, a->data, &enc, &n, &err) != MS_OK) abort();
    if (ms_npy_decode(enc, n, "fuzz-reencoded", &lim, &b, &err) != MS_OK) abort();
    if (b->ndim != a->ndim || b->count != a->count ||
        memcmp(b->shape, a->shape, sizeof a->shape[0] * (size_t)a->ndim) != 0 ||
        (a->count && memcmp(b->data, a->data, a->count * sizeof(float)) != 0))
        abort();
    ms_npy_destroy(b);
    ms_free(enc);
    ms_npy_destroy(a);
    return 0;
}
