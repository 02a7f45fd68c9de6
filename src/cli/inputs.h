/* Input lists for the batch commands: files, folders (walked recursively, entries sorted
 * bytewise, hidden entries skipped, links to folders not followed) and path lists read from
 * stdin. Each input keeps the path to open and a stable name for its outputs: the path as
 * given for files (a leading "./" dropped), or FOLDER/relative/path for files found in a
 * folder, FOLDER being the folder's own name, so the same tree gives the same names wherever
 * it is mounted. */
#ifndef MEDSCREEN_CLI_INPUTS_H
#define MEDSCREEN_CLI_INPUTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct cli_input {
    char *path; /* to open */
    char *rel;  /* stable name for outputs and matching */
} cli_input;

typedef struct cli_inputs {
    cli_input *items;
    size_t n, cap;
    size_t walk_errors; /* folders or list entries that could not be read (already reported) */
} cli_inputs;

void cli_inputs_free(cli_inputs *in);
/* Adds a file, or every file under a folder. Returns 0, or -1 when out of memory. Problems
 * with single entries are reported on stderr and counted in walk_errors. */
int cli_inputs_add(cli_inputs *in, const char *arg);
/* Adds every path listed in f (one per line, or NUL-separated); folders are walked. */
int cli_inputs_read_list(cli_inputs *in, FILE *f, bool nul_separated);

#endif
