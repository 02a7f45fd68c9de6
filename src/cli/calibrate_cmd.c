/* medscreen calibrate: re-fits a model's temperature and operating points to a site's own
 * labelled scans and reports how well the model ranks them (AUROC), how well its
 * probabilities match the labels before and after (ECE), and each operating point's
 * sensitivity and specificity, with stratified bootstrap confidence intervals.
 *
 * Calibration must not silently drop data: every labelled file must be in the folder, every
 * image in the folder must be labelled, and every labelled scan must score; otherwise nothing
 * is written. The statistics live in the score layer (include/medscreen/calib.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "calibrate.h"
#include "cli.h"
#include "inputs.h"
#include "medscreen/calib.h"
#include "medscreen/core.h"
#include "medscreen/csv.h"
#include "medscreen/json.h"
#include "medscreen/meta.h"
#include "medscreen/net.h"
#include "medscreen/nn.h"
#include "medscreen/score.h"
#include "model_use.h"

#define MIN_PER_CLASS 5u
#define MAX_LABELS_BYTES (256u << 20)
#define MAX_LISTED 5u /* files named in a mismatch message */
#define ECE_BINS 10u
#define CI_LEVEL 0.95
#define T_MIN 0.01 /* models/FORMAT.md: temperature in [0.01, 100] */
#define T_MAX 100.0

void cli_calibrate_usage(FILE *f) {
    fputs("Usage: medscreen calibrate --labels LABELS.csv DIR -o NEW.msm [OPTIONS]\n"
          "       medscreen calibrate --labels LABELS.csv DIR --dry-run [OPTIONS]\n"
          "Re-fits a model's temperature and operating points to a site's own labelled scans\n"
          "(scores drift between sites, scanners and model versions) and reports AUROC,\n"
          "sensitivity and specificity with bootstrap confidence intervals. NEW.msm is the\n"
          "model with only its metadata changed: temperature, operating_points,\n"
          "default_operating_point, and an x-calibrated line (date, scans, labels sha256).\n"
          "\n"
          "LABELS.csv: CSV (RFC 4180) with a header row naming at least the columns 'path'\n"
          "(relative to DIR, forward slashes) and 'label' (0/1, normal/abnormal or\n"
          "false/true); other columns are ignored. Every labelled file must be in DIR and\n"
          "every image in DIR must be labelled.\n"
          "\n"
          "Options:\n"
          "  --labels FILE        the labels (required)\n"
          "  -o, --output FILE    the calibrated model to write (required unless --dry-run;\n"
          "                       never the input model itself)\n"
          "  --dry-run            fit and report, write nothing\n"
          "  -m, --model FILE     model (default: $MEDSCREEN_MODEL, else models/" CLI_DEFAULT_MODEL_NAME
          "\n"
          "                       beside the executable's folder or in ../share/medscreen)\n"
          "  --targets LIST       operating points to fit, comma-separated sensNN (the highest\n"
          "                       threshold with sensitivity >= NN%) or specNN (the lowest\n"
          "                       with specificity >= NN%), NN 1 to 100 (default: the model's\n"
          "                       points when all are named so, else sens90,sens95)\n"
          "  --bootstrap N        stratified bootstrap resamples for the 95% intervals\n"
          "                       (default 1000; 0: no intervals)\n"
          "  --seed S             bootstrap seed (default 1; the same seed, the same intervals)\n"
          "  --min-scans N        refuse fewer labelled scans (default 20); at least 5 normal\n"
          "                       and 5 abnormal scans are always required\n"
          "  -j, --jobs N         inference threads (default: number of CPUs, at most 16)\n"
          "  --json               the report as one JSON object on stdout\n"
          "  -v, --verbose        library warnings on stderr\n"
          "  -h, --help           show this help\n"
          "\n"
          "Exit codes: 0 calibrated; 2 usage error; 3 the labels or the folder cannot be used\n"
          "(malformed labels, labelled files missing from DIR, unlabelled images in DIR, one\n"
          "class only, too few scans, a scan that cannot be read or scored); 4 fatal (model\n"
          "unreadable or unusable, output not writable). Nothing is written on error.\n",
          f);
}

/* ---- options -------------------------------------------------------------------------- */

typedef struct target {
    char name[16];
    bool sens; /* else spec */
    uint32_t percent;
} target;

typedef struct cal_opts {
    const char *labels, *dir, *model_path, *out;
    char *model_path_owned;
    bool dry_run, json;
    uint32_t bootstrap, min_scans;
    uint64_t seed;
    int32_t jobs;
    const char *targets_arg;
    target targets[MS_META_MAX_POINTS];
    uint32_t ntargets;
    ms_limits lim;
} cal_opts;

/* sensNN / specNN with NN 1..100 (no leading zeros). */
static bool parse_target(const char *s, size_t len, target *t) {
    if (len < 5 || len > 7) return false;
    bool sens = strncmp(s, "sens", 4) == 0;
    if (!sens && strncmp(s, "spec", 4) != 0) return false;
    char digits[4];
    memcpy(digits, s + 4, len - 4);
    digits[len - 4] = '\0';
    if (digits[0] == '0') return false;
    uint32_t p;
    if (!ms_parse_u32(digits, 1, 100, &p)) return false;
    memcpy(t->name, s, len);
    t->name[len] = '\0';
    t->sens = sens;
    t->percent = p;
    return true;
}

static int parse_targets(const char *arg, cal_opts *o) {
    o->ntargets = 0;
    const char *p = arg;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (o->ntargets == MS_META_MAX_POINTS)
            return cli_usage_error("calibrate: --targets: at most %u operating points",
                                   MS_META_MAX_POINTS);
        target *t = &o->targets[o->ntargets];
        if (!parse_target(p, len, t))
            return cli_usage_error("calibrate: --targets: '%.*s' is not sensNN or specNN "
                                   "(NN from 1 to 100)",
                                   (int)(len > 32 ? 32 : len), p);
        for (uint32_t i = 0; i < o->ntargets; i++)
            if (strcmp(o->targets[i].name, t->name) == 0)
                return cli_usage_error("calibrate: --targets: '%s' given twice", t->name);
        o->ntargets++;
        if (!comma) break;
        p = comma + 1;
    }
    return -1;
}

