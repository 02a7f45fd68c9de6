/* nn layer: the CNN operators of the inference engine, on dense NCHW float32 tensors.
 *
 * Operators are plain functions over caller memory: they allocate nothing, keep no state and
 * are thread-safe as long as two threads do not share an output or a workspace. Shapes are
 * validated by the *_shape functions (which return MS_EINVAL with a message); the *_forward
 * functions assume shapes that a *_shape call accepted. Matrix products go through
 * cblas_sgemm; the caller (the CLI) decides OpenBLAS's thread count. */
#ifndef MEDSCREEN_NN_H
#define MEDSCREEN_NN_H

#include "medscreen/core.h"
#include "medscreen/medscreen.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A view of a dense NCHW float32 tensor; it does not own data. */
typedef struct ms_tensor {
    int32_t n, c, h, w;
    float *data;
} ms_tensor;

static inline size_t ms_tensor_count(const ms_tensor *t) {
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}

/* ---- activations ---- */
typedef enum ms_act {
    MS_ACT_NONE = 0,
    MS_ACT_RELU,
    MS_ACT_LEAKY_RELU, /* alpha: negative slope */
    MS_ACT_SILU,       /* x * sigmoid(x) */
    MS_ACT_SIGMOID,
    MS_ACT_TANH,
    MS_ACT_GELU /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
} ms_act;

/* Applies act in place to n values. */
void ms_act_forward(ms_act act, float alpha, float *x, size_t n);

/* ---- 2-D convolution (groups, depthwise, stride, dilation, asymmetric padding) ---- */
typedef struct ms_conv2d {
    int32_t in_c, out_c; /* both divisible by groups */
    int32_t kh, kw;
    int32_t stride_h, stride_w;         /* >= 1 */
    int32_t dil_h, dil_w;               /* >= 1 */
    int32_t pad_t, pad_l, pad_b, pad_r; /* >= 0, zero padding */
    int32_t groups;                     /* >= 1; groups == in_c == out_c is depthwise */
    ms_act act;                         /* fused after the bias */
    float act_alpha;
} ms_conv2d;

/* Checks the parameters and an input of in_h x in_w; on success writes the output size.
 * Errors: MS_EINVAL (message names the bad value), MS_EOVERFLOW. */
ms_status ms_conv2d_shape(const ms_conv2d *p, int32_t in_h, int32_t in_w, int32_t *out_h,
                          int32_t *out_w, ms_err *err);

/* Floats of workspace ms_conv2d_forward needs for an input of in_h x in_w (0 when the
 * convolution needs none, e.g. 1x1 with stride 1 and no padding). The size must have been
 * accepted by ms_conv2d_shape. */
size_t ms_conv2d_workspace(const ms_conv2d *p, int32_t in_h, int32_t in_w);

/* out = act(conv(in, weight) + bias) for every image of the batch.
 * weight: [out_c][in_c / groups][kh][kw]; bias: [out_c] or NULL.
 * out must be [in->n][out_c][out_h][out_w] as given by ms_conv2d_shape, and must not alias
 * in. workspace: ms_conv2d_workspace() floats (may be NULL when that is 0). */
void ms_conv2d_forward(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                       const float *bias, ms_tensor *out, float *workspace);

/* The same on the threads of pool (NULL: the caller's only). The work is split into tasks
 * fixed by the shapes alone, so every thread count gives bit-identical outputs. workspace
 * holds one slot of ms_conv2d_workspace() floats per pool thread, ws_stride floats apart. */
void ms_conv2d_forward_pool(const ms_conv2d *p, const ms_tensor *in, const float *weight,
                            const float *bias, ms_tensor *out, float *workspace, size_t ws_stride,
                            ms_pool *pool);

