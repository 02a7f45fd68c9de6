/* medscreen: status codes, error context, limits, logging and allocator hooks.
 * Every other public header includes this one. */
#ifndef MEDSCREEN_MEDSCREEN_H
#define MEDSCREEN_MEDSCREEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MS_VERSION_STRING "0.1.0"

/* Codes are appended, never renumbered: JSON output exposes them. */
typedef enum ms_status {
    MS_OK = 0,
    MS_EINVAL,       /* bad argument from the caller */
    MS_ENOMEM,       /* allocation failed */
    MS_EIO,          /* file could not be read or written */
    MS_EFORMAT,      /* malformed input */
    MS_ELIMIT,       /* input exceeds a configured limit */
    MS_EOVERFLOW,    /* a size computed from input overflows */
    MS_EUNSUPPORTED, /* valid input that this tool does not handle */
    MS_EINTERNAL,    /* a bug or an unexpected library failure */
    MS_ENOTIMAGE,    /* not an image format this tool reads */
    MS_ENOPIXELS     /* a DICOM object without pixel data (SR, RT plan, DICOMDIR, ...) */
} ms_status;

/* Stable lowercase name for JSON and messages, e.g. "format". Never NULL. */
const char *ms_status_name(ms_status st);

/* Caller-owned error context; may be NULL everywhere it is accepted. */
#define MS_ERR_MSG_MAX 512
typedef struct ms_err {
    ms_status status;
    char msg[MS_ERR_MSG_MAX];
} ms_err;

/* Records status and a printf-style message in err (if non-NULL) and returns st.
 * Debug builds append " [file:line]". Thread-safe. */
ms_status ms_fail_at(ms_err *err, ms_status st, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
#define ms_fail(err, st, ...) ms_fail_at((err), (st), __FILE__, __LINE__, __VA_ARGS__)

/* Resets err to MS_OK with an empty message. NULL is a no-op. */
void ms_err_clear(ms_err *err);

/* Caps applied to untrusted input before any buffer is sized. */
typedef struct ms_limits {
    uint64_t max_file_bytes;    /* bytes read from one input file */
    uint32_t max_width;         /* columns */
    uint32_t max_height;        /* rows */
    uint64_t max_pixels;        /* width * height of one frame */
    uint32_t max_frames;        /* frames in one DICOM object */
    uint64_t max_decoded_bytes; /* decompressed bytes of one frame, and inflated deflate streams */
    uint64_t max_model_bytes;   /* bytes of one model file */
} ms_limits;

/* Conservative defaults: 2 GiB files, 65535 x 65535 but at most 256 Mpixel per frame,
 * 65535 frames, 1 GiB decoded per frame, 1 GiB models. */
ms_limits ms_limits_default(void);

/* Logging: the library is silent unless the CLI installs a callback. Set once, before work. */
typedef enum ms_log_level { MS_LOG_ERROR = 0, MS_LOG_WARN, MS_LOG_INFO, MS_LOG_DEBUG } ms_log_level;
typedef void (*ms_log_fn)(ms_log_level level, const char *msg, void *user);
void ms_log_set_callback(ms_log_fn fn, void *user, ms_log_level max_level);
void ms_log(ms_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Allocator hooks for our own allocations (tests inject failures). Set once, before work;
 * NULL restores the C library. Codec-internal allocations (libjpeg, DCMTK, OpenJPEG) do not
 * pass through these; libpng's do. */
typedef struct ms_alloc_hooks {
    void *(*malloc_fn)(size_t n, void *user);
    void *(*realloc_fn)(void *p, size_t n, void *user);
    void (*free_fn)(void *p, void *user);
    void *user;
} ms_alloc_hooks;
void ms_alloc_set_hooks(const ms_alloc_hooks *hooks);
void *ms_malloc(size_t n);
void *ms_calloc(size_t count, size_t size); /* overflow-checked, zeroed */
void *ms_realloc(void *p, size_t n);        /* returns NULL and leaves p valid on failure */
void ms_free(void *p);                      /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