static int parse_args(int argc, char **argv, cal_opts *o, int *verbosity) {
    bool end = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r;
        if (end || a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->dir)
                return cli_usage_error("calibrate: give one folder ('%s' and '%s')", o->dir, a);
            o->dir = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            end = true;
            continue;
        }
#define OPT(name) ((r = cli_opt_value(name, argc, argv, &i, &v)) != 0)
#define SHORT(s, name, what)                                                                       \
    (strcmp(a, s) == 0                                                                             \
         ? (i + 1 < argc ? (v = argv[++i], r = 1)                                                  \
                         : (cli_usage_error("calibrate: " s " needs " what), r = -1))              \
         : OPT(name))
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_calibrate_usage(stdout);
            return CLI_EXIT_OK;
        } else if (cli_verbosity_flag(a, verbosity)) {
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = true;
        } else if (OPT("--labels")) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->labels = v;
        } else if (SHORT("-o", "--output", "a file")) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->out = v;
        } else if (SHORT("-m", "--model", "a model file")) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->model_path = v;
        } else if (SHORT("-j", "--jobs", "a number")) {
            if (r < 0) return CLI_EXIT_USAGE;
            uint32_t n;
            if (!ms_parse_u32(v, 1, MS_POOL_MAX_THREADS, &n))
                return cli_usage_error("calibrate: --jobs '%s': expected 1 to %d", v,
                                       MS_POOL_MAX_THREADS);
            o->jobs = (int32_t)n;
        } else if (OPT("--bootstrap")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u32(v, 0, 1000000, &o->bootstrap))
                return cli_usage_error("calibrate: --bootstrap '%s': expected 0 to 1000000", v);
        } else if (OPT("--seed")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u64(v, 0, UINT64_MAX, &o->seed))
                return cli_usage_error("calibrate: --seed '%s': expected a whole number", v);
        } else if (OPT("--min-scans")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u32(v, 2 * MIN_PER_CLASS, 100000000, &o->min_scans))
                return cli_usage_error("calibrate: --min-scans '%s': expected %u or more", v,
                                       2 * MIN_PER_CLASS);
        } else if (OPT("--targets")) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->targets_arg = v;
            int rc = parse_targets(v, o);
            if (rc >= 0) return rc;
        } else {
            return cli_usage_error("calibrate: unknown option '%s'", a);
        }
#undef SHORT
#undef OPT
    }
    if (!o->labels) return cli_usage_error("calibrate: --labels FILE is required");
    if (!o->dir) return cli_usage_error("calibrate: give the folder of labelled scans");
    if (!o->out && !o->dry_run)
        return cli_usage_error("calibrate: give -o NEW.msm (or --dry-run to only report)");
    struct stat sb;
    if (stat(o->dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return cli_usage_error("calibrate: %s: not a folder", o->dir);
    return -1;
}

/* ---- labels.csv ----------------------------------------------------------------------- */

typedef struct label_row {
    char *path; /* relative to DIR, normalised */
    uint8_t label;
    size_t line;
    /* filled while scoring */
    char *file; /* DIR/path */
    double score;
} label_row;

typedef struct labels {
    label_row *rows;
    size_t n, cap;
    char sha[65];
} labels;

static void labels_free(labels *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->rows[i].path);
        free(l->rows[i].file);
    }
    free(l->rows);
    memset(l, 0, sizeof *l);
}

static void trim(const char **s, size_t *len) {
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) (*len)--;
}

static bool field_is(const char *f, const char *name) {
    size_t len = strlen(f);
    trim(&f, &len);
    return len == strlen(name) && strncasecmp(f, name, len) == 0;
}

static int parse_label(const char *f) {
    static const char *const no[] = {"0", "normal", "false"}, *const yes[] = {"1", "abnormal",
                                                                              "true"};
    for (size_t i = 0; i < 3; i++) {
        if (field_is(f, no[i])) return 0;
        if (field_is(f, yes[i])) return 1;
    }
    return -1;
}

/* A relative path with forward slashes, no empty, "." or ".." components; a leading "./" is
 * dropped. Returns NULL and sets *why when it is not one. */
static char *normalise_path(const char *f, const char **why) {
    while (f[0] == '.' && f[1] == '/') f += 2;
    if (!f[0]) return *why = "empty path", NULL;
    if (f[0] == '/') return *why = "an absolute path (give it relative to the folder)", NULL;
    if (strchr(f, '\\')) return *why = "a backslash (use forward slashes)", NULL;
    const char *c = f;
    for (;;) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);
        if (len == 0) return *why = "an empty path component ('//' or a trailing '/')", NULL;
        if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return *why = "a '.' or '..' component", NULL;
        if (!slash) break;
        c = slash + 1;
    }
    size_t n = strlen(f) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, f, n);
    return p;
}

static int cmp_rows(const void *a, const void *b) {
    const label_row *x = a, *y = b;
    int d = strcmp(x->path, y->path);
    if (d) return d;
    return (x->line > y->line) - (x->line < y->line);
}

