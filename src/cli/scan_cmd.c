/* medscreen scan: batch screening. Inputs (files, folders, stdin lists) go through a two-stage
 * pipeline (see "the pipeline" below): --jobs reader threads read, hash, decode and
 * preprocess; --jobs scorer threads, each with its own inference session, infer, map the
 * region map back onto the image, extract regions, render the overlay and write the per-scan
 * JSON. The batch outputs (summary.json, summary.csv, report.html) are written at the end,
 * also after Ctrl-C / SIGTERM. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "inputs.h"
#include "medscreen/core.h"
#include "medscreen/json.h"
#include "medscreen/meta.h"
#include "medscreen/net.h"
#include "medscreen/report.h"
#include "medscreen/score.h"
#include "model_use.h"
#include "scan.h"


void cli_scan_usage(FILE *f) {
    fputs("Usage: medscreen scan [OPTIONS] INPUT... -o DIR\n"
          "       medscreen scan [OPTIONS] - [-0] -o DIR     (paths on stdin)\n"
          "       medscreen scan REFS/ --expect EXPECTED/ [--tolerance T]\n"
          "Screens images (DICOM, PNG, JPEG; folders are walked recursively) with a .msm model\n"
          "and writes, per scan, a JSON report and an overlay, and per batch summary.json,\n"
          "summary.csv and report.html (open it in a browser; it works offline).\n"
          "\n"
          "Options:\n"
          "  -o, --output DIR        output folder (created; nothing is written outside it)\n"
          "  -m, --model FILE        model (default: $MEDSCREEN_MODEL, else models/" CLI_DEFAULT_MODEL_NAME
          "\n"
          "                          beside the executable's folder or in ../share/medscreen)\n"
          "  --operating-point NAME  one of the model's operating points (default: its default)\n"
          "  --threshold P           flag scans whose probability is >= P instead\n"
          "  --region-threshold P    regions: map probability >= P (default: the model's\n"
          "                          map_threshold, else the operating threshold)\n"
          "  --hysteresis R          regions grow down to R * threshold (default 0.75)\n"
          "  --min-region-px N       drop smaller regions (default: image pixels / 2000)\n"
          "  --max-regions N         keep the N best regions (default 8)\n"
          "  --frames first|all      frames of multi-frame DICOM to screen (default all)\n"
          "  --overlay-size N        longer side of overlays in pixels (default 1024; 0: full)\n"
          "  --no-overlays           write no overlays, thumbnails or report.html\n"
          "  -j, --jobs N            N reader and N scorer threads (default: number of CPUs)\n"
          "  --jsonl                 also print each scan's JSON on stdout as it finishes\n"
          "  --resume                skip scans whose report in DIR has the same input and\n"
          "                          model sha256 (errors are retried)\n"
          "  --shard K/N             screen only this machine's share (K in 1..N): a file\n"
          "                          belongs to shard 1 + (hash of its name) mod N\n"
          "  --expect DIR            compare with the reports in DIR (a previous -o folder);\n"
          "                          print a diff and exit 5 on drift\n"
          "  --tolerance T           allowed probability difference for --expect (1e-4)\n"
          "  --fail-on-finding       exit 1 when a scan is flagged (errors still win)\n"
          "  -0                      stdin list is NUL-separated (find -print0)\n"
          "  -q, --quiet             no progress bar\n"
          "  -h, --help              show this help\n"
          "\n"
          "Exit codes: 0 all processed (flagged or not); 1 a scan was flagged, with\n"
          "--fail-on-finding; 2 usage error; 3 some inputs failed (errors outrank findings);\n"
          "4 fatal (model unreadable, output not writable); 5 --expect found drift;\n"
          "130 / 143 stopped by SIGINT / SIGTERM (partial summary written).\n",
          f);
}

/* ---- options -------------------------------------------------------------------------- */

typedef struct scan_opts {
    const char *model_path;
    char *model_path_owned;
    const char *out_dir;
    const char *op_name;
    bool have_threshold;
    double threshold;
    bool have_region_threshold;
    double region_threshold;
    double hysteresis;
    uint64_t min_region_px; /* 0: image pixels / 2000 */
    uint32_t max_regions;
    bool all_frames;
    int32_t overlay_side;
    bool overlays;
    int32_t jobs;
    bool jsonl, resume, fail_on_finding, nul_list, quiet;
    uint32_t shard_k, shard_n;
    const char *expect_dir;
    double tolerance;
    ms_limits lim;
} scan_opts;

static volatile sig_atomic_t g_stop_signal = 0;

