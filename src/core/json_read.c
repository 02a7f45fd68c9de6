/* Strict, bounded JSON reader (see medscreen/json_read.h for what it accepts and why).
 *
 * One pass over the text with an explicit stack, no recursion. Values of open containers wait
 * on a value stack; when a container closes, its children are copied once into the arena as
 * one contiguous array, so every node is copied at most once and parsing stays linear. Object
 * keys are sorted once at close (O(n log n)) to find duplicates, and that order is kept so
 * lookups by key are binary searches. */
#include "medscreen/json.h"
#include "medscreen/json_read.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"

/* ---- document and arena ----------------------------------------------------------------- */

typedef struct jkey {
    const char *p; /* NUL-terminated, len bytes (may hold 0 bytes from \u0000) */
    size_t len;
    size_t by_rank; /* in keys[r]: the member index of the r-th smallest key */
} jkey;

struct ms_jval {
    ms_jtype type;
    bool b;
    size_t n; /* string bytes, or array elements / object members */
    union {
        double num;
        const char *str;
        struct {
            const ms_jval *items;
            const jkey *keys; /* objects only */
        } c;
    } u;
};

enum { ARENA_ALIGN = _Alignof(max_align_t), ARENA_FIRST = 4096, ARENA_MAX_CHUNK = 1 << 20 };

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} chunk;

struct ms_jdoc {
    chunk *chunks; /* newest first */
    size_t next_cap;
    ms_jval root;
};

static void *arena_alloc(ms_jdoc *d, size_t size, size_t align) {
    chunk *c = d->chunks;
    if (c != NULL) {
        size_t at = (c->used + align - 1) / align * align;
        if (at <= c->cap && size <= c->cap - at) {
            c->used = at + size;
            return (unsigned char *)c->data + at;
        }
    }
    /* A new chunk, doubling up to 1 MiB so small documents stay small and big ones do not
     * make thousands of allocations; a bigger request gets a chunk of its own size. */
    size_t cap = d->next_cap ? d->next_cap : ARENA_FIRST;
    if (cap < size) cap = size;
    size_t bytes;
    if (!ms_add_size(sizeof(chunk), cap, &bytes)) return NULL;
    c = ms_malloc(bytes);
    if (c == NULL) return NULL;
    c->next = d->chunks;
    c->cap = cap;
    c->used = size;
    d->chunks = c;
    if (d->next_cap < ARENA_MAX_CHUNK)
        d->next_cap = d->next_cap ? d->next_cap * 2 : ARENA_FIRST * 2;
    return c->data;
}

void ms_jdoc_destroy(ms_jdoc *d) {
    if (d == NULL) return;
    chunk *c = d->chunks;
    while (c != NULL) {
        chunk *next = c->next;
        ms_free(c);
        c = next;
    }
    ms_free(d);
}

ms_json_limits ms_json_limits_default(void) {
    ms_json_limits lim;
    lim.max_depth = 64;
    lim.max_nodes = 1000000;
    lim.max_bytes = (size_t)64 << 20;
    return lim;
}

/* ---- parser state and errors ----------------------------------------------------------- */

typedef struct pkey { /* a key of an open object */
    const char *p;
    size_t len;
    size_t off; /* byte offset of its opening quote, for messages */
    size_t idx; /* member index, the tie-break that makes the sort deterministic */
} pkey;

typedef struct frame {
    size_t first_val, first_key;
    bool obj;
} frame;

typedef struct parser {
    const unsigned char *s;
    size_t n, i;
    const char *name;
    ms_err *err;
    ms_json_limits lim;
    ms_jdoc *doc;
    ms_jval *vals; /* values of open containers, then the root */
    size_t nvals, capvals;
    pkey *keys;
    size_t nkeys, capkeys;
    pkey *scratch; /* sorted copy of one object's keys */
    size_t capscratch;
    frame *frames;
    size_t depth, capframes;
    uint64_t nodes;
} parser;

