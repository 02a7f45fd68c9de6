/* medscreen model info FILE: what a .msm model holds, its metadata and its sha256. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medscreen/json.h"
#include "medscreen/core.h"
#include "medscreen/meta.h"
#include "medscreen/model.h"

void cli_model_usage(FILE *f) {
    fputs("Usage: medscreen model info [--json] [--] FILE\n"
          "\n"
          "Validates a medscreen model (.msm, see models/FORMAT.md): the container, the\n"
          "graph and the metadata. Prints its sha256, format version, tensors (name, dtype,\n"
          "shape), parameter count, the graph's inputs and outputs (name, CxHxW), node count\n"
          "and GFLOP per image, the 'meta' lines, the checked metadata fields (meta format 1:\n"
          "input size and preprocessing, score and region-map outputs, operating points,\n"
          "modalities and body parts) and whether 'scan' can use the model (and if not, which\n"
          "keys are missing).\n"
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
static void meta_lines(const ms_msm_tensor *meta, bool json, ms_buf *out) {
    const char *p = meta->data, *end = p + meta->count;
    bool first = true;
    if (json) ms_buf_puts(out, "[");
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
                if (!first) ms_buf_puts(out, ",");
                ms_buf_puts(out, "[");
                if (eq) *eq = '\0';
                ms_json_escape(out, line);
                ms_buf_puts(out, ",");
                ms_json_escape(out, eq ? eq + 1 : "");
                ms_buf_puts(out, "]");
            } else {
                ms_buf_puts(out, "  meta               ");
                ms_text_escape(out, line);
                ms_buf_puts(out, "\n");
            }
            first = false;
        }
        free(line);
        p += len + (nl ? 1u : 0u);
    }
    if (json) ms_buf_puts(out, "]");
}

/* ---- the graph and the typed metadata ---- */

static void shape_obj(ms_buf *arr, bool first, const char *name, int32_t c, int32_t h, int32_t w) {
    ms_json o;
    ms_json_init(&o);
    ms_json_str(&o, "name", name);
    ms_json_int(&o, "channels", c);
    ms_json_int(&o, "height", h);
    ms_json_int(&o, "width", w);
    if (!first) ms_buf_puts(arr, ",");
    if (!ms_json_render(&o, arr)) arr->oom = true;
    ms_json_free(&o);
}

static double net_gflop(const ms_net *net) {
    uint64_t f = 0;
    for (uint32_t i = 0; i < ms_net_node_count(net); i++) f += ms_net_node_flops(net, i);
    return (double)f / 1e9;
}

static void json_graph(ms_json *o, const ms_net *net) {
    if (net == NULL) {
        ms_json_null(o, "graph");
        return;
    }
    ms_json g;
    ms_json_init(&g);
    int32_t c, h, w;
    ms_buf in = {0}, out = {0};
    ms_buf_puts(&in, "[");
    for (uint32_t i = 0; ms_net_input_shape(net, i, &c, &h, &w); i++)
        shape_obj(&in, i == 0, ms_net_input_name(net, i), c, h, w);
    ms_buf_puts(&in, "]");
    ms_buf_puts(&out, "[");
    for (uint32_t i = 0; ms_net_output_shape(net, i, &c, &h, &w); i++)
        shape_obj(&out, i == 0, ms_net_output_name(net, i), c, h, w);
    ms_buf_puts(&out, "]");
    ms_json_raw(&g, "inputs", &in);
    ms_json_raw(&g, "outputs", &out);
    ms_json_uint(&g, "nodes", ms_net_node_count(net));
    ms_json_num(&g, "gflop", net_gflop(net));
    ms_json_obj(o, "graph", &g);
}

static void json_floats(ms_json *o, const char *key, const float *v, uint32_t n) {
    if (n == 0) {
        ms_json_null(o, key);
        return;
    }
    ms_buf b = {0};
    ms_buf_puts(&b, "[");
    for (uint32_t i = 0; i < n; i++) ms_buf_printf(&b, "%s%.6g", i ? "," : "", (double)v[i]);
    ms_buf_puts(&b, "]");
    ms_json_raw(o, key, &b);
}

static void json_codes(ms_json *o, const char *key, const ms_meta_codes *l) {
    if (l->count == 0 && !l->any) {
        ms_json_null(o, key);
        return;
    }
    ms_buf b = {0};
    ms_buf_puts(&b, "[");
    if (l->any) ms_json_escape(&b, "any");
    for (uint32_t i = 0; i < l->count; i++) {
        if (i) ms_buf_puts(&b, ",");
        ms_json_escape(&b, l->items[i]);
    }
    ms_buf_puts(&b, "]");
    ms_json_raw(o, key, &b);
}

