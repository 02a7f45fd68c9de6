/* medscreen calibrate: re-fit a model's temperature and operating points to labelled scans. */
#ifndef MEDSCREEN_CLI_CALIBRATE_H
#define MEDSCREEN_CLI_CALIBRATE_H

#include <stdio.h>

/* argv[0] is "calibrate". Exit codes: 0 done; 2 bad command line; 3 the labels or the folder
 * cannot be used (malformed labels, a mismatch, one class, too few scans, a scan that fails);
 * 4 fatal (model unreadable or unusable, output not writable, out of memory). */
int cli_calibrate_main(int argc, char **argv, int verbosity);
void cli_calibrate_usage(FILE *f);

#endif
