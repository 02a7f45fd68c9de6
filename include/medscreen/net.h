/* net layer: a validated network (ms_net) built from the `graph` tensor of a .msm model
 * (models/FORMAT.md, "The `graph` tensor"), and per-thread inference sessions (ms_session).
 *
 * An ms_net is immutable after load and may be shared by any number of threads. Each thread
 * owns its own ms_session: ms_session_create plans every buffer once (a liveness-based arena
 * where values whose lifetimes do not overlap share space, element-wise operators write into
 * their first input when it dies there, flatten is a view) and ms_session_run allocates
 * nothing. */
#ifndef MEDSCREEN_NET_H
#define MEDSCREEN_NET_H

#include "medscreen/model.h"
#include "medscreen/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ms_net ms_net; /* opaque; read-only after load, shareable between threads */

/* Loads a .msm file and validates its graph, then its metadata against the graph (meta.h:
 * strict for meta format 1, indexed only for legacy text). On success *out belongs to the
 * caller; release it with ms_net_destroy(). Thread-safe. Every graph error names the model,
 * the graph line and the bad token; every metadata error the model, the meta line, the key and
 * the value.
 * Errors: MS_EIO, MS_ELIMIT, MS_EFORMAT, MS_EUNSUPPORTED (also a newer meta format),
 * MS_EOVERFLOW, MS_ENOMEM. */
ms_status ms_net_load(const char *path, const ms_limits *lim, ms_net **out, ms_err *err);

/* Builds a net from a loaded container. Takes ownership of m in every case (it is destroyed
 * on failure). name labels messages (NULL: "<model>"). Errors: as ms_net_load. */
ms_status ms_net_from_msm(ms_msm *m, const char *name, ms_net **out, ms_err *err);

void ms_net_destroy(ms_net *net); /* NULL is a no-op */

/* Accessors; thread-safe. Indices out of range give NULL / false. */
uint32_t ms_net_input_count(const ms_net *net);
const char *ms_net_input_name(const ms_net *net, uint32_t index);
/* The per-image shape (the batch is chosen per session). */
bool ms_net_input_shape(const ms_net *net, uint32_t index, int32_t *c, int32_t *h, int32_t *w);
uint32_t ms_net_output_count(const ms_net *net);
const char *ms_net_output_name(const ms_net *net, uint32_t index);
bool ms_net_output_shape(const ms_net *net, uint32_t index, int32_t *c, int32_t *h, int32_t *w);
uint32_t ms_net_node_count(const ms_net *net);
/* Node i's name and operator keyword (as in the graph text), and the multiply-adds times two
 * it performs per image (convolutions and fully connected layers; 0 for other operators):
 * for benchmarks and `model info`. Out of range: NULL / 0. */
const char *ms_net_node_name(const ms_net *net, uint32_t index);
const char *ms_net_node_op(const ms_net *net, uint32_t index);
uint64_t ms_net_node_flops(const ms_net *net, uint32_t index);
/* How a default session computes node i: "winograd" or "packed" for convolutions on those
 * fast paths, "packed+first" for a packed convolution that also computes the first layer
 * before it, "fused" for that first layer (its time shows in the next), "direct" for
 * everything else. Out of range: NULL. */
const char *ms_net_node_impl(const ms_net *net, uint32_t index);
/* Bytes of the weight copies the net keeps for its fast paths (Winograd-transformed and
 * packed weights), on top of the model's own tensors. */
size_t ms_net_fast_weight_bytes(const ms_net *net);
/* The value of key in the `meta` tensor's key=value lines (the first line with that key;
 * lines without '=' are ignored); NULL when absent or when the model has no meta. The
 * string lives as long as net. */
const char *ms_net_meta(const ms_net *net, const char *key);
/* The underlying container (tensors, metadata), owned by net. */
const ms_msm *ms_net_msm(const ms_net *net);

typedef struct ms_session ms_session; /* opaque; one per thread */

/* Plans and allocates every buffer for batches of `batch` images (1 or more). net must
 * outlive the session. On success *out belongs to the caller (ms_session_destroy).
 * Thread-safe (sessions of one net may be created concurrently).
 * Errors: MS_EINVAL (batch < 1), MS_EOVERFLOW, MS_ENOMEM. */
ms_status ms_session_create(const ms_net *net, int32_t batch, ms_session **out, ms_err *err);

/* Options for ms_session_create_opts; ms_session_create(net, batch) is {batch, 1, false}. */
typedef struct ms_session_options {
    int32_t batch;    /* images per run, >= 1 */
    int32_t threads;  /* worker threads for the session's parallel loops, 1 to
                       * MS_POOL_MAX_THREADS. Work is split into units that depend only on the
                       * network and the batch, so any thread count gives bit-identical
                       * outputs. Keep OpenBLAS single-threaded (ms_blas_set_threads(1)) when
                       * threads > 1, or both layers start threads. */
    bool direct_only; /* skip fast paths (Winograd, packed): im2col + sgemm, for checks */
} ms_session_options;
ms_status ms_session_create_opts(const ms_net *net, const ms_session_options *opt, ms_session **out,
                                 ms_err *err);
void ms_session_destroy(ms_session *s); /* NULL is a no-op */

/* Bytes of the value arena (64-byte aligned slices) and of the convolution workspace (one
 * slot per thread). */
size_t ms_session_arena_bytes(const ms_session *s);
size_t ms_session_workspace_bytes(const ms_session *s);
int32_t ms_session_batch(const ms_session *s);
int32_t ms_session_threads(const ms_session *s);

/* Runs the network on batch * C * H * W floats (NCHW) for a one-input net; input is only
 * read. Allocates nothing. Not thread-safe for one session; distinct sessions may run
 * concurrently. Errors: MS_EINVAL (NULL input, net with more than one input), MS_EINTERNAL. */
ms_status ms_session_run(ms_session *s, const float *input, ms_err *err);
/* The same for any number of inputs: inputs[i] for ms_net_input_name(net, i). */
ms_status ms_session_run_inputs(ms_session *s, const float *const *inputs, ms_err *err);

/* Per-node timing for benchmarks: while seconds is not NULL, every run adds each node's wall
 * time to seconds[i] (ms_net_node_count entries, owned by the caller). NULL turns it off. */
void ms_session_set_node_timer(ms_session *s, double *seconds);

/* Views of an output of the last run; valid until the next run or ms_session_destroy.
 * Errors: MS_EINVAL (index out of range, unknown name). */
ms_status ms_session_output(const ms_session *s, uint32_t index, ms_tensor *out);
ms_status ms_session_output_by_name(const ms_session *s, const char *name, ms_tensor *out,
                                    ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
