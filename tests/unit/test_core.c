/* Core layer tests: parsing, checked arithmetic, bounded reader, strings, file reading,
 * format detection, error messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "medscreen/core.h"
#include "medscreen/loader.h"

/* ---- ms_parse_u32 / u64 ---- */

static void test_parse_u32(void **state) {
    (void)state;
    uint32_t v = 7;
    assert_true(ms_parse_u32("0", 0, UINT32_MAX, &v));
    assert_int_equal(v, 0);
    assert_true(ms_parse_u32("42", 0, 100, &v));
    assert_int_equal(v, 42);
    assert_true(ms_parse_u32("007", 0, 100, &v));
    assert_int_equal(v, 7);
    assert_true(ms_parse_u32("4294967295", 0, UINT32_MAX, &v));
    assert_int_equal(v, UINT32_MAX);

    /* range is inclusive at both ends */
    assert_true(ms_parse_u32("10", 10, 20, &v));
    assert_true(ms_parse_u32("20", 10, 20, &v));
    assert_int_equal(v, 20);

    v = 12345;
    static const char *bad[] = {
        "4294967296",              /* UINT32_MAX + 1 */
        "99999999999999999999999", /* overflows u64 too */
        "",
        " 1",
        "1 ",
        "+1",
        "-1",
        "-0",
        "1a",
        "a1",
        "0x10",
        "1.0",
        "1e3",
        "\t1",
        "1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ms_parse_u32(bad[i], 0, UINT32_MAX, &v)) fail_msg("accepted \"%s\"", bad[i]);
    assert_false(ms_parse_u32(NULL, 0, 10, &v));
    assert_false(ms_parse_u32("9", 10, 20, &v));  /* below min */
    assert_false(ms_parse_u32("21", 10, 20, &v)); /* above max */
    assert_int_equal(v, 12345);                   /* untouched on failure */
}

static void test_parse_u64(void **state) {
    (void)state;
    uint64_t v = 0;
    assert_true(ms_parse_u64("18446744073709551615", 0, UINT64_MAX, &v));
    assert_true(v == UINT64_MAX);
    assert_true(ms_parse_u64("4294967296", 0, UINT64_MAX, &v));
    assert_true(v == 4294967296ull);
    v = 5;
    assert_false(ms_parse_u64("18446744073709551616", 0, UINT64_MAX, &v));
    assert_false(ms_parse_u64("18446744073709551620", 0, UINT64_MAX, &v));
    assert_false(ms_parse_u64("100000000000000000000", 0, UINT64_MAX, &v));
    assert_false(ms_parse_u64("", 0, UINT64_MAX, &v));
    assert_false(ms_parse_u64("-1", 0, UINT64_MAX, &v));
    assert_false(ms_parse_u64("12 ", 0, UINT64_MAX, &v));
    assert_false(ms_parse_u64("1000", 0, 999, &v));
    assert_true(v == 5);
}

static void test_parse_double(void **state) {
    (void)state;
    double v = 0;
    assert_true(ms_parse_double("1.5", &v));
    assert_true(v == 1.5);
    assert_true(ms_parse_double(" -0.25 ", &v)); /* DICOM DS pads with spaces */
    assert_true(v == -0.25);
    assert_true(ms_parse_double("1e3", &v));
    assert_true(v == 1000.0);
    assert_true(ms_parse_double("+2", &v));
    assert_true(v == 2.0);
    assert_true(ms_parse_double("0", &v));
    assert_true(v == 0.0);
    assert_true(ms_parse_double("1.7976931348623157e308", &v));

    v = 99.0;
    static const char *bad[] = {"",     "   ",      "nan",   "NaN",    "inf",
                                "-inf", "infinity", "1e999", "-1e999", "1.5x",
                                "x1.5", "1.5 2",    "1,5",   "--1",    "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ms_parse_double(bad[i], &v)) fail_msg("accepted \"%s\"", bad[i]);
    assert_false(ms_parse_double(NULL, &v));
    assert_true(v == 99.0);
}

/* ---- checked arithmetic ---- */

