/* ms_session: one thread's buffers for a net, planned once, and the allocation-free run.
 *
 * Planning. Every value lives in a buffer. Time t is 0 for the inputs and node index + 1 for
 * a node; a value is live from the time it is written to its last reader (outputs: to the
 * end). Flatten's output is its input's buffer (a view). act, batchnorm, softmax, add and mul
 * write into their first input's buffer when every value in that buffer dies at this node.
 * Other outputs get a new buffer. Buffers whose live intervals do not overlap may share
 * memory: they are placed greedily, biggest first, at the lowest 64-byte-aligned offset that
 * does not collide with an already placed buffer live at the same time. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "medscreen/core.h"
#include "net_internal.h"

enum { ALIGN = 64 };

struct ms_session {
    const ms_net *net;
    int32_t batch, threads;
    bool direct_only;
    ms_pool *pool;  /* NULL for one thread */
    size_t ws_slot; /* floats of workspace per thread */
    void *arena_raw, *ws_raw;
    float *arena, *ws;
    size_t arena_bytes, ws_bytes;
    ms_tensor *vals;           /* one per value, pointing into the arena */
    const ms_tensor **cat_ins; /* parallel to net->in_idx */
    double *node_seconds;      /* optional per-node timer (benchmarks) */
};

typedef struct plan_buf {
    uint32_t start, end;
    size_t size, off;
} plan_buf;

static int cmp_size_desc(const void *a, const void *b, const plan_buf *bufs) {
    const plan_buf *x = &bufs[*(const uint32_t *)a], *y = &bufs[*(const uint32_t *)b];
    if (x->size != y->size) return x->size > y->size ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return 0;
}

