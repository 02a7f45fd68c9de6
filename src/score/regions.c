/* score layer, second half: regions of a probability map.
 *
 * Hysteresis connected components in two raster passes with union-find over provisional labels
 * (no recursion and no queue, so a 65535-pixel-wide snake costs no stack): pass one labels every
 * pixel >= low_threshold from its already-seen 8-neighbours (W, NW, N, NE) and merges labels
 * that meet; the roots are then numbered as components; pass two gathers each component's
 * statistics in row-major order, which makes "first pixel holding the peak" free. */
#include "medscreen/score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medscreen/core.h"

static int32_t uf_find(int32_t *parent, int32_t a) {
    int32_t r = a;
    while (parent[r] != r) r = parent[r];
    while (parent[a] != r) { /* path compression keeps later finds short */
        int32_t next = parent[a];
        parent[a] = r;
        a = next;
    }
    return r;
}

/* Links the larger root under the smaller one, so a root is always its set's first label. */
static int32_t uf_union(int32_t *parent, int32_t a, int32_t b) {
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a == b) return a;
    if (a < b) {
        parent[b] = a;
        return a;
    }
    parent[a] = b;
    return b;
}

typedef struct comp_stats {
    uint64_t area, sum_x, sum_y;
    double sum_p;
    int32_t x0, y0, x1, y1;
    int32_t peak_x, peak_y;
    float peak;
    bool seeded; /* holds a pixel >= threshold */
} comp_stats;

/* Best first: highest peak, then larger area, then the peak's position (row, then column),
 * which is unique per region, so the order is total and deterministic. */
static int region_cmp(const void *pa, const void *pb) {
    const ms_region *a = pa, *b = pb;
    if (a->peak != b->peak) return a->peak > b->peak ? -1 : 1;
    if (a->area_px != b->area_px) return a->area_px > b->area_px ? -1 : 1;
    if (a->peak_y != b->peak_y) return a->peak_y < b->peak_y ? -1 : 1;
    if (a->peak_x != b->peak_x) return a->peak_x < b->peak_x ? -1 : 1;
    return 0;
}

static ms_status check_opts(const ms_region_opts *o, ms_err *err) {
    if (!isfinite(o->threshold) || !isfinite(o->low_threshold) || !(o->low_threshold >= 0.0f) ||
        !(o->low_threshold <= o->threshold) || !(o->threshold <= 1.0f))
        return ms_fail(err, MS_EINVAL,
                       "regions: threshold=%g, low_threshold=%g: need 0 <= low_threshold <= "
                       "threshold <= 1",
                       (double)o->threshold, (double)o->low_threshold);
    if (o->max_regions < 1)
        return ms_fail(err, MS_EINVAL, "regions: max_regions=%u, need at least 1", o->max_regions);
    return MS_OK;
}