static void test_checked_math(void **state) {
    (void)state;
    size_t r = 77;
    assert_true(ms_mul_size(0, SIZE_MAX, &r));
    assert_true(r == 0);
    assert_true(ms_mul_size(SIZE_MAX, 0, &r));
    assert_true(r == 0);
    assert_true(ms_mul_size(SIZE_MAX, 1, &r));
    assert_true(r == SIZE_MAX);
    assert_true(ms_mul_size(SIZE_MAX / 2, 2, &r));
    assert_true(r == SIZE_MAX - 1);
    r = 77;
    assert_false(ms_mul_size(SIZE_MAX / 2 + 1, 2, &r));
    assert_false(ms_mul_size(SIZE_MAX, SIZE_MAX, &r));
    assert_false(
        ms_mul_size((size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4), &r));
    assert_true(r == 77); /* untouched on overflow */

    assert_true(ms_add_size(SIZE_MAX, 0, &r));
    assert_true(r == SIZE_MAX);
    assert_true(ms_add_size(SIZE_MAX - 5, 5, &r));
    assert_true(r == SIZE_MAX);
    r = 77;
    assert_false(ms_add_size(SIZE_MAX, 1, &r));
    assert_false(ms_add_size(SIZE_MAX - 4, 5, &r));
    assert_true(r == 77);

    uint64_t u = 0;
    assert_true(ms_mul_u64(65535, 65535, &u));
    assert_true(u == 4294836225ull);
    assert_true(ms_mul_u64(UINT32_MAX, UINT32_MAX, &u));
    assert_false(ms_mul_u64(1ull << 32, 1ull << 32, &u));
    assert_false(ms_mul_u64(UINT64_MAX, 2, &u));
}

/* ---- bounded reader ---- */

