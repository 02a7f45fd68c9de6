/* Packed direct convolution: groups 1, dilation 1, stride 1 or 2, any kernel up to MAX_TAPS
 * taps and any padding. It takes the layers where im2col + sgemm was slowest and Winograd does
 * not apply or does not pay: stride-2 layers, 7x7 stems, and many channels on few pixels
 * (ResNet's 512@7x7), where OpenBLAS's packing dominates a product with N = 49.
 *
 * Method. A band of output rows is computed from a copy of the input rows it needs, split by
 * phase: for stride s, phase (py, px) holds the padded input at rows py + s i and columns
 * px + s j (zeros in the padding), so that tap (ky, kx) of output (oy, ox) reads phase
 * (ky % s, kx % s) at (oy + ky / s, ox + kx / s): a stride-1 access. Each phase row is
 * wp = out_w + (kw - 1) / s wide, and the output positions are numbered q = oy * wp + ox over
 * the band ("flattened"), so a tap reads the contiguous values q + off(tap): 16 outputs are
 * one vector load per tap and channel. The (kw - 1) / s columns past out_w in each row are
 * computed and dropped (2 of 258 at 256 px; 2 of 9 at 7 px).
 *
 * The micro-kernel (AVX-512) keeps 8 output channels x 48 positions in 24 registers; per input
 * channel and tap it loads 3 input vectors and broadcasts 8 weights from the packed weights
 * ([block of 8 output channels][in_c][tap][8], zero past out_c), so it is bound by FMA
 * throughput, not loads. Bias and ReLU are applied in registers.
 *
 * Narrow outputs (at most 8 px wide, as ResNet's 7) use "channels mode" instead: 32 output
 * channels in 2 vectors x up to 8 positions of one row, each input value broadcast, weights
 * packed [block of 32][in_c][tap][32]; no position past a row's end is computed. In
 * ResNet-18 (1 thread): 512@7 2.5 -> 2.1 ms; at 14 px it lost to positions mode (1.9 against
 * 1.7 ms), as did all wider outputs.
 *
 * Every output value is one sum over (in channel, tap) in that order, whatever the band,
 * tile or task: outputs are bit-identical for any thread count. The sum is plain float with
 * FMA, as accurate as im2col + sgemm (about 1e-7 relative). */
#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "medscreen/core.h"
#include "nn_internal.h"

#ifdef MS_NN_X86_CLONES
#include <immintrin.h>
#endif

enum {
    OB = 8,                /* output channels per block, positions mode */
    OBC = 32,              /* output channels per block, channels mode (2 vectors) */
    PMAX = 8,              /* positions per tile, channels mode */
    CHANNELS_MAX_W = 8,    /* channels mode for outputs at most this wide (and OBC channels) */
    VL = 16,               /* floats per vector */
    TILE = 48,             /* positions per micro-tile: 3 vectors */
    MAX_TAPS = 64,         /* kernel taps (kh * kw) this path takes */
    BAND_FLOATS = 1 << 17, /* input band target: 512 KiB, a quarter of L2 */
    MAX_BAND = 1 << 24,    /* a band larger than this (one huge row) goes to im2col instead */
    MIN_TASKS = 8,         /* split output channels too when there are fewer bands */
    MIN_CHUNK_BLOCKS = 2,  /* but keep at least 16 output channels per task */
    RES_FLOATS = OB * TILE + OBC * PMAX, /* a tile's results, after the band */
    TILE_OUTER_BYTES = 24 << 10,         /* a chunk's weights up to this: tiles outermost */
};

typedef struct pk_plan {
    int32_t out_h, out_w;
    int32_t phy, phx; /* phases per axis: min(stride, kernel) */
    int32_t ey, ex;   /* phase rows / columns past the output's: (kh - 1) / sh, (kw - 1) / sw */
    int32_t wp;       /* phase row width: out_w + ex */
    int32_t rows;     /* output rows per band (the last band may have fewer) */
    int32_t bands;
    bool chans;     /* channels mode (below) rather than positions mode */
    int32_t ob;     /* output channels per block: OB or OBC */
    int32_t blocks; /* ceil(out_c / ob) */
    int32_t chunk;  /* blocks per task */
    int32_t chunks;
    size_t chan;      /* floats per input channel in a band: phases * (rows + ey) * wp */
    size_t band;      /* floats of a band: in_c * chan + slack for the last tile's reads */
    size_t workspace; /* band + the tile's results */
} pk_plan;

bool ms_conv2d_packed_ok(const ms_conv2d *p) {
    if (p == NULL || p->groups != 1 || p->dil_h != 1 || p->dil_w != 1 || p->stride_h < 1 ||
        p->stride_h > 2 || p->stride_w < 1 || p->stride_w > 2 || p->kh < 1 || p->kw < 1 ||
        (int64_t)p->kh * p->kw > MAX_TAPS)
        return false;
    return ms_conv2d_shape(p, p->kh, p->kw, NULL, NULL, NULL) == MS_OK;
}

static bool plan_make(const ms_conv2d *p, int32_t in_h, int32_t in_w, pk_plan *pl) {
    if (!ms_conv2d_packed_ok(p)) return false;
    int32_t oh, ow;
    if (ms_conv2d_shape(p, in_h, in_w, &oh, &ow, NULL) != MS_OK) return false;
    pl->out_h = oh;
    pl->out_w = ow;
    pl->phy = p->stride_h < p->kh ? p->stride_h : p->kh;
    pl->phx = p->stride_w < p->kw ? p->stride_w : p->kw;
    pl->ey = (p->kh - 1) / p->stride_h;
    pl->ex = (p->kw - 1) / p->stride_w;
    if (ow > INT32_MAX - pl->ex) return false;
    pl->wp = ow + pl->ex;
    const size_t phases = (size_t)pl->phy * (size_t)pl->phx;
    size_t per_row, rows_room;
    if (!ms_mul_size((size_t)p->in_c * phases, (size_t)pl->wp, &per_row)) return false;
    rows_room = BAND_FLOATS / per_row;
    size_t rows = rows_room > (size_t)pl->ey ? rows_room - (size_t)pl->ey : 1;
    if (rows > (size_t)oh) rows = (size_t)oh;
    const size_t bands = ((size_t)oh + rows - 1) / rows;
    rows = ((size_t)oh + bands - 1) / bands; /* even bands */
    size_t chan, band, ws;
    if (!ms_mul_size(phases * (size_t)pl->wp, rows + (size_t)pl->ey, &chan) ||
        !ms_mul_size(chan, (size_t)p->in_c, &band) ||
        !ms_add_size(band, (size_t)pl->ex + TILE + VL, &band) || band > MAX_BAND ||
        !ms_add_size((band + VL - 1) / VL * VL, RES_FLOATS, &ws))
        return false;
    pl->rows = (int32_t)rows;
    pl->bands = (int32_t)bands;
    pl->chan = chan;
    pl->band = band;
    pl->workspace = ws;
    pl->chans = ow <= CHANNELS_MAX_W && p->out_c >= OBC;
    pl->ob = pl->chans ? OBC : OB;
    pl->blocks = (p->out_c + pl->ob - 1) / pl->ob;
    int32_t chunks = 1;
    if (pl->bands < MIN_TASKS) {
        chunks = (MIN_TASKS + pl->bands - 1) / pl->bands;
        const int32_t most = pl->blocks / MIN_CHUNK_BLOCKS;
        if (chunks > most) chunks = most > 1 ? most : 1;
    }
    pl->chunk = (pl->blocks + chunks - 1) / chunks;
    pl->chunks = (pl->blocks + pl->chunk - 1) / pl->chunk;
    return true;
}

