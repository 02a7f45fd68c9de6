/* report.html: one self-contained review page. Inline CSS and script, thumbnails inline as
 * data:image/jpeg;base64 URIs, overlays linked by relative path (overlays/<stem>.png), no
 * external URL anywhere, and a Content-Security-Policy that forbids fetching any, so the page
 * works offline from a file:// URL and cannot leak that a study was opened.
 *
 * Rows: class "scan", id "scan-<n>", data-rank (1-based position), data-path, data-status and
 * data-probability, in review order: scored scans by probability, highest first (ties by path,
 * then frame; NaN last), then skipped, then errors (each by path, then frame). Every string
 * from an input (paths, reasons) is HTML-escaped and invalid UTF-8 becomes U+FFFD.
 * Clicking a thumbnail opens the overlay in a lightbox; without script the link just opens
 * the PNG. Deterministic: the only run-dependent value is totals' wall_seconds. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"
#include "report_internal.h"

/* A thumbnail is a few KiB; anything bigger is not ours and is drawn as a placeholder. */
#define HTML_THUMB_MAX_BYTES ((uint64_t)4 << 20)
#define HTML_FLUSH_BYTES ((size_t)64 << 10)

typedef struct html_out {
    FILE *f;
    ms_buf b;
    bool io_error;
} html_out;

static void ho_flush(html_out *o) {
    if (o->b.len > 0 && !o->io_error && !o->b.oom) {
        if (fwrite(o->b.p, 1, o->b.len, o->f) != o->b.len) o->io_error = true;
    }
    o->b.len = 0;
    if (o->b.p != NULL) o->b.p[0] = '\0';
}

static void ho_maybe_flush(html_out *o) {
    if (o->b.len >= HTML_FLUSH_BYTES) ho_flush(o);
}

/* Escapes & < > " ' (safe in text and in quoted attributes); C0 controls other than TAB, LF
 * and CR, DEL, and invalid UTF-8 become U+FFFD. */
static void html_text(ms_buf *b, const char *s) {
    if (s == NULL) return;
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n > 0) {
        size_t len = ms_utf8_seq(u, n, NULL);
        if (len == 0) {
            ms_buf_puts(b, MS_REPORT_REPLACEMENT);
            len = 1;
        } else if (len == 1) {
            switch (u[0]) {
            case '&': ms_buf_puts(b, "&amp;"); break;
            case '<': ms_buf_puts(b, "&lt;"); break;
            case '>': ms_buf_puts(b, "&gt;"); break;
            case '"': ms_buf_puts(b, "&quot;"); break;
            case '\'': ms_buf_puts(b, "&#39;"); break;
            default:
                if ((u[0] < 0x20 && u[0] != '\t' && u[0] != '\n' && u[0] != '\r') || u[0] == 0x7F)
                    ms_buf_puts(b, MS_REPORT_REPLACEMENT);
                else
                    ms_buf_append(b, (const char *)u, 1);
            }
        } else {
            ms_buf_append(b, (const char *)u, len);
        }
        u += len, n -= len;
    }
}

/* Percent-encodes a stem for a relative URL: only unreserved characters pass, so no stem can
 * become a scheme, a query or a path outside overlays/. */
static void url_component(ms_buf *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        unsigned c = *u;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            char ch = (char)c;
            ms_buf_append(b, &ch, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            ms_buf_append(b, esc, 3);
        }
    }
}

static void base64(ms_buf *b, const uint8_t *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (; n >= 3; p += 3, n -= 3) {
        q[0] = tab[p[0] >> 2];
        q[1] = tab[(p[0] & 3) << 4 | p[1] >> 4];
        q[2] = tab[(p[1] & 15) << 2 | p[2] >> 6];
        q[3] = tab[p[2] & 63];
        ms_buf_append(b, q, 4);
    }
    if (n > 0) {
        q[0] = tab[p[0] >> 2];
        q[1] = tab[(p[0] & 3) << 4 | (n > 1 ? p[1] >> 4 : 0)];
        q[2] = n > 1 ? tab[(p[1] & 15) << 2] : '=';
        q[3] = '=';
        ms_buf_append(b, q, 4);
    }
}

/* ---- order ---------------------------------------------------------------------------- */

static int status_order(ms_scan_status s) {
    return s == MS_SCAN_OK ? 0 : s == MS_SCAN_SKIPPED ? 1 : 2;
}