static void test_reader(void **state) {
    (void)state;
    static const uint8_t d[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
    ms_rd rd = ms_rd_init(d, sizeof d);
    uint16_t v16 = 0;
    uint32_t v32 = 0;
    assert_true(ms_rd_u16le(&rd, &v16));
    assert_int_equal(v16, 0x0201);
    assert_true(ms_rd_u32le(&rd, &v32));
    assert_int_equal(v32, 0x06050403u);
    assert_int_equal(rd.left, 1);
    v16 = 0xBEEF;
    v32 = 0xDEADBEEF;
    assert_false(ms_rd_u16le(&rd, &v16)); /* one byte left */
    assert_false(ms_rd_u32le(&rd, &v32));
    assert_int_equal(v16, 0xBEEF); /* untouched */
    assert_int_equal(v32, 0xDEADBEEF);
    assert_int_equal(rd.left, 1); /* the cursor did not move */
    assert_ptr_equal(rd.p, d + 6);
    const uint8_t *p = NULL;
    assert_false(ms_rd_bytes(&rd, &p, 2));
    assert_null(p);
    assert_true(ms_rd_bytes(&rd, &p, 1));
    assert_ptr_equal(p, d + 6);
    assert_int_equal(rd.left, 0);
    assert_true(ms_rd_bytes(&rd, &p, 0)); /* zero bytes always fit */
    assert_false(ms_rd_skip(&rd, 1));

    rd = ms_rd_init(d, sizeof d);
    assert_false(ms_rd_skip(&rd, SIZE_MAX)); /* no pointer wrap-around */
    assert_false(ms_rd_skip(&rd, sizeof d + 1));
    assert_int_equal(rd.left, sizeof d);
    assert_true(ms_rd_skip(&rd, sizeof d));
    assert_int_equal(rd.left, 0);

    /* high bits: no sign extension */
    static const uint8_t ff[] = {0xFF, 0xFF, 0xFF, 0xFF};
    rd = ms_rd_init(ff, 4);
    assert_true(ms_rd_u32le(&rd, &v32));
    assert_true(v32 == 0xFFFFFFFFu);
    rd = ms_rd_init(ff, 2);
    assert_true(ms_rd_u16le(&rd, &v16));
    assert_int_equal(v16, 0xFFFF);

    rd = ms_rd_init(NULL, 0);
    assert_false(ms_rd_u16le(&rd, &v16));
}

/* ---- strings ---- */

static void test_str_copy(void **state) {
    (void)state;
    char buf[8];
    assert_true(ms_str_copy(buf, sizeof buf, "abc"));
    assert_string_equal(buf, "abc");
    assert_true(ms_str_copy(buf, sizeof buf, "1234567")); /* exactly fits with NUL */
    assert_string_equal(buf, "1234567");
    memset(buf, 'x', sizeof buf);
    assert_false(ms_str_copy(buf, sizeof buf, "12345678")); /* one too many */
    assert_string_equal(buf, "1234567");
    assert_false(ms_str_copy(buf, sizeof buf, "a much longer string"));
    assert_string_equal(buf, "a much ");
    assert_false(ms_str_copy(buf, 1, "a"));
    assert_string_equal(buf, "");
    assert_true(ms_str_copy(buf, 1, ""));
    assert_true(ms_str_copy(buf, sizeof buf, NULL));
    assert_string_equal(buf, "");
    buf[0] = 'q';
    assert_false(ms_str_copy(buf, 0, "abc"));
    assert_int_equal(buf[0], 'q'); /* nothing written */
}

/* ---- files ---- */

static void write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(d, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_file_read_all(void **state) {
    (void)state;
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/test_core_%ld.bin", MS_BINARY_DIR, (long)getpid());
    snprintf(dir, sizeof dir, "%s/test_core_dir_%ld", MS_BINARY_DIR, (long)getpid());
    static const uint8_t content[] = "medscreen\0bytes";
    write_file(path, content, sizeof content);

    uint8_t *d = NULL;
    size_t n = 0;
    ms_err err;
    ms_err_clear(&err);
    assert_int_equal(ms_file_read_all(path, 1 << 20, &d, &n, &err), MS_OK);
    assert_int_equal(n, sizeof content);
    assert_memory_equal(d, content, sizeof content);
    ms_free(d);

    /* exactly at the limit is fine; one byte under is not */
    d = NULL;
    assert_int_equal(ms_file_read_all(path, sizeof content, &d, &n, &err), MS_OK);
    ms_free(d);
    d = (uint8_t *)0x1;
    n = 99;
    assert_int_equal(ms_file_read_all(path, sizeof content - 1, &d, &n, &err), MS_ELIMIT);
    assert_int_equal(err.status, MS_ELIMIT);
    assert_non_null(strstr(err.msg, path));
    assert_ptr_equal(d, (uint8_t *)0x1); /* out-parameters untouched on failure */
    assert_int_equal(n, 99);

    /* empty file */
    write_file(path, NULL, 0);
    d = NULL;
    assert_int_equal(ms_file_read_all(path, 10, &d, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    ms_free(d);
    unlink(path);

    /* missing */
    assert_int_equal(ms_file_read_all(path, 10, &d, &n, &err), MS_EIO);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "cannot open"));

    /* a directory */
    assert_int_equal(mkdir(dir, 0700), 0);
    ms_status st = ms_file_read_all(dir, 1 << 20, &d, &n, &err);
    rmdir(dir);
    assert_int_equal(st, MS_EIO);
    assert_non_null(strstr(err.msg, dir));

    /* NULL err is accepted */
    assert_int_equal(ms_file_read_all(path, 10, &d, &n, NULL), MS_EIO);
}

/* ---- format detection ---- */

static void test_format_detect(void **state) {
    (void)state;
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13};
    assert_int_equal(ms_format_detect(png, sizeof png), MS_FORMAT_PNG);
    assert_int_equal(ms_format_detect(png, 8), MS_FORMAT_PNG);
    assert_int_equal(ms_format_detect(png, 7), MS_FORMAT_UNKNOWN);
    uint8_t png_bad[8];
    memcpy(png_bad, png, 8);
    png_bad[7] = 0x0B;
    assert_int_equal(ms_format_detect(png_bad, 8), MS_FORMAT_UNKNOWN);

    static const uint8_t jpg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10};
    assert_int_equal(ms_format_detect(jpg, sizeof jpg), MS_FORMAT_JPEG);
    assert_int_equal(ms_format_detect(jpg, 3), MS_FORMAT_JPEG);
    assert_int_equal(ms_format_detect(jpg, 2), MS_FORMAT_UNKNOWN);

    /* Part 10: 128-byte preamble (content irrelevant) then "DICM" */
    uint8_t p10[140];
    memset(p10, 0xAB, sizeof p10);
    memcpy(p10 + 128, "DICM", 4);
    assert_int_equal(ms_format_detect(p10, sizeof p10), MS_FORMAT_DICOM);
    assert_int_equal(ms_format_detect(p10, 132), MS_FORMAT_DICOM);
    assert_int_equal(ms_format_detect(p10, 131), MS_FORMAT_UNKNOWN);
    p10[131] = 'N';
    assert_int_equal(ms_format_detect(p10, sizeof p10), MS_FORMAT_UNKNOWN);

    /* bare data set, explicit VR little endian: (0008,0005) CS, length 10 */
    static const uint8_t exp_le[] = {0x08, 0x00, 0x05, 0x00, 'C', 'S', 0x0A, 0x00, 'I',
                                     'S',  'O',  '_',  'I',  'R', ' ', '1',  '0',  '0'};
    assert_int_equal(ms_format_detect(exp_le, sizeof exp_le), MS_FORMAT_DICOM);
    /* bare data set, implicit VR little endian: (0008,0016) length 4 */
    static const uint8_t imp_le[] = {0x08, 0x00, 0x16, 0x00, 0x04, 0x00,
                                     0x00, 0x00, '1',  '.',  '2',  '\0'};
    assert_int_equal(ms_format_detect(imp_le, sizeof imp_le), MS_FORMAT_DICOM);
    /* implicit length larger than the data: not a data set */
    static const uint8_t imp_bad[] = {0x08, 0x00, 0x16, 0x00, 0xFF, 0x00, 0x00, 0x00, '1'};
    assert_int_equal(ms_format_detect(imp_bad, sizeof imp_bad), MS_FORMAT_UNKNOWN);
    /* odd group (private) is not accepted as a start */
    static const uint8_t odd[] = {0x09, 0x00, 0x10, 0x00, 'L', 'O', 0x02, 0x00, 'a', 'b'};
    assert_int_equal(ms_format_detect(odd, sizeof odd), MS_FORMAT_UNKNOWN);

    static const char text[] = "Hello, this is a plain text file and not an image.\n";
    assert_int_equal(ms_format_detect((const uint8_t *)text, sizeof text - 1), MS_FORMAT_UNKNOWN);
    static const char gif[] = "GIF89a\x01\x00\x01\x00";
    assert_int_equal(ms_format_detect((const uint8_t *)gif, sizeof gif - 1), MS_FORMAT_UNKNOWN);
    assert_int_equal(ms_format_detect(png, 0), MS_FORMAT_UNKNOWN);
    assert_int_equal(ms_format_detect(NULL, 0), MS_FORMAT_UNKNOWN);

    assert_string_equal(ms_format_name(MS_FORMAT_PNG), "png");
    assert_string_equal(ms_format_name(MS_FORMAT_JPEG), "jpeg");
    assert_string_equal(ms_format_name(MS_FORMAT_DICOM), "dicom");
    assert_string_equal(ms_format_name(MS_FORMAT_UNKNOWN), "unknown");
    assert_string_equal(ms_format_name((ms_format)42), "unknown");
}

