/* Loader layer: DICOM, PNG and JPEG into float tensors with their decode provenance.
 *
 * Output convention: dense planar (CHW) float32, values in [0, 1] where 0 is displayed black
 * and 1 displayed white, i.e. after the DICOM Modality LUT, VOI LUT/window and Presentation LUT
 * (MONOCHROME1 and INVERSE are already undone). PNG/JPEG samples are divided by their maximum
 * code value. Grayscale output (the default) converts colour with Rec. 601 luma
 * (0.299 R + 0.587 G + 0.114 B), which equals Y of YBR_FULL and of JPEG's YCbCr. */
#ifndef MEDSCREEN_LOADER_H
#define MEDSCREEN_LOADER_H

#include "medscreen/medscreen.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ms_format {
    MS_FORMAT_UNKNOWN = 0,
    MS_FORMAT_DICOM, /* Part 10 (preamble + "DICM") or a bare data set */
    MS_FORMAT_PNG,
    MS_FORMAT_JPEG
} ms_format;

/* Detects the format from the first bytes (never from a file name). */
ms_format ms_format_detect(const uint8_t *data, size_t size);
const char *ms_format_name(ms_format fmt); /* "dicom", "png", "jpeg", "unknown" */

typedef enum ms_color_mode {
    MS_COLOR_GRAY = 0, /* 1 channel; colour converted to luma */
    MS_COLOR_RGB       /* 3 channels; grayscale replicated */
} ms_color_mode;

typedef enum ms_modality_lut_kind {
    MS_MODLUT_NONE = 0, /* identity (no rescale given, or not DICOM) */
    MS_MODLUT_RESCALE,  /* Rescale Slope / Intercept (PS3.3 C.11.1) */
    MS_MODLUT_SEQUENCE  /* Modality LUT Sequence */
} ms_modality_lut_kind;

typedef enum ms_voi_kind {
    MS_VOI_NONE = 0,     /* full code range (colour DICOM, PNG, JPEG) */
    MS_VOI_WINDOW,       /* Window Center/Width from the file (PS3.3 C.11.2) */
    MS_VOI_LUT_SEQUENCE, /* VOI LUT Sequence from the file */
    MS_VOI_AUTO_MINMAX,  /* no VOI in the file: linear from the frame's min to max */
    MS_VOI_USER_WINDOW   /* window given in ms_decode_opts */
} ms_voi_kind;

typedef enum ms_voi_function {
    MS_VOI_FN_LINEAR = 0,
    MS_VOI_FN_LINEAR_EXACT,
    MS_VOI_FN_SIGMOID
} ms_voi_function;

typedef enum ms_inversion {
    MS_INVERT_NONE = 0,
    MS_INVERT_MONOCHROME1,     /* photometric MONOCHROME1: min is white */
    MS_INVERT_PRESENTATION_LUT /* Presentation LUT Shape INVERSE */
} ms_inversion;

typedef enum ms_spacing_source {
    MS_SPACING_NONE = 0,
    MS_SPACING_PIXEL,
    MS_SPACING_IMAGER
} ms_spacing_source;

/* Where the pixels came from and what was done to them. Plain data. */
typedef struct ms_provenance {
    ms_format format;
    char transfer_syntax[65];  /* DICOM transfer syntax UID; "" otherwise */
    char photometric[17];      /* as stored in the file (PNG/JPEG: the closest DICOM term) */
    char color_conversion[24]; /* "none", "rgb_to_luma", "ybr_to_luma", "palette_to_luma",
                                  "gray_to_rgb", ... */
    uint16_t bits_allocated;   /* DICOM; PNG/JPEG: bits per sample as decoded */
    uint16_t bits_stored;
    uint16_t high_bit;
    uint16_t samples_per_pixel;
    uint16_t planar_configuration;
    bool is_signed;  /* Pixel Representation 1 */
    bool interlaced; /* PNG Adam7 or progressive JPEG */
    ms_modality_lut_kind modality_lut;
    double rescale_slope, rescale_intercept;
    ms_voi_kind voi;
    ms_voi_function voi_function;
    uint32_t voi_index;                 /* which window / VOI LUT item of the file */
    double window_center, window_width; /* the window applied (also for AUTO_MINMAX) */
    ms_inversion inversion;
    uint32_t frame_index, frame_count;
    ms_spacing_source spacing_source;
    double spacing_row_mm, spacing_col_mm; /* 0 when unknown */
    char modality[17];
    char body_part[65];
    char view_position[17];
    char study_uid[65], series_uid[65], sop_uid[65], sop_class_uid[65];
} ms_provenance;

