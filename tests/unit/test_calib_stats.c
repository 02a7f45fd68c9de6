/* Calibration statistics (include/medscreen/calib.h): AUROC against hand-computed cases and
 * an O(n^2) pair count, the temperature fit against a brute-force grid, ECE by hand,
 * sensNN / specNN thresholds on crafted data, bootstrap determinism and intervals, bad
 * arguments, allocation failures. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "alloc_hooks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/calib.h"

#define assert_near(a, b, tol) near_at((double)(a), (double)(b), (double)(tol), __FILE__, __LINE__)
static void near_at(double a, double b, double tol, const char *file, int line) {
    if (!(fabs(a - b) <= tol))
        fail_msg("%s:%d: %.17g != %.17g (tolerance %g)", file, line, a, b, tol);
}

static uint32_t rng_state = 12345u;
static double drand(void) { /* xorshift32, in [0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return (double)(rng_state >> 8) / 16777216.0;
}

static double pair_auroc(const double *s, const uint8_t *y, size_t n) {
    double num = 0, pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (y[i] && !y[j]) {
                pairs++;
                num += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
            }
    return num / pairs;
}

static void test_auroc_hand(void **state) {
    (void)state;
    double v;
    /* perfect, inverted */
    const double s1[] = {0.1, 0.2, 0.8, 0.9};
    const uint8_t y1[] = {0, 0, 1, 1}, y2[] = {1, 1, 0, 0};
    assert_int_equal(ms_calib_auroc(s1, y1, 4, &v, NULL), MS_OK);
    assert_near(v, 1.0, 0);
    assert_int_equal(ms_calib_auroc(s1, y2, 4, &v, NULL), MS_OK);
    assert_near(v, 0.0, 0);
    /* pos {0.35, 0.8}, neg {0.1, 0.4, 0.8}: 0.35 beats 0.1 (1); 0.8 beats 0.1, 0.4 and ties
     * 0.8 (2.5); 3.5 / 6 */
    const double s3[] = {0.1, 0.35, 0.4, 0.8, 0.8};
    const uint8_t y3[] = {0, 1, 0, 1, 0};
    assert_int_equal(ms_calib_auroc(s3, y3, 5, &v, NULL), MS_OK);
    assert_near(v, 3.5 / 6.0, 1e-15);
    /* every score tied: 0.5 */
    const double s4[] = {2, 2, 2, 2, 2};
    const uint8_t y4[] = {1, 0, 0, 1, 1};
    assert_int_equal(ms_calib_auroc(s4, y4, 5, &v, NULL), MS_OK);
    assert_near(v, 0.5, 0);
    /* one class, NaN, nothing */
    ms_err err;
    assert_int_equal(ms_calib_auroc(s1, y1, 2, &v, &err), MS_EINVAL);
    assert_non_null(strstr(err.msg, "both normal and abnormal"));
    const double s5[] = {0.1, NAN};
    const uint8_t y5[] = {0, 1};
    assert_int_equal(ms_calib_auroc(s5, y5, 2, &v, NULL), MS_EINVAL);
    assert_int_equal(ms_calib_auroc(s1, y1, 0, &v, NULL), MS_EINVAL);
}

static void test_auroc_random(void **state) {
    (void)state;
    for (int trial = 0; trial < 50; trial++) {
        size_t n = 2 + (size_t)(drand() * 200);
        double *s = malloc(n * sizeof *s);
        uint8_t *y = malloc(n);
        assert_non_null(s);
        assert_non_null(y);
        for (size_t i = 0; i < n; i++) {
            y[i] = (uint8_t)(i < 2 ? i : drand() < 0.4);
            /* coarse values so that ties are common */
            s[i] = floor(drand() * 10) + (y[i] ? 2 : 0);
        }
        double v;
        assert_int_equal(ms_calib_auroc(s, y, n, &v, NULL), MS_OK);
        assert_near(v, pair_auroc(s, y, n), 1e-12);
        free(s);
        free(y);
    }
}

static void test_logloss(void **state) {
    (void)state;
    const double s[] = {0, 2, -1000, 1000};
    const uint8_t y[] = {1, 0, 0, 1};
    /* log 2, log(1 + e^2), ~0, ~0 */
    assert_near(ms_calib_logloss(s, y, 1, 1.0), log(2.0), 1e-15);
    assert_near(ms_calib_logloss(s + 1, y + 1, 1, 1.0), log1p(exp(2.0)), 1e-14);
    assert_near(ms_calib_logloss(s + 2, y + 2, 2, 1.0), 0.0, 1e-300);
    const uint8_t yw[] = {1, 0}; /* confidently wrong: large but finite */
    assert_near(ms_calib_logloss(s + 2, yw, 2, 1.0), 1000.0, 1e-9);
}

