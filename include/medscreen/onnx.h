/* ONNX import: turns the ONNX subset that PyTorch exports for CNNs (opsets 9-17) into a
 * medscreen graph (models/FORMAT.md, "The graph tensor") and its float32 weights.
 *
 * The file is untrusted input: it is read with a bounded protobuf reader (every length
 * checked, nesting bounded, unknown fields skipped), its counts are capped, and anything the
 * graph format cannot express is refused with a message naming the operator and node, the
 * attribute and value, or the tensor. Batch-norm layers that follow a convolution are folded
 * into it; activations right after a convolution are fused into it; the x*sigmoid(x) and
 * exact erf GELU patterns become silu and gelu; Identity and Dropout disappear. */
#ifndef MEDSCREEN_ONNX_H
#define MEDSCREEN_ONNX_H

#include "medscreen/medscreen.h"
#include "medscreen/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MS_ONNX_MAX_NODES 20000u        /* nodes of the graph */
#define MS_ONNX_MAX_INITIALIZERS 20000u /* initializers of the graph */
#define MS_ONNX_MAX_DIMS 8u             /* dimensions of one tensor */
#define MS_ONNX_MAX_NODE_IO 4096u       /* inputs or outputs of one node */
#define MS_ONNX_MAX_ATTRS 64u           /* attributes of one node */

/* One float32 weight tensor of the imported graph (1 to 4 dimensions). */
typedef struct ms_onnx_tensor {
    const char *name;
    uint32_t ndim;
    uint32_t dims[4];
    size_t count;
    const float *data;
} ms_onnx_tensor;

/* The imported model. Passive data owned by the model; release with ms_onnx_destroy(). */
typedef struct ms_onnx_model {
    const char *graph; /* graph text (FORMAT.md graph format 1), NUL-terminated */
    size_t graph_len;  /* strlen(graph) */
    const ms_onnx_tensor *tensors;
    uint32_t tensor_count;
    int64_t opset;        /* of the default ("ai.onnx") domain */
    const char *producer; /* "pytorch 1.13.0"; printable ASCII, may be empty */
    void *priv_;
} ms_onnx_model;

/* Imports an ONNX model from memory (size checked against lim->max_model_bytes). name is for
 * messages. On success *out belongs to the caller. Thread-safe.
 * Errors: MS_ELIMIT (file size, counts), MS_EFORMAT (bad or truncated protobuf, a missing
 * initializer, an inconsistent graph), MS_EUNSUPPORTED (an operator, attribute, value, data
 * type or dynamic shape outside the subset), MS_EOVERFLOW, MS_ENOMEM. */
ms_status ms_onnx_import(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                         ms_onnx_model **out, ms_err *err);
void ms_onnx_destroy(ms_onnx_model *m); /* NULL is a no-op */

/* Adds the weights, the `graph` tensor and a `meta` tensor to w. meta holds source=onnx,
 * onnx_opset=N and producer=..., then extra_meta (NULL or key=value lines; empty lines are
 * skipped). Errors: MS_EINVAL (an extra line without '=', an empty key, a control character,
 * or one of the three reserved keys), MS_ENOMEM, the writer's errors. */
ms_status ms_onnx_add_to_writer(const ms_onnx_model *m, const char *extra_meta, ms_msm_writer *w,
                                ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
