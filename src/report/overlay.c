/* Overlays: the decoded image with the probability map as a heat map and the regions outlined
 * and labelled, encoded as PNG (libpng) or as a JPEG thumbnail (libjpeg), in memory.
 *
 * Downscaling is a box filter over whole source pixels: output pixel (i, j) averages source
 * columns [i*w/ow, (i+1)*w/ow) and rows likewise (integer bounds, so every source pixel lands
 * in exactly one box). The probability map goes through the same boxes but keeps the box's
 * MAXIMUM, not its mean: a small hot spot must stay visible in a thumbnail, and a reader
 * should never see less heat than the model produced.
 *
 * Heat: transparent below low_threshold; above it a yellow-to-red ramp whose opacity rises
 * from 0.25 at low_threshold to 0.6 at 1, so the anatomy stays readable under it. Outlines are
 * cyan (no grey pixel and no heat blend can be cyan), 2 px wide, with "#rank peak" in a
 * built-in 5x7 bitmap font on a black label. Nothing from the file is drawn as text.
 * Bytes are deterministic: no timestamps or text chunks are written. */
#include <math.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h> /* after stdio.h: it needs FILE and size_t */
#include <jerror.h>
#include <png.h>

#include "medscreen/core.h"
#include "report_internal.h"

#define OV_HEAT_ALPHA_LOW 0.25
#define OV_HEAT_ALPHA_HIGH 0.6
#define OV_OUTLINE_PX 2
#define OV_JPEG_QUALITY 85

static const uint8_t ov_outline_rgb[3] = {0, 255, 255};
static const uint8_t ov_label_bg[3] = {0, 0, 0};

typedef struct ov_canvas {
    uint8_t *rgb; /* w * h * 3, row-major */
    int32_t w, h;
} ov_canvas;

/* ---- font ----------------------------------------------------------------------------- */

/* 5x7 glyphs, one byte per row, bit 4 is the leftmost column. */
typedef struct ov_glyph {
    char c;
    uint8_t rows[7];
} ov_glyph;

static const ov_glyph ov_font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
};

static const uint8_t *ov_glyph_rows(char c) {
    for (size_t i = 0; i < sizeof ov_font / sizeof ov_font[0]; i++)
        if (ov_font[i].c == c) return ov_font[i].rows;
    return NULL; /* space, or a character the font lacks: left blank */
}

/* ---- drawing -------------------------------------------------------------------------- */

/* Fills [x0, x1] x [y0, y1] (inclusive), clipped to the canvas. */
static void ov_fill(ov_canvas *cv, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                    const uint8_t rgb[3]) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 >= cv->w) x1 = cv->w - 1;
    if (y1 >= cv->h) y1 = cv->h - 1;
    for (int64_t y = y0; y <= y1; y++) {
        uint8_t *p = cv->rgb + ((size_t)y * (size_t)cv->w + (size_t)x0) * 3;
        for (int64_t x = x0; x <= x1; x++, p += 3) memcpy(p, rgb, 3);
    }
}

/* The region's box in canvas pixels (inclusive), or false when it is empty after clipping
 * to the image it claims to describe. */
static bool ov_box(const ov_canvas *cv, int32_t iw, int32_t ih, const ms_region *g, int64_t *x0,
                   int64_t *y0, int64_t *x1, int64_t *y1) {
    int64_t gx0 = g->x, gy0 = g->y, gx1 = (int64_t)g->x + g->w, gy1 = (int64_t)g->y + g->h;
    if (gx0 < 0) gx0 = 0;
    if (gy0 < 0) gy0 = 0;
    if (gx1 > iw) gx1 = iw;
    if (gy1 > ih) gy1 = ih;
    if (gx1 <= gx0 || gy1 <= gy0) return false;
    /* floor of the start edge, ceil of the end edge: the box still encloses the region */
    *x0 = gx0 * cv->w / iw;
    *y0 = gy0 * cv->h / ih;
    *x1 = (gx1 * cv->w + iw - 1) / iw - 1;
    *y1 = (gy1 * cv->h + ih - 1) / ih - 1;
    return true;
}

