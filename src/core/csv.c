/* Strict RFC 4180 record reader (medscreen/csv.h). One pass over the buffer; the current
 * record's fields are unescaped into one growing buffer as NUL-terminated strings, so memory is
 * bounded by the per-record limits, not by the input. */
#include <stdio.h>
#include <string.h>

#include "medscreen/core.h"
#include "medscreen/csv.h"

struct ms_csv {
    const char *p;
    size_t n, pos;
    const char *name;
    ms_csv_limits lim;
    size_t line;              /* line of p[pos] */
    size_t rec_line;          /* first line of the current record; 0: none */
    char *buf;                /* the fields, each NUL-terminated */
    size_t len, cap, content; /* content: field bytes without the NULs */
    size_t buf_max;           /* max_record_bytes + max_fields, saturated */
    size_t *start;            /* offset of each field in buf */
    size_t nfields, fcap;
    bool end;
    ms_status failed; /* sticky error */
    ms_err failed_err;
};

ms_csv_limits ms_csv_limits_default(void) {
    ms_csv_limits lim = {1024u, (size_t)1 << 20};
    return lim;
}

ms_status ms_csv_create(const char *text, size_t len, const char *name, const ms_csv_limits *lim,
                        ms_csv **out, ms_err *err) {
    if (name == NULL) name = "csv";
    if (out == NULL || (text == NULL && len > 0))
        return ms_fail(err, MS_EINVAL, "%s: ms_csv_create: NULL %s", name, out ? "text" : "out");
    ms_csv_limits l = lim ? *lim : ms_csv_limits_default();
    if (l.max_fields == 0 || l.max_record_bytes == 0)
        return ms_fail(err, MS_EINVAL, "%s: ms_csv_create: a limit of 0", name);
    ms_csv *r = ms_calloc(1, sizeof *r);
    if (r == NULL) return ms_fail(err, MS_ENOMEM, "%s: out of memory", name);
    r->p = text;
    r->n = len;
    r->name = name;
    r->lim = l;
    r->line = 1;
    if (!ms_add_size(l.max_record_bytes, l.max_fields, &r->buf_max)) r->buf_max = SIZE_MAX;
    /* a spreadsheet's byte order mark */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) r->pos = 3;
    *out = r;
    return MS_OK;
}

void ms_csv_destroy(ms_csv *r) {
    if (r == NULL) return;
    ms_free(r->buf);
    ms_free(r->start);
    ms_free(r);
}

size_t ms_csv_nfields(const ms_csv *r) { return r ? r->nfields : 0; }

const char *ms_csv_field(const ms_csv *r, size_t i, size_t *len) {
    if (r == NULL || i >= r->nfields) return NULL;
    size_t end = i + 1 < r->nfields ? r->start[i + 1] : r->len;
    if (len) *len = end - r->start[i] - 1;
    return r->buf + r->start[i];
}

size_t ms_csv_line(const ms_csv *r) { return r ? r->rec_line : 0; }

/* The capacity to grow to so that need fits: doubling, but never past max. False when need
 * is over max or the bytes overflow. */
static bool next_cap(size_t cap, size_t need, size_t max, size_t elem, size_t first, size_t *out,
                     size_t *bytes) {
    if (need > max) return false;
    size_t c = cap ? (cap > max / 2 ? max : cap * 2) : (first < max ? first : max);
    if (c < need) c = need;
    if (!ms_mul_size(c, elem, bytes)) return false;
    *out = c;
    return true;
}

/* Internal result of one step; the message is written by ms_csv_next. */
typedef enum { STEP_OK, STEP_FORMAT, STEP_FIELDS, STEP_BYTES, STEP_NOMEM } step;

/* Appends one byte to the record buffer. Content bytes count against max_record_bytes; the
 * NUL after each field does not (one per field, and fields are limited, so buf_max has room). */
static step put(ms_csv *r, char c, bool content) {
    if (content && r->content == r->lim.max_record_bytes) return STEP_BYTES;
    if (r->len == r->cap) {
        size_t cap, bytes;
        if (!next_cap(r->cap, r->len + 1, r->buf_max, 1, 256, &cap, &bytes)) return STEP_NOMEM;
        char *b = ms_realloc(r->buf, bytes);
        if (b == NULL) return STEP_NOMEM;
        r->buf = b;
        r->cap = cap;
    }
    r->buf[r->len++] = c;
    if (content) r->content++;
    return STEP_OK;
}

static step new_field(ms_csv *r) {
    if (r->nfields == r->lim.max_fields) return STEP_FIELDS;
    if (r->nfields == r->fcap) {
        size_t cap, bytes;
        if (!next_cap(r->fcap, r->nfields + 1, r->lim.max_fields, sizeof *r->start, 16, &cap,
                      &bytes))
            return STEP_NOMEM;
        size_t *s = ms_realloc(r->start, bytes);
        if (s == NULL) return STEP_NOMEM;
        r->start = s;
        r->fcap = cap;
    }
    r->start[r->nfields++] = r->len;
    return STEP_OK;
}

