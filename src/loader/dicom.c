/* DICOM objects: validation of the header against whitelists and limits, frame decoding
 * (DCMTK for native, JPEG, JPEG-LS and RLE; OpenJPEG for JPEG 2000 / HTJ2K) and the pixel
 * pipeline in the order of PS3.4 N.2: stored value, Modality LUT, VOI LUT, Presentation LUT. */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "dicom_dcmtk.h"
#include "dicom_pixels.h"
#include "j2k.h"
#include "rle.h"
#include "loader_internal.h"

typedef enum ts_codec { TS_NATIVE, TS_DCMTK, TS_J2K, TS_RLE } ts_codec;

typedef struct ts_info {
    const char *uid;
    const char *name;
    ts_codec codec;
} ts_info;

/* Transfer syntaxes we decode (PS3.6 Annex A). Anything else is refused by name. */
static const ts_info k_transfer_syntaxes[] = {
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", TS_NATIVE},
    {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", TS_NATIVE},
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", TS_NATIVE},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian", TS_NATIVE},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", TS_DCMTK},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", TS_DCMTK},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless (Process 14)", TS_DCMTK},
    {"1.2.840.10008.1.2.4.70", "JPEG Lossless SV1", TS_DCMTK},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", TS_DCMTK},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless", TS_DCMTK},
    {"1.2.840.10008.1.2.5", "RLE Lossless", TS_RLE},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless", TS_J2K},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000", TS_J2K},
    {"1.2.840.10008.1.2.4.201", "HTJ2K Lossless", TS_J2K},
    {"1.2.840.10008.1.2.4.202", "HTJ2K Lossless RPCL", TS_J2K},
    {"1.2.840.10008.1.2.4.203", "HTJ2K", TS_J2K},
};

static const char *const k_deflate_uid = "1.2.840.10008.1.2.1.99";

struct ms_dicom {
    ms_dcmtk *dcmtk;
    uint8_t *inflated; /* a deflated data set, inflated; DCMTK reads values from it lazily */
    ms_dcm_attrs attrs;
    const ts_info *ts;
    ms_limits lim;
    size_t frame_bytes; /* decoded bytes of one frame */
    char name[1024];
};

static const ts_info *find_ts(const char *uid) {
    for (size_t i = 0; i < sizeof k_transfer_syntaxes / sizeof k_transfer_syntaxes[0]; i++)
        if (strcmp(k_transfer_syntaxes[i].uid, uid) == 0) return &k_transfer_syntaxes[i];
    return NULL;
}

static bool is_long_vr(const uint8_t *vr) {
    static const char *const long_vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                           "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof long_vrs / sizeof long_vrs[0]; i++)
        if (vr[0] == long_vrs[i][0] && vr[1] == long_vrs[i][1]) return true;
    return false;
}

/* Finds the Transfer Syntax UID and the end of the File Meta Information (PS3.10 7.1), which
 * is always Explicit VR Little Endian. Returns false if there is no usable meta group. */
static bool read_meta(const uint8_t *data, size_t size, char *ts, size_t ts_size,
                      size_t *dataset_offset) {
    ts[0] = '\0';
    if (size < 132 || memcmp(data + 128, "DICM", 4) != 0) return false;
    ms_rd rd = ms_rd_init(data + 132, size - 132);
    for (;;) {
        ms_rd peek = rd;
        uint16_t group, elem;
        const uint8_t *vr, *value;
        if (!ms_rd_u16le(&peek, &group) || group != 0x0002) break;
        if (!ms_rd_u16le(&peek, &elem) || !ms_rd_bytes(&peek, &vr, 2)) return false;
        uint32_t len;
        if (is_long_vr(vr)) {
            if (!ms_rd_skip(&peek, 2) || !ms_rd_u32le(&peek, &len)) return false;
        } else {
            uint16_t len16;
            if (!ms_rd_u16le(&peek, &len16)) return false;
            len = len16;
        }
        if (!ms_rd_bytes(&peek, &value, len)) return false;
        if (elem == 0x0010) {
            size_t n = len < ts_size - 1 ? len : ts_size - 1;
            memcpy(ts, value, n);
            while (n > 0 && (ts[n - 1] == '\0' || ts[n - 1] == ' ')) n--;
            ts[n] = '\0';
        }
        rd = peek;
    }
    *dataset_offset = size - rd.left;
    return true;
}