/* Unknown or empty input is refused through the public API with the name in the message. */
static void test_open_not_image(void **state) {
    (void)state;
    ms_image *img = NULL;
    ms_err err;
    static const char text[] = "just some text";
    assert_int_equal(ms_image_decode((const uint8_t *)text, sizeof text - 1, "notes.txt", NULL,
                                     NULL, &img, &err),
                     MS_ENOTIMAGE);
    assert_non_null(strstr(err.msg, "notes.txt: "));
    assert_int_equal(ms_image_decode((const uint8_t *)text, 0, "empty.dcm", NULL, NULL, &img, &err),
                     MS_ENOTIMAGE);
    assert_non_null(strstr(err.msg, "empty.dcm: empty file"));
    assert_null(img);
    ms_limits lim = ms_limits_default();
    lim.max_file_bytes = 4;
    assert_int_equal(
        ms_image_decode((const uint8_t *)text, sizeof text - 1, "big.png", NULL, &lim, &img, &err),
        MS_ELIMIT);
    assert_non_null(strstr(err.msg, "big.png"));
}

/* ---- errors ---- */

static void test_fail_message(void **state) {
    (void)state;
    ms_err err;
    ms_err_clear(&err);
    assert_int_equal(err.status, MS_OK);
    assert_string_equal(err.msg, "");
    ms_status st =
        ms_fail(&err, MS_EUNSUPPORTED, "%s: BitsAllocated=%u, expected 8 or 16", "ct.dcm", 12u);
    assert_int_equal(st, MS_EUNSUPPORTED);
    assert_int_equal(err.status, MS_EUNSUPPORTED);
    /* starts with the message; debug builds may append " [file:line]" */
    const char *want = "ct.dcm: BitsAllocated=12, expected 8 or 16";
    assert_memory_equal(err.msg, want, strlen(want));
    assert_true(err.msg[strlen(want)] == '\0' || err.msg[strlen(want)] == ' ');
#ifndef NDEBUG
    assert_non_null(strstr(err.msg, "[test_core.c:"));
#endif

    /* NULL err: still returns the status */
    assert_int_equal(ms_fail(NULL, MS_EIO, "x %d", 1), MS_EIO);

    /* a message longer than the buffer is cut and terminated */
    char big[2 * MS_ERR_MSG_MAX];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(ms_fail(&err, MS_EFORMAT, "%s", big), MS_EFORMAT);
    assert_int_equal(strlen(err.msg), MS_ERR_MSG_MAX - 1);

    ms_err_clear(&err);
    assert_int_equal(err.status, MS_OK);
    assert_string_equal(err.msg, "");
    ms_err_clear(NULL);
}