/* Reads and checks labels.csv. Returns -1 on success, else an exit code (reported). */
static int read_labels(const cal_opts *o, labels *out) {
    const char *name = o->labels;
    uint8_t *data = NULL;
    size_t size = 0;
    ms_err err;
    ms_err_clear(&err);
    if (ms_file_read_all(name, MAX_LABELS_BYTES, &data, &size, &err) != MS_OK) {
        cli_report_input_error(name, &err);
        return err.status == MS_ENOMEM ? CLI_EXIT_FATAL : CLI_EXIT_INPUT;
    }
    ms_sha256_hex(data, size, out->sha);
    ms_csv *r = NULL;
    size_t rec_line = 0;
    bool got = false;
    int rc = -1;
    size_t ncols = 0, col_path = SIZE_MAX, col_label = SIZE_MAX;
    /* the reader skips a spreadsheet's byte order mark */
    ms_status st = ms_csv_create((const char *)data, size, name, NULL, &r, &err);
    if (st == MS_OK) st = ms_csv_next(r, &got, &err);
    if (st == MS_OK && !got) {
        cli_diag("%s: empty: expected a header row naming the columns 'path' and 'label'", name);
        rc = CLI_EXIT_INPUT;
        goto done;
    }
    for (;;) {
        if (st == MS_ENOMEM) {
            cli_diag("calibrate: out of memory reading %s", name);
            rc = CLI_EXIT_FATAL;
            goto done;
        }
        if (st != MS_OK) { /* "NAME:LINE: malformed CSV: ..." or a limit */
            cli_report_input_error(name, &err);
            rc = CLI_EXIT_INPUT;
            goto done;
        }
        if (!got) break;
        rec_line = ms_csv_line(r);
        if (ncols == 0) { /* the header */
            ncols = ms_csv_nfields(r);
            for (size_t i = 0; i < ncols; i++) {
                size_t *col = field_is(ms_csv_field(r, i, NULL), "path")    ? &col_path
                              : field_is(ms_csv_field(r, i, NULL), "label") ? &col_label
                                                                            : NULL;
                if (!col) continue;
                if (*col != SIZE_MAX) {
                    cli_diag("%s:%zu: the column '%s' appears twice", name, rec_line,
                             col == &col_path ? "path" : "label");
                    rc = CLI_EXIT_INPUT;
                    goto done;
                }
                *col = i;
            }
            if (col_path == SIZE_MAX || col_label == SIZE_MAX) {
                cli_diag("%s:%zu: the header has no '%s' column (it needs 'path' and 'label'; "
                         "the first line must be the header)",
                         name, rec_line, col_path == SIZE_MAX ? "path" : "label");
                rc = CLI_EXIT_INPUT;
                goto done;
            }
        } else {
            if (ms_csv_nfields(r) != ncols) {
                cli_diag("%s:%zu: malformed CSV: %zu field%s, the header has %zu", name, rec_line,
                         ms_csv_nfields(r), ms_csv_nfields(r) == 1 ? "" : "s", ncols);
                rc = CLI_EXIT_INPUT;
                goto done;
            }
            int lab = parse_label(ms_csv_field(r, col_label, NULL));
            if (lab < 0) {
                cli_diag("%s:%zu: bad label '%s': expected 0 or 1 (or normal/abnormal, "
                         "false/true)",
                         name, rec_line, ms_csv_field(r, col_label, NULL));
                rc = CLI_EXIT_INPUT;
                goto done;
            }
            const char *pwhy = NULL;
            char *path = normalise_path(ms_csv_field(r, col_path, NULL), &pwhy);
            if (!path) {
                if (!pwhy) {
                    rc = CLI_EXIT_FATAL;
                    cli_diag("calibrate: out of memory");
                } else {
                    cli_diag("%s:%zu: bad path '%s': %s", name, rec_line,
                             ms_csv_field(r, col_path, NULL), pwhy);
                    rc = CLI_EXIT_INPUT;
                }
                goto done;
            }
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 256;
                label_row *rows = realloc(out->rows, cap * sizeof *rows);
                if (!rows) {
                    free(path);
                    cli_diag("calibrate: out of memory");
                    rc = CLI_EXIT_FATAL;
                    goto done;
                }
                out->rows = rows;
                out->cap = cap;
            }
            label_row *row = &out->rows[out->n++];
            memset(row, 0, sizeof *row);
            row->path = path;
            row->label = (uint8_t)lab;
            row->line = rec_line;
        }
        st = ms_csv_next(r, &got, &err);
    }
    if (out->n == 0) {
        cli_diag("%s: no labelled scans after the header", name);
        rc = CLI_EXIT_INPUT;
        goto done;
    }
    qsort(out->rows, out->n, sizeof *out->rows, cmp_rows);
    for (size_t i = 1; i < out->n; i++) {
        if (strcmp(out->rows[i].path, out->rows[i - 1].path) == 0) {
            cli_diag("%s:%zu: duplicate path '%s' (first on line %zu)", name, out->rows[i].line,
                     out->rows[i].path, out->rows[i - 1].line);
            rc = CLI_EXIT_INPUT;
            goto done;
        }
    }
done:
    ms_csv_destroy(r);
    ms_free(data);
    return rc;
}

/* ---- the folder against the labels ---------------------------------------------------- */

/* Whether the file's first bytes are an image medscreen reads (by content, as scan does). */
static bool looks_like_image(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    uint8_t head[512];
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    return ms_format_detect(head, got) != MS_FORMAT_UNKNOWN;
}