/* The metadata's typed fields (meta format 1; defaults filled in, null when absent). */
static void json_metadata(ms_json *o, const ms_model_meta *m) {
    if (m == NULL || m->format == 0) {
        ms_json_null(o, "metadata");
        return;
    }
    ms_json j;
    ms_json_init(&j);
    ms_json_uint(&j, "meta_format", m->format);
    ms_json_str(&j, "name", m->name);
    ms_json_str(&j, "version", m->version);
    ms_json_str(&j, "description", m->description);
    ms_json_str(&j, "task", m->task);
    ms_json_str(&j, "input", m->input);
    if (m->input_h > 0) {
        ms_buf b = {0};
        ms_buf_printf(&b, "[%d,%d]", m->input_h, m->input_w);
        ms_json_raw(&j, "input_size", &b);
    } else {
        ms_json_null(&j, "input_size");
    }
    if (m->input_channels > 0)
        ms_json_int(&j, "input_channels", m->input_channels);
    else
        ms_json_null(&j, "input_channels");
    ms_json_str(&j, "colour", ms_meta_colour_name(m->colour));
    ms_json_str(&j, "resize",
                 m->resize == MS_META_RESIZE_NONE ? NULL : ms_meta_resize_name(m->resize));
    ms_json_str(&j, "resize_filter", ms_meta_filter_name(m->resize_filter));
    if (m->resize == MS_META_RESIZE_LETTERBOX)
        ms_json_num(&j, "pad_value", m->pad_value);
    else
        ms_json_null(&j, "pad_value");
    json_floats(&j, "norm_mean", m->norm_mean, m->norm_count);
    json_floats(&j, "norm_std", m->norm_std, m->norm_count);
    if (m->window == MS_META_WINDOW_NONE) {
        ms_json_null(&j, "window");
    } else {
        ms_json w;
        ms_json_init(&w);
        ms_json_str(&w, "kind", ms_meta_window_name(m->window));
        if (m->window == MS_META_WINDOW_FIXED) {
            ms_json_num(&w, "center", m->window_center);
            ms_json_num(&w, "width", m->window_width);
        } else {
            ms_json_null(&w, "center");
            ms_json_null(&w, "width");
        }
        ms_json_obj(&j, "window", &w);
    }
    bool score = m->output_score != NULL, map = m->output_map != NULL;
    ms_json_str(&j, "output_score", m->output_score);
    if (score) {
        ms_json_int(&j, "score_channel", m->score_channel);
    } else {
        ms_json_null(&j, "score_channel");
    }
    ms_json_str(&j, "score_kind",
                 m->score_kind == MS_META_KIND_NONE ? NULL : ms_meta_kind_name(m->score_kind));
    if (m->score_kind == MS_META_KIND_LOGIT)
        ms_json_num(&j, "temperature", m->temperature);
    else
        ms_json_null(&j, "temperature");
    ms_json_str(&j, "output_map", m->output_map);
    if (map) {
        ms_json_int(&j, "map_channel", m->map_channel);
        ms_json_num(&j, "map_threshold", m->map_threshold);
    } else {
        ms_json_null(&j, "map_channel");
        ms_json_null(&j, "map_threshold");
    }
    ms_json_str(&j, "map_kind",
                 m->map_kind == MS_META_KIND_NONE ? NULL : ms_meta_kind_name(m->map_kind));
    if (m->point_count == 0) {
        ms_json_null(&j, "operating_points");
    } else {
        ms_json pts;
        ms_json_init(&pts);
        for (uint32_t i = 0; i < m->point_count; i++)
            ms_json_num(&pts, m->points[i].name, m->points[i].threshold);
        ms_json_obj(&j, "operating_points", &pts);
    }
    ms_json_str(&j, "default_operating_point",
                 m->default_point >= 0 ? m->points[m->default_point].name : NULL);
    json_codes(&j, "modalities", &m->modalities);
    json_codes(&j, "body_parts", &m->body_parts);
    json_codes(&j, "views", &m->views);
    ms_json_str(&j, "training_data", m->training_data);
    ms_json_str(&j, "training_code", m->training_code);
    ms_json_str(&j, "trained", m->trained);
    ms_json_str(&j, "source", m->source);
    ms_json_str(&j, "producer", m->producer);
    if (m->onnx_opset > 0)
        ms_json_int(&j, "onnx_opset", m->onnx_opset);
    else
        ms_json_null(&j, "onnx_opset");
    ms_json_str(&j, "licence", m->licence);
    ms_json_str(&j, "credits", m->credits);
    ms_json_str(&j, "card", m->card);
    ms_json extra;
    ms_json_init(&extra);
    for (uint32_t i = 0; i < m->line_count; i++)
        if (strncmp(m->keys[i], "x-", 2) == 0) ms_json_str(&extra, m->keys[i], m->values[i]);
    ms_json_obj(&j, "extra", &extra);
    ms_json_obj(o, "metadata", &j);
}

