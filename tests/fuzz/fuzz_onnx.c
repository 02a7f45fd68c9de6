/* libFuzzer target: the ONNX importer (ms_onnx_import) on arbitrary bytes, in memory. An
 * accepted model's graph text and tensors are read end to end and handed to the .msm writer
 * (in memory only), so a dangling pointer or short tensor shows up under ASan. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "medscreen/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ms_limits lim = ms_fuzz_limits();
    lim.max_model_bytes = 1u << 22;
    ms_onnx_model *m = NULL;
    ms_err err;
    if (ms_onnx_import(data, size, "fuzz", &lim, &m, &err) != MS_OK) return 0;
    if (strlen(m->graph) != m->graph_len) abort();
    volatile float sink = 0.0f;
    for (uint32_t i = 0; i < m->tensor_count; i++)
        for (size_t k = 0; k < m->tensors[i].count; k++) sink += m->tensors[i].data[k];
    (void)sink;
    ms_msm_writer *w = NULL;
    if (ms_msm_writer_create(&w, &err) == MS_OK) {
        (void)ms_onnx_add_to_writer(m, "k=v", w, &err);
        ms_msm_writer_destroy(w);
    }
    ms_onnx_destroy(m);
    return 0;
}
