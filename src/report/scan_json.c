/* The per-scan JSON report, schema "medscreen.scan/1" (src/report/scan-report.schema.json).
 *
 * One line, keys sorted by the JSON writer, floats "%.6g". Nothing that identifies a patient
 * or a study is copied from the file: no UIDs, names, dates or free text, only the decode
 * parameters a reviewer needs to judge the pixels (modality, body part, view, VOI, ...). */
#include <math.h>
#include <string.h>

#include "report_internal.h"

const char *ms_scan_status_name(ms_scan_status s) {
    switch (s) {
    case MS_SCAN_OK: return "ok";
    case MS_SCAN_SKIPPED: return "skipped";
    case MS_SCAN_ERROR: return "error";
    }
    return "error";
}

/* "" and NULL both mean "not known": the schema's null. */
static void str_or_null(ms_json *o, const char *key, const char *s) {
    if (s == NULL || s[0] == '\0')
        ms_json_null(o, key);
    else
        ms_json_str(o, key, s);
}

void ms_report_add_context(ms_json *root, const ms_scan_context *ctx, uint64_t min_area_px) {
    ms_json sub;
    ms_json_init(&sub);
    ms_json_str(&sub, "name", "medscreen");
    ms_json_str(&sub, "version", ctx->tool_version != NULL ? ctx->tool_version : MS_VERSION_STRING);
    ms_json_obj(root, "tool", &sub);

    ms_json_init(&sub);
    ms_json_str(&sub, "path", ctx->model_path != NULL ? ctx->model_path : "");
    ms_json_str(&sub, "name", ctx->model_name);
    ms_json_str(&sub, "version", ctx->model_version);
    str_or_null(&sub, "sha256", ctx->model_sha256);
    ms_json_obj(root, "model", &sub);

    ms_json_init(&sub);
    ms_json_str(&sub, "name", ctx->operating_point);
    ms_json_num(&sub, "threshold", ctx->threshold);
    ms_json_obj(root, "operating_point", &sub);

    ms_json_init(&sub);
    ms_json_num(&sub, "high", ctx->region_threshold);
    ms_json_num(&sub, "low", ctx->region_low_threshold);
    ms_json_uint(&sub, "min_area_px", min_area_px);
    ms_json_obj(root, "region_threshold", &sub);
}

void ms_report_add_reason(ms_json *o, ms_scan_status status, const char *code,
                          const char *message) {
    if (status == MS_SCAN_OK) {
        ms_json_null(o, "reason");
        return;
    }
    ms_json sub;
    ms_json_init(&sub);
    /* A skipped or failed scan always says why, even if the caller forgot a word. */
    ms_json_str(&sub, "code", code != NULL && code[0] != '\0' ? code : "unknown");
    ms_json_str(&sub, "message", message != NULL ? message : "");
    ms_json_obj(o, "reason", &sub);
}

void ms_report_bbox(ms_json *o, const char *key, const ms_region *r) {
    ms_json sub;
    ms_json_init(&sub);
    ms_json_int(&sub, "x", r->x);
    ms_json_int(&sub, "y", r->y);
    ms_json_int(&sub, "w", r->w);
    ms_json_int(&sub, "h", r->h);
    ms_json_obj(o, key, &sub);
}

static void add_input(ms_json *root, const ms_scan_result *r) {
    ms_json sub;
    ms_json_init(&sub);
    ms_json_str(&sub, "path", r->path != NULL ? r->path : "");
    str_or_null(&sub, "sha256", r->input_sha256);
    if (r->input_sha256[0] != '\0')
        ms_json_uint(&sub, "bytes", r->input_bytes);
    else
        ms_json_null(&sub, "bytes"); /* the file could not be read */
    ms_json_uint(&sub, "frame", r->frame);
    ms_json_uint(&sub, "frame_count", r->frame_count);
    ms_json_obj(root, "input", &sub);
}

/* The decode provenance, laid out as `medscreen info --json` does, minus the UIDs. */
void ms_report_json_pixel_pipeline(ms_json *o, const ms_provenance *p, bool voi_nulls) {
    ms_json sub;
    ms_json_init(&sub);
    ms_json_str(&sub, "kind", ms_modality_lut_name(p->modality_lut));
    ms_json_num(&sub, "slope", p->rescale_slope);
    ms_json_num(&sub, "intercept", p->rescale_intercept);
    ms_json_obj(o, "modality_lut", &sub);

    ms_json_init(&sub);
    ms_json_str(&sub, "kind", ms_voi_kind_name(p->voi));
    ms_json_str(&sub, "function", ms_voi_function_name(p->voi_function));
    ms_json_uint(&sub, "index", p->voi_index);
    if (voi_nulls && p->voi == MS_VOI_NONE) { /* the full code range: no window to report */
        ms_json_null(&sub, "center");
        ms_json_null(&sub, "width");
    } else {
        ms_json_num(&sub, "center", p->window_center);
        ms_json_num(&sub, "width", p->window_width);
    }
    ms_json_obj(o, "voi", &sub);

    ms_json_str(o, "inversion", ms_inversion_name(p->inversion));

    ms_json_init(&sub);
    ms_json_str(&sub, "source", ms_spacing_source_name(p->spacing_source));
    if (p->spacing_source == MS_SPACING_NONE) {
        ms_json_null(&sub, "row_mm");
        ms_json_null(&sub, "col_mm");
    } else {
        ms_json_num(&sub, "row_mm", p->spacing_row_mm);
        ms_json_num(&sub, "col_mm", p->spacing_col_mm);
    }
    ms_json_obj(o, "pixel_spacing", &sub);
}

