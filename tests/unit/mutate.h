/* Random-mutation check shared by the codec tests: iterations copies of a valid file, each
 * with 1-4 random bytes overwritten after the first `keep` bytes (the signature), must either
 * decode to a sane image or fail with a message naming the file. A deterministic LCG keeps
 * runs reproducible. Include after cmocka.h. Also: the clean-failure check shared by the
 * codec tests. */
#ifndef MEDSCREEN_TEST_MUTATE_H
#define MEDSCREEN_TEST_MUTATE_H

#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"
#include "medscreen/loader.h"

static void mutate_and_decode(const uint8_t *orig, size_t n, size_t keep, int iterations,
                              uint32_t *rng, const char *name) {
    uint8_t *d = malloc(n);
    assert_non_null(d);
    for (int it = 0; it < iterations; it++) {
        memcpy(d, orig, n);
        int edits = 1 + (int)(*rng % 4);
        for (int e = 0; e < edits; e++) {
            *rng = *rng * 1664525u + 1013904223u;
            size_t at = keep + (*rng >> 8) % (n - keep);
            *rng = *rng * 1664525u + 1013904223u;
            d[at] = (uint8_t)(*rng >> 24);
        }
        ms_image *img = NULL;
        ms_err err;
        ms_err_clear(&err);
        if (ms_image_decode(d, n, name, NULL, NULL, &img, &err) == MS_OK) {
            assert_true(img->width > 0 && img->height > 0);
            ms_image_destroy(img);
        } else {
            assert_null(img);
            assert_non_null(strstr(err.msg, name));
        }
    }
    free(d);
}

/* A decode of d that must fail cleanly: no image, err->status equal to the result, and a
 * message naming the file. The status and message go back to the caller when asked for. */
static void expect_decode_failure(const char *name, const uint8_t *d, size_t n, const char *what,
                                  ms_status *st_out, char *msg_out, size_t msg_size) {
    ms_image *img = NULL;
    ms_err err;
    ms_err_clear(&err);
    ms_status st = ms_image_decode(d, n, name, NULL, NULL, &img, &err);
    if (st == MS_OK) fail_msg("%s: decoded although it should fail", what);
    assert_null(img);
    assert_int_equal(err.status, st);
    if (strstr(err.msg, name) == NULL) fail_msg("%s: message lacks the name: %s", what, err.msg);
    if (st_out) *st_out = st;
    if (msg_out) ms_str_copy(msg_out, msg_size, err.msg);
}

#endif