static int row_cmp(const void *pa, const void *pb) {
    const ms_summary_row *a = *(const ms_summary_row *const *)pa;
    const ms_summary_row *b = *(const ms_summary_row *const *)pb;
    int sa = status_order(a->status), sb = status_order(b->status);
    if (sa != sb) return sa < sb ? -1 : 1;
    if (sa == 0) {
        bool na = isnan(a->probability), nb = isnan(b->probability);
        if (na != nb) return na ? 1 : -1;
        if (!na && a->probability != b->probability)
            return a->probability > b->probability ? -1 : 1;
    }
    int c = strcmp(a->path != NULL ? a->path : "", b->path != NULL ? b->path : "");
    if (c != 0) return c < 0 ? -1 : 1;
    if (a->frame != b->frame) return a->frame < b->frame ? -1 : 1;
    /* identical keys: keep the caller's order, so the result never depends on qsort */
    return a < b ? -1 : a > b ? 1 : 0;
}

/* ---- page ----------------------------------------------------------------------------- */

static const char html_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
    "img-src data: 'self' file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<meta name=\"generator\" content=\"medscreen\">\n"
    "<title>medscreen review</title>\n<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1c1e21}\n"
    "header{background:#1f2937;color:#f9fafb;padding:12px 20px}\n"
    "header h1{font-size:20px;margin:0 0 6px}\n"
    "header dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0}\n"
    "header dt{color:#9ca3af}header dd{margin:0;overflow-wrap:anywhere}\n"
    ".note{font-size:12px;color:#d1d5db;margin:8px 0 0}\n"
    ".warn{background:#b45309;color:#fff;padding:8px 20px;font-weight:600}\n"
    "main{padding:12px 20px}\n"
    "table{border-collapse:collapse;width:100%;background:#fff}\n"
    "th,td{border-bottom:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top}\n"
    "th{background:#f9fafb;position:sticky;top:0}\n"
    "td.path{font-family:ui-monospace,monospace;overflow-wrap:anywhere;max-width:420px}\n"
    "td.num{font-variant-numeric:tabular-nums}\n"
    ".thumb img,.ph{display:block;width:160px;height:160px;object-fit:contain;"
    "background:#111;border-radius:3px}\n"
    ".ph{background:#9ca3af;color:#374151;display:flex;align-items:center;justify-content:center;"
    "font-size:12px}\n"
    ".badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;"
    "font-weight:600}\n"
    ".flag{background:#dc2626;color:#fff}.clear{background:#d1fae5;color:#065f46}\n"
    ".skipped{background:#fef3c7;color:#92400e}.error{background:#fee2e2;color:#991b1b}\n"
    "tr.scan.flagged td:first-child{border-left:4px solid #dc2626}\n"
    "ol.regions{margin:0;padding-left:18px;font-size:12px}\n"
    ".reason{font-size:12px;color:#6b7280;overflow-wrap:anywhere}\n"
    "#lightbox{position:fixed;inset:0;background:rgba(0,0,0,.88);display:flex;"
    "flex-direction:column;align-items:center;justify-content:center;cursor:zoom-out}\n"
    "#lightbox[hidden]{display:none}\n"
    "#lightbox img{max-width:96vw;max-height:88vh;image-rendering:auto;background:#000}\n"
    "#lightbox p{color:#f3f4f6;margin:8px;font-family:ui-monospace,monospace}\n"
    "</style>\n</head>\n<body>\n";

/* Opens a thumbnail's overlay in the lightbox; Escape or a click closes it. Without script
 * the link opens the PNG itself. */
static const char html_tail[] =
    "</tbody>\n</table>\n</main>\n"
    "<div id=\"lightbox\" hidden><img alt=\"overlay\"><p></p></div>\n"
    "<script>\n(function(){\n"
    "var lb=document.getElementById('lightbox'),im=lb.querySelector('img'),"
    "cap=lb.querySelector('p');\n"
    "function close(){lb.hidden=true;im.removeAttribute('src');}\n"
    "document.addEventListener('click',function(e){\n"
    "var a=e.target.closest?e.target.closest('a.thumb'):null;\n"
    "if(a){e.preventDefault();im.src=a.getAttribute('href');"
    "cap.textContent=a.getAttribute('data-caption');lb.hidden=false;return;}\n"
    "if(!lb.hidden&&lb.contains(e.target))close();});\n"
    "document.addEventListener('keydown',function(e){if(e.key==='Escape')close();});\n"
    "})();\n</script>\n</body>\n</html>\n";

