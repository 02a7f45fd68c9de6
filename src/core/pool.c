/* ms_pool: a fixed set of worker threads for the parallel loops of one inference session.
 *
 * ms_pool_run splits the task indices into one contiguous range per worker (see work()); the
 * caller works too (worker 0), so a pool of 1 thread is a plain loop. Results must not depend on
 * which worker ran a task: callers give every task its own output and workspace slot, which is what
 * makes 1 and N threads bit-identical.
 *
 * Waiting. An inference is a few dozen parallel loops back to back (ResNet-18: about 30 of
 * 0.1-2 ms). Sleeping on a condition variable between them cost a wake-up each way per loop:
 * on the 2-vCPU VM ResNet-18 ran 1.65x faster on 2 threads than on 1 while two 1-thread
 * processes side by side each kept their speed. So a worker that finishes spins (with pause)
 * for the next loop for up to SPIN_NS before it sleeps, and so does the caller for the last
 * workers to finish; a pool left idle sleeps after that and costs nothing. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "medscreen/core.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define POOL_PAUSE() _mm_pause()
#else
#define POOL_PAUSE() ((void)0)
#endif

enum { SPIN_CHECK = 64 };              /* pauses between clock reads */
static const int64_t SPIN_NS = 300000; /* 0.3 ms: longer than the gaps inside an inference */

struct ms_pool {
    int32_t threads; /* including the caller */
    pthread_t *tids;
    struct worker_arg *args; /* one per worker thread: no allocation happens on a worker */
    int32_t started;         /* workers created */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    atomic_uint_fast64_t generation; /* bumped by each run (under mu); workers wait for a new one */
    atomic_int busy;                 /* workers still in the current run */
    atomic_bool quit;
    /* the current run, written before generation is bumped */
    ms_pool_fn fn;
    void *ctx;
    size_t tasks;
    struct {
        atomic_size_t next; /* the next task of this worker's range */
        char pad[64 - sizeof(atomic_size_t)];
    } range[MS_POOL_MAX_THREADS];
};

typedef struct worker_arg {
    ms_pool *pool;
    int32_t index;
} worker_arg;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until done(p, arg) or SPIN_NS pass; returns done's last answer. */
static bool spin_until(bool (*done)(ms_pool *, uint64_t), ms_pool *p, uint64_t arg) {
    const int64_t t0 = now_ns();
    for (;;) {
        for (int i = 0; i < SPIN_CHECK; i++) {
            if (done(p, arg)) return true;
            POOL_PAUSE();
        }
        if (now_ns() - t0 > SPIN_NS) return done(p, arg);
    }
}

static bool new_run(ms_pool *p, uint64_t seen) {
    return atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
           atomic_load_explicit(&p->quit, memory_order_acquire);
}

static bool all_done(ms_pool *p, uint64_t unused) {
    (void)unused;
    return atomic_load_explicit(&p->busy, memory_order_acquire) == 0;
}

/* Worker w owns tasks [tasks w / n, tasks (w + 1) / n) and takes them in order, then helps
 * the others with what they have not started. Tasks are shapes-fixed parts of a layer (bands
 * of rows first), so the same worker computes the same part of every layer and mostly reads
 * what it wrote itself, from its own L2: with tasks handed out first come, first served,
 * ResNet-18 on 2 threads took 15.8 ms, with these ranges 13.9 (1 thread: 26.2). */
static void work(ms_pool *p, int32_t worker) {
    const size_t n = (size_t)p->threads;
    for (size_t k = 0; k < n; k++) {
        const size_t v = ((size_t)worker + k) % n, end = p->tasks * (v + 1) / n;
        for (;;) {
            const size_t t = atomic_fetch_add_explicit(&p->range[v].next, 1, memory_order_relaxed);
            if (t >= end) break;
            p->fn(p->ctx, t, worker);
        }
    }
}

static void *worker_main(void *arg) {
    ms_pool *p = ((worker_arg *)arg)->pool;
    const int32_t index = ((worker_arg *)arg)->index;
    uint64_t seen = 0;
    for (;;) {
        if (!spin_until(new_run, p, seen)) {
            pthread_mutex_lock(&p->mu);
            while (!new_run(p, seen)) pthread_cond_wait(&p->go, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        work(p, index);
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
            /* the last one: wake the caller if it went to sleep (it checks busy under mu) */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

ms_status ms_pool_create(int32_t threads, ms_pool **out, ms_err *err) {
    if (out == NULL) return ms_fail(err, MS_EINVAL, "thread pool: NULL argument");
    if (threads < 1 || threads > MS_POOL_MAX_THREADS)
        return ms_fail(err, MS_EINVAL, "thread pool: %d threads, must be 1 to %d", threads,
                       MS_POOL_MAX_THREADS);
    ms_pool *p = ms_calloc(1, sizeof *p);
    if (p == NULL) return ms_fail(err, MS_ENOMEM, "thread pool: out of memory");
    p->threads = threads;
    for (int32_t i = 0; i < MS_POOL_MAX_THREADS; i++) atomic_init(&p->range[i].next, 0);
    atomic_init(&p->generation, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->quit, false);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        ms_free(p);
        return ms_fail(err, MS_ENOMEM, "thread pool: cannot create a mutex");
    }
    if (pthread_cond_init(&p->go, NULL) != 0 || pthread_cond_init(&p->done, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        ms_free(p);
        return ms_fail(err, MS_ENOMEM, "thread pool: cannot create a condition variable");
    }
    if (threads > 1) {
        p->tids = ms_calloc((size_t)threads - 1, sizeof *p->tids);
        p->args = ms_calloc((size_t)threads - 1, sizeof *p->args);
        if (p->tids == NULL || p->args == NULL) {
            ms_pool_destroy(p);
            return ms_fail(err, MS_ENOMEM, "thread pool: out of memory");
        }
        for (int32_t i = 1; i < threads; i++) {
            p->args[i - 1] = (worker_arg){p, i};
            if (pthread_create(&p->tids[i - 1], NULL, worker_main, &p->args[i - 1]) != 0) {
                ms_pool_destroy(p);
                return ms_fail(err, MS_ENOMEM, "thread pool: cannot start thread %d of %d", i + 1,
                               threads);
            }
            p->started++;
        }
    }
    *out = p;
    return MS_OK;
}

void ms_pool_destroy(ms_pool *p) {
    if (p == NULL) return;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->quit, true, memory_order_release);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 0; i < p->started; i++) pthread_join(p->tids[i], NULL);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    ms_free(p->tids);
    ms_free(p->args);
    ms_free(p);
}

int32_t ms_pool_threads(const ms_pool *p) { return p ? p->threads : 1; }

void ms_pool_run(ms_pool *p, size_t tasks, ms_pool_fn fn, void *ctx) {
    if (tasks == 0) return;
    if (p == NULL || p->threads == 1 || tasks == 1) {
        for (size_t t = 0; t < tasks; t++) fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->tasks = tasks;
    for (int32_t i = 0; i < p->threads; i++)
        atomic_store_explicit(&p->range[i].next, tasks * (size_t)i / (size_t)p->threads,
                              memory_order_relaxed);
    atomic_store_explicit(&p->busy, p->started, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    if (spin_until(all_done, p, 0)) return;
    pthread_mutex_lock(&p->mu);
    while (!all_done(p, 0)) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
