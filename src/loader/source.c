#include <string.h>

#include "loader_internal.h"

struct ms_source {
    ms_format format;
    const uint8_t *data;
    size_t size;
    uint8_t *owned; /* the file bytes when opened from a path */
    ms_dicom *dicom;
    ms_limits lim;
    char name[1024];
};

static bool is_even_group(uint16_t g) { return g >= 0x0002 && g <= 0x0028 && (g & 1) == 0; }

/* A data set without preamble or meta header (PS3.10 7.1 allows neither to be absent, but
 * PACS exports do it): the first element is a small even group, then either an explicit VR
 * (two upper-case letters) or an implicit 32-bit length that fits the file. */
static bool looks_like_bare_dataset(const uint8_t *d, size_t n) {
    if (n < 8) return false;
    uint16_t g_le = (uint16_t)(d[0] | d[1] << 8), g_be = (uint16_t)(d[0] << 8 | d[1]);
    bool le = is_even_group(g_le), be = is_even_group(g_be);
    if (!le && !be) return false;
    if (d[4] >= 'A' && d[4] <= 'Z' && d[5] >= 'A' && d[5] <= 'Z') return true;
    if (!le) return false;
    uint32_t len =
        (uint32_t)d[4] | (uint32_t)d[5] << 8 | (uint32_t)d[6] << 16 | (uint32_t)d[7] << 24;
    return len <= n - 8;
}

ms_format ms_format_detect(const uint8_t *d, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (d == NULL) return MS_FORMAT_UNKNOWN;
    if (n >= 132 && memcmp(d + 128, "DICM", 4) == 0) return MS_FORMAT_DICOM;
    if (n >= 8 && memcmp(d, png_sig, 8) == 0) return MS_FORMAT_PNG;
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return MS_FORMAT_JPEG;
    if (looks_like_bare_dataset(d, n)) return MS_FORMAT_DICOM;
    return MS_FORMAT_UNKNOWN;
}

ms_status ms_source_open_memory(const uint8_t *data, size_t size, const char *name,
                                const ms_limits *lim, ms_source **out, ms_err *err) {
    ms_limits deflim = ms_limits_default();
    if (lim == NULL) lim = &deflim;
    if (name == NULL) name = "<memory>";
    if (data == NULL && size != 0) return ms_fail(err, MS_EINVAL, "%s: NULL data", name);
    if (size > lim->max_file_bytes)
        return ms_fail(err, MS_ELIMIT, "%s: input is %zu bytes, limit is %llu", name, size,
                       (unsigned long long)lim->max_file_bytes);
    ms_format fmt = ms_format_detect(data, size);
    if (fmt == MS_FORMAT_UNKNOWN) {
        if (size == 0) return ms_fail(err, MS_ENOTIMAGE, "%s: empty file", name);
        return ms_fail(err, MS_ENOTIMAGE,
                       "%s: not an image this tool reads (expected DICOM, PNG or JPEG)", name);
    }
    ms_source *src = ms_calloc(1, sizeof *src);
    if (src == NULL) return ms_fail(err, MS_ENOMEM, "%s: cannot allocate source", name);
    src->format = fmt;
    src->data = data;
    src->size = size;
    src->lim = *lim;
    ms_str_copy(src->name, sizeof src->name, name);
    if (fmt == MS_FORMAT_DICOM) {
        ms_status st = ms_dicom_open(data, size, src->name, lim, &src->dicom, err);
        if (st != MS_OK) {
            ms_free(src);
            return st;
        }
    }
    *out = src;
    return MS_OK;
}

ms_status ms_source_open_file(const char *path, const ms_limits *lim, ms_source **out,
                              ms_err *err) {
    ms_limits deflim = ms_limits_default();
    if (lim == NULL) lim = &deflim;
    uint8_t *data = NULL;
    size_t size = 0;
    ms_status st = ms_file_read_all(path, lim->max_file_bytes, &data, &size, err);
    if (st != MS_OK) return st;
    ms_source *src = NULL;
    st = ms_source_open_memory(data, size, path, lim, &src, err);
    if (st != MS_OK) {
        ms_free(data);
        return st;
    }
    src->owned = data;
    *out = src;
    return MS_OK;
}

ms_format ms_source_format(const ms_source *src) { return src->format; }

uint32_t ms_source_frame_count(const ms_source *src) {
    return src->format == MS_FORMAT_DICOM ? ms_dicom_frame_count(src->dicom) : 1u;
}

ms_status ms_source_decode(ms_source *src, const ms_decode_opts *opts, ms_image **out,
                           ms_err *err) {
    ms_decode_opts defopts = ms_decode_opts_default();
    if (opts == NULL) opts = &defopts;
    uint32_t frames = ms_source_frame_count(src);
    if (opts->frame >= frames)
        return ms_fail(err, MS_EINVAL, "%s: frame %u requested, the image has %u frame%s",
                       src->name, opts->frame, frames, frames == 1 ? "" : "s");
    switch (src->format) {
    case MS_FORMAT_DICOM: return ms_dicom_decode_frame(src->dicom, opts, out, err);
    case MS_FORMAT_PNG:
        return ms_png_decode(src->data, src->size, src->name, opts, &src->lim, out, err);
    case MS_FORMAT_JPEG:
        return ms_jpeg_decode(src->data, src->size, src->name, opts, &src->lim, out, err);
    case MS_FORMAT_UNKNOWN: break;
    }
    return ms_fail(err, MS_EINTERNAL, "%s: unknown format", src->name);
}

void ms_source_destroy(ms_source *src) {
    if (src == NULL) return;
    ms_dicom_close(src->dicom);
    ms_free(src->owned);
    ms_free(src);
}

ms_status ms_image_decode(const uint8_t *data, size_t size, const char *name,
                          const ms_decode_opts *opts, const ms_limits *lim, ms_image **out,
                          ms_err *err) {
    ms_source *src = NULL;
    ms_status st = ms_source_open_memory(data, size, name, lim, &src, err);
    if (st != MS_OK) return st;
    st = ms_source_decode(src, opts, out, err);
    ms_source_destroy(src);
    return st;
}

ms_status ms_image_load(const char *path, const ms_decode_opts *opts, const ms_limits *lim,
                        ms_image **out, ms_err *err) {
    ms_source *src = NULL;
    ms_status st = ms_source_open_file(path, lim, &src, err);
    if (st != MS_OK) return st;
    st = ms_source_decode(src, opts, out, err);
    ms_source_destroy(src);
    return st;
}
