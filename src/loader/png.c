/* PNG decoding with libpng 1.6, from memory, into planar float [0, 1].
 *
 * What is kept and what is dropped:
 * - Samples are divided by their maximum code value (2^depth - 1). 16-bit samples keep full
 *   precision. 1/2/4-bit samples are unpacked to one byte each; dividing by 2^depth - 1 equals
 *   expanding them to 8-bit code values (x255, x85, x17) and dividing by 255.
 * - Alpha (colour types 4 and 6, and palette or colour-key tRNS) is dropped: the screener
 *   works on the stored intensities, and compositing onto a background would invent values.
 * - gAMA, cHRM, sRGB, iCCP and sBIT are ignored: they describe how to display the code values,
 *   while the model sees the code values as stored (as it does for DICOM before the VOI LUT).
 *   Applying a display gamma would silently change the intensities the model was trained on.
 * - Palette images are mapped through the palette here rather than by libpng, so the luma of
 *   each palette entry is computed once with the same formula as for RGB.
 *
 * Every libpng allocation goes through ms_malloc/ms_free, so allocator hooks (tests) see them.
 * If any of them fails, the decode fails with MS_ENOMEM even where libpng would carry on
 * without an ancillary chunk: a partial result after an allocation failure is not reported
 * as success. */
#include <png.h>
#include <setjmp.h>
#include <string.h>

#include "loader_internal.h"

/* Ancillary chunks are not used for screening; these caps keep a hostile file from making
 * libpng cache or inflate large amounts of metadata. (libpng's defaults: 1000 and 8 MB.) */
#define MS_PNG_CHUNK_CACHE_MAX 128u
#define MS_PNG_CHUNK_MALLOC_MAX ((png_alloc_size_t)8 << 20)

typedef enum pngd_kind { PNGD_GRAY, PNGD_RGB, PNGD_PALETTE } pngd_kind;

typedef struct pngd_ctx {
    const char *name;
    ms_rd rd;      /* the unread part of the file */
    bool oom;      /* an allocation requested by libpng failed */
    char msg[256]; /* libpng's error message */
    png_structp png;
    png_infop info;
    ms_image *img; /* owned here until handed to the caller */
    uint8_t *buf;  /* decoded rows (one row, or the whole image when interlaced) */
    pngd_kind kind;
    uint32_t maxval; /* largest code value of a sample */
    bool sixteen;    /* two bytes per sample */
    float lut[256];  /* code value -> [0, 1] for 8-bit-or-less samples */
    float pal_r[256], pal_g[256], pal_b[256], pal_luma[256];
} pngd_ctx;

static png_voidp pngd_malloc_cb(png_structp png, png_alloc_size_t n) {
    pngd_ctx *c = png_get_mem_ptr(png);
    void *p = ms_malloc(n);
    if (p == NULL && c != NULL) c->oom = true;
    return p;
}

static void pngd_free_cb(png_structp png, png_voidp p) {
    (void)png;
    ms_free(p);
}

static void pngd_error_cb(png_structp png, png_const_charp msg) {
    pngd_ctx *c = png_get_error_ptr(png);
    if (c != NULL) ms_str_copy(c->msg, sizeof c->msg, msg != NULL ? msg : "unknown error");
    png_longjmp(png, 1);
}

static void pngd_warning_cb(png_structp png, png_const_charp msg) {
    pngd_ctx *c = png_get_error_ptr(png);
    ms_log(MS_LOG_DEBUG, "%s: PNG warning: %s", c != NULL ? c->name : "?", msg != NULL ? msg : "");
}

static void pngd_read_cb(png_structp png, png_bytep out, size_t n) {
    pngd_ctx *c = png_get_io_ptr(png);
    const uint8_t *p;
    if (!ms_rd_bytes(&c->rd, &p, n)) png_error(png, "truncated PNG data");
    memcpy(out, p, n);
}

/* libpng refuses an IHDR over the user limits only with a generic "Invalid IHDR data", so the
 * dimensions are checked here first to report MS_ELIMIT. IHDR must be the first chunk (PNG
 * spec 5.6); anything else, and values PNG itself forbids, are left to libpng to report. */
static ms_status pngd_precheck_ihdr(const pngd_ctx *c, const ms_limits *lim, ms_err *err) {
    ms_rd rd = ms_rd_init(c->rd.p, c->rd.left);
    const uint8_t *h;
    if (!ms_rd_skip(&rd, 8) || !ms_rd_bytes(&rd, &h, 16)) return MS_OK;
    if (memcmp(h + 4, "IHDR", 4) != 0) return MS_OK;
    uint32_t w = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
    uint32_t hh = (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 | (uint32_t)h[14] << 8 | h[15];
    if (w == 0 || hh == 0 || w > PNG_UINT_31_MAX || hh > PNG_UINT_31_MAX) return MS_OK;
    return ms_check_dimensions(c->name, w, hh, lim, err);
}

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v); /* png_set_swap made it host order */
    return v;
}

