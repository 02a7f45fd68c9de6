/* medscreen command line: global options, command dispatch, diagnostics and exit codes.
 * Only the CLI prints, exits or reads the environment. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calibrate.h"
#include "cli.h"
#include "medscreen/json.h"
#include "medscreen/loader.h"
#include "medscreen/nn.h"
#include "scan.h"

static void vdiag(const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    ms_buf b = {0};
    ms_buf_puts(&b, "medscreen: ");
    ms_text_escape(&b, msg);
    ms_buf_puts(&b, "\n");
    if (!b.oom) {
        fputs(b.p, stderr);
    } else {
        fputs("medscreen: out of memory while reporting an error\n", stderr);
    }
    ms_buf_free(&b);
}

void cli_diag(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdiag(fmt, ap);
    va_end(ap);
}

bool cli_verbosity_flag(const char *arg, int *verbosity) {
    if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
        (*verbosity)++;
    } else if (strcmp(arg, "-vv") == 0) {
        *verbosity += 2;
    } else {
        return false;
    }
    return true;
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdiag(fmt, ap);
    va_end(ap);
    fputs("Try 'medscreen --help' for more information.\n", stderr);
    return CLI_EXIT_USAGE;
}

void cli_report_input_error(const char *path, const ms_err *err) {
    const char *msg = err->msg[0] ? err->msg : ms_status_name(err->status);
    size_t plen = strlen(path), mlen = strlen(msg);
    /* Library messages start with "PATH: "; a long path may be cut where msg was truncated. */
    bool named = (mlen > plen && strncmp(msg, path, plen) == 0 && msg[plen] == ':') ||
                 (mlen + 1 >= sizeof err->msg && strncmp(msg, path, mlen) == 0);
    if (named)
        cli_diag("%s", msg);
    else
        cli_diag("%s: %s", path, msg);
}

static void log_to_stderr(ms_log_level level, const char *msg, void *user) {
    (void)user;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    const char *name = (unsigned)level < 4 ? names[level] : "log";
    cli_diag("%s: %s", name, msg);
}

void cli_set_verbosity(int verbosity) {
    if (verbosity <= 0)
        ms_log_set_callback(NULL, NULL, MS_LOG_ERROR);
    else
        ms_log_set_callback(log_to_stderr, NULL, verbosity == 1 ? MS_LOG_WARN : MS_LOG_DEBUG);
}

int cli_opt_value(const char *name, int argc, char **argv, int *i, const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        cli_usage_error("option '%s' needs a value", name);
        return -1;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

static void usage(FILE *f) {
    fputs("Usage: medscreen [-v] COMMAND [OPTIONS] [--] FILE...\n"
          "       medscreen --help | --version\n"
          "\n"
          "medscreen screens medical images (DICOM, PNG, JPEG) for anomalies with a CNN\n"
          "model, and writes scores, regions, overlays, JSON and a review page.\n"
          "\n"
          "Commands:\n"
          "  scan     screen files, folders or a list on stdin: 'scan INPUT... -o DIR'\n"
          "  calibrate re-fit temperature and operating points to labelled scans:\n"
          "           'calibrate --labels LABELS.csv DIR -o NEW.msm'\n"
          "  info     decode images and print what was decoded and how\n"
          "  model    'model info FILE': validate a .msm model, print its tensors, metadata\n"
          "           and sha256; 'model run FILE --input X.npy --output Y.npy': run it\n"
          "  convert  'convert MODEL.onnx -o MODEL.msm': import a PyTorch ONNX export\n"
          "  help     show this help; 'medscreen help scan' shows the scan command's\n"
          "\n"
          "Options:\n"
          "  -h, --help       show this help and exit\n"
          "  --version        print the version and exit\n"
          "  -v, --verbose    print library warnings on stderr (twice: debug messages)\n"
          "\n"
          "Exit status:\n"
          "  0  every input was processed\n"
          "  1  a finding was flagged under --fail-on-finding ('scan')\n"
          "  2  usage error: unknown command or option, bad value\n"
          "  3  some inputs failed (the others were still processed)\n"
          "  4  fatal: model unreadable, output could not be written, out of memory\n"
          "  5  'scan --expect': results drifted from the reference reports\n"
          "  130, 143  'scan' stopped by SIGINT, SIGTERM (a partial summary is written)\n"
          "Errors outrank findings: if an input failed, the status is 3 even when a finding\n"
          "was flagged.\n"
          "\n"
          "Standard output carries only the results; diagnostics go to standard error,\n"
          "prefixed 'medscreen:'.\n",
          f);
}

static int finish(int code) {
    /* A result that could not be written is a fatal error, never a silent success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_diag("cannot write to standard output");
        return CLI_EXIT_FATAL;
    }
    return code;
}

/* For commands that run networks: when OpenBLAS chose kernels older than this CPU supports
 * (see src/nn/blas.c), set OPENBLAS_CORETYPE and start again, once: the variable being set
 * (by us or by the user, whose choice stands) ends the loop. If exec fails we go on, slower. */
static void blas_kernels_fixup(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") != NULL || getenv("MEDSCREEN_NO_REEXEC") != NULL) return;
    const char *core = ms_blas_better_coretype();
    if (core == NULL || setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
    fflush(NULL);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
}

int main(int argc, char **argv) {
    int verbosity = 0;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return finish(CLI_EXIT_OK);
        } else if (strcmp(a, "--version") == 0) {
            fputs("medscreen " MS_VERSION_STRING "\n", stdout);
            return finish(CLI_EXIT_OK);
        } else if (cli_verbosity_flag(a, &verbosity)) {
        } else if (a[0] == '-') {
            return cli_usage_error("unknown option '%s'", a);
        } else {
            break;
        }
    }
    if (i >= argc) return cli_usage_error("no command given (try 'medscreen info FILE...')");
    const char *cmd = argv[i];
    if (strcmp(cmd, "help") == 0) {
        if (i + 1 < argc && strcmp(argv[i + 1], "info") == 0)
            cli_info_usage(stdout);
        else if (i + 1 < argc && strcmp(argv[i + 1], "model") == 0)
            cli_model_usage(stdout);
        else if (i + 1 < argc && strcmp(argv[i + 1], "convert") == 0)
            cli_convert_usage(stdout);
        else if (i + 1 < argc && strcmp(argv[i + 1], "scan") == 0)
            cli_scan_usage(stdout);
        else if (i + 1 < argc && strcmp(argv[i + 1], "calibrate") == 0)
            cli_calibrate_usage(stdout);
        else if (i + 1 < argc)
            return cli_usage_error("no help for unknown command '%s'", argv[i + 1]);
        else
            usage(stdout);
        return finish(CLI_EXIT_OK);
    }
    if (strcmp(cmd, "info") == 0) return finish(cli_info_main(argc - i, argv + i, verbosity));
    if (strcmp(cmd, "model") == 0 || strcmp(cmd, "scan") == 0 || strcmp(cmd, "calibrate") == 0)
        blas_kernels_fixup(argv);
    if (strcmp(cmd, "model") == 0) return finish(cli_model_main(argc - i, argv + i, verbosity));
    if (strcmp(cmd, "convert") == 0)
        return finish(cli_convert_main(argc - i, argv + i, verbosity));
    if (strcmp(cmd, "scan") == 0) return finish(cli_scan_main(argc - i, argv + i, verbosity));
    if (strcmp(cmd, "calibrate") == 0)
        return finish(cli_calibrate_main(argc - i, argv + i, verbosity));
    return cli_usage_error("unknown command '%s'", cmd);
}
