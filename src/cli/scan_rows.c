/* scan's batch table, output names, and reading back earlier per-scan reports (--resume,
 * --expect). Reports are untrusted on the way back in: the strict JSON reader checks them and
 * any field that is missing or of the wrong type makes the report unusable, never a crash. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medscreen/core.h"
#include "medscreen/json_read.h"
#include "scan.h"

static char *dup_or_null(const char *s, bool *oom) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) {
        *oom = true;
        return NULL;
    }
    memcpy(p, s, n);
    return p;
}

static void row_free(ms_summary_row *r) {
    free(r->path);
    free(r->stem);
    free(r->reason_code);
    free(r->reason);
}

void cli_scan_rows_free(cli_scan_rows *t) {
    for (size_t i = 0; i < t->n; i++) row_free(&t->rows[i]);
    free(t->rows);
    memset(t, 0, sizeof *t);
}

static bool rows_push(cli_scan_rows *t, ms_summary_row *row) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        ms_summary_row *rows = realloc(t->rows, cap * sizeof *rows);
        if (!rows) return false;
        t->rows = rows;
        t->cap = cap;
    }
    t->rows[t->n++] = *row;
    return true;
}

bool cli_scan_rows_add(cli_scan_rows *t, const ms_scan_result *r) {
    ms_summary_row row;
    memset(&row, 0, sizeof row);
    bool oom = false;
    row.path = dup_or_null(r->path, &oom);
    row.stem = dup_or_null(r->stem, &oom);
    row.reason_code = dup_or_null(r->status != MS_SCAN_OK ? r->reason_code : NULL, &oom);
    row.reason = dup_or_null(r->status != MS_SCAN_OK ? r->reason : NULL, &oom);
    row.status = r->status;
    row.frame = r->frame;
    row.probability = r->status == MS_SCAN_OK ? r->probability : NAN;
    row.flagged = r->status == MS_SCAN_OK && r->flagged;
    row.has_overlay = r->has_overlay;
    row.region_count = r->status == MS_SCAN_OK ? r->region_count : 0;
    row.kept_regions = row.region_count < MS_SUMMARY_REGIONS ? row.region_count
                                                              : MS_SUMMARY_REGIONS;
    for (uint32_t i = 0; i < row.kept_regions; i++) row.regions[i] = r->regions[i];
    if (oom || !rows_push(t, &row)) {
        row_free(&row);
        return false;
    }
    return true;
}

/* ---- stems ---------------------------------------------------------------------------- */

typedef struct stem_ref {
    const char *stem;
    size_t idx;
} stem_ref;