static void ov_outline(ov_canvas *cv, int64_t x0, int64_t y0, int64_t x1, int64_t y1) {
    const int64_t t = OV_OUTLINE_PX - 1;
    ov_fill(cv, x0, y0, x1, y0 + t, ov_outline_rgb);
    ov_fill(cv, x0, y1 - t, x1, y1, ov_outline_rgb);
    ov_fill(cv, x0, y0, x0 + t, y1, ov_outline_rgb);
    ov_fill(cv, x1 - t, y0, x1, y1, ov_outline_rgb);
}

/* Font scale: 1 up to 400 px, then one step per 400 px so labels stay legible on large
 * overlays, at most 4. */
static int32_t ov_font_scale(const ov_canvas *cv) {
    int32_t longer = cv->w > cv->h ? cv->w : cv->h;
    int32_t s = 1 + longer / 400;
    return s > 4 ? 4 : s;
}

static void ov_label(ov_canvas *cv, int64_t bx0, int64_t by0, const ms_region *g) {
    char text[32];
    if (g->peak >= 0.0f && g->peak <= 1.0f)
        snprintf(text, sizeof text, "#%lu %.2f", (unsigned long)g->rank, (double)g->peak);
    else /* NaN or out of range: the rank alone rather than a misleading number */
        snprintf(text, sizeof text, "#%lu", (unsigned long)g->rank);
    const int64_t s = ov_font_scale(cv), pad = s;
    const int64_t n = (int64_t)strlen(text);
    const int64_t lw = n * 6 * s - s + 2 * pad, lh = 7 * s + 2 * pad;
    /* Above the box when there is room, else just inside its top edge; always on canvas. */
    int64_t lx = bx0, ly = by0 - lh;
    if (ly < 0) ly = by0 + OV_OUTLINE_PX;
    if (ly + lh > cv->h) ly = cv->h - lh;
    if (ly < 0) ly = 0;
    if (lx + lw > cv->w) lx = cv->w - lw;
    if (lx < 0) lx = 0;
    ov_fill(cv, lx, ly, lx + lw - 1, ly + lh - 1, ov_label_bg);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *rows = ov_glyph_rows(text[i]);
        if (rows == NULL) continue;
        int64_t gx = lx + pad + i * 6 * s, gy = ly + pad;
        for (int64_t r = 0; r < 7; r++)
            for (int64_t c = 0; c < 5; c++)
                if (rows[r] & (0x10u >> c))
                    ov_fill(cv, gx + c * s, gy + r * s, gx + c * s + s - 1, gy + r * s + s - 1,
                            ov_outline_rgb);
    }
}

/* ---- rendering ------------------------------------------------------------------------ */

/* Clamps a row to [0, 1]: NaN and negatives to 0, above 1 to 1. */
static void ov_clamp_row(const float *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        float v = src[i];
        v = v >= 0.0f ? v : 0.0f;
        dst[i] = v <= 1.0f ? v : 1.0f;
    }
}

static uint8_t ov_u8(double v) { return (uint8_t)lrint(v < 0 ? 0 : v > 255 ? 255 : v); }

static void ov_out_size(int32_t w, int32_t h, int32_t max_side, int32_t *ow, int32_t *oh) {
    int32_t longer = w > h ? w : h;
    *ow = w, *oh = h;
    if (max_side <= 0 || longer <= max_side) return;
    int64_t a = ((int64_t)w * max_side + longer / 2) / longer;
    int64_t b = ((int64_t)h * max_side + longer / 2) / longer;
    *ow = a < 1 ? 1 : (int32_t)a;
    *oh = b < 1 ? 1 : (int32_t)b;
}

/* Box bounds: bounds[i] = i * n / out for i in [0, out]; out <= n, so no box is empty. */
static void ov_bounds(int32_t n, int32_t out, int32_t *bounds) {
    for (int32_t i = 0; i <= out; i++) bounds[i] = (int32_t)((int64_t)i * n / out);
}

