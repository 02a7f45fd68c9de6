/* Unit tests of the strict JSON reader (src/core/json_read.c): documents written by our own
 * writer read back exactly, every rejection with its status and offset, the limits, lookups,
 * and allocation failures. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "alloc_hooks.h"
#include "medscreen/json.h"
#include "medscreen/json_read.h"

static ms_jdoc *parse_ok(const char *text) {
    ms_jdoc *d = NULL;
    ms_err err = {0};
    ms_status st = ms_json_parse(text, strlen(text), "t.json", NULL, &d, &err);
    if (st != MS_OK) fail_msg("parse of %s failed: %s", text, err.msg);
    assert_non_null(d);
    return d;
}

/* Expects st and a message holding "t.json: offset <off> " and, if given, want. */
static void expect_fail_n(const char *text, size_t len, ms_status want_st, size_t off,
                          const char *want) {
    ms_jdoc *d = (ms_jdoc *)0x1;
    ms_err err = {0};
    ms_status st = ms_json_parse(text, len, "t.json", NULL, &d, &err);
    if (st != want_st)
        fail_msg("%.*s: status %s, want %s (%s)", (int)len, text, ms_status_name(st),
                 ms_status_name(want_st), err.msg);
    assert_ptr_equal(d, (ms_jdoc *)0x1); /* untouched on failure */
    assert_int_equal(err.status, want_st);
    char at[64];
    snprintf(at, sizeof at, "t.json: offset %zu ", off);
    if (strncmp(err.msg, at, strlen(at)) != 0)
        fail_msg("%.*s: message '%s', want it to start with '%s'", (int)len, text, err.msg, at);
    if (want && strstr(err.msg, want) == NULL)
        fail_msg("%.*s: message '%s' lacks '%s'", (int)len, text, err.msg, want);
}

static void expect_fail(const char *text, ms_status st, size_t off, const char *want) {
    expect_fail_n(text, strlen(text), st, off, want);
}

static double num_at(const ms_jval *root, const char *path) {
    double v = NAN;
    if (!ms_jval_num(ms_jval_path(root, path), &v)) fail_msg("%s is not a number", path);
    return v;
}

static const char *str_at(const ms_jval *root, const char *path) {
    const char *s = ms_jval_str(ms_jval_path(root, path), NULL);
    if (s == NULL) fail_msg("%s is not a string", path);
    return s;
}

/* ---- round trips through the project's writer ---- */

