/* Random-mutation check shared by the codec tests: iterations copies of a valid file, each
 * with 1-4 random bytes overwritten after the first `keep` bytes (the signature), must either
 * decode to a sane image or fail with a message naming the file. A deterministic LCG keeps
 * runs reproducible. Include after cmocka.h. */
#ifndef MEDSCREEN_TEST_MUTATE_H
#define MEDSCREEN_TEST_MUTATE_H

#include <stdlib.h>
#include <string.h>

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

#endif