static label_row *find_label(labels *l, const char *path) {
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(l->rows[mid].path, path);
        if (d == 0) return &l->rows[mid];
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Every labelled file must be in DIR and every image in DIR must be labelled: a labels file
 * for another folder (or a folder with new scans) is the classic mistake. */
static int match_folder(const cal_opts *o, labels *l) {
    cli_inputs in = {0};
    int rc = -1;
    if (cli_inputs_add(&in, o->dir) != 0) {
        cli_diag("calibrate: out of memory");
        cli_inputs_free(&in);
        return CLI_EXIT_FATAL;
    }
    if (in.walk_errors) {
        cli_diag("%s: %zu entr%s could not be read (see above): every scan must be readable",
                 o->dir, in.walk_errors, in.walk_errors == 1 ? "y" : "ies");
        rc = CLI_EXIT_INPUT;
    }
    size_t unlabelled = 0;
    for (size_t i = 0; i < in.n; i++) {
        const char *rel = strchr(in.items[i].rel, '/'); /* "ROOT/path": drop the folder name */
        rel = rel ? rel + 1 : in.items[i].rel;
        label_row *row = find_label(l, rel);
        if (row) {
            if (!row->file) {
                size_t len = strlen(in.items[i].path) + 1;
                if (!(row->file = malloc(len))) {
                    cli_diag("calibrate: out of memory");
                    cli_inputs_free(&in);
                    return CLI_EXIT_FATAL;
                }
                memcpy(row->file, in.items[i].path, len);
            }
            continue;
        }
        if (!looks_like_image(in.items[i].path)) continue; /* notes, the labels file itself */
        if (unlabelled < MAX_LISTED)
            cli_diag("%s: an image in %s without a label in %s", in.items[i].path, o->dir,
                     o->labels);
        unlabelled++;
    }
    if (unlabelled) {
        cli_diag("%s: %zu image%s in %s %s no label%s: label every scan, or calibrate on a "
                 "folder that holds only the labelled ones",
                 o->labels, unlabelled, unlabelled == 1 ? "" : "s", o->dir,
                 unlabelled == 1 ? "has" : "have",
                 unlabelled > MAX_LISTED ? " (first 5 listed)" : "");
        rc = CLI_EXIT_INPUT;
    }
    size_t missing = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->rows[i].file) continue;
        if (missing < MAX_LISTED)
            cli_diag("%s:%zu: '%s' is not in %s", o->labels, l->rows[i].line, l->rows[i].path,
                     o->dir);
        missing++;
    }
    if (missing) {
        cli_diag("%s: %zu labelled file%s not in %s%s: is this the labels file for this "
                 "folder? (paths are relative to the folder; hidden files are not read)",
                 o->labels, missing, missing == 1 ? " is" : "s are", o->dir,
                 missing > MAX_LISTED ? " (first 5 listed)" : "");
        rc = CLI_EXIT_INPUT;
    }
    cli_inputs_free(&in);
    return rc;
}

static int check_counts(const cal_opts *o, const labels *l) {
    size_t pos = 0;
    for (size_t i = 0; i < l->n; i++) pos += l->rows[i].label;
    size_t neg = l->n - pos;
    if (pos == 0 || neg == 0) {
        cli_diag("%s: all %zu labels are %d: calibration needs both normal and abnormal scans",
                 o->labels, l->n, pos ? 1 : 0);
        return CLI_EXIT_INPUT;
    }
    if (l->n < o->min_scans || pos < MIN_PER_CLASS || neg < MIN_PER_CLASS) {
        cli_diag("%s: too few scans: %zu (%zu normal, %zu abnormal); calibration needs at "
                 "least %u (--min-scans) with at least %u of each class",
                 o->labels, l->n, neg, pos, o->min_scans, MIN_PER_CLASS);
        return CLI_EXIT_INPUT;
    }
    return -1;
}

/* ---- scoring -------------------------------------------------------------------------- */

/* The scans scan would skip: here an error, since a label without a score would bias the
 * fit. */
static bool refused(const ms_model_meta *m, const ms_provenance *p, ms_err *err, const char *path) {
    char msg[MS_ERR_MSG_MAX];
    if (!cli_model_refusal(m, p, path, msg, sizeof msg)) return false;
    ms_fail(err, MS_EUNSUPPORTED, "%s", msg);
    return true;
}

/* The raw score value of one file's first frame. */
static ms_status score_file(const cal_opts *o, const ms_model_meta *m, ms_session *s, float *input,
                            label_row *row, ms_err *err) {
    uint8_t *data = NULL;
    size_t size = 0;
    ms_source *src = NULL;
    ms_image *img = NULL;
    ms_status st = ms_file_read_all(row->file, o->lim.max_file_bytes, &data, &size, err);
    if (st != MS_OK) return st;
    if ((st = ms_source_open_memory(data, size, row->file, &o->lim, &src, err)) != MS_OK) goto done;
    ms_decode_opts d = ms_score_decode_opts(m);
    d.frame = 0;
    if ((st = ms_source_decode(src, &d, &img, err)) != MS_OK) goto done;
    if (refused(m, &img->prov, err, row->file)) {
        st = err ? err->status : MS_EUNSUPPORTED;
        goto done;
    }
    ms_geometry geo;
    if ((st = ms_score_preprocess(m, img, input, &geo, err)) != MS_OK) goto done;
    if ((st = ms_session_run(s, input, err)) != MS_OK) goto done;
    ms_tensor t;
    if ((st = ms_session_output(s, m->score_index, &t)) != MS_OK) {
        ms_fail(err, MS_EINTERNAL, "the model has no score output");
        goto done;
    }
    float v = t.data[(size_t)m->score_channel * (size_t)t.h * (size_t)t.w];
    if (!isfinite(v)) {
        st = ms_fail(err, MS_EINTERNAL, "%s: the model's score is not a finite number", row->file);
        goto done;
    }
    row->score = v;
done:
    ms_image_destroy(img);
    ms_source_destroy(src);
    ms_free(data);
    return st;
}

/* ---- fitting and the report ----------------------------------------------------------- */

typedef struct point_result {
    const target *t;
    float threshold;
    bool reached;
    double sens, spec;
    ms_calib_interval sens_ci, spec_ci;
    bool had_old;
    float old_threshold;
    double old_sens, old_spec;
} point_result;

typedef struct fit {
    size_t n, normal, abnormal;
    double auroc;
    ms_calib_interval auroc_ci;
    bool have_ci;
    bool fitted_t, t_at_bound;
    float old_t, new_t;
    double ece_before, ece_after;
    point_result points[MS_META_MAX_POINTS];
    uint32_t npoints;
    const char *default_point;
    char date[16];
} fit;

