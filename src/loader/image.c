#include <string.h>

#include "loader_internal.h"

ms_status ms_image_create(int32_t width, int32_t height, int32_t channels, ms_image **out,
                          ms_err *err) {
    if (width <= 0 || height <= 0 || channels <= 0 || channels > 4)
        return ms_fail(err, MS_EINVAL, "image size %dx%dx%d is invalid", (int)width, (int)height,
                       (int)channels);
    size_t n;
    if (!ms_mul_size((size_t)width, (size_t)height, &n) || !ms_mul_size(n, (size_t)channels, &n) ||
        !ms_mul_size(n, sizeof(float), &n))
        return ms_fail(err, MS_EOVERFLOW, "image size %dx%dx%d overflows", (int)width, (int)height,
                       (int)channels);
    ms_image *img = ms_calloc(1, sizeof *img);
    if (img == NULL) return ms_fail(err, MS_ENOMEM, "cannot allocate image header");
    img->data = ms_malloc(n);
    if (img->data == NULL) {
        ms_free(img);
        return ms_fail(err, MS_ENOMEM, "cannot allocate %zu bytes for a %dx%d image", n, (int)width,
                       (int)height);
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    *out = img;
    return MS_OK;
}

void ms_image_destroy(ms_image *img) {
    if (img == NULL) return;
    ms_free(img->data);
    ms_free(img);
}

ms_status ms_check_dimensions(const char *name, uint64_t width, uint64_t height,
                              const ms_limits *lim, ms_err *err) {
    if (width == 0 || height == 0)
        return ms_fail(err, MS_EFORMAT, "%s: image has zero size (%llux%llu)", name,
                       (unsigned long long)width, (unsigned long long)height);
    if (width > lim->max_width || height > lim->max_height)
        return ms_fail(err, MS_ELIMIT, "%s: image is %llux%llu, limit is %ux%u", name,
                       (unsigned long long)width, (unsigned long long)height, lim->max_width,
                       lim->max_height);
    uint64_t px;
    if (!ms_mul_u64(width, height, &px) || px > lim->max_pixels)
        return ms_fail(err, MS_ELIMIT, "%s: image has %llux%llu pixels, limit is %llu pixels", name,
                       (unsigned long long)width, (unsigned long long)height,
                       (unsigned long long)lim->max_pixels);
    return MS_OK;
}

ms_status ms_codec_args(const char *kind, const uint8_t *data, size_t size, const char **name,
                        const ms_decode_opts **opts, const ms_limits **lim, ms_limits *lim_storage,
                        ms_image **out, ms_err *err) {
    static const ms_decode_opts default_opts = {0, MS_COLOR_GRAY, 0, false, 0, 0, MS_VOI_FN_LINEAR,
                                                false};
    if (*name == NULL) *name = "<memory>";
    if (*opts == NULL) *opts = &default_opts;
    if (*lim == NULL) {
        *lim_storage = ms_limits_default();
        *lim = lim_storage;
    }
    if (out == NULL || (data == NULL && size != 0))
        return ms_fail(err, MS_EINVAL, "%s: NULL argument to the %s decoder", *name, kind);
    if ((*opts)->frame != 0)
        return ms_fail(err, MS_EINVAL, "%s: frame %u requested, a %s has 1 frame", *name,
                       (*opts)->frame, kind);
    if ((*opts)->color != MS_COLOR_GRAY && (*opts)->color != MS_COLOR_RGB)
        return ms_fail(err, MS_EINVAL, "%s: unknown colour mode %d", *name, (int)(*opts)->color);
    return MS_OK;
}

ms_decode_opts ms_decode_opts_default(void) {
    ms_decode_opts o;
    memset(&o, 0, sizeof o);
    o.color = MS_COLOR_GRAY;
    o.window_function = MS_VOI_FN_LINEAR;
    return o;
}

const char *ms_format_name(ms_format fmt) {
    switch (fmt) {
    case MS_FORMAT_DICOM: return "dicom";
    case MS_FORMAT_PNG: return "png";
    case MS_FORMAT_JPEG: return "jpeg";
    case MS_FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

const char *ms_modality_lut_name(ms_modality_lut_kind k) {
    switch (k) {
    case MS_MODLUT_RESCALE: return "rescale";
    case MS_MODLUT_SEQUENCE: return "lut_sequence";
    case MS_MODLUT_NONE: break;
    }
    return "none";
}

const char *ms_voi_kind_name(ms_voi_kind k) {
    switch (k) {
    case MS_VOI_WINDOW: return "window";
    case MS_VOI_LUT_SEQUENCE: return "lut_sequence";
    case MS_VOI_AUTO_MINMAX: return "auto_minmax";
    case MS_VOI_USER_WINDOW: return "user_window";
    case MS_VOI_NONE: break;
    }
    return "none";
}

const char *ms_voi_function_name(ms_voi_function f) {
    switch (f) {
    case MS_VOI_FN_LINEAR_EXACT: return "LINEAR_EXACT";
    case MS_VOI_FN_SIGMOID: return "SIGMOID";
    case MS_VOI_FN_LINEAR: break;
    }
    return "LINEAR";
}

const char *ms_inversion_name(ms_inversion i) {
    switch (i) {
    case MS_INVERT_MONOCHROME1: return "monochrome1";
    case MS_INVERT_PRESENTATION_LUT: return "presentation_lut_inverse";
    case MS_INVERT_NONE: break;
    }
    return "none";
}

const char *ms_spacing_source_name(ms_spacing_source s) {
    switch (s) {
    case MS_SPACING_PIXEL: return "pixel_spacing";
    case MS_SPACING_IMAGER: return "imager_pixel_spacing";
    case MS_SPACING_NONE: break;
    }
    return "none";
}
