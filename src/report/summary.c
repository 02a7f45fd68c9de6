/* Batch outputs for scripts: summary.json (schema "medscreen.summary/1",
 * src/report/summary.schema.json) and summary.csv.
 *
 * CSV: a header line, then one line per row, "\n"-terminated. Fields are quoted per RFC 4180
 * when they contain a comma, a double quote, CR or LF (inner quotes doubled). Bytes that are
 * not valid UTF-8 become U+FFFD, as in the JSON. A text field (path, reason) that starts with
 * '=', '+', '-', '@', TAB or CR is prefixed with a single quote ('), so a spreadsheet shows it
 * as text instead of evaluating it as a formula (CSV injection, OWASP); a path that really
 * starts with one of those characters is therefore shown with a leading ' in the CSV only.
 * Number fields are empty where the JSON has null. The reason column holds the message; the
 * stable code is in summary.json. */
#include <math.h>
#include <string.h>

#include "report_internal.h"


/* ---- summary.json --------------------------------------------------------------------- */

static void render_top_region(ms_buf *b, const ms_region *g) {
    ms_json o;
    ms_json_init(&o);
    ms_json_uint(&o, "rank", g->rank);
    ms_report_bbox(&o, "bbox", g);
    ms_json_num(&o, "peak", g->peak);
    if (!ms_json_render(&o, b)) b->oom = true;
    ms_json_free(&o);
}

static void render_row(ms_buf *b, const ms_summary_row *r) {
    ms_json o;
    ms_json_init(&o);
    const char *stem = r->stem != NULL ? r->stem : "";
    ms_json_str(&o, "path", r->path != NULL ? r->path : "");
    ms_json_str(&o, "stem", stem);
    ms_json_uint(&o, "frame", r->frame);
    ms_json_str(&o, "status", ms_scan_status_name(r->status));
    ms_report_add_reason(&o, r->status, r->reason_code, r->reason);
    const bool ok = r->status == MS_SCAN_OK;
    if (ok)
        ms_json_num(&o, "probability", r->probability);
    else
        ms_json_null(&o, "probability");
    ms_json_bool(&o, "flagged", ok && r->flagged);
    ms_json_uint(&o, "region_count", ok ? r->region_count : 0);

    ms_buf arr = {0};
    ms_buf_puts(&arr, "[");
    uint32_t kept = ok ? r->kept_regions : 0;
    if (kept > MS_SUMMARY_REGIONS) kept = MS_SUMMARY_REGIONS;
    for (uint32_t i = 0; i < kept; i++) {
        if (i) ms_buf_puts(&arr, ",");
        render_top_region(&arr, &r->regions[i]);
    }
    ms_buf_puts(&arr, "]");
    ms_json_raw(&o, "regions", &arr);

    /* Relative to the output directory, so the tree can be moved as a whole. */
    ms_buf rel = {0};
    ms_buf_printf(&rel, "scans/%s.json", stem);
    ms_json_str(&o, "report", rel.oom ? NULL : rel.p);
    if (rel.oom) o.oom = true;
    ms_buf_free(&rel);
    if (r->has_overlay) {
        ms_buf_printf(&rel, "overlays/%s.png", stem);
        ms_json_str(&o, "overlay", rel.oom ? NULL : rel.p);
        if (rel.oom) o.oom = true;
        ms_buf_free(&rel);
    } else {
        ms_json_null(&o, "overlay");
    }
    if (!ms_json_render(&o, b)) b->oom = true;
    ms_json_free(&o);
}

bool ms_report_summary_json(const ms_scan_context *ctx, const ms_summary_row *rows, size_t n,
                            const ms_summary_totals *tot, ms_buf *out) {
    if (ctx == NULL || tot == NULL || out == NULL || (n > 0 && rows == NULL)) return false;
    ms_json root, sub;
    ms_json_init(&root);
    ms_json_str(&root, "schema", MS_SUMMARY_SCHEMA);
    ms_report_add_context(&root, ctx, ctx->min_region_px);

    ms_json_init(&sub);
    ms_json_uint(&sub, "scans", tot->scans);
    ms_json_uint(&sub, "ok", tot->ok);
    ms_json_uint(&sub, "flagged", tot->flagged);
    ms_json_uint(&sub, "skipped", tot->skipped);
    ms_json_uint(&sub, "errors", tot->errors);
    ms_json_bool(&sub, "interrupted", tot->interrupted);
    ms_json_num(&sub, "wall_seconds", tot->wall_seconds);
    ms_json_obj(&root, "totals", &sub);

    ms_buf arr = {0};
    ms_buf_puts(&arr, "[");
    for (size_t i = 0; i < n; i++) {
        if (i) ms_buf_puts(&arr, ",");
        render_row(&arr, &rows[i]);
    }
    ms_buf_puts(&arr, "]");
    ms_json_raw(&root, "scans", &arr);

    bool ok = ms_json_render(&root, out);
    ms_json_free(&root);
    return ok;
}

/* ---- summary.csv ---------------------------------------------------------------------- */

static void csv_text(ms_buf *b, const char *s) {
    if (s == NULL) return;
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote) ms_buf_puts(b, "\"");
    if (n > 0 && strchr("=+-@\t\r", s[0]) != NULL) ms_buf_puts(b, "'");
    while (n > 0) {
        size_t len = ms_utf8_seq(u, n, NULL);
        if (len == 0) {
            ms_buf_puts(b, MS_REPORT_REPLACEMENT);
            len = 1;
        } else if (u[0] == '"') {
            ms_buf_puts(b, "\"\"");
        } else {
            ms_buf_append(b, (const char *)u, len);
        }
        u += len, n -= len;
    }
    if (quote) ms_buf_puts(b, "\"");
}

static void csv_num(ms_buf *b, double v) {
    if (isfinite(v)) ms_buf_printf(b, "%.6g", v);
}

bool ms_report_summary_csv(const ms_summary_row *rows, size_t n, ms_buf *out) {
    if (out == NULL || (n > 0 && rows == NULL)) return false;
    ms_buf_puts(out, "path,frame,status,probability,flagged,regions,top_peak,top_x,top_y,top_w,"
                     "top_h,reason\n");
    for (size_t i = 0; i < n; i++) {
        const ms_summary_row *r = &rows[i];
        const bool ok = r->status == MS_SCAN_OK;
        csv_text(out, r->path);
        ms_buf_printf(out, ",%lu,%s,", (unsigned long)r->frame, ms_scan_status_name(r->status));
        if (ok) {
            csv_num(out, r->probability);
            ms_buf_printf(out, ",%s,%lu,", r->flagged ? "true" : "false",
                          (unsigned long)r->region_count);
        } else {
            ms_buf_puts(out, ",,,");
        }
        if (ok && r->kept_regions > 0) {
            const ms_region *g = &r->regions[0];
            csv_num(out, g->peak);
            ms_buf_printf(out, ",%ld,%ld,%ld,%ld,", (long)g->x, (long)g->y, (long)g->w, (long)g->h);
        } else {
            ms_buf_puts(out, ",,,,,");
        }
        if (!ok) csv_text(out, r->reason != NULL && r->reason[0] ? r->reason : r->reason_code);
        ms_buf_puts(out, "\n");
    }
    return !out->oom;
}
