/* DICOM conformance against independent decoders (DCMTK dcm2pnm family, GDCM for JPEG 2000).
 *
 * For every file in a folder of real DICOM files, this decodes frame 0 and the last frame with
 * ms_source_open_file + ms_source_decode and checks, as the expectation table says:
 *   (a) header facts against a manifest (rows, cols, frames, bits stored, transfer syntax,
 *       photometric; empty manifest cells are not checked);
 *   (b) pixels against the reference PNM written by scripts/make-dicom-refs.py (16-bit PGM:
 *       value / maxval; PPM colour: Rec. 601 luma of the channels / maxval), within the
 *       table's max-abs-diff tolerance on the [0, 1] scale.
 * A file in the folder without a row in the table fails ("no expectation"), so every file is
 * covered; a row whose file is gone fails too.
 *
 * Expectation table (TSV; '#' comments): file <TAB> outcome <TAB> tolerance <TAB> why
 *   ok          decodes; header matches; pixels within tolerance of the reference.
 *   ok-noref    decodes and header matches, but no reference tool decodes it (why says which
 *               and how they fail); pixels are only checked to be finite and in [0, 1]. With a
 *               tolerance, frames that do have a reference are compared as for "ok".
 *   error NAME  ms_source_open_file or ms_source_decode (frame 0) fails with ms_status_name
 *               NAME (e.g. "error format").
 *   xfail       a suspected decoder bug (why has the evidence): checked as "ok"; a failure is
 *               counted as xfail, a pass as XPASS, which fails so the row gets updated.
 * "ok", "ok-noref" and "xfail" may be followed by space-separated COLUMN=VALUE pairs that replace
 * a manifest cell whose value is not what a correct decoder reports (e.g. "ok frames=1" where
 * the file's Number of Frames is the invalid IS "1A"); the why column must say why.
 *
 * Usage: ms_conformance --dir D --manifest M --refs R --expect T [--suffix .dcm]
 *                       [--only FILE] [--dump DIR] [--label NAME]
 * Exit: 0 all expectations met; 1 some not; 2 usage; 77 skipped (D or R/refs.tsv absent). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "medscreen/core.h"
#include "medscreen/loader.h"

#define SKIP_CODE 77
#define MAX_FIELDS 32

/* ---- small text utilities ---- */

typedef struct text {
    uint8_t *data; /* NUL-terminated copy */
    size_t size;
} text;

static bool text_load(const char *path, text *t) {
    uint8_t *raw = NULL;
    size_t n = 0;
    ms_err err;
    if (ms_file_read_all(path, (uint64_t)1 << 32, &raw, &n, &err) != MS_OK) return false;
    t->data = ms_malloc(n + 1);
    if (t->data == NULL) {
        ms_free(raw);
        return false;
    }
    if (n) memcpy(t->data, raw, n);
    t->data[n] = 0;
    t->size = n;
    ms_free(raw);
    return true;
}

/* Splits the next line of *cur (modified in place) into fields on sep. CSV mode (sep ',')
 * honours double quotes. Returns the number of fields, or -1 at the end of the text. */
static int next_record(char **cur, char sep, char **fields, int max_fields) {
    char *p = *cur;
    if (p == NULL || *p == 0) return -1;
    int n = 0;
    char *out = p;
    fields[n++] = out;
    bool quoted = false;
    for (;;) {
        char c = *p;
        if (c == 0) {
            *out = 0;
            *cur = p;
            break;
        }
        p++;
        if (sep == ',' && c == '"') {
            if (quoted && *p == '"') {
                *out++ = '"';
                p++;
            } else {
                quoted = !quoted;
            }
            continue;
        }
        if (!quoted && (c == '\n' || c == '\r')) {
            *out = 0;
            if (c == '\r' && *p == '\n') p++;
            *cur = p;
            break;
        }
        if (!quoted && c == sep) {
            *out++ = 0;
            if (n < max_fields) fields[n++] = out;
            continue;
        }
        *out++ = c;
    }
    return n;
}

static bool has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ms_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- expectation table ---- */

typedef enum outcome { OUT_OK, OUT_OK_NOREF, OUT_ERROR, OUT_XFAIL } outcome;