typedef struct ms_image {
    int32_t width, height, channels;
    float *data; /* channels * height * width floats, planar */
    ms_provenance prov;
} ms_image;

/* Allocates an image with zeroed provenance; data uninitialised. Errors: MS_EINVAL,
 * MS_EOVERFLOW, MS_ENOMEM. Thread-safe. */
ms_status ms_image_create(int32_t width, int32_t height, int32_t channels, ms_image **out,
                          ms_err *err);
void ms_image_destroy(ms_image *img); /* NULL is a no-op */

typedef struct ms_decode_opts {
    uint32_t frame; /* DICOM frame index, 0-based */
    ms_color_mode color;
    uint32_t voi_index; /* which of the file's windows / VOI LUTs (0 = first) */
    bool user_window;   /* apply window_center/width instead of the file's VOI */
    double window_center, window_width;
    ms_voi_function window_function; /* for user_window */
    bool auto_window; /* ignore the file's windows and VOI LUTs: linear from the frame's
                       * min to max (MS_VOI_AUTO_MINMAX); user_window still wins */
} ms_decode_opts;

ms_decode_opts ms_decode_opts_default(void);

/* A parsed input whose frames decode on demand. Opaque; not shared between threads. */
typedef struct ms_source ms_source;

/* Parses data (borrowed: it must outlive the source). name is used in messages only.
 * Errors: MS_ENOTIMAGE, MS_ENOPIXELS, MS_EFORMAT, MS_EUNSUPPORTED, MS_ELIMIT, MS_EOVERFLOW,
 * MS_ENOMEM, MS_EINTERNAL. */
ms_status ms_source_open_memory(const uint8_t *data, size_t size, const char *name,
                                const ms_limits *lim, ms_source **out, ms_err *err);
/* Reads path (checking the size limit first) and parses it; the source owns the bytes.
 * Errors: as above plus MS_EIO. */
ms_status ms_source_open_file(const char *path, const ms_limits *lim, ms_source **out, ms_err *err);
ms_format ms_source_format(const ms_source *src);
uint32_t ms_source_frame_count(const ms_source *src);
/* Decodes opts->frame (NULL opts: defaults). On success *out belongs to the caller.
 * Errors: MS_EINVAL (frame out of range), and the open errors. */
ms_status ms_source_decode(ms_source *src, const ms_decode_opts *opts, ms_image **out, ms_err *err);
void ms_source_destroy(ms_source *src); /* NULL is a no-op */

/* One call, one free: open + decode one frame + destroy. */
ms_status ms_image_decode(const uint8_t *data, size_t size, const char *name,
                          const ms_decode_opts *opts, const ms_limits *lim, ms_image **out,
                          ms_err *err);
ms_status ms_image_load(const char *path, const ms_decode_opts *opts, const ms_limits *lim,
                        ms_image **out, ms_err *err);

/* Names for JSON and tables. Never NULL. */
const char *ms_modality_lut_name(ms_modality_lut_kind k); /* "none","rescale","lut_sequence" */
const char *
ms_voi_kind_name(ms_voi_kind k); /* "none","window","lut_sequence","auto_minmax","user_window" */
const char *ms_voi_function_name(ms_voi_function f); /* "LINEAR","LINEAR_EXACT","SIGMOID" */
const char *ms_inversion_name(ms_inversion i); /* "none","monochrome1","presentation_lut_inverse" */
const char *
ms_spacing_source_name(ms_spacing_source s); /* "none","pixel_spacing","imager_pixel_spacing" */

#ifdef __cplusplus
}
#endif
#endif