/* Grows an array to hold need elements; NULL on failure (p stays valid), else the array. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 16, bytes;
    while (c < need) {
        if (c > SIZE_MAX / 2) return NULL;
        c *= 2;
    }
    if (!ms_mul_size(c, elem, &bytes)) return NULL;
    void *q = ms_realloc(p, bytes);
    if (q != NULL) *cap = c;
    return q;
}

/* What sits at off, for "found ..." in messages. */
static void describe(const parser *ps, size_t off, char out[24]) {
    if (off >= ps->n) {
        snprintf(out, 24, "end of input");
        return;
    }
    unsigned c = ps->s[off];
    if (c >= 0x20 && c < 0x7F)
        snprintf(out, 24, "'%c'", (char)c);
    else
        snprintf(out, 24, "byte 0x%02x", c);
}

/* Fails with "name: offset N (line L, column C): message". Line and column are computed only
 * here, by one scan up to off, so the parse itself does not track them. */
static ms_status perr(const parser *ps, ms_status st, size_t off, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static ms_status perr(const parser *ps, ms_status st, size_t off, const char *fmt, ...) {
    if (ps->err == NULL) return st;
    size_t line = 1, col = 1;
    for (size_t k = 0; k < off && k < ps->n; k++) {
        if (ps->s[k] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char msg[MS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ms_fail(ps->err, st, "%s: offset %zu (line %zu, column %zu): %s", ps->name, off, line,
                   col, msg);
}

static ms_status oom(const parser *ps) { return perr(ps, MS_ENOMEM, ps->i, "out of memory"); }

/* A key for a message: printable ASCII kept, other bytes as \xNN, cut after 48 bytes. */
static void show_key(const char *p, size_t len, char out[208]) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t k = 0; k < len && k < 48; k++) {
        unsigned char c = (unsigned char)p[k];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\', out[o++] = 'x', out[o++] = hex[c >> 4], out[o++] = hex[c & 15];
        }
    }
    if (len > 48) out[o++] = '.', out[o++] = '.', out[o++] = '.';
    out[o] = '\0';
}

static void skip_ws(parser *ps) {
    while (ps->i < ps->n) {
        unsigned char c = ps->s[ps->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->i++;
    }
}

static int peek(const parser *ps) { return ps->i < ps->n ? ps->s[ps->i] : -1; }

/* ---- strings ----------------------------------------------------------------------------- */


static int hexval(unsigned c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* The 4 hex digits of a \u escape whose 'u' is at u; end is the closing quote. */
static ms_status read_hex4(const parser *ps, size_t u, size_t end, uint32_t *cp) {
    uint32_t v = 0;
    for (size_t k = u + 1; k < u + 5; k++) {
        int h = k < end ? hexval(ps->s[k]) : -1;
        if (h < 0) {
            char found[24];
            describe(ps, k, found);
            return perr(ps, MS_EFORMAT, k, "expected 4 hex digits after \\u, found %s",
                        k < end ? found : "the end of the string");
        }
        v = v << 4 | (uint32_t)h;
    }
    *cp = v;
    return MS_OK;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses the string whose opening quote is at ps->i into the arena (decoded, NUL-terminated).
 * A first scan finds the closing quote, which bounds the decoded size (escapes only shrink),
 * so the bytes are written once, into memory of the right size. */
static ms_status parse_string(parser *ps, const char **out, size_t *out_len) {
    const unsigned char *s = ps->s;
    size_t open = ps->i, end = open + 1;
    while (end < ps->n && s[end] != '"') end += s[end] == '\\' ? 2 : 1;
    if (end >= ps->n) return perr(ps, MS_EFORMAT, open, "unterminated string");

    char *o = arena_alloc(ps->doc, end - open, 1); /* raw length + 1 for the NUL */
    if (o == NULL) return oom(ps);
    size_t len = 0, k = open + 1;
    while (k < end) {
        unsigned c = s[k];
        if (c == '\\') { /* the scan above guarantees k + 1 < end */
            unsigned e = s[k + 1];
            static const char names[] = "\"\\/bfnrt", bytes[] = "\"\\/\b\f\n\r\t";
            const char *simple = e != 0 ? strchr(names, (int)e) : NULL;
            if (simple != NULL) {
                o[len++] = bytes[simple - names];
                k += 2;
                continue;
            }
            if (e != 'u') {
                char found[24];
                describe(ps, k + 1, found);
                return perr(ps, MS_EFORMAT, k, "invalid escape: backslash followed by %s", found);
            }
            uint32_t cp;
            ms_status st = read_hex4(ps, k + 1, end, &cp);
            if (st != MS_OK) return st;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return perr(ps, MS_EFORMAT, k, "lone low surrogate \\u%04" PRIX32, cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = 0;
                if (k + 7 < end && s[k + 6] == '\\' && s[k + 7] == 'u') {
                    st = read_hex4(ps, k + 7, end, &lo);
                    if (st != MS_OK) return st;
                }
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return perr(ps, MS_EFORMAT, k,
                                "lone high surrogate \\u%04" PRIX32
                                ", expected a low surrogate \\uDC00-\\uDFFF after it",
                                cp);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                k += 6;
            }
            len += put_utf8(o + len, cp);
            k += 6;
            continue;
        }
        if (c < 0x20)
            return perr(ps, MS_EFORMAT, k,
                        "raw control character 0x%02x in a string (must be escaped)", c);
        size_t sl = ms_utf8_seq(s + k, end - k, NULL);
        if (sl == 0) return perr(ps, MS_EFORMAT, k, "invalid UTF-8 byte 0x%02x in a string", c);
        memcpy(o + len, s + k, sl);
        len += sl;
        k += sl;
    }
    o[len] = '\0';
    ps->i = end + 1;
    *out = o;
    *out_len = len;
    return MS_OK;
}

/* ---- numbers and literals --------------------------------------------------------------- */

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

/* RFC 8259 section 6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static ms_status parse_number(parser *ps, double *out) {
    const unsigned char *s = ps->s;
    size_t start = ps->i, j = start, n = ps->n;
    char found[24];
    if (s[j] == '-') j++;
    if (j >= n || !is_digit(s[j])) {
        describe(ps, j, found);
        return perr(ps, MS_EFORMAT, j, "expected a digit after '-', found %s", found);
    }
    if (s[j] == '0') {
        j++;
        if (j < n && is_digit(s[j]))
            return perr(ps, MS_EFORMAT, start, "leading zeros are not allowed in numbers");
    } else {
        while (j < n && is_digit(s[j])) j++;
    }
    if (j < n && s[j] == '.') {
        j++;
        if (j >= n || !is_digit(s[j])) {
            describe(ps, j, found);
            return perr(ps, MS_EFORMAT, j, "expected a digit after '.', found %s", found);
        }
        while (j < n && is_digit(s[j])) j++;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        if (j >= n || !is_digit(s[j])) {
            describe(ps, j, found);
            return perr(ps, MS_EFORMAT, j, "expected a digit in the exponent, found %s", found);
        }
        while (j < n && is_digit(s[j])) j++;
    }
    size_t len = j - start;
    if (len > MS_JSON_MAX_NUMBER_CHARS)
        return perr(ps, MS_ELIMIT, start, "number of %zu characters, over the limit of %d", len,
                    (int)MS_JSON_MAX_NUMBER_CHARS);
    char buf[MS_JSON_MAX_NUMBER_CHARS + 1];
    memcpy(buf, s + start, len);
    buf[len] = '\0';
    char *endp = NULL;
    errno = 0;
    double v = strtod(buf, &endp);
    /* The grammar was checked above, so anything strtod leaves is a locale with another
     * decimal point: our bug (only the CLI may set a locale), not the file's. */
    if (endp != buf + len)
        return perr(ps, MS_EINTERNAL, start,
                    "strtod stopped early in number %.40s (LC_NUMERIC is not \"C\"?)", buf);
    if (!isfinite(v))
        return perr(ps, MS_EFORMAT, start, "number %.40s%s overflows a double", buf,
                    len > 40 ? "..." : "");
    ps->i = j;
    *out = v;
    return MS_OK;
}

static bool literal(parser *ps, const char *word) {
    size_t wl = strlen(word);
    if (ps->n - ps->i < wl || memcmp(ps->s + ps->i, word, wl) != 0) return false;
    ps->i += wl;
    return true;
}

/* ---- containers --------------------------------------------------------------------------- */

static ms_status push_val(parser *ps, const ms_jval *v) {
    ms_jval *p = grow(ps->vals, &ps->capvals, ps->nvals + 1, sizeof *ps->vals);
    if (p == NULL) return oom(ps);
    ps->vals = p;
    ps->vals[ps->nvals++] = *v;
    return MS_OK;
}

/* Parses a member key at ps->i (after whitespace) and the ':' after it. */
static ms_status parse_key(parser *ps) {
    char found[24];
    if (peek(ps) != '"') {
        describe(ps, ps->i, found);
        return perr(ps, MS_EFORMAT, ps->i, "expected a string key, found %s", found);
    }
    pkey k = {NULL, 0, ps->i, ps->nkeys - ps->frames[ps->depth - 1].first_key};
    ms_status st = parse_string(ps, &k.p, &k.len);
    if (st != MS_OK) return st;
    pkey *p = grow(ps->keys, &ps->capkeys, ps->nkeys + 1, sizeof *ps->keys);
    if (p == NULL) return oom(ps);
    ps->keys = p;
    ps->keys[ps->nkeys++] = k;
    skip_ws(ps);
    if (peek(ps) != ':') {
        describe(ps, ps->i, found);
        return perr(ps, MS_EFORMAT, ps->i, "expected ':' after the key, found %s", found);
    }
    ps->i++;
    return MS_OK;
}

static int keycmp(const char *a, size_t al, const char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) return c;
    return al < bl ? -1 : al > bl;
}

static int pkey_cmp(const void *pa, const void *pb) {
    const pkey *a = pa, *b = pb;
    int c = keycmp(a->p, a->len, b->p, b->len);
    if (c != 0) return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Closes the innermost container: its children move from the stacks into the arena. */
static ms_status close_container(parser *ps) {
    frame f = ps->frames[ps->depth - 1];
    size_t count = ps->nvals - f.first_val, bytes;
    ms_jval v = {f.obj ? MS_JOBJ : MS_JARR, false, count, {0}};
    v.u.c.items = NULL;
    v.u.c.keys = NULL;
    if (count > 0) {
        if (!ms_mul_size(count, sizeof(ms_jval), &bytes)) return oom(ps);
        ms_jval *items = arena_alloc(ps->doc, bytes, _Alignof(ms_jval));
        if (items == NULL) return oom(ps);
        memcpy(items, ps->vals + f.first_val, bytes);
        v.u.c.items = items;
    }
    if (f.obj && count > 0) {
        const pkey *src = ps->keys + f.first_key; /* one key per value */
        pkey *sc = grow(ps->scratch, &ps->capscratch, count, sizeof *ps->scratch);
        if (sc == NULL) return oom(ps);
        ps->scratch = sc;
        memcpy(sc, src, count * sizeof *sc);
        if (count > 1) qsort(sc, count, sizeof *sc, pkey_cmp);
        /* Report the duplicate that appears first in the text. */
        const pkey *dup = NULL, *first = NULL;
        for (size_t r = 1; r < count; r++) {
            if (keycmp(sc[r - 1].p, sc[r - 1].len, sc[r].p, sc[r].len) == 0 &&
                (dup == NULL || sc[r].off < dup->off))
                dup = &sc[r], first = &sc[r - 1];
        }
        if (dup != NULL) {
            char shown[208];
            show_key(dup->p, dup->len, shown);
            return perr(ps, MS_EFORMAT, dup->off, "duplicate key \"%s\" (first at offset %zu)",
                        shown, first->off);
        }
        if (!ms_mul_size(count, sizeof(jkey), &bytes)) return oom(ps);
        jkey *keys = arena_alloc(ps->doc, bytes, _Alignof(jkey));
        if (keys == NULL) return oom(ps);
        for (size_t m = 0; m < count; m++) {
            keys[m].p = src[m].p;
            keys[m].len = src[m].len;
            keys[m].by_rank = sc[m].idx;
        }
        v.u.c.keys = keys;
    }
    ps->nvals = f.first_val;
    ps->nkeys = f.first_key;
    ps->depth--;
    return push_val(ps, &v);
}

/* Starts the value at ps->i: a scalar is parsed and pushed (*complete = true); a container is
 * opened, and is complete at once only if it is empty. Limits are checked before anything
 * is allocated or nested. */
static ms_status begin_value(parser *ps, bool *complete) {
    skip_ws(ps);
    if (ps->nodes >= ps->lim.max_nodes)
        return perr(ps, MS_ELIMIT, ps->i, "more than %" PRIu64 " values (max_nodes)",
                    ps->lim.max_nodes);
    ps->nodes++;
    int c = peek(ps);
    ms_jval v = {MS_JNULL, false, 0, {0}};
    ms_status st;
    char found[24];
    if (c == '[' || c == '{') {
        if (ps->depth >= ps->lim.max_depth)
            return perr(ps, MS_ELIMIT, ps->i, "nesting deeper than %" PRIu32 " (max_depth)",
                        ps->lim.max_depth);
        frame *fr = grow(ps->frames, &ps->capframes, ps->depth + 1, sizeof *ps->frames);
        if (fr == NULL) return oom(ps);
        ps->frames = fr;
        frame f = {ps->nvals, ps->nkeys, c == '{'};
        ps->frames[ps->depth++] = f;
        ps->i++;
        skip_ws(ps);
        if (peek(ps) == (c == '{' ? '}' : ']')) {
            ps->i++;
            *complete = true;
            return close_container(ps);
        }
        *complete = false;
        return c == '{' ? parse_key(ps) : MS_OK;
    }
    if (c == '"') {
        v.type = MS_JSTR;
        st = parse_string(ps, &v.u.str, &v.n);
    } else if (c == '-' || is_digit(c)) {
        v.type = MS_JNUM;
        st = parse_number(ps, &v.u.num);
    } else if (c == 't' || c == 'f' || c == 'n') {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        if (!literal(ps, word))
            return perr(ps, MS_EFORMAT, ps->i, "invalid literal, expected '%s'", word);
        v.type = c == 'n' ? MS_JNULL : MS_JBOOL;
        v.b = c == 't';
        st = MS_OK;
    } else {
        describe(ps, ps->i, found);
        return perr(ps, MS_EFORMAT, ps->i, "expected a value, found %s", found);
    }
    if (st != MS_OK) return st;
    *complete = true;
    return push_val(ps, &v);
}

static ms_status parse_doc(parser *ps) {
    char found[24];
    if (ps->n >= 3 && memcmp(ps->s, "\xEF\xBB\xBF", 3) == 0)
        return perr(ps, MS_EFORMAT, 0, "byte order mark (not allowed in JSON, RFC 8259 8.1)");
    for (;;) {
        bool complete;
        ms_status st = begin_value(ps, &complete);
        if (st != MS_OK) return st;
        /* After a complete value: close containers, or move on to the next element. */
        while (complete) {
            skip_ws(ps);
            if (ps->depth == 0) {
                if (ps->i < ps->n) {
                    describe(ps, ps->i, found);
                    return perr(ps, MS_EFORMAT, ps->i,
                                "expected the end of input after the top-level value, found %s",
                                found);
                }
                return MS_OK;
            }
            bool obj = ps->frames[ps->depth - 1].obj;
            int closer = obj ? '}' : ']';
            int c = peek(ps);
            if (c == closer) {
                ps->i++;
                st = close_container(ps);
                if (st != MS_OK) return st;
            } else if (c == ',') {
                ps->i++;
                skip_ws(ps);
                if (peek(ps) == closer)
                    return perr(ps, MS_EFORMAT, ps->i, "trailing comma before '%c'", closer);
                if (obj) {
                    st = parse_key(ps);
                    if (st != MS_OK) return st;
                }
                complete = false;
            } else {
                describe(ps, ps->i, found);
                return perr(ps, MS_EFORMAT, ps->i, "expected ',' or '%c' after %s, found %s",
                            closer, obj ? "an object member" : "an array element", found);
            }
        }
    }
}

ms_status ms_json_parse(const char *text, size_t len, const char *name, const ms_json_limits *lim,
                        ms_jdoc **out, ms_err *err) {
    if (name == NULL) name = "json";
    if (out == NULL || (text == NULL && len > 0))
        return ms_fail(err, MS_EINVAL, "%s: ms_json_parse: NULL %s", name, out ? "text" : "out");
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.s = (const unsigned char *)(text ? text : "");
    ps.n = len;
    ps.name = name;
    ps.err = err;
    ps.lim = lim ? *lim : ms_json_limits_default();
    if (len > ps.lim.max_bytes)
        return ms_fail(err, MS_ELIMIT, "%s: %zu bytes of JSON, over the limit of %zu (max_bytes)",
                       name, len, ps.lim.max_bytes);
    ms_status st;
    ps.doc = ms_calloc(1, sizeof *ps.doc);
    if (ps.doc == NULL) {
        st = ms_fail(err, MS_ENOMEM, "%s: out of memory", name);
        goto fail;
    }
    st = parse_doc(&ps);
    if (st != MS_OK) goto fail;
    ps.doc->root = ps.vals[0];
    *out = ps.doc;
    ps.doc = NULL;
fail:
    ms_jdoc_destroy(ps.doc);
    ms_free(ps.vals);
    ms_free(ps.keys);
    ms_free(ps.scratch);
    ms_free(ps.frames);
    return st;
}

/* ---- accessors ---------------------------------------------------------------------------- */

const ms_jval *ms_jdoc_root(const ms_jdoc *d) { return d ? &d->root : NULL; }

ms_jtype ms_jval_type(const ms_jval *v) { return v ? v->type : MS_JNULL; }

size_t ms_jval_len(const ms_jval *v) {
    return v && (v->type == MS_JARR || v->type == MS_JOBJ) ? v->n : 0;
}

const ms_jval *ms_jval_at(const ms_jval *arr, size_t i) {
    return i < ms_jval_len(arr) ? &arr->u.c.items[i] : NULL;
}

static const ms_jval *get_n(const ms_jval *obj, const char *key, size_t klen) {
    if (obj == NULL || obj->type != MS_JOBJ) return NULL;
    const jkey *keys = obj->u.c.keys;
    size_t lo = 0, hi = obj->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2, m = keys[mid].by_rank;
        int c = keycmp(keys[m].p, keys[m].len, key, klen);
        if (c == 0) return &obj->u.c.items[m];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const ms_jval *ms_jval_get(const ms_jval *obj, const char *key) {
    return key ? get_n(obj, key, strlen(key)) : NULL;
}

const char *ms_jval_key_at(const ms_jval *obj, size_t i, size_t *len) {
    if (obj == NULL || obj->type != MS_JOBJ || i >= obj->n) return NULL;
    if (len) *len = obj->u.c.keys[i].len;
    return obj->u.c.keys[i].p;
}

bool ms_jval_num(const ms_jval *v, double *out) {
    if (v == NULL || v->type != MS_JNUM) return false;
    if (out) *out = v->u.num;
    return true;
}

bool ms_jval_bool(const ms_jval *v, bool *out) {
    if (v == NULL || v->type != MS_JBOOL) return false;
    if (out) *out = v->b;
    return true;
}

const char *ms_jval_str(const ms_jval *v, size_t *len) {
    if (v == NULL || v->type != MS_JSTR) return NULL;
    if (len) *len = v->n;
    return v->u.str;
}

const ms_jval *ms_jval_path(const ms_jval *v, const char *dotted) {
    if (v == NULL || dotted == NULL || *dotted == '\0') return NULL;
    const char *seg = dotted;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t sl = dot ? (size_t)(dot - seg) : strlen(seg);
        if (sl == 0) return NULL;
        if (v->type == MS_JARR) {
            size_t idx = 0;
            for (size_t k = 0; k < sl; k++) {
                if (!is_digit(seg[k]) || idx > (SIZE_MAX - 9) / 10) return NULL;
                idx = idx * 10 + (size_t)(seg[k] - '0');
            }
            v = ms_jval_at(v, idx);
        } else {
            v = get_n(v, seg, sl);
        }
        if (v == NULL) return NULL;
        if (dot == NULL) return v;
        seg = dot + 1;
    }
}
