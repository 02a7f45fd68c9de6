/* Helpers shared by the report layer's sources (not part of the public API). */
#ifndef MEDSCREEN_REPORT_INTERNAL_H
#define MEDSCREEN_REPORT_INTERNAL_H

#include "medscreen/report.h"

/* Adds "tool", "model", "operating_point" and "region_threshold" to a document, so the
 * per-scan JSON and summary.json describe the run the same way. (scan_json.c) */
/* min_area_px: the value to report (a scan's own, or the context's for a summary). */
void ms_report_add_context(ms_json *root, const ms_scan_context *ctx, uint64_t min_area_px);

/* Adds "reason": {"code", "message"} for skipped and error scans, null for ok. (scan_json.c) */
void ms_report_add_reason(ms_json *o, ms_scan_status status, const char *code, const char *message);

/* Appends {"x","y","w","h"} of a region's bounding box as a rendered object. (scan_json.c) */
void ms_report_bbox(ms_json *o, const char *key, const ms_region *r);


#define MS_REPORT_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD in UTF-8 */

#endif