static void on_signal(int sig) {
    g_stop_signal = sig;
    /* A second Ctrl-C ends the process at once. */
    signal(sig, SIG_DFL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool parse_prob(const char *s, double *out) {
    double v;
    if (!ms_parse_double(s, &v) || !(v >= 0.0 && v <= 1.0)) return false;
    *out = v;
    return true;
}

static bool parse_shard(const char *s, uint32_t *k, uint32_t *n) {
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || slash - s > 10) return false;
    char kbuf[12];
    memcpy(kbuf, s, (size_t)(slash - s));
    kbuf[slash - s] = '\0';
    if (!ms_parse_u32(slash + 1, 1, 1000000, n) || !ms_parse_u32(kbuf, 1, *n, k)) return false;
    return true;
}

/* Returns -1 to go on, else an exit code. inputs (argc entries) receives the input
 * arguments, in order; options and inputs may be mixed, "--" ends the options. */
static int parse_args(int argc, char **argv, scan_opts *o, int *verbosity, const char **inputs,
                      int *n_inputs, bool *read_stdin) {
    *n_inputs = 0;
    bool inputs_started = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r;
        if (inputs_started || a[0] != '-' || strcmp(a, "-") == 0) {
            if (strcmp(a, "-") == 0 && !inputs_started) {
                if (*read_stdin) return cli_usage_error("scan: '-' given twice");
                *read_stdin = true;
                continue;
            }
            inputs[(*n_inputs)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            inputs_started = true;
            continue;
        }
#define OPT(name) ((r = cli_opt_value(name, argc, argv, &i, &v)) != 0)
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_scan_usage(stdout);
            return CLI_EXIT_OK;
        } else if (cli_verbosity_flag(a, verbosity)) {
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = true;
        } else if (strcmp(a, "-0") == 0) {
            o->nul_list = true;
        } else if (strcmp(a, "--jsonl") == 0) {
            o->jsonl = true;
        } else if (strcmp(a, "--resume") == 0) {
            o->resume = true;
        } else if (strcmp(a, "--fail-on-finding") == 0) {
            o->fail_on_finding = true;
        } else if (strcmp(a, "--no-overlays") == 0) {
            o->overlays = false;
        } else if (strcmp(a, "-o") == 0 || OPT("--output")) {
            if (strcmp(a, "-o") == 0) {
                if (i + 1 >= argc) return cli_usage_error("scan: -o needs a folder");
                v = argv[++i];
            } else if (r < 0) {
                return CLI_EXIT_USAGE;
            }
            o->out_dir = v;
        } else if (strcmp(a, "-m") == 0 || OPT("--model")) {
            if (strcmp(a, "-m") == 0) {
                if (i + 1 >= argc) return cli_usage_error("scan: -m needs a model file");
                v = argv[++i];
            } else if (r < 0) {
                return CLI_EXIT_USAGE;
            }
            o->model_path = v;
        } else if (strcmp(a, "-j") == 0 || OPT("--jobs")) {
            if (strcmp(a, "-j") == 0) {
                if (i + 1 >= argc) return cli_usage_error("scan: -j needs a number");
                v = argv[++i];
            } else if (r < 0) {
                return CLI_EXIT_USAGE;
            }
            uint32_t n;
            if (!ms_parse_u32(v, 1, 256, &n))
                return cli_usage_error("scan: --jobs '%s': expected 1 to 256", v);
            o->jobs = (int32_t)n;
        } else if (OPT("--operating-point")) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->op_name = v;
        } else if (OPT("--threshold")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!parse_prob(v, &o->threshold))
                return cli_usage_error("scan: --threshold '%s': expected a probability in [0, 1]",
                                       v);
            o->have_threshold = true;
        } else if (OPT("--region-threshold")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!parse_prob(v, &o->region_threshold))
                return cli_usage_error(
                    "scan: --region-threshold '%s': expected a probability in [0, 1]", v);
            o->have_region_threshold = true;
        } else if (OPT("--hysteresis")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!parse_prob(v, &o->hysteresis))
                return cli_usage_error("scan: --hysteresis '%s': expected a ratio in [0, 1]", v);
        } else if (OPT("--min-region-px")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u64(v, 1, UINT64_C(1) << 40, &o->min_region_px))
                return cli_usage_error("scan: --min-region-px '%s': expected a positive count",
                                       v);
        } else if (OPT("--max-regions")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_u32(v, 1, 1000, &o->max_regions))
                return cli_usage_error("scan: --max-regions '%s': expected 1 to 1000", v);
        } else if (OPT("--frames")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (strcmp(v, "all") == 0)
                o->all_frames = true;
            else if (strcmp(v, "first") == 0)
                o->all_frames = false;
            else
                return cli_usage_error("scan: --frames '%s': expected 'first' or 'all'", v);
        } else if (OPT("--overlay-size")) {
            if (r < 0) return CLI_EXIT_USAGE;
            uint32_t n;
            if (!ms_parse_u32(v, 0, 16384, &n) || (n > 0 && n < 64))
                return cli_usage_error("scan: --overlay-size '%s': expected 0 or 64 to 16384", v);
            o->overlay_side = (int32_t)n;
        } else if (OPT("--shard")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!parse_shard(v, &o->shard_k, &o->shard_n))
                return cli_usage_error("scan: --shard '%s': expected K/N with 1 <= K <= N", v);
        } else if (OPT("--expect")) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->expect_dir = v;
        } else if (OPT("--tolerance")) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!ms_parse_double(v, &o->tolerance) || !(o->tolerance >= 0 && o->tolerance <= 1))
                return cli_usage_error("scan: --tolerance '%s': expected a number in [0, 1]", v);
        } else {
            return cli_usage_error("scan: unknown option '%s'", a);
        }
#undef OPT
    }
    if (o->have_threshold && o->op_name)
        return cli_usage_error("scan: give --operating-point or --threshold, not both");
    if (!o->out_dir && !o->expect_dir && !o->jsonl)
        return cli_usage_error("scan: nothing to write: give -o DIR (or --jsonl, --expect DIR)");
    if (o->resume && !o->out_dir) return cli_usage_error("scan: --resume needs -o DIR");
    if (o->nul_list && !*read_stdin) return cli_usage_error("scan: -0 needs '-' (stdin list)");
    return -1;
}

/* ---- shared state ---------------------------------------------------------------------- */

typedef struct scan_item scan_item;

typedef struct scan_batch {
    const scan_opts *opt;
    const ms_net *net;
    const ms_model_meta *meta;
    ms_scan_context ctx;
    char model_sha[65];
    cli_inputs inputs;
    size_t *order; /* indices of this shard's inputs */
    size_t count;
    char **stems; /* per input */
    atomic_size_t next;
    pthread_mutex_t lock; /* rows, stdout, progress, fatal */
    cli_scan_rows rows;
    size_t files_done, scans_done;
    uint64_t flagged, errors, resumed;
    size_t input_floats; /* one image of the model input */
    /* the reader -> scorer queue, under lock */
    scan_item **q;
    size_t q_cap, q_head, q_len;
    int32_t readers_left;
    pthread_cond_t q_not_empty, q_not_full;
    bool fatal;
    char fatal_msg[MS_ERR_MSG_MAX];
    double t_start, last_progress;
    bool progress;
} scan_batch;

