/* JPEG decoding with libjpeg-turbo's libjpeg API (jpeg_mem_src), into planar float [0, 1].
 *
 * Supported: 8-bit baseline, extended (SOF1) and progressive JPEG, Huffman or arithmetic
 * coded, grey (1 component), YCbCr or RGB (3 components). Refused with MS_EUNSUPPORTED:
 * other sample precisions (12-bit), lossless (SOF3/7/11/15), hierarchical (SOF5/6/13/14),
 * and CMYK/YCCK: converting CMYK to RGB needs a colour profile (and Adobe's inverted-CMYK
 * convention), and a guess would silently change intensities. Medical JPEGs are grey or
 * YCbCr in practice.
 *
 * Grey output of a YCbCr file is its Y channel (libjpeg's YCbCr -> grayscale takes Y), which
 * is Rec. 601 luma. Grey output of an RGB-coded file uses ms_luma601 on the RGB samples.
 *
 * libjpeg treats many corruptions as warnings and carries on: a truncated file gets a fake
 * EOI and grey padding, a broken entropy segment gets zeroed coefficients. Those are silent
 * wrong answers, so the warnings that mean pixel data is missing or wrong are errors here
 * (see jpgd_fatal_warning()); the others go to ms_log at debug level.
 *
 * libjpeg's own allocations do not pass through ms_malloc (see medscreen.h); its memory is
 * capped with max_memory_to_use, and progressive scans are capped by MS_JPEG_MAX_SCANS. */
#include <limits.h>
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t */
#include <string.h>

#include <jpeglib.h>
/* after jpeglib.h: its message list depends on jconfig.h */
#include <jerror.h>

#include "loader_internal.h"

/* A progressive JPEG with thousands of tiny scans costs a full pass over the coefficients
 * per scan (a CPU bomb). Real encoders emit about 10; libjpeg-turbo's own tools suggest 500. */
#define MS_JPEG_MAX_SCANS 500

typedef struct jpgd_ctx {
    struct jpeg_error_mgr pub; /* first member: libjpeg hands back &pub as cinfo->err */
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    const char *name;
    ms_status st;                   /* status for the longjmp path */
    char msg[JMSG_LENGTH_MAX + 32]; /* message for the longjmp path */
    ms_image *img;                  /* owned here until handed to the caller */
    uint8_t *row;                   /* one decoded scanline */
} jpgd_ctx;

static ms_status jpgd_classify(int code) {
    switch (code) {
    case JERR_OUT_OF_MEMORY: return MS_ENOMEM;
    case JERR_BAD_PRECISION:
    case JERR_SOF_UNSUPPORTED:
    case JERR_NOT_COMPILED:
    case JERR_CONVERSION_NOTIMPL:
    case JERR_ARITH_NOTIMPL: return MS_EUNSUPPORTED;
    case JERR_IMAGE_TOO_BIG:
    case JERR_WIDTH_OVERFLOW:
    case JERR_NO_BACKING_STORE: /* max_memory_to_use exceeded */ return MS_ELIMIT;
    default: return MS_EFORMAT;
    }
}

static void jpgd_error_exit_cb(j_common_ptr cinfo) {
    jpgd_ctx *c = (jpgd_ctx *)(void *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buf);
    c->st = jpgd_classify(cinfo->err->msg_code);
    if (c->st == MS_ELIMIT && cinfo->err->msg_code == JERR_NO_BACKING_STORE)
        snprintf(c->msg, sizeof c->msg,
                 "JPEG needs more than %ld bytes of decoder memory (2 x max_decoded_bytes)",
                 cinfo->mem != NULL ? cinfo->mem->max_memory_to_use : 0L);
    else
        snprintf(c->msg, sizeof c->msg, "JPEG error: %s", buf);
    longjmp(c->jb, 1);
}

static void jpgd_output_message_cb(j_common_ptr cinfo) {
    jpgd_ctx *c = (jpgd_ctx *)(void *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buf);
    ms_log(MS_LOG_DEBUG, "%s: JPEG warning: %s", c->name, buf);
}

/* Warnings after which the decoded pixels are not the encoded ones. */
static bool jpgd_fatal_warning(int code) {
    switch (code) {
    case JWRN_JPEG_EOF:      /* premature end of file: libjpeg pads with grey */
    case JWRN_HIT_MARKER:    /* entropy segment ended early: rest of the segment zeroed */
    case JWRN_HUFF_BAD_CODE: /* invalid Huffman code: coefficients zeroed */
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC: /* restart marker missing: blocks lost or shifted */ return true;
    default: return false;
    }
}