static void put_ci(ms_json *o, const char *key, double v, const ms_calib_interval *ci, bool have) {
    ms_json c;
    ms_json_init(&c);
    ms_json_num(&c, "value", v);
    if (have) {
        ms_json_num(&c, "ci_low", ci->lo);
        ms_json_num(&c, "ci_high", ci->hi);
    } else {
        ms_json_null(&c, "ci_low");
        ms_json_null(&c, "ci_high");
    }
    ms_json_obj(o, key, &c);
}

static bool report_json(const cal_opts *o, const ms_model_meta *m, const char *model_sha,
                        const labels *l, const fit *f, ms_buf *out) {
    ms_json j;
    ms_json_init(&j);
    ms_json_int(&j, "schema_version", 1);
    ms_json_str(&j, "tool", "medscreen " MS_VERSION_STRING);
    ms_json model;
    ms_json_init(&model);
    ms_json_str(&model, "path", o->model_path);
    ms_json_str(&model, "name", m->name);
    ms_json_str(&model, "version", m->version);
    ms_json_str(&model, "sha256", model_sha);
    ms_json_str(&model, "score_kind", ms_meta_kind_name(m->score_kind));
    ms_json_obj(&j, "model", &model);
    ms_json lab;
    ms_json_init(&lab);
    ms_json_str(&lab, "path", o->labels);
    ms_json_str(&lab, "sha256", l->sha);
    ms_json_obj(&j, "labels", &lab);
    ms_json_str(&j, "folder", o->dir);
    ms_json_str(&j, "output", o->dry_run ? NULL : o->out);
    ms_json_bool(&j, "dry_run", o->dry_run);
    ms_json_str(&j, "date", f->date);
    ms_json sc;
    ms_json_init(&sc);
    ms_json_uint(&sc, "total", f->n);
    ms_json_uint(&sc, "normal", f->normal);
    ms_json_uint(&sc, "abnormal", f->abnormal);
    ms_json_obj(&j, "scans", &sc);
    ms_json bs;
    ms_json_init(&bs);
    ms_json_uint(&bs, "resamples", o->bootstrap);
    ms_json_uint(&bs, "seed", o->seed);
    ms_json_num(&bs, "level", CI_LEVEL);
    ms_json_str(&bs, "method", "stratified percentile");
    ms_json_obj(&j, "bootstrap", &bs);
    put_ci(&j, "auroc", f->auroc, &f->auroc_ci, f->have_ci);
    ms_json t;
    ms_json_init(&t);
    if (m->score_kind == MS_META_KIND_LOGIT) {
        ms_json_num(&t, "old", f->old_t);
        ms_json_num(&t, "new", f->new_t);
    } else {
        ms_json_null(&t, "old");
        ms_json_null(&t, "new");
    }
    ms_json_bool(&t, "fitted", f->fitted_t);
    ms_json_bool(&t, "at_bound", f->t_at_bound);
    ms_json_obj(&j, "temperature", &t);
    ms_json e;
    ms_json_init(&e);
    ms_json_uint(&e, "bins", ECE_BINS);
    ms_json_num(&e, "before", f->ece_before);
    ms_json_num(&e, "after", f->ece_after);
    ms_json_obj(&j, "ece", &e);
    ms_buf arr = {0};
    ms_buf_puts(&arr, "[");
    for (uint32_t i = 0; i < f->npoints; i++) {
        const point_result *p = &f->points[i];
        ms_json pj;
        ms_json_init(&pj);
        ms_json_str(&pj, "name", p->t->name);
        ms_json_str(&pj, "kind", p->t->sens ? "sensitivity" : "specificity");
        ms_json_num(&pj, "target", p->t->percent / 100.0);
        ms_json_num(&pj, "threshold", p->threshold);
        ms_json_bool(&pj, "reached", p->reached);
        put_ci(&pj, "sensitivity", p->sens, &p->sens_ci, f->have_ci);
        put_ci(&pj, "specificity", p->spec, &p->spec_ci, f->have_ci);
        if (p->had_old) {
            ms_json old;
            ms_json_init(&old);
            ms_json_num(&old, "threshold", p->old_threshold);
            ms_json_num(&old, "sensitivity", p->old_sens);
            ms_json_num(&old, "specificity", p->old_spec);
            ms_json_obj(&pj, "before", &old);
        } else {
            ms_json_null(&pj, "before");
        }
        if (i) ms_buf_puts(&arr, ",");
        if (!ms_json_render(&pj, &arr)) arr.oom = true;
        ms_json_free(&pj);
    }
    ms_buf_puts(&arr, "]");
    ms_json_raw(&j, "operating_points", &arr);
    ms_json_str(&j, "default_operating_point", f->default_point);
    bool ok = ms_json_render(&j, out);
    ms_json_free(&j);
    ms_buf_puts(out, "\n");
    return ok && !out->oom;
}

static void ci_text(ms_buf *b, double v, const ms_calib_interval *ci, bool have) {
    ms_buf_printf(b, "%.3f", v);
    if (have) ms_buf_printf(b, " (%.3f-%.3f)", ci->lo, ci->hi);
}