static ms_status ov_render(const ms_image *img, const float *prob, float low,
                           const ms_region *regions, uint32_t region_count, int32_t max_side,
                           ov_canvas *cv, ms_err *err) {
    if (img == NULL || img->data == NULL || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3))
        return ms_fail(err, MS_EINVAL, "overlay: image %ldx%ld with %ld channels is not drawable",
                       img ? (long)img->width : 0L, img ? (long)img->height : 0L,
                       img ? (long)img->channels : 0L);
    if (max_side < 0) return ms_fail(err, MS_EINVAL, "overlay: max_side %ld", (long)max_side);
    if (prob != NULL && !(low >= 0.0f && low <= 1.0f))
        return ms_fail(err, MS_EINVAL, "overlay: low threshold %g outside [0, 1]", (double)low);
    if (region_count > 0 && regions == NULL)
        return ms_fail(err, MS_EINVAL, "overlay: %lu regions without an array",
                       (unsigned long)region_count);

    const int32_t w = img->width, h = img->height;
    int32_t ow, oh;
    ov_out_size(w, h, max_side, &ow, &oh);
    size_t plane, npx, nbytes, bsize;
    if (!ms_mul_size((size_t)w, (size_t)h, &plane) || !ms_mul_size((size_t)ow, (size_t)oh, &npx) ||
        !ms_mul_size(npx, 3, &nbytes) || !ms_add_size((size_t)ow + 1, (size_t)oh + 1, &bsize) ||
        !ms_mul_size(bsize, sizeof(int32_t), &bsize))
        return ms_fail(err, MS_EOVERFLOW, "overlay: %ldx%ld image is too large", (long)w, (long)h);

    ms_status st = MS_OK;
    uint8_t *rgb = ms_malloc(nbytes);
    int32_t *bounds = ms_malloc(bsize);
    double *acc = ms_calloc((size_t)ow * 3, sizeof *acc);
    float *pmax = prob != NULL ? ms_malloc((size_t)ow * sizeof *pmax) : NULL;
    float *clamped = ms_malloc((size_t)w * sizeof *clamped);
    if (rgb == NULL || bounds == NULL || acc == NULL || (prob != NULL && pmax == NULL) ||
        clamped == NULL) {
        st = ms_fail(err, MS_ENOMEM, "overlay: cannot allocate a %ldx%ld canvas", (long)ow,
                     (long)oh);
        goto fail;
    }
    int32_t *xb = bounds, *yb = bounds + ow + 1;
    ov_bounds(w, ow, xb);
    ov_bounds(h, oh, yb);

    const int32_t nch = img->channels;
    const double hspan = low < 1.0f ? 1.0 - (double)low : 1.0;
    for (int32_t oy = 0; oy < oh; oy++) {
        const int32_t y0 = yb[oy], y1 = yb[oy + 1];
        memset(acc, 0, (size_t)ow * 3 * sizeof *acc);
        if (pmax != NULL)
            for (int32_t ox = 0; ox < ow; ox++) pmax[ox] = 0.0f;
        for (int32_t sy = y0; sy < y1; sy++) {
            /* Clamp a whole row first (a branch-free loop the compiler vectorises), then
             * sum or take the maximum over each output pixel's columns. */
            for (int32_t c = 0; c < nch; c++) {
                ov_clamp_row(img->data + (size_t)c * plane + (size_t)sy * (size_t)w, clamped, w);
                for (int32_t ox = 0; ox < ow; ox++) {
                    float sum = 0;
                    for (int32_t sx = xb[ox]; sx < xb[ox + 1]; sx++) sum += clamped[sx];
                    acc[(size_t)ox * 3 + (size_t)c] += sum;
                }
            }
            if (pmax != NULL) {
                ov_clamp_row(prob + (size_t)sy * (size_t)w, clamped, w);
                for (int32_t ox = 0; ox < ow; ox++) {
                    float m = pmax[ox];
                    for (int32_t sx = xb[ox]; sx < xb[ox + 1]; sx++)
                        m = clamped[sx] > m ? clamped[sx] : m;
                    pmax[ox] = m;
                }
            }
        }
        uint8_t *out = rgb + (size_t)oy * (size_t)ow * 3;
        for (int32_t ox = 0; ox < ow; ox++, out += 3) {
            const double area = (double)(y1 - y0) * (double)(xb[ox + 1] - xb[ox]);
            double v[3];
            for (int32_t c = 0; c < 3; c++)
                v[c] = 255.0 * acc[(size_t)ox * 3 + (size_t)(nch == 1 ? 0 : c)] / area;
            if (pmax != NULL && pmax[ox] >= low && pmax[ox] > 0.0f) {
                double t = ((double)pmax[ox] - (double)low) / hspan;
                if (t > 1) t = 1;
                const double a = OV_HEAT_ALPHA_LOW + (OV_HEAT_ALPHA_HIGH - OV_HEAT_ALPHA_LOW) * t;
                const double heat[3] = {255.0, 255.0 * (1.0 - t), 0.0};
                for (int32_t c = 0; c < 3; c++) v[c] += (heat[c] - v[c]) * a;
            }
            for (int32_t c = 0; c < 3; c++) out[c] = ov_u8(v[c]);
        }
    }

    cv->rgb = rgb;
    cv->w = ow;
    cv->h = oh;
    /* Lowest rank last, so the best region's outline and label end up on top. */
    for (uint32_t i = region_count; i-- > 0;) {
        int64_t x0, y0, x1, y1;
        if (ov_box(cv, w, h, &regions[i], &x0, &y0, &x1, &y1)) ov_outline(cv, x0, y0, x1, y1);
    }
    for (uint32_t i = region_count; i-- > 0;) {
        int64_t x0, y0, x1, y1;
        if (ov_box(cv, w, h, &regions[i], &x0, &y0, &x1, &y1)) ov_label(cv, x0, y0, &regions[i]);
    }
    rgb = NULL;
