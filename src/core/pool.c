/* ms_pool: a fixed set of worker threads for the parallel loops of one inference session.
 *
 * ms_pool_run hands out task indices from an atomic counter; the caller works too (worker 0),
 * so a pool of 1 thread is a plain loop. Results must not depend on which worker ran a task:
 * callers give every task its own output and workspace slot, which is what makes 1 and N
 * threads bit-identical. Workers sleep on a condition variable between runs (an inference
 * has a few dozen parallel loops, each long next to a wake-up). */
#include <pthread.h>
#include <stdatomic.h>

#include "medscreen/core.h"

struct ms_pool {
    int32_t threads; /* including the caller */
    pthread_t *tids;
    struct worker_arg *args; /* one per worker thread: no allocation happens on a worker */
    int32_t started; /* workers created */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t generation; /* bumped by each run; workers wait for a new one */
    int32_t busy;        /* workers still in the current run */
    bool quit;
    /* the current run */
    ms_pool_fn fn;
    void *ctx;
    size_t tasks;
    atomic_size_t next;
};

typedef struct worker_arg {
    ms_pool *pool;
    int32_t index;
} worker_arg;

static void work(ms_pool *p, int32_t worker) {
    for (;;) {
        size_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->tasks) return;
        p->fn(p->ctx, t, worker);
    }
}

static void *worker_main(void *arg) {
    ms_pool *p = ((worker_arg *)arg)->pool;
    const int32_t index = ((worker_arg *)arg)->index;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        work(p, index);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    atomic_init(&p->next, 0);
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
    p->quit = true;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->tasks = tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->busy = p->started;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
