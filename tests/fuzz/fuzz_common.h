/* Shared body of the fuzz targets: open from memory with lowered limits (format detection is
 * part of every entry point), then decode frames with a few option sets, freeing everything.
 * Nothing an input does may crash, hang, leak or trip a sanitizer. */
#ifndef MEDSCREEN_FUZZ_COMMON_H
#define MEDSCREEN_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "medscreen/loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline ms_limits ms_fuzz_limits(void) {
    ms_limits lim = ms_limits_default();
    lim.max_pixels = 1u << 22;
    lim.max_width = 1u << 14;
    lim.max_height = 1u << 14;
    lim.max_file_bytes = 1u << 24;
    lim.max_decoded_bytes = 1u << 26;
    lim.max_frames = 64;
    return lim;
}

static inline void ms_fuzz_decode(ms_source *src, const ms_decode_opts *opts) {
    ms_image *img = NULL;
    ms_err err;
    if (ms_source_decode(src, opts, &img, &err) == MS_OK) {
        /* Touch the output so uninitialised or short buffers show under the sanitizers. */
        size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
        volatile float sink = 0.0f;
        for (size_t i = 0; i < n; i++) sink += img->data[i];
        (void)sink;
        ms_image_destroy(img);
    }
}

/* want: the format this target is about; inputs detected as another format are skipped so
 * each fuzzer spends its time in its own decoder. */
static inline int ms_fuzz_run(const uint8_t *data, size_t size, ms_format want) {
    if (ms_format_detect(data, size) != want) return 0;
    ms_limits lim = ms_fuzz_limits();
    ms_source *src = NULL;
    ms_err err;
    if (ms_source_open_memory(data, size, "fuzz", &lim, &src, &err) != MS_OK) return 0;

    ms_decode_opts opts = ms_decode_opts_default();
    ms_fuzz_decode(src, &opts); /* frame 0, grayscale, the file's VOI */

    opts.color = MS_COLOR_RGB; /* colour paths, and a user window instead of the file's */
    opts.user_window = true;
    opts.window_center = 40.0;
    opts.window_width = 400.0;
    ms_fuzz_decode(src, &opts);

    uint32_t frames = ms_source_frame_count(src);
    if (frames > 1) {
        opts = ms_decode_opts_default();
        opts.frame = frames - 1;
        ms_fuzz_decode(src, &opts);
    }
    ms_source_destroy(src);
    return 0;
}

#endif
