/* medscreen convert MODEL.onnx -o MODEL.msm: imports a PyTorch ONNX export (onnx.h) and writes
 * a .msm with the graph, the weights and key=value metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medscreen/core.h"
#include "medscreen/meta.h"
#include "medscreen/model.h"
#include "medscreen/onnx.h"

void cli_convert_usage(FILE *f) {
    fputs(
        "Usage: medscreen convert MODEL.onnx -o MODEL.msm [--meta KEY=VALUE]...\n"
        "                         [--meta-file FILE]\n"
        "\n"
        "Imports an ONNX model (the CNN subset PyTorch exports at opsets 9-17: Conv,\n"
        "BatchNormalization, activations, pooling, Resize, Concat, Add, Mul, Gemm, ...)\n"
        "and writes a medscreen model (models/FORMAT.md). Batch norms after convolutions\n"
        "are folded and activations fused. Any operator, attribute or dynamic shape outside\n"
        "the subset is an error naming the node.\n"
        "\n"
        "Options:\n"
        "  -o, --output FILE   the .msm to write (atomically)\n"
        "  --meta KEY=VALUE    a metadata line (repeatable); replaces a --meta-file line\n"
        "                      with the same key\n"
        "  --meta-file FILE    KEY=VALUE lines from FILE ('#' comments and empty lines\n"
        "                      skipped)\n"
        "\n"
        "Metadata follows meta format 1 (models/FORMAT.md, \"Metadata keys\"): meta_format=1,\n"
        "source=onnx, onnx_opset and producer are written by convert, and every key and value\n"
        "is checked against the imported graph before anything is written, e.g.\n"
        "  --meta name=chest-screen --meta version=1.0.0 --meta task=screen\n"
        "  --meta input_size=512x512 --meta input_channels=1 --meta resize=letterbox\n"
        "  --meta norm_mean=0.5 --meta norm_std=0.25 --meta window=file\n"
        "  --meta output_score=score --meta score_kind=logit\n"
        "  --meta operating_points=sens90:0.31,spec90:0.62 --meta default_operating_point=sens90\n"
        "  --meta modalities=CR,DX --meta body_parts=CHEST\n"
        "With -v, convert says which keys 'scan' would still need.\n"
        "\n"
        "Exit status: 0 written, 2 usage error, 4 the model cannot be read, converted or\n"
        "written, or its metadata is invalid (the reason, naming the key, is printed; no\n"
        "file is written).\n",
        f);
}

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static bool text_add(text *t, const char *s, size_t n) {
    if (t->len + n + 2 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 2) cap *= 2;
        char *p = realloc(t->p, cap);
        if (p == NULL) return false;
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len++] = '\n';
    t->p[t->len] = '\0';
    return true;
}

/* Whether the KEY=VALUE lines of t have a line with key [k, k + kl). */
static bool text_has_key(const text *t, const char *k, size_t kl) {
    const char *p = t->p, *end = t->p ? t->p + t->len : NULL;
    while (p != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (len > kl && p[kl] == '=' && memcmp(p, k, kl) == 0) return true;
        p += len + 1;
    }
    return false;
}

static int meta_file(const char *path, const text *override, text *meta) {
    ms_err err = {0};
    uint8_t *data = NULL;
    size_t size = 0;
    if (ms_file_read_all(path, 1u << 20, &data, &size, &err) != MS_OK) {
        cli_report_input_error(path, &err);
        return CLI_EXIT_USAGE;
    }
    const char *p = (const char *)data, *end = p + size;
    int rc = CLI_EXIT_OK;
    while (p < end && rc == CLI_EXIT_OK) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t l = len;
        if (l > 0 && p[l - 1] == '\r') l--;
        if (l > 0 && p[0] != '#') {
            if (memchr(p, '=', l) == NULL || p[0] == '=') {
                cli_usage_error("%s: line '%.*s' is not KEY=VALUE", path, (int)(l > 80 ? 80 : l),
                                p);
                rc = CLI_EXIT_USAGE;
            } else if (text_has_key(override, p, (size_t)((const char *)memchr(p, '=', l) - p))) {
                /* a --meta line with the same key replaces this one */
            } else if (!text_add(meta, p, l)) {
                cli_diag("out of memory");
                rc = CLI_EXIT_FATAL;
            }
        }
        p += len + (nl ? 1u : 0u);
    }
    ms_free(data);
    return rc;
}

