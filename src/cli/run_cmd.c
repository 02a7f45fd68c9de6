/* medscreen model run FILE --input X.npy --output Y.npy: runs a model's graph on a float32
 * NCHW array and writes one output as .npy. A single-shot tool: a bad model, a bad input or
 * an output that cannot be written is fatal (4). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "medscreen/core.h"
#include "medscreen/net.h"
#include "medscreen/npy.h"

void cli_model_run_usage(FILE *f) {
    fputs("Usage: medscreen model run [--output-name NAME] [--batch-check] [--threads N]\n"
          "                           [--direct] --input X.npy --output Y.npy [--] FILE\n"
          "\n"
          "Runs the network of model FILE (.msm with a 'graph' tensor, see models/FORMAT.md) on\n"
          "X.npy, a float32 or float64 array of shape (N, C, H, W) where C, H and W match the\n"
          "model's input, and writes its first output (or the output NAME) to Y.npy as float32\n"
          "of shape (N, C', H', W'), atomically. The model must have exactly one input.\n"
          "\n"
          "Options:\n"
          "  --input X.npy        the input array (values must be finite)\n"
          "  --output Y.npy       where to write the output\n"
          "  --output-name NAME   write this output instead of the first\n"
          "  --batch-check        also run every image alone and require the same output\n"
          "                       (within 1e-5 of the largest value)\n"
          "  --threads N          worker threads (default 1); any N gives the same bits\n"
          "  --direct             no fast paths (Winograd): the reference arithmetic\n"
          "\n"
          "Exit status: 0 written, 2 usage error, 4 the model or the input cannot be read or\n"
          "is invalid, or the output cannot be written (the reason is printed).\n",
          f);
}

static int fatal(const char *path, const ms_err *err) {
    cli_report_input_error(path, err);
    return CLI_EXIT_FATAL;
}

typedef struct run_opts {
    const char *out_name;
    int32_t threads;
    bool direct;
} run_opts;

static int run(const char *model, const char *in_path, const char *out_path, const run_opts *ro) {
    const char *out_name = ro->out_name;
    ms_limits lim = ms_limits_default();
    ms_err err = {0};
    ms_net *net = NULL;
    ms_npy *x = NULL;
    ms_session *s = NULL;
    int rc = CLI_EXIT_FATAL;
    if (ms_net_load(model, &lim, &net, &err) != MS_OK) return fatal(model, &err);
    if (ms_net_input_count(net) != 1) {
        cli_diag("%s: the model has %u inputs; 'model run' handles one", model,
                 ms_net_input_count(net));
        goto done;
    }
    uint32_t out_index = 0;
    if (out_name != NULL) {
        for (out_index = 0; out_index < ms_net_output_count(net); out_index++)
            if (strcmp(ms_net_output_name(net, out_index), out_name) == 0) break;
        if (out_index == ms_net_output_count(net)) {
            cli_diag("%s: no output named '%s' (the first is '%s')", model, out_name,
                     ms_net_output_name(net, 0));
            goto done;
        }
    }
    int32_t c, h, w;
    ms_net_input_shape(net, 0, &c, &h, &w);
    if (ms_npy_load(in_path, &lim, &x, &err) != MS_OK) {
        rc = fatal(in_path, &err);
        goto done;
    }
    if (x->ndim != 4 || x->shape[0] < 1 || x->shape[0] > INT32_MAX || x->shape[1] != c ||
        x->shape[2] != h || x->shape[3] != w) {
        char shape[160] = "";
        size_t len = 0;
        for (int32_t d = 0; d < x->ndim && len < sizeof shape; d++) {
            int r = snprintf(shape + len, sizeof shape - len, "%s%lld", d ? ", " : "",
                             (long long)x->shape[d]);
            if (r > 0) len += (size_t)r;
        }
        cli_diag("%s: array of shape (%s%s), the model '%s' needs (N, %d, %d, %d) with N >= 1",
                 in_path, shape, x->ndim == 1 ? "," : "", ms_net_input_name(net, 0), c, h, w);
        goto done;
    }
    if (ms_npy_check_finite(x, in_path, &err) != MS_OK) {
        rc = fatal(in_path, &err);
        goto done;
    }
    const ms_session_options so = {(int32_t)x->shape[0], ro->threads, ro->direct};
    if (ms_session_create_opts(net, &so, &s, &err) != MS_OK ||
        ms_session_run(s, x->data, &err) != MS_OK) {
        rc = fatal(model, &err);
        goto done;
    }
    ms_tensor o;
    ms_session_output(s, out_index, &o);
    int64_t shape[4] = {o.n, o.c, o.h, o.w};
    if (ms_npy_save(out_path, shape, 4, o.data, &err) != MS_OK) {
        rc = fatal(out_path, &err);
        goto done;
    }
    ms_log(MS_LOG_INFO,
           "%s: arena %zu bytes, workspace %zu bytes, %d thread(s), OpenBLAS kernels %s", model,
           ms_session_arena_bytes(s), ms_session_workspace_bytes(s), ms_session_threads(s),
           ms_blas_coretype());
    rc = CLI_EXIT_OK;
done:
    ms_session_destroy(s);
    ms_npy_destroy(x);
    ms_net_destroy(net);
    return rc;
}

/* Runs every image of the batch alone and compares with the batched output. */
static int batch_check(const char *model, const char *in_path, const run_opts *ro) {
    const char *out_name = ro->out_name;
    ms_limits lim = ms_limits_default();
    ms_err err = {0};
    ms_net *net = NULL;
    ms_npy *x = NULL;
    ms_session *all = NULL, *one = NULL;
    int rc = CLI_EXIT_FATAL;
    if (ms_net_load(model, &lim, &net, &err) != MS_OK) return fatal(model, &err);
    if (ms_npy_load(in_path, &lim, &x, &err) != MS_OK) {
        rc = fatal(in_path, &err);
        goto done;
    }
    int32_t n = (int32_t)x->shape[0];
    ms_tensor oa, o1;
    const ms_session_options so_all = {n, ro->threads, ro->direct},
                             so_one = {1, ro->threads, ro->direct};
    if (ms_session_create_opts(net, &so_all, &all, &err) != MS_OK ||
        ms_session_create_opts(net, &so_one, &one, &err) != MS_OK ||
        ms_session_run(all, x->data, &err)) {
        rc = fatal(model, &err);
        goto done;
    }
    if (out_name ? ms_session_output_by_name(all, out_name, &oa, &err)
                 : ms_session_output(all, 0, &oa)) {
        rc = fatal(model, &err);
        goto done;
    }
    size_t in_img = x->count / (size_t)n, out_img = ms_tensor_count(&oa) / (size_t)n;
    double worst = 0, scale = 0;
    for (int32_t i = 0; i < n; i++) {
        if (ms_session_run(one, x->data + (size_t)i * in_img, &err) != MS_OK) {
            rc = fatal(model, &err);
            goto done;
        }
        if (out_name)
            ms_session_output_by_name(one, out_name, &o1, &err);
        else
            ms_session_output(one, 0, &o1);
        for (size_t k = 0; k < out_img; k++) {
            double a = oa.data[(size_t)i * out_img + k], b = o1.data[k];
            double d = a > b ? a - b : b - a;
            if (d > worst) worst = d;
            if ((a < 0 ? -a : a) > scale) scale = a < 0 ? -a : a;
        }
    }
    if (worst > 1e-5 * (scale > 1e-6 ? scale : 1e-6)) {
        cli_diag("%s: batch check failed: batched and single-image outputs differ by %g (max "
                 "|output| %g)",
                 model, worst, scale);
        goto done;
    }
    rc = CLI_EXIT_OK;
done:
    ms_session_destroy(all);
    ms_session_destroy(one);
    ms_npy_destroy(x);
    ms_net_destroy(net);
    return rc;
}

