#include <stdarg.h>
#include <stdio.h>

#include "medscreen/medscreen.h"

/* The log callback is one of the two allowed globals: set once before any work. */
static ms_log_fn g_log_fn;
static void *g_log_user;
static ms_log_level g_log_max = MS_LOG_WARN;

void ms_log_set_callback(ms_log_fn fn, void *user, ms_log_level max_level) {
    g_log_fn = fn;
    g_log_user = user;
    g_log_max = max_level;
}

void ms_log(ms_log_level level, const char *fmt, ...) {
    if (g_log_fn == NULL || level > g_log_max) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log_fn(level, buf, g_log_user);
}