static int cmp_stem_ref(const void *a, const void *b) {
    const stem_ref *x = a, *y = b;
    int d = strcmp(x->stem, y->stem);
    if (d) return d;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int cli_scan_dedupe_stems(const cli_inputs *in, char **stems) {
    if (in->n < 2) return 0;
    stem_ref *refs = malloc(in->n * sizeof *refs);
    if (!refs) return -1;
    for (size_t i = 0; i < in->n; i++) refs[i] = (stem_ref){stems[i], i};
    qsort(refs, in->n, sizeof *refs, cmp_stem_ref);
    int rc = 0;
    /* Within each run of equal stems the first (in input order) keeps it and the others get
     * -2, -3, ...: deterministic for a given input list. */
    size_t i = 0;
    while (i < in->n && rc == 0) {
        size_t run = i + 1;
        while (run < in->n && strcmp(refs[run].stem, refs[i].stem) == 0) run++;
        for (size_t k = i + 1; k < run; k++) {
            size_t len = strlen(refs[i].stem) + 24;
            char *s = malloc(len);
            if (!s) {
                rc = -1;
                break;
            }
            snprintf(s, len, "%s-%zu", refs[i].stem, k - i + 1);
            free(stems[refs[k].idx]);
            stems[refs[k].idx] = s;
        }
        i = run;
    }
    free(refs);
    return rc;
}

/* ---- reading reports ------------------------------------------------------------------ */

static const char *jstr(const ms_jval *root, const char *path) {
    return ms_jval_str(ms_jval_path(root, path), NULL);
}

static bool jnum(const ms_jval *root, const char *path, double *v) {
    return ms_jval_num(ms_jval_path(root, path), v);
}

static bool jint(const ms_jval *v, const char *path, int32_t *out) {
    double d;
    if (!ms_jval_num(ms_jval_path(v, path), &d) || !(d >= -2147483648.0 && d <= 2147483647.0) ||
        d != floor(d))
        return false;
    *out = (int32_t)d;
    return true;
}

static bool parse_region(const ms_jval *v, ms_region *r) {
    double rank, peak, mean, area;
    memset(r, 0, sizeof *r);
    if (!ms_jval_num(ms_jval_get(v, "rank"), &rank) || !(rank >= 1 && rank < 1e6)) return false;
    if (!jint(v, "bbox.x", &r->x) || !jint(v, "bbox.y", &r->y) || !jint(v, "bbox.w", &r->w) ||
        !jint(v, "bbox.h", &r->h))
        return false;
    if (!jnum(v, "peak", &peak) || !jnum(v, "mean", &mean)) return false;
    if (!jnum(v, "area_px", &area) || !(area >= 0)) return false;
    r->rank = (uint32_t)rank;
    r->peak = (float)peak;
    r->mean = (float)mean;
    r->area_px = (uint64_t)area;
    double mm2;
    r->area_mm2 = jnum(v, "area_mm2", &mm2) ? mm2 : -1;
    jnum(v, "centroid.x", &r->centroid_x);
    jnum(v, "centroid.y", &r->centroid_y);
    jint(v, "peak_xy.0", &r->peak_x);
    jint(v, "peak_xy.1", &r->peak_y);
    return true;
}

static char *report_path(const char *dir, const char *stem, bool in_scans) {
    size_t len = strlen(dir) + strlen(stem) + 16;
    char *p = malloc(len);
    if (p) snprintf(p, len, in_scans ? "%s/scans/%s.json" : "%s/%s.json", dir, stem);
    return p;
}

bool cli_scan_read_report(const char *dir, const char *stem, ms_summary_row *row,
                          char *sha_out, char *model_sha_out, uint32_t *frame_count,
                          const char **why) {
    *why = "missing";
    uint8_t *data = NULL;
    size_t size = 0;
    bool ok = false;
    ms_jdoc *doc = NULL;
    ms_err err;
    ms_err_clear(&err);
    char *path = report_path(dir, stem, true);
    if (!path) return false;
    if (ms_file_read_all(path, 64u << 20, &data, &size, &err) != MS_OK) {
        free(path);
        if (!(path = report_path(dir, stem, false))) return false;
        ms_err_clear(&err);
        if (ms_file_read_all(path, 64u << 20, &data, &size, &err) != MS_OK) goto done;
    }
    *why = "unreadable";
    if (ms_json_parse((const char *)data, size, path, NULL, &doc, &err) != MS_OK) {
        cli_diag("%s", err.msg);
        goto done;
    }
    const ms_jval *root = ms_jdoc_root(doc);
    const char *schema = jstr(root, "schema"), *status = jstr(root, "status");
    const char *isha = jstr(root, "input.sha256"), *msha = jstr(root, "model.sha256");
    const char *ipath = jstr(root, "input.path");
    double frame = 0, frames = 0;
    if (!schema || strcmp(schema, MS_REPORT_SCHEMA) != 0 || !status || !ipath ||
        !jnum(root, "input.frame", &frame) || !(frame >= 0 && frame < 4294967296.0)) {
        cli_diag("%s: not a %s report", path, MS_REPORT_SCHEMA);
        goto done;
    }
    if (!jnum(root, "input.frame_count", &frames) || !(frames >= 0 && frames < 4294967296.0))
        frames = 0;
    memset(row, 0, sizeof *row);
    bool oom = false;
    if (strcmp(status, "ok") == 0) {
        row->status = MS_SCAN_OK;
    } else if (strcmp(status, "skipped") == 0) {
        row->status = MS_SCAN_SKIPPED;
    } else if (strcmp(status, "error") == 0) {
        row->status = MS_SCAN_ERROR;
    } else {
        cli_diag("%s: unknown status '%s'", path, status);
        goto done;
    }
    row->frame = (uint32_t)frame;
    row->probability = NAN;
    if (row->status == MS_SCAN_OK) {
        const ms_jval *regions = ms_jval_path(root, "regions");
        bool flagged = false;
        if (!jnum(root, "score.probability", &row->probability) ||
            !ms_jval_bool(ms_jval_path(root, "score.flagged"), &flagged) ||
            ms_jval_type(regions) != MS_JARR) {
            cli_diag("%s: an ok report without score.probability, score.flagged or regions",
                     path);
            goto done;
        }
        row->flagged = flagged;
        size_t nreg = ms_jval_len(regions);
        row->region_count = (uint32_t)(nreg < 100000 ? nreg : 100000);
        for (size_t i = 0; i < nreg && row->kept_regions < MS_SUMMARY_REGIONS; i++) {
            if (!parse_region(ms_jval_at(regions, i), &row->regions[row->kept_regions])) {
                cli_diag("%s: region %zu is malformed", path, i + 1);
                goto done;
            }
            row->kept_regions++;
        }
    }
    row->path = dup_or_null(ipath, &oom);
    row->stem = dup_or_null(stem, &oom);
    row->reason_code = dup_or_null(jstr(root, "reason.code"), &oom);
    row->reason = dup_or_null(jstr(root, "reason.message"), &oom);
    row->has_overlay = row->status == MS_SCAN_OK;
    if (oom) {
        row_free(row);
        goto done;
    }
    if (sha_out) ms_str_copy(sha_out, 65, isha ? isha : "");
    if (model_sha_out) ms_str_copy(model_sha_out, 65, msha ? msha : "");
    if (frame_count) *frame_count = (uint32_t)frames;
    ok = true;
done:
    ms_jdoc_destroy(doc);
    ms_free(data);
    free(path);
    return ok;
}

bool cli_scan_resume(const char *dir, const char *stem, const char *input_sha,
                     const char *model_sha, cli_scan_rows *t, pthread_mutex_t *lock) {
    ms_summary_row rows[1];
    char sha[65], msha[65];
    uint32_t frames = 0;
    const char *why;
    cli_scan_rows found = {0};
    bool ok = false;
    size_t len = strlen(stem) + 16;
    char *fstem = malloc(len);
    if (!fstem) return false;
    /* Single-frame reports are named <stem>, multi-frame ones <stem>-fNNNN. */
    bool multi = false;
    if (!cli_scan_read_report(dir, stem, &rows[0], sha, msha, &frames, &why)) {
        snprintf(fstem, len, "%s-f0000", stem);
        if (!cli_scan_read_report(dir, fstem, &rows[0], sha, msha, &frames, &why)) goto done;
        multi = true;
    }
    for (uint32_t f = 0;; f++) {
        if (strcmp(sha, input_sha) != 0 || strcmp(msha, model_sha) != 0 ||
            rows[0].status == MS_SCAN_ERROR || !rows_push(&found, &rows[0])) {
            row_free(&rows[0]);
            goto done;
        }
        if (!multi || f + 1 >= frames) break;
        snprintf(fstem, len, "%s-f%04u", stem, f + 1);
        if (!cli_scan_read_report(dir, fstem, &rows[0], sha, msha, NULL, &why)) goto done;
    }
    pthread_mutex_lock(lock);
    ok = true;
    for (size_t i = 0; i < found.n; i++) {
        if (!rows_push(t, &found.rows[i])) {
            row_free(&found.rows[i]);
            ok = false;
        }
    }
    found.n = 0;
    pthread_mutex_unlock(lock);
done:
    cli_scan_rows_free(&found);
    free(fstem);
    return ok;
}