static void test_status_names(void **state) {
    (void)state;
    static const char *names[] = {
        "ok",       "invalid_argument", "out_of_memory", "io",        "format",       "limit",
        "overflow", "unsupported",      "internal",      "not_image", "no_pixel_data"};
    for (int i = 0; i <= (int)MS_ENOPIXELS; i++)
        assert_string_equal(ms_status_name((ms_status)i), names[i]);
    assert_string_equal(ms_status_name((ms_status)1000), "unknown");
    /* codes are part of the JSON output: never renumbered */
    assert_int_equal(MS_OK, 0);
    assert_int_equal(MS_EFORMAT, 4);
    assert_int_equal(MS_ENOPIXELS, 10);
}

static void test_limits_default(void **state) {
    (void)state;
    ms_limits l = ms_limits_default();
    assert_true(l.max_width == 65535 && l.max_height == 65535);
    assert_true(l.max_pixels == 256ull << 20);
    assert_true(l.max_file_bytes == 2ull << 30);
    assert_true(l.max_frames == 65535);
    assert_true(l.max_decoded_bytes == 1ull << 30);
    assert_true(l.max_model_bytes == 1ull << 30);
}

/* ---- log and allocator ---- */

typedef struct log_capture {
    int count;
    ms_log_level level;
    char last[1100];
} log_capture;

static void log_cb(ms_log_level level, const char *msg, void *user) {
    log_capture *lc = user;
    lc->count++;
    lc->level = level;
    ms_str_copy(lc->last, sizeof lc->last, msg);
}

