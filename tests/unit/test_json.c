/* Unit tests of the CLI's JSON writer and terminal escaper (src/cli/json.c). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "medscreen/json.h"

static void expect_escape(const char *in, const char *want) {
    ms_buf b = {0};
    ms_json_escape(&b, in);
    assert_false(b.oom);
    assert_string_equal(b.p, want);
    ms_buf_free(&b);
}

static void expect_text(const char *in, const char *want) {
    ms_buf b = {0};
    ms_text_escape(&b, in);
    ms_buf_puts(&b, ""); /* an empty input still leaves a terminated buffer */
    assert_false(b.oom);
    assert_string_equal(b.p ? b.p : "", want);
    ms_buf_free(&b);
}

static void test_escape_ascii(void **state) {
    (void)state;
    expect_escape("", "\"\"");
    expect_escape("plain", "\"plain\"");
    expect_escape("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
    expect_escape("\n\r\t\b\f", "\"\\n\\r\\t\\u0008\\u000c\"");
    expect_escape("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
}

static void test_escape_utf8(void **state) {
    (void)state;
    /* Valid UTF-8 passes through: e-acute, euro sign, U+1F600. */
    expect_escape("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
                  "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    /* Stray continuation, lone lead byte, overlong '/', surrogate, above U+10FFFF,
     * truncated sequence at the end: each bad byte becomes U+FFFD. */
    expect_escape("\x80", "\"\\ufffd\"");
    expect_escape("a\xc3", "\"a\\ufffd\"");
    expect_escape("\xc0\xaf", "\"\\ufffd\\ufffd\"");
    expect_escape("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
    expect_escape("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    expect_escape("\xff\xfe.png", "\"\\ufffd\\ufffd.png\"");
    expect_escape("\xe2\x82", "\"\\ufffd\\ufffd\"");
}

static void test_text_escape(void **state) {
    (void)state;
    expect_text("", "");
    expect_text("ok \xc3\xa9", "ok \xc3\xa9");
    expect_text("a\nb\tc\rd", "a\\nb\\tc\\rd");
    expect_text("\x1b[31mred", "\\x1b[31mred");
    expect_text("\xff", "\\xff");
    expect_text("\xc2\x9b", "\\xc2\\x9b"); /* C1 CSI */
    expect_text("back\\slash", "back\\slash");
}

static void test_object_sorted(void **state) {
    (void)state;
    ms_json o, sub;
    ms_json_init(&o);
    ms_json_str(&o, "zeta", "z");
    ms_json_int(&o, "alpha", -3);
    ms_json_uint(&o, "mid", UINT64_MAX);
    ms_json_bool(&o, "beta", true);
    ms_json_null(&o, "gamma");
    ms_json_str(&o, "nullstr", NULL);
    ms_json_init(&sub);
    ms_json_num(&sub, "y", 0.1);
    ms_json_num(&sub, "x", 1e-7);
    ms_json_num(&sub, "big", 123456789.0);
    ms_json_num(&sub, "nan", NAN);
    ms_json_num(&sub, "inf", -INFINITY);
    ms_json_num(&sub, "int", 42.0);
    ms_json_obj(&o, "obj", &sub);
    ms_json empty;
    ms_json_init(&empty);
    ms_json_obj(&o, "empty", &empty);
    ms_buf b = {0};
    assert_true(ms_json_render(&o, &b));
    assert_string_equal(b.p, "{\"alpha\":-3,\"beta\":true,\"empty\":{},\"gamma\":null,"
                             "\"mid\":18446744073709551615,\"nullstr\":null,"
                             "\"obj\":{\"big\":1.23457e+08,\"inf\":null,\"int\":42,\"nan\":null,"
                             "\"x\":1e-07,\"y\":0.1},\"zeta\":\"z\"}");
    ms_buf_free(&b);
    ms_json_free(&o);
}

static void test_buf_printf_long(void **state) {
    (void)state;
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ms_buf b = {0};
    ms_buf_printf(&b, "<%s>%d", big, 7);
    assert_false(b.oom);
    assert_int_equal(b.len, 1 + 999 + 1 + 1);
    assert_int_equal(b.p[0], '<');
    assert_int_equal(b.p[1000], '>');
    assert_int_equal(b.p[1001], '7');
    ms_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_ascii),    cmocka_unit_test(test_escape_utf8),
        cmocka_unit_test(test_text_escape),     cmocka_unit_test(test_object_sorted),
        cmocka_unit_test(test_buf_printf_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
