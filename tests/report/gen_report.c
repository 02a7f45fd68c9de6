/* Writes a small batch of report outputs with the report layer alone (no model), for the
 * schema and headless-browser checks: OUTDIR/scans/<stem>.json, overlays/<stem>.png,
 * thumbs/<stem>.jpg, summary.json, summary.csv and report.html.
 *
 * The scans are synthetic: a grey ramp with one or two hot squares, plus a skipped and an
 * error scan whose names are hostile (markup, quotes, a formula, invalid UTF-8).
 * Usage: gen_report OUTDIR. Exit 0 on success, 1 on any failure. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "medscreen/core.h"
#include "medscreen/report.h"

#define NSCANS 6

static int write_file(const char *dir, const char *sub, const char *stem, const char *ext,
                      const ms_buf *b) {
    char path[4096];
    if (sub != NULL)
        snprintf(path, sizeof path, "%s/%s/%s%s", dir, sub, stem, ext);
    else
        snprintf(path, sizeof path, "%s/%s%s", dir, stem, ext);
    ms_err err;
    if (ms_file_write_atomic(path, b->p, b->len, &err) != MS_OK) {
        fprintf(stderr, "gen_report: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int make_dir(const char *dir, const char *sub) {
    char path[4096];
    if (sub != NULL)
        snprintf(path, sizeof path, "%s/%s", dir, sub);
    else
        snprintf(path, sizeof path, "%s", dir);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "gen_report: mkdir %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* A w x h grey ramp with hot squares at the regions, and the matching regions. */
