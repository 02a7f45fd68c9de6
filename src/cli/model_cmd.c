/* medscreen model info FILE: what a .msm model holds, its metadata and its sha256. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "medscreen/core.h"
#include "medscreen/model.h"

void cli_model_usage(FILE *f) {
    fputs("Usage: medscreen model info [--json] [--] FILE\n"
          "\n"
          "Validates a medscreen model (.msm, see models/FORMAT.md) and prints its sha256,\n"
          "format version, tensors (name, dtype, shape), parameter count, and the metadata\n"
          "lines of its 'meta' tensor.\n"
          "\n"
          "Options:\n"
          "  --json    one JSON object (sorted keys, \"schema_version\": 1)\n"
          "\n"
          "Exit status: 0 the model is valid, 2 usage error, 4 the model cannot be read or\n"
          "is invalid (the reason is printed).\n"
          "\n",
          f);
    cli_model_run_usage(f);
}

static const char *dtype_name(ms_dtype t) { return t == MS_DTYPE_F32 ? "float32" : "uint8"; }

/* The meta tensor's text as (key, value) lines; keys are what precedes the first '='. */
static void meta_lines(const ms_msm_tensor *meta, bool json, cli_buf *out) {
    const char *p = meta->data, *end = p + meta->count;
    bool first = true;
    if (json) cli_buf_puts(out, "[");
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = malloc(len + 1);
        if (line == NULL) {
            out->oom = true;
            return;
        }
        memcpy(line, p, len);
        line[len] = '\0';
        if (len > 0) {
            char *eq = strchr(line, '=');
            if (json) {
                if (!first) cli_buf_puts(out, ",");
                cli_buf_puts(out, "[");
                if (eq) *eq = '\0';
                cli_json_escape(out, line);
                cli_buf_puts(out, ",");
                cli_json_escape(out, eq ? eq + 1 : "");
                cli_buf_puts(out, "]");
            } else {
                cli_buf_puts(out, "  meta               ");
                cli_text_escape(out, line);
                cli_buf_puts(out, "\n");
            }
            first = false;
        }
        free(line);
        p += len + (nl ? 1u : 0u);
    }
    if (json) cli_buf_puts(out, "]");
}

static int model_info(const char *path, bool json) {
    ms_limits lim = ms_limits_default();
    ms_err err = {0};
    uint8_t *bytes = NULL;
    size_t size = 0;
    ms_msm *m = NULL;
    ms_status st = ms_file_read_all(path, lim.max_model_bytes, &bytes, &size, &err);
    if (st == MS_OK) st = ms_msm_decode(bytes, size, path, &lim, &m, &err);
    if (st != MS_OK) {
        cli_report_input_error(path, &err);
        ms_free(bytes);
        return CLI_EXIT_FATAL;
    }
    char sha[65];
    ms_sha256_hex(bytes, size, sha);
    ms_free(bytes);

    uint64_t params = 0;
    uint32_t n = ms_msm_tensor_count(m);
    for (uint32_t i = 0; i < n; i++) {
        const ms_msm_tensor *t = ms_msm_tensor_at(m, i);
        if (t->dtype == MS_DTYPE_F32) params += t->count;
    }
    const ms_msm_tensor *meta = ms_msm_find(m, "meta");
    cli_buf out = {0};
    if (json) {
        cli_json o;
        cli_json_init(&o);
        cli_json_int(&o, "schema_version", 1);
        cli_json_str(&o, "path", path);
        cli_json_str(&o, "status", "ok");
        cli_json_str(&o, "sha256", sha);
        cli_json_uint(&o, "bytes", size);
        cli_json_uint(&o, "format_version", MS_MSM_VERSION);
        cli_json_uint(&o, "parameters", params);
        cli_buf arr = {0};
        cli_buf_puts(&arr, "[");
        for (uint32_t i = 0; i < n; i++) {
            const ms_msm_tensor *t = ms_msm_tensor_at(m, i);
            if (i) cli_buf_puts(&arr, ",");
            cli_buf_puts(&arr, "{\"dtype\":");
            cli_json_escape(&arr, dtype_name(t->dtype));
            cli_buf_puts(&arr, ",\"name\":");
            cli_json_escape(&arr, t->name);
            cli_buf_puts(&arr, ",\"shape\":[");
            for (uint32_t d = 0; d < t->ndim; d++)
                cli_buf_printf(&arr, "%s%u", d ? "," : "", t->dims[d]);
            cli_buf_puts(&arr, "]}");
        }
        cli_buf_puts(&arr, "]");
        cli_json_raw(&o, "tensors", &arr);
        cli_buf mb = {0};
        if (meta && meta->dtype == MS_DTYPE_U8)
            meta_lines(meta, true, &mb);
        else
            cli_buf_puts(&mb, "[]");
        cli_json_raw(&o, "meta", &mb);
        if (!cli_json_render(&o, &out)) out.oom = true;
        cli_json_free(&o);
        cli_buf_puts(&out, "\n");
    } else {
        cli_text_escape(&out, path);
        cli_buf_printf(&out, "\n  format             medscreen model v%u\n", MS_MSM_VERSION);
        cli_buf_printf(&out, "  sha256             %s\n  bytes              %zu\n", sha, size);
        cli_buf_printf(&out, "  tensors            %u (%llu float32 parameters)\n", n,
                       (unsigned long long)params);
        if (meta && meta->dtype == MS_DTYPE_U8) meta_lines(meta, false, &out);
        for (uint32_t i = 0; i < n; i++) {
            const ms_msm_tensor *t = ms_msm_tensor_at(m, i);
            cli_buf_puts(&out, "  tensor             ");
            cli_text_escape(&out, t->name);
            cli_buf_printf(&out, "  %s  [", dtype_name(t->dtype));
            for (uint32_t d = 0; d < t->ndim; d++)
                cli_buf_printf(&out, "%s%u", d ? "x" : "", t->dims[d]);
            cli_buf_puts(&out, "]\n");
        }
    }
    ms_msm_destroy(m);
    if (out.oom) {
        cli_buf_free(&out);
        cli_diag("out of memory");
        return CLI_EXIT_FATAL;
    }
    fputs(out.p ? out.p : "", stdout);
    cli_buf_free(&out);
    return CLI_EXIT_OK;
}

int cli_model_main(int argc, char **argv, int verbosity) {
    cli_set_verbosity(verbosity);
    if (argc < 2)
        return cli_usage_error("model: missing subcommand (try 'medscreen model info FILE')");
    if (strcmp(argv[1], "run") == 0) return cli_model_run_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") != 0)
        return cli_usage_error("model: unknown subcommand '%s'", argv[1]);
    bool json = false, end_opts = false;
    const char *file = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!end_opts && strcmp(a, "--") == 0) {
            end_opts = true;
        } else if (!end_opts && strcmp(a, "--json") == 0) {
            json = true;
        } else if (!end_opts && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            cli_model_usage(stdout);
            return CLI_EXIT_OK;
        } else if (!end_opts && a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("model info: unknown option '%s'", a);
        } else if (file == NULL) {
            file = a;
        } else {
            return cli_usage_error("model info: one FILE only");
        }
    }
    if (file == NULL) return cli_usage_error("model info: no FILE given");
    return model_info(file, json);
}
