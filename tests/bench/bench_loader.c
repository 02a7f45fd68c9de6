/* Decode throughput of the loader against the codec libraries called directly on the same
 * bytes (file I/O excluded from both: everything is decoded from memory).
 *
 * Usage: bench_loader [--runs N] DATA_DIR     (files from scripts/make-bench-data.sh)
 *
 * For each input, N runs (>= 20) alternate A and B:
 *   A  the loader: ms_source_open_memory + ms_source_decode (frame 0, gray) + destroy;
 *   B  the codec alone: DICOM other than JPEG 2000 through DCMTK (ms_dcmtk_open + attributes +
 *      ms_dcmtk_decode_frame, i.e. parse and decompress without our pixel pipeline);
 *      JPEG 2000: OpenJPEG on the raw .j2k codestream; PNG: libpng 16-bit (classic API);
 *      JPEG: libjpeg-turbo 8-bit gray from jpeg_mem_src.
 * Prints one JSON line per input: median and p90 (ms) of each side and the median ratio.
 * Target (issue): the loader adds less than 10% over the codec (ratio < 1.10).
 * Not a ctest test; scripts/bench-loader.sh builds Release and runs it. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>
#include <openjpeg.h>

#include "dicom_dcmtk.h"
#include "medscreen/core.h"
#include "medscreen/loader.h"

#include "bench_util.h"

#ifndef MS_DCMTK_VERSION
#define MS_DCMTK_VERSION "unknown"
#endif

typedef enum codec_kind { CODEC_DCMTK, CODEC_OPENJPEG, CODEC_LIBPNG, CODEC_LIBJPEG } codec_kind;

typedef struct bench_input {
    const char *file;       /* what the loader decodes */
    const char *codec_file; /* what the codec alone decodes (differs for J2K) */
    const char *label;
    codec_kind codec;
} bench_input;

static const bench_input inputs[] = {
    {"phantom_uncompressed.dcm", "phantom_uncompressed.dcm", "dicom-explicit-le", CODEC_DCMTK},
    {"phantom_jpegll.dcm", "phantom_jpegll.dcm", "dicom-jpeg-lossless-sv1", CODEC_DCMTK},
    {"phantom_jpegls.dcm", "phantom_jpegls.dcm", "dicom-jpeg-ls-lossless", CODEC_DCMTK},
    {"phantom_rle.dcm", "phantom_rle.dcm", "dicom-rle", CODEC_DCMTK},
    {"phantom_j2k.dcm", "phantom_j2k.j2k", "dicom-jpeg2000-lossless", CODEC_OPENJPEG},
    {"phantom_16bit.png", "phantom_16bit.png", "png-16bit-gray", CODEC_LIBPNG},
    {"phantom_8bit.jpg", "phantom_8bit.jpg", "jpeg-8bit-gray", CODEC_LIBJPEG},
};

/* ---- A: the loader ---- */

static bool run_loader(const uint8_t *d, size_t n, ms_err *err) {
    ms_source *src = NULL;
    ms_image *img = NULL;
    ms_decode_opts opts = ms_decode_opts_default();
    if (ms_source_open_memory(d, n, "bench", NULL, &src, err) != MS_OK) return false;
    bool ok = ms_source_decode(src, &opts, &img, err) == MS_OK;
    ms_image_destroy(img);
    ms_source_destroy(src);
    return ok;
}

/* ---- B: codecs alone ---- */

static bool run_dcmtk(const uint8_t *d, size_t n, ms_err *err) {
    ms_dcmtk *dc = NULL;
    ms_dcm_attrs a;
    bool ok = false;
    void *buf = NULL;
    if (ms_dcmtk_open(d, n, false, "bench", &dc, err) != MS_OK) return false;
    if (ms_dcmtk_get_attrs(dc, &a, err) != MS_OK) goto done_close;
    size_t frame =
        (size_t)a.rows * a.columns * a.samples_per_pixel * ((a.bits_allocated + 7u) / 8u);
    size_t cap = frame + (frame & 1u);
    buf = malloc(cap);
    if (buf != NULL) {
        char model[17];
        uint16_t planar = 0;
        ok = ms_dcmtk_decode_frame(dc, 0, frame, buf, cap, model, &planar, err) == MS_OK;
    }
    free(buf);
    ms_dcm_attrs_free(&a);
done_close:
    ms_dcmtk_close(dc);
    return ok;
}