static void test_log(void **state) {
    (void)state;
    ms_log(MS_LOG_ERROR, "no callback: dropped"); /* must not crash or print */
    log_capture lc = {0};
    ms_log_set_callback(log_cb, &lc, MS_LOG_INFO);
    ms_log(MS_LOG_WARN, "value %d", 3);
    assert_int_equal(lc.count, 1);
    assert_int_equal(lc.level, MS_LOG_WARN);
    assert_string_equal(lc.last, "value 3");
    ms_log(MS_LOG_DEBUG, "filtered");
    assert_int_equal(lc.count, 1);
    char big[2000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ms_log(MS_LOG_ERROR, "%s", big); /* truncated, terminated */
    assert_int_equal(lc.count, 2);
    assert_true(strlen(lc.last) < 1100 && strlen(lc.last) > 100);
    ms_log_set_callback(NULL, NULL, MS_LOG_WARN);
    ms_log(MS_LOG_ERROR, "dropped again");
    assert_int_equal(lc.count, 2);
}

typedef struct hook_state {
    int mallocs, reallocs, frees;
} hook_state;
static void *h_malloc(size_t n, void *u) {
    ((hook_state *)u)->mallocs++;
    return malloc(n);
}
static void *h_realloc(void *p, size_t n, void *u) {
    ((hook_state *)u)->reallocs++;
    return realloc(p, n);
}
static void h_free(void *p, void *u) {
    ((hook_state *)u)->frees++;
    free(p);
}

static void test_alloc(void **state) {
    (void)state;
    hook_state hs = {0};
    ms_alloc_hooks h = {h_malloc, h_realloc, h_free, &hs};
    ms_alloc_set_hooks(&h);
    uint8_t *p = ms_calloc(4, 8);
    assert_non_null(p);
    for (int i = 0; i < 32; i++) assert_int_equal(p[i], 0);
    uint8_t *q = ms_realloc(p, 64);
    assert_non_null(q);
    ms_free(q);
    ms_free(NULL);                           /* no-op, not passed to the hook */
    assert_null(ms_calloc(SIZE_MAX / 2, 4)); /* overflow: no allocation attempted */
    ms_alloc_set_hooks(NULL);
    assert_int_equal(hs.mallocs, 1);
    assert_int_equal(hs.reallocs, 1);
    assert_int_equal(hs.frees, 1);
    void *z = ms_malloc(0); /* zero bytes still gives a freeable pointer */
    assert_non_null(z);
    ms_free(z);
}

/* Atomic writes: content replaced whole, nothing left behind on failure. */
static void test_file_write_atomic(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/atomic_%ld.bin", MS_BINARY_DIR, (long)getpid());
    ms_err err = {0};
    assert_int_equal(ms_file_write_atomic(path, "first", 5, &err), MS_OK);
    assert_int_equal(ms_file_write_atomic(path, "second!", 7, &err), MS_OK);
    uint8_t *d = NULL;
    size_t n = 0;
    assert_int_equal(ms_file_read_all(path, 100, &d, &n, &err), MS_OK);
    assert_int_equal(n, 7);
    assert_memory_equal(d, "second!", 7);
    ms_free(d);
    /* a directory in the way of the rename: error naming the path, old content kept */
    char dir[600];
    snprintf(dir, sizeof dir, "%s.dir", path);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(ms_file_write_atomic(dir, "x", 1, &err), MS_EIO);
    assert_non_null(strstr(err.msg, dir));
    assert_int_equal(rmdir(dir), 0);
    DIR *dd = opendir(MS_BINARY_DIR);
    assert_non_null(dd);
    for (struct dirent *e; (e = readdir(dd)) != NULL;)
        if (strstr(e->d_name, "atomic_") && strstr(e->d_name, ".tmp-"))
            fail_msg("temporary file left behind: %s", e->d_name);
    closedir(dd);
    assert_int_equal(ms_file_write_atomic("/nonexistent-dir/x.bin", "x", 1, &err), MS_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.bin"));
    assert_int_equal(ms_file_write_atomic("", "x", 1, &err), MS_EINVAL);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_u32),      cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_double),   cmocka_unit_test(test_checked_math),
        cmocka_unit_test(test_reader),         cmocka_unit_test(test_str_copy),
        cmocka_unit_test(test_file_read_all),  cmocka_unit_test(test_file_write_atomic),
        cmocka_unit_test(test_format_detect),  cmocka_unit_test(test_open_not_image),
        cmocka_unit_test(test_fail_message),   cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_limits_default), cmocka_unit_test(test_log),
        cmocka_unit_test(test_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