typedef struct expect_row {
    char *file;
    outcome out;
    char *overrides;  /* " col=value col=value " or NULL */
    char *error_name; /* for OUT_ERROR */
    double tol;       /* max abs diff on [0, 1]; < 0 when not given */
    char *why;
    bool seen;
} expect_row;

typedef struct expect_table {
    expect_row *rows;
    size_t n;
} expect_table;

static bool parse_tol(const char *s, double *out) {
    if (strcmp(s, "-") == 0 || *s == 0) {
        *out = -1.0;
        return true;
    }
    /* "1/255" style fractions keep the table readable */
    const char *slash = strchr(s, '/');
    if (slash != NULL) {
        char num[64];
        size_t len = (size_t)(slash - s);
        if (len == 0 || len >= sizeof num) return false;
        memcpy(num, s, len);
        num[len] = 0;
        double a, b;
        if (!ms_parse_double(num, &a) || !ms_parse_double(slash + 1, &b) || b <= 0) return false;
        *out = a / b;
        return *out >= 0;
    }
    return ms_parse_double(s, out) && *out >= 0;
}

static bool expect_load(const char *path, expect_table *tab) {
    text t;
    if (!text_load(path, &t)) {
        fprintf(stderr, "conformance: cannot read expectation table %s\n", path);
        return false;
    }
    char *cur = (char *)t.data;
    char *f[MAX_FIELDS];
    int nf;
    size_t cap = 0, line = 0;
    bool ok = true;
    while ((nf = next_record(&cur, '\t', f, MAX_FIELDS)) >= 0) {
        line++;
        if (nf == 1 && f[0][0] == 0) continue;
        if (f[0][0] == '#') continue;
        if (nf < 4) {
            fprintf(stderr, "%s:%zu: expected 4 tab-separated fields (file, outcome, tol, why)\n",
                    path, line);
            ok = false;
            continue;
        }
        if (strcmp(f[0], "file") == 0) continue; /* header */
        expect_row r = {0};
        const char *o = f[1];
        char *sp = strchr(f[1], ' ');
        if (sp != NULL && strncmp(o, "error ", 6) != 0) {
            /* keep a leading and trailing space so " col=" lookups are exact */
            size_t n = strlen(sp);
            r.overrides = ms_malloc(n + 2);
            if (r.overrides != NULL) {
                memcpy(r.overrides, sp, n);
                r.overrides[n] = ' ';
                r.overrides[n + 1] = 0;
            }
            *sp = 0;
        }
        if (strcmp(o, "ok") == 0) {
            r.out = OUT_OK;
        } else if (strcmp(o, "ok-noref") == 0) {
            r.out = OUT_OK_NOREF;
        } else if (strcmp(o, "xfail") == 0) {
            r.out = OUT_XFAIL;
        } else if (strncmp(o, "error ", 6) == 0 && o[6] != 0) {
            r.out = OUT_ERROR;
            r.error_name = dup_str(o + 6);
        } else {
            fprintf(stderr, "%s:%zu: unknown outcome '%s'\n", path, line, o);
            ok = false;
            ms_free(r.overrides);
            continue;
        }
        if (!parse_tol(f[2], &r.tol) ||
            ((r.out == OUT_OK || r.out == OUT_XFAIL) && r.tol < 0)) {
            fprintf(stderr, "%s:%zu: bad tolerance '%s' for outcome %s\n", path, line, f[2], o);
            ok = false;
            ms_free(r.error_name);
            ms_free(r.overrides);
            continue;
        }
        r.file = dup_str(f[0]);
        r.why = dup_str(f[3]);
        if (tab->n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            expect_row *nr = ms_realloc(tab->rows, ncap * sizeof *nr);
            if (nr == NULL) {
                ok = false;
                break;
            }
            tab->rows = nr;
            cap = ncap;
        }
        tab->rows[tab->n++] = r;
    }
    ms_free(t.data);
    return ok;
}

static expect_row *expect_find(expect_table *tab, const char *file) {
    for (size_t i = 0; i < tab->n; i++)
        if (strcmp(tab->rows[i].file, file) == 0) return &tab->rows[i];
    return NULL;
}

