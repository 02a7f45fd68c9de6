/* Private to the loader layer: per-format decoders behind ms_source. */
#ifndef MEDSCREEN_LOADER_INTERNAL_H
#define MEDSCREEN_LOADER_INTERNAL_H

#include "medscreen/core.h"
#include "medscreen/loader.h"

/* Rec. 601 luma; equals Y of YBR_FULL. */
static inline float ms_luma601(float r, float g, float b) {
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

/* Checks width x height (one frame) against the limits. name is for messages. */
ms_status ms_check_dimensions(const char *name, uint64_t width, uint64_t height,
                              const ms_limits *lim, ms_err *err);

/* Shared argument checks of the single-image codecs: fills in defaults for a NULL name,
 * opts or lim (default limits go to lim_storage), and refuses a NULL out, a frame other
 * than 0 and an unknown colour mode. kind names the format in messages ("PNG"). */
ms_status ms_codec_args(const char *kind, const uint8_t *data, size_t size, const char **name,
                        const ms_decode_opts **opts, const ms_limits **lim, ms_limits *lim_storage,
                        ms_image **out, ms_err *err);

/* Single-image codecs. data is borrowed for the call only. opts->frame must be 0. */
ms_status ms_png_decode(const uint8_t *data, size_t size, const char *name,
                        const ms_decode_opts *opts, const ms_limits *lim, ms_image **out,
                        ms_err *err);
ms_status ms_jpeg_decode(const uint8_t *data, size_t size, const char *name,
                         const ms_decode_opts *opts, const ms_limits *lim, ms_image **out,
                         ms_err *err);

/* DICOM: parsed once, frames decoded on demand. */
typedef struct ms_dicom ms_dicom;
ms_status ms_dicom_open(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                        ms_dicom **out, ms_err *err);
uint32_t ms_dicom_frame_count(const ms_dicom *dcm);
ms_status ms_dicom_decode_frame(ms_dicom *dcm, const ms_decode_opts *opts, ms_image **out,
                                ms_err *err);
void ms_dicom_close(ms_dicom *dcm);

#endif
