/* Guarded float buffers for the operator tests: n floats between two zones of a NaN pattern
 * no operator produces, initialised to NaN so an unwritten output shows, and checked after
 * the call for a write before or past the buffer. Include after <cmocka.h>. */
#ifndef MEDSCREEN_TEST_GUARD_BUF_H
#define MEDSCREEN_TEST_GUARD_BUF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { GUARD = 64 };
static const uint32_t GUARD_BITS = 0x7fa5a5a5u;

typedef struct gbuf {
    float *base, *p;
    size_t n;
} gbuf;

static float *gbuf_alloc(gbuf *g, size_t n) {
    g->n = n;
    g->base = malloc((n + 2 * GUARD) * sizeof(float));
    assert_non_null(g->base);
    for (size_t i = 0; i < GUARD; i++) {
        memcpy(&g->base[i], &GUARD_BITS, sizeof GUARD_BITS);
        memcpy(&g->base[GUARD + n + i], &GUARD_BITS, sizeof GUARD_BITS);
    }
    g->p = g->base + GUARD;
    for (size_t i = 0; i < n; i++) g->p[i] = NAN;
    return g->p;
}

static void gbuf_check(const gbuf *g, const char *what) {
    for (size_t i = 0; i < GUARD; i++) {
        if (memcmp(&g->base[i], &GUARD_BITS, sizeof GUARD_BITS) != 0)
            fail_msg("%s: write %zu floats before the buffer", what, GUARD - i);
        if (memcmp(&g->base[GUARD + g->n + i], &GUARD_BITS, sizeof GUARD_BITS) != 0)
            fail_msg("%s: write %zu floats past the end", what, i);
    }
}

static void gbuf_free(gbuf *g) {
    free(g->base);
    g->base = g->p = NULL;
}

#endif