/* File stems: the input's stable name made safe (letters, digits, '.', '-', '_'; at most 60
 * bytes, never starting with '.') and 10 hex digits of its sha256, so distinct names never
 * collide and nothing can point outside the output folder. */
static char *make_stem(const char *rel) {
    char hex[65];
    ms_sha256_hex(rel, strlen(rel), hex);
    const char *base = strrchr(rel, '/');
    base = base && base[1] ? base + 1 : rel;
    char clean[61];
    size_t n = 0;
    for (const char *p = base; *p && n < 60; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || (c == '.' && n > 0);
        clean[n++] = ok ? (char)c : '_';
    }
    if (n == 0) clean[n++] = 'x';
    clean[n] = '\0';
    char *out = malloc(n + 12);
    if (out) snprintf(out, n + 12, "%s-%.10s", clean, hex);
    return out;
}

/* The first fatal problem stops every worker after its current file. */
static void set_fatal(scan_batch *b, const char *msg) {
    pthread_mutex_lock(&b->lock);
    if (!b->fatal) {
        b->fatal = true;
        ms_str_copy(b->fatal_msg, sizeof b->fatal_msg, msg);
    }
    pthread_mutex_unlock(&b->lock);
}

static bool stopping(scan_batch *b) {
    if (g_stop_signal) return true;
    pthread_mutex_lock(&b->lock);
    bool f = b->fatal;
    pthread_mutex_unlock(&b->lock);
    return f;
}

static char *out_path(const scan_batch *b, const char *sub, const char *stem, const char *ext) {
    size_t len = strlen(b->opt->out_dir) + strlen(sub) + strlen(stem) + strlen(ext) + 4;
    char *p = malloc(len);
    if (p) snprintf(p, len, "%s/%s/%s%s", b->opt->out_dir, sub, stem, ext);
    return p;
}

static bool write_file(scan_batch *b, const char *sub, const char *stem, const char *ext,
                       const void *data, size_t size) {
    char *path = out_path(b, sub, stem, ext);
    if (!path) {
        set_fatal(b, "out of memory");
        return false;
    }
    ms_err err;
    ms_err_clear(&err);
    bool ok = ms_file_write_atomic(path, data, size, &err) == MS_OK;
    if (!ok) set_fatal(b, err.msg);
    free(path);
    return ok;
}

/* ---- progress ------------------------------------------------------------------------- */

