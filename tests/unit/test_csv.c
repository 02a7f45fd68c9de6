/* Unit tests of the CSV record reader (src/core/csv.c): quoting, embedded separators, line ends
 * and byte order marks, every rejection with its line, the limits, the argument checks and
 * allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_hooks.h"
#include "medscreen/csv.h"

/* The records of text, written as "line:field|field|...\n" per record, so one string compare
 * checks fields, their count and each record's first line. NULs inside fields would show. */
static char *dump_n(const char *text, size_t len, const ms_csv_limits *lim) {
    ms_csv *r = NULL;
    ms_err err = {0};
    if (ms_csv_create(text, len, "t.csv", lim, &r, &err) != MS_OK)
        fail_msg("create failed: %s", err.msg);
    size_t cap = 4 * len + 64, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    size_t last_line = 0;
    for (;;) {
        bool got = false;
        ms_status st = ms_csv_next(r, &got, &err);
        if (st != MS_OK) fail_msg("%.*s: %s", (int)len, text, err.msg);
        if (!got) break;
        assert_true(ms_csv_line(r) > last_line);
        last_line = ms_csv_line(r);
        assert_true(ms_csv_nfields(r) >= 1);
        n += (size_t)snprintf(out + n, cap - n, "%zu:", ms_csv_line(r));
        for (size_t i = 0; i < ms_csv_nfields(r); i++) {
            size_t fl = 0;
            const char *f = ms_csv_field(r, i, &fl);
            assert_non_null(f);
            assert_int_equal(strlen(f), fl);
            assert_true(n + fl + 3 < cap);
            if (i) out[n++] = '|';
            memcpy(out + n, f, fl);
            n += fl;
        }
        out[n++] = '\n';
        out[n] = '\0';
        assert_null(ms_csv_field(r, ms_csv_nfields(r), NULL));
    }
    /* the end is sticky */
    bool got = true;
    assert_int_equal(ms_csv_next(r, &got, &err), MS_OK);
    assert_false(got);
    assert_int_equal(ms_csv_nfields(r), 0);
    assert_int_equal(ms_csv_line(r), 0);
    assert_null(ms_csv_field(r, 0, NULL));
    ms_csv_destroy(r);
    return out;
}

static void expect_records(const char *text, const char *want) {
    char *got = dump_n(text, strlen(text), NULL);
    if (strcmp(got, want) != 0) fail_msg("%s:\n got  '%s'\n want '%s'", text, got, want);
    free(got);
}

/* Expects the records of text to fail with st, after `before` good records, with a message
 * that starts with "t.csv:<line>: " and holds want. */
static void expect_fail_lim(const char *text, size_t len, const ms_csv_limits *lim, size_t before,
                            ms_status want_st, size_t line, const char *want) {
    ms_csv *r = NULL;
    ms_err err = {0};
    assert_int_equal(ms_csv_create(text, len, "t.csv", lim, &r, &err), MS_OK);
    bool got = false;
    ms_status st;
    size_t k = 0;
    while ((st = ms_csv_next(r, &got, &err)) == MS_OK && got) k++;
    if (st != want_st)
        fail_msg("%.*s: status %s, want %s (%s)", (int)len, text, ms_status_name(st),
                 ms_status_name(want_st), err.msg);
    assert_int_equal(err.status, want_st);
    assert_int_equal(k, before);
    char at[64];
    snprintf(at, sizeof at, "t.csv:%zu: ", line);
    if (strncmp(err.msg, at, strlen(at)) != 0)
        fail_msg("%.*s: message '%s', want it to start with '%s'", (int)len, text, err.msg, at);
    if (want && strstr(err.msg, want) == NULL)
        fail_msg("%.*s: message '%s' lacks '%s'", (int)len, text, err.msg, want);
    assert_int_equal(ms_csv_nfields(r), 0);
    assert_null(ms_csv_field(r, 0, NULL));
    /* the error is sticky: the same status and message again, got untouched */
    ms_err again = {0};
    got = true;
    assert_int_equal(ms_csv_next(r, &got, &again), want_st);
    assert_true(got);
    assert_string_equal(again.msg, err.msg);
    assert_int_equal(ms_csv_next(r, &got, NULL), want_st);
    ms_csv_destroy(r);
}

static void expect_fail(const char *text, size_t before, size_t line, const char *want) {
    expect_fail_lim(text, strlen(text), NULL, before, MS_EFORMAT, line, want);
}

/* ---- accepted input ---- */