static int scene(int32_t w, int32_t h, uint32_t nreg, float peak, ms_image **img, float **prob,
                 ms_region *regions) {
    if (ms_image_create(w, h, 1, img, NULL) != MS_OK) return 1;
    *prob = calloc((size_t)w * (size_t)h, sizeof **prob);
    if (*prob == NULL) return 1;
    for (int32_t y = 0; y < h; y++)
        for (int32_t x = 0; x < w; x++)
            (*img)->data[(size_t)y * (size_t)w + (size_t)x] =
                0.1f + 0.8f * (float)(x + y) / (float)(w + h);
    for (uint32_t i = 0; i < nreg; i++) {
        ms_region *g = &regions[i];
        memset(g, 0, sizeof *g);
        g->rank = i + 1;
        g->w = w / 5, g->h = h / 5;
        g->x = (int32_t)(i + 1) * w / 4, g->y = h / 3;
        g->area_px = (uint64_t)g->w * (uint64_t)g->h;
        g->area_mm2 = i == 0 ? -1.0 : (double)g->area_px * 0.02;
        g->peak = peak - 0.1f * (float)i;
        g->mean = g->peak * 0.8f;
        g->centroid_x = g->x + g->w / 2.0, g->centroid_y = g->y + g->h / 2.0;
        g->peak_x = g->x + g->w / 2, g->peak_y = g->y + g->h / 2;
        for (int32_t y = g->y; y < g->y + g->h; y++)
            for (int32_t x = g->x; x < g->x + g->w; x++)
                (*prob)[(size_t)y * (size_t)w + (size_t)x] = g->peak;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_report OUTDIR\n");
        return 1;
    }
    const char *dir = argv[1];
    if (make_dir(dir, NULL) || make_dir(dir, "scans") || make_dir(dir, "overlays") ||
        make_dir(dir, "thumbs"))
        return 1;

    ms_scan_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.tool_version = MS_VERSION_STRING;
    ctx.model_path = "models/cxr-synthetic.msm";
    ctx.model_name = "cxr-synthetic <test>";
    ctx.model_version = "1";
    ctx.model_sha256 = "ab54d286e8e1d1f0d1e1a6c2f0f5a8a9b3c4d5e6f708192a3b4c5d6e7f809112";
    ctx.operating_point = "balanced";
    ctx.threshold = 0.5;
    ctx.region_threshold = 0.5;
    ctx.region_low_threshold = 0.3;
    ctx.min_region_px = 16;

    static const struct {
        const char *path, *stem;
        ms_scan_status status;
        double prob;
        uint32_t nreg;
    } in[NSCANS] = {
        {"data/a_low.png", "a_low", MS_SCAN_OK, 0.12, 0},
        {"data/b <script>alert(1)</script>.png", "b_script", MS_SCAN_OK, 0.91, 2},
        {"=cmd|' /C calc'!A0.dcm", "c_formula", MS_SCAN_OK, 0.55, 1},
        {"data/d \"quoted\" \xff\xfe.dcm", "d_quoted", MS_SCAN_SKIPPED, NAN, 0},
        {"data/e_broken.dcm", "e_broken", MS_SCAN_ERROR, NAN, 0},
        {"data/f_mid.png", "f_mid", MS_SCAN_OK, 0.55, 1},
    };

    ms_summary_row rows[NSCANS];
    ms_summary_totals tot;
    memset(rows, 0, sizeof rows);
    memset(&tot, 0, sizeof tot);
    for (int i = 0; i < NSCANS; i++) {
        ms_scan_result r;
        memset(&r, 0, sizeof r);
        ms_region regions[2];
        ms_image *img = NULL;
        float *prob = NULL;
        r.path = in[i].path;
        r.stem = in[i].stem;
        r.status = in[i].status;
        r.frame_count = 1;
        ms_sha256_hex(in[i].path, strlen(in[i].path), r.input_sha256);
        r.input_bytes = 1000u + (uint64_t)i;
        if (r.status == MS_SCAN_SKIPPED) {
            r.reason_code = "modality";
            r.reason = "data/d: Modality CT is not one the model accepts (CR, DX)";
        } else if (r.status == MS_SCAN_ERROR) {
            r.reason_code = "format";
            r.reason = "data/e_broken.dcm: truncated, \"Pixel Data\" ends at byte 812";
            r.frame_count = 0;
        }
        if (r.status != MS_SCAN_ERROR) {
            r.decoded = true;
            r.width = 320, r.height = 256;
            r.prov.format = MS_FORMAT_PNG;
            ms_str_copy(r.prov.photometric, sizeof r.prov.photometric, "MONOCHROME2");
            ms_str_copy(r.prov.color_conversion, sizeof r.prov.color_conversion, "none");
            r.prov.bits_allocated = r.prov.bits_stored = 8;
        }
        if (r.status == MS_SCAN_OK) {
            if (scene(320, 256, in[i].nreg, (float)in[i].prob, &img, &prob, regions)) return 1;
            r.probability = in[i].prob;
            r.score_value = log(in[i].prob / (1 - in[i].prob));
            r.flagged = in[i].prob >= ctx.threshold;
            r.region_count = in[i].nreg;
            r.regions = regions;
            r.has_overlay = true;
            r.t_infer = 0.01;
            ms_buf png = {0}, jpg = {0};
            ms_err err;
            if (ms_report_overlay_png(img, prob, 0.3f, regions, in[i].nreg, 512, &png, &err) ||
                ms_report_thumbnail_jpeg(img, prob, 0.3f, regions, in[i].nreg, 160, &jpg, &err)) {
                fprintf(stderr, "gen_report: %s\n", err.msg);
                return 1;
            }
            if (write_file(dir, "overlays", r.stem, ".png", &png) ||
                write_file(dir, "thumbs", r.stem, ".jpg", &jpg))
                return 1;
            ms_buf_free(&png);
            ms_buf_free(&jpg);
        }
        ms_buf js = {0};
        if (!ms_report_scan_json(&ctx, &r, &js)) return 1;
        ms_buf_puts(&js, "\n");
        if (write_file(dir, "scans", r.stem, ".json", &js)) return 1;
        ms_buf_free(&js);

        ms_summary_row *row = &rows[i];
        row->path = (char *)in[i].path;
        row->stem = (char *)in[i].stem;
        row->status = r.status;
        row->reason_code = (char *)r.reason_code;
        row->reason = (char *)r.reason;
        row->probability = r.status == MS_SCAN_OK ? r.probability : NAN;
        row->flagged = r.flagged;
        row->has_overlay = r.has_overlay;
        row->region_count = r.region_count;
        row->kept_regions = r.region_count;
        for (uint32_t k = 0; k < r.region_count; k++) row->regions[k] = regions[k];
        tot.scans++;
        tot.ok += r.status == MS_SCAN_OK;
        tot.flagged += r.flagged;
        tot.skipped += r.status == MS_SCAN_SKIPPED;
        tot.errors += r.status == MS_SCAN_ERROR;
        ms_image_destroy(img);
        free(prob);
    }
    tot.wall_seconds = 1.5;

    ms_buf b = {0};
    if (!ms_report_summary_json(&ctx, rows, NSCANS, &tot, &b)) return 1;
    ms_buf_puts(&b, "\n");
    if (write_file(dir, NULL, "summary", ".json", &b)) return 1;
    ms_buf_free(&b);
    if (!ms_report_summary_csv(rows, NSCANS, &b)) return 1;
    if (write_file(dir, NULL, "summary", ".csv", &b)) return 1;
    ms_buf_free(&b);

    char path[4096];
    snprintf(path, sizeof path, "%s/report.html", dir);
    char thumbs[4096];
    snprintf(thumbs, sizeof thumbs, "%s/thumbs", dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "gen_report: %s: %s\n", path, strerror(errno));
        return 1;
    }
    ms_err err;
    ms_status st = ms_report_html_write(f, &ctx, rows, NSCANS, &tot, thumbs, &err);
    if (fclose(f) != 0 && st == MS_OK) st = MS_EIO;
    if (st != MS_OK) {
        fprintf(stderr, "gen_report: %s\n", err.msg);
        return 1;
    }
    return 0;
}