static void expect_free(expect_table *tab) {
    for (size_t i = 0; i < tab->n; i++) {
        ms_free(tab->rows[i].file);
        ms_free(tab->rows[i].error_name);
        ms_free(tab->rows[i].overrides);
        ms_free(tab->rows[i].why);
    }
    ms_free(tab->rows);
}

/* ---- generic keyed tables (manifest.csv, refs.tsv) ---- */

typedef struct table {
    text t;
    int ncols;
    char *header[MAX_FIELDS];
    char **cells; /* nrows * MAX_FIELDS */
    size_t nrows;
} table;

static bool table_load(const char *path, char sep, table *tb) {
    memset(tb, 0, sizeof *tb);
    if (!text_load(path, &tb->t)) return false;
    char *cur = (char *)tb->t.data;
    int nf = next_record(&cur, sep, tb->header, MAX_FIELDS);
    if (nf <= 0) return false;
    tb->ncols = nf;
    size_t cap = 0;
    char *f[MAX_FIELDS];
    while ((nf = next_record(&cur, sep, f, MAX_FIELDS)) >= 0) {
        if (nf == 1 && f[0][0] == 0) continue;
        if (tb->nrows == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            char **nc = ms_realloc(tb->cells, ncap * MAX_FIELDS * sizeof *nc);
            if (nc == NULL) return false;
            tb->cells = nc;
            cap = ncap;
        }
        char **row = tb->cells + tb->nrows * MAX_FIELDS;
        for (int i = 0; i < MAX_FIELDS; i++) row[i] = i < nf ? f[i] : "";
        tb->nrows++;
    }
    return true;
}

static int table_col(const table *tb, const char *name) {
    for (int i = 0; i < tb->ncols; i++)
        if (strcmp(tb->header[i], name) == 0) return i;
    return -1;
}

static const char *table_get(const table *tb, size_t row, int col) {
    if (col < 0 || row >= tb->nrows) return "";
    return tb->cells[row * MAX_FIELDS + (size_t)col];
}

static void table_free(table *tb) {
    ms_free(tb->t.data);
    ms_free(tb->cells);
}

/* ---- PNM reader (P2/P3 ASCII as dcm2pnm +opw writes, and P5/P6) ---- */

typedef struct pnm {
    uint32_t w, h, ch, maxval;
    float *gray; /* w*h, in [0, 1]; colour already converted to Rec. 601 luma */
} pnm;

static bool pnm_token(ms_rd *rd, uint32_t max, uint32_t *out) {
    /* skip whitespace and comments */
    for (;;) {
        if (rd->left == 0) return false;
        uint8_t c = rd->p[0];
        if (c == '#') {
            while (rd->left && rd->p[0] != '\n') ms_rd_skip(rd, 1);
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            ms_rd_skip(rd, 1);
        } else {
            break;
        }
    }
    uint64_t v = 0;
    size_t digits = 0;
    while (rd->left && rd->p[0] >= '0' && rd->p[0] <= '9') {
        v = v * 10 + (uint64_t)(rd->p[0] - '0');
        if (v > max) return false;
        ms_rd_skip(rd, 1);
        digits++;
    }
    if (digits == 0) return false;
    *out = (uint32_t)v;
    return true;
}

