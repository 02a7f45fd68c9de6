/* libFuzzer target: the .msm model reader (ms_msm_decode). Every tensor of an accepted model
 * is read end to end, so a table entry pointing outside the file shows up under ASan. */
#include <stdlib.h>

#include "fuzz_common.h"
#include "medscreen/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ms_limits lim = ms_fuzz_limits();
    ms_msm *m = NULL;
    ms_err err;
    if (ms_msm_decode(data, size, "fuzz", &lim, &m, &err) != MS_OK) return 0;
    volatile uint8_t sink = 0;
    for (uint32_t i = 0; i < ms_msm_tensor_count(m); i++) {
        const ms_msm_tensor *t = ms_msm_tensor_at(m, i);
        size_t bytes = t->count * (t->dtype == MS_DTYPE_F32 ? 4u : 1u);
        for (size_t k = 0; k < bytes; k++) sink ^= ((const uint8_t *)t->data)[k];
        if (ms_msm_find(m, t->name) != t) abort();
    }
    (void)sink;
    ms_msm_destroy(m);
    return 0;
}