static void jpgd_emit_message_cb(j_common_ptr cinfo, int level) {
    if (level >= 0) return; /* trace messages */
    jpgd_ctx *c = (jpgd_ctx *)(void *)cinfo->err;
    int code = cinfo->err->msg_code;
    cinfo->err->num_warnings++;
    if (jpgd_fatal_warning(code)) {
        c->st = MS_EFORMAT;
        if (code == JWRN_JPEG_EOF) {
            snprintf(c->msg, sizeof c->msg, "truncated JPEG data");
        } else {
            char buf[JMSG_LENGTH_MAX];
            (*cinfo->err->format_message)(cinfo, buf);
            snprintf(c->msg, sizeof c->msg, "JPEG error: %s", buf);
        }
        longjmp(c->jb, 1);
    }
    (*cinfo->err->output_message)(cinfo);
}

static void jpgd_progress_cb(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > MS_JPEG_MAX_SCANS) {
        jpgd_ctx *c = (jpgd_ctx *)(void *)cinfo->err;
        c->st = MS_ELIMIT;
        snprintf(c->msg, sizeof c->msg, "JPEG has more than %d scans", MS_JPEG_MAX_SCANS);
        longjmp(c->jb, 1);
    }
}

static bool rd_u16be(ms_rd *rd, uint16_t *v) {
    const uint8_t *p;
    if (!ms_rd_bytes(rd, &p, 2)) return false;
    *v = (uint16_t)(p[0] << 8 | p[1]);
    return true;
}

/* Walks the markers up to the first SOFn to refuse, with a precise message, the processes
 * libjpeg-turbo cannot decode at 8 bits (its own messages, e.g. "Unsupported JPEG data
 * precision 12" from jpeg_read_header, do not say what to do). A malformed marker structure
 * is not reported here; libjpeg reports it. */
static ms_status jpgd_prescan(const uint8_t *data, size_t size, const char *name, ms_err *err) {
    ms_rd rd = ms_rd_init(data, size);
    const uint8_t *b;
    if (!ms_rd_skip(&rd, 2)) return MS_OK; /* SOI */
    for (;;) {
        if (!ms_rd_bytes(&rd, &b, 1) || b[0] != 0xFF) return MS_OK;
        uint8_t m;
        do {
            if (!ms_rd_bytes(&rd, &b, 1)) return MS_OK;
            m = b[0];
        } while (m == 0xFF);                                 /* fill bytes (T.81 B.1.1.2) */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* TEM, RSTn: no length */
        if (m == 0x00 || m == 0xD8 || m == 0xD9 || m == 0xDA) return MS_OK;
        uint16_t len;
        if (!rd_u16be(&rd, &len) || len < 2) return MS_OK;
        bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (!sof) {
            if (!ms_rd_skip(&rd, (size_t)len - 2)) return MS_OK;
            continue;
        }
        if (m == 0xC3 || m == 0xC7 || m == 0xCB || m == 0xCF)
            return ms_fail(err, MS_EUNSUPPORTED,
                           "%s: lossless JPEG (SOF%d) is not supported; convert it to PNG or "
                           "DICOM with an uncompressed transfer syntax",
                           name, m - 0xC0);
        if (m == 0xC5 || m == 0xC6 || m == 0xCD || m == 0xCE)
            return ms_fail(err, MS_EUNSUPPORTED, "%s: hierarchical JPEG (SOF%d) is not supported",
                           name, m - 0xC0);
        if (!ms_rd_bytes(&rd, &b, 1)) return MS_OK;
        if (b[0] != 8)
            return ms_fail(err, MS_EUNSUPPORTED,
                           "%s: %u-bit JPEG is not supported (only 8-bit samples)", name,
                           (unsigned)b[0]);
        return MS_OK;
    }
}

