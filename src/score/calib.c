/* Calibration statistics (include/medscreen/calib.h): AUROC, temperature fit, expected
 * calibration error, operating-point thresholds and a stratified bootstrap. */
#include "medscreen/calib.h"

#include "medscreen/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ms_calib_count(const uint8_t *label, size_t n, size_t *normal, size_t *abnormal) {
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) pos += label[i] != 0;
    if (normal) *normal = n - pos;
    if (abnormal) *abnormal = pos;
}

/* ---- AUROC ---- */

typedef struct scored {
    double score;
    uint32_t index;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score < y->score) return -1;
    if (x->score > y->score) return 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Scans sorted by score, ascending. */
static ms_status sort_scores(const double *score, size_t n, scored **out, ms_err *err) {
    if (n > UINT32_MAX) return ms_fail(err, MS_ELIMIT, "calibration: too many scans (%zu)", n);
    scored *s = ms_calloc(n, sizeof *s);
    if (!s) return ms_fail(err, MS_ENOMEM, "calibration: out of memory");
    for (size_t i = 0; i < n; i++) {
        s[i].score = score[i];
        s[i].index = (uint32_t)i;
    }
    qsort(s, n, sizeof *s, cmp_scored);
    *out = s;
    return MS_OK;
}

/* Mann-Whitney over sorted scans, each counted weight[index] times (NULL: once): for every
 * group of equal scores, its abnormal weight times the normal weight below it, plus half its
 * abnormal weight times its own normal weight. */
static double auroc_sorted(const scored *s, size_t n, const uint8_t *label,
                           const uint32_t *weight) {
    double below = 0, num = 0, pos_total = 0, neg_total = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        double p = 0, q = 0;
        while (j < n && s[j].score == s[i].score) {
            double w = weight ? (double)weight[s[j].index] : 1.0;
            if (label[s[j].index])
                p += w;
            else
                q += w;
            j++;
        }
        num += p * below + 0.5 * p * q;
        below += q;
        pos_total += p;
        neg_total += q;
        i = j;
    }
    return num / (pos_total * neg_total);
}

static ms_status check_inputs(const double *v, const uint8_t *label, size_t n, bool both,
                              const char *what, ms_err *err) {
    if (!v || !label || n == 0) return ms_fail(err, MS_EINVAL, "calibration: no %s", what);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return ms_fail(err, MS_EINVAL, "calibration: %s %zu is not finite", what, i);
    if (both) {
        size_t neg, pos;
        ms_calib_count(label, n, &neg, &pos);
        if (neg == 0 || pos == 0)
            return ms_fail(err, MS_EINVAL,
                           "calibration: needs both normal and abnormal scans (%zu normal, "
                           "%zu abnormal)",
                           neg, pos);
    }
    return MS_OK;
}

ms_status ms_calib_auroc(const double *score, const uint8_t *label, size_t n, double *out,
                         ms_err *err) {
    ms_status st = check_inputs(score, label, n, true, "score", err);
    if (st != MS_OK) return st;
    if (!out) return ms_fail(err, MS_EINVAL, "calibration: NULL output");
    scored *s = NULL;
    if ((st = sort_scores(score, n, &s, err)) != MS_OK) return st;
    *out = auroc_sorted(s, n, label, NULL);
    ms_free(s);
    return MS_OK;
}

/* ---- temperature ---- */

static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

double ms_calib_logloss(const double *logit, const uint8_t *label, size_t n, double a) {
    if (n == 0) return NAN;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double z = a * logit[i];
        /* -log sigmoid(z) = softplus(-z); -log(1 - sigmoid(z)) = softplus(z) */
        double softplus = (z > 0 ? z : 0) + log1p(exp(-fabs(z)));
        sum += softplus - (label[i] ? z : 0);
    }
    return sum / (double)n;
}

