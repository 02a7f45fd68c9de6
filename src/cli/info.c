/* medscreen info: decode each input and report what was decoded and how. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "medscreen/json.h"
#include "medscreen/core.h"
#include "medscreen/loader.h"
#include "medscreen/report.h"

#define INFO_SCHEMA_VERSION 1

typedef struct info_opts {
    bool json;
    bool all_frames;
    bool have_frame;
    uint32_t frame;
    ms_decode_opts decode;
    ms_limits lim;
} info_opts;

/* Per-input outcome. */
enum { INFO_OK = 0, INFO_FAILED = 1, INFO_FATAL = 2 };

void cli_info_usage(FILE *f) {
    ms_limits d = ms_limits_default();
    fprintf(f,
            "Usage: medscreen info [OPTIONS] [--] FILE...\n"
            "\n"
            "Decodes each FILE (DICOM, PNG or JPEG, recognised by content) and prints what was\n"
            "decoded and how: size, frame, transfer syntax, photometric interpretation, bit\n"
            "depth, colour conversion, the modality LUT, VOI (window) and inversion applied,\n"
            "pixel spacing, modality, body part, view position, UIDs, and min/mean/max of the\n"
            "decoded pixels (floats, 0 = displayed black, 1 = displayed white).\n"
            "\n"
            "Options:\n"
            "  --json              print one JSON object per file and frame, one per line\n"
            "                      (JSON Lines, sorted keys, \"schema_version\": %d)\n"
            "  --frame N           decode frame N (0-based; default 0)\n"
            "  --all-frames        decode every frame\n"
            "  --rgb               decode to 3 channels (default: 1 channel, Rec. 601 luma)\n"
            "  --window C,W        apply window center C and width W (W > 0) instead of the\n"
            "                      file's VOI\n"
            "  --voi-index K       use the file's K-th window or VOI LUT (0-based; default 0)\n"
            "  --max-pixels N      refuse frames of more than N pixels (default %" PRIu64 ")\n"
            "  --max-file-bytes N  refuse files of more than N bytes (default %" PRIu64 ")\n"
            "  -v, --verbose       print library warnings on stderr (twice: debug messages)\n"
            "  -h, --help          show this help and exit\n"
            "  --                  end of options: later arguments are files\n"
            "\n"
            "A file that cannot be read or decoded is reported on stderr as\n"
            "'medscreen: FILE: reason' (with --json also as an object with \"status\": \"error\"\n"
            "on stdout) and the remaining files are still processed.\n"
            "\n"
            "Exit status: 0 every input decoded, 2 usage error, 3 some inputs failed,\n"
            "4 fatal (output could not be written, out of memory).\n",
            INFO_SCHEMA_VERSION, d.max_pixels, d.max_file_bytes);
}

/* ---- option parsing --------------------------------------------------------------------- */

static bool parse_window(const char *s, double *center, double *width) {
    const char *comma = strchr(s, ',');
    if (comma == NULL || strchr(comma + 1, ',') != NULL) return false;
    char c[128];
    size_t n = (size_t)(comma - s);
    if (n == 0 || n >= sizeof c) return false;
    memcpy(c, s, n);
    c[n] = '\0';
    return ms_parse_double(c, center) && ms_parse_double(comma + 1, width) && *width > 0;
}

