/* libFuzzer target: the strict JSON reader (medscreen/json_read.h). The input is JSON text.
 *
 * An accepted document is walked end to end with every accessor (strings must be terminated,
 * every key found again by ms_jval_get, out-of-range lookups NULL), written back out as JSON
 * with full-precision numbers, and parsed again: the second document must equal the first.
 * That checks the decoder against itself: a string it let through with bytes that are not
 * valid UTF-8, or a number that does not survive "%.17g", fails the re-parse or the compare.
 * The input is also parsed under tighter limits, which must never accept what the normal
 * limits refused. Failures must leave the output untouched and name the input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/json.h"
#include "medscreen/json_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
    if (!ok) abort();
}

/* Every accessor on every node. Recursion is bounded by the parse's max_depth. */
static void walk(const ms_jval *v) {
    size_t n = ms_jval_len(v), len = 0;
    switch (ms_jval_type(v)) {
    case MS_JNULL: check(n == 0 && !ms_jval_num(v, NULL) && ms_jval_str(v, NULL) == NULL); break;
    case MS_JBOOL: check(ms_jval_bool(v, NULL) && n == 0); break;
    case MS_JNUM: {
        double d = NAN;
        check(ms_jval_num(v, &d) && isfinite(d) && n == 0);
        break;
    }
    case MS_JSTR: {
        const char *s = ms_jval_str(v, &len);
        check(s != NULL && s[len] == '\0' && strlen(s) <= len && n == 0);
        break;
    }
    case MS_JARR:
        for (size_t i = 0; i < n; i++) walk(ms_jval_at(v, i));
        check(ms_jval_at(v, n) == NULL && ms_jval_key_at(v, 0, NULL) == NULL);
        break;
    case MS_JOBJ:
        for (size_t i = 0; i < n; i++) {
            const char *k = ms_jval_key_at(v, i, &len);
            check(k != NULL && k[len] == '\0');
            /* keys are unique, so a lookup finds exactly this member (unless the key holds
             * a 0 byte, which a C-string lookup cannot name) */
            if (strlen(k) == len) check(ms_jval_get(v, k) == ms_jval_at(v, i));
            walk(ms_jval_at(v, i));
        }
        check(ms_jval_at(v, n) == NULL && ms_jval_key_at(v, n, NULL) == NULL);
        break;
    }
}

static void emit_str(ms_buf *b, const char *s, size_t len) {
    ms_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            ms_buf_append(b, esc, 2);
        } else if (c < 0x20) {
            ms_buf_printf(b, "\\u%04x", c);
        } else {
            ms_buf_append(b, s + i, 1); /* raw: the re-parse validates the UTF-8 */
        }
    }
    ms_buf_append(b, "\"", 1);
}

static void emit(ms_buf *b, const ms_jval *v) {
    size_t n = ms_jval_len(v), len;
    bool t;
    double d;
    switch (ms_jval_type(v)) {
    case MS_JNULL: ms_buf_puts(b, "null"); break;
    case MS_JBOOL: ms_buf_puts(b, ms_jval_bool(v, &t) && t ? "true" : "false"); break;
    case MS_JNUM:
        ms_jval_num(v, &d);
        ms_buf_printf(b, "%.17g", d);
        break;
    case MS_JSTR: {
        const char *s = ms_jval_str(v, &len);
        emit_str(b, s, len);
        break;
    }
    case MS_JARR:
        ms_buf_puts(b, "[");
        for (size_t i = 0; i < n; i++) {
            if (i) ms_buf_puts(b, ",");
            emit(b, ms_jval_at(v, i));
        }
        ms_buf_puts(b, "]");
        break;
    case MS_JOBJ:
        ms_buf_puts(b, "{");
        for (size_t i = 0; i < n; i++) {
            if (i) ms_buf_puts(b, ",");
            const char *k = ms_jval_key_at(v, i, &len);
            emit_str(b, k, len);
            ms_buf_puts(b, ":");
            emit(b, ms_jval_at(v, i));
        }
        ms_buf_puts(b, "}");
        break;
    }
}

static bool same(const ms_jval *a, const ms_jval *b) {
    ms_jtype t = ms_jval_type(a);
    size_t n = ms_jval_len(a), la, lb;
    if (t != ms_jval_type(b) || n != ms_jval_len(b)) return false;
    switch (t) {
    case MS_JNULL: return true;
    case MS_JBOOL: {
        bool x = false, y = false;
        ms_jval_bool(a, &x);
        ms_jval_bool(b, &y);
        return x == y;
    }
    case MS_JNUM: {
        double x = 0, y = 0;
        ms_jval_num(a, &x);
        ms_jval_num(b, &y);
        return x == y && signbit(x) == signbit(y);
    }
    case MS_JSTR: {
        const char *x = ms_jval_str(a, &la), *y = ms_jval_str(b, &lb);
        return la == lb && memcmp(x, y, la) == 0;
    }
    case MS_JARR:
    case MS_JOBJ:
        for (size_t i = 0; i < n; i++) {
            if (t == MS_JOBJ) {
                const char *x = ms_jval_key_at(a, i, &la), *y = ms_jval_key_at(b, i, &lb);
                if (la != lb || memcmp(x, y, la) != 0) return false;
            }
            if (!same(ms_jval_at(a, i), ms_jval_at(b, i))) return false;
        }
        return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    ms_json_limits lim = ms_json_limits_default();
    lim.max_nodes = 1u << 16;
    lim.max_bytes = 1u << 20;
    ms_jdoc *doc = NULL, *sentinel = (ms_jdoc *)&lim;
    ms_jdoc *out = sentinel;
    ms_err err;
    ms_status st = ms_json_parse(text, size, "fuzz", &lim, &out, &err);
    if (st != MS_OK) {
        check(out == sentinel && err.status == st && strncmp(err.msg, "fuzz: ", 6) == 0);
        check(st == MS_EFORMAT || st == MS_ELIMIT);
    } else {
        doc = out;
    }

    /* tighter limits never accept more */
    ms_json_limits tight = {3, 24, size};
    ms_jdoc *small = NULL;
    if (ms_json_parse(text, size, "fuzz", &tight, &small, NULL) == MS_OK) {
        check(doc != NULL && same(ms_jdoc_root(small), ms_jdoc_root(doc)));
        ms_jdoc_destroy(small);
    }
    if (doc == NULL) return 0;

    const ms_jval *root = ms_jdoc_root(doc);
    walk(root);
    (void)ms_jval_path(root, "input.sha256");
    (void)ms_jval_path(root, "regions.0.score");

    /* write it back and read it again: the same document */
    ms_buf b = {0};
    emit(&b, root);
    if (!b.oom) {
        ms_json_limits again = lim;
        again.max_bytes = SIZE_MAX; /* numbers grow with %.17g */
        ms_jdoc *d2 = NULL;
        st = ms_json_parse(b.p, b.len, "fuzz-again", &again, &d2, &err);
        if (st != MS_OK) {
            fprintf(stderr, "re-parse failed: %s\n", err.msg);
            abort();
        }
        check(same(root, ms_jdoc_root(d2)));
        ms_jdoc_destroy(d2);
    }
    ms_buf_free(&b);
    ms_jdoc_destroy(doc);
    return 0;
}
