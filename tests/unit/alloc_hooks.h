/* A counting allocator for the allocation-failure loops of the unit tests: fails the
 * fail_at-th allocation (1-based; 0 = none) and counts what is still live, so a test can
 * assert that every failure path frees everything it took. */
#ifndef MEDSCREEN_TEST_ALLOC_HOOKS_H
#define MEDSCREEN_TEST_ALLOC_HOOKS_H

#include <stdlib.h>

#include "medscreen/medscreen.h"

typedef struct hook_state {
    long fail_at; /* 1-based index of the allocation to fail; 0: none */
    long count;   /* allocations attempted */
    long live;    /* allocated and not yet freed */
    size_t biggest;
} hook_state;

static void *h_malloc(size_t n, void *u) {
    hook_state *s = u;
    s->count++;
    if (n > s->biggest) s->biggest = n;
    if (s->fail_at > 0 && s->count == s->fail_at) return NULL;
    void *p = malloc(n);
    if (p) s->live++;
    return p;
}

static void *h_realloc(void *p, size_t n, void *u) {
    hook_state *s = u;
    s->count++;
    if (n > s->biggest) s->biggest = n;
    if (s->fail_at > 0 && s->count == s->fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) s->live++;
    return q;
}

static void h_free(void *p, void *u) {
    hook_state *s = u;
    if (p) {
        s->live--;
        free(p);
    }
}

static inline void hooks_install(hook_state *s) {
    ms_alloc_hooks h = {h_malloc, h_realloc, h_free, s};
    ms_alloc_set_hooks(&h);
}

#endif
