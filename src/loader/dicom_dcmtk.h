/* C interface to DCMTK's dcmdata (the only C++ in the project, in dicom_dcmtk.cpp).
 * No C++ types cross this header; every function catches all exceptions. */
#ifndef MEDSCREEN_DICOM_DCMTK_H
#define MEDSCREEN_DICOM_DCMTK_H

#include "medscreen/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A lookup table (Modality LUT, VOI LUT, palette channel): PS3.3 C.11.1.1 / C.7.6.3.1.5.
 * Entries are widened to uint16; first_mapped is signed when the pixel data are. */
typedef struct ms_dcm_lut {
    uint32_t entries;     /* number of entries (descriptor 0 means 65536) */
    int32_t first_mapped; /* the stored/modality value mapped to data[0] */
    uint16_t bits;        /* bits per entry, 8..16 */
    uint16_t *data;       /* entries values, ms_malloc'd; NULL when absent */
} ms_dcm_lut;

#define MS_DCM_MAX_WINDOWS 16
#define MS_DCM_MAX_VOI_LUTS 8

/* Rescale and window, which enhanced multi-frame objects may give per frame in functional
 * groups (PS3.3 C.7.6.16): top level first, then shared groups, then the frame's groups. */
typedef struct ms_dcm_frame_values {
    bool has_rescale;
    double rescale_slope, rescale_intercept;
    uint32_t n_windows;
    double window_center[MS_DCM_MAX_WINDOWS], window_width[MS_DCM_MAX_WINDOWS];
    char voi_lut_function[17];
} ms_dcm_frame_values;

/* The attributes the pixel pipeline needs, copied out of the data set. */
typedef struct ms_dcm_attrs {
    char transfer_syntax[65];
    bool encapsulated;          /* pixel data are in fragments */
    bool has_pixel_data;        /* (7FE0,0010) present */
    bool has_float_pixel_data;  /* (7FE0,0008) or (7FE0,0009) present */
    uint32_t pixel_data_length; /* of native pixel data; 0 if encapsulated */
    uint16_t rows, columns;
    uint16_t bits_allocated, bits_stored, high_bit;
    uint16_t pixel_representation;
    uint16_t samples_per_pixel;
    uint16_t planar_configuration;
    bool has_bits_allocated, has_bits_stored, has_high_bit, has_samples_per_pixel;
    uint32_t frames; /* Number of Frames, 1 when absent */
    char photometric[17];
    ms_dcm_frame_values fv;  /* of frame 0; see ms_dcmtk_get_frame_values */
    ms_dcm_lut modality_lut; /* Modality LUT Sequence (PS3.3 C.11.1) */
    uint32_t n_voi_luts;
    ms_dcm_lut voi_lut[MS_DCM_MAX_VOI_LUTS];
    char presentation_lut_shape[17];
    /* Palette colour (PS3.3 C.7.6.3.1.5), index 0 red, 1 green, 2 blue */
    ms_dcm_lut palette[3];
    bool has_segmented_palette;
    /* Geometry and identity */
    bool has_pixel_spacing, has_imager_pixel_spacing;
    double pixel_spacing[2], imager_pixel_spacing[2]; /* row spacing, column spacing (mm) */
    char modality[17], body_part[65], view_position[17];
    char study_uid[65], series_uid[65], sop_uid[65], sop_class_uid[65];
    char problems[256]; /* non-fatal oddities noticed while reading, for logs */
} ms_dcm_attrs;

typedef struct ms_dcmtk ms_dcmtk; /* opaque parsed data set */

/* The Transfer Syntax UID as DCMTK reads the File Meta Information ("" when absent), without
 * parsing the data set: decides, before DCMTK sees the data set, whether it is deflated.
 * Errors: MS_EFORMAT (meta header unreadable), MS_ENOMEM, MS_EINTERNAL. */
ms_status ms_dcmtk_meta_transfer_syntax(const uint8_t *data, size_t size, const char *name,
                                        char ts[65], ms_err *err);

/* Parses a DICOM Part 10 file or bare data set held in memory. data is borrowed and must
 * outlive the ms_dcmtk: large values (pixel data) are loaded from it on first use.
 * dataset_only: data are an Explicit VR Little Endian data set without meta header (an
 * inflated deflated data set). Errors: MS_EFORMAT (parse failure, with DCMTK's reason,
 * including elements longer than the bytes left), MS_ENOMEM, MS_EINTERNAL. */
ms_status ms_dcmtk_open(const uint8_t *data, size_t size, bool dataset_only, const char *name,
                        ms_dcmtk **out, ms_err *err);
/* Copies the attributes out. Release with ms_dcm_attrs_free. Errors: MS_EFORMAT, MS_ENOMEM. */
ms_status ms_dcmtk_get_attrs(ms_dcmtk *d, ms_dcm_attrs *out, ms_err *err);
void ms_dcm_attrs_free(ms_dcm_attrs *a);
/* Rescale and window for one frame. Errors: MS_EFORMAT. */
ms_status ms_dcmtk_get_frame_values(ms_dcmtk *d, uint32_t frame, ms_dcm_frame_values *out,
                                    ms_err *err);

/* Decodes frame (0-based) of native, deflated, JPEG, JPEG-LS or RLE pixel data into buf
 * (frame_bytes: the size of one frame as stored natively; buf_size >= frame_bytes, even).
 * Native 1-bit data come out as one byte (0 or 1) per pixel; frame_bytes is then the
 * number of pixels.
 * Samples come out in host byte order. color_model receives the photometric interpretation
 * of the decoded samples (a JPEG decoder may have converted YBR to RGB) and
 * *planar_configuration the layout of the decoded samples.
 * Errors: MS_EFORMAT, MS_EUNSUPPORTED (no codec for the transfer syntax), MS_ENOMEM. */
ms_status ms_dcmtk_decode_frame(ms_dcmtk *d, uint32_t frame, size_t frame_bytes, void *buf,
                                size_t buf_size, char color_model[17],
                                uint16_t *planar_configuration, ms_err *err);

/* Zero-copy access to one frame of native little-endian 8- or 16-bit pixel data: *out
 * points into the parsed data set (host byte order) and stays valid until ms_dcmtk_close.
 * Returns MS_EUNSUPPORTED when the data need decoding or byte swapping (encapsulated, big
 * endian, 1-bit, 32-bit); use ms_dcmtk_decode_frame then. Errors: MS_EFORMAT (too short). */
ms_status ms_dcmtk_native_frame_view(ms_dcmtk *d, uint32_t frame, size_t frame_bytes,
                                     const void **out, ms_err *err);

/* For codecs DCMTK lacks (JPEG 2000, HTJ2K): the compressed bytes of one frame, i.e. its
 * fragments concatenated. *out is ms_malloc'd and belongs to the caller.
 * Errors: MS_EFORMAT (no such frame, empty fragments), MS_ELIMIT, MS_ENOMEM. */
ms_status ms_dcmtk_frame_bitstream(ms_dcmtk *d, uint32_t frame, uint64_t max_bytes, uint8_t **out,
                                   size_t *out_size, ms_err *err);

void ms_dcmtk_close(ms_dcmtk *d); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