static void jpgd_convert_row(const jpgd_ctx *c, const uint8_t *restrict row, int32_t y,
                             int in_components) {
    ms_image *img = c->img;
    const size_t w = (size_t)img->width;
    const size_t plane = w * (size_t)img->height;
    float *restrict o0 = img->data + (size_t)y * w;
    if (in_components == 1) {
        for (size_t x = 0; x < w; x++) o0[x] = (float)row[x] * (1.0f / 255.0f); /* vectorises */
        if (img->channels == 3) {
            memcpy(o0 + plane, o0, w * sizeof *o0);
            memcpy(o0 + 2 * plane, o0, w * sizeof *o0);
        }
    } else if (img->channels == 1) {
        for (size_t x = 0; x < w; x++)
            o0[x] = ms_luma601((float)row[3 * x] / 255.0f, (float)row[3 * x + 1] / 255.0f,
                               (float)row[3 * x + 2] / 255.0f);
    } else {
        float *restrict o1 = o0 + plane, *restrict o2 = o1 + plane;
        for (size_t x = 0; x < w; x++) {
            o0[x] = (float)row[3 * x] / 255.0f;
            o1[x] = (float)row[3 * x + 1] / 255.0f;
            o2[x] = (float)row[3 * x + 2] / 255.0f;
        }
    }
}

/* Everything that calls into libjpeg. Its errors longjmp out of here to jpgd_guarded(); all
 * state lives in *c and *cinfo so nothing needs to be volatile. */
static ms_status jpgd_body(j_decompress_ptr cinfo, jpgd_ctx *c, const uint8_t *data, size_t size,
                           const ms_decode_opts *opts, const ms_limits *lim, ms_err *err) {
    jpeg_create_decompress(cinfo);
    c->progress.progress_monitor = jpgd_progress_cb;
    cinfo->progress = &c->progress;
    /* Bounds libjpeg's whole-image buffers (progressive coefficients); past it libjpeg asks
     * for a backing store, which this build lacks, and fails with MS_ELIMIT. */
    uint64_t mem_cap = lim->max_decoded_bytes < (uint64_t)LONG_MAX / 2 ? 2 * lim->max_decoded_bytes
                                                                       : (uint64_t)LONG_MAX;
    cinfo->mem->max_memory_to_use = (long)mem_cap;
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    (void)jpeg_read_header(cinfo, TRUE);

    if (cinfo->data_precision != 8)
        return ms_fail(err, MS_EUNSUPPORTED, "%s: %d-bit JPEG is not supported (only 8-bit)",
                       c->name, cinfo->data_precision);
    ms_status st = ms_check_dimensions(c->name, cinfo->image_width, cinfo->image_height, lim, err);
    if (st != MS_OK) return st;

    const bool want_rgb = opts->color == MS_COLOR_RGB;
    const char *photometric, *conversion;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo->out_color_space = JCS_GRAYSCALE;
        photometric = "MONOCHROME2";
        conversion = want_rgb ? "gray_to_rgb" : "none";
        break;
    case JCS_YCbCr:
        /* Y is Rec. 601 luma, so grey output needs no RGB round trip. */
        cinfo->out_color_space = want_rgb ? JCS_RGB : JCS_GRAYSCALE;
        photometric = "YBR_FULL";
        conversion = want_rgb ? "ybr_to_rgb" : "ybr_to_luma";
        break;
    case JCS_RGB:
        cinfo->out_color_space = JCS_RGB;
        photometric = "RGB";
        conversion = want_rgb ? "none" : "rgb_to_luma";
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: CMYK/YCCK JPEG is not supported (no defined conversion to grey)",
                       c->name);
    default:
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: JPEG with %d components in an unknown colour space is not supported",
                       c->name, cinfo->num_components);
    }
    const int in_components = cinfo->out_color_space == JCS_GRAYSCALE ? 1 : 3;

    size_t rowbytes, image_bytes;
    if (!ms_mul_size(cinfo->image_width, (size_t)in_components, &rowbytes) ||
        !ms_mul_size(rowbytes, cinfo->image_height, &image_bytes))
        return ms_fail(err, MS_EOVERFLOW, "%s: JPEG image size overflows", c->name);
    if (image_bytes > lim->max_decoded_bytes)
        return ms_fail(err, MS_ELIMIT, "%s: JPEG decodes to %zu bytes, limit is %llu", c->name,
                       image_bytes, (unsigned long long)lim->max_decoded_bytes);

    (void)jpeg_start_decompress(cinfo);
    if (cinfo->output_width != cinfo->image_width || cinfo->output_height != cinfo->image_height ||
        cinfo->output_components != in_components)
        return ms_fail(err, MS_EINTERNAL, "%s: libjpeg output is %ux%ux%d, expected %ux%ux%d",
                       c->name, (unsigned)cinfo->output_width, (unsigned)cinfo->output_height,
                       cinfo->output_components, (unsigned)cinfo->image_width,
                       (unsigned)cinfo->image_height, in_components);

    c->row = ms_malloc(rowbytes);
    if (c->row == NULL)
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate a %zu-byte JPEG row", c->name,
                       rowbytes);
    ms_err ierr; /* ms_image_create's message does not name the file */
    st = ms_image_create((int32_t)cinfo->image_width, (int32_t)cinfo->image_height,
                         want_rgb ? 3 : 1, &c->img, &ierr);
    if (st != MS_OK) return ms_fail(err, st, "%s: %s", c->name, ierr.msg);

    while (cinfo->output_scanline < cinfo->output_height) {
        int32_t y = (int32_t)cinfo->output_scanline;
        JSAMPROW r = c->row;
        if (jpeg_read_scanlines(cinfo, &r, 1) != 1) /* cannot happen with a memory source */
            return ms_fail(err, MS_EINTERNAL, "%s: libjpeg returned no scanline at row %d", c->name,
                           (int)y);
        jpgd_convert_row(c, c->row, y, in_components);
    }
    /* Reads through EOI, so a file cut after its last scan is still reported. */
    (void)jpeg_finish_decompress(cinfo);

    ms_provenance *pv = &c->img->prov;
    pv->format = MS_FORMAT_JPEG;
    ms_str_copy(pv->photometric, sizeof pv->photometric, photometric);
    ms_str_copy(pv->color_conversion, sizeof pv->color_conversion, conversion);
    pv->bits_allocated = 8;
    pv->bits_stored = 8;
    pv->high_bit = 7;
    pv->samples_per_pixel = (uint16_t)cinfo->num_components;
    pv->interlaced = cinfo->progressive_mode != 0;
    pv->modality_lut = MS_MODLUT_NONE;
    pv->rescale_slope = 1.0;
    pv->voi = MS_VOI_NONE;
    pv->voi_function = MS_VOI_FN_LINEAR;
    pv->inversion = MS_INVERT_NONE;
    pv->frame_index = 0;
    pv->frame_count = 1;
    /* JFIF density is nearly always a 72 dpi default of the writing software, not a
     * measurement, so it is not reported as pixel spacing. */
    pv->spacing_source = MS_SPACING_NONE;
    return MS_OK;
}