/* Returns -1 to go on, or an exit code. On -1, *first_file is the index of the first file. */
static int parse_args(int argc, char **argv, info_opts *o, int *verbosity, int *first_file,
                      int *nfiles) {
    *nfiles = 0;
    *first_file = argc;
    bool only_files = false;
    /* Options and files may be mixed; files are compacted to the end of argv in order. */
    int out = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        int r;
        if (only_files || a[0] != '-' || a[1] == '\0') {
            argv[out++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_files = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_info_usage(stdout);
            return CLI_EXIT_OK;
        } else if (cli_verbosity_flag(a, verbosity)) {
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--all-frames") == 0) {
            o->all_frames = true;
        } else if (strcmp(a, "--rgb") == 0) {
            o->decode.color = MS_COLOR_RGB;
        } else if ((r = cli_opt_value("--frame", argc, argv, &i, &v)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u32(v, 0, UINT32_MAX, &o->frame))
                return cli_usage_error("--frame: '%s' is not a frame number", v);
            o->have_frame = true;
        } else if ((r = cli_opt_value("--voi-index", argc, argv, &i, &v)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u32(v, 0, UINT32_MAX, &o->decode.voi_index))
                return cli_usage_error("--voi-index: '%s' is not an index", v);
        } else if ((r = cli_opt_value("--window", argc, argv, &i, &v)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!parse_window(v, &o->decode.window_center, &o->decode.window_width))
                return cli_usage_error(
                    "--window: '%s' is not CENTER,WIDTH with finite numbers and WIDTH > 0", v);
            o->decode.user_window = true;
        } else if ((r = cli_opt_value("--max-pixels", argc, argv, &i, &v)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u64(v, 1, UINT64_MAX, &o->lim.max_pixels))
                return cli_usage_error("--max-pixels: '%s' is not a positive integer", v);
        } else if ((r = cli_opt_value("--max-file-bytes", argc, argv, &i, &v)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u64(v, 1, UINT64_MAX, &o->lim.max_file_bytes))
                return cli_usage_error("--max-file-bytes: '%s' is not a positive integer", v);
        } else {
            return cli_usage_error("info: unknown option '%s'", a);
        }
    }
    if (o->all_frames && o->have_frame)
        return cli_usage_error("info: --frame and --all-frames exclude each other");
    *first_file = 1;
    *nfiles = out - 1;
    if (*nfiles == 0) return cli_usage_error("info: no input files");
    return -1;
}

/* ---- output ----------------------------------------------------------------------------- */

typedef struct px_stats {
    double min, mean, max;
} px_stats;

static px_stats image_stats(const ms_image *img) {
    px_stats s = {NAN, NAN, NAN};
    size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    if (n == 0 || img->data == NULL) return s;
    double lo = img->data[0], hi = img->data[0], sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = img->data[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
    }
    s.min = lo;
    s.mean = sum / (double)n;
    s.max = hi;
    return s;
}

static bool write_buf(const ms_buf *b) {
    return b->len == 0 || fwrite(b->p, 1, b->len, stdout) == b->len;
}

static void json_common(ms_json *o, const char *path, const char *status) {
    ms_json_int(o, "schema_version", INFO_SCHEMA_VERSION);
    ms_json_str(o, "path", path);
    ms_json_str(o, "status", status);
}

/* Renders o as one JSON line on stdout and frees it. */
static int emit_json(ms_json *o) {
    ms_buf b = {0};
    bool ok = ms_json_render(o, &b);
    ms_json_free(o);
    ms_buf_append(&b, "\n", 1);
    int rc = INFO_OK;
    if (!ok || b.oom) {
        cli_diag("out of memory while writing JSON");
        rc = INFO_FATAL;
    } else if (!write_buf(&b)) {
        rc = INFO_FATAL;
    }
    ms_buf_free(&b);
    return rc;
}

static int emit_json_ok(const char *path, uint32_t frame, uint32_t nframes, const ms_image *img) {
    const ms_provenance *p = &img->prov;
    px_stats st = image_stats(img);
    ms_json o, sub;
    ms_json_init(&o);
    json_common(&o, path, "ok");
    ms_json_str(&o, "format", ms_format_name(p->format));
    ms_json_uint(&o, "frame", frame);
    ms_json_uint(&o, "frame_count", nframes);
    ms_json_int(&o, "width", img->width);
    ms_json_int(&o, "height", img->height);
    ms_json_int(&o, "channels", img->channels);
    ms_json_str(&o, "transfer_syntax", p->transfer_syntax);
    ms_json_str(&o, "photometric", p->photometric);
    ms_json_str(&o, "color_conversion", p->color_conversion);
    ms_json_uint(&o, "bits_allocated", p->bits_allocated);
    ms_json_uint(&o, "bits_stored", p->bits_stored);
    ms_json_uint(&o, "high_bit", p->high_bit);
    ms_json_bool(&o, "signed", p->is_signed);
    ms_json_uint(&o, "samples_per_pixel", p->samples_per_pixel);
    ms_json_uint(&o, "planar_configuration", p->planar_configuration);
    ms_json_bool(&o, "interlaced", p->interlaced);

    ms_report_json_pixel_pipeline(&o, p, false);

    ms_json_str(&o, "modality", p->modality);
    ms_json_str(&o, "body_part", p->body_part);
    ms_json_str(&o, "view_position", p->view_position);
    ms_json_str(&o, "study_uid", p->study_uid);
    ms_json_str(&o, "series_uid", p->series_uid);
    ms_json_str(&o, "sop_uid", p->sop_uid);
    ms_json_str(&o, "sop_class_uid", p->sop_class_uid);

    ms_json_init(&sub);
    ms_json_num(&sub, "min", st.min);
    ms_json_num(&sub, "mean", st.mean);
    ms_json_num(&sub, "max", st.max);
    ms_json_obj(&o, "stats", &sub);
    return emit_json(&o);
}