/* Insertion sort (the buffer count is the node count; qsort has no context argument in C11). */
static void sort_by_size(uint32_t *order, uint32_t n, const plan_buf *bufs) {
    for (uint32_t i = 1; i < n; i++) {
        uint32_t x = order[i], j = i;
        while (j > 0 && cmp_size_desc(&x, &order[j - 1], bufs) < 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
}

static bool inplace_op(net_op op) {
    return op == OP_ACT || op == OP_BATCHNORM || op == OP_SOFTMAX || op == OP_ADD || op == OP_MUL;
}

static void *aligned_alloc64(size_t bytes, void **raw) {
    size_t total;
    if (!ms_add_size(bytes, ALIGN, &total)) return NULL;
    *raw = ms_malloc(total);
    if (*raw == NULL) return NULL;
    uintptr_t p = ((uintptr_t)*raw + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
    return (void *)p;
}

/* Assigns every value a buffer and every buffer an offset; writes the arena size. */
static ms_status plan(const ms_net *net, int32_t batch, bool fused, uint32_t *buf_of,
                      plan_buf *bufs, size_t *arena_bytes, ms_err *err) {
    uint32_t nb = 0;
    for (uint32_t v = 0; v < net->value_count; v++) {
        const net_value *val = &net->values[v];
        size_t bytes;
        if (!ms_mul_size(net_value_count(val), (size_t)batch, &bytes) ||
            !ms_mul_size(bytes, sizeof(float), &bytes) || !ms_add_size(bytes, ALIGN - 1, &bytes))
            return ms_fail(err, MS_EOVERFLOW, "%s: value '%s' for a batch of %d overflows",
                           net->name, val->name, batch);
        bytes &= ~(size_t)(ALIGN - 1);
        buf_of[v] = UINT32_MAX;
        if (val->def_time == 0) {
            plan_buf *b = &bufs[nb];
            b->start = 0, b->end = val->last_time, b->size = bytes;
            buf_of[v] = nb++;
        }
    }
    for (uint32_t i = 0; i < net->node_count; i++) {
        const net_node *nd = &net->nodes[i];
        const uint32_t t = i + 1, o = nd->out, in0 = net->in_idx[nd->in_first];
        const net_value *ov = &net->values[o];
        size_t bytes = 0;
        ms_mul_size(net_value_count(ov), (size_t)batch, &bytes); /* checked above */
        bytes = (bytes * sizeof(float) + ALIGN - 1) & ~(size_t)(ALIGN - 1);
        if (fused && nd->fused_into) bytes = 0; /* never written: see net_node */
        if (fused && nd->fused_pre != 0) {      /* reads the fused first layer's input */
            const net_node *first = &net->nodes[nd->fused_pre - 1];
            plan_buf *fb = &bufs[buf_of[net->in_idx[first->in_first]]];
            if (fb->end < t) fb->end = t;
        }
        plan_buf *ib = &bufs[buf_of[in0]];
        if (nd->op == OP_FLATTEN || (inplace_op(nd->op) && ib->end == t)) {
            buf_of[o] = buf_of[in0];
            if (ov->last_time > ib->end) ib->end = ov->last_time;
            if (bytes > ib->size) ib->size = bytes;
        } else {
            plan_buf *b = &bufs[nb];
            b->start = t, b->end = ov->last_time, b->size = bytes;
            buf_of[o] = nb++;
        }
    }
    uint32_t *order = ms_malloc((size_t)nb * sizeof *order);
    uint32_t *placed = ms_malloc((size_t)nb * sizeof *placed);
    if (order == NULL || placed == NULL) {
        ms_free(order);
        ms_free(placed);
        return ms_fail(err, MS_ENOMEM, "%s: cannot plan the session", net->name);
    }
    for (uint32_t i = 0; i < nb; i++) order[i] = i;
    sort_by_size(order, nb, bufs);
    size_t total = 0;
    uint32_t np = 0; /* placed[0..np) sorted by offset */
    for (uint32_t k = 0; k < nb; k++) {
        plan_buf *b = &bufs[order[k]];
        size_t off = 0;
        for (uint32_t j = 0; j < np; j++) {
            const plan_buf *q = &bufs[placed[j]];
            if (q->start > b->end || b->start > q->end) continue; /* not live together */
            if (off + b->size <= q->off) break;
            if (q->off + q->size > off) off = q->off + q->size;
        }
        b->off = off;
        if (off + b->size > total) total = off + b->size;
        uint32_t j = np++;
        while (j > 0 && bufs[placed[j - 1]].off > off) {
            placed[j] = placed[j - 1];
            j--;
        }
        placed[j] = order[k];
    }
    ms_free(order);
    ms_free(placed);
    *arena_bytes = total;
    return MS_OK;
}

ms_status ms_session_create(const ms_net *net, int32_t batch, ms_session **out, ms_err *err) {
    const ms_session_options opt = {batch, 1, false};
    return ms_session_create_opts(net, &opt, out, err);
}

ms_status ms_session_create_opts(const ms_net *net, const ms_session_options *opt, ms_session **out,
                                 ms_err *err) {
    if (net == NULL || opt == NULL || out == NULL)
        return ms_fail(err, MS_EINVAL, "session: NULL argument");
    const int32_t batch = opt->batch;
    if (batch < 1)
        return ms_fail(err, MS_EINVAL, "%s: batch %d, must be at least 1", net->name, batch);
    if (opt->threads < 1 || opt->threads > MS_POOL_MAX_THREADS)
        return ms_fail(err, MS_EINVAL, "%s: %d threads, must be 1 to %d", net->name, opt->threads,
                       MS_POOL_MAX_THREADS);
    ms_status st = MS_OK;
    uint32_t *buf_of = ms_calloc(net->value_count, sizeof *buf_of);
    plan_buf *bufs = ms_calloc(net->value_count, sizeof *bufs);
    ms_session *s = ms_calloc(1, sizeof *s);
    if (buf_of == NULL || bufs == NULL || s == NULL) {
        st = ms_fail(err, MS_ENOMEM, "%s: cannot allocate a session", net->name);
        goto fail;
    }
    s->net = net;
    s->batch = batch;
    s->threads = opt->threads;
    s->direct_only = opt->direct_only;
    if ((st = plan(net, batch, !s->direct_only, buf_of, bufs, &s->arena_bytes, err)) != MS_OK)
        goto fail;
    /* each thread's slot starts on a cache line */
    s->ws_slot = (net->workspace + ALIGN / sizeof(float) - 1) & ~(ALIGN / sizeof(float) - 1);
    if (!ms_mul_size(s->ws_slot, (size_t)s->threads, &s->ws_bytes) ||
        !ms_mul_size(s->ws_bytes, sizeof(float), &s->ws_bytes)) {
        st = ms_fail(err, MS_EOVERFLOW, "%s: convolution workspace overflows", net->name);
        goto fail;
    }
    if (s->threads > 1 && (st = ms_pool_create(s->threads, &s->pool, err)) != MS_OK) goto fail;
    s->vals = ms_calloc(net->value_count, sizeof *s->vals);
    s->cat_ins = ms_calloc(net->in_idx_count ? net->in_idx_count : 1, sizeof *s->cat_ins);
    s->arena = aligned_alloc64(s->arena_bytes, &s->arena_raw);
    if (s->ws_bytes) s->ws = aligned_alloc64(s->ws_bytes, &s->ws_raw);
    if (s->vals == NULL || s->cat_ins == NULL || s->arena == NULL || (s->ws_bytes && !s->ws)) {
        st = ms_fail(err, MS_ENOMEM, "%s: cannot allocate %zu + %zu bytes for a batch of %d",
                     net->name, s->arena_bytes, s->ws_bytes, batch);
        goto fail;
    }
    for (uint32_t v = 0; v < net->value_count; v++) {
        const net_value *val = &net->values[v];
        s->vals[v] = (ms_tensor){batch, val->c, val->h, val->w,
                                 s->arena + bufs[buf_of[v]].off / sizeof(float)};
    }
    for (uint32_t i = 0; i < net->in_idx_count; i++) s->cat_ins[i] = &s->vals[net->in_idx[i]];
    ms_free(buf_of);
    ms_free(bufs);
    *out = s;
    return MS_OK;
fail:
    ms_free(buf_of);
    ms_free(bufs);
    ms_session_destroy(s);
    return st;
}

void ms_session_destroy(ms_session *s) {
    if (s == NULL) return;
    ms_pool_destroy(s->pool);
    ms_free(s->arena_raw);
    ms_free(s->ws_raw);
    ms_free(s->vals);
    ms_free(s->cat_ins);
    ms_free(s);
}

size_t ms_session_arena_bytes(const ms_session *s) { return s->arena_bytes; }
size_t ms_session_workspace_bytes(const ms_session *s) { return s->ws_bytes; }
int32_t ms_session_batch(const ms_session *s) { return s->batch; }
int32_t ms_session_threads(const ms_session *s) { return s->threads; }

void ms_session_set_node_timer(ms_session *s, double *seconds) { s->node_seconds = seconds; }

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void copy_if_needed(const ms_tensor *in, ms_tensor *out) {
    if (out->data != in->data) memcpy(out->data, in->data, ms_tensor_count(in) * sizeof(float));
}

static ms_status run_binary(ms_binary_op op, const ms_tensor *a, const ms_tensor *b, ms_tensor *o,
                            ms_err *err) {
    /* A per-image scalar [n][1][1][1] with n > 1 is not one of ms_binary_forward's
     * broadcasts: apply it image by image. */
    if (a->n > 1 && b->c == 1 && b->h == 1 && b->w == 1 && a->c != 1) {
        const size_t img = (size_t)a->c * (size_t)a->h * (size_t)a->w;
        for (int32_t n = 0; n < a->n; n++) {
            ms_tensor a1 = {1, a->c, a->h, a->w, a->data + (size_t)n * img};
            ms_tensor b1 = {1, 1, 1, 1, b->data + n};
            ms_tensor o1 = {1, o->c, o->h, o->w, o->data + (size_t)n * img};
            ms_status st = ms_binary_forward(op, &a1, &b1, &o1, err);
            if (st != MS_OK) return st;
        }
        return MS_OK;
    }
    return ms_binary_forward(op, a, b, o, err);
}

ms_status ms_session_run_inputs(ms_session *s, const float *const *inputs, ms_err *err) {
    const ms_net *net = s->net;
    if (inputs == NULL) return ms_fail(err, MS_EINVAL, "%s: run: NULL inputs", net->name);
    for (uint32_t i = 0; i < net->input_count; i++) {
        ms_tensor *t = &s->vals[net->inputs[i]];
        if (inputs[i] == NULL)
            return ms_fail(err, MS_EINVAL, "%s: run: input %u is NULL", net->name, i);
        memcpy(t->data, inputs[i], ms_tensor_count(t) * sizeof(float));
    }
    for (uint32_t i = 0; i < net->node_count; i++) {
        const net_node *nd = &net->nodes[i];
        const ms_tensor *in = s->cat_ins[nd->in_first];
        ms_tensor *out = &s->vals[nd->out];
        ms_status st = MS_OK;
        const double t0 = s->node_seconds ? now_seconds() : 0.0;
        const bool fused = !s->direct_only;
        switch (nd->op) {
        case OP_CONV2D:
            if (nd->fused_into && fused) break; /* computed by the packed layer after it */
            if (nd->fused_pre != 0 && fused) {
                const net_node *first = &net->nodes[nd->fused_pre - 1];
                ms_conv2d_packed_fused_forward_pool(&first->conv, first->weight, first->bias,
                                                    &nd->conv, s->cat_ins[first->in_first],
                                                    nd->packed_w, nd->bias, out, s->ws, s->ws_slot,
                                                    s->pool);
            } else if (nd->wino_u != NULL && !s->direct_only)
                ms_conv2d_winograd_forward_pool(&nd->conv, in, nd->wino_u, nd->bias, out, s->ws,
                                                s->ws_slot, s->pool);
            else if (nd->packed_w != NULL && !s->direct_only)
                ms_conv2d_packed_forward_pool(&nd->conv, in, nd->packed_w, nd->bias, out, s->ws,
                                              s->ws_slot, s->pool);
            else
                ms_conv2d_forward_pool(&nd->conv, in, nd->weight, nd->bias, out, s->ws, s->ws_slot,
                                       s->pool);
            break;
        case OP_BATCHNORM:
            copy_if_needed(in, out);
            ms_batchnorm_forward(out, nd->weight, nd->bias, nd->mean, nd->var, nd->eps);
            break;
        case OP_ACT:
            copy_if_needed(in, out);
            ms_act_forward(nd->act, nd->alpha, out->data, ms_tensor_count(out));
            break;
        case OP_MAXPOOL:
        case OP_AVGPOOL: ms_pool2d_forward_pool(&nd->pool, in, out, s->pool); break;
        case OP_GLOBALAVGPOOL: ms_global_pool_forward(MS_POOL_AVG, in, out); break;
        case OP_GLOBALMAXPOOL: ms_global_pool_forward(MS_POOL_MAX, in, out); break;
        case OP_UPSAMPLE: ms_upsample_forward(nd->mode, nd->align, in, out); break;
        case OP_CONCAT:
            ms_concat_channels(s->cat_ins + nd->in_first, (int32_t)nd->in_count, out);
            break;
        case OP_ADD:
        case OP_MUL:
            st = run_binary(nd->op == OP_ADD ? MS_BINARY_ADD : MS_BINARY_MUL, in,
                            s->cat_ins[nd->in_first + 1], out, err);
            break;
        case OP_FC: ms_fc_forward(in, nd->fc_out, nd->weight, nd->bias, out); break;
        case OP_FLATTEN: break; /* a view of its input's buffer */
        case OP_SOFTMAX:
            copy_if_needed(in, out);
            ms_softmax_channels(out);
            break;
        case OP_COUNT: st = MS_EINTERNAL; break;
        }
        if (s->node_seconds) s->node_seconds[i] += now_seconds() - t0;
        if (st != MS_OK) {
            char why[MS_ERR_MSG_MAX];
            ms_str_copy(why, sizeof why, err ? err->msg : ms_status_name(st));
            return ms_fail(err, MS_EINTERNAL, "%s: node '%s' (graph line %u) failed: %s", net->name,
                           nd->name, nd->line, why);
        }
    }
    return MS_OK;
}

ms_status ms_session_run(ms_session *s, const float *input, ms_err *err) {
    if (s->net->input_count != 1)
        return ms_fail(err, MS_EINVAL, "%s: the net has %u inputs; use ms_session_run_inputs",
                       s->net->name, s->net->input_count);
    const float *const inputs[1] = {input};
    return ms_session_run_inputs(s, inputs, err);
}

ms_status ms_session_output(const ms_session *s, uint32_t index, ms_tensor *out) {
    if (out == NULL || index >= s->net->output_count) return MS_EINVAL;
    *out = s->vals[s->net->outputs[index]];
    return MS_OK;
}

ms_status ms_session_output_by_name(const ms_session *s, const char *name, ms_tensor *out,
                                    ms_err *err) {
    const ms_net *net = s->net;
    for (uint32_t i = 0; name != NULL && i < net->output_count; i++)
        if (strcmp(net->values[net->outputs[i]].name, name) == 0)
            return ms_session_output(s, i, out);
    return ms_fail(err, MS_EINVAL, "%s: no output named '%s'", net->name, name ? name : "(null)");
}