static void html_header(html_out *o, const ms_scan_context *ctx, const ms_summary_totals *tot) {
    ms_buf *b = &o->b;
    ms_buf_puts(b, html_head);
    if (tot->interrupted)
        ms_buf_puts(b, "<div class=\"warn\" id=\"interrupted\">The batch was interrupted: "
                       "this page lists only the scans finished before it stopped.</div>\n");
    ms_buf_puts(b, "<header>\n<h1>medscreen review</h1>\n<dl>\n<dt>Model</dt><dd id=\"model\">");
    html_text(b, ctx->model_name != NULL ? ctx->model_name : "(unnamed)");
    if (ctx->model_version != NULL) {
        ms_buf_puts(b, " ");
        html_text(b, ctx->model_version);
    }
    if (ctx->model_sha256 != NULL && ctx->model_sha256[0] != '\0') {
        ms_buf_puts(b, " <small>sha256 ");
        html_text(b, ctx->model_sha256);
        ms_buf_puts(b, "</small>");
    }
    ms_buf_puts(b, "</dd>\n<dt>Operating point</dt><dd id=\"operating-point\">");
    if (ctx->operating_point != NULL) {
        html_text(b, ctx->operating_point);
        ms_buf_puts(b, ", ");
    }
    ms_buf_printf(b, "flagged at probability &ge; %.6g</dd>\n", ctx->threshold);
    ms_buf_printf(b, "<dt>Regions</dt><dd>seeded at &ge; %.6g, grown to &ge; %.6g, ",
                  ctx->region_threshold, ctx->region_low_threshold);
    if (ctx->min_region_px)
        ms_buf_printf(b, "at least %llu px</dd>\n", (unsigned long long)ctx->min_region_px);
    else
        ms_buf_puts(b, "at least 1/2000 of the image</dd>\n");
    ms_buf_printf(b,
                  "<dt>Scans</dt><dd id=\"totals\" data-scans=\"%llu\" data-flagged=\"%llu\">"
                  "%llu: %llu scored, %llu flagged, %llu skipped, %llu errors"
                  " (%.1f s)</dd>\n",
                  (unsigned long long)tot->scans, (unsigned long long)tot->flagged,
                  (unsigned long long)tot->scans, (unsigned long long)tot->ok,
                  (unsigned long long)tot->flagged, (unsigned long long)tot->skipped,
                  (unsigned long long)tot->errors, tot->wall_seconds);
    ms_buf_puts(b, "</dl>\n<p class=\"note\">medscreen ");
    html_text(b, ctx->tool_version != NULL ? ctx->tool_version : MS_VERSION_STRING);
    ms_buf_puts(b, ". A screening aid: heat maps and regions show where the model responded, "
                   "not a diagnosis.</p>\n</header>\n<main>\n"
                   "<table id=\"scans\">\n<thead><tr><th>#</th><th>Overlay</th><th>Input</th>"
                   "<th>Probability</th><th>Result</th><th>Regions</th></tr></thead>\n<tbody>\n");
}

/* The thumbnail cell. The file is read, encoded and released before the next row. */
static ms_status html_thumb(html_out *o, const ms_summary_row *r, size_t rank,
                            const char *thumbs_dir, ms_err *err) {
    ms_buf *b = &o->b;
    uint8_t *data = NULL;
    size_t size = 0;
    if (r->has_overlay && thumbs_dir != NULL && r->stem != NULL) {
        ms_buf path = {0};
        ms_buf_printf(&path, "%s/%s.jpg", thumbs_dir, r->stem);
        if (path.oom) return ms_fail(err, MS_ENOMEM, "report.html: out of memory");
        ms_err ignored;
        ms_status st = ms_file_read_all(path.p, HTML_THUMB_MAX_BYTES, &data, &size, &ignored);
        ms_buf_free(&path);
        if (st == MS_ENOMEM) return ms_fail(err, MS_ENOMEM, "report.html: out of memory");
        if (st != MS_OK) data = NULL; /* missing or unreadable: the placeholder says so */
    }
    ms_buf_puts(b, "<td>");
    if (r->has_overlay) {
        ms_buf_puts(b, "<a class=\"thumb\" href=\"overlays/");
        url_component(b, r->stem != NULL ? r->stem : "");
        ms_buf_printf(b, ".png\" data-caption=\"#%zu ", rank);
        html_text(b, r->path);
        ms_buf_puts(b, "\">");
    }
    if (data != NULL && size > 0) {
        ms_buf_printf(b, "<img alt=\"overlay thumbnail %zu\" src=\"data:image/jpeg;base64,", rank);
        base64(b, data, size);
        ms_buf_puts(b, "\">");
    } else {
        ms_buf_puts(b, r->has_overlay ? "<div class=\"ph\">no thumbnail</div>"
                                      : "<div class=\"ph\">no overlay</div>");
    }
    ms_free(data);
    if (r->has_overlay) ms_buf_puts(b, "</a>");
    ms_buf_puts(b, "</td>");
    return MS_OK;
}