static void test_simple(void **state) {
    (void)state;
    expect_records("path,label\na.png,0\nb.png,1\n", "1:path|label\n2:a.png|0\n3:b.png|1\n");
    expect_records("path,label\na.png,0", "1:path|label\n2:a.png|0\n"); /* no final LF */
    expect_records("x", "1:x\n");
    expect_records(" a , b ", "1: a | b \n");                           /* no trimming */
    expect_records("caf\xc3\xa9,\xff\xfe", "1:caf\xc3\xa9|\xff\xfe\n"); /* bytes as they are */
}

static void test_empty_fields(void **state) {
    (void)state;
    expect_records(",", "1:|\n");
    expect_records(",,\n", "1:||\n");
    expect_records("a,,b,\n,x\n", "1:a||b|\n2:|x\n");
    expect_records("\"\"\n", "1:\n"); /* one empty quoted field */
    expect_records("\"\",\"\"", "1:|\n");
    expect_records("a,\"\"\r\n", "1:a|\n");
}

static void test_quoting(void **state) {
    (void)state;
    expect_records("\"a\",\"b c\"\n", "1:a|b c\n");
    expect_records("\"say \"\"hi\"\"\",x\n", "1:say \"hi\"|x\n");
    expect_records("\"\"\"\"\n", "1:\"\n");       /* a lone quote */
    expect_records("\"\"\"\"\"\"\n", "1:\"\"\n"); /* two */
    expect_records("\"a, \"\"b\"\"\",1,p.png\r\n", "1:a, \"b\"|1|p.png\n");
    expect_records("\"a,b\",\",\",\",,\"\n", "1:a,b|,|,,\n");
    /* newlines inside quotes are data; the record starts on its first line */
    expect_records("h\n\"two\nlines\",x\nnext\n", "1:h\n2:two\nlines|x\n4:next\n");
    expect_records("\"a\r\nb\",\"\r\",\"c\rd\"\n", "1:a\r\nb|\r|c\rd\n");
    expect_records("\"\n\n\n\"\nz", "1:\n\n\n\n5:z\n");
    /* quoted and unquoted in one record */
    expect_records("plain,\"quoted\",plain2", "1:plain|quoted|plain2\n");
}

static void test_line_ends(void **state) {
    (void)state;
    expect_records("a,b\r\nc,d\r\n", "1:a|b\n2:c|d\n");
    expect_records("a\r\nb\nc\r\n", "1:a\n2:b\n3:c\n"); /* mixed */
    expect_records("a,b\r\nc,d", "1:a|b\n2:c|d\n");
    /* empty lines are skipped but counted */
    expect_records("\n\r\n\na\n\n\r\nb\n\n", "4:a\n7:b\n");
    expect_records("", "");
    expect_records("\n", "");
    expect_records("\r\n\r\n", "");
}

static void test_bom(void **state) {
    (void)state;
    expect_records("\xEF\xBB\xBFpath,label\n", "1:path|label\n");
    expect_records("\xEF\xBB\xBF", "");
    expect_records("\xEF\xBB\xBF\n\nx", "3:x\n");
    expect_records("\xEF\xBB\xBF\"q\"", "1:q\n");
    /* only one, and only at the start */
    expect_records("\xEF\xBB\xBF\xEF\xBB\xBFx", "1:\xEF\xBB\xBFx\n");
    expect_records("a\n\xEF\xBB\xBF"
                   "b",
                   "1:a\n2:\xEF\xBB\xBF"
                   "b\n");
    expect_records("\xEF\xBB", "1:\xEF\xBB\n"); /* a partial BOM is data */
}

static void test_not_nul_terminated(void **state) {
    (void)state;
    /* the reader stops at len: the bytes after it are never read */
    const char text[] = "a,\"b\"\nc,d\"junk";
    char *got = dump_n(text, 9, NULL);
    assert_string_equal(got, "1:a|b\n2:c|d\n");
    free(got);
    got = dump_n(NULL, 0, NULL);
    assert_string_equal(got, "");
    free(got);
}

/* ---- rejections ---- */