size_t ms_conv2d_packed_weight_floats(const ms_conv2d *p, int32_t in_h, int32_t in_w) {
    pk_plan pl;
    size_t n;
    if (!plan_make(p, in_h, in_w, &pl) ||
        !ms_mul_size((size_t)pl.blocks * (size_t)pl.ob, (size_t)p->in_c, &n) ||
        !ms_mul_size(n, (size_t)p->kh * (size_t)p->kw, &n) || n > SIZE_MAX / sizeof(float))
        return SIZE_MAX;
    return n;
}

size_t ms_conv2d_packed_workspace(const ms_conv2d *p, int32_t in_h, int32_t in_w) {
    pk_plan pl;
    return plan_make(p, in_h, in_w, &pl) ? pl.workspace : SIZE_MAX;
}

/* wp[b][ic][tap][o] = weight[b * ob + o][ic][tap], zero where b * ob + o >= out_c; ob is the
 * mode's block (8 or 32 output channels). */
void ms_conv2d_packed_weights(const ms_conv2d *p, int32_t in_h, int32_t in_w, const float *weight,
                              float *wp) {
    pk_plan pl;
    if (!plan_make(p, in_h, in_w, &pl)) {
        assert(0 && "ms_conv2d_packed_weights: parameters ms_conv2d_packed_weight_floats refuses");
        return;
    }
    const size_t taps = (size_t)p->kh * (size_t)p->kw, k = (size_t)p->in_c * taps;
    const size_t ob = (size_t)pl.ob;
    for (size_t b = 0; b < (size_t)pl.blocks; b++)
        for (size_t i = 0; i < k; i++)
            for (size_t o = 0; o < ob; o++) {
                const size_t oc = b * ob + o;
                wp[(b * k + i) * ob + o] = oc < (size_t)p->out_c ? weight[oc * k + i] : 0.0f;
            }
}

/* Both column phases of a stride-2 row at once: ev[k] = row[2 k] for k < ne and
 * od[k] = row[2 k + 1] for k < no (the caller keeps 2 k (+ 1) inside the row). */
MS_NN_INLINE void split2(const float *restrict row, float *restrict ev, size_t ne,
                         float *restrict od, size_t no) {
    for (size_t k = 0; k < ne; k++) ev[k] = row[2 * k];
    for (size_t k = 0; k < no; k++) od[k] = row[2 * k + 1];
}

#ifdef MS_NN_X86_CLONES
MS_NN_TARGET_AVX512 static void split2_avx512(const float *restrict row, float *restrict ev,
                                              size_t ne, float *restrict od, size_t no) {
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const size_t both = ne < no ? ne : no;
    size_t k = 0;
    /* reads row[2 k .. 2 k + 31], all inside: 2 k + 31 <= 2 (no - 1) + 1 */
    for (; k + 16 <= both; k += 16) {
        const __m512 a = _mm512_loadu_ps(row + 2 * k), b = _mm512_loadu_ps(row + 2 * k + 16);
        _mm512_storeu_ps(ev + k, _mm512_permutex2var_ps(a, even, b));
        _mm512_storeu_ps(od + k, _mm512_permutex2var_ps(a, odd, b));
    }
    split2(row + 2 * k, ev + k, ne - k, od + k, no - k);
}
#endif