/* ---- 2-D convolution by Winograd F(4x4, 3x3) ----
 * A faster path for 3x3 convolutions with stride 1, dilation 1 and one group (any padding,
 * channel counts and input size): about 4x fewer multiplications than ms_conv2d_forward, and
 * less accurate: the largest error relative to the output's largest magnitude grows with the
 * input channels, about 1e-6 at 3, 5e-6 at 64, 1e-5 at 512 (im2col: about 1e-7; a float32
 * simulation of the algorithm in numpy gives the same), and more after sigmoid or tanh, which
 * shrink the output's range (3e-5 seen). Tests bound it by 1e-4.
 * It needs the weights transformed once ahead of time, so ms_conv2d_forward never takes it by
 * itself: the caller (the net) chooses it where ms_conv2d_winograd_worthwhile says it is
 * faster, and keeps the transformed weights next to the network's. All functions are
 * thread-safe; forward calls may share u but not out or workspace. */

/* True when p is valid (as ms_conv2d_shape checks it) and has a 3x3 kernel, stride 1,
 * dilation 1 and groups 1. */
bool ms_conv2d_winograd_ok(const ms_conv2d *p);

/* True when ms_conv2d_winograd_ok(p), the input size is valid, and Winograd was measured
 * faster than ms_conv2d_forward for such a layer (see winograd.c for the figures). */
bool ms_conv2d_winograd_worthwhile(const ms_conv2d *p, int32_t in_h, int32_t in_w);

/* Floats of transformed weights: 36 * out_c * in_c, or SIZE_MAX when !ms_conv2d_winograd_ok. */
size_t ms_conv2d_winograd_weight_floats(const ms_conv2d *p);

/* Transforms weight ([out_c][in_c][3][3]) into u (ms_conv2d_winograd_weight_floats floats,
 * laid out [36][out_c][in_c]). p must satisfy ms_conv2d_winograd_ok. */
void ms_conv2d_winograd_weights(const ms_conv2d *p, const float *weight, float *u);

/* Floats of workspace ms_conv2d_winograd_forward needs for an input of in_h x in_w, or
 * SIZE_MAX when p is not eligible or ms_conv2d_shape refuses the size. Bounded whatever the
 * image size: about 1 MiB up to 128 channels, at most about 16 MiB for many channels (where
 * wider blocks of tiles pay; at 512 channels). */
size_t ms_conv2d_winograd_workspace(const ms_conv2d *p, int32_t in_h, int32_t in_w);

/* out = act(conv(in, weight) + bias), as ms_conv2d_forward, for every image of the batch, with
 * u from ms_conv2d_winograd_weights. bias: [out_c] or NULL. out must not alias in;
 * workspace: ms_conv2d_winograd_workspace() floats. */
void ms_conv2d_winograd_forward(const ms_conv2d *p, const ms_tensor *in, const float *u,
                                const float *bias, ms_tensor *out, float *workspace);
/* The same on the threads of pool, as ms_conv2d_forward_pool: tasks are blocks of tiles,
 * fixed by the shapes; one workspace slot per thread, ws_stride floats apart. */
void ms_conv2d_winograd_forward_pool(const ms_conv2d *p, const ms_tensor *in, const float *u,
                                     const float *bias, ms_tensor *out, float *workspace,
                                     size_t ws_stride, ms_pool *pool);

/* ---- 2-D convolution by a packed direct kernel ----
 * A faster path for groups 1, dilation 1, stride 1 or 2 and kernels of up to 64 taps (any
 * padding), on CPUs with AVX-512: the input rows a band of output needs are copied split by
 * stride phase, and a register-blocked kernel computes 8 output channels x 48 positions at a
 * time from weights packed once ahead of time. As exact as ms_conv2d_forward (one float sum
 * per output, about 1e-7 relative); bit-identical for any thread count. As with Winograd, the
 * caller (the net) chooses it where ms_conv2d_packed_worthwhile says so and keeps the packed
 * weights. All functions are thread-safe; forward calls may share wp but not out or workspace. */

/* True when p is valid (as ms_conv2d_shape checks it) with groups 1, dilation 1, stride 1 or
 * 2 on each axis and kh * kw <= 64. */
bool ms_conv2d_packed_ok(const ms_conv2d *p);