/* Converts decoded row y (samples interleaved, 1 or 3 per pixel) into the planar output. */
static void pngd_convert_row(const pngd_ctx *c, const uint8_t *restrict row, int32_t y) {
    ms_image *img = c->img;
    const size_t w = (size_t)img->width;
    const size_t plane = w * (size_t)img->height;
    float *restrict o0 = img->data + (size_t)y * w;

    if (c->kind == PNGD_PALETTE) {
        if (img->channels == 1) {
            for (size_t x = 0; x < w; x++) o0[x] = c->pal_luma[row[x]];
        } else {
            float *restrict o1 = o0 + plane, *restrict o2 = o1 + plane;
            for (size_t x = 0; x < w; x++) {
                o0[x] = c->pal_r[row[x]];
                o1[x] = c->pal_g[row[x]];
                o2[x] = c->pal_b[row[x]];
            }
        }
        return;
    }

    const float maxf = (float)c->maxval;
    if (c->kind == PNGD_GRAY) {
        if (c->sixteen)
            for (size_t x = 0; x < w; x++) o0[x] = (float)load_u16(row + 2 * x) / maxf;
        else
            for (size_t x = 0; x < w; x++) o0[x] = c->lut[row[x]];
        if (img->channels == 3) {
            memcpy(o0 + plane, o0, w * sizeof *o0);
            memcpy(o0 + 2 * plane, o0, w * sizeof *o0);
        }
        return;
    }

    /* RGB */
    if (img->channels == 1) {
        if (c->sixteen)
            for (size_t x = 0; x < w; x++)
                o0[x] = ms_luma601((float)load_u16(row + 6 * x) / maxf,
                                   (float)load_u16(row + 6 * x + 2) / maxf,
                                   (float)load_u16(row + 6 * x + 4) / maxf);
        else
            for (size_t x = 0; x < w; x++)
                o0[x] =
                    ms_luma601(c->lut[row[3 * x]], c->lut[row[3 * x + 1]], c->lut[row[3 * x + 2]]);
    } else {
        float *restrict o1 = o0 + plane, *restrict o2 = o1 + plane;
        if (c->sixteen)
            for (size_t x = 0; x < w; x++) {
                o0[x] = (float)load_u16(row + 6 * x) / maxf;
                o1[x] = (float)load_u16(row + 6 * x + 2) / maxf;
                o2[x] = (float)load_u16(row + 6 * x + 4) / maxf;
            }
        else
            for (size_t x = 0; x < w; x++) {
                o0[x] = c->lut[row[3 * x]];
                o1[x] = c->lut[row[3 * x + 1]];
                o2[x] = c->lut[row[3 * x + 2]];
            }
    }
}

static void pngd_fill_provenance(pngd_ctx *c, int depth, int interlace) {
    ms_provenance *pv = &c->img->prov;
    bool gray_out = c->img->channels == 1;
    pv->format = MS_FORMAT_PNG;
    switch (c->kind) {
    case PNGD_GRAY:
        ms_str_copy(pv->photometric, sizeof pv->photometric, "MONOCHROME2");
        ms_str_copy(pv->color_conversion, sizeof pv->color_conversion,
                    gray_out ? "none" : "gray_to_rgb");
        pv->samples_per_pixel = 1;
        break;
    case PNGD_RGB:
        ms_str_copy(pv->photometric, sizeof pv->photometric, "RGB");
        ms_str_copy(pv->color_conversion, sizeof pv->color_conversion,
                    gray_out ? "rgb_to_luma" : "none");
        pv->samples_per_pixel = 3;
        break;
    case PNGD_PALETTE:
        ms_str_copy(pv->photometric, sizeof pv->photometric, "PALETTE COLOR");
        ms_str_copy(pv->color_conversion, sizeof pv->color_conversion,
                    gray_out ? "palette_to_luma" : "palette_to_rgb");
        pv->samples_per_pixel = 1;
        break;
    }
    /* 1/2/4-bit samples and palette indices are held as 8-bit code values; bits_stored keeps
     * the file's depth. */
    pv->bits_allocated = (uint16_t)(depth < 8 ? 8 : depth);
    pv->bits_stored = (uint16_t)depth;
    pv->high_bit = (uint16_t)(depth - 1);
    pv->planar_configuration = 0;
    pv->is_signed = false;
    pv->interlaced = interlace == PNG_INTERLACE_ADAM7;
    pv->modality_lut = MS_MODLUT_NONE;
    pv->rescale_slope = 1.0;
    pv->rescale_intercept = 0.0;
    pv->voi = MS_VOI_NONE;
    pv->voi_function = MS_VOI_FN_LINEAR;
    pv->inversion = MS_INVERT_NONE;
    pv->frame_index = 0;
    pv->frame_count = 1;

    /* pHYs in pixels per metre gives the pixel pitch; the "unknown" unit is only an aspect
     * ratio and says nothing about size. */
    png_uint_32 xres = 0, yres = 0;
    int unit = 0;
    if (png_get_pHYs(c->png, c->info, &xres, &yres, &unit) != 0 && unit == PNG_RESOLUTION_METER &&
        xres > 0 && yres > 0) {
        pv->spacing_source = MS_SPACING_PIXEL;
        pv->spacing_row_mm = 1000.0 / (double)yres;
        pv->spacing_col_mm = 1000.0 / (double)xres;
    } else {
        pv->spacing_source = MS_SPACING_NONE;
    }
}

