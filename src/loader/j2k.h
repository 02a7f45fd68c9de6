/* JPEG 2000 and HTJ2K decoding with OpenJPEG, for DICOM fragments. Private to the loader. */
#ifndef MEDSCREEN_J2K_H
#define MEDSCREEN_J2K_H

#include "medscreen/core.h"

/* What the codestream says about itself. */
typedef struct ms_j2k_info {
    uint32_t width, height, components;
    uint32_t precision; /* bits of component 0 */
    bool is_signed;     /* component 0 */
    bool jp2;           /* wrapped in a JP2 file rather than a bare codestream */
} ms_j2k_info;

/* Decodes a J2K codestream (or JP2 file) into out as samples of bytes_per_sample (1 or 2)
 * bytes, component planes one after another (like Planar Configuration 1), each sample the
 * decoded integer truncated to its low bits (two's complement for signed data).
 * The codestream must be expected_width x expected_height with expected_components
 * components, no subsampling, and precision <= 8 * bytes_per_sample; out_size must hold
 * all planes. Errors: MS_EFORMAT (corrupt, or not matching the DICOM header), MS_ELIMIT,
 * MS_EUNSUPPORTED, MS_ENOMEM. */
ms_status ms_j2k_decode(const uint8_t *data, size_t size, const char *name, uint32_t expected_width,
                        uint32_t expected_height, uint32_t expected_components,
                        unsigned bytes_per_sample, void *out, size_t out_size, ms_j2k_info *info,
                        ms_err *err);

#endif
