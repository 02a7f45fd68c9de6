/* The loader is used by one thread per scan (STYLE.md section 7): several threads decoding at
 * once must get bit-identical images to a single-threaded decode, with no global state
 * between them (DCMTK's codec registry and dictionary are shared underneath). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "medscreen/loader.h"

#define THREADS 4
#define ROUNDS 10

/* Every codec path: native, JPEG lossless, RLE, HTJ2K, PNG, JPEG, MONOCHROME1. */
static const char *const k_files[] = {
    MS_SOURCE_DIR "/data/cr_chest_mono1.dcm",
    MS_SOURCE_DIR "/data/dx_chest_nodule_jpegll.dcm",
    MS_SOURCE_DIR "/data/dx_chest_nodule_rle.dcm",
    MS_SOURCE_DIR "/tests/data/htj2k_lossless_12bit.dcm",
    MS_SOURCE_DIR "/data/chest_nodule_16bit.png",
    MS_SOURCE_DIR "/data/chest_8bit.jpg",
};
enum { NFILES = sizeof k_files / sizeof k_files[0] };

static ms_image *g_reference[NFILES];

typedef struct worker {
    int id;
    int mismatches, failures;
} worker;

static void *run(void *arg) {
    worker *w = arg;
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < NFILES; k++) {
            int f = (k + w->id + r) % NFILES; /* threads hit different codecs at once */
            ms_image *img = NULL;
            ms_err err = {0};
            if (ms_image_load(k_files[f], NULL, NULL, &img, &err) != MS_OK) {
                w->failures++;
                continue;
            }
            const ms_image *ref = g_reference[f];
            size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
            if (img->width != ref->width || img->height != ref->height ||
                memcmp(img->data, ref->data, n * sizeof(float)) != 0)
                w->mismatches++;
            ms_image_destroy(img);
        }
    return NULL;
}

static void test_concurrent_decodes_match(void **state) {
    (void)state;
    for (int f = 0; f < NFILES; f++) {
        ms_err err = {0};
        if (ms_image_load(k_files[f], NULL, NULL, &g_reference[f], &err) != MS_OK)
            fail_msg("%s", err.msg);
    }
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){i, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, run, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
        assert_int_equal(w[i].mismatches, 0);
    }
    for (int f = 0; f < NFILES; f++) ms_image_destroy(g_reference[f]);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_concurrent_decodes_match)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
