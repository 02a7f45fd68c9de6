/* report layer: what `medscreen scan` writes. Per scan a JSON report (schema
 * src/report/scan-report.schema.json, "medscreen.scan/1") and an overlay PNG; per batch
 * summary.json, summary.csv and report.html (a self-contained review page: inline CSS and
 * script, thumbnails inline as data: URIs, links to the overlays by relative path, so it works
 * offline from a file:// URL).
 *
 * The functions render into memory (ms_buf) or a caller's FILE; the CLI writes files
 * atomically. Output is deterministic: the same results give the same bytes (the only
 * run-dependent values are the per-scan "timings_ms" and summary.json's / report.html's
 * totals wall_seconds). Nothing identifying is copied from a file: no UIDs, names or dates.
 * Every string from an input (paths, reasons) is escaped for its output (JSON, CSV, HTML) and
 * invalid UTF-8 becomes U+FFFD, so each output is valid UTF-8.
 * Thread-safe: no globals. */
#ifndef MEDSCREEN_REPORT_H
#define MEDSCREEN_REPORT_H
#include <stdio.h>

#include "medscreen/json.h"
#include "medscreen/loader.h"
#include "medscreen/score.h"
#ifdef __cplusplus
extern "C" {
#endif

#define MS_REPORT_SCHEMA "medscreen.scan/1"
#define MS_SUMMARY_SCHEMA "medscreen.summary/1"

typedef enum ms_scan_status {
    MS_SCAN_OK = 0,  /* scored */
    MS_SCAN_SKIPPED, /* readable, but not what the model accepts (modality, body part, view) */
    MS_SCAN_ERROR    /* could not be read or decoded or scored */
} ms_scan_status;
const char *ms_scan_status_name(ms_scan_status s); /* "ok", "skipped", "error" */

/* What is the same for every scan of a batch. Strings are borrowed. */
typedef struct ms_scan_context {
    const char *tool_version;    /* MS_VERSION_STRING */
    const char *model_path;      /* as given */
    const char *model_name, *model_version; /* from the metadata; NULL: null */
    const char *model_sha256;    /* 64 hex */
    const char *operating_point; /* its name, or NULL with --threshold */
    double threshold;            /* on the score's probability */
    double region_threshold, region_low_threshold;
    uint64_t min_region_px;      /* 0: per scan, image pixels / 2000 + 1 */
} ms_scan_context;

/* One scan (one frame of one input). Strings and arrays are borrowed. */
typedef struct ms_scan_result {
    const char *path;          /* as given (stdin list or walk) */
    const char *stem;          /* output file stem: scans/<stem>.json, overlays/<stem>.png */
    char input_sha256[65];     /* "" when the file could not be read */
    uint64_t input_bytes;
    uint32_t frame, frame_count; /* frame_count 0 when not decoded */
    ms_scan_status status;
    const char *reason_code;   /* skipped / error: a stable word ("modality", "format", ...) */
    const char *reason;        /* skipped / error: the message, naming the file */
    bool decoded;              /* prov, width and height are set */
    ms_provenance prov;
    int32_t width, height;
    /* status ok only */
    double score_value;        /* the raw score output */
    double probability;        /* calibrated */
    bool flagged;              /* probability >= context threshold */
    uint32_t region_count;
    const ms_region *regions;  /* ranked */
    bool has_overlay;          /* overlays/<stem>.png and thumbs/<stem>.jpg were written */
    uint64_t min_region_px;    /* the minimum region area used for this scan (0: not scored) */
    /* seconds spent */
    double t_read, t_decode, t_preprocess, t_infer, t_regions, t_overlay;
} ms_scan_result;

/* Adds the decode's pixel pipeline to o: "modality_lut" {kind, slope, intercept}, "voi"
 * {kind, function, index, center, width}, "inversion", "pixel_spacing" {source, row_mm, col_mm;
 * null when unknown}. voi_nulls: center and width are null when no VOI was applied (the scan
 * reports); `info --json` keeps its numbers there. */
void ms_report_json_pixel_pipeline(ms_json *o, const ms_provenance *p, bool voi_nulls);

/* Appends the per-scan JSON document (one line, no trailing newline) to out. Schema:
 * src/report/scan-report.schema.json. "" strings (sha256, transfer syntax, modality, ...)
 * are written as null; "score" is null and "regions" empty unless status is ok; "decode" is
 * null unless r->decoded. Returns false on allocation failure (or a NULL argument). */
bool ms_report_scan_json(const ms_scan_context *ctx, const ms_scan_result *r, ms_buf *out);

/* Overlay: the decoded image (grey, as the loader windowed it; RGB images as they are),
 * scaled so the longer side is at most max_side (0: not scaled), the probability map as a
 * heat map (transparent below low_threshold, more opaque and hotter towards 1), each region's
 * outline with its rank and peak probability drawn in a built-in bitmap font. No text from the
 * file is ever drawn. prob is img->width x img->height (NULL: no heat map).
 * Scaling is a box filter over whole source pixels; the map keeps each box's maximum (a small
 * hot spot stays visible). Heat: yellow to red, opacity 0.25 at low_threshold (in [0, 1]) to
 * 0.6 at 1. Outlines: cyan, 2 px; labels "#rank 0.87" on black, inside the image.
 * On success png's previous contents are released and it holds exactly one complete 8-bit
 * RGB PNG (no time or text chunks); on failure it is untouched. Deterministic bytes.
 * Errors: MS_EINVAL, MS_EOVERFLOW, MS_ENOMEM, MS_EINTERNAL. */
ms_status ms_report_overlay_png(const ms_image *img, const float *prob, float low_threshold,
                                const ms_region *regions, uint32_t region_count,
                                int32_t max_side, ms_buf *png, ms_err *err);

/* The same overlay as a small JPEG thumbnail (longer side max_side, quality 85), with the
 * same buffer rules. Errors: as above, plus MS_ELIMIT (a side over 65500). */
ms_status ms_report_thumbnail_jpeg(const ms_image *img, const float *prob, float low_threshold,
                                   const ms_region *regions, uint32_t region_count,
                                   int32_t max_side, ms_buf *jpeg, ms_err *err);

/* A scan as the batch outputs need it, kept in memory for the whole batch (small). */
typedef struct ms_summary_row {
    char *path, *stem;         /* owned by the caller's table */
    ms_scan_status status;
    char *reason_code, *reason;
    uint32_t frame;
    double probability;        /* NaN unless ok */
    bool flagged;
    bool has_overlay;
    uint32_t region_count;     /* all regions found */
    uint32_t kept_regions;     /* regions[] entries (at most MS_SUMMARY_REGIONS) */
    ms_region regions[8];
} ms_summary_row;
#define MS_SUMMARY_REGIONS 8u

typedef struct ms_summary_totals {
    uint64_t scans, ok, flagged, skipped, errors;
    bool interrupted;          /* the batch was stopped (signal); rows are partial */
    double wall_seconds;
} ms_summary_totals;

/* Batch outputs. rows are in the order to print them (the CLI sorts by path, then frame).
 * summary.json: schema src/report/summary.schema.json. summary.csv: the header
 * path,frame,status,probability,flagged,regions,top_peak,top_x,top_y,top_w,top_h,reason
 * then one "\n"-terminated line per row; RFC 4180 quoting (fields with , " CR or LF are
 * quoted, inner quotes doubled); empty fields where the JSON has null; flagged is true/false;
 * reason is the message (the code is in summary.json). Formula guard: a path or reason that
 * starts with = + - @ TAB or CR gets a leading ' so spreadsheets show it as text.
 * The two return false on allocation failure or a NULL argument, and append to out.
 * report.html: scans sorted by probability, highest first, ties by path then frame, then
 * skipped, then errors (each by path); rows are <tr class="scan ..." id="scan-N"
 * data-rank="N" data-path data-status data-probability>. Thumbnails are read from
 * thumbs_dir/<stem>.jpg (only for rows with has_overlay; thumbs_dir may be NULL) one at a time
 * while writing; a missing one is drawn as a placeholder. Overlays are linked as
 * overlays/<stem>.png (stem percent-encoded) and open in a lightbox.
 * Errors: MS_EINVAL (NULL argument), MS_EIO (write failed), MS_EOVERFLOW, MS_ENOMEM. */
bool ms_report_summary_json(const ms_scan_context *ctx, const ms_summary_row *rows, size_t n,
                            const ms_summary_totals *tot, ms_buf *out);
bool ms_report_summary_csv(const ms_summary_row *rows, size_t n, ms_buf *out);
ms_status ms_report_html_write(FILE *f, const ms_scan_context *ctx, const ms_summary_row *rows,
                               size_t n, const ms_summary_totals *tot, const char *thumbs_dir,
                               ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