/* First and second derivatives of the mean loss in a. */
static void loss_derivs(const double *logit, const uint8_t *label, size_t n, double a, double *g,
                        double *h) {
    double sg = 0, sh = 0;
    for (size_t i = 0; i < n; i++) {
        double s = logit[i], p = sigmoid(a * s);
        sg += (p - (label[i] ? 1.0 : 0.0)) * s;
        sh += p * (1 - p) * s * s;
    }
    *g = sg / (double)n;
    *h = sh / (double)n;
}

ms_status ms_calib_fit_temperature(const double *logit, const uint8_t *label, size_t n,
                                   double t_min, double t_max, double *t_out, bool *at_bound,
                                   ms_err *err) {
    ms_status st = check_inputs(logit, label, n, false, "logit", err);
    if (st != MS_OK) return st;
    if (!t_out || !(t_min > 0) || !(t_max > t_min) || !isfinite(t_max))
        return ms_fail(err, MS_EINVAL, "calibration: bad temperature range [%g, %g]", t_min, t_max);
    bool any = false;
    for (size_t i = 0; i < n && !any; i++) any = logit[i] != 0;
    if (!any) { /* every scale fits equally well: keep the neutral one if it is allowed */
        *t_out = t_min <= 1 && 1 <= t_max ? 1.0 : t_min;
        if (at_bound) *at_bound = false;
        return MS_OK;
    }
    double lo = 1.0 / t_max, hi = 1.0 / t_min, g, h;
    loss_derivs(logit, label, n, lo, &g, &h);
    if (g >= 0) { /* the loss rises from the smallest scale on */
        *t_out = t_max;
        if (at_bound) *at_bound = g > 0;
        return MS_OK;
    }
    loss_derivs(logit, label, n, hi, &g, &h);
    if (g <= 0) { /* still falling at the largest scale (separable data) */
        *t_out = t_min;
        if (at_bound) *at_bound = g < 0;
        return MS_OK;
    }
    /* g(lo) < 0 < g(hi), g increasing: Newton inside the bracket, else bisection. */
    double a = 1.0 < lo ? lo : (1.0 > hi ? hi : 1.0);
    for (int it = 0; it < 200; it++) {
        loss_derivs(logit, label, n, a, &g, &h);
        if (g == 0) break;
        if (g < 0)
            lo = a;
        else
            hi = a;
        double next = h > 0 ? a - g / h : NAN;
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        double step = fabs(next - a);
        a = next;
        if (step <= 1e-12 * a || hi - lo <= 1e-12 * a) break;
    }
    *t_out = 1.0 / a;
    if (at_bound) *at_bound = false;
    return MS_OK;
}

/* ---- calibration error and rates ---- */

double ms_calib_ece(const double *prob, const uint8_t *label, size_t n, uint32_t bins) {
    if (n == 0 || bins == 0) return NAN;
    double *sp = ms_calloc(bins, sizeof *sp), *sy = ms_calloc(bins, sizeof *sy);
    size_t *cnt = ms_calloc(bins, sizeof *cnt);
    double ece = NAN;
    if (sp && sy && cnt) {
        for (size_t i = 0; i < n; i++) {
            double p = prob[i];
            p = p < 0 ? 0 : (p > 1 ? 1 : p);
            size_t b = (size_t)(p * bins);
            if (b >= bins) b = bins - 1;
            sp[b] += p;
            sy[b] += label[i] ? 1.0 : 0.0;
            cnt[b]++;
        }
        ece = 0;
        for (uint32_t b = 0; b < bins; b++)
            if (cnt[b]) ece += fabs(sp[b] - sy[b]) / (double)n;
    }
    ms_free(sp);
    ms_free(sy);
    ms_free(cnt);
    return ece;
}

