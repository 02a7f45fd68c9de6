/* libFuzzer target: DICOM through ms_source_open_memory and ms_source_decode. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return ms_fuzz_run(data, size, MS_FORMAT_DICOM);
}