static bool pnm_read(const char *path, pnm *out, char *why, size_t why_size) {
    uint8_t *data = NULL;
    size_t n = 0;
    ms_err err;
    memset(out, 0, sizeof *out);
    if (ms_file_read_all(path, (uint64_t)1 << 34, &data, &n, &err) != MS_OK) {
        snprintf(why, why_size, "%s", err.msg);
        return false;
    }
    ms_rd rd = ms_rd_init(data, n);
    bool ok = false;
    if (n < 2 || data[0] != 'P' || data[1] < '2' || data[1] > '6' || data[1] == '4') {
        snprintf(why, why_size, "not a P2/P3/P5/P6 PNM");
        goto done;
    }
    char kind = (char)data[1];
    ms_rd_skip(&rd, 2);
    bool ascii = kind == '2' || kind == '3';
    out->ch = (kind == '3' || kind == '6') ? 3 : 1;
    if (!pnm_token(&rd, 1u << 20, &out->w) || !pnm_token(&rd, 1u << 20, &out->h) ||
        !pnm_token(&rd, 65535, &out->maxval) || out->w == 0 || out->h == 0 ||
        out->maxval == 0) {
        snprintf(why, why_size, "bad PNM header");
        goto done;
    }
    size_t npx = (size_t)out->w * out->h;
    out->gray = ms_malloc(npx * sizeof(float));
    if (out->gray == NULL) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    if (!ascii && !ms_rd_skip(&rd, 1)) goto short_data; /* the single whitespace */
    size_t bps = out->maxval > 255 ? 2 : 1;
    const float inv = 1.0f / (float)out->maxval;
    for (size_t i = 0; i < npx; i++) {
        uint32_t s[3] = {0, 0, 0};
        for (uint32_t c = 0; c < out->ch; c++) {
            if (ascii) {
                if (!pnm_token(&rd, out->maxval, &s[c])) goto short_data;
            } else {
                const uint8_t *b;
                if (!ms_rd_bytes(&rd, &b, bps)) goto short_data;
                s[c] = bps == 2 ? (uint32_t)(b[0] << 8 | b[1]) : b[0];
            }
        }
        if (out->ch == 3)
            out->gray[i] = (0.299f * (float)s[0] + 0.587f * (float)s[1] + 0.114f * (float)s[2]) *
                           inv;
        else
            out->gray[i] = (float)s[0] * inv;
    }
    ok = true;
    goto done;
short_data:
    snprintf(why, why_size, "PNM data short or malformed");
done:
    ms_free(data);
    if (!ok) {
        ms_free(out->gray);
        out->gray = NULL;
    }
    return ok;
}

/* ---- reporting helpers ---- */

typedef struct run_opts {
    const char *dir, *manifest, *refs, *expect, *suffix, *only, *dump, *label;
} run_opts;

static void dump_pgm(const char *dir, const char *file, uint32_t frame, const char *what,
                     const float *v, uint32_t w, uint32_t h, float scale) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.f%u.%s.pgm", dir, file, frame, what);
    FILE *f = fopen(path, "wb");
    if (f == NULL) return;
    fprintf(f, "P5\n%u %u\n255\n", w, h);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        float x = v[i] * scale;
        x = x < 0 ? 0 : x > 1 ? 1 : x;
        fputc((int)lrintf(x * 255.0f), f);
    }
    fclose(f);
}

typedef struct frame_cmp {
    double max_diff, mean_diff;
    uint32_t wx, wy;
    float ours, ref;
} frame_cmp;

/* Compares one decoded frame with its reference; fills msg on failure and returns false. */
static bool compare_frame(const run_opts *o, const char *file, uint32_t frame, const ms_image *img,
                          const char *ref_path, double tol, frame_cmp *fc, char *msg,
                          size_t msg_size) {
    pnm ref;
    char why[1024];
    if (!pnm_read(ref_path, &ref, why, sizeof why)) {
        snprintf(msg, msg_size, "frame %u: cannot read reference: %s", frame, why);
        return false;
    }
    bool ok = false;
    if ((uint32_t)img->width != ref.w || (uint32_t)img->height != ref.h) {
        snprintf(msg, msg_size, "frame %u: size %dx%d, reference %ux%u", frame, img->width,
                 img->height, ref.w, ref.h);
        goto done;
    }
    size_t npx = (size_t)ref.w * ref.h;
    float *ours = ms_malloc(npx * sizeof(float));
    if (ours == NULL) {
        snprintf(msg, msg_size, "out of memory");
        goto done;
    }
    /* Grayscale output is one plane; RGB output (not used by default) would be three. */
    if (img->channels == 1) {
        memcpy(ours, img->data, npx * sizeof(float));
    } else {
        const float *r = img->data, *g = r + npx, *b = g + npx;
        for (size_t i = 0; i < npx; i++) ours[i] = 0.299f * r[i] + 0.587f * g[i] + 0.114f * b[i];
    }
    double sum = 0;
    fc->max_diff = -1;
    for (size_t i = 0; i < npx; i++) {
        double d = fabs((double)ours[i] - (double)ref.gray[i]);
        if (!(d == d)) d = INFINITY;
        sum += d;
        if (d > fc->max_diff) {
            fc->max_diff = d;
            fc->wx = (uint32_t)(i % ref.w);
            fc->wy = (uint32_t)(i / ref.w);
            fc->ours = ours[i];
            fc->ref = ref.gray[i];
        }
    }
    fc->mean_diff = sum / (double)npx;
    if (o->dump != NULL) {
        dump_pgm(o->dump, file, frame, "ours", ours, ref.w, ref.h, 1.0f);
        dump_pgm(o->dump, file, frame, "ref", ref.gray, ref.w, ref.h, 1.0f);
        for (size_t i = 0; i < npx; i++) ours[i] = fabsf(ours[i] - ref.gray[i]);
        float s = fc->max_diff > 0 ? (float)(1.0 / fc->max_diff) : 1.0f;
        dump_pgm(o->dump, file, frame, "absdiff", ours, ref.w, ref.h, s);
    }
    ms_free(ours);
    ok = fc->max_diff <= tol;
    if (!ok)
        snprintf(msg, msg_size,
                 "frame %u: max abs diff %.6f > tol %.6f (mean %.6f, worst at x=%u y=%u ours "
                 "%.6f ref %.6f)",
                 frame, fc->max_diff, tol, fc->mean_diff, fc->wx, fc->wy, (double)fc->ours,
                 (double)fc->ref);
done:
    ms_free(ref.gray);
    return ok;
}

