#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"

bool ms_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
    if (s == NULL || *s < '0' || *s > '9') return false; /* no sign, no space */
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    if (v < min || v > max) return false;
    *out = v;
    return true;
}

bool ms_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out) {
    uint64_t v;
    if (!ms_parse_u64(s, min, max, &v)) return false;
    *out = (uint32_t)v;
    return true;
}

bool ms_parse_double(const char *s, double *out) {
    if (s == NULL) return false;
    while (*s == ' ') s++;
    if (*s == '\0') return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE) return false;
    while (*end == ' ') end++;
    if (*end != '\0' || !isfinite(v)) return false;
    *out = v;
    return true;
}

bool ms_str_copy(char *dst, size_t dst_size, const char *src) {
    if (dst_size == 0) return false;
    size_t n = src ? strlen(src) : 0;
    bool fits = n < dst_size;
    if (!fits) n = dst_size - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}
