/* model layer: the .msm container (models/FORMAT.md). A model file is a validated set of
 * named tensors: float32 weights, and byte tensors that carry the graph and the metadata as
 * text. Reading validates every field as untrusted input before anything is used. */
#ifndef MEDSCREEN_MODEL_H
#define MEDSCREEN_MODEL_H

#include "medscreen/medscreen.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MS_MSM_VERSION 1u
#define MS_MSM_MAX_TENSORS 65536u
#define MS_MSM_MAX_NDIM 8u
#define MS_MSM_MAX_NAME 255u

typedef enum ms_dtype { MS_DTYPE_F32 = 1, MS_DTYPE_U8 = 2 } ms_dtype;

/* One tensor of a loaded model; data points into the model and lives as long as it. */
typedef struct ms_msm_tensor {
    const char *name;
    ms_dtype dtype;
    uint32_t ndim;
    uint32_t dims[MS_MSM_MAX_NDIM];
    size_t count;     /* product of dims (1 for ndim 0) */
    const void *data; /* count floats or bytes */
} ms_msm_tensor;

typedef struct ms_msm ms_msm; /* opaque; immutable after load, shareable between threads */

/* Reads and validates a .msm file (size checked against lim->max_model_bytes first).
 * Errors: MS_EIO, MS_ELIMIT, MS_EFORMAT (with the field and value), MS_EUNSUPPORTED (newer
 * version), MS_ENOMEM. */
ms_status ms_msm_load(const char *path, const ms_limits *lim, ms_msm **out, ms_err *err);
/* The same from memory (copied). name is for messages. */
ms_status ms_msm_decode(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                        ms_msm **out, ms_err *err);
void ms_msm_destroy(ms_msm *m); /* NULL is a no-op */

uint32_t ms_msm_tensor_count(const ms_msm *m);
/* Tensors in file order; index < ms_msm_tensor_count. */
const ms_msm_tensor *ms_msm_tensor_at(const ms_msm *m, uint32_t index);
/* NULL when absent. */
const ms_msm_tensor *ms_msm_find(const ms_msm *m, const char *name);

/* Writer: collects tensors (data copied) and writes the file atomically (temp file in the
 * same directory, fsync, rename). Errors: MS_EINVAL (bad name, dims, duplicate), MS_ENOMEM,
 * MS_EIO. */
typedef struct ms_msm_writer ms_msm_writer;
ms_status ms_msm_writer_create(ms_msm_writer **out, ms_err *err);
ms_status ms_msm_writer_add(ms_msm_writer *w, const char *name, ms_dtype dtype, uint32_t ndim,
                            const uint32_t *dims, const void *data, ms_err *err);
ms_status ms_msm_writer_save(const ms_msm_writer *w, const char *path, ms_err *err);
/* The same file in memory: on success *out (size bytes, ms_free) belongs to the caller.
 * Errors: MS_EINVAL (no tensors), MS_ENOMEM. */
ms_status ms_msm_writer_encode(const ms_msm_writer *w, uint8_t **out, size_t *size, ms_err *err);
void ms_msm_writer_destroy(ms_msm_writer *w); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