fail:
    ms_free(rgb);
    ms_free(bounds);
    ms_free(acc);
    ms_free(pmax);
    ms_free(clamped);
    return st;
}

/* ---- PNG ------------------------------------------------------------------------------ */

typedef struct pngw_ctx {
    ms_buf out;
    bool oom;
    char msg[200];
    png_structp png;
    png_infop info;
    const ov_canvas *cv;
} pngw_ctx;

static png_voidp pngw_malloc_cb(png_structp png, png_alloc_size_t n) {
    pngw_ctx *c = png_get_mem_ptr(png);
    void *p = ms_malloc(n);
    if (p == NULL && c != NULL) c->oom = true;
    return p;
}

static void pngw_free_cb(png_structp png, png_voidp p) {
    (void)png;
    ms_free(p);
}

static void pngw_error_cb(png_structp png, png_const_charp msg) {
    pngw_ctx *c = png_get_error_ptr(png);
    if (c != NULL) ms_str_copy(c->msg, sizeof c->msg, msg != NULL ? msg : "unknown error");
    png_longjmp(png, 1);
}

static void pngw_warning_cb(png_structp png, png_const_charp msg) {
    (void)png;
    ms_log(MS_LOG_DEBUG, "overlay: PNG warning: %s", msg != NULL ? msg : "");
}

static void pngw_write_cb(png_structp png, png_bytep data, size_t n) {
    pngw_ctx *c = png_get_io_ptr(png);
    ms_buf_append(&c->out, (const char *)data, n);
    if (c->out.oom) {
        c->oom = true;
        png_error(png, "out of memory");
    }
}

static void pngw_flush_cb(png_structp png) { (void)png; }