MS_NN_INLINE void zero_floats(float *d, size_t n) {
    if (n > 16) {
        memset(d, 0, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) d[i] = 0.0f;
}

/* The phase-column range of one column phase: phase column j is input column x0 + s j, valid
 * (inside the input) for j in [ja, jb) within [0, wp). */
typedef struct col_range {
    int64_t x0, ja, jb;
} col_range;

static col_range col_range_make(int32_t px, int32_t pad_l, int32_t s, int32_t in_w, int32_t wp) {
    col_range r = {.x0 = (int64_t)px - pad_l};
    r.ja = r.x0 >= 0 ? 0 : (-r.x0 + s - 1) / s;
    r.jb = r.x0 >= in_w ? 0 : ((int64_t)in_w - r.x0 + s - 1) / s;
    if (r.ja > wp) r.ja = wp;
    if (r.jb > wp) r.jb = wp;
    if (r.jb < r.ja) r.jb = r.ja;
    return r;
}

/* Writes phase row i of phase row-group py of input channel c into the band, from the input
 * row `row` (NULL: the row is outside the input, or not needed, so zeros): each column phase
 * px gets its wp values, zeros in the padding. With two column phases the row is split into
 * both in one pass. */
static void fill_row(const ms_conv2d *p, const pk_plan *pl, const col_range *cr, const float *row,
                     int32_t c, int32_t i, int32_t py, float *band, bool avx512) {
    const int32_t sw = p->stride_w, wp = pl->wp, phx = pl->phx;
    const size_t phase_floats = (size_t)(pl->rows + pl->ey) * (size_t)wp;
    float *ph0 = band + ((size_t)c * (size_t)(pl->phy * phx) + (size_t)(py * phx)) * phase_floats;
    float *d[2];
    (void)avx512;
    for (int32_t px = 0; px < phx; px++) {
        d[px] = ph0 + (size_t)px * phase_floats + (size_t)i * (size_t)wp;
        const col_range *r = &cr[px];
        if (row == NULL || r->ja == r->jb) {
            zero_floats(d[px], (size_t)wp);
            continue;
        }
        zero_floats(d[px], (size_t)r->ja);
        zero_floats(d[px] + r->jb, (size_t)(wp - r->jb));
        if (sw == 1) /* then phx == 1 */
            memcpy(d[px] + r->ja, row + r->x0 + r->ja, (size_t)(r->jb - r->ja) * sizeof(float));
        else if (phx == 1)
            split2(row + r->x0 + 2 * r->ja, d[px] + r->ja, (size_t)(r->jb - r->ja), NULL, 0);
    }
    if (row == NULL || phx != 2 || cr[0].ja == cr[0].jb || cr[1].ja == cr[1].jb) return;
    /* The phase whose first valid column is input column 0 takes the even columns, the other
     * the odd ones. */
    const int e = cr[0].x0 + 2 * cr[0].ja == 0 ? 0 : 1, o = 1 - e;
    float *ev = d[e] + cr[e].ja, *od = d[o] + cr[o].ja;
    const size_t ne = (size_t)(cr[e].jb - cr[e].ja), no = (size_t)(cr[o].jb - cr[o].ja);
#ifdef MS_NN_X86_CLONES
    if (avx512)
        split2_avx512(row, ev, ne, od, no);
    else
#endif
        split2(row, ev, ne, od, no);
}

/* Zeros the band's slack past its last channel (the last tile reads into it). */
static void zero_slack(const ms_conv2d *p, const pk_plan *pl, float *band) {
    const size_t used = (size_t)p->in_c * pl->chan;
    memset(band + used, 0, (pl->band - used) * sizeof(float));
}

/* Fills a band for output rows from oy0: for every input channel and phase, rows + ey phase
 * rows of wp values (layout [in_c][phase][row][wp], phase = py * phx + px), then zeros the
 * slack. */
static void band_fill(const ms_conv2d *p, const pk_plan *pl, const float *img, int32_t in_h,
                      int32_t in_w, int32_t oy0, float *band, bool avx512) {
    const int32_t nrow = pl->rows + pl->ey;
    const size_t plane = (size_t)in_h * (size_t)in_w;
    col_range cr[2];
    for (int32_t px = 0; px < pl->phx; px++)
        cr[px] = col_range_make(px, p->pad_l, p->stride_w, in_w, pl->wp);
    /* Input rows in ascending order (phase row i of phase py is input row py + sh (oy0 + i)
     * - pad_t), so the hardware prefetcher sees one stream per channel. */
    for (int32_t c = 0; c < p->in_c; c++)
        for (int32_t i = 0; i < nrow; i++)
            for (int32_t py = 0; py < pl->phy; py++) {
                const int64_t y = (int64_t)py + (int64_t)p->stride_h * (oy0 + i) - p->pad_t;
                const float *row =
                    y >= 0 && y < in_h ? img + (size_t)c * plane + (size_t)y * (size_t)in_w : NULL;
                fill_row(p, pl, cr, row, c, i, py, band, avx512);
            }
    zero_slack(p, pl, band);
}

/* ---- a first layer fused into the band fill ----
 * A network's first layer (one input channel, 3x3, stride 1) writes many channels at full
 * resolution (the screener: 16 x 512 x 512, 16 MiB) that the next layer reads back at once.
 * Fused, the packed layer computes the rows of that output its band needs as it fills the
 * band, all channels of one row at a time: with AVX-512 straight into the band's column
 * phases, with no copy and no split (fill_rows_pre_avx512); portably into a scratch row that
 * is then split as band_fill splits an input row. The 16 MiB never go to memory and back.
 * Rows at a band's edge are computed by both bands that need them, by the same function, so
 * the bits do not depend on the banding. The screener's 1 -> 16 -> 32/s2 pair (Xeon,
 * 1 thread): 1.6 + 6.2 = 7.8 ms unfused, 6.6 fused through a scratch row, 5.1 computed
 * straight into the band. */
typedef struct pk_pre {
    const ms_conv2d *p; /* in_c 1, 3x3, stride 1, dilation 1, groups 1 */
    const float *weight, *bias;
    int32_t in_h, in_w;   /* its input */
    int32_t out_h, out_w; /* its output: the packed layer's input */
    int32_t rw;           /* floats per computed row: out_w rounded up to VL */
} pk_pre;

bool ms_conv2d_packed_fusable(const ms_conv2d *pre, const ms_conv2d *p) {
    return pre != NULL && p != NULL && pre->in_c == 1 && pre->groups == 1 && pre->kh == 3 &&
           pre->kw == 3 && pre->stride_h == 1 && pre->stride_w == 1 && pre->dil_h == 1 &&
           pre->dil_w == 1 && pre->out_c == p->in_c && ms_conv2d_packed_ok(p) &&
           ms_conv2d_shape(pre, 3, 3, NULL, NULL, NULL) == MS_OK;
}

static bool pre_make(const ms_conv2d *pre, int32_t in_h, int32_t in_w, pk_pre *pr) {
    int32_t oh, ow;
    if (ms_conv2d_shape(pre, in_h, in_w, &oh, &ow, NULL) != MS_OK || ow > INT32_MAX - VL)
        return false;
    *pr = (pk_pre){.p = pre, .in_h = in_h, .in_w = in_w, .out_h = oh, .out_w = ow};
    pr->rw = (ow + VL - 1) / VL * VL;
    return true;
}

/* Padded input rows of the AVX-512 fill: rw + 2 columns and zeros for the vectors' reads past
 * the last output (at most 15 floats, 2 more in a column phase). */
static size_t pre_wide(const pk_pre *pr) { return (size_t)pr->rw + 2 + 4 * VL; }

/* Scratch of the fused fill after the band and the tile's results: three zero-padded input
 * rows of rw + 2 and one computed row of every channel, out_c x rw (the portable fill); or
 * three padded rows of pre_wide and their even and odd columns (the AVX-512 fill). */
static bool pre_scratch(const pk_pre *pr, size_t *floats) {
    size_t rows, mid, generic;
    if (!ms_mul_size(3, (size_t)pr->rw + 2, &rows) ||
        !ms_mul_size((size_t)pr->p->out_c, (size_t)pr->rw, &mid) ||
        !ms_add_size(rows, mid, &generic))
        return false;
    const size_t wide = 6 * pre_wide(pr); /* rows, then even and odd halves */
    *floats = generic > wide ? generic : wide;
    return true;
}

/* mid[c][x] = act(bias[c] + sum over (ky, kx) of w[c][ky][kx] r[ky][x + kx]) for x < rw:
 * one output row of every channel from its three padded input rows r (rw + 2 wide). The sum
 * is in (ky, kx) order from the bias. */
static void pre_row_generic(const pk_pre *pr, const float *r, float *mid) {
    const ms_conv2d *p = pr->p;
    const size_t rw = (size_t)pr->rw, w2 = rw + 2;
    for (int32_t c = 0; c < p->out_c; c++) {
        const float *k = pr->weight + 9 * (size_t)c;
        const float b = pr->bias ? pr->bias[c] : 0.0f;
        float *d = mid + (size_t)c * rw;
        for (size_t x = 0; x < rw; x++) {
            float acc = b;
            for (size_t ky = 0; ky < 3; ky++)
                for (size_t kx = 0; kx < 3; kx++) acc += k[ky * 3 + kx] * r[ky * w2 + x + kx];
            d[x] = acc;
        }
    }
}

/* Row y of the first layer's output, every channel, into mid (out_c x rw), using r (three
 * padded input rows) as scratch: the portable fill. */
static void pre_row(const pk_pre *pr, const float *img, int64_t y, float *r, float *mid) {
    const ms_conv2d *p = pr->p;
    const size_t w2 = (size_t)pr->rw + 2;
    const int64_t xa0 = p->pad_l, in_w = pr->in_w; /* padded column x is input column x - pad_l */
    for (int64_t j = 0; j < 3; j++) {
        float *d = r + (size_t)j * w2;
        const int64_t iy = y + j - p->pad_t;
        memset(d, 0, w2 * sizeof(float));
        if (iy < 0 || iy >= pr->in_h) continue;
        /* columns x in [max(0, pad_l), min(w2, pad_l + in_w)) hold input x - pad_l */
        const int64_t xa = xa0 > 0 ? xa0 : 0;
        const int64_t xb = xa0 + in_w < (int64_t)w2 ? xa0 + in_w : (int64_t)w2;
        if (xb > xa)
            memcpy(d + xa, img + (size_t)iy * (size_t)in_w + (size_t)(xa - xa0),
                   (size_t)(xb - xa) * sizeof(float));
    }
    pre_row_generic(pr, r, mid);
    if (p->act != MS_ACT_NONE)
        for (int32_t c = 0; c < p->out_c; c++)
            ms_nn_bias_act(mid + (size_t)c * (size_t)pr->rw, (size_t)pr->out_w, 0.0f, p->act,
                           p->act_alpha);
}

#ifdef MS_NN_X86_CLONES
/* count outputs of every channel of the first layer straight into the band: output u of
 * channel c goes to dst[c * cstride + u], and tap t = (ky, kx) reads src[t][u]. The 18 (or 9)
 * input vectors are loaded once and every channel's 9 weights broadcast against them; the sum
 * runs from the bias in tap order, as in pre_row_generic. ReLU fused; other activations after. */
MS_NN_TARGET_AVX512 static void pre_cols_avx512(const pk_pre *pr, const float *const src[9],
                                                size_t count, float *dst, size_t cstride) {
    const ms_conv2d *p = pr->p;
    const bool relu = p->act == MS_ACT_RELU;
    const __m512 zero = _mm512_setzero_ps();
    size_t u = 0;
    for (; u + 2 * VL <= count; u += 2 * VL) {
        __m512 in[9][2];
        for (int t = 0; t < 9; t++) {
            in[t][0] = _mm512_loadu_ps(src[t] + u);
            in[t][1] = _mm512_loadu_ps(src[t] + u + VL);
        }
        for (int32_t c = 0; c < p->out_c; c++) {
            const float *k = pr->weight + 9 * (size_t)c;
            __m512 a0 = _mm512_set1_ps(pr->bias ? pr->bias[c] : 0.0f), a1 = a0;
            for (int t = 0; t < 9; t++) {
                const __m512 wv = _mm512_set1_ps(k[t]);
                a0 = _mm512_fmadd_ps(wv, in[t][0], a0);
                a1 = _mm512_fmadd_ps(wv, in[t][1], a1);
            }
            if (relu) {
                a0 = _mm512_max_ps(a0, zero);
                a1 = _mm512_max_ps(a1, zero);
            }
            _mm512_storeu_ps(dst + (size_t)c * cstride + u, a0);
            _mm512_storeu_ps(dst + (size_t)c * cstride + u + VL, a1);
        }
    }
    for (; u < count; u += VL) {
        const __mmask16 m = (__mmask16)(count - u >= VL ? 0xffffu : (1u << (count - u)) - 1u);
        __m512 in[9];
        for (int t = 0; t < 9; t++) in[t] = _mm512_loadu_ps(src[t] + u);
        for (int32_t c = 0; c < p->out_c; c++) {
            const float *k = pr->weight + 9 * (size_t)c;
            __m512 a = _mm512_set1_ps(pr->bias ? pr->bias[c] : 0.0f);
            for (int t = 0; t < 9; t++) a = _mm512_fmadd_ps(_mm512_set1_ps(k[t]), in[t], a);
            if (relu) a = _mm512_max_ps(a, zero);
            _mm512_mask_storeu_ps(dst + (size_t)c * cstride + u, m, a);
        }
    }
}

/* Phase row (i, py) of every channel, computed into the band with no intermediate row: the
 * first layer's output row y is evaluated only at the columns each column phase holds. For
 * a stride-2 layer those are every other column, x = x_first + 2 u: the three padded input
 * rows are split into even and odd columns once, so that each tap reads a contiguous run
 * (tap kx of output x = 2 m + P reads padded column 2 m + P + kx). */
static void fill_rows_pre_avx512(const ms_conv2d *p, const pk_plan *pl, const pk_pre *pr,
                                 const col_range *cr, const float *img, int64_t y, int32_t i,
                                 int32_t py, float *band, float *scratch) {
    const ms_conv2d *q = pr->p;
    const size_t wide = pre_wide(pr), half = wide / 2;
    float *rows = scratch, *halves = scratch + 3 * wide; /* halves[ky][parity][half] */
    for (int64_t ky = 0; ky < 3; ky++) {
        float *d = rows + (size_t)ky * wide;
        const int64_t iy = y + ky - q->pad_t;
        memset(d, 0, wide * sizeof(float));
        if (iy >= 0 && iy < pr->in_h) {
            /* padded column x holds input column x - pad_l */
            const int64_t xa = q->pad_l, xb = q->pad_l + (int64_t)pr->in_w;
            const int64_t end = xb < (int64_t)wide ? xb : (int64_t)wide;
            if (end > xa)
                memcpy(d + xa, img + (size_t)iy * (size_t)pr->in_w,
                       (size_t)(end - xa) * sizeof(float));
        }
        if (p->stride_w == 2)
            split2_avx512(d, halves + (size_t)ky * 2 * half, half,
                          halves + ((size_t)ky * 2 + 1) * half, half);
    }
    const size_t phase_floats = (size_t)(pl->rows + pl->ey) * (size_t)pl->wp;
    for (int32_t px = 0; px < pl->phx; px++) {
        const col_range *r = &cr[px];
        float *d0 =
            band + ((size_t)(py * pl->phx + px)) * phase_floats + (size_t)i * (size_t)pl->wp;
        for (int32_t c = 0; c < p->in_c; c++) {
            float *d = d0 + (size_t)c * pl->chan;
            zero_floats(d, (size_t)r->ja);
            zero_floats(d + r->jb, (size_t)(pl->wp - r->jb));
        }
        if (r->ja == r->jb) continue;
        const int64_t x_first = r->x0 + (int64_t)p->stride_w * r->ja; /* >= 0 */
        const float *src[9];
        for (int t = 0; t < 9; t++) {
            const size_t ky = (size_t)(t / 3), kx = (size_t)(t % 3);
            if (p->stride_w == 1) {
                src[t] = rows + ky * wide + (size_t)x_first + kx;
            } else {
                const size_t par = ((size_t)x_first + kx) & 1u;
                const size_t m = ((size_t)x_first + kx) >> 1;
                src[t] = halves + (ky * 2 + par) * half + m;
            }
        }
        const size_t count = (size_t)(r->jb - r->ja);
        pre_cols_avx512(pr, src, count, d0 + r->ja, pl->chan);
        if (q->act != MS_ACT_NONE && q->act != MS_ACT_RELU)
            for (int32_t c = 0; c < p->in_c; c++)
                ms_nn_bias_act(d0 + (size_t)c * pl->chan + r->ja, count, 0.0f, q->act,
                               q->act_alpha);
    }
}
#endif

/* band_fill with the input rows computed from the first layer's input img (one channel).
 * Phase rows no tap reads (the last of the odd phase of a 3-tall stride-2 kernel) are zeros,
 * not computed. */
static void band_fill_pre(const ms_conv2d *p, const pk_plan *pl, const pk_pre *pr, const float *img,
                          int32_t oy0, float *band, float *scratch, bool avx512) {
    const int32_t nrow = pl->rows + pl->ey;
    float *r = scratch, *mid = scratch + 3 * ((size_t)pr->rw + 2);
    col_range cr[2];
    for (int32_t px = 0; px < pl->phx; px++)
        cr[px] = col_range_make(px, p->pad_l, p->stride_w, pr->out_w, pl->wp);
    for (int32_t i = 0; i < nrow; i++)
        for (int32_t py = 0; py < pl->phy; py++) {
            const int64_t y = (int64_t)py + (int64_t)p->stride_h * (oy0 + i) - p->pad_t;
            /* the taps ky == py (mod sh) read phase rows i < rows + (kh - 1 - py) / sh */
            const bool read = i < pl->rows + (p->kh - 1 - py) / p->stride_h;
            const bool inside = read && y >= 0 && y < pr->out_h;
#ifdef MS_NN_X86_CLONES
            if (inside && avx512) {
                fill_rows_pre_avx512(p, pl, pr, cr, img, y, i, py, band, scratch);
                continue;
            }
#endif
            if (inside) pre_row(pr, img, y, r, mid);
            for (int32_t c = 0; c < p->in_c; c++)
                fill_row(p, pl, cr, inside ? mid + (size_t)c * (size_t)pr->rw : NULL, c, i, py,
                         band, avx512);
        }
    zero_slack(p, pl, band);
}

/* Prefetches n lines from pf into L2 and returns the address after them: the tiles call it
 * once per input channel to fetch the next block's weights a little at a time, between their
 * own loads (see prefetch_slice). */
MS_NN_INLINE uintptr_t pk_prefetch(uintptr_t pf, int32_t n) {
    /* an address, not a pointer: with n == 0 it may be 0, and past the weights' end it is never
     * dereferenced (a prefetch cannot fault) */
    for (int32_t l = 0; l < n; l++)
        __builtin_prefetch((const void *)(pf + 64 * (uintptr_t)l), 0, 2);
    return pf + 64 * (uintptr_t)n;
}

/* One tile, portable: res[o][v] = sum over channels and taps, plus bias, ReLU when relu. */
static void tile_generic(const float *x, size_t chan, int32_t in_c, const int32_t *taps,
                         int32_t ntaps, const float *w, const float *bias8, bool relu, uintptr_t pf,
                         int32_t pf_per_c, float *res) {
    for (int o = 0; o < OB; o++)
        for (int v = 0; v < TILE; v++) res[o * TILE + v] = 0.0f;
    for (int32_t c = 0; c < in_c; c++, x += chan, pf = pk_prefetch(pf, pf_per_c))
        for (int32_t t = 0; t < ntaps; t++, w += OB) {
            const float *xp = x + taps[t];
            for (int o = 0; o < OB; o++)
                for (int v = 0; v < TILE; v++) res[o * TILE + v] += w[o] * xp[v];
        }
    for (int o = 0; o < OB; o++)
        for (int v = 0; v < TILE; v++) {
            const float y = res[o * TILE + v] + bias8[o];
            res[o * TILE + v] = relu && !(y > 0.0f) ? 0.0f : y;
        }
}

#ifdef MS_NN_X86_CLONES
/* The same with nv (1 to 3, a constant after inlining) vectors of 16 positions. */
#define PK_UNROLL _Pragma("GCC unroll 8")
#define PK_TILE_BODY(NV)                                                                           \
    do {                                                                                           \
        __m512 acc[OB][NV];                                                                        \
        PK_UNROLL for (int o = 0; o < OB; o++) PK_UNROLL for (int v = 0; v < (NV); v++)            \
            acc[o][v] = _mm512_setzero_ps();                                                       \
        for (int32_t c = 0; c < in_c; c++, x += chan, pf = pk_prefetch(pf, pf_per_c))              \
            for (int32_t t = 0; t < ntaps; t++, w += OB) {                                         \
                const float *xp = x + taps[t];                                                     \
                __m512 xv[NV];                                                                     \
                PK_UNROLL for (int v = 0; v < (NV); v++) xv[v] = _mm512_loadu_ps(xp + VL * v);     \
                PK_UNROLL for (int o = 0; o < OB; o++) {                                           \
                    const __m512 b = _mm512_set1_ps(w[o]);                                         \
                    PK_UNROLL for (int v = 0; v < (NV); v++) acc[o][v] =                           \
                        _mm512_fmadd_ps(b, xv[v], acc[o][v]);                                      \
                }                                                                                  \
            }                                                                                      \
        const __m512 zero = _mm512_setzero_ps();                                                   \
        PK_UNROLL for (int o = 0; o < OB; o++) {                                                   \
            const __m512 bb = _mm512_set1_ps(bias8[o]);                                            \
            PK_UNROLL for (int v = 0; v < (NV); v++) {                                             \
                __m512 y = _mm512_add_ps(acc[o][v], bb);                                           \
                if (relu) y = _mm512_max_ps(y, zero);                                              \
                _mm512_storeu_ps(res + o * TILE + VL * v, y);                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

MS_NN_TARGET_AVX512 static void tile_avx512_3(const float *x, size_t chan, int32_t in_c,
                                              const int32_t *taps, int32_t ntaps, const float *w,
                                              const float *bias8, bool relu, uintptr_t pf,
                                              int32_t pf_per_c, float *res) {
    PK_TILE_BODY(3);
}
MS_NN_TARGET_AVX512 static void tile_avx512_2(const float *x, size_t chan, int32_t in_c,
                                              const int32_t *taps, int32_t ntaps, const float *w,
                                              const float *bias8, bool relu, uintptr_t pf,
                                              int32_t pf_per_c, float *res) {
    PK_TILE_BODY(2);
}
MS_NN_TARGET_AVX512 static void tile_avx512_1(const float *x, size_t chan, int32_t in_c,
                                              const int32_t *taps, int32_t ntaps, const float *w,
                                              const float *bias8, bool relu, uintptr_t pf,
                                              int32_t pf_per_c, float *res) {
    PK_TILE_BODY(1);
}
#endif

/* Channels mode, for narrow outputs (ResNet's 7 and 14 px): a tile is np (1 to PMAX)
 * consecutive outputs of one row x OBC output channels, the channels in vectors and each
 * input value broadcast, so no position is computed past the row's end (positions mode
 * computes 64 for 49 at 7x7). res[i][o] = output channel o of position i, bias added, ReLU
 * when relu. x: the band at the tile's first position. */
static void ctile_generic(const float *x, size_t chan, int32_t in_c, const int32_t *taps,
                          int32_t ntaps, const float *w, const float *bias32, bool relu,
                          uintptr_t pf, int32_t pf_per_c, int np, float *res) {
    for (int i = 0; i < np; i++)
        for (int o = 0; o < OBC; o++) res[i * OBC + o] = 0.0f;
    for (int32_t c = 0; c < in_c; c++, x += chan, pf = pk_prefetch(pf, pf_per_c))
        for (int32_t t = 0; t < ntaps; t++, w += OBC) {
            const float *xp = x + taps[t];
            for (int i = 0; i < np; i++)
                for (int o = 0; o < OBC; o++) res[i * OBC + o] += xp[i] * w[o];
        }
    for (int i = 0; i < np; i++)
        for (int o = 0; o < OBC; o++) {
            const float y = res[i * OBC + o] + bias32[o];
            res[i * OBC + o] = relu && !(y > 0.0f) ? 0.0f : y;
        }
}

#ifdef MS_NN_X86_CLONES
#define PK_CTILE_BODY(NP)                                                                          \
    do {                                                                                           \
        __m512 acc[NP][2];                                                                         \
        PK_UNROLL for (int i = 0; i < (NP); i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();      \
        for (int32_t c = 0; c < in_c; c++, x += chan, pf = pk_prefetch(pf, pf_per_c))              \
            for (int32_t t = 0; t < ntaps; t++, w += OBC) {                                        \
                const float *xp = x + taps[t];                                                     \
                const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + VL);                \
                PK_UNROLL for (int i = 0; i < (NP); i++) {                                         \
                    const __m512 b = _mm512_set1_ps(xp[i]);                                        \
                    acc[i][0] = _mm512_fmadd_ps(b, w0, acc[i][0]);                                 \
                    acc[i][1] = _mm512_fmadd_ps(b, w1, acc[i][1]);                                 \
                }                                                                                  \
            }                                                                                      \
        const __m512 b0 = _mm512_loadu_ps(bias32), b1 = _mm512_loadu_ps(bias32 + VL);              \
        const __m512 zero = _mm512_setzero_ps();                                                   \
        PK_UNROLL for (int i = 0; i < (NP); i++) {                                                 \
            __m512 y0 = _mm512_add_ps(acc[i][0], b0), y1 = _mm512_add_ps(acc[i][1], b1);           \
            if (relu) {                                                                            \
                y0 = _mm512_max_ps(y0, zero);                                                      \
                y1 = _mm512_max_ps(y1, zero);                                                      \
            }                                                                                      \
            _mm512_storeu_ps(res + i * OBC, y0);                                                   \
            _mm512_storeu_ps(res + i * OBC + VL, y1);                                              \
        }                                                                                          \
    } while (0)

#define PK_CTILE_FN(NP)                                                                            \
    MS_NN_TARGET_AVX512 static void ctile_avx512_##NP(                                             \
        const float *x, size_t chan, int32_t in_c, const int32_t *taps, int32_t ntaps,             \
        const float *w, const float *bias32, bool relu, uintptr_t pf, int32_t pf_per_c,            \
        float *res) {                                                                              \
        PK_CTILE_BODY(NP);                                                                         \
    }
PK_CTILE_FN(1)
PK_CTILE_FN(2)
PK_CTILE_FN(3)
PK_CTILE_FN(4)
PK_CTILE_FN(5)
PK_CTILE_FN(6)
PK_CTILE_FN(7)
PK_CTILE_FN(8)

typedef void (*ctile_fn)(const float *, size_t, int32_t, const int32_t *, int32_t, const float *,
                         const float *, bool, uintptr_t, int32_t, float *);
static const ctile_fn ctile_avx512[PMAX + 1] = {NULL,           ctile_avx512_1, ctile_avx512_2,
                                                ctile_avx512_3, ctile_avx512_4, ctile_avx512_5,
                                                ctile_avx512_6, ctile_avx512_7, ctile_avx512_8};
#endif

typedef struct pk_job {
    const ms_conv2d *p;
    pk_plan pl;
    const pk_pre *pre; /* the fused first layer, or NULL; in is then its input */
    const ms_tensor *in;
    const float *wp, *bias;
    ms_tensor *out;
    float *workspace;
    size_t ws_stride;
    bool avx512;
    /* The band each worker's workspace holds (image * bands + band), or SIZE_MAX: the tasks of
     * one band's output-channel chunks fill it once per worker, not once per task. Each
     * worker reads and writes only its own entry. */
    size_t filled[MS_POOL_MAX_THREADS];
} pk_job;

/* The slice of the next block's packed weights (floats from next) that tile `part` of
 * `parts` prefetches, spread over its in_c input channels: *pf its start, *per_c lines per
 * channel (0: nothing to fetch). Inside a network a layer's weights come from memory at every
 * run (ResNet-18's 512@7 layers stream 9.4 MB each); fetched a block ahead, the transfer
 * overlaps the current block's arithmetic. */
static void prefetch_slice(const float *next, size_t floats, size_t part, size_t parts,
                           int32_t in_c, uintptr_t *pf, int32_t *per_c) {
    const size_t lines = (floats * sizeof(float) + 63) / 64;
    const size_t per_tile = (lines + parts - 1) / parts;
    *pf = (uintptr_t)next + 64 * (part * per_tile < lines ? part * per_tile : lines);
    const size_t left = lines - (part * per_tile < lines ? part * per_tile : lines);
    const size_t mine = per_tile < left ? per_tile : left;
    /* mine = per_c * in_c + rest: the rest now (fewer lines than channels), the others
     * spread over the channels */
    const size_t rest = mine % (size_t)in_c;
    *pf = pk_prefetch(*pf, (int32_t)rest);
    *per_c = (int32_t)(mine / (size_t)in_c);
}

/* Positions mode: tile t of the band (positions t * TILE on) for output-channel block b,
 * written to the output image oimg (rows from oy0); pf, pf_c: what to prefetch meanwhile. */
static void pos_tile(const pk_job *j, int32_t b, size_t t, size_t npos, const float *band,
                     float *res, const int32_t *taps, float *oimg, int32_t oy0, uintptr_t pf,
                     int32_t pf_c) {
    const ms_conv2d *p = j->p;
    const pk_plan *pl = &j->pl;
    const int32_t ntaps = p->kh * p->kw, wp = pl->wp;
    const size_t k = (size_t)p->in_c * (size_t)ntaps;
    const size_t plane = (size_t)pl->out_h * (size_t)pl->out_w;
    const bool relu = p->act == MS_ACT_RELU;
    const float *w = j->wp + (size_t)b * k * OB;
    float bias8[OB];
    const int32_t nout = p->out_c - b * OB < OB ? p->out_c - b * OB : OB;
    for (int o = 0; o < OB; o++) bias8[o] = j->bias && o < nout ? j->bias[b * OB + o] : 0.0f;
    const size_t q0 = t * TILE, nq = npos - q0 < TILE ? npos - q0 : TILE;
    const float *x = band + q0;
#ifdef MS_NN_X86_CLONES
    if (j->avx512) {
        if (nq > 2 * VL)
            tile_avx512_3(x, pl->chan, p->in_c, taps, ntaps, w, bias8, relu, pf, pf_c, res);
        else if (nq > VL)
            tile_avx512_2(x, pl->chan, p->in_c, taps, ntaps, w, bias8, relu, pf, pf_c, res);
        else
            tile_avx512_1(x, pl->chan, p->in_c, taps, ntaps, w, bias8, relu, pf, pf_c, res);
    } else
#endif
        tile_generic(x, pl->chan, p->in_c, taps, ntaps, w, bias8, relu, pf, pf_c, res);
    /* positions q0 .. q0 + nq - 1 are (oy0 + q / wp, q % wp); columns >= out_w drop */
    for (size_t q = q0; q < q0 + nq;) {
        const size_t y = q / (size_t)wp, x0 = q % (size_t)wp;
        const size_t end = (y + 1) * (size_t)wp < q0 + nq ? (y + 1) * (size_t)wp : q0 + nq;
        if (x0 < (size_t)pl->out_w) {
            const size_t cnt = end - q < (size_t)pl->out_w - x0 ? end - q : (size_t)pl->out_w - x0;
            float *dst = oimg + ((size_t)oy0 + y) * (size_t)pl->out_w + x0;
            for (int32_t o = 0; o < nout; o++) {
                float *d = dst + (size_t)(b * OB + o) * plane;
                memcpy(d, res + (size_t)o * TILE + (q - q0), cnt * sizeof(float));
                if (!relu && p->act != MS_ACT_NONE)
                    ms_nn_bias_act(d, cnt, 0.0f, p->act, p->act_alpha);
            }
        }
        q = end;
    }
}

/* One task: one image, one band of output rows, one chunk of output-channel blocks. */
static void pk_task(void *ctx, size_t task, int32_t worker) {
    pk_job *j = ctx;
    const ms_conv2d *p = j->p;
    const pk_plan *pl = &j->pl;
    const size_t per_image = (size_t)pl->bands * (size_t)pl->chunks;
    const size_t n = task / per_image;
    const int32_t band_i = (int32_t)(task % per_image / (size_t)pl->chunks);
    const int32_t chunk_i = (int32_t)(task % (size_t)pl->chunks);
    const int32_t oy0 = band_i * pl->rows;
    const int32_t oy1 = pl->out_h - oy0 > pl->rows ? oy0 + pl->rows : pl->out_h;
    const int32_t b0 = chunk_i * pl->chunk;
    const int32_t b1 = pl->blocks - b0 > pl->chunk ? b0 + pl->chunk : pl->blocks;
    float *band = j->workspace + (size_t)worker * j->ws_stride;
    float *res = band + (pl->band + VL - 1) / VL * VL;

    const float *img = j->in->data + n * (size_t)j->in->c * (size_t)j->in->h * (size_t)j->in->w;
    const size_t which = n * (size_t)pl->bands + (size_t)band_i;
    if (j->filled[worker] != which) {
        if (j->pre != NULL)
            band_fill_pre(p, pl, j->pre, img, oy0, band, res + RES_FLOATS, j->avx512);
        else
            band_fill(p, pl, img, j->in->h, j->in->w, oy0, band, j->avx512);
        j->filled[worker] = which;
    }

    int32_t taps[MAX_TAPS];
    const int32_t ntaps = p->kh * p->kw, wp = pl->wp;
    const size_t phase_floats = (size_t)(pl->rows + pl->ey) * (size_t)wp;
    for (int32_t ky = 0; ky < p->kh; ky++)
        for (int32_t kx = 0; kx < p->kw; kx++) {
            const size_t ph =
                (size_t)(ky % p->stride_h) * (size_t)pl->phx + (size_t)(kx % p->stride_w);
            taps[ky * p->kw + kx] =
                (int32_t)(ph * phase_floats + (size_t)(ky / p->stride_h) * (size_t)wp +
                          (size_t)(kx / p->stride_w));
        }

    const size_t plane = (size_t)pl->out_h * (size_t)pl->out_w;
    float *oimg = j->out->data + n * (size_t)p->out_c * plane;
    const size_t npos = (size_t)(oy1 - oy0) * (size_t)wp;
    const size_t k = (size_t)p->in_c * (size_t)ntaps;
    const bool relu = p->act == MS_ACT_RELU;
    if (pl->chans) {
        /* Each output row in `parts` tiles of nearly equal width (at most PMAX). */
        const int32_t parts = (pl->out_w + PMAX - 1) / PMAX;
        for (int32_t b = b0; b < b1; b++) {
            const float *w = j->wp + (size_t)b * k * OBC;
            float bias32[OBC];
            const int32_t nout = p->out_c - b * OBC < OBC ? p->out_c - b * OBC : OBC;
            for (int o = 0; o < OBC; o++)
                bias32[o] = j->bias && o < nout ? j->bias[b * OBC + o] : 0.0f;
            const size_t ntile = (size_t)(oy1 - oy0) * (size_t)parts;
            for (int32_t y = 0; y < oy1 - oy0; y++)
                for (int32_t part = 0; part < parts; part++) {
                    uintptr_t pf = 0;
                    int32_t pf_c = 0;
                    if (b + 1 < pl->blocks)
                        prefetch_slice(w + k * OBC, k * OBC,
                                       (size_t)y * (size_t)parts + (size_t)part, ntile, p->in_c,
                                       &pf, &pf_c);
                    const int32_t x0 = part * pl->out_w / parts;
                    const int32_t np = (part + 1) * pl->out_w / parts - x0;
                    const float *x = band + (size_t)y * (size_t)wp + (size_t)x0;
#ifdef MS_NN_X86_CLONES
                    if (j->avx512)
                        ctile_avx512[np](x, pl->chan, p->in_c, taps, ntaps, w, bias32, relu, pf,
                                         pf_c, res);
                    else
#endif
                        ctile_generic(x, pl->chan, p->in_c, taps, ntaps, w, bias32, relu, pf, pf_c,
                                      np, res);
                    float *dst = oimg + ((size_t)oy0 + (size_t)y) * (size_t)pl->out_w + (size_t)x0;
                    for (int32_t o = 0; o < nout; o++) {
                        float *d = dst + (size_t)(b * OBC + o) * plane;
                        for (int32_t i = 0; i < np; i++) d[i] = res[i * OBC + o];
                        if (!relu && p->act != MS_ACT_NONE)
                            ms_nn_bias_act(d, (size_t)np, 0.0f, p->act, p->act_alpha);
                    }
                }
        }
        return;
    }
    /* Few input channels (the screener's 16 -> 32): a tile's input lines serve every block
     * while they are in L1, the chunk's weights staying there too. Otherwise block by block,
     * the next block's weights fetched meanwhile. */
    const size_t ntiles = (npos + TILE - 1) / TILE;
    if ((size_t)(b1 - b0) * k * OB * sizeof(float) <= TILE_OUTER_BYTES) {
        for (size_t t = 0; t < ntiles; t++)
            for (int32_t b = b0; b < b1; b++)
                pos_tile(j, b, t, npos, band, res, taps, oimg, oy0, 0, 0);
        return;
    }
    for (int32_t b = b0; b < b1; b++)
        for (size_t t = 0; t < ntiles; t++) {
            uintptr_t pf = 0;
            int32_t pf_c = 0;
            if (b + 1 < pl->blocks)
                prefetch_slice(j->wp + (size_t)(b + 1) * k * OB, k * OB, t, ntiles, p->in_c, &pf,
                               &pf_c);
            pos_tile(j, b, t, npos, band, res, taps, oimg, oy0, pf, pf_c);
        }
}

static void pk_forward(const ms_conv2d *p, const pk_pre *pre, const ms_tensor *in, const float *wp,
                       const float *bias, ms_tensor *out, float *workspace, size_t ws_stride,
                       ms_pool *pool, ms_nn_isa isa) {
    pk_job j = {.p = p,
                .pre = pre,
                .in = in,
                .wp = wp,
                .bias = bias,
                .out = out,
                .workspace = workspace,
                .ws_stride = ws_stride};
    const int32_t in_h = pre ? pre->out_h : in->h, in_w = pre ? pre->out_w : in->w;
    if (!plan_make(p, in_h, in_w, &j.pl)) {
        assert(0 && "ms_conv2d_packed_forward: parameters ms_conv2d_packed_workspace refuses");
        return;
    }
    assert(in->c == (pre ? 1 : p->in_c) && out->n == in->n && out->c == p->out_c &&
           out->h == j.pl.out_h && out->w == j.pl.out_w && workspace != NULL);
    assert(ms_pool_threads(pool) == 1 || ws_stride >= j.pl.workspace);
    assert(pre == NULL || (pre->in_h == in->h && pre->in_w == in->w));
    j.avx512 = isa >= MS_NN_ISA_AVX512 && ms_nn_cpu_avx512();
    for (size_t i = 0; i < MS_POOL_MAX_THREADS; i++) j.filled[i] = SIZE_MAX;
    ms_pool_run(pool, (size_t)in->n * (size_t)j.pl.bands * (size_t)j.pl.chunks, pk_task, &j);
}

void ms_conv2d_packed_forward(const ms_conv2d *p, const ms_tensor *in, const float *wp,
                              const float *bias, ms_tensor *out, float *workspace) {
    pk_forward(p, NULL, in, wp, bias, out, workspace, 0, NULL, MS_NN_ISA_AVX512);
}

void ms_conv2d_packed_forward_pool(const ms_conv2d *p, const ms_tensor *in, const float *wp,
                                   const float *bias, ms_tensor *out, float *workspace,
                                   size_t ws_stride, ms_pool *pool) {
    pk_forward(p, NULL, in, wp, bias, out, workspace, ws_stride, pool, MS_NN_ISA_AVX512);
}

void ms_nn_conv2d_packed_forward_isa(const ms_conv2d *p, const ms_tensor *in, const float *wp,
                                     const float *bias, ms_tensor *out, float *workspace,
                                     ms_nn_isa isa) {
    pk_forward(p, NULL, in, wp, bias, out, workspace, 0, NULL, isa);
}

size_t ms_conv2d_packed_fused_workspace(const ms_conv2d *pre, const ms_conv2d *p, int32_t in_h,
                                        int32_t in_w) {
    pk_pre pr;
    pk_plan pl;
    size_t extra, ws;
    if (!ms_conv2d_packed_fusable(pre, p) || !pre_make(pre, in_h, in_w, &pr) ||
        !plan_make(p, pr.out_h, pr.out_w, &pl) || !pre_scratch(&pr, &extra) ||
        !ms_add_size(pl.workspace, extra, &ws))
        return SIZE_MAX;
    return ws;
}

static void fused_forward(const ms_conv2d *pre, const float *pre_weight, const float *pre_bias,
                          const ms_conv2d *p, const ms_tensor *in, const float *wp,
                          const float *bias, ms_tensor *out, float *workspace, size_t ws_stride,
                          ms_pool *pool, ms_nn_isa isa) {
    pk_pre pr;
    if (!ms_conv2d_packed_fusable(pre, p) || !pre_make(pre, in->h, in->w, &pr)) {
        assert(0 && "ms_conv2d_packed_fused_forward: parameters the workspace call refuses");
        return;
    }
    assert(ms_pool_threads(pool) == 1 ||
           ws_stride >= ms_conv2d_packed_fused_workspace(pre, p, in->h, in->w));
    pr.weight = pre_weight;
    pr.bias = pre_bias;
    pk_forward(p, &pr, in, wp, bias, out, workspace, ws_stride, pool, isa);
}

void ms_conv2d_packed_fused_forward_pool(const ms_conv2d *pre, const float *pre_weight,
                                         const float *pre_bias, const ms_conv2d *p,
                                         const ms_tensor *in, const float *wp, const float *bias,
                                         ms_tensor *out, float *workspace, size_t ws_stride,
                                         ms_pool *pool) {
    fused_forward(pre, pre_weight, pre_bias, p, in, wp, bias, out, workspace, ws_stride, pool,
                  MS_NN_ISA_AVX512);
}

void ms_nn_conv2d_packed_fused_forward_isa(const ms_conv2d *pre, const float *pre_weight,
                                           const float *pre_bias, const ms_conv2d *p,
                                           const ms_tensor *in, const float *wp, const float *bias,
                                           ms_tensor *out, float *workspace, ms_nn_isa isa) {
    fused_forward(pre, pre_weight, pre_bias, p, in, wp, bias, out, workspace, 0, NULL, isa);
}

/* Where the AVX-512 kernel beats the other paths (measured: see the commit and bench_conv).
 * Without AVX-512 the portable tile is not faster than im2col + sgemm, so never. */
bool ms_conv2d_packed_worthwhile(const ms_conv2d *p, int32_t in_h, int32_t in_w) {
    pk_plan pl;
    if (!ms_nn_cpu_avx512() || !plan_make(p, in_h, in_w, &pl)) return false;
    if ((int64_t)p->in_c * p->kh * p->kw < 16) return false; /* first layers: conv.c's kernel */
    const bool pointwise = p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                           p->pad_t == 0 && p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0;
    return !pointwise;
}