static void test_reject(void **state) {
    (void)state;
    expect_fail("\"abc", 0, 1, "malformed CSV: a quoted field is not closed");
    expect_fail("h\nok\n\"abc\ndef\n", 2, 3, "a quoted field is not closed"); /* opening line */
    expect_fail("h\n\"a\",\"b\n\n\n", 1, 2, "a quoted field is not closed");
    expect_fail("\"ab\"c,d\n", 0, 1, "text after the closing quote of field 1");
    expect_fail("x,\"a\nb\" c\n", 0, 2, "text after the closing quote of field 2");
    expect_fail("\"a\" ,b", 0, 1, "text after the closing quote of field 1");
    expect_fail("\"a\"\r", 0, 1, "text after the closing quote of field 1"); /* CR, no LF */
    expect_fail("\"a\"\rb\n", 0, 1, "text after the closing quote of field 1");
    expect_fail("a,b\"c\n", 0, 1,
                "a quote inside unquoted field 2 (quote the whole field and double the quote)");
    expect_fail("ab\"", 0, 1, "a quote inside unquoted field 1");
    expect_fail("a\rb\n", 0, 1, "a carriage return inside field 1");
    expect_fail("a\n\n,b\r", 1, 3, "a carriage return inside field 2");
    expect_fail("\r", 0, 1, "a carriage return inside field 1"); /* a lone CR is no empty line */
    expect_fail("h\n\r\r\n", 1, 2, "a carriage return inside field 1");
    expect_fail_lim("a,b\0c\n", 6, NULL, 0, MS_EFORMAT, 1, "malformed CSV: a NUL byte");
    expect_fail_lim("ok\n\"a\nb\0\"\n", 10, NULL, 1, MS_EFORMAT, 3, "a NUL byte");
    expect_fail_lim("\0", 1, NULL, 0, MS_EFORMAT, 1, "a NUL byte");
    /* an error after good records: those records were all returned */
    expect_fail("a\nb\nc\"\n", 2, 3, "quote inside unquoted field 1");
}

static void test_limits(void **state) {
    (void)state;
    ms_csv_limits def = ms_csv_limits_default();
    assert_int_equal(def.max_fields, 1024);
    assert_int_equal(def.max_record_bytes, (size_t)1 << 20);

    ms_csv_limits lim = {3, 8};
    char *got = dump_n("a,b,c\n12345678\n\"1234567\"\"\",,\n", 29, &lim); /* exactly at both */
    assert_string_equal(got, "1:a|b|c\n2:12345678\n3:1234567\"||\n");
    free(got);
    expect_fail_lim("a,b,c,d\n", 8, &lim, 0, MS_ELIMIT, 1, "more than 3 fields");
    expect_fail_lim("ok\n,,,\n", 7, &lim, 1, MS_ELIMIT, 2, "more than 3 fields");
    expect_fail_lim("123456789\n", 10, &lim, 0, MS_ELIMIT, 1, "longer than 8 bytes");
    /* bytes count over the whole record, unescaped, NULs and quotes not included */
    expect_fail_lim("1234,5678,9", 11, &lim, 0, MS_ELIMIT, 1,
                    "longer than 8 bytes (the limit), in field 3");
    expect_fail_lim("x\n\"12\n34\n56\n789\"", 16, &lim, 1, MS_ELIMIT, 2, "in field 1");

    /* the defaults: 1024 fields pass, 1025 do not; 1 MiB passes, one more byte does not */
    size_t n = 1025 * 2;
    char *t = malloc(n);
    assert_non_null(t);
    for (size_t i = 0; i < n; i++) t[i] = i % 2 ? ',' : 'x';
    t[2 * 1024 - 1] = '\n';
    ms_csv *r = NULL;
    assert_int_equal(ms_csv_create(t, 2 * 1024, "t.csv", NULL, &r, NULL), MS_OK);
    bool ok = false;
    assert_int_equal(ms_csv_next(r, &ok, NULL), MS_OK);
    assert_true(ok);
    assert_int_equal(ms_csv_nfields(r), 1024);
    ms_csv_destroy(r);
    t[2 * 1024 - 1] = ',';
    expect_fail_lim(t, n - 1, NULL, 0, MS_ELIMIT, 1, "more than 1024 fields");
    free(t);

    n = ((size_t)1 << 20) + 3;
    t = malloc(n);
    assert_non_null(t);
    memset(t, 'b', n);
    t[0] = '"';
    t[n - 2] = '"';
    t[n - 1] = '\n';
    assert_int_equal(ms_csv_create(t, n, "t.csv", NULL, &r, NULL), MS_OK);
    ok = false;
    assert_int_equal(ms_csv_next(r, &ok, NULL), MS_OK);
    size_t fl = 0;
    assert_non_null(ms_csv_field(r, 0, &fl));
    assert_int_equal(fl, (size_t)1 << 20);
    ms_csv_destroy(r);
    t[n - 2] = 'b';
    expect_fail_lim(t + 1, n - 1, NULL, 0, MS_ELIMIT, 1, "longer than 1048576 bytes");
    free(t);
}