/* Header facts vs the manifest row; empty manifest cells are not checked. */
static bool check_header(const table *man, size_t row, const char *overrides,
                         const ms_source *src, const ms_image *img, char *msg, size_t msg_size) {
    char buf[64];
    const char *want;
    struct {
        const char *col;
        const char *got;
    } facts[6];
    char rows[16], cols[16], frames[16], bits[16];
    snprintf(rows, sizeof rows, "%d", img->height);
    snprintf(cols, sizeof cols, "%d", img->width);
    snprintf(frames, sizeof frames, "%u", ms_source_frame_count(src));
    snprintf(bits, sizeof bits, "%u", img->prov.bits_stored);
    facts[0].col = "rows", facts[0].got = rows;
    facts[1].col = "cols", facts[1].got = cols;
    facts[2].col = "frames", facts[2].got = frames;
    facts[3].col = "bits_stored", facts[3].got = bits;
    facts[4].col = "transfer_syntax", facts[4].got = img->prov.transfer_syntax;
    facts[5].col = "photometric", facts[5].got = img->prov.photometric;
    size_t used = 0;
    msg[0] = 0;
    for (int i = 0; i < 6; i++) {
        want = table_get(man, row, table_col(man, facts[i].col));
        const char *ov = NULL;
        char key[32];
        snprintf(key, sizeof key, " %s=", facts[i].col);
        if (overrides != NULL && (ov = strstr(overrides, key)) != NULL) {
            ov += strlen(key);
            size_t n = strcspn(ov, " ");
            if (n >= sizeof buf) n = sizeof buf - 1;
            memcpy(buf, ov, n);
            buf[n] = 0;
        } else {
            if (want[0] == 0) {
                /* An absent Number of Frames means one frame (PS3.3 C.7.6.6). */
                if (i != 2) continue;
                want = "1";
            }
            ms_str_copy(buf, sizeof buf, want);
        }
        if (strcmp(buf, facts[i].got) != 0 && used < msg_size) {
            int k = snprintf(msg + used, msg_size - used, "%s%s: ours '%s', expected '%s'",
                             used ? "; " : "header ", facts[i].col, facts[i].got, buf);
            if (k > 0) used += (size_t)k;
        }
    }
    return used == 0;
}

static bool finite_unit(const ms_image *img, char *msg, size_t msg_size) {
    size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    for (size_t i = 0; i < n; i++) {
        float v = img->data[i];
        if (!(v >= 0.0f && v <= 1.0f)) {
            snprintf(msg, msg_size, "sample %zu is %g, outside [0, 1]", i, (double)v);
            return false;
        }
    }
    return true;
}

