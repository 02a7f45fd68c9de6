#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "medscreen/medscreen.h"

const char *ms_status_name(ms_status st) {
    switch (st) {
    case MS_OK: return "ok";
    case MS_EINVAL: return "invalid_argument";
    case MS_ENOMEM: return "out_of_memory";
    case MS_EIO: return "io";
    case MS_EFORMAT: return "format";
    case MS_ELIMIT: return "limit";
    case MS_EOVERFLOW: return "overflow";
    case MS_EUNSUPPORTED: return "unsupported";
    case MS_EINTERNAL: return "internal";
    case MS_ENOTIMAGE: return "not_image";
    case MS_ENOPIXELS: return "no_pixel_data";
    }
    return "unknown";
}

ms_status ms_fail_at(ms_err *err, ms_status st, const char *file, int line, const char *fmt, ...) {
    if (err == NULL) return st;
    err->status = st;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
#ifndef NDEBUG
    if (n >= 0 && (size_t)n < sizeof err->msg) {
        const char *base = strrchr(file, '/');
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, " [%s:%d]", base ? base + 1 : file,
                 line);
    }
#else
    (void)file;
    (void)line;
    (void)n;
#endif
    return st;
}

void ms_err_clear(ms_err *err) {
    if (err == NULL) return;
    err->status = MS_OK;
    err->msg[0] = '\0';
}

ms_limits ms_limits_default(void) {
    ms_limits lim;
    lim.max_file_bytes = 2ull << 30;
    lim.max_width = 65535;
    lim.max_height = 65535;
    lim.max_pixels = 256ull << 20;
    lim.max_frames = 65535;
    lim.max_decoded_bytes = 1ull << 30;
    lim.max_model_bytes = 1ull << 30;
    return lim;
}