static void test_invalid_args(void **state) {
    (void)state;
    ms_csv *r = (ms_csv *)0x1;
    ms_err err = {0};
    assert_int_equal(ms_csv_create(NULL, 1, "t.csv", NULL, &r, &err), MS_EINVAL);
    assert_ptr_equal(r, (ms_csv *)0x1);
    assert_true(strncmp(err.msg, "t.csv: ", 7) == 0);
    assert_int_equal(ms_csv_create("a", 1, "t.csv", NULL, NULL, &err), MS_EINVAL);
    ms_csv_limits zero = {0, 10};
    assert_int_equal(ms_csv_create("a", 1, "t.csv", &zero, &r, &err), MS_EINVAL);
    zero = (ms_csv_limits){10, 0};
    assert_int_equal(ms_csv_create("a", 1, "t.csv", &zero, &r, &err), MS_EINVAL);
    assert_ptr_equal(r, (ms_csv *)0x1);

    bool got = true;
    assert_int_equal(ms_csv_next(NULL, &got, &err), MS_EINVAL);
    assert_true(got);
    r = NULL;
    assert_int_equal(ms_csv_create("a", 1, NULL, NULL, &r, &err), MS_OK); /* name: "csv" */
    assert_int_equal(ms_csv_next(r, NULL, &err), MS_EINVAL);
    assert_true(strncmp(err.msg, "csv: ", 5) == 0);
    ms_csv_destroy(r);
    r = NULL;
    assert_int_equal(ms_csv_create("\"", 1, NULL, NULL, &r, NULL), MS_OK);
    assert_int_equal(ms_csv_next(r, &got, &err), MS_EFORMAT);
    assert_true(strncmp(err.msg, "csv:1: malformed CSV: ", 22) == 0);
    ms_csv_destroy(r);

    assert_int_equal(ms_csv_nfields(NULL), 0);
    assert_null(ms_csv_field(NULL, 0, NULL));
    assert_int_equal(ms_csv_line(NULL), 0);
    ms_csv_destroy(NULL);
}

/* ---- allocation failures ---- */

static void test_alloc_failures(void **state) {
    (void)state;
    /* records big enough for several buffer and field-table growths */
    size_t cap = 64 * 1024, n = 0;
    char *t = malloc(cap);
    assert_non_null(t);
    n += (size_t)snprintf(t + n, cap - n, "\xEF\xBB\xBFpath,label,note\r\n");
    for (int k = 0; k < 40; k++)
        n += (size_t)snprintf(t + n, cap - n,
                              "dir/scan_%03d.png,%d,\"a, \"\"long\"\"\nnote %0*d\"\r\n", k, k % 2,
                              20 * k, k);
    for (int k = 0; k < 100; k++) n += (size_t)snprintf(t + n, cap - n, "%sf%d", k ? "," : "", k);
    assert_true(n < cap);
    long fail_at;
    for (fail_at = 1;; fail_at++) {
        hook_state hs = {.fail_at = fail_at};
        hooks_install(&hs);
        ms_csv *r = NULL;
        ms_err err = {0};
        size_t records = 0, last_nf = 0;
        ms_status st = ms_csv_create(t, n, "t.csv", NULL, &r, &err);
        if (st == MS_OK) {
            bool got = false;
            while ((st = ms_csv_next(r, &got, &err)) == MS_OK && got) {
                records++;
                last_nf = ms_csv_nfields(r);
            }
        }
        ms_csv_destroy(r);
        ms_alloc_set_hooks(NULL);
        assert_int_equal(hs.live, 0);
        if (st == MS_OK) {
            assert_int_equal(records, 42);
            assert_int_equal(last_nf, 100);
            break;
        }
        assert_int_equal(st, MS_ENOMEM);
        assert_true(strncmp(err.msg, "t.csv", 5) == 0);
        assert_non_null(strstr(err.msg, "out of memory"));
        assert_true(fail_at < 50);
    }
    assert_true(fail_at > 4); /* reader, buffer growths, field table growths */
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),       cmocka_unit_test(test_empty_fields),
        cmocka_unit_test(test_quoting),      cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_bom),          cmocka_unit_test(test_not_nul_terminated),
        cmocka_unit_test(test_reject),       cmocka_unit_test(test_limits),
        cmocka_unit_test(test_invalid_args), cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