typedef struct mem_stream {
    const uint8_t *p;
    size_t n, off;
} mem_stream;

static OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T n, void *user) {
    mem_stream *m = user;
    size_t left = m->n - m->off;
    if (left == 0) return (OPJ_SIZE_T)-1;
    if (n > left) n = left;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return n;
}
static OPJ_OFF_T ms_skip(OPJ_OFF_T n, void *user) {
    mem_stream *m = user;
    if (n < 0 || (size_t)n > m->n - m->off) return -1;
    m->off += (size_t)n;
    return n;
}
static OPJ_BOOL ms_seek(OPJ_OFF_T pos, void *user) {
    mem_stream *m = user;
    if (pos < 0 || (size_t)pos > m->n) return OPJ_FALSE;
    m->off = (size_t)pos;
    return OPJ_TRUE;
}

static bool run_openjpeg(const uint8_t *d, size_t n, ms_err *err) {
    bool jp2 = n >= 12 && memcmp(d + 4, "jP  ", 4) == 0;
    opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    opj_stream_t *stream = opj_stream_create(1u << 16, OPJ_TRUE);
    opj_image_t *image = NULL;
    mem_stream m = {d, n, 0};
    bool ok = false;
    if (codec == NULL || stream == NULL) goto done;
    opj_stream_set_user_data(stream, &m, NULL);
    opj_stream_set_user_data_length(stream, (OPJ_UINT64)n);
    opj_stream_set_read_function(stream, ms_read);
    opj_stream_set_skip_function(stream, ms_skip);
    opj_stream_set_seek_function(stream, ms_seek);
    opj_dparameters_t params;
    opj_set_default_decoder_parameters(&params);
    ok = opj_setup_decoder(codec, &params) && opj_read_header(stream, codec, &image) &&
         opj_decode(codec, stream, image) && opj_end_decompress(codec, stream);
done:
    if (!ok) ms_fail(err, MS_EFORMAT, "OpenJPEG failed");
    if (image) opj_image_destroy(image);
    if (stream) opj_stream_destroy(stream);
    if (codec) opj_destroy_codec(codec);
    return ok;
}

typedef struct png_mem {
    const uint8_t *p;
    size_t n, off;
} png_mem;

static void png_mem_read(png_structp png, png_bytep out, size_t len) {
    png_mem *m = png_get_io_ptr(png);
    if (len > m->n - m->off) png_error(png, "read past end");
    memcpy(out, m->p + m->off, len);
    m->off += len;
}

/* setjmp lives in this one function; locals changed after it are volatile (STYLE 5.4). */
static bool run_libpng(const uint8_t *d, size_t n, ms_err *err) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    png_mem m = {d, n, 0};
    bool ok = false;
    if (png == NULL || info == NULL) goto done;
    if (setjmp(png_jmpbuf(png))) goto done;
    png_set_read_fn(png, &m, png_mem_read);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (png_get_bit_depth(png, info) == 16) png_set_swap(png); /* host order, as the loader */
    png_read_update_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    pixels = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (pixels == NULL || rows == NULL) goto done;
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    ok = w > 0;
done:
    if (!ok) ms_fail(err, MS_EFORMAT, "libpng failed");
    free(rows);
    free(pixels);
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    return ok;
}

typedef struct jerr {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
} jerr;

static void jpeg_exit(j_common_ptr cinfo) { longjmp(((jerr *)cinfo->err)->jb, 1); }

static bool run_libjpeg(const uint8_t *d, size_t n, ms_err *err) {
    struct jpeg_decompress_struct cinfo;
    jerr je;
    uint8_t *volatile pixels = NULL;
    volatile bool ok = false;
    cinfo.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_exit;
    if (setjmp(je.jb)) goto done;
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, d, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_GRAYSCALE;
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    pixels = malloc(stride * cinfo.output_height);
    if (pixels == NULL) goto done;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    ok = true;
done:
    if (!ok) ms_fail(err, MS_EFORMAT, "libjpeg failed");
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    return ok;
}