static bool report_text(const cal_opts *o, const ms_model_meta *m, const labels *l, const fit *f,
                        ms_buf *b) {
    (void)l;
    ms_buf_printf(b, "scans            %zu (%zu normal, %zu abnormal)\n", f->n, f->normal,
                  f->abnormal);
    ms_buf_printf(b, "AUROC            ");
    ci_text(b, f->auroc, &f->auroc_ci, f->have_ci);
    ms_buf_puts(b, "\n");
    if (f->have_ci)
        ms_buf_printf(b, "intervals        95%%, %u stratified bootstrap resamples, seed %llu\n",
                      o->bootstrap, (unsigned long long)o->seed);
    if (m->score_kind == MS_META_KIND_LOGIT)
        ms_buf_printf(b, "temperature      %g -> %g%s\n", f->old_t, f->new_t,
                      f->t_at_bound ? " (at the edge of [0.01, 100])" : "");
    else
        ms_buf_printf(b, "temperature      not fitted (score_kind=probability)\n");
    ms_buf_printf(b, "ECE (%u bins)    %.4f -> %.4f\n", ECE_BINS, f->ece_before, f->ece_after);
    ms_buf_printf(b, "%-16s %-11s %-22s %-22s %s\n", "operating point", "threshold",
                  "sensitivity (95% CI)", "specificity (95% CI)", "before (threshold sens spec)");
    for (uint32_t i = 0; i < f->npoints; i++) {
        const point_result *p = &f->points[i];
        ms_buf s1 = {0}, s2 = {0};
        ci_text(&s1, p->sens, &p->sens_ci, f->have_ci);
        ci_text(&s2, p->spec, &p->spec_ci, f->have_ci);
        ms_buf_printf(b, "%-16s %-11.6g %-22s %-22s", p->t->name, (double)p->threshold,
                      s1.p ? s1.p : "", s2.p ? s2.p : "");
        if (p->had_old)
            ms_buf_printf(b, " %.6g %.3f %.3f", (double)p->old_threshold, p->old_sens, p->old_spec);
        else
            ms_buf_puts(b, " -");
        ms_buf_printf(b, "%s%s\n", strcmp(p->t->name, f->default_point) == 0 ? "  (default)" : "",
                      p->reached ? "" : "  (target not reachable)");
        ms_buf_free(&s1);
        ms_buf_free(&s2);
    }
    if (o->dry_run)
        ms_buf_puts(b, "dry run: nothing written\n");
    else
        ms_buf_printf(b, "wrote            %s\n", o->out);
    return !b->oom;
}

/* ---- the new model -------------------------------------------------------------------- */

/* The original meta lines with temperature, operating_points, default_operating_point and
 * x-calibrated replaced in place (appended when absent). */
static bool build_meta(const ms_model_meta *m, const fit *f, const labels *l, ms_buf *b) {
    char tbuf[32], points[MS_META_MAX_POINTS * 48], cal[160];
    snprintf(tbuf, sizeof tbuf, "%.9g", (double)f->new_t);
    size_t used = 0;
    points[0] = '\0';
    for (uint32_t i = 0; i < f->npoints; i++) {
        int k = snprintf(points + used, sizeof points - used, "%s%s:%.9g", i ? "," : "",
                         f->points[i].t->name, (double)f->points[i].threshold);
        if (k < 0 || (size_t)k >= sizeof points - used) return false;
        used += (size_t)k;
    }
    snprintf(cal, sizeof cal, "%s, %zu scans, labels sha256 %s", f->date, f->n, l->sha);
    struct {
        const char *key, *value;
        bool done;
    } rep[] = {{"temperature", f->fitted_t ? tbuf : NULL, false},
               {"operating_points", points, false},
               {"default_operating_point", f->default_point, false},
               {"x-calibrated", cal, false}};
    size_t nrep = sizeof rep / sizeof rep[0];
    for (uint32_t i = 0; i < m->line_count; i++) {
        const char *key = m->keys[i], *value = m->values[i];
        for (size_t r = 0; r < nrep; r++) {
            if (rep[r].value && strcmp(key, rep[r].key) == 0) {
                value = rep[r].value;
                rep[r].done = true;
            }
        }
        ms_buf_printf(b, "%s=%s\n", key, value);
    }
    for (size_t r = 0; r < nrep; r++)
        if (rep[r].value && !rep[r].done) ms_buf_printf(b, "%s=%s\n", rep[r].key, rep[r].value);
    return !b->oom;
}

/* Copies every tensor but meta, checks the result loads as a scan-ready model with exactly
 * the fitted values, then writes it atomically (unless dry_run). */
static int write_model(const cal_opts *o, const ms_net *net, const ms_buf *meta_text,
                       const fit *f) {
    const ms_msm *src = ms_net_msm(net);
    ms_msm_writer *w = NULL;
    uint8_t *bytes = NULL;
    size_t size = 0;
    ms_msm *m2 = NULL;
    ms_net *net2 = NULL;
    ms_err err;
    ms_err_clear(&err);
    int rc = CLI_EXIT_FATAL;
    if (ms_msm_writer_create(&w, &err) != MS_OK) goto fail;
    for (uint32_t i = 0; i < ms_msm_tensor_count(src); i++) {
        const ms_msm_tensor *t = ms_msm_tensor_at(src, i);
        ms_status st;
        if (strcmp(t->name, "meta") == 0) {
            uint32_t dim = (uint32_t)meta_text->len;
            st = ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, &dim, meta_text->p, &err);
        } else {
            st = ms_msm_writer_add(w, t->name, t->dtype, t->ndim, t->dims, t->data, &err);
        }
        if (st != MS_OK) goto fail;
    }
    if (ms_msm_writer_encode(w, &bytes, &size, &err) != MS_OK) goto fail;
    ms_limits lim = o->lim;
    if (ms_msm_decode(bytes, size, o->out ? o->out : "<calibrated>", &lim, &m2, &err) != MS_OK)
        goto fail;
    ms_status st = ms_net_from_msm(m2, o->out ? o->out : "<calibrated>", &net2, &err);
    m2 = NULL; /* owned by net2, or destroyed */
    if (st != MS_OK) goto fail;
    const ms_model_meta *nm = ms_net_model_meta(net2);
    if (ms_model_meta_check_scan(nm, o->out ? o->out : "<calibrated>", &err) != MS_OK) goto fail;
    bool same = nm->point_count == f->npoints && (!f->fitted_t || nm->temperature == f->new_t);
    for (uint32_t i = 0; same && i < f->npoints; i++)
        same = strcmp(nm->points[i].name, f->points[i].t->name) == 0 &&
               nm->points[i].threshold == f->points[i].threshold;
    if (!same) {
        ms_fail(&err, MS_EINTERNAL, "the new metadata does not read back as written");
        goto fail;
    }
    if (!o->dry_run && ms_msm_writer_save(w, o->out, &err) != MS_OK) goto fail;
    rc = -1;
    goto done;