int cli_model_run_main(int argc, char **argv) {
    const char *file = NULL, *in = NULL, *out = NULL, *name = NULL, *threads = NULL;
    bool check = false, direct = false, end_opts = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (!end_opts && strcmp(a, "--") == 0) {
            end_opts = true;
        } else if (!end_opts && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            cli_model_run_usage(stdout);
            return CLI_EXIT_OK;
        } else if (!end_opts && (r = cli_opt_value("--input", argc, argv, &i, &in)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
        } else if (!end_opts && (r = cli_opt_value("--output-name", argc, argv, &i, &name)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
        } else if (!end_opts && (r = cli_opt_value("--output", argc, argv, &i, &out)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
        } else if (!end_opts && (r = cli_opt_value("--threads", argc, argv, &i, &threads)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
        } else if (!end_opts && strcmp(a, "--batch-check") == 0) {
            check = true;
        } else if (!end_opts && strcmp(a, "--direct") == 0) {
            direct = true;
        } else if (!end_opts && a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("model run: unknown option '%s'", a);
        } else if (file == NULL) {
            file = a;
        } else {
            return cli_usage_error("model run: one FILE only");
        }
    }
    if (file == NULL) return cli_usage_error("model run: no model FILE given");
    if (in == NULL) return cli_usage_error("model run: --input X.npy is required");
    if (out == NULL) return cli_usage_error("model run: --output Y.npy is required");
    run_opts ro = {name, 1, direct};
    uint32_t nthreads = 1;
    if (threads != NULL) {
        if (!ms_parse_u32(threads, 1, MS_POOL_MAX_THREADS, &nthreads))
            return cli_usage_error("model run: --threads '%s' is not a number from 1 to %d",
                                   threads, MS_POOL_MAX_THREADS);
        ro.threads = (int32_t)nthreads;
    }
    /* the session's own threads do the parallel work; OpenBLAS threads inside them would
     * oversubscribe the cores and make results depend on the thread count */
    ms_blas_set_threads(1);
    int rc = run(file, in, out, &ro);
    if (rc == CLI_EXIT_OK && check) rc = batch_check(file, in, &ro);
    return rc;
}
