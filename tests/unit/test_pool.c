/* ms_pool: every task runs exactly once per run on a worker index in range, over many runs
 * and pool sizes; a worker whose range is slow gets help; runs after the workers went to sleep
 * and a pool destroyed while they spin; a NULL or 1-thread pool runs inline on the caller; bad
 * sizes are refused; allocation failures while creating leak nothing. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "alloc_hooks.h"
#include "medscreen/core.h"

enum { MAX_TASKS = 1000 };

typedef struct counts {
    atomic_int hits[MAX_TASKS];
    atomic_int bad_worker;
    atomic_int workers_seen[8];
    int32_t threads;
    pthread_t caller;
    atomic_int off_caller; /* tasks run on another thread */
} counts;

static void count_task(void *ctx, size_t task, int32_t worker) {
    counts *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
    if (worker < 0 || worker >= c->threads)
        atomic_fetch_add(&c->bad_worker, 1);
    else if (worker < 8)
        atomic_fetch_add(&c->workers_seen[worker], 1);
    if (!pthread_equal(pthread_self(), c->caller)) atomic_fetch_add(&c->off_caller, 1);
    /* a little work, so that several workers get tasks */
    volatile double x = 0;
    for (int i = 0; i < 2000; i++) x += i * 0.5;
}

static void run_and_check(ms_pool *p, int32_t threads, size_t tasks, int *off_caller) {
    static counts c;
    memset(&c, 0, sizeof c);
    c.threads = threads;
    c.caller = pthread_self();
    ms_pool_run(p, tasks, count_task, &c);
    for (size_t t = 0; t < tasks; t++)
        if (atomic_load(&c.hits[t]) != 1)
            fail_msg("%d threads, %zu tasks: task %zu ran %d times", threads, tasks, t,
                     atomic_load(&c.hits[t]));
    for (size_t t = tasks; t < MAX_TASKS; t++) assert_int_equal(atomic_load(&c.hits[t]), 0);
    assert_int_equal(atomic_load(&c.bad_worker), 0);
    *off_caller += atomic_load(&c.off_caller);
}

static void test_runs(void **state) {
    (void)state;
    for (int32_t threads = 1; threads <= 4; threads++) {
        ms_pool *p = NULL;
        assert_int_equal(ms_pool_create(threads, &p, NULL), MS_OK);
        assert_int_equal(ms_pool_threads(p), threads);
        int off = 0;
        for (int round = 0; round < 200; round++)
            run_and_check(p, threads, (size_t)(round * 7) % MAX_TASKS, &off);
        run_and_check(p, threads, MAX_TASKS, &off);
        if (threads == 1)
            assert_int_equal(off, 0);
        else
            assert_true(off > 0); /* the workers did take tasks */
        ms_pool_destroy(p);
    }
    int off = 0;
    run_and_check(NULL, 1, 100, &off); /* NULL pool: inline */
    assert_int_equal(off, 0);
    assert_int_equal(ms_pool_threads(NULL), 1);
    ms_pool_destroy(NULL);
}

/* Tasks of the caller's own range (the first half) are slow: the other worker, done with its
 * half, must take some of them (the pool balances), each still exactly once. */
typedef struct uneven {
    size_t tasks;
    pthread_t caller;
    atomic_int hits[64];
    atomic_int first_half_off_caller;
} uneven;

static void uneven_task(void *ctx, size_t task, int32_t worker) {
    uneven *u = ctx;
    (void)worker;
    atomic_fetch_add(&u->hits[task], 1);
    if (task < u->tasks / 2) {
        if (!pthread_equal(pthread_self(), u->caller))
            atomic_fetch_add(&u->first_half_off_caller, 1);
        volatile double x = 0;
        for (int i = 0; i < 1000000; i++) x += i * 0.5;
    }
}

static void test_uneven_and_idle(void **state) {
    (void)state;
    ms_pool *p = NULL;
    assert_int_equal(ms_pool_create(2, &p, NULL), MS_OK);
    static uneven u;
    memset(&u, 0, sizeof u);
    u.tasks = 64;
    u.caller = pthread_self();
    ms_pool_run(p, u.tasks, uneven_task, &u);
    for (size_t t = 0; t < u.tasks; t++) assert_int_equal(atomic_load(&u.hits[t]), 1);
    assert_true(atomic_load(&u.first_half_off_caller) > 0);
    /* runs after the workers have gone to sleep (idle past their spin) still complete */
    int off = 0;
    for (int round = 0; round < 5; round++) {
        const struct timespec gap = {0, 3 * 1000 * 1000};
        nanosleep(&gap, NULL);
        run_and_check(p, 2, 200, &off);
    }
    ms_pool_destroy(p);
    /* a pool destroyed while its workers spin */
    assert_int_equal(ms_pool_create(3, &p, NULL), MS_OK);
    run_and_check(p, 3, 50, &off);
    ms_pool_destroy(p);
}

static void test_bad_sizes(void **state) {
    (void)state;
    ms_pool *p = (ms_pool *)0x1;
    ms_err err = {0};
    assert_int_equal(ms_pool_create(0, &p, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "0 threads"));
    assert_ptr_equal(p, (ms_pool *)0x1); /* not written on failure */
    assert_int_equal(ms_pool_create(MS_POOL_MAX_THREADS + 1, &p, &err), MS_EINVAL);
    assert_int_equal(ms_pool_create(2, NULL, &err), MS_EINVAL);
}

static void test_alloc_failures(void **state) {
    (void)state;
    for (long fail_at = 1; fail_at < 10; fail_at++) {
        hook_state hs = {.fail_at = fail_at};
        hooks_install(&hs);
        ms_pool *p = NULL;
        ms_status st = ms_pool_create(3, &p, NULL);
        if (st == MS_OK) {
            int off = 0;
            run_and_check(p, 3, 50, &off);
            ms_pool_destroy(p);
        } else {
            assert_int_equal(st, MS_ENOMEM);
        }
        ms_alloc_set_hooks(NULL);
        assert_int_equal(hs.live, 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs),
        cmocka_unit_test(test_uneven_and_idle),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