void ms_calib_rates(const double *prob, const uint8_t *label, size_t n, double threshold,
                    double *sensitivity, double *specificity) {
    size_t tp = 0, pos = 0, tn = 0, neg = 0;
    for (size_t i = 0; i < n; i++) {
        bool flagged = prob[i] >= threshold;
        if (label[i]) {
            pos++;
            tp += flagged;
        } else {
            neg++;
            tn += !flagged;
        }
    }
    if (sensitivity) *sensitivity = pos ? (double)tp / (double)pos : NAN;
    if (specificity) *specificity = neg ? (double)tn / (double)neg : NAN;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The probabilities of one class, sorted ascending. */
static ms_status class_probs(const double *prob, const uint8_t *label, size_t n, uint8_t cls,
                             uint32_t percent, double **out, size_t *count, ms_err *err) {
    if (!prob || !label || percent > 100)
        return ms_fail(err, MS_EINVAL, "calibration: bad operating point (%u%%)", percent);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(prob[i] >= 0 && prob[i] <= 1))
            return ms_fail(err, MS_EINVAL, "calibration: probability %zu (%g) is not in [0, 1]", i,
                           prob[i]);
        k += (label[i] != 0) == (cls != 0);
    }
    if (k == 0)
        return ms_fail(err, MS_EINVAL, "calibration: no %s scans", cls ? "abnormal" : "normal");
    double *v = ms_calloc(k, sizeof *v);
    if (!v) return ms_fail(err, MS_ENOMEM, "calibration: out of memory");
    k = 0;
    for (size_t i = 0; i < n; i++)
        if ((label[i] != 0) == (cls != 0)) v[k++] = prob[i];
    qsort(v, k, sizeof *v, cmp_double);
    *out = v;
    *count = k;
    return MS_OK;
}

/* ceil(percent * count / 100) without floating point, so 90% of 10 is exactly 9. */
static size_t needed(uint32_t percent, size_t count) {
    size_t whole = count / 100, rest = count % 100;
    return whole * percent + (rest * percent + 99) / 100;
}

ms_status ms_calib_sens_threshold(const double *prob, const uint8_t *label, size_t n,
                                  uint32_t percent, float *out, ms_err *err) {
    double *v = NULL;
    size_t k = 0;
    ms_status st = class_probs(prob, label, n, 1, percent, &v, &k, err);
    if (st != MS_OK) return st;
    size_t need = needed(percent, k);
    float f = 1.0f;
    if (need > 0) {
        double t = v[k - need]; /* the need-th highest */
        f = (float)t;
        if ((double)f > t) f = nextafterf(f, -INFINITY);
        if (f < 0) f = 0;
    }
    ms_free(v);
    if (out) *out = f;
    return MS_OK;
}

ms_status ms_calib_spec_threshold(const double *prob, const uint8_t *label, size_t n,
                                  uint32_t percent, float *out, bool *reached, ms_err *err) {
    double *v = NULL;
    size_t k = 0;
    ms_status st = class_probs(prob, label, n, 0, percent, &v, &k, err);
    if (st != MS_OK) return st;
    size_t need = needed(percent, k);
    float f = 0.0f;
    bool ok = true;
    if (need > 0) {
        double t = v[need - 1]; /* the need-th lowest must fall below the threshold */
        f = (float)t;
        if ((double)f <= t) f = nextafterf(f, INFINITY);
        if (f > 1.0f) {
            f = 1.0f;
            ok = t < 1.0;
        }
    }
    ms_free(v);
    if (out) *out = f;
    if (reached) *reached = ok;
    return MS_OK;
}

/* ---- bootstrap ---- */

/* xoshiro256** seeded through splitmix64: fixed, portable, good enough for resampling. */
typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, n), n >= 1, without modulo bias. */
static size_t rng_below(rng *r, size_t n) {
    uint64_t m = (uint64_t)n, limit = UINT64_MAX - UINT64_MAX % m;
    uint64_t x;
    do x = rng_next(r);
    while (x >= limit);
    return (size_t)(x % m);
}

/* The q-quantile of sorted v[0..k) by linear interpolation (Hyndman-Fan type 7). */
static double quantile(const double *v, size_t k, double q) {
    double h = (double)(k - 1) * q;
    size_t i = (size_t)floor(h);
    if (i + 1 >= k) return v[k - 1];
    return v[i] + (h - (double)i) * (v[i + 1] - v[i]);
}

