/* libFuzzer target: the CSV record reader (medscreen/csv.h). The input is CSV text.
 *
 * Every record is read with every accessor (fields NUL-terminated with no NUL inside, lengths
 * that add up, record lines increasing, the limits respected). The accepted records are
 * written back out with every field quoted and read again: the same records must come back.
 * A second reader with tight limits runs in step with the first: it must return the same
 * records until it stops, and may stop only with MS_ELIMIT or the first reader's own error.
 * Failures must name the input and stay put (sticky). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/csv.h"
#include "medscreen/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
    if (!ok) abort();
}

/* Checks the current record against the limits and returns the sum of its field lengths. */
static size_t check_record(const ms_csv *r, const ms_csv_limits *lim) {
    size_t nf = ms_csv_nfields(r), total = 0;
    check(nf >= 1 && nf <= lim->max_fields && ms_csv_line(r) >= 1);
    for (size_t i = 0; i < nf; i++) {
        size_t len = SIZE_MAX;
        const char *f = ms_csv_field(r, i, &len);
        check(f != NULL && len != SIZE_MAX && f[len] == '\0' && strlen(f) == len);
        total += len;
    }
    check(total <= lim->max_record_bytes);
    check(ms_csv_field(r, nf, NULL) == NULL);
    return total;
}

static bool same_record(const ms_csv *a, const ms_csv *b) {
    size_t nf = ms_csv_nfields(a);
    if (nf != ms_csv_nfields(b)) return false;
    for (size_t i = 0; i < nf; i++) {
        size_t la = 0, lb = 0;
        const char *x = ms_csv_field(a, i, &la), *y = ms_csv_field(b, i, &lb);
        if (la != lb || memcmp(x, y, la) != 0) return false;
    }
    return true;
}

static void emit_record(ms_buf *b, const ms_csv *r) {
    for (size_t i = 0; i < ms_csv_nfields(r); i++) {
        size_t len = 0;
        const char *f = ms_csv_field(r, i, &len);
        ms_buf_append(b, i ? ",\"" : "\"", i ? 2 : 1);
        for (size_t k = 0; k < len; k++)
            ms_buf_append(b, f[k] == '"' ? "\"\"" : f + k, f[k] == '"' ? 2 : 1);
        ms_buf_append(b, "\"", 1);
    }
    ms_buf_append(b, "\r\n", 2); /* CRLF here, LF in most inputs: both paths */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    ms_csv_limits lim = {256, 1u << 16};
    ms_csv_limits tight = {4, 32};
    ms_csv *r = NULL, *t = NULL;
    check(ms_csv_create(text, size, "fuzz", &lim, &r, NULL) == MS_OK);
    check(ms_csv_create(text, size, "fuzz", &tight, &t, NULL) == MS_OK);

    ms_buf out = {0};
    size_t records = 0, last_line = 0;
    bool t_alive = true;
    ms_status st;
    ms_err err;
    for (;;) {
        bool got = false;
        st = ms_csv_next(r, &got, &err);
        ms_err terr = {0};
        bool tgot = false;
        ms_status tst = t_alive ? ms_csv_next(t, &tgot, &terr) : MS_ELIMIT;
        if (st != MS_OK) {
            check(err.status == st && strncmp(err.msg, "fuzz:", 5) == 0);
            check(st == MS_EFORMAT || st == MS_ELIMIT || st == MS_ENOMEM);
            check(ms_csv_nfields(r) == 0 && ms_csv_line(r) == 0);
            /* sticky */
            ms_err again;
            check(ms_csv_next(r, &got, &again) == st && strcmp(again.msg, err.msg) == 0);
            /* the tight reader, if still going, fails here too */
            if (t_alive) {
                check(tst == st || tst == MS_ELIMIT);
                if (tst == st && st != MS_ELIMIT) check(strcmp(terr.msg, err.msg) == 0);
            }
            break;
        }
        if (t_alive) {
            if (tst == MS_OK) {
                check(tgot == got);
                if (got) check(same_record(r, t) && ms_csv_line(r) == ms_csv_line(t));
            } else {
                /* the tight reader stops early only for its limits */
                check(tst == MS_ELIMIT && terr.status == MS_ELIMIT &&
                      strncmp(terr.msg, "fuzz:", 5) == 0);
                check(got);
                t_alive = false;
            }
        }
        if (!got) break;
        check(ms_csv_line(r) > last_line);
        last_line = ms_csv_line(r);
        (void)check_record(r, &lim);
        emit_record(&out, r);
        records++;
    }
    ms_csv_destroy(t);

    /* write the accepted records back and read them again: the same records */
    if (!out.oom && records > 0) {
        ms_csv *r2 = NULL;
        ms_csv *r1 = NULL;
        check(ms_csv_create(text, size, "fuzz", &lim, &r1, NULL) == MS_OK);
        check(ms_csv_create(out.p, out.len, "fuzz-again", &lim, &r2, NULL) == MS_OK);
        for (size_t k = 0; k < records; k++) {
            bool g1 = false, g2 = false;
            check(ms_csv_next(r1, &g1, NULL) == MS_OK && g1);
            if (ms_csv_next(r2, &g2, &err) != MS_OK) {
                fprintf(stderr, "re-read failed: %s\n", err.msg);
                abort();
            }
            check(g2 && same_record(r1, r2));
        }
        bool g2 = true;
        check(ms_csv_next(r2, &g2, NULL) == MS_OK && !g2);
        ms_csv_destroy(r1);
        ms_csv_destroy(r2);
    }
    ms_buf_free(&out);
    ms_csv_destroy(r);
    return 0;
}
