/* Calibration statistics (score layer): what `medscreen calibrate` needs to re-fit a model's
 * temperature and operating points to a site's labelled scans, and to say how sure it is.
 *
 * Labels are 0 (normal) or 1 (abnormal). Scores are the network's raw score values (logits or
 * probabilities); probabilities are on the scale scan compares with thresholds. A scan is
 * called abnormal when its probability is >= the threshold, exactly as `scan` flags it.
 * Everything is pure: plain arrays in, results out, no globals, deterministic, thread-safe. */
#ifndef MEDSCREEN_CALIB_H
#define MEDSCREEN_CALIB_H

#include "medscreen/medscreen.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counts of each class. */
void ms_calib_count(const uint8_t *label, size_t n, size_t *normal, size_t *abnormal);

/* The area under the ROC curve of score against label: the Mann-Whitney U statistic over
 * (abnormal count x normal count), a tie between an abnormal and a normal score counting
 * half. Errors: MS_EINVAL (NULL, n 0, only one class, a non-finite score), MS_ENOMEM. */
ms_status ms_calib_auroc(const double *score, const uint8_t *label, size_t n, double *out,
                         ms_err *err);

/* Mean logistic loss (cross-entropy) of the probabilities sigmoid(a * logit[i]) against the
 * labels, computed without overflow for any a. */
double ms_calib_logloss(const double *logit, const uint8_t *label, size_t n, double a);

/* The temperature T in [t_min, t_max] (0 < t_min < t_max) that minimises
 * ms_calib_logloss(logit, label, n, 1 / T). The loss is convex in a = 1/T, so a safeguarded
 * Newton iteration on its derivative (falling back to bisection) finds the minimum over
 * a in [1/t_max, 1/t_min]; when the unconstrained minimum lies outside (scores that rank
 * backwards want a <= 0), the nearest bound is returned and *at_bound is set (may be NULL).
 * Errors: MS_EINVAL (NULL, n 0, bad range, non-finite logits). */
ms_status ms_calib_fit_temperature(const double *logit, const uint8_t *label, size_t n,
                                   double t_min, double t_max, double *t_out, bool *at_bound,
                                   ms_err *err);

/* Expected calibration error over `bins` equal-width probability bins ([0, 1/bins), ...,
 * [1 - 1/bins, 1]): the sum over bins of (scans in bin / n) * |mean probability - fraction
 * abnormal|. NaN when n or bins is 0. */
double ms_calib_ece(const double *prob, const uint8_t *label, size_t n, uint32_t bins);

/* Sensitivity (abnormal scans with prob >= threshold, over the abnormal count) and
 * specificity (normal scans with prob < threshold, over the normal count); NaN for a class
 * that is absent. Either output may be NULL. */
void ms_calib_rates(const double *prob, const uint8_t *label, size_t n, double threshold,
                    double *sensitivity, double *specificity);

/* Operating-point thresholds, as floats (the precision of the .msm metadata), exact on the
 * given probabilities compared as (double)threshold:
 * - sensitivity: the largest threshold whose sensitivity is >= percent / 100, i.e. the k-th
 *   highest abnormal probability with k = ceil(percent * abnormal / 100), rounded down to a
 *   float;
 * - specificity: the smallest float threshold whose specificity is >= percent / 100, i.e. the
 *   first float above the m-th lowest normal probability with m = ceil(percent * normal /
 *   100) (0 when m is 0); at most 1, where a specificity above 1 - (normals at 1) / normal
 *   cannot be reached (*reached false; may be NULL).
 * percent is 0 to 100. Errors: MS_EINVAL (NULL, percent out of range, no scan of the class
 * the point is defined on, probabilities outside [0, 1]), MS_ENOMEM. */
ms_status ms_calib_sens_threshold(const double *prob, const uint8_t *label, size_t n,
                                  uint32_t percent, float *out, ms_err *err);
ms_status ms_calib_spec_threshold(const double *prob, const uint8_t *label, size_t n,
                                  uint32_t percent, float *out, bool *reached, ms_err *err);

/* A confidence interval. */
typedef struct ms_calib_interval {
    double lo, hi;
} ms_calib_interval;

/* Stratified percentile bootstrap: `reps` resamples, each drawing with replacement as many
 * abnormal scans from the abnormal ones and as many normal scans from the normal ones (so
 * every resample has both classes), from a generator seeded with seed (the same seed gives
 * the same intervals on every machine). For each resample it computes the AUROC of score and,
 * at each fixed threshold[j], the sensitivity and specificity of prob; the interval is the
 * (1 - level) / 2 and (1 + level) / 2 quantiles (linear interpolation between order
 * statistics) of the resampled values. auroc, sens and spec (nthr entries each, may be NULL
 * when nthr is 0) belong to the caller.
 * Errors: MS_EINVAL (NULL, one class, reps 0, level outside (0, 1)), MS_ENOMEM. */
ms_status ms_calib_bootstrap(const double *score, const double *prob, const uint8_t *label,
                             size_t n, const float *threshold, size_t nthr, uint32_t reps,
                             uint64_t seed, double level, ms_calib_interval *auroc,
                             ms_calib_interval *sens, ms_calib_interval *spec, ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