static ms_status html_row(html_out *o, const ms_summary_row *r, size_t rank, const char *thumbs_dir,
                          ms_err *err) {
    ms_buf *b = &o->b;
    const bool ok = r->status == MS_SCAN_OK;
    const char *status = ms_scan_status_name(r->status);
    ms_buf_printf(b, "<tr class=\"scan %s%s\" id=\"scan-%zu\" data-rank=\"%zu\" data-status=\"%s\"",
                  status, ok && r->flagged ? " flagged" : "", rank, rank, status);
    ms_buf_puts(b, " data-path=\"");
    html_text(b, r->path);
    ms_buf_printf(b, "\" data-frame=\"%lu\"", (unsigned long)r->frame);
    if (ok && isfinite(r->probability))
        ms_buf_printf(b, " data-probability=\"%.6g\"", r->probability);
    ms_buf_printf(b, ">\n<td class=\"num\">%zu</td>", rank);
    ms_status st = html_thumb(o, r, rank, thumbs_dir, err);
    if (st != MS_OK) return st;

    ms_buf_puts(b, "<td class=\"path\">");
    html_text(b, r->path);
    if (r->frame > 0) ms_buf_printf(b, " <small>frame %lu</small>", (unsigned long)r->frame);
    ms_buf_puts(b, "</td>");

    if (ok && isfinite(r->probability))
        ms_buf_printf(b, "<td class=\"num prob\">%.3f</td>", r->probability);
    else
        ms_buf_puts(b, "<td class=\"num prob\">&ndash;</td>");

    if (ok)
        ms_buf_puts(b, r->flagged ? "<td><span class=\"badge flag\">flagged</span></td>"
                                  : "<td><span class=\"badge clear\">below threshold</span></td>");
    else {
        ms_buf_printf(b, "<td><span class=\"badge %s\">%s</span><div class=\"reason\">", status,
                      status);
        html_text(b, r->reason_code);
        if (r->reason != NULL && r->reason[0] != '\0') {
            ms_buf_puts(b, ": ");
            html_text(b, r->reason);
        }
        ms_buf_puts(b, "</div></td>");
    }

    ms_buf_puts(b, "<td>");
    uint32_t kept = ok ? r->kept_regions : 0;
    if (kept > MS_SUMMARY_REGIONS) kept = MS_SUMMARY_REGIONS;
    if (kept > 0) {
        ms_buf_puts(b, "<ol class=\"regions\">");
        for (uint32_t i = 0; i < kept; i++) {
            const ms_region *g = &r->regions[i];
            ms_buf_printf(b,
                          "<li data-region-rank=\"%lu\">#%lu peak %.2f at (%ld, %ld) "
                          "%ld&times;%ld px</li>",
                          (unsigned long)g->rank, (unsigned long)g->rank, (double)g->peak,
                          (long)g->x, (long)g->y, (long)g->w, (long)g->h);
        }
        ms_buf_puts(b, "</ol>");
        if (r->region_count > kept)
            ms_buf_printf(b, "<small>and %lu more</small>",
                          (unsigned long)(r->region_count - kept));
    } else if (ok) {
        ms_buf_puts(b, "none");
    }
    ms_buf_puts(b, "</td>\n</tr>\n");
    return MS_OK;
}

ms_status ms_report_html_write(FILE *f, const ms_scan_context *ctx, const ms_summary_row *rows,
                               size_t n, const ms_summary_totals *tot, const char *thumbs_dir,
                               ms_err *err) {
    if (f == NULL || ctx == NULL || tot == NULL || (n > 0 && rows == NULL))
        return ms_fail(err, MS_EINVAL, "report.html: missing argument");
    ms_status st = MS_OK;
    html_out o = {f, {0}, false};
    const ms_summary_row **order = NULL;
    if (n > 0) {
        size_t bytes;
        if (!ms_mul_size(n, sizeof *order, &bytes))
            return ms_fail(err, MS_EOVERFLOW, "report.html: %zu rows", n);
        order = ms_malloc(bytes);
        if (order == NULL) return ms_fail(err, MS_ENOMEM, "report.html: cannot sort %zu rows", n);
        for (size_t i = 0; i < n; i++) order[i] = &rows[i];
        qsort(order, n, sizeof *order, row_cmp);
    }

    html_header(&o, ctx, tot);
    for (size_t i = 0; i < n; i++) {
        st = html_row(&o, order[i], i + 1, thumbs_dir, err);
        if (st != MS_OK) goto fail;
        if (o.b.oom) break;
        ho_maybe_flush(&o);
        if (o.io_error) break;
    }
    if (n == 0 && !o.b.oom)
        ms_buf_puts(&o.b, "<tr><td colspan=\"6\" id=\"empty\">No scans.</td></tr>\n");
    ms_buf_puts(&o.b, html_tail);
    if (o.b.oom) {
        st = ms_fail(err, MS_ENOMEM, "report.html: out of memory");
        goto fail;
    }
    ho_flush(&o);
    if (o.io_error || fflush(f) != 0 || ferror(f)) {
        st = ms_fail(err, MS_EIO, "report.html: write failed: %s", strerror(errno));
        goto fail;
    }
fail:
    ms_buf_free(&o.b);
    ms_free(order);
    return st;
}