/* Everything that calls into libpng after the png_struct exists. libpng errors longjmp out of
 * here to pngd_guarded(); all state lives in *c so nothing needs to be volatile. */
static ms_status pngd_body(pngd_ctx *c, const ms_decode_opts *opts, const ms_limits *lim,
                           ms_err *err) {
    png_structp png = c->png;
    png_infop info = c->info;

    png_uint_32 wmax = lim->max_width < PNG_UINT_31_MAX ? lim->max_width : PNG_UINT_31_MAX;
    png_uint_32 hmax = lim->max_height < PNG_UINT_31_MAX ? lim->max_height : PNG_UINT_31_MAX;
    png_set_user_limits(png, wmax, hmax);
    png_set_chunk_cache_max(png, MS_PNG_CHUNK_CACHE_MAX);
    png_set_chunk_malloc_max(png, MS_PNG_CHUNK_MALLOC_MAX);
    png_set_read_fn(png, c, pngd_read_cb);

    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    ms_status st = ms_check_dimensions(c->name, w, h, lim, err);
    if (st != MS_OK) return st;
    if (w > INT32_MAX || h > INT32_MAX)
        return ms_fail(err, MS_ELIMIT, "%s: image is %ux%u, too large", c->name, (unsigned)w,
                       (unsigned)h);

    int in_samples; /* per pixel after the transforms below */
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        c->kind = PNGD_GRAY;
        in_samples = 1;
        break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA:
        c->kind = PNGD_RGB;
        in_samples = 3;
        break;
    case PNG_COLOR_TYPE_PALETTE:
        c->kind = PNGD_PALETTE;
        in_samples = 1;
        break;
    default: return ms_fail(err, MS_EFORMAT, "%s: PNG colour type %d is invalid", c->name, ctype);
    }
    if (depth != 1 && depth != 2 && depth != 4 && depth != 8 && depth != 16)
        return ms_fail(err, MS_EFORMAT, "%s: PNG bit depth %d is invalid", c->name, depth);

    if (ctype & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (depth < 8) png_set_packing(png); /* one byte per sample, values unscaled */
    if (depth == 16 && host_is_little_endian()) png_set_swap(png);
    c->sixteen = depth == 16;
    c->maxval = (1u << depth) - 1u;
    if (!c->sixteen)
        for (uint32_t i = 0; i < 256; i++) c->lut[i] = (float)i / (float)c->maxval;

    if (c->kind == PNGD_PALETTE) {
        png_colorp pal = NULL;
        int npal = 0;
        if (png_get_PLTE(png, info, &pal, &npal) == 0 || pal == NULL || npal <= 0)
            return ms_fail(err, MS_EFORMAT, "%s: PNG palette image has no PLTE chunk", c->name);
        /* Indices past the palette are an error in the PNG spec (11.2.3); libpng does not
         * check them, so they map to black here rather than reading past the table. */
        for (int i = 0; i < 256; i++) {
            float r = 0, g = 0, b = 0;
            if (i < npal) {
                r = (float)pal[i].red / 255.0f;
                g = (float)pal[i].green / 255.0f;
                b = (float)pal[i].blue / 255.0f;
            }
            c->pal_r[i] = r;
            c->pal_g[i] = g;
            c->pal_b[i] = b;
            c->pal_luma[i] = ms_luma601(r, g, b);
        }
    }

    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t bytes_per_sample = c->sixteen ? 2 : 1, want_rowbytes;
    if (!ms_mul_size(w, (size_t)in_samples * bytes_per_sample, &want_rowbytes))
        return ms_fail(err, MS_EOVERFLOW, "%s: PNG row size overflows", c->name);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != want_rowbytes || png_get_channels(png, info) != in_samples)
        return ms_fail(
            err, MS_EINTERNAL, "%s: libpng row layout is %zu bytes x %d samples, expected %zu x %d",
            c->name, rowbytes, (int)png_get_channels(png, info), want_rowbytes, in_samples);
    size_t image_bytes;
    if (!ms_mul_size(rowbytes, h, &image_bytes))
        return ms_fail(err, MS_EOVERFLOW, "%s: PNG image size overflows", c->name);
    if (image_bytes > lim->max_decoded_bytes)
        return ms_fail(err, MS_ELIMIT, "%s: PNG decodes to %zu bytes, limit is %llu", c->name,
                       image_bytes, (unsigned long long)lim->max_decoded_bytes);

    /* Adam7 fills rows over seven passes, so it needs the whole image; otherwise one row. */
    size_t buf_bytes = passes > 1 ? image_bytes : rowbytes;
    c->buf = ms_malloc(buf_bytes);
    if (c->buf == NULL)
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate %zu bytes for PNG rows", c->name,
                       buf_bytes);
    int32_t channels = opts->color == MS_COLOR_RGB ? 3 : 1;
    ms_err ierr; /* ms_image_create's message does not name the file */
    st = ms_image_create((int32_t)w, (int32_t)h, channels, &c->img, &ierr);
    if (st != MS_OK) return ms_fail(err, st, "%s: %s", c->name, ierr.msg);

    if (passes > 1) {
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++)
                png_read_row(png, c->buf + (size_t)y * rowbytes, NULL);
        for (png_uint_32 y = 0; y < h; y++)
            pngd_convert_row(c, c->buf + (size_t)y * rowbytes, (int32_t)y);
    } else {
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(png, c->buf, NULL);
            pngd_convert_row(c, c->buf, (int32_t)y);
        }
    }
    /* Reads through IEND, so a file cut after its last IDAT is still reported. */
    png_read_end(png, NULL);

    pngd_fill_provenance(c, depth, interlace);
    return MS_OK;
}