/* frame < 0: the input failed before a frame was chosen. */
static int emit_json_error(const char *path, const ms_source *src, int64_t frame, uint32_t nframes,
                           const ms_err *err) {
    ms_json o, sub;
    ms_json_init(&o);
    json_common(&o, path, "error");
    if (src != NULL) ms_json_str(&o, "format", ms_format_name(ms_source_format(src)));
    if (frame >= 0) {
        ms_json_int(&o, "frame", frame);
        ms_json_uint(&o, "frame_count", nframes);
    }
    ms_json_init(&sub);
    ms_json_str(&sub, "code", ms_status_name(err->status));
    ms_json_str(&sub, "message", err->msg);
    ms_json_obj(&o, "error", &sub);
    return emit_json(&o);
}

static void row(ms_buf *b, const char *label) { ms_buf_printf(b, "  %-20s ", label); }

static void row_text(ms_buf *b, const char *label, const char *untrusted) {
    row(b, label);
    if (untrusted[0] == '\0')
        ms_buf_puts(b, "-");
    else
        ms_text_escape(b, untrusted);
    ms_buf_puts(b, "\n");
}

static int emit_table(const char *path, uint32_t frame, uint32_t nframes, const ms_image *img) {
    const ms_provenance *p = &img->prov;
    px_stats st = image_stats(img);
    ms_buf b = {0};
    ms_text_escape(&b, path);
    ms_buf_puts(&b, "\n");
    row_text(&b, "format", ms_format_name(p->format));
    row(&b, "frame");
    ms_buf_printf(&b, "%" PRIu32 " of %" PRIu32 " (0-based)\n", frame, nframes);
    row(&b, "size");
    ms_buf_printf(&b, "%dx%d x %d channel%s\n", (int)img->width, (int)img->height,
                   (int)img->channels, img->channels == 1 ? "" : "s");
    row_text(&b, "transfer syntax", p->transfer_syntax);
    row_text(&b, "photometric", p->photometric);
    row(&b, "bits");
    ms_buf_printf(&b, "allocated %u, stored %u, high bit %u, %s\n", (unsigned)p->bits_allocated,
                   (unsigned)p->bits_stored, (unsigned)p->high_bit,
                   p->is_signed ? "signed" : "unsigned");
    row(&b, "samples per pixel");
    ms_buf_printf(&b, "%u, planar configuration %u%s\n", (unsigned)p->samples_per_pixel,
                   (unsigned)p->planar_configuration, p->interlaced ? ", interlaced" : "");
    row_text(&b, "colour conversion", p->color_conversion);
    row(&b, "modality LUT");
    ms_buf_printf(&b, "%s (slope %.6g, intercept %.6g)\n", ms_modality_lut_name(p->modality_lut),
                   p->rescale_slope, p->rescale_intercept);
    row(&b, "VOI");
    ms_buf_printf(&b, "%s, %s, center %.6g, width %.6g, index %" PRIu32 "\n",
                   ms_voi_kind_name(p->voi), ms_voi_function_name(p->voi_function),
                   p->window_center, p->window_width, p->voi_index);
    row_text(&b, "inversion", ms_inversion_name(p->inversion));
    row(&b, "pixel spacing");
    if (p->spacing_source == MS_SPACING_NONE)
        ms_buf_puts(&b, "unknown\n");
    else
        ms_buf_printf(&b, "%.6g x %.6g mm (row x column, %s)\n", p->spacing_row_mm,
                       p->spacing_col_mm, ms_spacing_source_name(p->spacing_source));
    row_text(&b, "modality", p->modality);
    row_text(&b, "body part", p->body_part);
    row_text(&b, "view position", p->view_position);
    row_text(&b, "study UID", p->study_uid);
    row_text(&b, "series UID", p->series_uid);
    row_text(&b, "SOP instance UID", p->sop_uid);
    row_text(&b, "SOP class UID", p->sop_class_uid);
    row(&b, "pixels min/mean/max");
    ms_buf_printf(&b, "%.6g / %.6g / %.6g\n\n", st.min, st.mean, st.max);
    int rc = INFO_OK;
    if (b.oom) {
        cli_diag("out of memory while formatting output");
        rc = INFO_FATAL;
    } else if (!write_buf(&b)) {
        rc = INFO_FATAL;
    }
    ms_buf_free(&b);
    return rc;
}