/* True when ms_conv2d_packed_ok(p), the input size is valid, the CPU has AVX-512 and the
 * layer is one this path was measured faster on (see packed.c). */
bool ms_conv2d_packed_worthwhile(const ms_conv2d *p, int32_t in_h, int32_t in_w);

/* Floats of packed weights for inputs of in_h x in_w (the layout depends on the output
 * width): ceil(out_c / 8) * 8 * in_c * kh * kw, or with 32 instead of 8 for outputs at most
 * 8 px wide; SIZE_MAX when ms_conv2d_packed_workspace would refuse. */
size_t ms_conv2d_packed_weight_floats(const ms_conv2d *p, int32_t in_h, int32_t in_w);

/* Packs weight ([out_c][in_c][kh][kw]) into wp (ms_conv2d_packed_weight_floats floats) for
 * inputs of in_h x in_w. */
void ms_conv2d_packed_weights(const ms_conv2d *p, int32_t in_h, int32_t in_w, const float *weight,
                              float *wp);

/* Floats of workspace for an input of in_h x in_w (about 512 KiB unless one input row of all
 * channels is larger), or SIZE_MAX when p is not eligible, the size is refused, or a band
 * would pass 64 MiB. */
size_t ms_conv2d_packed_workspace(const ms_conv2d *p, int32_t in_h, int32_t in_w);

/* out = act(conv(in, weight) + bias) for every image, with wp from ms_conv2d_packed_weights
 * for this input size.
 * out must not alias in; workspace: ms_conv2d_packed_workspace() floats. Without AVX-512 a
 * portable (slow) kernel computes the same sums. */
void ms_conv2d_packed_forward(const ms_conv2d *p, const ms_tensor *in, const float *wp,
                              const float *bias, ms_tensor *out, float *workspace);
/* The same on the threads of pool: tasks are bands of output rows x chunks of output channels,
 * fixed by the shapes; one workspace slot per thread, ws_stride floats apart. */
void ms_conv2d_packed_forward_pool(const ms_conv2d *p, const ms_tensor *in, const float *wp,
                                   const float *bias, ms_tensor *out, float *workspace,
                                   size_t ws_stride, ms_pool *pool);

/* A network's first layer fused into the packed convolution that reads it: pre has one input
 * channel, 3x3 kernel, stride 1, dilation 1, groups 1, and pre->out_c == p->in_c. The packed
 * kernel computes the rows of pre's output that each band needs as it fills the band, so that
 * output (16 channels at full resolution on the screener) never goes to memory and back.
 * Outputs are bit-identical for any thread count; they match the unfused pair to float
 * rounding (pre's sums run in another order). wp is packed for p at pre's output size. */
bool ms_conv2d_packed_fusable(const ms_conv2d *pre, const ms_conv2d *p);
/* Floats of workspace per thread for an input (pre's) of in_h x in_w, or SIZE_MAX. */
size_t ms_conv2d_packed_fused_workspace(const ms_conv2d *pre, const ms_conv2d *p, int32_t in_h,
                                        int32_t in_w);
/* out = p(pre(in)), in having one channel; pool may be NULL (one thread, ws_stride unused). */
void ms_conv2d_packed_fused_forward_pool(const ms_conv2d *pre, const float *pre_weight,
                                         const float *pre_bias, const ms_conv2d *p,
                                         const ms_tensor *in, const float *wp, const float *bias,
                                         ms_tensor *out, float *workspace, size_t ws_stride,
                                         ms_pool *pool);

/* ---- batch normalisation (inference) ---- */
/* Folds y = gamma (x - mean) / sqrt(var + eps) + beta into the preceding convolution:
 * weight [out_c][per_out] and bias [out_c] are updated in place (bias must exist; zeros if the
 * convolution had none). */
void ms_batchnorm_fold(int32_t out_c, size_t per_out, float *weight, float *bias,
                       const float *gamma, const float *beta, const float *mean, const float *var,
                       float eps);