ms_status ms_score_regions(const float *prob, int32_t w, int32_t h, double spacing_row_mm,
                           double spacing_col_mm, const ms_region_opts *opts, ms_region **regions,
                           uint32_t *count, ms_err *err) {
    if (prob == NULL || opts == NULL || regions == NULL || count == NULL)
        return ms_fail(err, MS_EINVAL, "regions: %s is NULL",
                       prob == NULL      ? "prob"
                       : opts == NULL    ? "opts"
                       : regions == NULL ? "regions"
                                         : "count");
    if (w <= 0 || h <= 0)
        return ms_fail(err, MS_EINVAL, "regions: map size %dx%d (WxH) is not positive", (int)w,
                       (int)h);
    ms_status st = check_opts(opts, err);
    if (st != MS_OK) return st;

    /* a new label starts only where W, NW, N and NE are all background, so at most one per
     * 2x2 block: ceil(w/2) * ceil(h/2) labels, plus label 0 for background */
    size_t npx, nlab, lab_bytes, par_bytes;
    if (!ms_mul_size((size_t)w, (size_t)h, &npx) ||
        !ms_mul_size(((size_t)w + 1) / 2, ((size_t)h + 1) / 2, &nlab) ||
        !ms_add_size(nlab, 1, &nlab) || nlab > (size_t)INT32_MAX ||
        !ms_mul_size(npx, sizeof(int32_t), &lab_bytes) ||
        !ms_mul_size(nlab, sizeof(int32_t), &par_bytes))
        return ms_fail(err, MS_EOVERFLOW, "regions: map %dx%d is too large to label", (int)w,
                       (int)h);

    int32_t *labels = NULL, *parent = NULL;
    comp_stats *cs = NULL;
    ms_region *all = NULL, *best = NULL;
    labels = ms_malloc(lab_bytes);
    parent = ms_malloc(par_bytes);
    if (labels == NULL || parent == NULL) {
        st = ms_fail(err, MS_ENOMEM, "regions: cannot allocate labels for a %dx%d map", (int)w,
                     (int)h);
        goto fail;
    }

    /* pass one: provisional labels. NaN compares false, so it is background. */
    const float low = opts->low_threshold;
    const size_t W = (size_t)w;
    int32_t next = 1;
    parent[0] = 0;
    for (size_t y = 0; y < (size_t)h; y++) {
        const float *restrict p = prob + y * W;
        int32_t *l = labels + y * W;
        const int32_t *up = y > 0 ? l - W : NULL;
        for (size_t x = 0; x < W; x++) {
            if (!(p[x] >= low)) {
                l[x] = 0;
                continue;
            }
            int32_t no = up ? up[x] : 0;
            int32_t nw = up && x > 0 ? up[x - 1] : 0;
            int32_t ne = up && x + 1 < W ? up[x + 1] : 0;
            int32_t we = x > 0 ? l[x - 1] : 0;
            int32_t lab;
            /* N touches W, NW and NE, so they already share its set; NW touches W; only NE
             * may still need joining to W or NW */
            if (no)
                lab = no;
            else if (ne)
                lab = we ? uf_union(parent, ne, we) : nw ? uf_union(parent, ne, nw) : ne;
            else if (nw)
                lab = nw;
            else if (we)
                lab = we;
            else {
                lab = next++;
                parent[lab] = lab;
            }
            l[x] = lab;
        }
    }

    /* number the components 1..ncomp, stored as -id in parent[]. A root is its set's smallest
     * label and every parent is smaller than its child (uf_union, uf_find), so in increasing
     * order a label's parent is already numbered when the label is reached. */
    int32_t ncomp = 0;
    for (int32_t i = 1; i < next; i++) {
        int32_t p = parent[i];
        parent[i] = p == i ? -(++ncomp) : parent[p];
    }
    if (ncomp == 0) {
        *regions = NULL;
        *count = 0;
        st = MS_OK;
        goto fail;
    }
    cs = ms_calloc((size_t)ncomp, sizeof *cs);
    if (cs == NULL) {
        st = ms_fail(err, MS_ENOMEM, "regions: cannot allocate %d components", (int)ncomp);
        goto fail;
    }

    /* pass two: statistics, row-major */
    const float high = opts->threshold;
    for (size_t y = 0; y < (size_t)h; y++) {
        const float *restrict p = prob + y * W;
        const int32_t *restrict l = labels + y * W;
        for (size_t x = 0; x < W; x++) {
            if (l[x] == 0) continue;
            comp_stats *c = &cs[-parent[l[x]] - 1];
            float v = p[x];
            if (c->area == 0) {
                c->x0 = c->x1 = (int32_t)x;
                c->y0 = c->y1 = (int32_t)y;
                c->peak = v;
                c->peak_x = (int32_t)x;
                c->peak_y = (int32_t)y;
            } else {
                if ((int32_t)x < c->x0) c->x0 = (int32_t)x;
                if ((int32_t)x > c->x1) c->x1 = (int32_t)x;
                c->y1 = (int32_t)y; /* rows arrive in order */
                if (v > c->peak) {
                    c->peak = v;
                    c->peak_x = (int32_t)x;
                    c->peak_y = (int32_t)y;
                }
            }
            c->area++;
            c->sum_x += x;
            c->sum_y += y;
            c->sum_p += v;
            if (v >= high) c->seeded = true;
        }
    }

    uint32_t kept = 0;
    for (int32_t i = 0; i < ncomp; i++)
        if (cs[i].seeded && cs[i].area >= opts->min_area_px) kept++;
    if (kept == 0) {
        *regions = NULL;
        *count = 0;
        st = MS_OK;
        goto fail;
    }
    all = ms_calloc(kept, sizeof *all);
    if (all == NULL) {
        st = ms_fail(err, MS_ENOMEM, "regions: cannot allocate %u regions", kept);
        goto fail;
    }
    bool mm = spacing_row_mm > 0 && spacing_col_mm > 0 && isfinite(spacing_row_mm) &&
              isfinite(spacing_col_mm);
    uint32_t k = 0;
    for (int32_t i = 0; i < ncomp; i++) {
        const comp_stats *c = &cs[i];
        if (!c->seeded || c->area < opts->min_area_px) continue;
        ms_region *r = &all[k++];
        r->x = c->x0;
        r->y = c->y0;
        r->w = c->x1 - c->x0 + 1;
        r->h = c->y1 - c->y0 + 1;
        r->area_px = c->area;
        r->centroid_x = (double)c->sum_x / (double)c->area + 0.5;
        r->centroid_y = (double)c->sum_y / (double)c->area + 0.5;
        r->area_mm2 = mm ? (double)c->area * spacing_row_mm * spacing_col_mm : -1.0;
        r->peak = c->peak;
        r->mean = (float)(c->sum_p / (double)c->area);
        r->peak_x = c->peak_x;
        r->peak_y = c->peak_y;
    }
    qsort(all, kept, sizeof *all, region_cmp);
    uint32_t n = kept < opts->max_regions ? kept : opts->max_regions;
    if (n == kept) {
        best = all;
        all = NULL;
    } else {
        best = ms_malloc(n * sizeof *best); /* n < kept: no overflow */
        if (best == NULL) {
            st = ms_fail(err, MS_ENOMEM, "regions: cannot allocate %u regions", n);
            goto fail;
        }
        memcpy(best, all, n * sizeof *best);
    }
    for (uint32_t i = 0; i < n; i++) best[i].rank = i + 1;
    *regions = best;
    *count = n;
    st = MS_OK;
fail:
    ms_free(all);
    ms_free(cs);
    ms_free(parent);
    ms_free(labels);
    return st;
}