/* ---- per input -------------------------------------------------------------------------- */

/* Worse outcome wins: fatal over failed over ok. */
static int worse(int a, int b) { return a > b ? a : b; }

static int fail_input(const info_opts *o, const char *path, const ms_source *src, int64_t frame,
                      uint32_t nframes, const ms_err *err) {
    cli_report_input_error(path, err);
    int rc = INFO_FAILED;
    if (o->json) rc = worse(rc, emit_json_error(path, src, frame, nframes, err));
    return rc;
}

/* Refuses what is not a regular file before opening it: a directory is an input error, and
 * opening a FIFO could block forever. A missing file is left to the loader's message. */
static ms_status check_path(const char *path, ms_err *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) return MS_OK;
    if (S_ISDIR(sb.st_mode)) return ms_fail(err, MS_EIO, "%s: is a directory", path);
    if (!S_ISREG(sb.st_mode)) return ms_fail(err, MS_EIO, "%s: not a regular file", path);
    return MS_OK;
}

static int info_one(const info_opts *o, const char *path) {
    ms_err err;
    ms_err_clear(&err);
    ms_source *src = NULL;
    ms_status st = check_path(path, &err);
    if (st == MS_OK) st = ms_source_open_file(path, &o->lim, &src, &err);
    if (st != MS_OK) return fail_input(o, path, NULL, -1, 0, &err);

    uint32_t nframes = ms_source_frame_count(src);
    uint32_t first = o->have_frame ? o->frame : 0;
    uint32_t last = first;
    if (o->all_frames) {
        if (nframes == 0) {
            ms_fail(&err, MS_EFORMAT, "%s: the image has no frames", path);
            int rc = fail_input(o, path, src, -1, 0, &err);
            ms_source_destroy(src);
            return rc;
        }
        last = nframes - 1;
    }
    int rc = INFO_OK;
    for (uint32_t f = first;; f++) {
        ms_decode_opts d = o->decode;
        d.frame = f;
        ms_image *img = NULL;
        ms_err_clear(&err);
        st = ms_source_decode(src, &d, &img, &err);
        if (st != MS_OK) {
            rc = worse(rc, fail_input(o, path, src, f, nframes, &err));
        } else {
            rc = worse(rc, o->json ? emit_json_ok(path, f, nframes, img)
                                   : emit_table(path, f, nframes, img));
            ms_image_destroy(img);
        }
        if (rc == INFO_FATAL || f == last) break;
    }
    ms_source_destroy(src);
    return rc;
}

int cli_info_main(int argc, char **argv, int verbosity) {
    info_opts o;
    memset(&o, 0, sizeof o);
    o.decode = ms_decode_opts_default();
    o.lim = ms_limits_default();
    int first = 0, nfiles = 0;
    int code = parse_args(argc, argv, &o, &verbosity, &first, &nfiles);
    if (code >= 0) return code;
    cli_set_verbosity(verbosity);

    int worst = INFO_OK;
    for (int i = 0; i < nfiles; i++) {
        worst = worse(worst, info_one(&o, argv[first + i]));
        if (worst == INFO_FATAL) break;
        /* Interleave results and diagnostics in input order when both go to a terminal. */
        fflush(stdout);
    }
    if (worst == INFO_FATAL) return CLI_EXIT_FATAL;
    return worst == INFO_FAILED ? CLI_EXIT_INPUT : CLI_EXIT_OK;
}