/* The same normalisation applied in place to x, per channel. */
void ms_batchnorm_forward(ms_tensor *x, const float *gamma, const float *beta, const float *mean,
                          const float *var, float eps);

/* ---- pooling ---- */
typedef enum ms_pool_kind { MS_POOL_MAX = 0, MS_POOL_AVG } ms_pool_kind;

typedef struct ms_pool2d {
    ms_pool_kind kind;
    int32_t kh, kw;
    int32_t stride_h, stride_w;
    int32_t pad_t, pad_l, pad_b, pad_r;
    bool ceil_mode;         /* output size rounds up, as PyTorch/ONNX ceil_mode */
    bool count_include_pad; /* average pooling divides by the full window */
} ms_pool2d;

/* Checks parameters and input size, writes the output size (PyTorch/ONNX rules, including
 * ceil_mode's "last window must start inside the input or left padding"). Errors: MS_EINVAL. */
ms_status ms_pool2d_shape(const ms_pool2d *p, int32_t in_h, int32_t in_w, int32_t *out_h,
                          int32_t *out_w, ms_err *err);
void ms_pool2d_forward(const ms_pool2d *p, const ms_tensor *in, ms_tensor *out);
/* The same on the threads of pool (NULL: the caller's only), in tasks of whole planes. */
void ms_pool2d_forward_pool(const ms_pool2d *p, const ms_tensor *in, ms_tensor *out, ms_pool *pool);

/* Global pooling to [n][c][1][1]. */
void ms_global_pool_forward(ms_pool_kind kind, const ms_tensor *in, ms_tensor *out);

/* ---- resizing ---- */
typedef enum ms_upsample_mode {
    MS_UPSAMPLE_NEAREST = 0, /* PyTorch 'nearest': src = floor(dst * in / out) */
    MS_UPSAMPLE_BILINEAR     /* PyTorch 'bilinear' (half-pixel, clamped) or align_corners */
} ms_upsample_mode;

/* Resizes in to out's h and w (same n and c). */
void ms_upsample_forward(ms_upsample_mode mode, bool align_corners, const ms_tensor *in,
                         ms_tensor *out);

/* ---- tensor plumbing ---- */
/* Concatenates count tensors along channels into out (same n, h, w). */
void ms_concat_channels(const ms_tensor *const *ins, int32_t count, ms_tensor *out);

typedef enum ms_binary_op { MS_BINARY_ADD = 0, MS_BINARY_MUL } ms_binary_op;

/* out = a op b, where b has a's shape or broadcasts as [1|n][c][1][1] or [1][1][1][1].
 * out may alias a. Errors (shape mismatch): MS_EINVAL. */
ms_status ms_binary_forward(ms_binary_op op, const ms_tensor *a, const ms_tensor *b, ms_tensor *out,
                            ms_err *err);

/* Fully connected: out[n][o] = sum_i in[n][i] * weight[o][i] + bias[o], where in is read as
 * [n][c*h*w] (flattened) and out is [n][out_features][1][1]. bias may be NULL. */
void ms_fc_forward(const ms_tensor *in, int32_t out_features, const float *weight,
                   const float *bias, ms_tensor *out);

/* Softmax over channels at every (n, y, x), in place; numerically stable. */
void ms_softmax_channels(ms_tensor *x);

/* ---- BLAS kernels ---- */
/* The kernel set OpenBLAS chose when it loaded (e.g. "SkylakeX", "Haswell", "Prescott"). */
const char *ms_blas_coretype(void);
/* The OPENBLAS_CORETYPE value a program should set (then start again: OpenBLAS reads it only
 * while loading) because OpenBLAS chose kernels older than this CPU supports; NULL when its
 * choice is right. */
const char *ms_blas_better_coretype(void);
/* OpenBLAS's thread count for every later product (process-wide: set it before starting
 * sessions, not while they run). Values below 1 mean 1. */
void ms_blas_set_threads(int32_t n);
int32_t ms_blas_threads(void);

#ifdef __cplusplus
}
#endif
#endif
