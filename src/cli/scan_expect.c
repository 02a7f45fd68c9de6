/* scan --expect DIR: the CI regression check. Every scan of this run is compared with the
 * report of the same name in DIR (a previous run's -o folder); status, flag, probability
 * (within the tolerance), region count, and per ranked region its peak (within the
 * tolerance) and bounding box (each edge within 2 pixels or 1% of the image side, because a
 * box edge moves by a whole pixel when a probability crosses the threshold by a hair). Every
 * difference is printed as one line "DRIFT path: what: expected X, got Y". References in
 * DIR/scans that no scan of this run matched are drift too ("missing"): a file that vanished
 * from the reference set must not pass silently. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "scan.h"

static int drift(const ms_summary_row *r, const char *what, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#include <stdarg.h>
static int drift(const ms_summary_row *r, const char *what, const char *fmt, ...) {
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (r->frame)
        cli_diag("DRIFT %s (frame %u): %s: %s", r->path, r->frame, what, detail);
    else
        cli_diag("DRIFT %s: %s: %s", r->path, what, detail);
    return 1;
}

static bool close_px(int32_t a, int32_t b, int32_t slack) { return abs(a - b) <= slack; }

static int compare_row(const ms_summary_row *got, const ms_summary_row *exp, double tol) {
    int d = 0;
    if (got->status != exp->status)
        return drift(got, "status", "expected %s, got %s", ms_scan_status_name(exp->status),
                     ms_scan_status_name(got->status));
    if (got->status != MS_SCAN_OK) return 0;
    if (!(fabs(got->probability - exp->probability) <= tol))
        d += drift(got, "probability", "expected %.6f, got %.6f (tolerance %g)",
                   exp->probability, got->probability, tol);
    if (got->flagged != exp->flagged)
        d += drift(got, "flagged", "expected %s, got %s", exp->flagged ? "true" : "false",
                   got->flagged ? "true" : "false");
    if (got->region_count != exp->region_count) {
        d += drift(got, "regions", "expected %u, got %u", exp->region_count, got->region_count);
        return d;
    }
    for (uint32_t i = 0; i < got->kept_regions && i < exp->kept_regions; i++) {
        const ms_region *g = &got->regions[i], *e = &exp->regions[i];
        int32_t side = e->w > e->h ? e->w : e->h;
        int32_t slack = 2 + side / 100;
        if (!(fabs((double)g->peak - (double)e->peak) <= tol))
            d += drift(got, "region peak", "region %u: expected %.6f, got %.6f", i + 1,
                       (double)e->peak, (double)g->peak);
        if (!close_px(g->x, e->x, slack) || !close_px(g->y, e->y, slack) ||
            !close_px(g->x + g->w, e->x + e->w, slack) ||
            !close_px(g->y + g->h, e->y + e->h, slack))
            d += drift(got, "region box", "region %u: expected x=%d y=%d w=%d h=%d, got x=%d "
                       "y=%d w=%d h=%d", i + 1, e->x, e->y, e->w, e->h, g->x, g->y, g->w, g->h);
    }
    return d;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Counts (and prints) the reports in dir/scans that no row's stem matches. */
static int unmatched_references(const char *dir, const ms_summary_row *rows, size_t n) {
    size_t len = strlen(dir) + 8;
    char *sub = malloc(len);
    char **stems = n ? malloc(n * sizeof *stems) : NULL;
    if (!sub || (n && !stems)) {
        free(sub);
        free(stems);
        return 0;
    }
    snprintf(sub, len, "%s/scans", dir);
    for (size_t i = 0; i < n; i++) stems[i] = rows[i].stem;
    if (n) qsort(stems, n, sizeof *stems, cmp_str);
    int missing = 0;
    DIR *d = opendir(sub);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l < 6 || strcmp(e->d_name + l - 5, ".json") != 0) continue;
        char stem[256];
        if (l - 5 >= sizeof stem) continue;
        memcpy(stem, e->d_name, l - 5);
        stem[l - 5] = '\0';
        const char *key = stem;
        if (!n || !bsearch(&key, stems, n, sizeof *stems, cmp_str)) {
            cli_diag("DRIFT %s/%s: missing: no scan of this run has this reference", sub,
                     e->d_name);
            missing++;
        }
    }
    if (d) closedir(d);
    free(sub);
    free(stems);
    return missing;
}

int cli_scan_expect(const char *dir, const ms_summary_row *rows, size_t n, double tolerance) {
    int diffs = 0;
    size_t matched = 0;
    for (size_t i = 0; i < n; i++) {
        ms_summary_row exp;
        const char *why = NULL;
        if (!cli_scan_read_report(dir, rows[i].stem, &exp, NULL, NULL, NULL, &why)) {
            diffs += drift(&rows[i], "reference", "%s/scans/%s.json is %s", dir, rows[i].stem,
                           why);
            continue;
        }
        matched++;
        diffs += compare_row(&rows[i], &exp, tolerance);
        free(exp.path);
        free(exp.stem);
        free(exp.reason_code);
        free(exp.reason);
    }
    diffs += unmatched_references(dir, rows, n);
    if (diffs)
        cli_diag("expect: %d difference%s from %s (%zu of %zu scans had a reference)", diffs,
                 diffs == 1 ? "" : "s", dir, matched, n);
    else
        cli_diag("expect: all %zu scans match %s (tolerance %g)", n, dir, tolerance);
    return diffs;
}