static void add_decode(ms_json *root, const ms_scan_result *r) {
    if (!r->decoded) {
        ms_json_null(root, "decode");
        return;
    }
    const ms_provenance *p = &r->prov;
    ms_json o;
    ms_json_init(&o);
    ms_json_str(&o, "format", ms_format_name(p->format));
    ms_json_int(&o, "width", r->width);
    ms_json_int(&o, "height", r->height);
    ms_json_uint(&o, "frame", p->frame_index);
    str_or_null(&o, "transfer_syntax", p->transfer_syntax);
    str_or_null(&o, "photometric", p->photometric);
    str_or_null(&o, "color_conversion", p->color_conversion);
    ms_json_uint(&o, "bits_allocated", p->bits_allocated);
    ms_json_uint(&o, "bits_stored", p->bits_stored);
    ms_json_bool(&o, "signed", p->is_signed);

    ms_report_json_pixel_pipeline(&o, p, true);

    str_or_null(&o, "modality", p->modality);
    str_or_null(&o, "body_part", p->body_part);
    str_or_null(&o, "view_position", p->view_position);
    ms_json_obj(root, "decode", &o);
}

static void render_region(ms_buf *b, const ms_region *g) {
    ms_json o, sub;
    ms_json_init(&o);
    ms_json_uint(&o, "rank", g->rank);
    ms_report_bbox(&o, "bbox", g);
    ms_json_init(&sub);
    ms_json_num(&sub, "x", g->centroid_x);
    ms_json_num(&sub, "y", g->centroid_y);
    ms_json_obj(&o, "centroid", &sub);
    ms_json_uint(&o, "area_px", g->area_px);
    if (g->area_mm2 < 0)
        ms_json_null(&o, "area_mm2");
    else
        ms_json_num(&o, "area_mm2", g->area_mm2);
    ms_json_num(&o, "peak", g->peak);
    ms_json_num(&o, "mean", g->mean);
    ms_buf xy = {0};
    ms_buf_printf(&xy, "[%ld,%ld]", (long)g->peak_x, (long)g->peak_y);
    ms_json_raw(&o, "peak_xy", &xy);
    if (!ms_json_render(&o, b)) b->oom = true;
    ms_json_free(&o);
}

static void add_regions(ms_json *root, const ms_scan_result *r) {
    ms_buf arr = {0};
    ms_buf_puts(&arr, "[");
    if (r->status == MS_SCAN_OK && r->regions != NULL) {
        for (uint32_t i = 0; i < r->region_count; i++) {
            if (i) ms_buf_puts(&arr, ",");
            render_region(&arr, &r->regions[i]);
        }
    }
    ms_buf_puts(&arr, "]");
    ms_json_raw(root, "regions", &arr);
}

bool ms_report_scan_json(const ms_scan_context *ctx, const ms_scan_result *r, ms_buf *out) {
    if (ctx == NULL || r == NULL || out == NULL) return false;
    ms_json root, sub;
    ms_json_init(&root);
    ms_json_str(&root, "schema", MS_REPORT_SCHEMA);
    ms_report_add_context(&root, ctx, r->min_region_px ? r->min_region_px : ctx->min_region_px);
    add_input(&root, r);
    ms_json_str(&root, "status", ms_scan_status_name(r->status));
    ms_report_add_reason(&root, r->status, r->reason_code, r->reason);
    add_decode(&root, r);

    if (r->status == MS_SCAN_OK) {
        ms_json_init(&sub);
        ms_json_num(&sub, "value", r->score_value);
        ms_json_num(&sub, "probability", r->probability);
        ms_json_bool(&sub, "flagged", r->flagged);
        ms_json_uint(&sub, "region_count", r->regions != NULL ? r->region_count : 0);
        ms_json_obj(&root, "score", &sub);
    } else {
        ms_json_null(&root, "score");
    }
    add_regions(&root, r);

    /* Seconds in, milliseconds out: easier to read, and %.6g keeps microseconds. */
    ms_json_init(&sub);
    ms_json_num(&sub, "read", r->t_read * 1e3);
    ms_json_num(&sub, "decode", r->t_decode * 1e3);
    ms_json_num(&sub, "preprocess", r->t_preprocess * 1e3);
    ms_json_num(&sub, "infer", r->t_infer * 1e3);
    ms_json_num(&sub, "regions", r->t_regions * 1e3);
    ms_json_num(&sub, "overlay", r->t_overlay * 1e3);
    ms_json_obj(&root, "timings_ms", &sub);

    bool ok = ms_json_render(&root, out);
    ms_json_free(&root);
    return ok;
}