static double grid_temperature(const double *s, const uint8_t *y, size_t n) {
    double best = NAN, best_loss = INFINITY;
    for (int i = 0; i <= 40000; i++) {
        double t = pow(10.0, -2.0 + 4.0 * i / 40000.0);
        double l = ms_calib_logloss(s, y, n, 1.0 / t);
        if (l < best_loss) {
            best_loss = l;
            best = t;
        }
    }
    return best;
}

static void test_temperature(void **state) {
    (void)state;
    /* logits drawn from a model that is overconfident by a factor of 2.5: y ~ sigmoid(z),
     * reported logit s = 2.5 z, so the fitted temperature is near 2.5 */
    enum { N = 2000 };
    double *s = malloc(N * sizeof *s);
    uint8_t *y = malloc(N);
    assert_non_null(s);
    assert_non_null(y);
    for (size_t i = 0; i < N; i++) {
        double z = (drand() - 0.5) * 8;
        y[i] = drand() < 1 / (1 + exp(-z));
        s[i] = 2.5 * z;
    }
    double t;
    bool at_bound = true;
    assert_int_equal(ms_calib_fit_temperature(s, y, N, 0.01, 100, &t, &at_bound, NULL), MS_OK);
    assert_false(at_bound);
    double g = grid_temperature(s, y, N);
    assert_near(t, g, 1e-3 * g);
    assert_true(ms_calib_logloss(s, y, N, 1 / t) <= ms_calib_logloss(s, y, N, 1 / g) + 1e-12);
    assert_true(t > 2.0 && t < 3.1);

    /* small hand set */
    const double s2[] = {-2, -1, 0.5, 1, 3, -0.5, 2};
    const uint8_t y2[] = {0, 1, 0, 1, 1, 0, 0};
    assert_int_equal(ms_calib_fit_temperature(s2, y2, 7, 0.01, 100, &t, &at_bound, NULL), MS_OK);
    g = grid_temperature(s2, y2, 7);
    assert_near(t, g, 1e-3 * g);

    /* separable: wants T -> 0, gets the lower bound; backwards: the upper bound */
    const double s3[] = {-1, -2, 1, 2};
    const uint8_t y3[] = {0, 0, 1, 1}, y4[] = {1, 1, 0, 0};
    assert_int_equal(ms_calib_fit_temperature(s3, y3, 4, 0.01, 100, &t, &at_bound, NULL), MS_OK);
    assert_near(t, 0.01, 0);
    assert_true(at_bound);
    assert_int_equal(ms_calib_fit_temperature(s3, y4, 4, 0.01, 100, &t, &at_bound, NULL), MS_OK);
    assert_near(t, 100, 0);
    assert_true(at_bound);
    /* all logits 0: any T fits; 1 */
    const double s5[] = {0, 0, 0};
    assert_int_equal(ms_calib_fit_temperature(s5, y3, 3, 0.01, 100, &t, &at_bound, NULL), MS_OK);
    assert_near(t, 1, 0);
    assert_false(at_bound);
    /* bad range */
    assert_int_equal(ms_calib_fit_temperature(s3, y3, 4, 0, 100, &t, NULL, NULL), MS_EINVAL);
    assert_int_equal(ms_calib_fit_temperature(s3, y3, 4, 5, 1, &t, NULL, NULL), MS_EINVAL);
    free(s);
    free(y);
}

static void test_ece(void **state) {
    (void)state;
    /* bin 0: {0.05 (y0), 0.05 (y1)} mean p 0.05, rate 0.5: |0.45| * 2/5
     * bin 9: {0.95 (y1), 1.0 (y1)}: mean 0.975, rate 1: 0.025 * 2/5
     * bin 5: {0.55 (y0)}: 0.55 * 1/5 */
    const double p[] = {0.05, 0.05, 0.95, 1.0, 0.55};
    const uint8_t y[] = {0, 1, 1, 1, 0};
    assert_near(ms_calib_ece(p, y, 5, 10), 0.45 * 0.4 + 0.025 * 0.4 + 0.55 * 0.2, 1e-12);
    assert_true(isnan(ms_calib_ece(p, y, 0, 10)));
    /* perfectly calibrated in every bin */
    const double q[] = {0.5, 0.5};
    const uint8_t z[] = {0, 1};
    assert_near(ms_calib_ece(q, z, 2, 10), 0, 0);
}

