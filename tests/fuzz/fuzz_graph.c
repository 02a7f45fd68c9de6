/* libFuzzer target: the graph text and the metadata (models/FORMAT.md, "The `graph` tensor" and
 * "Metadata keys"). The input is graph text, then optionally a NUL byte and meta text. It
 * becomes an in-memory .msm (ms_msm_writer_encode, ms_msm_decode) with the fixed small float32
 * tensors below that the graph names (only those: an unused float32 tensor is an error by
 * design), and is loaded with ms_net_from_msm, which checks the meta against the graph. An
 * accepted net whose work and memory fit a small budget is run once, batch 1, on zeros, and
 * its outputs are read end to end; so graphs that are valid but huge are skipped, never run,
 * and no input can time out or exhaust memory. The meta text is also parsed without a graph.
 *
 * This target reads net_internal.h (value shapes, pooling windows) to bound the work before a
 * session exists: the public API cannot tell a run's cost before allocating its arena. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "medscreen/core.h"
#include "medscreen/meta.h"
#include "net_internal.h"

/* Weights a graph can name: convolutions from 1, 3 or 4 channels (also depthwise on 4 with
 * groups=4), pointwise 4->4 and 4->1, a batch norm over 4, fully connected layers from 4 and
 * 16 features. */
typedef struct fixed {
    const char *name;
    uint32_t ndim, dims[4];
} fixed;
static const fixed k_fixed[] = {
    {"w1", 4, {4, 1, 3, 3}}, {"w3", 4, {4, 3, 3, 3}}, {"w4", 4, {4, 4, 3, 3}},
    {"p4", 4, {4, 4, 1, 1}}, {"h1", 4, {1, 4, 1, 1}}, {"b4", 1, {4}},
    {"b1", 1, {1}},          {"g4", 1, {4}},          {"m4", 1, {4}},
    {"v4", 1, {4}},          {"fc", 2, {2, 4}},       {"f16", 2, {2, 16}},
    {"fb", 1, {2}},
};

enum {
    MAX_VALUE_FLOATS = 1 << 20, /* sum over every value, per image */
    MAX_WORKSPACE_FLOATS = 1 << 22,
    MAX_WORK = 1 << 24 /* multiply-adds and window reads per run */
};

/* Whether text names tensor t as a key's value ("=t" then a space, a newline or the end). */
static bool names(const char *text, size_t len, const char *t) {
    size_t tl = strlen(t);
    for (const char *p = text; (p = memchr(p, '=', len - (size_t)(p - text))) != NULL; p++) {
        size_t left = len - (size_t)(p - text) - 1;
        if (left >= tl && memcmp(p + 1, t, tl) == 0 &&
            (left == tl || p[1 + tl] == ' ' || p[1 + tl] == '\n'))
            return true;
    }
    return false;
}

/* An upper bound of the work of one run, or false when over the budget. */
static bool within_budget(const ms_net *net) {
    uint64_t floats = 0, work = 0;
    for (uint32_t v = 0; v < net->value_count; v++) floats += net_value_count(&net->values[v]);
    if (floats > MAX_VALUE_FLOATS || net->workspace > MAX_WORKSPACE_FLOATS) return false;
    for (uint32_t i = 0; i < net->node_count; i++) {
        const net_node *nd = &net->nodes[i];
        uint64_t out = net_value_count(&net->values[nd->out]), in = 0;
        for (uint32_t k = 0; k < nd->in_count; k++)
            in += net_value_count(&net->values[net->in_idx[nd->in_first + k]]);
        work += out + in + ms_net_node_flops(net, i);
        if (nd->op == OP_MAXPOOL || nd->op == OP_AVGPOOL)
            work += out * (uint64_t)nd->pool.kh * (uint64_t)nd->pool.kw;
        if (nd->op == OP_UPSAMPLE) work += 8 * out;
        if (work > MAX_WORK) return false;
    }
    return true;
}