static void text_codes(ms_buf *out, const char *what, const ms_meta_codes *l) {
    ms_buf_printf(out, "%s ", what);
    if (l->any || l->count == 0) ms_buf_puts(out, "any");
    for (uint32_t i = 0; i < l->count; i++) {
        if (i) ms_buf_puts(out, ",");
        ms_text_escape(out, l->items[i]);
    }
}

static void text_floats(ms_buf *out, const float *v, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) ms_buf_printf(out, "%s%.6g", i ? "," : "", (double)v[i]);
}

/* A summary of the typed metadata (the raw lines are printed as 'meta' lines). */
static void text_metadata(ms_buf *out, const ms_model_meta *m) {
    if (m == NULL) {
        ms_buf_puts(out, "  metadata           none\n");
        return;
    }
    if (m->format == 0) {
        ms_buf_puts(out, "  metadata           legacy (no meta_format line; not checked)\n");
        return;
    }
    ms_buf_printf(out, "  metadata           meta format %u, checked\n", m->format);
    if (m->name || m->version || m->task) {
        ms_buf_puts(out, "  model              ");
        ms_text_escape(out, m->name ? m->name : "(no name)");
        ms_buf_printf(out, " %s", m->version ? m->version : "(no version)");
        if (m->task) ms_buf_printf(out, ", task %s", m->task);
        ms_buf_puts(out, "\n");
    }
    if (m->input_h > 0 || m->input_channels > 0 || m->resize || m->norm_count || m->window) {
        ms_buf_puts(out, "  preprocess         ");
        const char *sep = "";
        if (m->input) {
            ms_buf_puts(out, "input ");
            ms_text_escape(out, m->input);
            sep = ", ";
        }
        if (m->input_h > 0) {
            ms_buf_printf(out, "%s%dx%d", *sep ? " " : "", m->input_h, m->input_w);
            sep = ", ";
        }
        if (m->input_channels > 0) {
            ms_buf_printf(out, "%s%d channel%s from %s", sep, m->input_channels,
                           m->input_channels == 1 ? "" : "s", ms_meta_colour_name(m->colour));
            sep = ", ";
        }
        if (m->resize) {
            ms_buf_printf(out, "%s%s (%s", sep, ms_meta_resize_name(m->resize),
                           ms_meta_filter_name(m->resize_filter));
            if (m->resize == MS_META_RESIZE_LETTERBOX)
                ms_buf_printf(out, ", pad %.6g", (double)m->pad_value);
            ms_buf_puts(out, ")");
            sep = ", ";
        }
        if (m->norm_count) {
            ms_buf_printf(out, "%smean ", sep);
            text_floats(out, m->norm_mean, m->norm_count);
            ms_buf_puts(out, " std ");
            text_floats(out, m->norm_std, m->norm_count);
            sep = ", ";
        }
        if (m->window == MS_META_WINDOW_FIXED)
            ms_buf_printf(out, "%swindow %.6g,%.6g", sep, m->window_center, m->window_width);
        else if (m->window)
            ms_buf_printf(out, "%swindow %s", sep, ms_meta_window_name(m->window));
        ms_buf_puts(out, "\n");
    }
    if (m->output_score) {
        ms_buf_puts(out, "  score              output ");
        ms_text_escape(out, m->output_score);
        ms_buf_printf(out, " channel %d", m->score_channel);
        if (m->score_kind) ms_buf_printf(out, ", %s", ms_meta_kind_name(m->score_kind));
        if (m->score_kind == MS_META_KIND_LOGIT)
            ms_buf_printf(out, ", temperature %.6g", (double)m->temperature);
        ms_buf_puts(out, "\n");
    }
    if (m->output_map) {
        ms_buf_puts(out, "  region map         output ");
        ms_text_escape(out, m->output_map);
        ms_buf_printf(out, " channel %d", m->map_channel);
        if (m->map_kind) ms_buf_printf(out, ", %s", ms_meta_kind_name(m->map_kind));
        ms_buf_printf(out, ", threshold %.6g\n", (double)m->map_threshold);
    }
    if (m->point_count) {
        ms_buf_puts(out, "  operating points   ");
        for (uint32_t i = 0; i < m->point_count; i++) {
            if (i) ms_buf_puts(out, ", ");
            ms_text_escape(out, m->points[i].name);
            ms_buf_printf(out, "=%.6g%s", (double)m->points[i].threshold,
                           (int32_t)i == m->default_point ? " (default)" : "");
        }
        ms_buf_puts(out, "\n");
    }
    if (m->modalities.count || m->modalities.any || m->body_parts.count || m->body_parts.any ||
        m->views.count || m->views.any) {
        ms_buf_puts(out, "  applies to         ");
        text_codes(out, "modalities", &m->modalities);
        text_codes(out, "; body parts", &m->body_parts);
        text_codes(out, "; views", &m->views);
        ms_buf_puts(out, "\n");
    }
}