/* The one function that holds setjmp. It modifies no locals after setjmp. */
static ms_status jpgd_guarded(j_decompress_ptr cinfo, jpgd_ctx *c, const uint8_t *data, size_t size,
                              const ms_decode_opts *opts, const ms_limits *lim, ms_err *err) {
    if (setjmp(c->jb)) return ms_fail(err, c->st, "%s: %s", c->name, c->msg);
    return jpgd_body(cinfo, c, data, size, opts, lim, err);
}

ms_status ms_jpeg_decode(const uint8_t *data, size_t size, const char *name,
                         const ms_decode_opts *opts, const ms_limits *lim, ms_image **out,
                         ms_err *err) {
    ms_limits deflim;
    ms_status st = ms_codec_args("JPEG", data, size, &name, &opts, &lim, &deflim, out, err);
    if (st != MS_OK) return st;
    if (size > ULONG_MAX)
        return ms_fail(err, MS_ELIMIT, "%s: JPEG of %zu bytes is too large", name, size);
    st = jpgd_prescan(data, size, name, err);
    if (st != MS_OK) return st;

    struct jpeg_decompress_struct cinfo;
    jpgd_ctx c;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&c, 0, sizeof c);
    c.name = name;
    cinfo.err = jpeg_std_error(&c.pub);
    c.pub.error_exit = jpgd_error_exit_cb;
    c.pub.emit_message = jpgd_emit_message_cb;
    c.pub.output_message = jpgd_output_message_cb;

    st = jpgd_guarded(&cinfo, &c, data, size, opts, lim, err);
    if (st == MS_OK) {
        *out = c.img;
        c.img = NULL;
    }
    jpeg_destroy_decompress(&cinfo); /* safe after a failed or partial create */
    ms_free(c.row);
    ms_image_destroy(c.img);
    return st;
}