static bool run_codec(codec_kind k, const uint8_t *d, size_t n, ms_err *err) {
    switch (k) {
    case CODEC_DCMTK: return run_dcmtk(d, n, err);
    case CODEC_OPENJPEG: return run_openjpeg(d, n, err);
    case CODEC_LIBPNG: return run_libpng(d, n, err);
    case CODEC_LIBJPEG: return run_libjpeg(d, n, err);
    }
    return false;
}

static const char *codec_name(codec_kind k) {
    switch (k) {
    case CODEC_DCMTK: return "dcmtk";
    case CODEC_OPENJPEG: return "openjpeg";
    case CODEC_LIBPNG: return "libpng";
    case CODEC_LIBJPEG: return "libjpeg-turbo";
    }
    return "?";
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s >= 0x20) putchar(*s);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    int runs = 30;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        uint32_t v;
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc &&
            ms_parse_u32(argv[i + 1], 20, 100000, &v)) {
            runs = (int)v;
            i++;
        } else if (argv[i][0] != '-' && dir == NULL) {
            dir = argv[i];
        } else {
            fprintf(stderr, "usage: bench_loader [--runs N>=20] DATA_DIR\n");
            return 2;
        }
    }
    if (dir == NULL) {
        fprintf(stderr, "usage: bench_loader [--runs N>=20] DATA_DIR\n");
        return 2;
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    double *ta = malloc(sizeof(double) * (size_t)runs), *tb = malloc(sizeof(double) * (size_t)runs);
    if (ta == NULL || tb == NULL) return 1;
    int failures = 0;
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        const bench_input *in = &inputs[i];
        char pa[4096], pb[4096];
        snprintf(pa, sizeof pa, "%s/%s", dir, in->file);
        snprintf(pb, sizeof pb, "%s/%s", dir, in->codec_file);
        uint8_t *da = NULL, *db = NULL;
        size_t na = 0, nb = 0;
        ms_err err;
        ms_err_clear(&err);
        const char *error = NULL;
        if (ms_file_read_all(pa, (uint64_t)1 << 32, &da, &na, &err) != MS_OK ||
            ms_file_read_all(pb, (uint64_t)1 << 32, &db, &nb, &err) != MS_OK) {
            error = err.msg;
        }
        /* warm-up, and a correctness gate: both sides must decode */
        if (error == NULL && !run_loader(da, na, &err)) error = err.msg;
        if (error == NULL && !run_codec(in->codec, db, nb, &err)) error = err.msg;
        for (int r = 0; error == NULL && r < runs; r++) {
            double t0 = now_ms();
            bool ok = run_loader(da, na, &err);
            double t1 = now_ms();
            ok = ok && run_codec(in->codec, db, nb, &err);
            double t2 = now_ms();
            if (!ok) error = err.msg;
            ta[r] = t1 - t0;
            tb[r] = t2 - t1;
        }
        printf("{\"bench\":\"loader\",\"input\":");
        json_str(in->file);
        printf(",\"kind\":");
        json_str(in->label);
        printf(",\"codec\":\"%s\",\"bytes\":%zu,\"runs\":%d", codec_name(in->codec), na, runs);
        if (error != NULL) {
            printf(",\"error\":");
            json_str(error);
            failures++;
        } else {
            double ma = quantile(ta, runs, 0.5), pa90 = quantile(ta, runs, 0.9);
            double mb = quantile(tb, runs, 0.5), pb90 = quantile(tb, runs, 0.9);
            printf(",\"loader_median_ms\":%.3f,\"loader_p90_ms\":%.3f,\"codec_median_ms\":%.3f,"
                   "\"codec_p90_ms\":%.3f,\"ratio\":%.3f,\"target_ratio\":1.10",
                   ma, pa90, mb, pb90, mb > 0 ? ma / mb : 0.0);
        }
        printf(",\"cpu\":");
        json_str(cpu);
        printf(",\"threads\":1,\"cores_online\":%ld,\"libpng\":\"%s\",\"libjpeg_turbo\":%d,"
               "\"openjpeg\":\"%s\",\"dcmtk\":\"%s\"}\n",
               sysconf(_SC_NPROCESSORS_ONLN), png_get_libpng_ver(NULL),
               LIBJPEG_TURBO_VERSION_NUMBER, opj_version(), MS_DCMTK_VERSION);
        fflush(stdout);
        ms_free(da);
        ms_free(db);
    }
    free(ta);
    free(tb);
    return failures ? 1 : 0;
}