static void test_thresholds(void **state) {
    (void)state;
    /* abnormal: 0.9 0.8 0.7 0.6 0.5 0.4 0.3 0.2 0.1 0.05; normal: 0.0 .. 0.9 step 0.1 */
    double p[20];
    uint8_t y[20];
    const double pos[10] = {0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05};
    for (int i = 0; i < 10; i++) {
        p[i] = pos[i];
        y[i] = 1;
        p[10 + i] = 0.1 * i;
        y[10 + i] = 0;
    }
    float t;
    double sens, spec;
    /* sens90: 9 of 10 abnormal at or above: the 9th highest, 0.1 */
    assert_int_equal(ms_calib_sens_threshold(p, y, 20, 90, &t, NULL), MS_OK);
    assert_true((double)t <= 0.1 && (double)nextafterf(t, 1) > 0.1);
    ms_calib_rates(p, y, 20, t, &sens, &spec);
    assert_near(sens, 0.9, 1e-15);
    /* any higher threshold loses sensitivity */
    ms_calib_rates(p, y, 20, nextafterf(t, 1), &sens, NULL);
    assert_near(sens, 0.8, 1e-15);
    /* sens95 of 10: ceil(9.5) = 10: the lowest, 0.05; sens100 the same */
    assert_int_equal(ms_calib_sens_threshold(p, y, 20, 95, &t, NULL), MS_OK);
    ms_calib_rates(p, y, 20, t, &sens, NULL);
    assert_near(sens, 1.0, 0);
    assert_true((double)t <= 0.05 && (double)nextafterf(t, 1) > 0.05);
    /* sens50: 5th highest, 0.5 */
    assert_int_equal(ms_calib_sens_threshold(p, y, 20, 50, &t, NULL), MS_OK);
    assert_near(t, 0.5, 1e-7);
    /* spec80: 8 of 10 normal below: just above the 8th lowest (0.7) */
    bool reached = false;
    assert_int_equal(ms_calib_spec_threshold(p, y, 20, 80, &t, &reached, NULL), MS_OK);
    assert_true(reached);
    assert_true((double)t > 0.7 && (double)nextafterf(t, 0) <= 0.7);
    ms_calib_rates(p, y, 20, t, &sens, &spec);
    assert_near(spec, 0.8, 1e-15);
    ms_calib_rates(p, y, 20, nextafterf(t, 0), NULL, &spec);
    assert_near(spec, 0.7, 1e-15); /* any lower threshold loses specificity */
    /* spec91 of 10: ceil(9.1) = 10: above 0.9 */
    assert_int_equal(ms_calib_spec_threshold(p, y, 20, 91, &t, &reached, NULL), MS_OK);
    ms_calib_rates(p, y, 20, t, NULL, &spec);
    assert_near(spec, 1.0, 0);
    /* normals at probability 1: specificity 100% cannot be reached */
    const double q[] = {1.0, 0.2, 0.5};
    const uint8_t z[] = {0, 0, 1};
    assert_int_equal(ms_calib_spec_threshold(q, z, 3, 100, &t, &reached, NULL), MS_OK);
    assert_false(reached);
    assert_near(t, 1.0, 0);
    assert_int_equal(ms_calib_spec_threshold(q, z, 3, 50, &t, &reached, NULL), MS_OK);
    assert_true(reached);
    /* ties: 90% of abnormal {0.3 x 10} is 0.3 */
    double r[12];
    uint8_t w[12];
    for (int i = 0; i < 12; i++) {
        r[i] = i < 10 ? 0.3 : 0.1;
        w[i] = i < 10;
    }
    assert_int_equal(ms_calib_sens_threshold(r, w, 12, 90, &t, NULL), MS_OK);
    ms_calib_rates(r, w, 12, t, &sens, &spec);
    assert_near(sens, 1.0, 0);
    assert_near(spec, 1.0, 0);
    /* errors: bad percent, class absent, probability out of range */
    assert_int_equal(ms_calib_sens_threshold(p, y, 20, 101, &t, NULL), MS_EINVAL);
    assert_int_equal(ms_calib_sens_threshold(p + 10, y + 10, 10, 90, &t, NULL), MS_EINVAL);
    assert_int_equal(ms_calib_spec_threshold(p, y, 10, 90, &t, NULL, NULL), MS_EINVAL);
    const double bad[] = {1.5, 0.2};
    const uint8_t bl[] = {1, 0};
    assert_int_equal(ms_calib_sens_threshold(bad, bl, 2, 90, &t, NULL), MS_EINVAL);
}

static void make_data(double *s, double *p, uint8_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        y[i] = (uint8_t)(i % 3 == 0);
        s[i] = (y[i] ? 1.0 : 0.0) + 1.5 * (drand() - 0.5) * 2;
        p[i] = 1 / (1 + exp(-s[i]));
    }
}

