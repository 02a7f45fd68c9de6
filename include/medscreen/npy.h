/* NumPy .npy files holding float arrays: the input and output format of
 * `medscreen model run --input X.npy --output Y.npy` and of the operator golden tests.
 *
 * Reading accepts format versions 1.0, 2.0 and 3.0 with a C-order (fortran_order False) array
 * of dtype '<f4' (float32, copied bit for bit) or '<f8' (float64, rounded to the nearest
 * float32; a finite value outside float32's range is refused rather than turned into an
 * infinity). NaN and infinities pass through unchanged in both: whether they are acceptable is
 * the caller's decision (ms_npy_check_finite). Everything else -- big-endian, integer, bool,
 * half, complex, object, structured dtypes, fortran_order True -- is MS_EUNSUPPORTED with a
 * message naming the file and the dtype. The header dict is parsed strictly (exactly the keys
 * 'descr', 'fortran_order' and 'shape', Python literal syntax, no duplicates) but accepts the
 * whitespace, quote styles and trailing commas that numpy writes or reads. The payload must be
 * exactly product(shape) * itemsize bytes.
 *
 * Writing produces what numpy 1.24 writes for a float32 C-order array: version 1.0,
 * "{'descr': '<f4', 'fortran_order': False, 'shape': (...), }", padded with spaces and a
 * newline so the data starts at a multiple of 64 bytes. */
#ifndef MEDSCREEN_NPY_H
#define MEDSCREEN_NPY_H

#include "medscreen/medscreen.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MS_NPY_MAX_DIMS 8
/* Longest header accepted (numpy's own default max_header_size is 10000). */
#define MS_NPY_MAX_HEADER 65536u
/* Largest single dimension accepted (before the product is checked against the limits). */
#define MS_NPY_MAX_DIM ((int64_t)1 << 40)

/* A decoded array: shape[0..ndim-1] (ndim 0 is a scalar, count 1), row-major float32 data.
 * count is the product of the shape and may be 0 (then data is still a valid pointer). */
typedef struct ms_npy {
    int32_t ndim;
    int64_t shape[MS_NPY_MAX_DIMS];
    float *data;
    size_t count;
} ms_npy;

/* Decodes an .npy file held in memory. name labels every error message (NULL: "<memory>").
 * lim->max_file_bytes caps size and lim->max_decoded_bytes caps count * sizeof(float); both
 * and the exact payload size are checked before anything is allocated. On success *out
 * belongs to the caller (ms_npy_destroy). Thread-safe.
 * Errors: MS_EINVAL (NULL arguments), MS_EFORMAT (not .npy, malformed header, truncated or
 * oversized payload, float64 value outside float32 range), MS_EUNSUPPORTED (version, dtype,
 * fortran_order), MS_ELIMIT, MS_EOVERFLOW, MS_ENOMEM. */
ms_status ms_npy_decode(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                        ms_npy **out, ms_err *err);

/* ms_npy_decode on the contents of the regular file at path (read under lim->max_file_bytes).
 * Errors: those of ms_npy_decode, and MS_EIO. */
ms_status ms_npy_load(const char *path, const ms_limits *lim, ms_npy **out, ms_err *err);

void ms_npy_destroy(ms_npy *arr); /* NULL is a no-op */

/* MS_OK if every value of arr is finite; otherwise MS_EFORMAT naming name, the first bad
 * index and its value. Thread-safe. */
ms_status ms_npy_check_finite(const ms_npy *arr, const char *name, ms_err *err);

/* Encodes a float32 C-order array of ndim (0..MS_NPY_MAX_DIMS) dimensions into a new buffer:
 * on success *out_data (ms_malloc'd; release with ms_free) and *out_size are set. data may be
 * NULL only when the shape has no elements. Thread-safe.
 * Errors: MS_EINVAL (ndim, negative dimension, NULL data), MS_EOVERFLOW, MS_ENOMEM. */
ms_status ms_npy_encode(const int64_t *shape, int32_t ndim, const float *data, uint8_t **out_data,
                        size_t *out_size, ms_err *err);

/* Writes the array to path atomically: a temporary file in the same directory is written,
 * fsync'd and renamed over path, so readers see the old file or the whole new one, and a
 * failed save removes its temporary file and leaves any existing path untouched. The new file
 * gets mode 0666 less the umask. Thread-safe (concurrent saves to one path: the last rename
 * wins). Errors: MS_EINVAL, MS_EOVERFLOW, MS_EIO (message names path and the system error). */
ms_status ms_npy_save(const char *path, const int64_t *shape, int32_t ndim, const float *data,
                      ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
