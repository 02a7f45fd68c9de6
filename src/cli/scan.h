/* Internals of `medscreen scan` shared by scan_cmd.c, scan_rows.c and scan_expect.c. */
#ifndef MEDSCREEN_CLI_SCAN_H
#define MEDSCREEN_CLI_SCAN_H

#include <pthread.h>

#include "inputs.h"
#include "medscreen/report.h"

enum { CLI_EXIT_DRIFT = 5 }; /* scan --expect: results differ from the references */

int cli_scan_main(int argc, char **argv, int verbosity);
void cli_scan_usage(FILE *f);

/* The batch's summary rows (owned strings). */
typedef struct cli_scan_rows {
    ms_summary_row *rows;
    size_t n, cap;
} cli_scan_rows;
bool cli_scan_rows_add(cli_scan_rows *t, const ms_scan_result *r); /* false: out of memory */
void cli_scan_rows_free(cli_scan_rows *t);

/* Gives every input a distinct stem: where a stem occurs more than once (the same file given
 * twice, or two folders with one name), the first in input order keeps it and the others get
 * "-2", "-3", ... Returns 0, or -1 when out of memory. */
int cli_scan_dedupe_stems(const cli_inputs *in, char **stems);

/* --resume: true when DIR/scans holds reports for every frame of this input (stem, or
 * stem-f0000 ... for multi-frame files) made from the same input bytes (sha256) by the same
 * model (sha256) and not ending in an error; their rows are then added to t under lock. */
bool cli_scan_resume(const char *dir, const char *stem, const char *input_sha,
                     const char *model_sha, cli_scan_rows *t, pthread_mutex_t *lock);

/* --expect: compares rows with DIR/scans/<stem>.json (or DIR/<stem>.json) and prints every
 * difference on stderr. Returns the number of differences, or -1 when DIR is unreadable. */
int cli_scan_expect(const char *dir, const ms_summary_row *rows, size_t n, double tolerance);

/* Reads DIR/scans/<stem>.json or DIR/<stem>.json into a row (owned strings). false when absent
 * or unreadable (*why says which). */
bool cli_scan_read_report(const char *dir, const char *stem, ms_summary_row *row,
                          char *sha_out, char *model_sha_out, uint32_t *frame_count,
                          const char **why);

#endif
