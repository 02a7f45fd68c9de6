#include "loader_internal.h"

/* Placeholder until the jpeg decoder lands. */
ms_status ms_jpeg_decode(const uint8_t *data, size_t size, const char *name,
                        const ms_decode_opts *opts, const ms_limits *lim, ms_image **out,
                        ms_err *err) {
    (void)data; (void)size; (void)opts; (void)lim; (void)out;
    return ms_fail(err, MS_EUNSUPPORTED, "%s: jpeg decoding is not built yet", name);
}
