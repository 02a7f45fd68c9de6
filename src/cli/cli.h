/* Shared by the CLI's translation units: exit codes, diagnostics and commands. */
#ifndef MEDSCREEN_CLI_H
#define MEDSCREEN_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "medscreen/medscreen.h"

/* Documented in --help and README.md; scripts depend on them. Errors outrank findings. */
enum {
    CLI_EXIT_OK = 0,      /* every input processed */
    CLI_EXIT_FINDING = 1, /* a finding was flagged under --fail-on-finding (scan) */
    CLI_EXIT_USAGE = 2,   /* bad command line */
    CLI_EXIT_INPUT = 3,   /* at least one input failed */
    CLI_EXIT_FATAL = 4    /* output could not be written, out of memory, ... */
};

/* "medscreen: <message>" on stderr, with control characters escaped. */
void cli_diag(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Reports a usage error on stderr and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* "medscreen: PATH: reason" on stderr; the path is added only if err->msg lacks it. */
void cli_report_input_error(const char *path, const ms_err *err);

/* -v / --verbose (one more) and -vv (two more), accepted by every command: true when arg was
 * one of them and *verbosity was raised. */
bool cli_verbosity_flag(const char *arg, int *verbosity);

/* Installs the stderr log callback: 0 silent, 1 warnings, 2 and more debug. */
void cli_set_verbosity(int verbosity);

/* Matches argv[*i] against an option taking a value ("--name V" or "--name=V"). Returns 1 and
 * sets *val (advancing *i past a separate value), 0 if argv[*i] is another option, or -1
 * after reporting a missing value. */
int cli_opt_value(const char *name, int argc, char **argv, int *i, const char **val);

/* Commands. argv[0] is the command name. */
int cli_info_main(int argc, char **argv, int verbosity);
void cli_info_usage(FILE *f);
int cli_model_main(int argc, char **argv, int verbosity);
void cli_model_usage(FILE *f);
/* 'model run' (run_cmd.c); argv[0] is "run". */
int cli_model_run_main(int argc, char **argv);
void cli_model_run_usage(FILE *f);
int cli_convert_main(int argc, char **argv, int verbosity);
void cli_convert_usage(FILE *f);

#endif
