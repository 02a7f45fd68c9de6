/* score layer: from a decoded image to the model's input, and from the model's outputs back to
 * an image score and ranked regions in the original image's pixel coordinates.
 *
 * Everything follows the model's metadata (meta.h, models/FORMAT.md "meta format 1"): colour,
 * resize (stretch / letterbox / crop) with its filter and pad value, normalisation, the score's
 * kind and temperature, the map's kind. The functions are pure: plain data in, caller-owned
 * buffers out, no globals, thread-safe.
 *
 * Coordinates: continuous pixel-edge coordinates, pixel (i, j) covers [i, i+1) x [j, j+1).
 * The geometry maps image coordinates to model-input coordinates affinely per axis:
 *     input_x = image_x * scale_x + offset_x      (and the same for y)
 * Stretch scales each axis to fit; letterbox uses one scale (fit inside) and a positive offset
 * (the bars); crop uses one scale (cover) and a negative offset (the cut). */
#ifndef MEDSCREEN_SCORE_H
#define MEDSCREEN_SCORE_H
#include "medscreen/loader.h"
#include "medscreen/meta.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct ms_geometry {
    int32_t image_w, image_h; /* the decoded image */
    int32_t input_w, input_h; /* the model input */
    ms_meta_resize resize;
    double scale_x, scale_y; /* input pixels per image pixel */
    double offset_x, offset_y;
} ms_geometry;

/* The geometry for an image of image_w x image_h under meta's resize and input_size.
 * Errors: MS_EINVAL (non-positive sizes, meta without resize / input_size). */
ms_status ms_geometry_make(const ms_model_meta *meta, int32_t image_w, int32_t image_h,
                           ms_geometry *out, ms_err *err);

/* Decode options that meta asks for: colour (grey or RGB) and window: `file` the file's first
 * VOI window or LUT, `auto` the frame's min..max (auto_window), or a fixed centre and width. */
ms_decode_opts ms_score_decode_opts(const ms_model_meta *meta);

/* Writes the model input for img: input_channels x input_h x input_w floats (one image of
 * NCHW) into out, after resizing with meta's filter (area averages every covered source
 * pixel, weighted by overlap, when shrinking; bilinear otherwise), filling letterbox bars with
 * pad_value (an input pixel shows the image when its centre lies inside the scaled image),
 * replicating grey into 3 channels when the model wants RGB (and converting RGB to luma for a
 * grey model), then (x - mean) / std. *geo receives the geometry used.
 * Allocates only temporaries, freed before it returns.
 * Errors: MS_EINVAL (NULL, meta not usable by scan), MS_EOVERFLOW, MS_ENOMEM. */
ms_status ms_score_preprocess(const ms_model_meta *meta, const ms_image *img, float *out,
                              ms_geometry *geo, ms_err *err);

/* The score output's value as a probability: sigmoid(value / temperature) for logit scores,
 * the value clamped to [0, 1] for probability scores. NaN stays NaN; NaN also when meta is
 * NULL or has no kind. */
double ms_score_probability(const ms_model_meta *meta, double value);

/* The same for the region map. Logit maps use the score's temperature too, so map and score
 * share one calibrated scale (models/FORMAT.md). */
double ms_score_map_probability(const ms_model_meta *meta, double value);

/* Resamples a map_w x map_h probability map that covers the model input (map cell (i, j) is
 * centred at input ((i + 0.5) * input_w / map_w, ...)) onto the image: out receives
 * geo->image_w x geo->image_h probabilities, bilinear between cell centres, clamped at the
 * edges. Image pixels that fall outside the model input (cropped away) get 0.
 * Errors: MS_EINVAL, MS_EOVERFLOW. */
ms_status ms_score_map_to_image(const float *map, int32_t map_w, int32_t map_h,
                                const ms_geometry *geo, float *out, ms_err *err);

typedef struct ms_region_opts {
    float threshold;      /* a region is seeded where the probability is >= this */
    float low_threshold;  /* hysteresis: it grows over connected pixels >= this (<= threshold) */
    uint64_t min_area_px; /* smaller regions are dropped */
    uint32_t max_regions; /* at most this many, the best ranked; >= 1 */
} ms_region_opts;

typedef struct ms_region {
    uint32_t rank;              /* 1 = best: highest peak, then larger area, then position */
    int32_t x, y, w, h;         /* bounding box in image pixels */
    double centroid_x, centroid_y; /* pixel centres, i.e. mean of (i + 0.5) */
    uint64_t area_px;
    double area_mm2;            /* from the pixel spacing; -1 when unknown */
    float peak, mean;           /* probability: maximum and mean over the region */
    int32_t peak_x, peak_y;     /* first pixel (row-major) holding the peak */
} ms_region;

/* Connected components (8-connected) of prob (w x h, row-major) with hysteresis, ranked.
 * spacing_row_mm / spacing_col_mm: 0 when unknown (area_mm2 is then -1). On success
 * *regions (ms_free) holds *count regions ordered by rank; *regions is NULL when *count is
 * 0. Deterministic. Errors: MS_EINVAL (bad opts), MS_EOVERFLOW, MS_ENOMEM. */
ms_status ms_score_regions(const float *prob, int32_t w, int32_t h, double spacing_row_mm,
                           double spacing_col_mm, const ms_region_opts *opts,
                           ms_region **regions, uint32_t *count, ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
