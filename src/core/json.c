#include "medscreen/json.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer ---------------------------------------------------------------------------- */

void ms_buf_free(ms_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

static bool buf_reserve(ms_buf *b, size_t extra) {
    if (b->oom) return false;
    if (extra > SIZE_MAX - b->len - 1) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra + 1; /* room for the terminator */
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void ms_buf_append(ms_buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ms_buf_puts(ms_buf *b, const char *s) { ms_buf_append(b, s, strlen(s)); }

void ms_buf_printf(ms_buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        ms_buf_append(b, small, (size_t)n);
        return;
    }
    if (!buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

size_t ms_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        if (cp) *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0u) != 0x80u) return 0;
        v = v << 6 | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    if (cp) *cp = v;
    return len;
}

void ms_json_escape(ms_buf *b, const char *str) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    ms_buf_append(b, "\"", 1);
    while (n > 0) {
        uint32_t cp;
        size_t len = ms_utf8_seq(s, n, &cp);
        if (len == 0) {
            ms_buf_append(b, "\\ufffd", 6);
            s++, n--;
            continue;
        }
        if (cp == '"') {
            ms_buf_append(b, "\\\"", 2);
        } else if (cp == '\\') {
            ms_buf_append(b, "\\\\", 2);
        } else if (cp == '\n') {
            ms_buf_append(b, "\\n", 2);
        } else if (cp == '\r') {
            ms_buf_append(b, "\\r", 2);
        } else if (cp == '\t') {
            ms_buf_append(b, "\\t", 2);
        } else if (cp < 0x20 || cp == 0x7F) {
            char esc[6] = {'\\', 'u', '0', '0', hex[cp >> 4], hex[cp & 15]};
            ms_buf_append(b, esc, sizeof esc);
        } else {
            ms_buf_append(b, (const char *)s, len);
        }
        s += len, n -= len;
    }
    ms_buf_append(b, "\"", 1);
}

void ms_text_escape(ms_buf *b, const char *str) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    while (n > 0) {
        uint32_t cp;
        size_t len = ms_utf8_seq(s, n, &cp);
        /* C0, DEL and C1 controls (U+0080..U+009F, which some terminals obey) are escaped. */
        if (len == 0 || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
            if (len == 0) len = 1;
            for (size_t i = 0; i < len; i++) {
                if (s[i] == '\n') {
                    ms_buf_append(b, "\\n", 2);
                } else if (s[i] == '\t') {
                    ms_buf_append(b, "\\t", 2);
                } else if (s[i] == '\r') {
                    ms_buf_append(b, "\\r", 2);
                } else {
                    char esc[4] = {'\\', 'x', hex[s[i] >> 4], hex[s[i] & 15]};
                    ms_buf_append(b, esc, sizeof esc);
                }
            }
        } else {
            ms_buf_append(b, (const char *)s, len);
        }
        s += len, n -= len;
    }
}

/* ---- objects ---------------------------------------------------------------------------- */

void ms_json_init(ms_json *o) {
    o->m = NULL;
    o->n = o->cap = 0;
    o->oom = false;
}

void ms_json_free(ms_json *o) {
    for (size_t i = 0; i < o->n; i++) free(o->m[i].value);
    free(o->m);
    ms_json_init(o);
}

/* Takes ownership of value (NULL means an allocation already failed). */
static void json_add(ms_json *o, const char *key, char *value) {
    if (value == NULL) o->oom = true;
    if (o->oom) {
        free(value);
        return;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        ms_json_member *m = NULL;
        if (cap <= SIZE_MAX / sizeof *m) m = realloc(o->m, cap * sizeof *m);
        if (m == NULL) {
            o->oom = true;
            free(value);
            return;
        }
        o->m = m;
        o->cap = cap;
    }
    o->m[o->n].key = key;
    o->m[o->n].value = value;
    o->n++;
}

/* Detaches the buffer's bytes as a string, or NULL if it ran out of memory. */
static char *buf_take(ms_buf *b) {
    if (b->oom || b->p == NULL) {
        ms_buf_free(b);
        return NULL;
    }
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static char *dup_literal(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

void ms_json_str(ms_json *o, const char *key, const char *s) {
    if (s == NULL) {
        ms_json_null(o, key);
        return;
    }
    ms_buf b = {0};
    ms_json_escape(&b, s);
    json_add(o, key, buf_take(&b));
}

void ms_json_num(ms_json *o, const char *key, double v) {
    if (!isfinite(v)) {
        ms_json_null(o, key);
        return;
    }
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.6g", v);
    json_add(o, key, dup_literal(tmp));
}

void ms_json_int(ms_json *o, const char *key, int64_t v) {
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%" PRId64, v);
    json_add(o, key, dup_literal(tmp));
}

void ms_json_uint(ms_json *o, const char *key, uint64_t v) {
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    json_add(o, key, dup_literal(tmp));
}

void ms_json_bool(ms_json *o, const char *key, bool v) {
    json_add(o, key, dup_literal(v ? "true" : "false"));
}

void ms_json_null(ms_json *o, const char *key) { json_add(o, key, dup_literal("null")); }

void ms_json_obj(ms_json *o, const char *key, ms_json *child) {
    ms_buf b = {0};
    bool ok = ms_json_render(child, &b);
    ms_json_free(child);
    if (!ok) {
        ms_buf_free(&b);
        json_add(o, key, NULL);
        return;
    }
    json_add(o, key, buf_take(&b));
}

void ms_json_raw(ms_json *o, const char *key, ms_buf *rendered) {
    if (rendered->oom) {
        ms_buf_free(rendered);
        json_add(o, key, NULL);
        return;
    }
    json_add(o, key, buf_take(rendered));
}

static int member_cmp(const void *a, const void *b) {
    return strcmp(((const ms_json_member *)a)->key, ((const ms_json_member *)b)->key);
}

bool ms_json_render(ms_json *o, ms_buf *out) {
    if (o->oom) return false;
    if (o->n > 1) qsort(o->m, o->n, sizeof *o->m, member_cmp);
    ms_buf_append(out, "{", 1);
    for (size_t i = 0; i < o->n; i++) {
        /* Duplicate keys are a programming error in the CLI, never input-driven. */
        assert(i == 0 || strcmp(o->m[i - 1].key, o->m[i].key) != 0);
        if (i) ms_buf_append(out, ",", 1);
        ms_json_escape(out, o->m[i].key);
        ms_buf_append(out, ":", 1);
        ms_buf_puts(out, o->m[i].value);
    }
    ms_buf_append(out, "}", 1);
    return !out->oom;
}