static void pngw_body(pngw_ctx *c) {
    const ov_canvas *cv = c->cv;
    png_set_write_fn(c->png, c, pngw_write_cb, pngw_flush_cb);
    png_set_IHDR(c->png, c->info, (png_uint_32)cv->w, (png_uint_32)cv->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    /* zlib at its default level took ~70% of a scan's time (bench-scan.sh); level 2 with
     * the SUB filter writes ~1.3x larger files about 3x faster. */
    png_set_compression_level(c->png, 2);
    png_set_filter(c->png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
    png_write_info(c->png, c->info);
    for (int32_t y = 0; y < cv->h; y++)
        png_write_row(c->png, cv->rgb + (size_t)y * (size_t)cv->w * 3);
    png_write_end(c->png, NULL);
}

/* The one function that holds setjmp; all state lives in *c, so no local changes after it
 * and nothing needs to be volatile. */
static bool pngw_guarded(pngw_ctx *c) {
    if (setjmp(png_jmpbuf(c->png))) return false;
    pngw_body(c);
    return true;
}

static ms_status ov_encode_png(const ov_canvas *cv, ms_buf *out, ms_err *err) {
    pngw_ctx c;
    memset(&c, 0, sizeof c);
    c.cv = cv;
    ms_status st = MS_OK;
    c.png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, &c, pngw_error_cb, pngw_warning_cb, &c,
                                      pngw_malloc_cb, pngw_free_cb);
    if (c.png != NULL) c.info = png_create_info_struct(c.png);
    if (c.png == NULL || c.info == NULL) {
        st = ms_fail(err, c.oom ? MS_ENOMEM : MS_EINTERNAL,
                     "overlay: cannot create the PNG encoder");
        goto fail;
    }
    if (!pngw_guarded(&c) || c.oom) {
        st = c.oom ? ms_fail(err, MS_ENOMEM, "overlay: out of memory encoding a %ldx%ld PNG",
                             (long)cv->w, (long)cv->h)
                   : ms_fail(err, MS_EINTERNAL, "overlay: PNG error: %s", c.msg);
        goto fail;
    }
    *out = c.out;
    c.out = (ms_buf){0};
fail:
    if (c.png != NULL) png_destroy_write_struct(&c.png, c.info != NULL ? &c.info : NULL);
    ms_buf_free(&c.out);
    return st;
}

/* ---- JPEG ----------------------------------------------------------------------------- */

typedef struct jpgw_ctx {
    struct jpeg_error_mgr pub; /* first member: libjpeg hands back &pub as cinfo->err */
    struct jpeg_destination_mgr dest;
    jmp_buf jb;
    ms_buf out;
    bool oom;
    char msg[JMSG_LENGTH_MAX];
    JOCTET chunk[4096];
} jpgw_ctx;

static void jpgw_error_exit_cb(j_common_ptr cinfo) {
    jpgw_ctx *c = (jpgw_ctx *)(void *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, c->msg);
    if (cinfo->err->msg_code == JERR_OUT_OF_MEMORY) c->oom = true;
    longjmp(c->jb, 1);
}

static void jpgw_output_message_cb(j_common_ptr cinfo) { (void)cinfo; }

static void jpgw_init_dest(j_compress_ptr cinfo) {
    jpgw_ctx *c = cinfo->client_data;
    c->dest.next_output_byte = c->chunk;
    c->dest.free_in_buffer = sizeof c->chunk;
}

static boolean jpgw_empty_dest(j_compress_ptr cinfo) {
    jpgw_ctx *c = cinfo->client_data;
    /* libjpeg's contract: the whole buffer is full, whatever free_in_buffer says. */
    ms_buf_append(&c->out, (const char *)c->chunk, sizeof c->chunk);
    if (c->out.oom) ERREXIT(cinfo, JERR_OUT_OF_MEMORY);
    c->dest.next_output_byte = c->chunk;
    c->dest.free_in_buffer = sizeof c->chunk;
    return TRUE;
}

static void jpgw_term_dest(j_compress_ptr cinfo) {
    jpgw_ctx *c = cinfo->client_data;
    ms_buf_append(&c->out, (const char *)c->chunk,
                  sizeof c->chunk - (size_t)c->dest.free_in_buffer);
    if (c->out.oom) ERREXIT(cinfo, JERR_OUT_OF_MEMORY);
}

/* Everything that calls into libjpeg; its errors longjmp back here. No local changes after
 * setjmp: the state is in *cinfo and *c. */
static bool jpgw_guarded(struct jpeg_compress_struct *cinfo, jpgw_ctx *c, const ov_canvas *cv) {
    if (setjmp(c->jb)) return false;
    jpeg_create_compress(cinfo);
    cinfo->client_data = c;
    c->dest.init_destination = jpgw_init_dest;
    c->dest.empty_output_buffer = jpgw_empty_dest;
    c->dest.term_destination = jpgw_term_dest;
    cinfo->dest = &c->dest;
    cinfo->image_width = (JDIMENSION)cv->w;
    cinfo->image_height = (JDIMENSION)cv->h;
    cinfo->input_components = 3;
    cinfo->in_color_space = JCS_RGB;
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, OV_JPEG_QUALITY, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW row = (JSAMPROW)(cv->rgb + (size_t)cinfo->next_scanline * (size_t)cv->w * 3);
        jpeg_write_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_compress(cinfo);
    return true;
}

static ms_status ov_encode_jpeg(const ov_canvas *cv, ms_buf *out, ms_err *err) {
    if (cv->w > JPEG_MAX_DIMENSION || cv->h > JPEG_MAX_DIMENSION)
        return ms_fail(err, MS_ELIMIT, "thumbnail: %ldx%ld exceeds JPEG's %ld pixels a side",
                       (long)cv->w, (long)cv->h, (long)JPEG_MAX_DIMENSION);
    struct jpeg_compress_struct cinfo;
    jpgw_ctx *c = ms_calloc(1, sizeof *c);
    if (c == NULL) return ms_fail(err, MS_ENOMEM, "thumbnail: cannot allocate the JPEG encoder");
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&c->pub);
    c->pub.error_exit = jpgw_error_exit_cb;
    c->pub.output_message = jpgw_output_message_cb;
    ms_status st = MS_OK;
    if (!jpgw_guarded(&cinfo, c, cv) || c->oom) {
        st = c->oom ? ms_fail(err, MS_ENOMEM, "thumbnail: out of memory encoding a %ldx%ld JPEG",
                              (long)cv->w, (long)cv->h)
                    : ms_fail(err, MS_EINTERNAL, "thumbnail: JPEG error: %s", c->msg);
    } else {
        *out = c->out;
        c->out = (ms_buf){0};
    }
    jpeg_destroy_compress(&cinfo); /* safe after a failed or partial create */
    ms_buf_free(&c->out);
    ms_free(c);
    return st;
}