/* The one function that holds setjmp. It modifies no locals after setjmp. */
static ms_status pngd_guarded(pngd_ctx *c, const ms_decode_opts *opts, const ms_limits *lim,
                              ms_err *err) {
    if (setjmp(png_jmpbuf(c->png))) {
        if (c->oom) return ms_fail(err, MS_ENOMEM, "%s: out of memory in libpng", c->name);
        return ms_fail(err, MS_EFORMAT, "%s: PNG error: %s", c->name, c->msg);
    }
    return pngd_body(c, opts, lim, err);
}

ms_status ms_png_decode(const uint8_t *data, size_t size, const char *name,
                        const ms_decode_opts *opts, const ms_limits *lim, ms_image **out,
                        ms_err *err) {
    ms_limits deflim;
    ms_status st = ms_codec_args("PNG", data, size, &name, &opts, &lim, &deflim, out, err);
    if (st != MS_OK) return st;

    pngd_ctx *c = ms_calloc(1, sizeof *c); /* ~4 KiB of tables: keep them off the stack */
    if (c == NULL) return ms_fail(err, MS_ENOMEM, "%s: cannot allocate PNG decoder", name);
    c->name = name;
    c->rd = ms_rd_init(data, size);

    st = pngd_precheck_ihdr(c, lim, err);
    if (st != MS_OK) goto done;

    c->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, c, pngd_error_cb, pngd_warning_cb, c,
                                      pngd_malloc_cb, pngd_free_cb);
    if (c->png != NULL) c->info = png_create_info_struct(c->png);
    if (c->png == NULL || c->info == NULL) {
        /* NULL without a failed allocation means a libpng header/library mismatch */
        st = ms_fail(err, c->oom ? MS_ENOMEM : MS_EINTERNAL, "%s: cannot create the libpng decoder",
                     name);
        goto done;
    }
    st = pngd_guarded(c, opts, lim, err);
    if (st == MS_OK && c->oom) st = ms_fail(err, MS_ENOMEM, "%s: out of memory in libpng", name);
    if (st == MS_OK) {
        *out = c->img;
        c->img = NULL;
    }
done:
    if (c->png != NULL) png_destroy_read_struct(&c->png, c->info != NULL ? &c->info : NULL, NULL);
    ms_free(c->buf);
    ms_image_destroy(c->img);
    ms_free(c);
    return st;
}