static void progress_locked(scan_batch *b, bool final) {
    if (!b->progress) return;
    double t = now_s();
    if (!final && t - b->last_progress < 0.2) return;
    b->last_progress = t;
    double el = t - b->t_start;
    double rate = el > 0 ? (double)b->files_done / el : 0;
    size_t left = b->count - b->files_done;
    double eta = rate > 0 ? (double)left / rate : 0;
    fprintf(stderr,
            "\rscan: %zu/%zu files read, %zu scans done, %.1f files/s, ETA %dm%02ds, %llu "
            "flagged, %llu errors ",
            b->files_done, b->count, b->scans_done, rate, (int)(eta / 60), (int)fmod(eta, 60),
            (unsigned long long)b->flagged, (unsigned long long)b->errors);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

/* ---- the pipeline ----------------------------------------------------------------------
 * Readers (--jobs threads) take whole files: read, hash, --resume check, decode each frame,
 * check the model accepts it, preprocess. They queue one item per frame. Scorers (--jobs
 * threads, one inference session each) take items: infer, regions, overlay, JSON. The queue
 * holds at most 2 x jobs items, which bounds memory however large the batch is, and lets one
 * thread decode while another infers even with --jobs 1. */

typedef struct scan_item {
    ms_scan_result r;
    char *stem;              /* owned: the frame's output stem */
    char msg[MS_ERR_MSG_MAX + 64]; /* reason storage */
    ms_image *img;           /* decoded frame, when it is to be scored */
    float *input;            /* its model input */
    ms_geometry geo;
} scan_item;

static void item_free(scan_item *it) {
    if (!it) return;
    ms_image_destroy(it->img);
    free(it->input);
    free(it->stem);
    free(it);
}

static void queue_push(scan_batch *b, scan_item *it) {
    pthread_mutex_lock(&b->lock);
    while (b->q_len == b->q_cap) pthread_cond_wait(&b->q_not_full, &b->lock);
    b->q[(b->q_head + b->q_len) % b->q_cap] = it;
    b->q_len++;
    pthread_cond_signal(&b->q_not_empty);
    pthread_mutex_unlock(&b->lock);
}

/* NULL when every reader has finished and the queue is empty. */
static scan_item *queue_pop(scan_batch *b) {
    pthread_mutex_lock(&b->lock);
    while (b->q_len == 0 && b->readers_left > 0) pthread_cond_wait(&b->q_not_empty, &b->lock);
    scan_item *it = NULL;
    if (b->q_len > 0) {
        it = b->q[b->q_head];
        b->q_head = (b->q_head + 1) % b->q_cap;
        b->q_len--;
        pthread_cond_signal(&b->q_not_full);
    }
    pthread_mutex_unlock(&b->lock);
    return it;
}

static float tensor_at(const ms_tensor *t, int32_t channel) {
    size_t plane = (size_t)t->h * (size_t)t->w;
    return t->data[(size_t)channel * plane];
}

/* Adds the scan to the batch tables; prints its JSON line with --jsonl. */
static void record(scan_batch *b, const ms_scan_result *r, const ms_buf *json) {
    pthread_mutex_lock(&b->lock);
    if (!cli_scan_rows_add(&b->rows, r)) {
        if (!b->fatal) {
            b->fatal = true;
            snprintf(b->fatal_msg, sizeof b->fatal_msg, "out of memory");
        }
    }
    b->scans_done++;
    if (r->status == MS_SCAN_OK) {
        if (r->flagged) b->flagged++;
    } else if (r->status == MS_SCAN_ERROR) {
        b->errors++;
    }
    if (b->opt->jsonl && json && json->len) {
        if (b->progress) fputs("\r\033[K", stderr);
        fwrite(json->p, 1, json->len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    progress_locked(b, false);
    pthread_mutex_unlock(&b->lock);
}

/* Reports an error on stderr, renders the JSON report, writes it (with -o), records it. */
static void finish_scan(scan_batch *b, ms_scan_result *r) {
    if (r->status == MS_SCAN_ERROR && r->reason) {
        ms_err e;
        e.status = MS_EINTERNAL;
        ms_str_copy(e.msg, sizeof e.msg, r->reason);
        pthread_mutex_lock(&b->lock);
        if (b->progress) fputs("\r\033[K", stderr);
        cli_report_input_error(r->path, &e);
        pthread_mutex_unlock(&b->lock);
    }
    ms_buf json = {0};
    if (!ms_report_scan_json(&b->ctx, r, &json)) {
        set_fatal(b, "out of memory");
    } else if (b->opt->out_dir) {
        write_file(b, "scans", r->stem, ".json", json.p, json.len);
    }
    record(b, r, &json);
    ms_buf_free(&json);
}

static void fail_item(scan_item *it, const ms_err *err) {
    it->r.status = MS_SCAN_ERROR;
    it->r.reason_code = ms_status_name(err->status);
    snprintf(it->msg, sizeof it->msg, "%s", err->msg[0] ? err->msg : ms_status_name(err->status));
    it->r.reason = it->msg;
}

/* Scores a preprocessed frame (scorer side): status ok, or error. */
static void score_item(scan_batch *b, ms_session *session, scan_item *it) {
    const ms_model_meta *m = b->meta;
    ms_scan_result *r = &it->r;
    ms_image *img = it->img;
    ms_err err;
    ms_err_clear(&err);
    float *prob = NULL;
    ms_region *regs = NULL;
    double t1 = now_s();
    if (ms_session_run(session, it->input, &err) != MS_OK) goto fail;
    double t2 = now_s();
    r->t_infer = t2 - t1;

    ms_tensor score_t, map_t;
    if (ms_session_output(session, m->score_index, &score_t) != MS_OK) {
        ms_fail(&err, MS_EINTERNAL, "%s: the model has no score output", r->path);
        goto fail;
    }
    float value = tensor_at(&score_t, m->score_channel);
    if (!isfinite(value)) {
        ms_fail(&err, MS_EINTERNAL, "%s: the model's score is not a finite number", r->path);
        goto fail;
    }
    r->score_value = value;
    r->probability = ms_score_probability(m, value);
    r->flagged = r->probability >= b->ctx.threshold;

    if (m->output_map) {
        if (ms_session_output(session, m->map_index, &map_t) != MS_OK) {
            ms_fail(&err, MS_EINTERNAL, "%s: the model has no map output", r->path);
            goto fail;
        }
        size_t plane = (size_t)map_t.h * (size_t)map_t.w;
        size_t pixels = (size_t)img->width * (size_t)img->height;
        r->min_region_px = b->opt->min_region_px ? b->opt->min_region_px
                                                 : (uint64_t)(pixels / 2000 + 1);
        float *cells = malloc(plane * sizeof *cells);
        if (!cells) {
            ms_fail(&err, MS_ENOMEM, "%s: out of memory for the region map", r->path);
            goto fail;
        }
        const float *src = map_t.data + (size_t)m->map_channel * plane;
        float top = 0;
        for (size_t i = 0; i < plane; i++) {
            cells[i] = (float)ms_score_map_probability(m, src[i]);
            if (cells[i] > top) top = cells[i];
        }
        /* Bilinear resampling never exceeds the largest cell: when no cell reaches the low
         * threshold there are no regions and no heat to draw, so skip the full-size map. */
        if (top >= (float)b->ctx.region_low_threshold) {
            prob = malloc(pixels * sizeof *prob);
            ms_status st = prob ? ms_score_map_to_image(cells, map_t.w, map_t.h, &it->geo, prob,
                                                        &err)
                                : ms_fail(&err, MS_ENOMEM,
                                          "%s: out of memory for the region map", r->path);
            free(cells);
            cells = NULL;
            if (st != MS_OK) goto fail;
            ms_region_opts ro = {(float)b->ctx.region_threshold,
                                 (float)b->ctx.region_low_threshold, r->min_region_px,
                                 b->opt->max_regions};
            uint32_t nreg = 0;
            if (ms_score_regions(prob, img->width, img->height, img->prov.spacing_row_mm,
                                 img->prov.spacing_col_mm, &ro, &regs, &nreg, &err) != MS_OK)
                goto fail;
            r->regions = regs;
            r->region_count = nreg;
        }
        free(cells);
    }
    r->t_regions = now_s() - t2;

    double t3 = now_s();
    if (b->opt->out_dir && b->opt->overlays) {
        ms_buf png = {0}, jpg = {0};
        float low = (float)b->ctx.region_low_threshold;
        ms_status st = ms_report_overlay_png(img, prob, low, r->regions, r->region_count,
                                             b->opt->overlay_side, &png, &err);
        if (st == MS_OK)
            st = ms_report_thumbnail_jpeg(img, prob, low, r->regions, r->region_count, 256, &jpg,
                                          &err);
        if (st == MS_OK)
            r->has_overlay = write_file(b, "overlays", r->stem, ".png", png.p, png.len) &&
                             write_file(b, "thumbs", r->stem, ".jpg", jpg.p, jpg.len);
        ms_buf_free(&png);
        ms_buf_free(&jpg);
        if (st != MS_OK) goto fail;
    }
    r->t_overlay = now_s() - t3;
    free(prob);
    r->status = MS_SCAN_OK;
    finish_scan(b, r);
    ms_free(regs);
    return;
fail:
    free(prob);
    r->regions = NULL;
    r->region_count = 0;
    ms_free(regs);
    fail_item(it, &err);
    finish_scan(b, r);
}

static scan_item *new_item(scan_batch *b, const ms_scan_result *proto, const char *stem,
                           uint32_t frame, uint32_t frames, bool suffix) {
    scan_item *it = calloc(1, sizeof *it);
    size_t len = strlen(stem) + 16;
    char *s = it ? malloc(len) : NULL;
    if (!s) {
        free(it);
        set_fatal(b, "out of memory");
        return NULL;
    }
    if (suffix)
        snprintf(s, len, "%s-f%04u", stem, frame);
    else
        snprintf(s, len, "%s", stem);
    it->r = *proto;
    it->r.frame = frame;
    it->r.frame_count = frames;
    it->stem = s;
    it->r.stem = s;
    return it;
}

/* Reader side: one file, queued frame by frame. */
static void read_file(scan_batch *b, size_t idx) {
    const cli_input *in = &b->inputs.items[idx];
    const char *stem = b->stems[idx];
    ms_err err;
    ms_err_clear(&err);
    ms_scan_result proto;
    memset(&proto, 0, sizeof proto);
    proto.path = in->path;
    proto.probability = NAN;
    proto.score_value = NAN;

    double t0 = now_s();
    struct stat sb;
    uint8_t *data = NULL;
    size_t size = 0;
    ms_status st = MS_OK;
    if (stat(in->path, &sb) == 0 && !S_ISREG(sb.st_mode))
        st = ms_fail(&err, MS_EIO, "%s: not a regular file", in->path);
    else
        st = ms_file_read_all(in->path, b->opt->lim.max_file_bytes, &data, &size, &err);
    if (st != MS_OK) {
        scan_item *it = new_item(b, &proto, stem, 0, 0, false);
        if (!it) return;
        fail_item(it, &err);
        queue_push(b, it);
        return;
    }
    ms_sha256_hex(data, size, proto.input_sha256);
    proto.input_bytes = size;
    proto.t_read = now_s() - t0;

    if (b->opt->resume && cli_scan_resume(b->opt->out_dir, stem, proto.input_sha256,
                                          b->model_sha, &b->rows, &b->lock)) {
        pthread_mutex_lock(&b->lock);
        b->resumed++;
        pthread_mutex_unlock(&b->lock);
        ms_free(data);
        return;
    }

    ms_source *src = NULL;
    if (ms_source_open_memory(data, size, in->path, &b->opt->lim, &src, &err) != MS_OK) {
        scan_item *it = new_item(b, &proto, stem, 0, 0, false);
        if (it) {
            fail_item(it, &err);
            queue_push(b, it);
        }
        ms_free(data);
        return;
    }
    uint32_t frames = ms_source_frame_count(src);
    uint32_t last = b->opt->all_frames && frames > 0 ? frames - 1 : 0;
    bool suffix = b->opt->all_frames && frames > 1;
    for (uint32_t f = 0; f <= last && !stopping(b); f++) {
        scan_item *it = new_item(b, &proto, stem, f, frames, suffix);
        if (!it) break;
        ms_decode_opts d = ms_score_decode_opts(b->meta);
        d.frame = f;
        ms_err_clear(&err);
        double td = now_s();
        if (ms_source_decode(src, &d, &it->img, &err) != MS_OK) {
            fail_item(it, &err);
            queue_push(b, it);
            continue;
        }
        double tp = now_s();
        it->r.t_decode = tp - td;
        it->r.decoded = true;
        it->r.prov = it->img->prov;
        it->r.width = it->img->width;
        it->r.height = it->img->height;
        const char *why = cli_model_refusal(b->meta, &it->img->prov, in->path, it->msg,
                                            sizeof it->msg);
        if (why) {
            it->r.status = MS_SCAN_SKIPPED;
            it->r.reason_code = why;
            it->r.reason = it->msg;
            ms_image_destroy(it->img);
            it->img = NULL;
        } else if (!(it->input = malloc(b->input_floats * sizeof(float)))) {
            ms_fail(&err, MS_ENOMEM, "%s: out of memory for the model input", in->path);
            fail_item(it, &err);
        } else if (ms_score_preprocess(b->meta, it->img, it->input, &it->geo, &err) != MS_OK) {
            fail_item(it, &err);
        } else {
            it->r.t_preprocess = now_s() - tp;
        }
        if (it->r.status != MS_SCAN_OK) {
            ms_image_destroy(it->img);
            it->img = NULL;
        }
        queue_push(b, it);
    }
    ms_source_destroy(src);
    ms_free(data);
}

static void *reader_main(void *arg) {
    scan_batch *b = arg;
    for (;;) {
        if (stopping(b)) break;
        size_t k = atomic_fetch_add(&b->next, 1);
        if (k >= b->count) break;
        read_file(b, b->order[k]);
        pthread_mutex_lock(&b->lock);
        b->files_done++;
        progress_locked(b, false);
        pthread_mutex_unlock(&b->lock);
    }
    pthread_mutex_lock(&b->lock);
    b->readers_left--;
    pthread_cond_broadcast(&b->q_not_empty);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* When no reader thread can start, this thread reads (the scorers already run). */
static void reader_main_inline(scan_batch *b) {
    pthread_mutex_lock(&b->lock);
    b->readers_left++;
    pthread_mutex_unlock(&b->lock);
    reader_main(b);
}

typedef struct scorer {
    scan_batch *b;
    ms_session *session;
} scorer;

/* Scorers drain the queue to the end, also after a signal or a fatal error, so that no
 * reader stays blocked; after a fatal error items are dropped unscored. */
static void *scorer_main(void *arg) {
    scorer *s = arg;
    scan_batch *b = s->b;
    scan_item *it;
    while ((it = queue_pop(b)) != NULL) {
        pthread_mutex_lock(&b->lock);
        bool fatal = b->fatal;
        pthread_mutex_unlock(&b->lock);
        if (!fatal) {
            if (it->r.status == MS_SCAN_OK && it->img)
                score_item(b, s->session, it);
            else
                finish_scan(b, &it->r);
        }
        item_free(it);
    }
    return NULL;
}

/* ---- batch ---------------------------------------------------------------------------- */

static bool make_dir(const char *path) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat sb;
        return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    }
    return false;
}

static bool make_out_dirs(const char *dir) {
    static const char *const subs[] = {"scans", "overlays", "thumbs"};
    if (!make_dir(dir)) {
        cli_diag("%s: cannot create the output folder: %s", dir, strerror(errno));
        return false;
    }
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(dir) + strlen(subs[i]) + 2;
        char *p = malloc(len);
        if (!p) return false;
        snprintf(p, len, "%s/%s", dir, subs[i]);
        bool ok = make_dir(p);
        if (!ok) cli_diag("%s: cannot create the folder: %s", p, strerror(errno));
        free(p);
        if (!ok) return false;
    }
    return true;
}

/* Resolves the operating threshold and the region thresholds from options and metadata. */
static int resolve_thresholds(scan_batch *b) {
    const scan_opts *o = b->opt;
    const ms_model_meta *m = b->meta;
    if (o->have_threshold) {
        b->ctx.operating_point = NULL;
        b->ctx.threshold = o->threshold;
    } else {
        int32_t idx = m->default_point;
        if (o->op_name) {
            idx = -1;
            for (uint32_t i = 0; i < m->point_count; i++)
                if (strcmp(m->points[i].name, o->op_name) == 0) idx = (int32_t)i;
            if (idx < 0) {
                ms_buf names = {0};
                for (uint32_t i = 0; i < m->point_count; i++)
                    ms_buf_printf(&names, "%s%s", i ? ", " : "", m->points[i].name);
                int rc = cli_usage_error("scan: the model has no operating point '%s' (it has: %s)",
                                         o->op_name, names.p ? names.p : "none");
                ms_buf_free(&names);
                return rc;
            }
        }
        if (idx < 0) {
            if (m->point_count == 0) {
                cli_diag("%s: the model has no operating points; give --threshold P",
                         o->model_path);
                return CLI_EXIT_USAGE;
            }
            idx = 0;
        }
        b->ctx.operating_point = m->points[idx].name;
        b->ctx.threshold = m->points[idx].threshold;
    }
    if (o->have_region_threshold)
        b->ctx.region_threshold = o->region_threshold;
    else if (ms_model_meta_get(m, "map_threshold"))
        b->ctx.region_threshold = m->map_threshold;
    else
        b->ctx.region_threshold = b->ctx.threshold;
    b->ctx.region_low_threshold = b->ctx.region_threshold * o->hysteresis;
    b->ctx.min_region_px = o->min_region_px;
    return -1;
}

static ms_status read_model_sha(const char *path, const ms_limits *lim, char out[65],
                                ms_err *err) {
    uint8_t *data = NULL;
    size_t size = 0;
    ms_status st = ms_file_read_all(path, lim->max_model_bytes, &data, &size, err);
    if (st != MS_OK) return st;
    ms_sha256_hex(data, size, out);
    ms_free(data);
    return MS_OK;
}

/* Shard membership: from the stable name, so every machine agrees whatever its file order. */
static uint32_t shard_of(const char *rel, uint32_t n) {
    uint8_t h[32];
    ms_sha256 s;
    ms_sha256_init(&s);
    ms_sha256_update(&s, rel, strlen(rel));
    ms_sha256_final(&s, h);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | h[i];
    return (uint32_t)(v % n);
}

static int cmp_rows(const void *a, const void *c) {
    const ms_summary_row *x = a, *y = c;
    int d = strcmp(x->path, y->path);
    if (d) return d;
    return (x->frame > y->frame) - (x->frame < y->frame);
}

static bool write_batch_outputs(scan_batch *b, const ms_summary_totals *tot) {
    const char *dir = b->opt->out_dir;
    ms_summary_row *rows = b->rows.rows;
    size_t n = b->rows.n;
    bool ok = true;
    ms_err err;
    ms_err_clear(&err);
    ms_buf js = {0}, csv = {0};
    size_t len = strlen(dir) + 32;
    char *path = malloc(len);
    if (!path) return false;
    if (!ms_report_summary_json(&b->ctx, rows, n, tot, &js) ||
        !ms_report_summary_csv(rows, n, &csv)) {
        cli_diag("out of memory writing the summary");
        ok = false;
    }
    if (ok) {
        ms_buf_puts(&js, "\n");
        snprintf(path, len, "%s/summary.json", dir);
        if (ms_file_write_atomic(path, js.p, js.len, &err) != MS_OK) ok = false;
    }
    if (ok) {
        snprintf(path, len, "%s/summary.csv", dir);
        if (ms_file_write_atomic(path, csv.p, csv.len, &err) != MS_OK) ok = false;
    }
    if (ok && b->opt->overlays) {
        /* The page can be large (inline thumbnails): stream it to a temp file, then rename. */
        char *tmp = malloc(len + 16), *thumbs = malloc(len);
        if (!tmp || !thumbs) {
            ok = false;
        } else {
            snprintf(path, len, "%s/report.html", dir);
            snprintf(tmp, len + 16, "%s/.report.html.tmp", dir);
            snprintf(thumbs, len, "%s/thumbs", dir);
            FILE *f = fopen(tmp, "wb");
            if (!f) {
                ms_fail(&err, MS_EIO, "%s: %s", tmp, strerror(errno));
                ok = false;
            } else {
                ms_status st = ms_report_html_write(f, &b->ctx, rows, n, tot, thumbs, &err);
                bool closed = fflush(f) == 0 && fsync(fileno(f)) == 0;
                closed = fclose(f) == 0 && closed;
                if (st != MS_OK || !closed) {
                    if (st == MS_OK) ms_fail(&err, MS_EIO, "%s: write failed", tmp);
                    unlink(tmp);
                    ok = false;
                } else if (rename(tmp, path) != 0) {
                    ms_fail(&err, MS_EIO, "%s: %s", path, strerror(errno));
                    unlink(tmp);
                    ok = false;
                }
            }
        }
        free(tmp);
        free(thumbs);
    }
    if (!ok && err.msg[0]) cli_diag("cannot write the batch outputs: %s", err.msg);
    free(path);
    ms_buf_free(&js);
    ms_buf_free(&csv);
    return ok;
}

int cli_scan_main(int argc, char **argv, int verbosity) {
    scan_opts o;
    memset(&o, 0, sizeof o);
    o.hysteresis = 0.75;
    o.max_regions = 8;
    o.all_frames = true;
    o.overlay_side = 1024;
    o.overlays = true;
    o.tolerance = 1e-4;
    o.lim = ms_limits_default();
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.jobs = ncpu > 0 ? (int32_t)(ncpu > 256 ? 256 : ncpu) : 1;
    const char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) {
        cli_diag("scan: out of memory");
        return CLI_EXIT_FATAL;
    }
    int n_args = 0;
    bool read_stdin = false;
    int code = parse_args(argc, argv, &o, &verbosity, args, &n_args, &read_stdin);
    if (code >= 0) {
        free(args);
        return code;
    }
    cli_set_verbosity(verbosity);
    o.model_path = cli_model_choose(o.model_path, "scan", &o.model_path_owned);
    if (!o.model_path) {
        free(args);
        return CLI_EXIT_FATAL;
    }

    scan_batch b;
    memset(&b, 0, sizeof b);
    b.opt = &o;
    pthread_mutex_init(&b.lock, NULL);
    int rc = CLI_EXIT_OK;
    scorer *scorers = NULL;
    pthread_t *tids = NULL;
    int32_t njobs = 0;
    bool conds = false;
    ms_net *net = NULL;
    ms_err err;
    ms_err_clear(&err);

    /* Inputs first: a usage problem should not wait for a model load. */
    for (int i = 0; i < n_args; i++)
        if (cli_inputs_add(&b.inputs, args[i]) != 0) goto oom;
    if (read_stdin && cli_inputs_read_list(&b.inputs, stdin, o.nul_list) != 0) goto oom;
    if (b.inputs.n == 0 && b.inputs.walk_errors == 0) {
        rc = cli_usage_error("scan: no inputs (give files, folders or '-' for a list on stdin)");
        goto done;
    }

    if (ms_net_load(o.model_path, &o.lim, &net, &err) != MS_OK ||
        read_model_sha(o.model_path, &o.lim, b.model_sha, &err) != MS_OK) {
        cli_report_input_error(o.model_path, &err);
        rc = CLI_EXIT_FATAL;
        goto done;
    }
    b.net = net;
    b.meta = ms_net_model_meta(net);
    if (ms_model_meta_check_scan(b.meta, o.model_path, &err) != MS_OK) {
        cli_report_input_error(o.model_path, &err);
        rc = CLI_EXIT_FATAL;
        goto done;
    }
    b.ctx.tool_version = MS_VERSION_STRING;
    b.ctx.model_path = o.model_path;
    b.ctx.model_name = b.meta->name;
    b.ctx.model_version = b.meta->version;
    b.ctx.model_sha256 = b.model_sha;
    if ((rc = resolve_thresholds(&b)) >= 0) goto done;
    rc = CLI_EXIT_OK;
    if (o.out_dir && !make_out_dirs(o.out_dir)) {
        rc = CLI_EXIT_FATAL;
        goto done;
    }

    /* Stable names, shard selection. Duplicate names (the same file given twice, or two
     * folders with the same name) fall back to the path as given. */
    b.stems = calloc(b.inputs.n ? b.inputs.n : 1, sizeof *b.stems);
    b.order = calloc(b.inputs.n ? b.inputs.n : 1, sizeof *b.order);
    if (!b.stems || !b.order) goto oom;
    for (size_t i = 0; i < b.inputs.n; i++) {
        if (!(b.stems[i] = make_stem(b.inputs.items[i].rel))) goto oom;
    }
    if (cli_scan_dedupe_stems(&b.inputs, b.stems) != 0) goto oom;
    for (size_t i = 0; i < b.inputs.n; i++) {
        if (o.shard_n > 1 && shard_of(b.inputs.items[i].rel, o.shard_n) != o.shard_k - 1)
            continue;
        b.order[b.count++] = i;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* reads and writes in flight complete; workers stop between scans */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    b.progress = !o.quiet && isatty(STDERR_FILENO);
    b.t_start = now_s();
    int32_t jobs = o.jobs;
    if ((size_t)jobs > b.count) jobs = b.count ? (int32_t)b.count : 1;
    scorers = calloc((size_t)jobs, sizeof *scorers);
    tids = calloc((size_t)jobs * 2, sizeof *tids);
    b.q_cap = (size_t)jobs * 2;
    b.q = calloc(b.q_cap, sizeof *b.q);
    if (!scorers || !tids || !b.q) goto oom;
    njobs = jobs;
    int32_t ic = 0, ih = 0, iw = 0;
    ms_net_input_shape(net, b.meta->input_index, &ic, &ih, &iw);
    b.input_floats = (size_t)ic * (size_t)ih * (size_t)iw;
    ms_session_options so = {1, 1, false};
    for (int32_t j = 0; j < jobs; j++) {
        scorers[j].b = &b;
        if (ms_session_create_opts(net, &so, &scorers[j].session, &err) != MS_OK) {
            cli_report_input_error(o.model_path, &err);
            rc = CLI_EXIT_FATAL;
            goto done;
        }
    }
    pthread_cond_init(&b.q_not_empty, NULL);
    pthread_cond_init(&b.q_not_full, NULL);
    conds = true;
    int32_t nthreads = 0, scorers_up = 0;
    b.readers_left = jobs; /* before any scorer starts: none may see "no readers, empty" */
    for (int32_t j = 0; j < jobs; j++) {
        if (pthread_create(&tids[nthreads], NULL, scorer_main, &scorers[j]) != 0) break;
        nthreads++;
        scorers_up++;
    }
    if (scorers_up == 0) {
        cli_diag("scan: cannot start worker threads");
        rc = CLI_EXIT_FATAL;
        goto done;
    }
    for (int32_t j = 0; j < jobs; j++) {
        if (pthread_create(&tids[nthreads], NULL, reader_main, &b) != 0) {
            /* Fewer readers: the ones that started share the files. */
            pthread_mutex_lock(&b.lock);
            b.readers_left -= jobs - j;
            pthread_cond_broadcast(&b.q_not_empty);
            pthread_mutex_unlock(&b.lock);
            if (j == 0) reader_main_inline(&b);
            break;
        }
        nthreads++;
    }
    for (int32_t t = 0; t < nthreads; t++) pthread_join(tids[t], NULL);

    pthread_mutex_lock(&b.lock);
    progress_locked(&b, true);
    pthread_mutex_unlock(&b.lock);

    if (b.rows.n) qsort(b.rows.rows, b.rows.n, sizeof *b.rows.rows, cmp_rows);
    ms_summary_totals tot = {b.rows.n, 0, 0, 0, 0, g_stop_signal != 0, now_s() - b.t_start};
    for (size_t i = 0; i < b.rows.n; i++) {
        const ms_summary_row *row = &b.rows.rows[i];
        if (row->status == MS_SCAN_OK) {
            tot.ok++;
            if (row->flagged) tot.flagged++;
        } else if (row->status == MS_SCAN_SKIPPED) {
            tot.skipped++;
        } else {
            tot.errors++;
        }
    }
    if (b.fatal) {
        cli_diag("scan: stopped: cannot go on: %s", b.fatal_msg);
        rc = CLI_EXIT_FATAL;
    }
    if (o.out_dir && !write_batch_outputs(&b, &tot)) rc = CLI_EXIT_FATAL;
    if (!o.quiet) {
        cli_diag("scan: %llu scans: %llu ok (%llu flagged), %llu skipped, %llu errors%s%s",
                 (unsigned long long)tot.scans, (unsigned long long)tot.ok,
                 (unsigned long long)tot.flagged, (unsigned long long)tot.skipped,
                 (unsigned long long)tot.errors, b.resumed ? ", resumed " : "",
                 b.resumed ? "from earlier reports" : "");
    }
    if (rc == CLI_EXIT_OK && o.expect_dir) {
        int d = cli_scan_expect(o.expect_dir, b.rows.rows, b.rows.n, o.tolerance);
        if (d < 0) rc = CLI_EXIT_FATAL;
        else if (d > 0) rc = CLI_EXIT_DRIFT;
    }
    if (g_stop_signal) {
        cli_diag("scan: stopped by signal %d; the summary covers the %llu scans done",
                 (int)g_stop_signal, (unsigned long long)tot.scans);
        rc = 128 + (int)g_stop_signal;
    } else if (rc == CLI_EXIT_OK) {
        if (tot.errors || b.inputs.walk_errors) rc = CLI_EXIT_INPUT;
        else if (tot.flagged && o.fail_on_finding) rc = CLI_EXIT_FINDING;
    }
    goto done;
oom:
    cli_diag("scan: out of memory");
    rc = CLI_EXIT_FATAL;
done:
    if (scorers)
        for (int32_t j = 0; j < njobs; j++) ms_session_destroy(scorers[j].session);
    free(scorers);
    free(tids);
    free(b.q);
    if (conds) {
        pthread_cond_destroy(&b.q_not_empty);
        pthread_cond_destroy(&b.q_not_full);
    }
    if (b.stems)
        for (size_t i = 0; i < b.inputs.n; i++) free(b.stems[i]);
    free(b.stems);
    free(b.order);
    cli_scan_rows_free(&b.rows);
    cli_inputs_free(&b.inputs);
    ms_net_destroy(net);
    free(o.model_path_owned);
    free(args);
    pthread_mutex_destroy(&b.lock);
    return rc;
}