/* ---- public --------------------------------------------------------------------------- */

static ms_status ov_make(const ms_image *img, const float *prob, float low,
                         const ms_region *regions, uint32_t region_count, int32_t max_side,
                         bool jpeg, ms_buf *dst, ms_err *err) {
    if (dst == NULL) return ms_fail(err, MS_EINVAL, "overlay: no output buffer");
    ov_canvas cv = {0};
    ms_status st = ov_render(img, prob, low, regions, region_count, max_side, &cv, err);
    if (st != MS_OK) return st;
    ms_buf enc = {0};
    st = jpeg ? ov_encode_jpeg(&cv, &enc, err) : ov_encode_png(&cv, &enc, err);
    ms_free(cv.rgb);
    if (st != MS_OK) return st;
    /* Replace, not append: *dst holds exactly one image, and is untouched on failure. */
    ms_buf_free(dst);
    *dst = enc;
    return MS_OK;
}

ms_status ms_report_overlay_png(const ms_image *img, const float *prob, float low_threshold,
                                const ms_region *regions, uint32_t region_count, int32_t max_side,
                                ms_buf *png, ms_err *err) {
    return ov_make(img, prob, low_threshold, regions, region_count, max_side, false, png, err);
}

ms_status ms_report_thumbnail_jpeg(const ms_image *img, const float *prob, float low_threshold,
                                   const ms_region *regions, uint32_t region_count,
                                   int32_t max_side, ms_buf *jpeg, ms_err *err) {
    return ov_make(img, prob, low_threshold, regions, region_count, max_side, true, jpeg, err);
}
