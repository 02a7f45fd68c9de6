/* The DICOM grayscale and colour pixel pipelines (PS3.3 C.11, PS3.4 N.2), free of DCMTK so
 * that they can be tested on synthetic samples. Private to the loader layer. */
#ifndef MEDSCREEN_DICOM_PIXELS_H
#define MEDSCREEN_DICOM_PIXELS_H

#include "dicom_dcmtk.h"
#include "medscreen/loader.h"

/* How a stored sample is laid out in its allocated bits (PS3.5 8.1.1). */
typedef struct ms_sample_layout {
    uint16_t bits_allocated; /* 8, 16 or 32; samples are in host byte order */
    uint16_t bits_stored;    /* 1..bits_allocated */
    uint16_t high_bit;       /* bits_stored-1 .. bits_allocated-1 */
    bool is_signed;          /* two's complement in bits_stored bits */
} ms_sample_layout;

/* Extracts the stored value of a raw sample: shift down to bit 0, mask to bits_stored,
 * sign-extend. */
static inline int64_t ms_sample_value(const ms_sample_layout *l, uint32_t raw) {
    unsigned shift = (unsigned)(l->high_bit + 1u - l->bits_stored);
    uint64_t mask = (l->bits_stored >= 32) ? 0xFFFFFFFFull : ((1ull << l->bits_stored) - 1u);
    uint64_t v = ((uint64_t)raw >> shift) & mask;
    if (l->is_signed && (v >> (l->bits_stored - 1u)) & 1u) return (int64_t)v - (int64_t)(mask + 1u);
    return (int64_t)v;
}

/* Grayscale pipeline parameters. The VOI kind must be resolved except for AUTO_MINMAX, which
 * ms_mono_to_float computes from the frame. */
typedef struct ms_mono_params {
    ms_sample_layout layout;
    ms_modality_lut_kind modality;
    double slope, intercept;
    const ms_dcm_lut *modality_lut; /* for MS_MODLUT_SEQUENCE */
    ms_voi_kind voi;                /* WINDOW, USER_WINDOW, LUT_SEQUENCE or AUTO_MINMAX */
    ms_voi_function voi_function;
    double center, width;
    const ms_dcm_lut *voi_lut; /* for MS_VOI_LUT_SEQUENCE */
    bool invert;               /* MONOCHROME1 or Presentation LUT Shape INVERSE */
} ms_mono_params;

/* Maps n raw samples (contiguous, host order, layout.bits_allocated wide) to display values
 * in [0,1]. For AUTO_MINMAX, center and width receive the window used (LINEAR_EXACT over the
 * frame's modality range). Samples of <= 16 bits go through one lookup table.
 * Errors: MS_EINVAL (bad parameters), MS_ENOMEM. */
ms_status ms_mono_to_float(const ms_mono_params *p, const void *raw, size_t n, float *out,
                           double *center, double *width, ms_err *err);

/* One modality value to a display value in [0,1] (no inversion): the VOI stage alone. */
double ms_voi_apply(ms_voi_kind kind, ms_voi_function fn, double center, double width,
                    const ms_dcm_lut *lut, double x);

typedef enum ms_color_model {
    MS_CM_RGB = 0,
    MS_CM_YBR_FULL,     /* full-range YCbCr, PS3.3 C.7.6.3.1.2 */
    MS_CM_YBR_FULL_422, /* native: Y0 Y1 Cb Cr per pixel pair */
    MS_CM_PALETTE
} ms_color_model;

typedef struct ms_color_params {
    ms_sample_layout layout;
    ms_color_model model;
    uint16_t planar_configuration; /* 0: R0G0B0R1..., 1: RRR...GGG...BBB */
    const ms_dcm_lut *palette;     /* 3 LUTs, for MS_CM_PALETTE */
} ms_color_params;

/* Converts one colour frame of width*height pixels to planar float RGB in [0,1]
 * (out has 3 planes) or, with gray, to Rec.601 luma (out has 1 plane).
 * Errors: MS_EINVAL. */
ms_status ms_color_to_float(const ms_color_params *p, const void *raw, int32_t width,
                            int32_t height, bool gray, float *out, ms_err *err);

#endif
