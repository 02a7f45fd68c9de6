/* Writes small PNG and JPEG fixtures (and a few deliberately bad files) into a directory, for
 * the CLI tests and as fuzzing seeds. Deterministic: the same bytes on every run with the same
 * libpng/libjpeg. Usage: ms_gen_fixtures OUTDIR */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#define W 16
#define H 16

static char g_dir[4096];

static int path_in_dir(char *out, size_t n, const char *name) {
    int k = snprintf(out, n, "%s/%s", g_dir, name);
    return k > 0 && (size_t)k < n ? 0 : -1;
}

/* sample(x, y, c): a gradient with a bright square, so statistics are non-trivial. */
static unsigned sample(int x, int y, int c, unsigned maxv) {
    unsigned v = (unsigned)((x * 13 + y * 7 + c * 50) % 256);
    if (x >= 5 && x < 9 && y >= 5 && y < 9) v = 255;
    return (unsigned)((unsigned long)v * maxv / 255u);
}

typedef struct png_spec {
    const char *name;
    int color_type; /* PNG_COLOR_TYPE_* */
    int bit_depth;
    int interlace;
    int with_trns;
} png_spec;

static int write_png(const png_spec *s) {
    char path[4200];
    if (path_in_dir(path, sizeof path, s->name) != 0) return -1;
    FILE *volatile f = fopen(path, "wb");
    if (f == NULL) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (info == NULL || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_compression_level(png, 9);
    png_set_IHDR(png, info, W, H, s->bit_depth, s->color_type, s->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    int channels = 1;
    if (s->color_type == PNG_COLOR_TYPE_RGB) channels = 3;
    if (s->color_type == PNG_COLOR_TYPE_GRAY_ALPHA) channels = 2;
    if (s->color_type == PNG_COLOR_TYPE_RGB_ALPHA) channels = 4;
    if (s->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[16];
        for (int i = 0; i < 16; i++) {
            pal[i].red = (png_byte)(i * 17);
            pal[i].green = (png_byte)(255 - i * 17);
            pal[i].blue = (png_byte)((i * 40) & 255);
        }
        png_set_PLTE(png, info, pal, 16);
    }
    if (s->with_trns && s->color_type == PNG_COLOR_TYPE_GRAY) {
        png_color_16 t = {0, 0, 0, 0, 0};
        png_set_tRNS(png, info, NULL, 0, &t);
    }
    png_set_pHYs(png, info, 2000, 2000, PNG_RESOLUTION_METER); /* 0.5 mm pixels */
    png_write_info(png, info);
    if (s->bit_depth == 16) png_set_swap(png); /* rows below are host (little) endian */
    int npasses = png_set_interlace_handling(png);
    unsigned maxv = (1u << s->bit_depth) - 1u;
    unsigned char row[W * 4 * 2];
    for (int pass = 0; pass < npasses; pass++) {
        for (int y = 0; y < H; y++) {
            memset(row, 0, sizeof row);
            for (int x = 0; x < W; x++) {
                for (int c = 0; c < channels; c++) {
                    unsigned v = sample(x, y, c, maxv);
                    if (s->color_type == PNG_COLOR_TYPE_PALETTE) v = (unsigned)((x + y) & 15);
                    if (s->bit_depth == 16) {
                        size_t at = ((size_t)x * (size_t)channels + (size_t)c) * 2;
                        row[at] = (unsigned char)(v & 255);
                        row[at + 1] = (unsigned char)(v >> 8);
                    } else if (s->bit_depth == 8) {
                        row[x * channels + c] = (unsigned char)v;
                    } else { /* 1, 2 or 4 bits, one channel */
                        int per = 8 / s->bit_depth;
                        int shift = (per - 1 - x % per) * s->bit_depth;
                        row[x / per] = (unsigned char)(row[x / per] | (v << shift));
                    }
                }
            }
            png_write_row(png, row);
        }
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0 ? 0 : -1;
}

struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
};

static void jpeg_fail(j_common_ptr cinfo) {
    struct jerr *e = (struct jerr *)cinfo->err;
    longjmp(e->jb, 1);
}

static int write_jpeg(const char *name, int components, int progressive, int quality) {
    char path[4200];
    if (path_in_dir(path, sizeof path, name) != 0) return -1;
    FILE *volatile f = fopen(path, "wb");
    if (f == NULL) return -1;
    struct jpeg_compress_struct c;
    struct jerr e;
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_fail;
    if (setjmp(e.jb)) {
        jpeg_destroy_compress(&c);
        fclose(f);
        return -1;
    }
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = W;
    c.image_height = H;
    c.input_components = components;
    c.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    c.optimize_coding = TRUE;
    c.density_unit = 2; /* dots per cm */
    c.X_density = 20;
    c.Y_density = 20;
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    unsigned char row[W * 3];
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < W; x++)
            for (int k = 0; k < components; k++)
                row[x * components + k] = (unsigned char)sample(x, y, k, 255);
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f) == 0 ? 0 : -1;
}

static int write_bytes(const char *name, const void *data, size_t n) {
    char path[4200];
    if (path_in_dir(path, sizeof path, name) != 0) return -1;
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    int ok = n == 0 || fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Copies the first half of a file we wrote into another: a truncated image. */
static int write_truncated(const char *src_name, const char *dst_name) {
    char path[4200];
    if (path_in_dir(path, sizeof path, src_name) != 0) return -1;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    unsigned char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (n < 16) return -1;
    return write_bytes(dst_name, buf, n / 2);
}

int main(int argc, char **argv) {
    if (argc != 2 || strlen(argv[1]) >= sizeof g_dir) {
        fputs("usage: ms_gen_fixtures OUTDIR\n", stderr);
        return 2;
    }
    memcpy(g_dir, argv[1], strlen(argv[1]) + 1);
    static const png_spec pngs[] = {
        {"gray8.png", PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, 0},
        {"gray16.png", PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE, 0},
        {"gray1.png", PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, 0},
        {"gray4_trns.png", PNG_COLOR_TYPE_GRAY, 4, PNG_INTERLACE_NONE, 1},
        {"gray_alpha8.png", PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, 0},
        {"rgb8.png", PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, 0},
        {"rgb16_adam7.png", PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_ADAM7, 0},
        {"rgba8.png", PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE, 0},
        {"palette4.png", PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE, 0},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) bad |= write_png(&pngs[i]);
    bad |= write_jpeg("gray.jpg", 1, 0, 90);
    bad |= write_jpeg("rgb.jpg", 3, 0, 90);
    bad |= write_jpeg("rgb_progressive.jpg", 3, 1, 75);
    bad |= write_truncated("rgb8.png", "truncated.png");
    bad |= write_truncated("rgb.jpg", "truncated.jpg");
    static const char text[] = "this is not an image\n";
    bad |= write_bytes("notimage.txt", text, sizeof text - 1);
    bad |= write_bytes("empty.bin", "", 0);
    if (bad) {
        fprintf(stderr, "ms_gen_fixtures: cannot write fixtures into %s\n", g_dir);
        return 1;
    }
    return 0;
}