static bool crlf_at(const ms_csv *r, size_t i) {
    return r->p[i] == '\r' && i + 1 < r->n && r->p[i + 1] == '\n';
}

/* Reads the record at pos into the buffer. On STEP_FORMAT why holds the reason; r->line is the
 * line to report. */
static step read_record(ms_csv *r, char *why, size_t why_cap) {
    const char *p = r->p;
    size_t n = r->n, i = r->pos;
    step s;
    for (;;) {
        if ((s = new_field(r)) != STEP_OK) return s;
        if (i < n && p[i] == '"') {
            size_t opened = r->line;
            i++;
            for (;;) {
                if (i >= n) {
                    r->line = opened; /* where the quote opened, not the end of the file */
                    snprintf(why, why_cap, "a quoted field is not closed");
                    return STEP_FORMAT;
                }
                char c = p[i];
                if (c == '"') {
                    if (i + 1 < n && p[i + 1] == '"') {
                        if ((s = put(r, '"', true)) != STEP_OK) return s;
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (c == '\0') {
                    snprintf(why, why_cap, "a NUL byte");
                    return STEP_FORMAT;
                }
                if ((s = put(r, c, true)) != STEP_OK) return s;
                if (c == '\n') r->line++;
                i++;
            }
            if (i < n && p[i] != ',' && p[i] != '\n' && !crlf_at(r, i)) {
                snprintf(why, why_cap, "text after the closing quote of field %zu", r->nfields);
                return STEP_FORMAT;
            }
        } else {
            while (i < n && p[i] != ',' && p[i] != '\n') {
                char c = p[i];
                if (c == '"') {
                    snprintf(why, why_cap,
                             "a quote inside unquoted field %zu (quote the whole "
                             "field and double the quote)",
                             r->nfields);
                    return STEP_FORMAT;
                }
                if (c == '\r') {
                    if (crlf_at(r, i)) break;
                    snprintf(why, why_cap, "a carriage return inside field %zu", r->nfields);
                    return STEP_FORMAT;
                }
                if (c == '\0') {
                    snprintf(why, why_cap, "a NUL byte");
                    return STEP_FORMAT;
                }
                if ((s = put(r, c, true)) != STEP_OK) return s;
                i++;
            }
        }
        if ((s = put(r, '\0', false)) != STEP_OK) return s;
        if (i < n && p[i] == ',') {
            i++;
            continue;
        }
        if (i < n && p[i] == '\r') i++; /* only ever the CR of a CRLF here */
        if (i < n && p[i] == '\n') {
            i++;
            r->line++;
        }
        break;
    }
    r->pos = i;
    return STEP_OK;
}

ms_status ms_csv_next(ms_csv *r, bool *got, ms_err *err) {
    if (r == NULL || got == NULL)
        return ms_fail(err, MS_EINVAL, "%s: ms_csv_next: NULL %s", r ? r->name : "csv",
                       r ? "got" : "reader");
    if (r->failed != MS_OK) {
        if (err) *err = r->failed_err;
        return r->failed;
    }
    r->nfields = 0;
    r->len = 0;
    r->content = 0;
    r->rec_line = 0;
    if (!r->end) {
        /* skip empty lines */
        const char *p = r->p;
        while (r->pos < r->n && (p[r->pos] == '\n' || crlf_at(r, r->pos))) {
            r->pos += p[r->pos] == '\r' ? 2 : 1;
            r->line++;
        }
        if (r->pos >= r->n) r->end = true;
    }
    if (r->end) {
        *got = false;
        return MS_OK;
    }
    r->rec_line = r->line;
    char why[128];
    why[0] = '\0';
    step s = read_record(r, why, sizeof why);
    if (s == STEP_OK) {
        *got = true;
        return MS_OK;
    }
    ms_status st;
    ms_err *e = &r->failed_err;
    switch (s) {
    case STEP_FORMAT:
        st = ms_fail(e, MS_EFORMAT, "%s:%zu: malformed CSV: %s", r->name, r->line, why);
        break;
    case STEP_FIELDS:
        st = ms_fail(e, MS_ELIMIT, "%s:%zu: a record with more than %u fields (the limit)", r->name,
                     r->rec_line, r->lim.max_fields);
        break;
    case STEP_BYTES:
        st = ms_fail(e, MS_ELIMIT,
                     "%s:%zu: a record longer than %zu bytes (the limit), in field %zu", r->name,
                     r->rec_line, r->lim.max_record_bytes, r->nfields);
        break;
    case STEP_OK:
    case STEP_NOMEM:
    default: st = ms_fail(e, MS_ENOMEM, "%s:%zu: out of memory", r->name, r->rec_line); break;
    }
    r->failed = st;
    r->nfields = 0;
    r->len = 0;
    r->rec_line = 0;
    if (err) *err = *e;
    return st;
}