/* Inflates a deflated data set (PS3.5 A.5) into memory, refusing more than the decoded-bytes
 * limit, so that a decompression bomb is stopped before DCMTK sees it. *out is NULL when the
 * file is not deflated. */
static ms_status inflate_dataset(const uint8_t *data, size_t size, const char *name,
                                 const char *meta_ts, const ms_limits *lim, uint8_t **out,
                                 size_t *out_size, ms_err *err) {
    char ts[65];
    size_t off = 0;
    *out = NULL;
    *out_size = 0;
    if (strcmp(meta_ts, k_deflate_uid) != 0) return MS_OK;
    /* DCMTK must never inflate on its own (it would trust the lengths inside), so a meta
     * header it accepts but we cannot walk is refused. */
    if (!read_meta(data, size, ts, sizeof ts, &off) || strcmp(ts, k_deflate_uid) != 0)
        return ms_fail(err, MS_EFORMAT, "%s: malformed File Meta Information in a deflated file",
                       name);
    static const int window_bits[2] = {-15, 15}; /* raw deflate per PS3.5 A.5; zlib seen too */
    for (int attempt = 0; attempt < 2; attempt++) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, window_bits[attempt]) != Z_OK)
            return ms_fail(err, MS_ENOMEM, "%s: cannot start zlib", name);
        size_t cap = 0, used = 0, left = size - off;
        uint8_t *buf = NULL;
        int rc = Z_OK;
        zs.next_in = (Bytef *)(uintptr_t)(data + off);
        while (rc == Z_OK) {
            if (zs.avail_in == 0 && left > 0) {
                uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
                zs.avail_in = chunk;
                left -= chunk;
            }
            if (used == cap) {
                size_t want = cap ? cap * 2 : (size_t)1 << 16;
                if (want > lim->max_decoded_bytes) want = (size_t)lim->max_decoded_bytes + 1;
                if (want <= cap) {
                    inflateEnd(&zs);
                    ms_free(buf);
                    return ms_fail(err, MS_ELIMIT,
                                   "%s: deflated data set inflates to more than %llu bytes "
                                   "(decompression bomb?)",
                                   name, (unsigned long long)lim->max_decoded_bytes);
                }
                uint8_t *grown = ms_realloc(buf, want);
                if (grown == NULL) {
                    inflateEnd(&zs);
                    ms_free(buf);
                    return ms_fail(err, MS_ENOMEM, "%s: cannot allocate %zu bytes to inflate", name,
                                   want);
                }
                buf = grown;
                cap = want;
            }
            zs.next_out = buf + used;
            zs.avail_out = (uInt)(cap - used > (1u << 30) ? (1u << 30) : cap - used);
            uInt before = zs.avail_out;
            rc = inflate(&zs, Z_NO_FLUSH);
            used += before - zs.avail_out;
            if (rc == Z_BUF_ERROR && zs.avail_in == 0 && left == 0) break; /* truncated */
            if (rc == Z_BUF_ERROR && zs.avail_out > 0) break;
            if (rc == Z_BUF_ERROR) rc = Z_OK; /* output full: grow and go on */
        }
        inflateEnd(&zs);
        if ((rc == Z_STREAM_END || rc == Z_BUF_ERROR) && used > 0) {
            if (rc != Z_STREAM_END) ms_log(MS_LOG_WARN, "%s: deflated data set ends early", name);
            *out = buf;
            *out_size = used;
            return MS_OK;
        }
        ms_free(buf);
    }
    return ms_fail(err, MS_EFORMAT, "%s: deflated data set is not a valid deflate stream", name);
}

static bool photometric_is(const ms_dcm_attrs *a, const char *s) {
    return strcmp(a->photometric, s) == 0;
}

static bool is_mono(const char *pi) {
    return strcmp(pi, "MONOCHROME1") == 0 || strcmp(pi, "MONOCHROME2") == 0;
}

/* Validates the header against whitelists and limits (PS3.3 C.7.6.3) before any pixel
 * buffer is sized. Fills in defaults for attributes that writers commonly omit. */