static void test_bootstrap(void **state) {
    (void)state;
    enum { N = 150 };
    double s[N], p[N];
    uint8_t y[N];
    make_data(s, p, y, N);
    double auc;
    assert_int_equal(ms_calib_auroc(s, y, N, &auc, NULL), MS_OK);
    const float thr[2] = {0.5f, 0.7f};
    ms_calib_interval a1, a2, a3, se1[2], sp1[2], se2[2], sp2[2], se3[2], sp3[2];
    assert_int_equal(ms_calib_bootstrap(s, p, y, N, thr, 2, 500, 42, 0.95, &a1, se1, sp1, NULL),
                     MS_OK);
    assert_int_equal(ms_calib_bootstrap(s, p, y, N, thr, 2, 500, 42, 0.95, &a2, se2, sp2, NULL),
                     MS_OK);
    /* the same seed: bit-identical */
    assert_memory_equal(&a1, &a2, sizeof a1);
    assert_memory_equal(se1, se2, sizeof se1);
    assert_memory_equal(sp1, sp2, sizeof sp1);
    /* another seed: different, similar */
    assert_int_equal(ms_calib_bootstrap(s, p, y, N, thr, 2, 500, 43, 0.95, &a3, se3, sp3, NULL),
                     MS_OK);
    assert_true(a3.lo != a1.lo || a3.hi != a1.hi);
    assert_near(a3.lo, a1.lo, 0.05);
    /* the intervals contain the point estimates and are ordered */
    assert_true(a1.lo <= auc && auc <= a1.hi && a1.lo < a1.hi);
    for (int j = 0; j < 2; j++) {
        double sens, spec;
        ms_calib_rates(p, y, N, thr[j], &sens, &spec);
        assert_true(se1[j].lo <= sens && sens <= se1[j].hi);
        assert_true(sp1[j].lo <= spec && spec <= sp1[j].hi);
        assert_true(se1[j].lo >= 0 && se1[j].hi <= 1);
    }
    /* a wider level gives a wider interval */
    ms_calib_interval a99;
    assert_int_equal(ms_calib_bootstrap(s, p, y, N, NULL, 0, 500, 42, 0.99, &a99, NULL, NULL, NULL),
                     MS_OK);
    assert_true(a99.lo <= a1.lo && a99.hi >= a1.hi);
    /* perfectly separated data: every resample has AUROC 1 (both classes in each) */
    double s2[10], p2[10];
    uint8_t y2[10];
    for (int i = 0; i < 10; i++) {
        y2[i] = i >= 5;
        s2[i] = i;
        p2[i] = i / 10.0;
    }
    assert_int_equal(
        ms_calib_bootstrap(s2, p2, y2, 10, NULL, 0, 200, 1, 0.95, &a1, NULL, NULL, NULL), MS_OK);
    assert_near(a1.lo, 1, 0);
    assert_near(a1.hi, 1, 0);
    /* bad arguments */
    assert_int_equal(ms_calib_bootstrap(s, p, y, N, thr, 2, 0, 1, 0.95, &a1, se1, sp1, NULL),
                     MS_EINVAL);
    assert_int_equal(ms_calib_bootstrap(s, p, y, N, thr, 2, 10, 1, 1.0, &a1, se1, sp1, NULL),
                     MS_EINVAL);
    assert_int_equal(ms_calib_bootstrap(s, p, y, 3, thr, 2, 10, 1, 0.95, &a1, se1, sp1, NULL),
                     MS_OK); /* i = 0 is abnormal, 1 and 2 normal */
    assert_int_equal(ms_calib_bootstrap(s, p, y, 1, thr, 2, 10, 1, 0.95, &a1, se1, sp1, NULL),
                     MS_EINVAL); /* one class */
}

static void test_alloc_failures(void **state) {
    (void)state;
    enum { N = 40 };
    double s[N], p[N];
    uint8_t y[N];
    make_data(s, p, y, N);
    const float thr[1] = {0.5f};
    for (long k = 1;; k++) {
        hook_state hs = {k, 0, 0, 0};
        hooks_install(&hs);
        ms_calib_interval a, se[1], sp[1];
        double v;
        float t;
        ms_status st1 = ms_calib_bootstrap(s, p, y, N, thr, 1, 20, 1, 0.95, &a, se, sp, NULL);
        ms_status st2 = ms_calib_auroc(s, y, N, &v, NULL);
        ms_status st3 = ms_calib_sens_threshold(p, y, N, 90, &t, NULL);
        double e = ms_calib_ece(p, y, N, 10);
        ms_alloc_set_hooks(NULL);
        assert_int_equal(hs.live, 0);
        if (hs.count < k) { /* nothing failed */
            assert_int_equal(st1, MS_OK);
            assert_int_equal(st2, MS_OK);
            assert_int_equal(st3, MS_OK);
            assert_true(e >= 0);
            break;
        }
        assert_true(st1 == MS_OK || st1 == MS_ENOMEM);
        assert_true(st2 == MS_OK || st2 == MS_ENOMEM);
        assert_true(st3 == MS_OK || st3 == MS_ENOMEM);
        assert_true(k < 100);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auroc_hand), cmocka_unit_test(test_auroc_random),
        cmocka_unit_test(test_logloss),    cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_ece),        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_bootstrap),  cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
