#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"

/* Allocator hooks are the other allowed global: set once, before any work. */
static ms_alloc_hooks g_hooks;
static bool g_hooked;

void ms_alloc_set_hooks(const ms_alloc_hooks *hooks) {
    if (hooks == NULL) {
        memset(&g_hooks, 0, sizeof g_hooks);
        g_hooked = false;
    } else {
        g_hooks = *hooks;
        g_hooked = true;
    }
}

void *ms_malloc(size_t n) {
    if (n == 0) n = 1;
    return g_hooked ? g_hooks.malloc_fn(n, g_hooks.user) : malloc(n);
}

void *ms_calloc(size_t count, size_t size) {
    size_t n;
    if (!ms_mul_size(count, size, &n)) return NULL;
    void *p = ms_malloc(n);
    if (p != NULL) memset(p, 0, n);
    return p;
}

void *ms_realloc(void *p, size_t n) {
    if (n == 0) n = 1;
    return g_hooked ? g_hooks.realloc_fn(p, n, g_hooks.user) : realloc(p, n);
}

void ms_free(void *p) {
    if (p == NULL) return;
    if (g_hooked)
        g_hooks.free_fn(p, g_hooks.user);
    else
        free(p);
}