fail:
    cli_report_input_error(o->out ? o->out : "calibrate", &err);
done:
    ms_net_destroy(net2);
    ms_msm_destroy(m2);
    ms_free(bytes);
    ms_msm_writer_destroy(w);
    return rc;
}

static void today(char out[16]) {
    time_t now = time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH"); /* reproducible builds and tests */
    uint64_t v;
    if (sde && ms_parse_u64(sde, 0, UINT64_C(253402300799), &v)) now = (time_t)v;
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(out, 16, "%Y-%m-%d", &tm);
    else
        ms_str_copy(out, 16, "1970-01-01");
}

/* Targets: the model's points when all are sensNN / specNN, else sens90,sens95. */
static void default_targets(cal_opts *o, const ms_model_meta *m) {
    o->ntargets = 0;
    bool all = m->point_count > 0;
    for (uint32_t i = 0; i < m->point_count && all; i++) {
        const char *nm = m->points[i].name;
        all = parse_target(nm, strlen(nm), &o->targets[o->ntargets]);
        if (all) o->ntargets++;
    }
    if (!all) {
        o->ntargets = 2;
        parse_target("sens90", 6, &o->targets[0]);
        parse_target("sens95", 6, &o->targets[1]);
    }
}

static int fit_all(const cal_opts *o, const ms_model_meta *m, const labels *l, fit *f) {
    size_t n = l->n;
    double *score = calloc(n, sizeof *score), *p_old = calloc(n, sizeof *p_old),
           *p_new = calloc(n, sizeof *p_new);
    uint8_t *y = calloc(n, 1);
    ms_err err;
    ms_err_clear(&err);
    int rc = CLI_EXIT_FATAL;
    if (!score || !p_old || !p_new || !y) {
        cli_diag("calibrate: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        score[i] = l->rows[i].score;
        y[i] = l->rows[i].label;
        p_old[i] = ms_score_probability(m, score[i]);
    }
    f->n = n;
    ms_calib_count(y, n, &f->normal, &f->abnormal);
    if (ms_calib_auroc(score, y, n, &f->auroc, &err) != MS_OK) goto fail;
    ms_model_meta nm = *m; /* a by-value copy for ms_score_probability; never destroyed */
    f->old_t = m->temperature;
    f->new_t = m->temperature;
    if (m->score_kind == MS_META_KIND_LOGIT) {
        double t;
        if (ms_calib_fit_temperature(score, y, n, T_MIN, T_MAX, &t, &f->t_at_bound, &err) != MS_OK)
            goto fail;
        /* Six significant digits, then exactly the float every reader will parse. */
        char buf[32];
        snprintf(buf, sizeof buf, "%.6g", t);
        double tr;
        if (!ms_parse_double(buf, &tr)) tr = t;
        if (tr < T_MIN) tr = T_MIN;
        if (tr > T_MAX) tr = T_MAX;
        f->new_t = (float)tr;
        if ((double)f->new_t < T_MIN) f->new_t = nextafterf(f->new_t, INFINITY);
        if ((double)f->new_t > T_MAX) f->new_t = nextafterf(f->new_t, 0);
        f->fitted_t = true;
        nm.temperature = f->new_t;
    }
    for (size_t i = 0; i < n; i++) p_new[i] = ms_score_probability(&nm, score[i]);
    f->ece_before = ms_calib_ece(p_old, y, n, ECE_BINS);
    f->ece_after = ms_calib_ece(p_new, y, n, ECE_BINS);
    float thr[MS_META_MAX_POINTS];
    f->npoints = o->ntargets;
    for (uint32_t i = 0; i < o->ntargets; i++) {
        point_result *p = &f->points[i];
        p->t = &o->targets[i];
        p->reached = true;
        ms_status st =
            p->t->sens ? ms_calib_sens_threshold(p_new, y, n, p->t->percent, &p->threshold, &err)
                       : ms_calib_spec_threshold(p_new, y, n, p->t->percent, &p->threshold,
                                                 &p->reached, &err);
        if (st != MS_OK) goto fail;
        thr[i] = p->threshold;
        ms_calib_rates(p_new, y, n, (double)p->threshold, &p->sens, &p->spec);
        for (uint32_t k = 0; k < m->point_count; k++) {
            if (strcmp(m->points[k].name, p->t->name) != 0) continue;
            p->had_old = true;
            p->old_threshold = m->points[k].threshold;
            ms_calib_rates(p_old, y, n, (double)p->old_threshold, &p->old_sens, &p->old_spec);
        }
    }
    f->default_point = f->points[0].t->name;
    if (m->default_point >= 0)
        for (uint32_t i = 0; i < f->npoints; i++)
            if (strcmp(f->points[i].t->name, m->points[m->default_point].name) == 0)
                f->default_point = f->points[i].t->name;
    if (o->bootstrap > 0) {
        ms_calib_interval sens[MS_META_MAX_POINTS], spec[MS_META_MAX_POINTS];
        if (ms_calib_bootstrap(score, p_new, y, n, thr, f->npoints, o->bootstrap, o->seed, CI_LEVEL,
                               &f->auroc_ci, sens, spec, &err) != MS_OK)
            goto fail;
        for (uint32_t i = 0; i < f->npoints; i++) {
            f->points[i].sens_ci = sens[i];
            f->points[i].spec_ci = spec[i];
        }
        f->have_ci = true;
    }
    rc = -1;
    goto done;
fail:
    cli_report_input_error("calibrate", &err);
done:
    free(score);
    free(p_old);
    free(p_new);
    free(y);
    return rc;
}

/* ---- main ----------------------------------------------------------------------------- */

static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int cli_calibrate_main(int argc, char **argv, int verbosity) {
    cal_opts o;
    memset(&o, 0, sizeof o);
    o.bootstrap = 1000;
    o.seed = 1;
    o.min_scans = 20;
    o.lim = ms_limits_default();
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.jobs = ncpu > 0 ? (int32_t)(ncpu > 16 ? 16 : ncpu) : 1;
    int rc = parse_args(argc, argv, &o, &verbosity);
    if (rc >= 0) return rc;
    cli_set_verbosity(verbosity);
    o.model_path = cli_model_choose(o.model_path, "calibrate", &o.model_path_owned);
    if (!o.model_path) {
        return CLI_EXIT_FATAL;
    }
    if (o.out && same_file(o.out, o.model_path)) {
        rc = cli_usage_error("calibrate: -o %s is the input model: write the calibrated model "
                             "to a new file",
                             o.out);
        free(o.model_path_owned);
        return rc;
    }

    labels l = {0};
    ms_net *net = NULL;
    ms_session *session = NULL;
    float *input = NULL;
    ms_buf report = {0}, meta_text = {0};
    ms_err err;
    ms_err_clear(&err);
    fit f;
    memset(&f, 0, sizeof f);
    today(f.date);

    /* The data first: a mismatched folder should not wait for the model. */
    if ((rc = read_labels(&o, &l)) >= 0) goto done;
    if ((rc = match_folder(&o, &l)) >= 0) goto done;
    if ((rc = check_counts(&o, &l)) >= 0) goto done;

    uint8_t *mbytes = NULL;
    size_t msize = 0;
    char model_sha[65];
    if (ms_net_load(o.model_path, &o.lim, &net, &err) != MS_OK ||
        ms_file_read_all(o.model_path, o.lim.max_model_bytes, &mbytes, &msize, &err) != MS_OK) {
        cli_report_input_error(o.model_path, &err);
        rc = CLI_EXIT_FATAL;
        goto done;
    }
    ms_sha256_hex(mbytes, msize, model_sha);
    ms_free(mbytes);
    const ms_model_meta *m = ms_net_model_meta(net);
    if (ms_model_meta_check_scan(m, o.model_path, &err) != MS_OK) {
        cli_report_input_error(o.model_path, &err);
        rc = CLI_EXIT_FATAL;
        goto done;
    }
    if (!o.targets_arg) default_targets(&o, m);
    if (m->score_kind != MS_META_KIND_LOGIT)
        cli_diag("calibrate: %s: score_kind=%s: the scores are already probabilities, so the "
                 "temperature is not fitted (only the operating points are)",
                 o.model_path, ms_meta_kind_name(m->score_kind));

    int32_t ic = 0, ih = 0, iw = 0;
    ms_net_input_shape(net, m->input_index, &ic, &ih, &iw);
    input = malloc((size_t)ic * (size_t)ih * (size_t)iw * sizeof *input);
    ms_session_options so = {1, o.jobs, false};
    if (o.jobs > 1) ms_blas_set_threads(1);
    if (!input || ms_session_create_opts(net, &so, &session, &err) != MS_OK) {
        if (!input) ms_fail(&err, MS_ENOMEM, "out of memory");
        cli_report_input_error(o.model_path, &err);
        rc = CLI_EXIT_FATAL;
        goto done;
    }
    size_t failed = 0;
    for (size_t i = 0; i < l.n; i++) {
        ms_err_clear(&err);
        if (score_file(&o, m, session, input, &l.rows[i], &err) != MS_OK) {
            if (err.status == MS_ENOMEM) {
                cli_report_input_error(l.rows[i].file, &err);
                rc = CLI_EXIT_FATAL;
                goto done;
            }
            cli_report_input_error(l.rows[i].file, &err);
            failed++;
        }
    }
    if (failed) {
        cli_diag("calibrate: %zu of %zu labelled scans could not be scored (above): "
                 "calibration uses every labelled scan or none; nothing written",
                 failed, l.n);
        rc = CLI_EXIT_INPUT;
        goto done;
    }

    if ((rc = fit_all(&o, m, &l, &f)) >= 0) goto done;
    if (f.auroc < 0.5)
        cli_diag("calibrate: warning: AUROC %.3f is below 0.5: the scores rank the classes "
                 "backwards; are the labels inverted (1 must be abnormal)?",
                 f.auroc);
    if (f.t_at_bound)
        cli_diag("calibrate: warning: the fitted temperature %g is at the edge of its range "
                 "[0.01, 100]",
                 (double)f.new_t);
    for (uint32_t i = 0; i < f.npoints; i++)
        if (!f.points[i].reached)
            cli_diag("calibrate: warning: %s: the target cannot be reached on these scans",
                     f.points[i].t->name);

    if (!build_meta(m, &f, &l, &meta_text)) {
        cli_diag("calibrate: out of memory");
        rc = CLI_EXIT_FATAL;
        goto done;
    }
    if ((rc = write_model(&o, net, &meta_text, &f)) >= 0) goto done;
    bool ok = o.json ? report_json(&o, m, model_sha, &l, &f, &report)
                     : report_text(&o, m, &l, &f, &report);
    if (!ok) {
        cli_diag("calibrate: out of memory");
        rc = CLI_EXIT_FATAL;
        goto done;
    }
    fwrite(report.p, 1, report.len, stdout);
    rc = CLI_EXIT_OK;
done:
    ms_buf_free(&report);
    ms_buf_free(&meta_text);
    ms_session_destroy(session);
    free(input);
    ms_net_destroy(net);
    labels_free(&l);
    free(o.model_path_owned);
    return rc;
}