static void test_writer_roundtrip(void **state) {
    (void)state;
    ms_json o, input, model, empty;
    ms_json_init(&o);
    ms_json_int(&o, "schema_version", 1);
    ms_json_str(&o, "status", "ok");
    ms_json_str(&o, "path", "dir/\"quoted\"\\back\tslash\n\x01\x7f");
    ms_json_str(&o, "name", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    ms_json_str(&o, "bad_utf8", "a\377b"); /* the writer makes the 0xff U+FFFD */
    ms_json_num(&o, "score", 0.123456789);
    ms_json_num(&o, "neg", -2.5e-7);
    ms_json_num(&o, "big", 6.02214076e23);
    ms_json_num(&o, "nan", NAN);
    ms_json_int(&o, "min", INT64_MIN);
    ms_json_uint(&o, "max", UINT64_MAX);
    ms_json_bool(&o, "flag", true);
    ms_json_bool(&o, "off", false);
    ms_json_null(&o, "nothing");
    ms_json_init(&input);
    ms_json_str(&input, "sha256", "ab12");
    ms_json_uint(&input, "bytes", 1234);
    ms_json_obj(&o, "input", &input);
    ms_json_init(&model);
    ms_json_init(&empty);
    ms_json_obj(&model, "empty", &empty);
    ms_json_obj(&o, "model", &model);
    /* an array of region objects, rendered the way the report layer does */
    ms_buf arr = {0};
    ms_buf_puts(&arr, "[");
    for (int r = 0; r < 3; r++) {
        ms_json reg;
        ms_json_init(&reg);
        ms_json_num(&reg, "score", 0.5 + r);
        ms_json_int(&reg, "x", -r);
        if (r) ms_buf_puts(&arr, ",");
        assert_true(ms_json_render(&reg, &arr));
        ms_json_free(&reg);
    }
    ms_buf_puts(&arr, ",[],[[1,2],[]]]");
    ms_json_raw(&o, "regions", &arr);
    ms_buf text = {0};
    assert_true(ms_json_render(&o, &text));
    ms_json_free(&o);

    ms_jdoc *d = parse_ok(text.p);
    const ms_jval *root = ms_jdoc_root(d);
    assert_int_equal(ms_jval_type(root), MS_JOBJ);
    assert_int_equal(ms_jval_len(root), 17);
    /* document order is the writer's sorted order */
    size_t kl = 0;
    assert_string_equal(ms_jval_key_at(root, 0, &kl), "bad_utf8");
    assert_int_equal(kl, 8);
    assert_string_equal(ms_jval_key_at(root, 16, NULL), "status");
    assert_null(ms_jval_key_at(root, 17, NULL));

    assert_true(num_at(root, "schema_version") == 1.0);
    assert_string_equal(str_at(root, "status"), "ok");
    assert_string_equal(str_at(root, "path"), "dir/\"quoted\"\\back\tslash\n\x01\x7f");
    assert_string_equal(str_at(root, "name"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_string_equal(str_at(root, "bad_utf8"), "a\357\277\275b");
    /* %.6g: what the writer wrote is what we read, to the last bit of strtod */
    assert_true(num_at(root, "score") == strtod("0.123457", NULL));
    assert_true(num_at(root, "neg") == -2.5e-7);
    assert_true(num_at(root, "big") == strtod("6.02214e+23", NULL));
    assert_true(num_at(root, "min") == -9223372036854775808.0);
    assert_true(num_at(root, "max") == 18446744073709551615.0);
    assert_int_equal(ms_jval_type(ms_jval_get(root, "nan")), MS_JNULL);
    assert_non_null(ms_jval_get(root, "nan"));
    bool b = false;
    assert_true(ms_jval_bool(ms_jval_get(root, "flag"), &b) && b);
    assert_true(ms_jval_bool(ms_jval_get(root, "off"), &b) && !b);
    assert_int_equal(ms_jval_type(ms_jval_get(root, "nothing")), MS_JNULL);
    assert_string_equal(str_at(root, "input.sha256"), "ab12");
    assert_true(num_at(root, "input.bytes") == 1234.0);
    assert_int_equal(ms_jval_type(ms_jval_path(root, "model.empty")), MS_JOBJ);
    assert_int_equal(ms_jval_len(ms_jval_path(root, "model.empty")), 0);

    const ms_jval *regions = ms_jval_get(root, "regions");
    assert_int_equal(ms_jval_type(regions), MS_JARR);
    assert_int_equal(ms_jval_len(regions), 5);
    for (int r = 0; r < 3; r++) {
        const ms_jval *reg = ms_jval_at(regions, (size_t)r);
        assert_true(num_at(reg, "score") == 0.5 + r);
        assert_true(num_at(reg, "x") == -r);
    }
    assert_true(num_at(root, "regions.2.score") == 2.5);
    assert_int_equal(ms_jval_len(ms_jval_path(root, "regions.3")), 0);
    assert_true(num_at(root, "regions.4.0.1") == 2.0);
    assert_int_equal(ms_jval_type(ms_jval_path(root, "regions.4.1")), MS_JARR);
    ms_jdoc_destroy(d);
    ms_buf_free(&text);
}

static void test_scalars(void **state) {
    (void)state;
    struct {
        const char *text;
        ms_jtype type;
    } cases[] = {{"null", MS_JNULL}, {"true", MS_JBOOL},  {" false ", MS_JBOOL},
                 {"0", MS_JNUM},     {"\"\"", MS_JSTR},   {"\t\r\n[]\n", MS_JARR},
                 {"{ }", MS_JOBJ},   {"-0.5e+1", MS_JNUM}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ms_jdoc *d = parse_ok(cases[k].text);
        assert_int_equal(ms_jval_type(ms_jdoc_root(d)), cases[k].type);
        ms_jdoc_destroy(d);
    }
    ms_jdoc *d = parse_ok("\"\"");
    size_t len = 99;
    assert_string_equal(ms_jval_str(ms_jdoc_root(d), &len), "");
    assert_int_equal(len, 0);
    ms_jdoc_destroy(d);
}

static void test_strings(void **state) {
    (void)state;
    ms_jdoc *d = parse_ok("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", "
                          "\"\\ud83d\\ude00\", \"a\\u0000b\", \"\x7f\xc3\xa9\xf4\x8f\xbf\xbf\","
                          "\"\\uFFFF\\uE000\\uDBFF\\uDFFF\"]");
    const ms_jval *a = ms_jdoc_root(d);
    size_t len;
    assert_string_equal(ms_jval_str(ms_jval_at(a, 0), NULL), "\"\\/\b\f\n\r\t");
    assert_string_equal(ms_jval_str(ms_jval_at(a, 1), NULL), "\xc3\xa9\xe2\x82\xac");
    assert_string_equal(ms_jval_str(ms_jval_at(a, 2), NULL), "\xf0\x9f\x98\x80");
    const char *nul = ms_jval_str(ms_jval_at(a, 3), &len);
    assert_int_equal(len, 3);
    assert_memory_equal(nul, "a\0b", 4); /* and still NUL-terminated */
    assert_string_equal(ms_jval_str(ms_jval_at(a, 4), NULL), "\x7f\xc3\xa9\xf4\x8f\xbf\xbf");
    assert_string_equal(ms_jval_str(ms_jval_at(a, 5), &len),
                        "\xef\xbf\xbf\xee\x80\x80\xf4\x8f\xbf\xbf");
    assert_int_equal(len, 10);
    ms_jdoc_destroy(d);

    /* keys are unescaped too, and compared after unescaping */
    d = parse_ok("{\"caf\\u00e9\": 1, \"k\\u0000\": 2}");
    assert_true(num_at(ms_jdoc_root(d), "caf\xc3\xa9") == 1.0);
    assert_int_equal(ms_jval_len(ms_jdoc_root(d)), 2);
    assert_memory_equal(ms_jval_key_at(ms_jdoc_root(d), 1, &len), "k\0", 2);
    assert_int_equal(len, 2);
    assert_null(ms_jval_get(ms_jdoc_root(d), "k")); /* a C-string lookup cannot name it */
    ms_jdoc_destroy(d);
}

static void test_numbers(void **state) {
    (void)state;
    struct {
        const char *text;
        double want;
    } cases[] = {
        {"0", 0.0},
        {"-0", -0.0},
        {"7", 7.0},
        {"-12", -12.0},
        {"0.5", 0.5},
        {"-0.125", -0.125},
        {"1e3", 1000.0},
        {"1E+3", 1000.0},
        {"25e-2", 0.25},
        {"1.23457e+08", 1.23457e+08},
        {"1e-07", 1e-07},
        {"-4.2e-05", -4.2e-05},
        {"1.7976931348623157e308", 1.7976931348623157e308},
        {"123456789012345678901234567890", 1.2345678901234568e29},
        {"1e-400", 0.0}, /* underflow rounds to zero */
        {"4.9406564584124654e-324", 4.9406564584124654e-324},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ms_jdoc *d = parse_ok(cases[k].text);
        double v;
        assert_true(ms_jval_num(ms_jdoc_root(d), &v));
        if (v != cases[k].want || signbit(v) != signbit(cases[k].want))
            fail_msg("%s: got %.17g", cases[k].text, v);
        ms_jdoc_destroy(d);
    }
    /* 512 characters is the cap: exactly that is fine */
    char num[MS_JSON_MAX_NUMBER_CHARS + 2];
    memset(num, '0', sizeof num);
    num[0] = '1', num[1] = '.';
    num[MS_JSON_MAX_NUMBER_CHARS] = '\0';
    ms_jdoc *d = parse_ok(num);
    ms_jdoc_destroy(d);
    num[MS_JSON_MAX_NUMBER_CHARS] = '0';
    num[MS_JSON_MAX_NUMBER_CHARS + 1] = '\0';
    expect_fail(num, MS_ELIMIT, 0, "number of 513 characters, over the limit of 512");
}

/* ---- rejections ---- */

static void test_reject_syntax(void **state) {
    (void)state;
    expect_fail("", MS_EFORMAT, 0, "(line 1, column 1): expected a value, found end of input");
    expect_fail("  \n ", MS_EFORMAT, 4, "(line 2, column 2): expected a value");
    expect_fail("{} x", MS_EFORMAT, 3, "expected the end of input after the top-level value");
    expect_fail("1 2", MS_EFORMAT, 2, "found '2'");
    expect_fail("[1] ]", MS_EFORMAT, 4, NULL);
    expect_fail_n("null\0", 5, MS_EFORMAT, 4, "found byte 0x00");
    /* trailing commas */
    expect_fail("[1,2,]", MS_EFORMAT, 5, "trailing comma before ']'");
    expect_fail("{\"a\":1, }", MS_EFORMAT, 8, "trailing comma before '}'");
    expect_fail("[,1]", MS_EFORMAT, 1, "expected a value, found ','");
    expect_fail("[1,,2]", MS_EFORMAT, 3, "expected a value, found ','");
    expect_fail("{,}", MS_EFORMAT, 1, "expected a string key, found ','");
    /* comments */
    expect_fail("// c\n1", MS_EFORMAT, 0, "expected a value, found '/'");
    expect_fail("[1 /* c */]", MS_EFORMAT, 3, "expected ',' or ']' after an array element");
    expect_fail("{\"a\":1 # c\n}", MS_EFORMAT, 7, "expected ',' or '}' after an object member");
    /* structure */
    expect_fail("[1", MS_EFORMAT, 2, "found end of input");
    expect_fail("{\"a\"", MS_EFORMAT, 4, "expected ':' after the key, found end of input");
    expect_fail("{\"a\" 1}", MS_EFORMAT, 5, "expected ':' after the key, found '1'");
    expect_fail("{\"a\":}", MS_EFORMAT, 5, "expected a value, found '}'");
    expect_fail("{a:1}", MS_EFORMAT, 1, "expected a string key, found 'a'");
    expect_fail("{'a':1}", MS_EFORMAT, 1, "expected a string key, found '''");
    expect_fail("[1}", MS_EFORMAT, 2, "expected ',' or ']'");
    expect_fail("{\"a\":1]", MS_EFORMAT, 6, "expected ',' or '}'");
    expect_fail("\xef\xbb\xbf{}", MS_EFORMAT, 0, "byte order mark");
    expect_fail("[\x0c]", MS_EFORMAT, 1, "found byte 0x0c"); /* form feed is not whitespace */
    /* literals */
    expect_fail("nul", MS_EFORMAT, 0, "invalid literal, expected 'null'");
    expect_fail("True", MS_EFORMAT, 0, "found 'T'");
    expect_fail("[tru]", MS_EFORMAT, 1, "expected 'true'");
    expect_fail("falsey", MS_EFORMAT, 5, "expected the end of input");
    expect_fail("NaN", MS_EFORMAT, 0, "found 'N'");
    expect_fail("[Infinity]", MS_EFORMAT, 1, "found 'I'");
    expect_fail("-Infinity", MS_EFORMAT, 1, "expected a digit after '-', found 'I'");
    expect_fail("undefined", MS_EFORMAT, 0, NULL);
}

static void test_reject_numbers(void **state) {
    (void)state;
    expect_fail("01", MS_EFORMAT, 0, "leading zeros are not allowed");
    expect_fail("[-012]", MS_EFORMAT, 1, "leading zeros");
    expect_fail("00.5", MS_EFORMAT, 0, "leading zeros");
    expect_fail("+1", MS_EFORMAT, 0, "expected a value, found '+'");
    expect_fail(".5", MS_EFORMAT, 0, "found '.'");
    expect_fail("1.", MS_EFORMAT, 2, "expected a digit after '.', found end of input");
    expect_fail("1.e5", MS_EFORMAT, 2, "expected a digit after '.', found 'e'");
    expect_fail("1e", MS_EFORMAT, 2, "expected a digit in the exponent");
    expect_fail("1e+", MS_EFORMAT, 3, "expected a digit in the exponent");
    expect_fail("-", MS_EFORMAT, 1, "expected a digit after '-'");
    expect_fail("0x10", MS_EFORMAT, 1, "found 'x'");
    expect_fail("1.5.2", MS_EFORMAT, 3, NULL);
    expect_fail("[1e400]", MS_EFORMAT, 1, "number 1e400 overflows a double");
    expect_fail("-1.8e308", MS_EFORMAT, 0, "overflows a double");
    expect_fail("{\"s\": 2e308}", MS_EFORMAT, 6, "overflows");
}

static void test_reject_strings(void **state) {
    (void)state;
    expect_fail("\"abc", MS_EFORMAT, 0, "unterminated string");
    expect_fail("[\"a\\\"]", MS_EFORMAT, 1, "unterminated string");
    expect_fail("\"a\\", MS_EFORMAT, 0, "unterminated string");
    expect_fail("\"a\tb\"", MS_EFORMAT, 2, "raw control character 0x09");
    expect_fail("\"a\nb\"", MS_EFORMAT, 2, "raw control character 0x0a");
    expect_fail_n("\"a\0b\"", 5, MS_EFORMAT, 2, "raw control character 0x00");
    expect_fail("\"\\x41\"", MS_EFORMAT, 1, "invalid escape: backslash followed by 'x'");
    expect_fail("\"\\'\"", MS_EFORMAT, 1, "invalid escape");
    expect_fail("\"\\u12\"", MS_EFORMAT, 5, "expected 4 hex digits after \\u");
    expect_fail("\"\\u12g4\"", MS_EFORMAT, 5, "found 'g'");
    /* lone surrogates are rejected, not mapped to U+FFFD */
    expect_fail("\"\\ud800\"", MS_EFORMAT, 1, "lone high surrogate \\uD800");
    expect_fail("\"x\\uDBFFy\"", MS_EFORMAT, 2, "lone high surrogate");
    expect_fail("\"\\ud83d\\u0041\"", MS_EFORMAT, 1, "lone high surrogate");
    expect_fail("\"\\ud83d\\ud83d\"", MS_EFORMAT, 1, "lone high surrogate");
    expect_fail("\"\\ud83d\\n\"", MS_EFORMAT, 1, "lone high surrogate");
    expect_fail("\"\\ude00\"", MS_EFORMAT, 1, "lone low surrogate \\uDE00");
    expect_fail("\"\\ud83d\\uZ\"", MS_EFORMAT, 9, "expected 4 hex digits");
    /* invalid UTF-8 */
    expect_fail("\"\x80\"", MS_EFORMAT, 1, "invalid UTF-8 byte 0x80");
    expect_fail("\"ab\xc3\"", MS_EFORMAT, 3, "invalid UTF-8 byte 0xc3");
    expect_fail("\"\xc0\xaf\"", MS_EFORMAT, 1, "invalid UTF-8");         /* overlong */
    expect_fail("\"\xe0\x80\xaf\"", MS_EFORMAT, 1, "invalid UTF-8");     /* overlong */
    expect_fail("\"\xed\xa0\x80\"", MS_EFORMAT, 1, "invalid UTF-8");     /* surrogate */
    expect_fail("\"\xf4\x90\x80\x80\"", MS_EFORMAT, 1, "invalid UTF-8"); /* > U+10FFFF */
    expect_fail("\"\xff\"", MS_EFORMAT, 1, "invalid UTF-8 byte 0xff");
    expect_fail("{\"k\xfe\":1}", MS_EFORMAT, 3, "invalid UTF-8");
    /* outside strings, non-ASCII is just a bad token */
    expect_fail("\xc3\xa9", MS_EFORMAT, 0, "found byte 0xc3");
}

static void test_reject_duplicates(void **state) {
    (void)state;
    expect_fail("{\"score\":1,\"x\":2,\"score\":3}", MS_EFORMAT, 17,
                "duplicate key \"score\" (first at offset 1)");
    /* the same key after unescaping */
    expect_fail("{\"\\u0061\":1,\"a\":2}", MS_EFORMAT, 12, "duplicate key \"a\"");
    /* the earliest second occurrence is the one reported */
    expect_fail("{\"b\":1,\"a\":1,\"a\":2,\"b\":3}", MS_EFORMAT, 13,
                "duplicate key \"a\" (first at offset 7)");
    expect_fail("{\"z\":0,\"q\":1,\"q\":2,\"q\":3}", MS_EFORMAT, 13, "first at offset 7");
    /* a key a terminal should not see raw is shown escaped */
    expect_fail("{\"\\u001b[2J\":1,\"\\u001b[2J\":2}", MS_EFORMAT, 15,
                "duplicate key \"\\x1b[2J\"");
    /* an inner object's duplicate is found at its own close */
    expect_fail("{\"a\":{\"k\":1,\"k\":2},\"a\":3}", MS_EFORMAT, 12, "duplicate key \"k\"");
    /* the same key in different objects, and keys that are prefixes, are fine */
    ms_jdoc *d = parse_ok("{\"a\":{\"a\":1},\"b\":{\"a\":2},\"ab\":3,\"\":4,\"a\\u0000\":5}");
    assert_true(num_at(ms_jdoc_root(d), "b.a") == 2.0);
    assert_true(num_at(ms_jdoc_root(d), "ab") == 3.0);
    assert_true(ms_jval_num(ms_jval_get(ms_jdoc_root(d), ""), NULL));
    ms_jdoc_destroy(d);
}

static void test_error_position(void **state) {
    (void)state;
    expect_fail("{\n  \"a\": 1,\n  \"b\": [1, 2,, 3]\n}", MS_EFORMAT, 25,
                "(line 3, column 14): expected a value, found ','");
    expect_fail("[\r\n\r\n  tru ]", MS_EFORMAT, 7, "(line 3, column 3)");
    ms_jdoc *d = NULL;
    ms_err err = {0};
    assert_int_equal(ms_json_parse("[1,]", 4, NULL, NULL, &d, &err), MS_EFORMAT);
    const char *want = "json: offset 3 (line 1, column 4): trailing comma before ']'";
    assert_true(strncmp(err.msg, want, strlen(want)) == 0);
    /* a NULL err is fine */
    assert_int_equal(ms_json_parse("[1,]", 4, "t", NULL, &d, NULL), MS_EFORMAT);
    assert_null(d);
    /* the text need not be NUL-terminated: only len bytes are read */
    const char buf[] = {'[', '1', ']', '9'};
    assert_int_equal(ms_json_parse(buf, 3, "t", NULL, &d, &err), MS_OK);
    ms_jdoc_destroy(d);
}

static void test_invalid_args(void **state) {
    (void)state;
    ms_jdoc *d = NULL;
    ms_err err = {0};
    assert_int_equal(ms_json_parse("1", 1, "t", NULL, NULL, &err), MS_EINVAL);
    assert_int_equal(ms_json_parse(NULL, 1, "t", NULL, &d, &err), MS_EINVAL);
    assert_int_equal(ms_json_parse(NULL, 0, "t", NULL, &d, &err), MS_EFORMAT); /* empty */
    assert_null(d);
    ms_jdoc_destroy(NULL);
    /* accessors take NULL and the wrong types */
    assert_null(ms_jdoc_root(NULL));
    assert_int_equal(ms_jval_type(NULL), MS_JNULL);
    assert_int_equal(ms_jval_len(NULL), 0);
    assert_null(ms_jval_get(NULL, "a"));
    assert_null(ms_jval_at(NULL, 0));
    assert_null(ms_jval_key_at(NULL, 0, NULL));
    assert_false(ms_jval_num(NULL, NULL));
    assert_false(ms_jval_bool(NULL, NULL));
    assert_null(ms_jval_str(NULL, NULL));
    assert_null(ms_jval_path(NULL, "a"));
    d = parse_ok("{\"s\":\"1\",\"n\":1,\"b\":true,\"a\":[1]}");
    const ms_jval *r = ms_jdoc_root(d);
    double v;
    bool b;
    assert_false(ms_jval_num(ms_jval_get(r, "s"), &v));
    assert_false(ms_jval_bool(ms_jval_get(r, "n"), &b));
    assert_null(ms_jval_str(ms_jval_get(r, "n"), NULL));
    assert_null(ms_jval_get(ms_jval_get(r, "a"), "0"));
    assert_null(ms_jval_get(r, NULL));
    assert_int_equal(ms_jval_len(ms_jval_get(r, "s")), 0);
    assert_null(ms_jval_at(ms_jval_get(r, "a"), 1));
    assert_null(ms_jval_key_at(ms_jval_get(r, "a"), 0, NULL));
    /* ms_jval_at on an object reads member values in document order */
    assert_true(ms_jval_num(ms_jval_at(r, 1), &v) && v == 1.0);
    ms_jdoc_destroy(d);
}

/* ---- limits ---- */

static char *repeat(const char *open, size_t n, const char *mid, const char *close) {
    size_t lo = strlen(open), lm = strlen(mid), lc = strlen(close);
    char *s = malloc(n * (lo + lc) + lm + 1);
    assert_non_null(s);
    char *p = s;
    for (size_t k = 0; k < n; k++, p += lo) memcpy(p, open, lo);
    memcpy(p, mid, lm), p += lm;
    for (size_t k = 0; k < n; k++, p += lc) memcpy(p, close, lc);
    *p = '\0';
    return s;
}

static void test_depth_limit(void **state) {
    (void)state;
    ms_json_limits lim = ms_json_limits_default();
    assert_int_equal(lim.max_depth, 64);
    assert_int_equal(lim.max_nodes, 1000000);
    assert_int_equal(lim.max_bytes, 64u << 20);
    ms_jdoc *d = NULL;
    ms_err err = {0};
    char *ok = repeat("[", 64, "1", "]");
    assert_int_equal(ms_json_parse(ok, strlen(ok), "t", &lim, &d, &err), MS_OK);
    const ms_jval *v = ms_jdoc_root(d);
    for (int k = 0; k < 64; k++) v = ms_jval_at(v, 0);
    assert_true(ms_jval_num(v, NULL));
    ms_jdoc_destroy(d);
    free(ok);
    char *deep = repeat("{\"a\":", 65, "1", "}");
    d = NULL;
    assert_int_equal(ms_json_parse(deep, strlen(deep), "t", &lim, &d, &err), MS_ELIMIT);
    assert_null(d);
    assert_non_null(strstr(err.msg, "t: offset 320 (line 1, column 321): nesting deeper than 64"));
    free(deep);
    /* a million brackets fail at once, without recursion */
    char *huge = repeat("[", 1000000, "", "");
    assert_int_equal(ms_json_parse(huge, strlen(huge), "t", NULL, &d, &err), MS_ELIMIT);
    free(huge);
    /* depth 0: scalars only */
    lim.max_depth = 0;
    assert_int_equal(ms_json_parse("7", 1, "t", &lim, &d, &err), MS_OK);
    ms_jdoc_destroy(d);
    assert_int_equal(ms_json_parse("[]", 2, "t", &lim, &d, &err), MS_ELIMIT);
}

static void test_node_limit(void **state) {
    (void)state;
    ms_json_limits lim = ms_json_limits_default();
    lim.max_nodes = 4;
    ms_jdoc *d = NULL;
    ms_err err = {0};
    /* the root counts, containers count, keys do not */
    assert_int_equal(ms_json_parse("{\"a\":[1,2]}", 11, "t", &lim, &d, &err), MS_OK);
    ms_jdoc_destroy(d);
    assert_int_equal(ms_json_parse("[1,2,3,4]", 9, "t", &lim, &d, &err), MS_ELIMIT);
    assert_non_null(strstr(err.msg, "t: offset 7 (line 1, column 8): more than 4 values"));
    lim.max_nodes = 0;
    assert_int_equal(ms_json_parse("1", 1, "t", &lim, &d, &err), MS_ELIMIT);
    /* the default: a million values pass, one more does not */
    size_t n = 999999;
    char *arr = malloc(2 * n + 2);
    assert_non_null(arr);
    arr[0] = '[';
    for (size_t k = 0; k < n; k++) arr[1 + 2 * k] = '0', arr[2 + 2 * k] = ',';
    arr[2 * n] = ']';
    assert_int_equal(ms_json_parse(arr, 2 * n + 1, "t", NULL, &d, &err), MS_OK);
    assert_int_equal(ms_jval_len(ms_jdoc_root(d)), n);
    ms_jdoc_destroy(d);
    arr[2 * n] = ',';
    arr[2 * n + 1] = '0'; /* one element more, and no closing bracket needed to fail */
    assert_int_equal(ms_json_parse(arr, 2 * n + 2, "t", NULL, &d, &err), MS_ELIMIT);
    free(arr);
}

static void test_byte_limit(void **state) {
    (void)state;
    ms_json_limits lim = ms_json_limits_default();
    lim.max_bytes = 4;
    ms_jdoc *d = NULL;
    ms_err err = {0};
    assert_int_equal(ms_json_parse("[10]", 4, "t", &lim, &d, &err), MS_OK);
    ms_jdoc_destroy(d);
    d = NULL;
    assert_int_equal(ms_json_parse("[100]", 5, "t", &lim, &d, &err), MS_ELIMIT);
    assert_null(d);
    assert_string_equal(err.msg, "t: 5 bytes of JSON, over the limit of 4 (max_bytes)");
}

/* An object of n members with distinct keys in shuffled order, optionally a duplicate of
 * member dup_of appended; every key found by binary search. Also shows the duplicate check is
 * not quadratic: 200,000 members would take minutes with pairwise comparison. */
static void test_big_object(void **state) {
    (void)state;
    size_t n = 200000;
    ms_buf b = {0};
    ms_buf_puts(&b, "{");
    unsigned long x = 12345;
    size_t *perm = malloc(n * sizeof *perm);
    assert_non_null(perm);
    for (size_t k = 0; k < n; k++) perm[k] = k;
    for (size_t k = n - 1; k > 0; k--) { /* LCG Fisher-Yates: fixed order */
        x = x * 6364136223846793005ul + 1442695040888963407ul;
        size_t j = (size_t)(x >> 33) % (k + 1), t = perm[k];
        perm[k] = perm[j], perm[j] = t;
    }
    for (size_t k = 0; k < n; k++) ms_buf_printf(&b, "%s\"k%zu\":%zu", k ? "," : "", perm[k], k);
    ms_buf_puts(&b, "}");
    assert_false(b.oom);
    clock_t t0 = clock();
    ms_jdoc *d = parse_ok(b.p);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    const ms_jval *root = ms_jdoc_root(d);
    assert_int_equal(ms_jval_len(root), n);
    for (size_t k = 0; k < n; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%zu", perm[k]);
        double v;
        assert_true(ms_jval_num(ms_jval_get(root, key), &v));
        assert_true(v == (double)k);
        assert_string_equal(ms_jval_key_at(root, k, NULL), key);
    }
    assert_null(ms_jval_get(root, "k"));
    assert_null(ms_jval_get(root, "k200000"));
    ms_jdoc_destroy(d);
    printf("# 200000-member object parsed in %.3f s\n", secs);
    assert_true(secs < 5.0); /* generous for sanitizer builds on a busy machine */

    b.len--; /* drop the '}' and add a duplicate of the first member */
    size_t dup_off = b.len + 1;
    ms_buf_printf(&b, ",\"k%zu\":0}", perm[0]);
    char want[64];
    snprintf(want, sizeof want, "duplicate key \"k%zu\" (first at offset 1)", perm[0]);
    expect_fail(b.p, MS_EFORMAT, dup_off, want);
    free(perm);
    ms_buf_free(&b);
}

static void test_path(void **state) {
    (void)state;
    ms_jdoc *d =
        parse_ok("{\"input\":{\"sha256\":\"abc\",\"size\":[640,480]},"
                 "\"regions\":[{\"score\":0.9},{\"score\":0.25}],\"a.b\":1,\"7\":{\"x\":3}}");
    const ms_jval *r = ms_jdoc_root(d);
    assert_string_equal(str_at(r, "input.sha256"), "abc");
    assert_true(num_at(r, "input.size.1") == 480.0);
    assert_true(num_at(r, "regions.1.score") == 0.25);
    assert_true(num_at(r, "7.x") == 3.0); /* a digit key on an object is a key */
    assert_ptr_equal(ms_jval_path(r, "input"), ms_jval_get(r, "input"));
    assert_null(ms_jval_path(r, "a.b")); /* keys with dots are out of reach */
    assert_null(ms_jval_path(r, ""));
    assert_null(ms_jval_path(r, "input."));
    assert_null(ms_jval_path(r, ".input"));
    assert_null(ms_jval_path(r, "input..sha256"));
    assert_null(ms_jval_path(r, "input.missing"));
    assert_null(ms_jval_path(r, "input.sha256.x"));
    assert_null(ms_jval_path(r, "regions.2.score"));
    assert_null(ms_jval_path(r, "regions.-1"));
    assert_null(ms_jval_path(r, "regions.+1"));
    assert_null(ms_jval_path(r, "regions.1x"));
    assert_null(ms_jval_path(r, "regions.99999999999999999999999"));
    assert_null(ms_jval_path(r, "regions.score"));
    ms_jdoc_destroy(d);
}

/* ---- allocation failures ---- */

static void test_alloc_failures(void **state) {
    (void)state;
    /* big enough for several arena chunks and stack growth */
    ms_buf b = {0};
    ms_buf_puts(&b, "{\"list\":[");
    for (int k = 0; k < 300; k++)
        ms_buf_printf(&b, "%s{\"id\":%d,\"name\":\"n\\u00e9%d\",\"v\":[%d,[true,null]]}",
                      k ? "," : "", k, k, k);
    ms_buf_puts(&b, "],\"z\":\"end\"}");
    assert_false(b.oom);
    long fail_at;
    for (fail_at = 1;; fail_at++) {
        hook_state hs = {.fail_at = fail_at};
        hooks_install(&hs);
        ms_jdoc *d = NULL;
        ms_err err = {0};
        ms_status st = ms_json_parse(b.p, b.len, "t.json", NULL, &d, &err);
        bool good = false;
        if (st == MS_OK)
            good = ms_jval_len(ms_jval_get(ms_jdoc_root(d), "list")) == 300 &&
                   strcmp(str_at(ms_jdoc_root(d), "list.299.name"), "n\303\251299") == 0;
        ms_jdoc_destroy(d);
        ms_alloc_set_hooks(NULL);
        assert_int_equal(hs.live, 0);
        if (st == MS_OK) {
            assert_true(good);
            break;
        }
        assert_int_equal(st, MS_ENOMEM);
        assert_null(d);
        assert_true(strncmp(err.msg, "t.json: ", 8) == 0);
        assert_non_null(strstr(err.msg, "out of memory"));
        assert_true(fail_at < 200);
    }
    assert_true(fail_at > 5); /* doc, arena chunks, value/key/frame stacks, scratch */
    ms_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_reject_syntax),
        cmocka_unit_test(test_reject_numbers),
        cmocka_unit_test(test_reject_strings),
        cmocka_unit_test(test_reject_duplicates),
        cmocka_unit_test(test_error_position),
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_byte_limit),
        cmocka_unit_test(test_big_object),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