static ms_status validate(ms_dicom *d, ms_err *err) {
    ms_dcm_attrs *a = &d->attrs;
    const char *name = d->name;
    if (!a->has_pixel_data) {
        if (a->has_float_pixel_data)
            return ms_fail(err, MS_EUNSUPPORTED, "%s: float pixel data are not supported", name);
        return ms_fail(err, MS_ENOPIXELS, "%s: no pixel data (modality %s, SOP class %s)", name,
                       a->modality[0] ? a->modality : "unknown",
                       a->sop_class_uid[0] ? a->sop_class_uid : "unknown");
    }
    d->ts = find_ts(a->transfer_syntax);
    if (d->ts == NULL)
        return ms_fail(err, MS_EUNSUPPORTED, "%s: transfer syntax %s is not supported", name,
                       a->transfer_syntax[0] ? a->transfer_syntax : "(missing)");
    if ((d->ts->codec == TS_NATIVE) == a->encapsulated)
        return ms_fail(err, MS_EFORMAT, "%s: pixel data are %s but the transfer syntax is %s", name,
                       a->encapsulated ? "encapsulated" : "native", d->ts->name);
    if (!a->has_bits_allocated)
        return ms_fail(err, MS_EFORMAT, "%s: Bits Allocated is missing", name);
    if (a->bits_allocated != 1 && a->bits_allocated != 8 && a->bits_allocated != 16 &&
        a->bits_allocated != 32)
        return ms_fail(err, MS_EUNSUPPORTED, "%s: Bits Allocated is %u, expected 1, 8, 16 or 32",
                       name, (unsigned)a->bits_allocated);
    if (a->bits_allocated == 1 &&
        (a->encapsulated || a->samples_per_pixel > 1 || !is_mono(a->photometric)))
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: 1-bit pixel data are supported only native and monochrome", name);
    if (!a->has_bits_stored) a->bits_stored = a->bits_allocated;
    if (!a->has_high_bit) a->high_bit = (uint16_t)(a->bits_stored - 1u);
    if (a->bits_stored == 0 || a->bits_stored > a->bits_allocated)
        return ms_fail(err, MS_EFORMAT, "%s: Bits Stored is %u with Bits Allocated %u", name,
                       (unsigned)a->bits_stored, (unsigned)a->bits_allocated);
    if (a->high_bit >= a->bits_allocated || a->high_bit + 1u < a->bits_stored)
        return ms_fail(err, MS_EFORMAT, "%s: High Bit is %u with Bits Stored %u, Bits Allocated %u",
                       name, (unsigned)a->high_bit, (unsigned)a->bits_stored,
                       (unsigned)a->bits_allocated);
    if (a->pixel_representation > 1)
        return ms_fail(err, MS_EFORMAT, "%s: Pixel Representation is %u", name,
                       (unsigned)a->pixel_representation);
    if (!a->has_samples_per_pixel) a->samples_per_pixel = 1;
    if (a->samples_per_pixel != 1 && a->samples_per_pixel != 3)
        return ms_fail(err, MS_EUNSUPPORTED, "%s: Samples per Pixel is %u, expected 1 or 3", name,
                       (unsigned)a->samples_per_pixel);
    if (a->photometric[0] == '\0') {
        if (a->samples_per_pixel != 1)
            return ms_fail(err, MS_EFORMAT, "%s: Photometric Interpretation is missing", name);
        ms_str_copy(a->photometric, sizeof a->photometric, "MONOCHROME2");
        ms_log(MS_LOG_WARN, "%s: Photometric Interpretation missing; assuming MONOCHROME2", name);
    }
    static const char *const mono_pi[] = {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"};
    static const char *const color_pi[] = {
        "RGB",     "YBR_FULL",        "YBR_FULL_422",   "YBR_ICT",
        "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"};
    bool ok = false;
    const char *const *list = a->samples_per_pixel == 1 ? mono_pi : color_pi;
    size_t count = a->samples_per_pixel == 1 ? 3 : 7;
    for (size_t i = 0; i < count; i++) ok = ok || strcmp(a->photometric, list[i]) == 0;
    if (!ok)
        return ms_fail(
            err, MS_EUNSUPPORTED,
            "%s: Photometric Interpretation %s with %u sample(s) per pixel is not supported", name,
            a->photometric, (unsigned)a->samples_per_pixel);
    if (photometric_is(a, "PALETTE COLOR") && a->has_segmented_palette)
        return ms_fail(err, MS_EUNSUPPORTED, "%s: segmented palette colour LUTs are not supported",
                       name);
    if (!a->encapsulated &&
        (photometric_is(a, "YBR_PARTIAL_420") || (photometric_is(a, "YBR_PARTIAL_422"))))
        return ms_fail(err, MS_EUNSUPPORTED, "%s: native %s pixel data are not supported", name,
                       a->photometric);

    ms_status st = ms_check_dimensions(name, a->columns, a->rows, &d->lim, err);
    if (st != MS_OK) return st;
    if (a->frames > d->lim.max_frames)
        return ms_fail(err, MS_ELIMIT, "%s: %u frames, limit is %u", name, a->frames,
                       d->lim.max_frames);
    /* Native YBR_FULL_422 stores two samples per pixel (PS3.3 C.7.6.3.1.2). */
    size_t samples =
        (!a->encapsulated && photometric_is(a, "YBR_FULL_422")) ? 2u : a->samples_per_pixel;
    size_t n; /* 1-bit frames are unpacked to a byte per pixel */
    size_t bytes_per_sample = a->bits_allocated == 1 ? 1u : a->bits_allocated / 8u;
    if (!ms_mul_size((size_t)a->rows, (size_t)a->columns, &n) || !ms_mul_size(n, samples, &n) ||
        !ms_mul_size(n, bytes_per_sample, &n))
        return ms_fail(err, MS_EOVERFLOW, "%s: frame size overflows", name);
    if (n > d->lim.max_decoded_bytes)
        return ms_fail(err, MS_ELIMIT, "%s: one frame decodes to %zu bytes, limit is %llu", name, n,
                       (unsigned long long)d->lim.max_decoded_bytes);
    d->frame_bytes = n;
    return MS_OK;
}

ms_status ms_dicom_open(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                        ms_dicom **out, ms_err *err) {
    /* Refuse video and other unsupported encodings by name before parsing them. */
    char ts[65];
    ms_status st = ms_dcmtk_meta_transfer_syntax(data, size, name, ts, err);
    if (st != MS_OK) return st;
    if (ts[0] != '\0' && find_ts(ts) == NULL)
        return ms_fail(err, MS_EUNSUPPORTED, "%s: transfer syntax %s is not supported", name, ts);
    uint8_t *inflated = NULL;
    size_t inflated_size = 0;
    st = inflate_dataset(data, size, name, ts, lim, &inflated, &inflated_size, err);
    if (st != MS_OK) return st;
    ms_dicom *d = ms_calloc(1, sizeof *d);
    if (d == NULL) {
        ms_free(inflated);
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate", name);
    }
    d->inflated = inflated;
    d->lim = *lim;
    ms_str_copy(d->name, sizeof d->name, name);
    if (inflated != NULL)
        st = ms_dcmtk_open(inflated, inflated_size, true, name, &d->dcmtk, err);
    else
        st = ms_dcmtk_open(data, size, false, name, &d->dcmtk, err);
    if (st != MS_OK) goto fail;
    st = ms_dcmtk_get_attrs(d->dcmtk, &d->attrs, err);
    if (st != MS_OK) goto fail;
    if (inflated != NULL) /* the meta header was read here, not by DCMTK */
        ms_str_copy(d->attrs.transfer_syntax, sizeof d->attrs.transfer_syntax, k_deflate_uid);
    st = validate(d, err);
    if (st != MS_OK) goto fail;
    *out = d;
    return MS_OK;
fail:
    ms_dicom_close(d);
    return st;
}

uint32_t ms_dicom_frame_count(const ms_dicom *d) { return d->attrs.frames; }

void ms_dicom_close(ms_dicom *d) {
    if (d == NULL) return;
    ms_dcm_attrs_free(&d->attrs);
    ms_dcmtk_close(d->dcmtk); /* before the bytes it may still read from */
    ms_free(d->inflated);
    ms_free(d);
}

/* Decodes one frame's samples into raw (frame_bytes, host order). For JPEG 2000 the
 * samples come out as planes and *color_model says what OpenJPEG produced. */
static ms_status decode_samples(ms_dicom *d, uint32_t frame, void *raw, size_t raw_size,
                                char color_model[17], uint16_t *planar, uint16_t *j2k_precision,
                                ms_err *err) {
    ms_dcm_attrs *a = &d->attrs;
    if (d->ts->codec == TS_RLE) {
        uint8_t *bits = NULL;
        size_t nbits = 0;
        ms_status st =
            ms_dcmtk_frame_bitstream(d->dcmtk, frame, d->lim.max_file_bytes, &bits, &nbits, err);
        if (st != MS_OK) return st;
        st = ms_rle_decode(bits, nbits, d->name, (size_t)a->rows * a->columns, a->samples_per_pixel,
                           a->bits_allocated / 8u, raw, raw_size, err);
        ms_free(bits);
        if (st != MS_OK) return st;
        ms_str_copy(color_model, 17, a->photometric);
        *planar = 1; /* segments are sample planes (PS3.5 G.2) */
        return MS_OK;
    }
    if (d->ts->codec != TS_J2K) {
        if (!a->encapsulated && a->bits_allocated != 1) {
            uint64_t need = ((uint64_t)frame + 1u) * d->frame_bytes;
            if (a->pixel_data_length < need)
                return ms_fail(err, MS_EFORMAT,
                               "%s: pixel data have %u bytes, frame %u needs %llu (truncated?)",
                               d->name, a->pixel_data_length, frame, (unsigned long long)need);
        }
        return ms_dcmtk_decode_frame(d->dcmtk, frame, d->frame_bytes, raw, raw_size, color_model,
                                     planar, err);
    }
    uint8_t *bits = NULL;
    size_t nbits = 0;
    ms_status st =
        ms_dcmtk_frame_bitstream(d->dcmtk, frame, d->lim.max_file_bytes, &bits, &nbits, err);
    if (st != MS_OK) return st;
    ms_j2k_info info;
    st = ms_j2k_decode(bits, nbits, d->name, a->columns, a->rows, a->samples_per_pixel,
                       a->bits_allocated / 8u, raw, raw_size, &info, err);
    ms_free(bits);
    if (st != MS_OK) return st;
    if (info.is_signed != (a->pixel_representation == 1))
        ms_log(MS_LOG_INFO,
               "%s: JPEG 2000 signedness differs from Pixel Representation %u; "
               "the header wins",
               d->name, (unsigned)a->pixel_representation);
    *j2k_precision = (uint16_t)info.precision;
    /* OpenJPEG undoes the multiple-component transform, so YBR_ICT/RCT arrive as RGB. */
    const char *pi = a->photometric;
    if (strcmp(pi, "YBR_ICT") == 0 || strcmp(pi, "YBR_RCT") == 0) pi = "RGB";
    ms_str_copy(color_model, 17, pi);
    *planar = 1;
    return MS_OK;
}

static ms_status resolve_voi(const ms_dicom *d, const ms_dcm_frame_values *fv,
                             const ms_decode_opts *opts, ms_mono_params *p, ms_provenance *prov,
                             ms_err *err) {
    const ms_dcm_attrs *a = &d->attrs;
    if (opts->user_window) {
        p->voi = MS_VOI_USER_WINDOW;
        p->voi_function = opts->window_function;
        p->center = opts->window_center;
        p->width = opts->window_width;
        return MS_OK;
    }
    if (opts->auto_window) {
        p->voi = MS_VOI_AUTO_MINMAX;
        return MS_OK;
    }
    uint32_t k = opts->voi_index;
    if (k > 0 && k >= fv->n_windows && k >= a->n_voi_luts)
        return ms_fail(err, MS_EINVAL,
                       "%s: VOI index %u requested; the file has %u window(s) and %u VOI LUT(s)",
                       d->name, k, fv->n_windows, a->n_voi_luts);
    if (k < fv->n_windows) {
        ms_voi_function fn = MS_VOI_FN_LINEAR;
        if (strcmp(fv->voi_lut_function, "LINEAR_EXACT") == 0)
            fn = MS_VOI_FN_LINEAR_EXACT;
        else if (strcmp(fv->voi_lut_function, "SIGMOID") == 0)
            fn = MS_VOI_FN_SIGMOID;
        else if (fv->voi_lut_function[0] && strcmp(fv->voi_lut_function, "LINEAR") != 0)
            ms_log(MS_LOG_WARN, "%s: unknown VOI LUT Function %s; using LINEAR", d->name,
                   fv->voi_lut_function);
        double w = fv->window_width[k];
        /* PS3.3 C.11.2.1.2 wants LINEAR widths >= 1, but objects with tiny rescale slopes
         * (RT images, PET) carry narrower ones that viewers honour; LINEAR_EXACT is the
         * continuous form of LINEAR and is well defined there. */
        if (fn == MS_VOI_FN_LINEAR && w > 0.0 && w < 1.0) fn = MS_VOI_FN_LINEAR_EXACT;
        if (w > 0.0) {
            p->voi = MS_VOI_WINDOW;
            p->voi_function = fn;
            p->center = fv->window_center[k];
            p->width = w;
            prov->voi_index = k;
            return MS_OK;
        }
        ms_log(MS_LOG_WARN, "%s: Window Width %g is invalid; ignoring the window", d->name, w);
    }
    if (k < a->n_voi_luts) {
        p->voi = MS_VOI_LUT_SEQUENCE;
        p->voi_lut = &a->voi_lut[k];
        prov->voi_index = k;
        return MS_OK;
    }
    p->voi = MS_VOI_AUTO_MINMAX;
    return MS_OK;
}

static ms_color_model color_model_of(const char *pi, bool encapsulated) {
    if (strcmp(pi, "PALETTE COLOR") == 0) return MS_CM_PALETTE;
    if (strcmp(pi, "YBR_FULL") == 0) return MS_CM_YBR_FULL;
    if (strcmp(pi, "YBR_FULL_422") == 0) return encapsulated ? MS_CM_YBR_FULL : MS_CM_YBR_FULL_422;
    return MS_CM_RGB;
}

static void fill_provenance(const ms_dicom *d, uint32_t frame, ms_provenance *p) {
    const ms_dcm_attrs *a = &d->attrs;
    p->format = MS_FORMAT_DICOM;
    ms_str_copy(p->transfer_syntax, sizeof p->transfer_syntax, a->transfer_syntax);
    ms_str_copy(p->photometric, sizeof p->photometric, a->photometric);
    p->bits_allocated = a->bits_allocated;
    p->bits_stored = a->bits_stored;
    p->high_bit = a->high_bit;
    p->samples_per_pixel = a->samples_per_pixel;
    p->planar_configuration = a->planar_configuration;
    p->is_signed = a->pixel_representation == 1;
    p->frame_index = frame;
    p->frame_count = a->frames;
    if (a->has_pixel_spacing) {
        p->spacing_source = MS_SPACING_PIXEL;
        p->spacing_row_mm = a->pixel_spacing[0];
        p->spacing_col_mm = a->pixel_spacing[1];
    } else if (a->has_imager_pixel_spacing) {
        p->spacing_source = MS_SPACING_IMAGER;
        p->spacing_row_mm = a->imager_pixel_spacing[0];
        p->spacing_col_mm = a->imager_pixel_spacing[1];
    }
    ms_str_copy(p->modality, sizeof p->modality, a->modality);
    ms_str_copy(p->body_part, sizeof p->body_part, a->body_part);
    ms_str_copy(p->view_position, sizeof p->view_position, a->view_position);
    ms_str_copy(p->study_uid, sizeof p->study_uid, a->study_uid);
    ms_str_copy(p->series_uid, sizeof p->series_uid, a->series_uid);
    ms_str_copy(p->sop_uid, sizeof p->sop_uid, a->sop_uid);
    ms_str_copy(p->sop_class_uid, sizeof p->sop_class_uid, a->sop_class_uid);
}

static ms_status mono_frame(ms_dicom *d, const ms_dcm_frame_values *fv, const ms_decode_opts *opts,
                            const void *raw, const ms_sample_layout *layout, ms_image *img,
                            ms_err *err) {
    const ms_dcm_attrs *a = &d->attrs;
    ms_provenance *prov = &img->prov;
    ms_mono_params p;
    memset(&p, 0, sizeof p);
    p.layout = *layout;
    /* Modality LUT, PS3.3 C.11.1: a LUT Sequence, else Rescale Slope/Intercept. */
    if (a->modality_lut.data != NULL) {
        p.modality = MS_MODLUT_SEQUENCE;
        p.modality_lut = &a->modality_lut;
    } else if (fv->has_rescale) {
        p.modality = MS_MODLUT_RESCALE;
        p.slope = fv->rescale_slope;
        p.intercept = fv->rescale_intercept;
    }
    ms_status st = resolve_voi(d, fv, opts, &p, prov, err);
    if (st != MS_OK) return st;
    /* Presentation, PS3.3 C.7.6.3.1.2 and C.11.6: MONOCHROME1 displays its minimum as white;
     * Presentation LUT Shape INVERSE inverts MONOCHROME2. For MONOCHROME1 an INVERSE shape
     * describes that same inversion (DX Image Module, C.8.11.2), so it is not applied twice. */
    if (strcmp(a->photometric, "MONOCHROME1") == 0) {
        p.invert = true;
        prov->inversion = MS_INVERT_MONOCHROME1;
    } else if (strcmp(a->presentation_lut_shape, "INVERSE") == 0) {
        p.invert = true;
        prov->inversion = MS_INVERT_PRESENTATION_LUT;
    }
    size_t plane = (size_t)img->width * (size_t)img->height;
    double c = 0, w = 0;
    st = ms_mono_to_float(&p, raw, plane, img->data, &c, &w, err);
    if (st != MS_OK) {
        if (st == MS_EINVAL) /* a user window the pipeline refused */
            return ms_fail(err, MS_EINVAL, "%s: %s", d->name, err ? err->msg : "bad window");
        return st;
    }
    for (int32_t ch = 1; ch < img->channels; ch++)
        memcpy(img->data + (size_t)ch * plane, img->data, plane * sizeof(float));
    prov->modality_lut = p.modality;
    prov->rescale_slope = p.modality == MS_MODLUT_RESCALE ? p.slope : 1.0;
    prov->rescale_intercept = p.modality == MS_MODLUT_RESCALE ? p.intercept : 0.0;
    prov->voi = p.voi;
    prov->voi_function = p.voi == MS_VOI_AUTO_MINMAX ? MS_VOI_FN_LINEAR_EXACT : p.voi_function;
    prov->window_center = p.voi == MS_VOI_LUT_SEQUENCE ? 0 : c;
    prov->window_width = p.voi == MS_VOI_LUT_SEQUENCE ? 0 : w;
    ms_str_copy(prov->color_conversion, sizeof prov->color_conversion,
                img->channels == 3 ? "gray_to_rgb" : "none");
    return MS_OK;
}

ms_status ms_dicom_decode_frame(ms_dicom *d, const ms_decode_opts *opts, ms_image **out,
                                ms_err *err) {
    const ms_dcm_attrs *a = &d->attrs;
    void *owned = NULL;
    const void *raw = NULL;
    ms_image *img = NULL;
    char model[17] = "";
    uint16_t planar = a->planar_configuration, j2k_precision = 0;
    /* Native little-endian frames are read where DCMTK holds them: no copy. */
    ms_status st = MS_EUNSUPPORTED;
    if (d->ts->codec == TS_NATIVE)
        st = ms_dcmtk_native_frame_view(d->dcmtk, opts->frame, d->frame_bytes, &raw, err);
    if (st != MS_OK && st != MS_EUNSUPPORTED) goto fail;
    if (st == MS_EUNSUPPORTED) {
        size_t raw_size = d->frame_bytes + (d->frame_bytes & 1u); /* DCMTK wants an even size */
        owned = ms_malloc(raw_size);
        if (owned == NULL) {
            st = ms_fail(err, MS_ENOMEM, "%s: cannot allocate %zu bytes for a frame", d->name,
                         raw_size);
            goto fail;
        }
        st = decode_samples(d, opts->frame, owned, raw_size, model, &planar, &j2k_precision, err);
        if (st != MS_OK) goto fail;
        raw = owned;
    }
    if (model[0] == '\0') ms_str_copy(model, sizeof model, a->photometric);

    bool gray_out = opts->color == MS_COLOR_GRAY;
    bool mono = is_mono(model);
    st = ms_image_create(a->columns, a->rows, gray_out ? 1 : 3, &img, err);
    if (st != MS_OK) {
        st = ms_fail(err, st, "%s: %s", d->name, err ? err->msg : "cannot allocate image");
        goto fail;
    }
    fill_provenance(d, opts->frame, &img->prov);
    ms_sample_layout layout = {a->bits_allocated, a->bits_stored, a->high_bit,
                               a->pixel_representation == 1};
    if (a->bits_allocated == 1) { /* unpacked to bytes of 0 or 1 */
        layout.bits_allocated = 8;
        layout.bits_stored = 1;
        layout.high_bit = 0;
        layout.is_signed = false;
    }
    if (d->ts->codec == TS_J2K) {
        /* OpenJPEG gives integers; they are the stored values, right-aligned. When the
         * codestream is more precise than Bits Stored claims, masking would wrap the
         * brightest pixels to black: the codestream wins, as in GDCM and pydicom. */
        if (j2k_precision > layout.bits_stored && j2k_precision <= layout.bits_allocated) {
            ms_log(MS_LOG_INFO, "%s: JPEG 2000 precision %u exceeds Bits Stored %u; using %u",
                   d->name, (unsigned)j2k_precision, (unsigned)layout.bits_stored,
                   (unsigned)j2k_precision);
            layout.bits_stored = j2k_precision;
        }
        layout.high_bit = (uint16_t)(layout.bits_stored - 1u);
    }
    if (mono) {
        ms_dcm_frame_values fv = a->fv;
        if (opts->frame != 0) {
            st = ms_dcmtk_get_frame_values(d->dcmtk, opts->frame, &fv, err);
            if (st != MS_OK) goto fail;
        }
        st = mono_frame(d, &fv, opts, raw, &layout, img, err);
        if (st != MS_OK) goto fail;
    } else {
        if (a->samples_per_pixel == 3 && strcmp(model, "PALETTE COLOR") == 0) {
            st = ms_fail(err, MS_EFORMAT, "%s: PALETTE COLOR with 3 samples per pixel", d->name);
            goto fail;
        }
        if (strcmp(model, "YBR_PARTIAL_420") == 0 || strcmp(model, "YBR_PARTIAL_422") == 0) {
            st = ms_fail(err, MS_EUNSUPPORTED, "%s: decoded colour model %s is not supported",
                         d->name, model);
            goto fail;
        }
        ms_color_params cp;
        memset(&cp, 0, sizeof cp);
        cp.layout = layout;
        cp.layout.is_signed = false; /* colour samples are unsigned (PS3.3 C.7.6.3.1.4) */
        cp.model = color_model_of(model, a->encapsulated);
        cp.planar_configuration = planar;
        cp.palette = a->palette;
        st = ms_color_to_float(&cp, raw, img->width, img->height, gray_out, img->data, err);
        if (st != MS_OK) {
            st = ms_fail(err, MS_EFORMAT, "%s: %s", d->name, err ? err->msg : "colour conversion");
            goto fail;
        }
        const char *conv = cp.model == MS_CM_PALETTE ? "palette"
                           : cp.model == MS_CM_RGB   ? "rgb"
                                                     : "ybr";
        char buf[24];
        snprintf(buf, sizeof buf, "%s_to_%s", conv, gray_out ? "luma" : "rgb");
        ms_str_copy(img->prov.color_conversion, sizeof img->prov.color_conversion,
                    strcmp(buf, "rgb_to_rgb") == 0 ? "none" : buf);
        img->prov.voi = MS_VOI_NONE;
        img->prov.rescale_slope = 1.0;
    }
    ms_free(owned);
    *out = img;
    return MS_OK;
fail:
    ms_image_destroy(img);
    ms_free(owned);
    return st;
}