typedef struct counts {
    unsigned passed, failed, skipped, xfail, xpass;
} counts;

typedef struct ctx {
    run_opts o;
    expect_table exp;
    table man, refs;
    int man_file, refs_file, refs_frame, refs_status, refs_ref, refs_err, refs_chain;
    counts c;
} ctx;

static size_t find_row(const table *tb, int col, const char *file, const char *frame, int fcol) {
    for (size_t i = 0; i < tb->nrows; i++)
        if (strcmp(table_get(tb, i, col), file) == 0 &&
            (frame == NULL || strcmp(table_get(tb, i, fcol), frame) == 0))
            return i;
    return SIZE_MAX;
}

/* Runs one file; returns true when its expectation is met, with a one-line detail. */
static bool run_file(ctx *cx, const char *file, const expect_row *e, char *detail,
                     size_t dsize) {
    char path[4096], msg[2048];
    snprintf(path, sizeof path, "%s/%s", cx->o.dir, file);
    ms_source *src = NULL;
    ms_image *img = NULL;
    ms_err err;
    ms_err_clear(&err);
    ms_status st = ms_source_open_file(path, NULL, &src, &err);
    uint32_t nframes = st == MS_OK ? ms_source_frame_count(src) : 0;
    uint32_t frames[2] = {0, nframes > 1 ? nframes - 1 : 0};
    int nf = nframes > 1 ? 2 : 1;
    bool ok = true;
    size_t used = 0;
    detail[0] = 0;

    if (e->out == OUT_ERROR) {
        if (st == MS_OK) {
            ms_decode_opts opts = ms_decode_opts_default();
            st = ms_source_decode(src, &opts, &img, &err);
        }
        if (st == MS_OK) {
            snprintf(detail, dsize, "decoded, expected error %s", e->error_name);
            ok = false;
        } else if (strcmp(ms_status_name(st), e->error_name) != 0) {
            snprintf(detail, dsize, "error %s, expected %s: %s", ms_status_name(st),
                     e->error_name, err.msg);
            ok = false;
        } else {
            snprintf(detail, dsize, "error %s as expected: %s", ms_status_name(st), err.msg);
        }
        goto done;
    }
    if (st != MS_OK) {
        snprintf(detail, dsize, "open failed: %s: %s", ms_status_name(st), err.msg);
        ok = false;
        goto done;
    }
    size_t mrow = find_row(&cx->man, cx->man_file, file, NULL, 0);
    for (int k = 0; k < nf; k++) {
        ms_decode_opts opts = ms_decode_opts_default();
        opts.frame = frames[k];
        ms_err_clear(&err);
        st = ms_source_decode(src, &opts, &img, &err);
        msg[0] = 0;
        if (st != MS_OK) {
            snprintf(msg, sizeof msg, "frame %u: decode failed: %s: %s", frames[k],
                     ms_status_name(st), err.msg);
            ok = false;
        } else {
            bool fok = true;
            if (k == 0) {
                if (mrow == SIZE_MAX) {
                    snprintf(msg, sizeof msg, "no manifest row");
                    fok = false;
                } else {
                    fok = check_header(&cx->man, mrow, e->overrides, src, img, msg, sizeof msg);
                }
            }
            if (fok) fok = finite_unit(img, msg, sizeof msg);
            if (fok) {
                char fr[16];
                snprintf(fr, sizeof fr, "%u", frames[k]);
                size_t rrow = find_row(&cx->refs, cx->refs_file, file, fr, cx->refs_frame);
                const char *rst = table_get(&cx->refs, rrow, cx->refs_status);
                bool have_ref = rrow != SIZE_MAX && strcmp(rst, "0") == 0;
                if (e->out == OUT_OK_NOREF && !(have_ref && e->tol >= 0)) {
                    snprintf(msg, sizeof msg, "frame %u: decoded (%dx%d, voi %s), no reference%s",
                             frames[k], img->width, img->height, ms_voi_kind_name(img->prov.voi),
                             strcmp(rst, "0") == 0 ? " (NOTE: a reference now exists)" : "");
                } else if (rrow == SIZE_MAX) {
                    snprintf(msg, sizeof msg, "frame %u: no reference row in refs.tsv", frames[k]);
                    fok = false;
                } else if (strcmp(rst, "0") != 0) {
                    snprintf(msg, sizeof msg, "frame %u: reference failed (%s): %s", frames[k],
                             table_get(&cx->refs, rrow, cx->refs_chain),
                             table_get(&cx->refs, rrow, cx->refs_err));
                    fok = false;
                } else {
                    char rp[4096];
                    frame_cmp fc = {0};
                    snprintf(rp, sizeof rp, "%s/%s", cx->o.refs,
                             table_get(&cx->refs, rrow, cx->refs_ref));
                    fok = compare_frame(&cx->o, file, frames[k], img, rp, e->tol, &fc, msg,
                                        sizeof msg);
                    if (fok)
                        snprintf(msg, sizeof msg,
                                 "frame %u: max %.6f mean %.6f worst (%u,%u) ours %.5f ref %.5f",
                                 frames[k], fc.max_diff, fc.mean_diff, fc.wx, fc.wy,
                                 (double)fc.ours, (double)fc.ref);
                    size_t ml = strlen(msg);
                    snprintf(msg + ml, sizeof msg - ml, " [ref %s %s; ours voi %s c=%g w=%g, %s]",
                             table_get(&cx->refs, rrow, cx->refs_chain),
                             table_get(&cx->refs, rrow, table_col(&cx->refs, "voi")),
                             ms_voi_kind_name(img->prov.voi), img->prov.window_center,
                             img->prov.window_width, ms_inversion_name(img->prov.inversion));
                }
            }
            if (!fok) ok = false;
        }
        ms_image_destroy(img);
        img = NULL;
        if (used < dsize) {
            int w = snprintf(detail + used, dsize - used, "%s%s", used ? "; " : "", msg);
            if (w > 0) used += (size_t)w;
        }
    }
done:
    ms_image_destroy(img);
    ms_source_destroy(src);
    return ok;
}