/* Whether scan could use the model; *reason (without the path) otherwise. */
static bool scan_ready(const char *path, const ms_net *net, const ms_model_meta *meta,
                       ms_err *why) {
    if (net == NULL) {
        ms_fail(why, MS_EUNSUPPORTED, "the model has no graph");
        return false;
    }
    if (ms_model_meta_check_scan(meta, path, why) == MS_OK) return true;
    static const char k_lead[] = "not usable by scan: ";
    size_t pl = strlen(path), skip = 0;
    if (strncmp(why->msg, path, pl) == 0 && strncmp(why->msg + pl, ": ", 2) == 0) skip = pl + 2;
    if (strncmp(why->msg + skip, k_lead, sizeof k_lead - 1) == 0) skip += sizeof k_lead - 1;
    memmove(why->msg, why->msg + skip, strlen(why->msg + skip) + 1);
    return false;
}

static int model_info(const char *path, bool json) {
    ms_limits lim = ms_limits_default();
    ms_err err = {0};
    uint8_t *bytes = NULL;
    size_t size = 0;
    ms_msm *m = NULL;
    ms_net *net = NULL;
    ms_model_meta *own_meta = NULL; /* a graph-less container's metadata */
    ms_status st = ms_file_read_all(path, lim.max_model_bytes, &bytes, &size, &err);
    if (st == MS_OK) st = ms_msm_decode(bytes, size, path, &lim, &m, &err);
    if (st == MS_OK && ms_msm_find(m, "graph") != NULL) {
        st = ms_net_from_msm(m, path, &net, &err); /* takes m, validates graph and meta */
        m = NULL;
    } else if (st == MS_OK) {
        const ms_msm_tensor *mt = ms_msm_find(m, "meta");
        if (mt != NULL && mt->dtype == MS_DTYPE_U8)
            st = ms_model_meta_parse(mt->data, mt->count, NULL, path, &own_meta, &err);
    }
    if (st != MS_OK) {
        cli_report_input_error(path, &err);
        ms_free(bytes);
        ms_msm_destroy(m);
        return CLI_EXIT_FATAL;
    }
    const ms_msm *mm = net ? ms_net_msm(net) : m;
    const ms_model_meta *mdata = net ? ms_net_model_meta(net) : own_meta;
    char sha[65];
    ms_sha256_hex(bytes, size, sha);
    ms_free(bytes);
    ms_err why = {0};
    bool ready = scan_ready(path, net, mdata, &why);

    uint64_t params = 0;
    uint32_t n = ms_msm_tensor_count(mm);
    for (uint32_t i = 0; i < n; i++) {
        const ms_msm_tensor *t = ms_msm_tensor_at(mm, i);
        if (t->dtype == MS_DTYPE_F32) params += t->count;
    }
    const ms_msm_tensor *meta = ms_msm_find(mm, "meta");
    ms_buf out = {0};
    if (json) {
        ms_json o;
        ms_json_init(&o);
        ms_json_int(&o, "schema_version", 1);
        ms_json_str(&o, "path", path);
        ms_json_str(&o, "status", "ok");
        ms_json_str(&o, "sha256", sha);
        ms_json_uint(&o, "bytes", size);
        ms_json_uint(&o, "format_version", MS_MSM_VERSION);
        ms_json_uint(&o, "parameters", params);
        ms_buf arr = {0};
        ms_buf_puts(&arr, "[");
        for (uint32_t i = 0; i < n; i++) {
            const ms_msm_tensor *t = ms_msm_tensor_at(mm, i);
            if (i) ms_buf_puts(&arr, ",");
            ms_buf_puts(&arr, "{\"dtype\":");
            ms_json_escape(&arr, dtype_name(t->dtype));
            ms_buf_puts(&arr, ",\"name\":");
            ms_json_escape(&arr, t->name);
            ms_buf_puts(&arr, ",\"shape\":[");
            for (uint32_t d = 0; d < t->ndim; d++)
                ms_buf_printf(&arr, "%s%u", d ? "," : "", t->dims[d]);
            ms_buf_puts(&arr, "]}");
        }
        ms_buf_puts(&arr, "]");
        ms_json_raw(&o, "tensors", &arr);
        ms_buf mb = {0};
        if (meta && meta->dtype == MS_DTYPE_U8)
            meta_lines(meta, true, &mb);
        else
            ms_buf_puts(&mb, "[]");
        ms_json_raw(&o, "meta", &mb);
        json_graph(&o, net);
        json_metadata(&o, mdata);
        ms_json scan;
        ms_json_init(&scan);
        ms_json_bool(&scan, "ready", ready);
        ms_json_str(&scan, "reason", ready ? NULL : why.msg);
        ms_json_obj(&o, "scan", &scan);
        if (!ms_json_render(&o, &out)) out.oom = true;
        ms_json_free(&o);
        ms_buf_puts(&out, "\n");
    } else {
        ms_text_escape(&out, path);
        ms_buf_printf(&out, "\n  format             medscreen model v%u\n", MS_MSM_VERSION);
        ms_buf_printf(&out, "  sha256             %s\n  bytes              %zu\n", sha, size);
        ms_buf_printf(&out, "  tensors            %u (%llu float32 parameters)\n", n,
                       (unsigned long long)params);
        if (net != NULL) {
            uint32_t ni = ms_net_input_count(net), no = ms_net_output_count(net);
            ms_buf_printf(
                &out,
                "  graph              %u input%s, %u output%s, %u nodes, %.6g GFLOP per image\n",
                ni, ni == 1 ? "" : "s", no, no == 1 ? "" : "s", ms_net_node_count(net),
                net_gflop(net));
            int32_t c, h, w;
            for (uint32_t i = 0; ms_net_input_shape(net, i, &c, &h, &w); i++) {
                ms_buf_puts(&out, "  input              ");
                ms_text_escape(&out, ms_net_input_name(net, i));
                ms_buf_printf(&out, "  [%dx%dx%d]\n", c, h, w);
            }
            for (uint32_t i = 0; ms_net_output_shape(net, i, &c, &h, &w); i++) {
                ms_buf_puts(&out, "  output             ");
                ms_text_escape(&out, ms_net_output_name(net, i));
                ms_buf_printf(&out, "  [%dx%dx%d]\n", c, h, w);
            }
        } else {
            ms_buf_puts(&out, "  graph              none\n");
        }
        if (meta && meta->dtype == MS_DTYPE_U8) meta_lines(meta, false, &out);
        text_metadata(&out, mdata);
        ms_buf_puts(&out, "  scan               ");
        if (ready) {
            ms_buf_puts(&out, "ready\n");
        } else {
            ms_buf_puts(&out, "not ready: ");
            ms_text_escape(&out, why.msg);
            ms_buf_puts(&out, "\n");
        }
        for (uint32_t i = 0; i < n; i++) {
            const ms_msm_tensor *t = ms_msm_tensor_at(mm, i);
            ms_buf_puts(&out, "  tensor             ");
            ms_text_escape(&out, t->name);
            ms_buf_printf(&out, "  %s  [", dtype_name(t->dtype));
            for (uint32_t d = 0; d < t->ndim; d++)
                ms_buf_printf(&out, "%s%u", d ? "x" : "", t->dims[d]);
            ms_buf_puts(&out, "]\n");
        }
    }
    ms_net_destroy(net);
    ms_msm_destroy(m);
    ms_model_meta_destroy(own_meta);
    if (out.oom) {
        ms_buf_free(&out);
        cli_diag("out of memory");
        return CLI_EXIT_FATAL;
    }
    fputs(out.p ? out.p : "", stdout);
    ms_buf_free(&out);
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