static ms_calib_interval interval(double *v, size_t k, double level) {
    qsort(v, k, sizeof *v, cmp_double);
    ms_calib_interval ci = {quantile(v, k, (1 - level) / 2), quantile(v, k, (1 + level) / 2)};
    return ci;
}

ms_status ms_calib_bootstrap(const double *score, const double *prob, const uint8_t *label,
                             size_t n, const float *threshold, size_t nthr, uint32_t reps,
                             uint64_t seed, double level, ms_calib_interval *auroc,
                             ms_calib_interval *sens, ms_calib_interval *spec, ms_err *err) {
    ms_status st = check_inputs(score, label, n, true, "score", err);
    if (st != MS_OK) return st;
    if (!prob || !auroc || (nthr && (!threshold || !sens || !spec)) || reps == 0 ||
        !(level > 0 && level < 1))
        return ms_fail(err, MS_EINVAL, "calibration: bad bootstrap arguments");
    size_t neg = 0, pos = 0;
    ms_calib_count(label, n, &neg, &pos);
    scored *s = NULL;
    uint32_t *w = NULL;
    size_t *pos_idx = NULL, *neg_idx = NULL;
    double *stat = NULL, *hits = NULL;
    size_t cols = 1 + 2 * nthr, cells;
    if (!ms_mul_size(reps, cols, &cells)) return ms_fail(err, MS_EOVERFLOW, "bootstrap size");
    if ((st = sort_scores(score, n, &s, err)) != MS_OK) return st;
    w = ms_calloc(n, sizeof *w);
    pos_idx = ms_calloc(pos, sizeof *pos_idx);
    neg_idx = ms_calloc(neg, sizeof *neg_idx);
    stat = ms_calloc(cells, sizeof *stat);
    hits = ms_calloc(nthr ? 2 * nthr : 1, sizeof *hits);
    if (!w || !pos_idx || !neg_idx || !stat || !hits) {
        st = ms_fail(err, MS_ENOMEM, "calibration: out of memory for the bootstrap");
        goto done;
    }
    size_t a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        if (label[i])
            pos_idx[a++] = i;
        else
            neg_idx[b++] = i;
    }
    rng r;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r.s[i] = splitmix64(&x);
    for (uint32_t rep = 0; rep < reps; rep++) {
        memset(w, 0, n * sizeof *w);
        memset(hits, 0, (nthr ? 2 * nthr : 1) * sizeof *hits);
        for (size_t i = 0; i < pos; i++) {
            size_t k = pos_idx[rng_below(&r, pos)];
            w[k]++;
            for (size_t j = 0; j < nthr; j++) hits[j] += prob[k] >= (double)threshold[j];
        }
        for (size_t i = 0; i < neg; i++) {
            size_t k = neg_idx[rng_below(&r, neg)];
            w[k]++;
            for (size_t j = 0; j < nthr; j++) hits[nthr + j] += prob[k] < (double)threshold[j];
        }
        double *row = stat + (size_t)rep * cols;
        row[0] = auroc_sorted(s, n, label, w);
        for (size_t j = 0; j < nthr; j++) {
            row[1 + j] = hits[j] / (double)pos;
            row[1 + nthr + j] = hits[nthr + j] / (double)neg;
        }
    }
    /* Column by column: gather, sort, take the quantiles. */
    double *col = ms_calloc(reps, sizeof *col);
    if (!col) {
        st = ms_fail(err, MS_ENOMEM, "calibration: out of memory for the bootstrap");
        goto done;
    }
    for (size_t c = 0; c < cols; c++) {
        for (uint32_t rep = 0; rep < reps; rep++) col[rep] = stat[(size_t)rep * cols + c];
        ms_calib_interval ci = interval(col, reps, level);
        if (c == 0)
            *auroc = ci;
        else if (c <= nthr)
            sens[c - 1] = ci;
        else
            spec[c - 1 - nthr] = ci;
    }
    ms_free(col);
    st = MS_OK;
done:
    ms_free(s);
    ms_free(w);
    ms_free(pos_idx);
    ms_free(neg_idx);
    ms_free(stat);
    ms_free(hits);
    return st;
}