static bool wanted_name(const run_opts *o, const char *n) {
    static const char *skip_suffixes[] = {".md", ".csv", ".txt", ".json", ".dump", ".gz", ".tsv"};
    if (n[0] == '.') return false;
    if (o->suffix != NULL) return has_suffix(n, o->suffix);
    for (size_t i = 0; i < sizeof skip_suffixes / sizeof *skip_suffixes; i++)
        if (has_suffix(n, skip_suffixes[i])) return false;
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int usage(void) {
    fprintf(stderr, "usage: ms_conformance --dir D --manifest M --refs R --expect T "
                    "[--suffix .dcm] [--only FILE] [--dump DIR] [--label NAME]\n");
    return 2;
}

int main(int argc, char **argv) {
    ctx cx;
    memset(&cx, 0, sizeof cx);
    run_opts *o = &cx.o;
    o->label = "conformance";
    for (int i = 1; i < argc; i++) {
        const char **dst = NULL;
        if (strcmp(argv[i], "--dir") == 0) dst = &o->dir;
        else if (strcmp(argv[i], "--manifest") == 0) dst = &o->manifest;
        else if (strcmp(argv[i], "--refs") == 0) dst = &o->refs;
        else if (strcmp(argv[i], "--expect") == 0) dst = &o->expect;
        else if (strcmp(argv[i], "--suffix") == 0) dst = &o->suffix;
        else if (strcmp(argv[i], "--only") == 0) dst = &o->only;
        else if (strcmp(argv[i], "--dump") == 0) dst = &o->dump;
        else if (strcmp(argv[i], "--label") == 0) dst = &o->label;
        if (dst == NULL || i + 1 >= argc) return usage();
        *dst = argv[++i];
    }
    if (!o->dir || !o->manifest || !o->refs || !o->expect) return usage();

    struct stat sb;
    if (stat(o->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        printf("SKIP %s: input folder %s is absent; nothing tested\n", o->label, o->dir);
        return SKIP_CODE;
    }
    char refs_tsv[4096];
    snprintf(refs_tsv, sizeof refs_tsv, "%s/refs.tsv", o->refs);
    if (stat(refs_tsv, &sb) != 0) {
        printf("SKIP %s: no reference decodes at %s (did the refs fixture skip? it needs "
               "dcm2pnm/dcmj2pnm/dcml2pnm (dcmtk), gdcmconv (libgdcm-tools) and "
               "/usr/bin/python3 with pydicom)\n",
               o->label, refs_tsv);
        return SKIP_CODE;
    }
    int rc = 1;
    if (!expect_load(o->expect, &cx.exp)) goto out;
    if (!table_load(o->manifest, ',', &cx.man)) {
        fprintf(stderr, "%s: cannot read manifest %s\n", o->label, o->manifest);
        goto out;
    }
    if (!table_load(refs_tsv, '\t', &cx.refs)) {
        fprintf(stderr, "%s: cannot read %s\n", o->label, refs_tsv);
        goto out;
    }
    cx.man_file = table_col(&cx.man, "file");
    cx.refs_file = table_col(&cx.refs, "file");
    cx.refs_frame = table_col(&cx.refs, "frame");
    cx.refs_status = table_col(&cx.refs, "status");
    cx.refs_ref = table_col(&cx.refs, "ref");
    cx.refs_err = table_col(&cx.refs, "stderr");
    cx.refs_chain = table_col(&cx.refs, "chain");
    if (cx.man_file < 0 || cx.refs_file < 0 || cx.refs_frame < 0 || cx.refs_status < 0 ||
        cx.refs_ref < 0) {
        fprintf(stderr, "%s: manifest or refs.tsv lacks expected columns\n", o->label);
        goto out;
    }

    DIR *d = opendir(o->dir);
    if (d == NULL) {
        fprintf(stderr, "%s: cannot list %s: %s\n", o->label, o->dir, strerror(errno));
        goto out;
    }
    char **names = NULL;
    size_t nnames = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!wanted_name(o, de->d_name)) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", o->dir, de->d_name);
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (nnames == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            char **nn = ms_realloc(names, ncap * sizeof *nn);
            if (nn == NULL) break;
            names = nn;
            cap = ncap;
        }
        names[nnames] = dup_str(de->d_name);
        if (names[nnames] != NULL) nnames++;
    }
    closedir(d);
    if (nnames) qsort(names, nnames, sizeof *names, cmp_str);

    static char detail[16384];
    for (size_t i = 0; i < nnames; i++) {
        if (o->only != NULL && strcmp(o->only, names[i]) != 0) {
            cx.c.skipped++;
            continue;
        }
        expect_row *e = expect_find(&cx.exp, names[i]);
        if (e == NULL) {
            printf("FAIL  %s: no expectation for %s (add a row to %s)\n", names[i], names[i],
                   o->expect);
            cx.c.failed++;
            continue;
        }
        e->seen = true;
        bool ok = run_file(&cx, names[i], e, detail, sizeof detail);
        const char *tag;
        if (e->out == OUT_XFAIL) {
            tag = ok ? "XPASS" : "XFAIL";
            if (ok) cx.c.xpass++, cx.c.failed++;
            else cx.c.xfail++;
        } else {
            tag = ok ? "PASS" : "FAIL";
            if (ok) cx.c.passed++;
            else cx.c.failed++;
        }
        printf("%-5s %s: %s\n", tag, names[i], detail);
        if (!ok || e->out == OUT_XFAIL) printf("      why: %s\n", e->why);
    }
    if (o->only == NULL) {
        for (size_t i = 0; i < cx.exp.n; i++) {
            if (!cx.exp.rows[i].seen) {
                printf("FAIL  %s: in %s but not in %s\n", cx.exp.rows[i].file, o->expect,
                       o->dir);
                cx.c.failed++;
            }
        }
    }
    for (size_t i = 0; i < nnames; i++) ms_free(names[i]);
    ms_free(names);
    printf("%s: %u passed, %u failed, %u skipped, %u xfail (suspected decoder bugs), %u xpass "
           "(of %zu files)\n",
           o->label, cx.c.passed, cx.c.failed, cx.c.skipped, cx.c.xfail, cx.c.xpass, nnames);
    rc = cx.c.failed ? 1 : 0;
out:
    expect_free(&cx.exp);
    table_free(&cx.man);
    table_free(&cx.refs);
    return rc;
}