static void run(const ms_net *net) {
    if (!within_budget(net)) return;
    ms_session *s = NULL;
    ms_err err;
    if (ms_session_create(net, 1, &s, &err) != MS_OK) return;
    uint32_t n = ms_net_input_count(net);
    float **ins = calloc(n, sizeof *ins);
    bool ok = ins != NULL;
    for (uint32_t i = 0; ok && i < n; i++) {
        int32_t c, h, w;
        ms_net_input_shape(net, i, &c, &h, &w);
        ins[i] = calloc((size_t)c * (size_t)h * (size_t)w, sizeof(float));
        ok = ins[i] != NULL;
    }
    if (ok && ms_session_run_inputs(s, (const float *const *)ins, &err) == MS_OK) {
        volatile float sink = 0.0f;
        for (uint32_t o = 0; o < ms_net_output_count(net); o++) {
            ms_tensor t;
            if (ms_session_output(s, o, &t) != MS_OK) abort();
            int32_t c, h, w;
            ms_net_output_shape(net, o, &c, &h, &w);
            if (t.n != 1 || t.c != c || t.h != h || t.w != w) abort();
            for (size_t k = 0; k < ms_tensor_count(&t); k++) sink += t.data[k];
        }
        (void)sink;
    }
    for (uint32_t i = 0; ins && i < n; i++) free(ins[i]);
    free(ins);
    ms_session_destroy(s);
}

/* The typed metadata must agree with the graph it was checked against. */
static void check_meta(const ms_net *net) {
    const ms_model_meta *m = ms_net_model_meta(net);
    (void)ms_model_meta_check_scan(m, "fuzz", NULL);
    if (m == NULL || m->format == 0) return;
    int32_t c, h, w;
    if (m->input_h > 0 && m->input_index != UINT32_MAX &&
        (!ms_net_input_shape(net, m->input_index, &c, &h, &w) || h != m->input_h ||
         w != m->input_w))
        abort();
    if (m->output_score && (!ms_net_output_shape(net, m->score_index, &c, &h, &w) ||
                            strcmp(ms_net_output_name(net, m->score_index), m->output_score) ||
                            h != 1 || w != 1 || m->score_channel >= c))
        abort();
    if (m->output_map &&
        (!ms_net_output_shape(net, m->map_index, &c, &h, &w) || m->map_channel >= c))
        abort();
    for (uint32_t i = 0; i < m->point_count; i++)
        if (!(m->points[i].threshold >= 0.0f && m->points[i].threshold <= 1.0f)) abort();
    for (uint32_t i = 0; i < m->line_count; i++)
        if (ms_net_meta(net, m->keys[i]) == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    const char *meta = nul ? (const char *)nul + 1 : NULL;
    size_t mlen = nul ? size - glen - 1 : 0;

    /* the metadata alone (no graph to check names against) */
    ms_model_meta *alone = NULL;
    if (ms_model_meta_parse(meta, mlen, NULL, "fuzz", &alone, NULL) == MS_OK) {
        (void)ms_model_meta_check_scan(alone, "fuzz", NULL);
        ms_model_meta_destroy(alone);
    }
    if (glen == 0) return 0;

    ms_msm_writer *w = NULL;
    if (ms_msm_writer_create(&w, NULL) != MS_OK) return 0;
    uint32_t gd = (uint32_t)glen, md = (uint32_t)mlen;
    bool ok = glen <= UINT32_MAX && mlen <= UINT32_MAX &&
              ms_msm_writer_add(w, "graph", MS_DTYPE_U8, 1, &gd, text, NULL) == MS_OK &&
              (mlen == 0 || ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, &md, meta, NULL) == MS_OK);
    float vals[160]; /* the largest fixed tensor, w4, has 144 */
    for (size_t i = 0; ok && i < sizeof k_fixed / sizeof *k_fixed; i++) {
        const fixed *f = &k_fixed[i];
        if (!names(text, glen, f->name)) continue;
        size_t n = 1;
        for (uint32_t d = 0; d < f->ndim; d++) n *= f->dims[d];
        for (size_t k = 0; k < n; k++) /* var (v4) positive; the rest small, mixed signs */
            vals[k] = f->name[0] == 'v' ? 0.5f + 0.125f * (float)k
                                        : 0.25f * sinf((float)(k + 1) * (float)(i + 1));
        ok = ms_msm_writer_add(w, f->name, MS_DTYPE_F32, f->ndim, f->dims, vals, NULL) == MS_OK;
    }
    uint8_t *bytes = NULL;
    size_t nbytes = 0;
    if (ok) ok = ms_msm_writer_encode(w, &bytes, &nbytes, NULL) == MS_OK;
    ms_msm_writer_destroy(w);
    ms_msm *m = NULL;
    ms_limits lim = ms_fuzz_limits();
    if (ok) ok = ms_msm_decode(bytes, nbytes, "fuzz", &lim, &m, NULL) == MS_OK;
    ms_free(bytes);
    ms_net *net = NULL;
    ms_err err;
    if (ok && ms_net_from_msm(m, "fuzz", &net, &err) == MS_OK) {
        check_meta(net);
        run(net);
        ms_net_destroy(net);
    }
    return 0;
}