int cli_convert_main(int argc, char **argv, int verbosity) {
    cli_set_verbosity(verbosity);
    const char *in = NULL, *out = NULL, *mfile = NULL;
    bool end_opts = false;
    text meta = {0}, cli_meta = {0};
    int rc = CLI_EXIT_OK;
    for (int i = 1; i < argc && rc == CLI_EXIT_OK; i++) {
        const char *a = argv[i], *v = NULL;
        int r;
        if (!end_opts && strcmp(a, "--") == 0) {
            end_opts = true;
        } else if (!end_opts && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            cli_convert_usage(stdout);
            free(cli_meta.p);
            return CLI_EXIT_OK;
        } else if (!end_opts && strcmp(a, "-o") == 0) {
            if (i + 1 >= argc) {
                rc = cli_usage_error("option '-o' needs a value");
            } else {
                out = argv[++i];
            }
        } else if (!end_opts && (r = cli_opt_value("--output", argc, argv, &i, &v)) != 0) {
            if (r < 0) rc = CLI_EXIT_USAGE;
            out = v;
        } else if (!end_opts && (r = cli_opt_value("--meta-file", argc, argv, &i, &v)) != 0) {
            if (r < 0) rc = CLI_EXIT_USAGE;
            if (mfile != NULL) rc = cli_usage_error("convert: one --meta-file only");
            mfile = v;
        } else if (!end_opts && (r = cli_opt_value("--meta", argc, argv, &i, &v)) != 0) {
            if (r < 0) {
                rc = CLI_EXIT_USAGE;
            } else if (strchr(v, '=') == NULL || v[0] == '=' || strchr(v, '\n') != NULL) {
                rc = cli_usage_error("convert: --meta '%s' is not KEY=VALUE", v);
            } else if (!text_add(&cli_meta, v, strlen(v))) {
                cli_diag("out of memory");
                rc = CLI_EXIT_FATAL;
            }
        } else if (!end_opts && a[0] == '-' && a[1] != '\0') {
            rc = cli_usage_error("convert: unknown option '%s'", a);
        } else if (in == NULL) {
            in = a;
        } else {
            rc = cli_usage_error("convert: one MODEL.onnx only");
        }
    }
    if (rc == CLI_EXIT_OK && in == NULL) rc = cli_usage_error("convert: no MODEL.onnx given");
    if (rc == CLI_EXIT_OK && out == NULL) rc = cli_usage_error("convert: no -o MODEL.msm given");
    if (rc == CLI_EXIT_OK && mfile != NULL) rc = meta_file(mfile, &cli_meta, &meta);
    if (rc == CLI_EXIT_OK && cli_meta.len > 0 && !text_add(&meta, cli_meta.p, cli_meta.len)) {
        cli_diag("out of memory");
        rc = CLI_EXIT_FATAL;
    }
    free(cli_meta.p);
    /* meta format 1 (models/FORMAT.md) unless the lines name a format: every converted
     * model's metadata is checked */
    text all = {0};
    if (rc == CLI_EXIT_OK && !text_has_key(&meta, "meta_format", 11) &&
        (!text_add(&all, "meta_format=1", 13) ||
         (meta.len > 0 && !text_add(&all, meta.p, meta.len - 1)))) {
        cli_diag("out of memory");
        rc = CLI_EXIT_FATAL;
    }
    if (all.p != NULL) {
        free(meta.p);
        meta = all;
    }
    if (rc != CLI_EXIT_OK) {
        free(meta.p);
        return rc;
    }

    ms_limits lim = ms_limits_default();
    ms_err err = {0};
    uint8_t *bytes = NULL;
    size_t size = 0;
    ms_onnx_model *m = NULL;
    ms_msm_writer *w = NULL;
    const char *failed = in;
    ms_status st = ms_file_read_all(in, lim.max_model_bytes, &bytes, &size, &err);
    if (st == MS_OK) st = ms_onnx_import(bytes, size, in, &lim, &m, &err);
    ms_free(bytes);
    if (st == MS_OK) {
        failed = out;
        st = ms_msm_writer_create(&w, &err);
    }
    if (st == MS_OK) st = ms_onnx_add_to_writer(m, meta.p, w, &err);
    /* Load what would be written, as every reader will: the graph and the metadata are
     * validated against each other (input size, output names, ...) before the file exists. */
    uint8_t *enc = NULL;
    size_t enc_size = 0;
    ms_msm *mm = NULL;
    ms_net *net = NULL;
    if (st == MS_OK) st = ms_msm_writer_encode(w, &enc, &enc_size, &err);
    if (st == MS_OK) st = ms_msm_decode(enc, enc_size, out, &lim, &mm, &err);
    if (st == MS_OK) st = ms_net_from_msm(mm, out, &net, &err);
    if (st == MS_OK) {
        ms_err why = {0};
        if (ms_model_meta_check_scan(ms_net_model_meta(net), out, &why) != MS_OK)
            ms_log(MS_LOG_WARN, "%s", why.msg);
        ms_net_destroy(net);
        st = ms_file_write_atomic(out, enc, enc_size, &err);
    }
    ms_free(enc);
    if (st != MS_OK) {
        cli_report_input_error(failed, &err);
        rc = CLI_EXIT_FATAL;
    } else {
        ms_log(MS_LOG_INFO, "%s: %u tensors, opset %lld", out, m->tensor_count,
               (long long)m->opset);
    }
    ms_msm_writer_destroy(w);
    ms_onnx_destroy(m);
    free(meta.p);
    return rc;
}
