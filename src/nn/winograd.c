/* Winograd F(4x4, 3x3) convolution (Lavin and Gray, "Fast algorithms for convolutional neural
 * networks", 2016) for 3x3 kernels with stride 1, dilation 1 and one group.
 *
 * Each 4x4 output tile is A^T [ sum_ic (G g G^T) .* (B^T d B) ] A, where d is the 6x6 input
 * tile that covers it; interpolation points 0, +-1, +-2 and infinity. The 36 element-wise
 * products, summed over input channels, are 36 matrix products M_e = U_e V_e (U_e:
 * [out_c][in_c], V_e: [in_c][tiles]) done by cblas_sgemm: 4x fewer multiplications than
 * im2col's 9 per output pixel and input channel (36 per 16 pixels), plus transforms that
 * cost O(in_c + out_c) per tile.
 *
 * The tiles of an image are processed in blocks of consecutive tiles in raster order (whole
 * tile rows where they fit), sized so that the transformed inputs and products of a block stay
 * in L2 unless the channels are many (see BLOCK_FLOATS); the weights are transformed once by
 * ms_conv2d_winograd_weights. In the workspace, 37 slots of max(in_c, out_c) * tiles floats
 * hold V_e in slot e + 1 and receive M_e in slot e (free once V_{e-1} is used), so a block
 * needs about half the memory of separate V and M buffers and can be twice as wide.
 *
 * Edge tiles read zeros outside the input (the padding and the part of the last tile past the
 * input) and write only the part of the output that exists. */
#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "medscreen/core.h"
#include "nn_internal.h"

/* Block size, from measurements of OpenBLAS 0.3.21 (SkylakeX kernels, Xeon, 1 thread):
 * - As many tiles as keep the 37 slots within BLOCK_FLOATS (1 MiB, half of L2) where the
 *   channels are few: at 32 to 128 channels the 36 products of 48 to 208 tiles run at 110-160
 *   GFLOP/s.
 * - But at least in_c * out_c / 1024 tiles (at most MAX_TILES and the WS_FLOATS workspace)
 *   where they are many: each product packs and streams U_e (in_c * out_c floats) for the
 *   block's tiles. At 512 channels the products of 13 tiles ran at 27 GFLOP/s, of 256 at 94; a
 *   512->512 layer with a 56x56 output took 376 ms with 1 MiB blocks, 52 ms with 256 tiles
 *   (im2col: 198 ms). The workspace is bounded by the channels then, not by the image.
 * - Whole tile rows per block where a row fits: every run of one tile row costs a dozen short
 *   loops in the transforms. Otherwise multiples of 16 tiles, the kernel's unroll (64
 *   channels: 154 GFLOP/s at 32 tiles, 92 at 27). */
enum { BLOCK_FLOATS = 1 << 18, MAX_TILES = 256, WS_FLOATS = 1 << 22, SLOTS = 37 };

typedef struct wino_plan {
    int32_t out_h, out_w;
    int32_t tiles_y, tiles_x;
    int32_t block;    /* tiles per block, consecutive in raster order (the last may be fewer) */
    int32_t seg;      /* longest run of one tile row in a block: min(block, tiles_x) */
    size_t tiles;     /* tiles_y * tiles_x */
    size_t slot;      /* floats per slot, at least max(in_c, out_c) * block */
    size_t workspace; /* floats in all */
} wino_plan;

/* Round up to a multiple of 16 floats (64 bytes), so every part of the workspace starts on a
 * cache line when the workspace does. */
static bool round16(size_t n, size_t *out) {
    if (n > SIZE_MAX - 15) return false;
    *out = (n + 15) / 16 * 16;
    return true;
}

/* Slot size in floats: a multiple of 1024 floats plus 16, so the 36 slots that the transforms
 * read or write side by side start 64 bytes apart modulo 4 KiB. With a multiple of 4 KiB they
 * would all map to the same L1 set (12 ways), and their streams evicted one another. */
static bool pad_slot(size_t n, size_t *out) {
    if (n > SIZE_MAX - 1024 - 16) return false;
    *out = (n + 1023) / 1024 * 1024 + 16;
    return true;
}

bool ms_conv2d_winograd_ok(const ms_conv2d *p) {
    if (p == NULL || p->kh != 3 || p->kw != 3 || p->stride_h != 1 || p->stride_w != 1 ||
        p->dil_h != 1 || p->dil_w != 1 || p->groups != 1)
        return false;
    /* The remaining parameters (channels, padding, activation) as ms_conv2d_shape checks
     * them; a 3x3 input always fits a 3x3 kernel. */
    return ms_conv2d_shape(p, 3, 3, NULL, NULL, NULL) == MS_OK;
}

static bool plan_make(const ms_conv2d *p, int32_t in_h, int32_t in_w, wino_plan *pl) {
    if (!ms_conv2d_winograd_ok(p)) return false;
    int32_t oh, ow;
    if (ms_conv2d_shape(p, in_h, in_w, &oh, &ow, NULL) != MS_OK) return false;
    const int32_t ty = (int32_t)(((int64_t)oh + 3) / 4), tx = (int32_t)(((int64_t)ow + 3) / 4);
    const size_t maxc = (size_t)(p->in_c > p->out_c ? p->in_c : p->out_c);

    size_t tiles, per_tile, cc, tmp;
    if (!ms_mul_size((size_t)ty, (size_t)tx, &tiles) || !ms_mul_size(maxc, SLOTS, &per_tile) ||
        !ms_mul_size((size_t)p->in_c, (size_t)p->out_c, &cc) || !ms_mul_size(cc, 36, &tmp) ||
        !ms_mul_size(tmp, sizeof(float), &tmp)) /* U: forward indexes it without checks */
        return false;
    size_t blk = BLOCK_FLOATS / per_tile, want = cc / 1024;
    if (want > MAX_TILES) want = MAX_TILES;
    if (want > WS_FLOATS / per_tile) want = WS_FLOATS / per_tile;
    if (blk < want) blk = want;
    if (blk < 1) blk = 1;
    if (blk >= tiles) {
        blk = tiles;
    } else if (blk >= (size_t)tx) {
        /* Whole tile rows, in blocks of equal height: fewer short row runs to transform. */
        const size_t rows = blk / (size_t)tx, nblk = ((size_t)ty + rows - 1) / rows;
        blk = ((size_t)ty + nblk - 1) / nblk * (size_t)tx;
    } else if (blk >= 16) {
        blk = blk / 16 * 16;
    }
    const size_t seg = blk < (size_t)tx ? blk : (size_t)tx;

    /* Scratch after the slots: the input transform's split rows and vertical results
     * (48 (seg + 1) floats), or the output transform's 24 seg + 4 seg. */
    size_t slot, scratch, ws;
    if (blk > INT_MAX || !ms_mul_size(maxc, blk, &slot) || !pad_slot(slot, &slot) ||
        !ms_mul_size(seg + 1, 48, &scratch) || !round16(scratch, &scratch) ||
        !ms_mul_size(slot, SLOTS, &ws) || !ms_add_size(ws, scratch, &ws) ||
        !ms_mul_size(ws, sizeof(float), &tmp))
        return false;
    pl->out_h = oh;
    pl->out_w = ow;
    pl->tiles_y = ty;
    pl->tiles_x = tx;
    pl->block = (int32_t)blk;
    pl->seg = (int32_t)seg;
    pl->tiles = tiles;
    pl->slot = slot;
    pl->workspace = ws;
    return true;
}

size_t ms_conv2d_winograd_weight_floats(const ms_conv2d *p) {
    size_t n;
    if (!ms_conv2d_winograd_ok(p) || !ms_mul_size((size_t)p->out_c, (size_t)p->in_c, &n) ||
        !ms_mul_size(n, 36, &n) || n > SIZE_MAX / sizeof(float))
        return SIZE_MAX;
    return n;
}

size_t ms_conv2d_winograd_workspace(const ms_conv2d *p, int32_t in_h, int32_t in_w) {
    wino_plan pl;
    return plan_make(p, in_h, in_w, &pl) ? pl.workspace : SIZE_MAX;
}

/* U_e[oc][ic] = (G g G^T)[e / 6][e % 6], computed in double. */
void ms_conv2d_winograd_weights(const ms_conv2d *p, const float *weight, float *u) {
    static const double G[6][3] = {
        {1.0 / 4, 0, 0},
        {-1.0 / 6, -1.0 / 6, -1.0 / 6},
        {-1.0 / 6, 1.0 / 6, -1.0 / 6},
        {1.0 / 24, 1.0 / 12, 1.0 / 6},
        {1.0 / 24, -1.0 / 12, 1.0 / 6},
        {0, 0, 1},
    };
    assert(ms_conv2d_winograd_ok(p));
    const size_t ic_n = (size_t)p->in_c, plane = (size_t)p->out_c * ic_n;
    for (size_t oc = 0; oc < (size_t)p->out_c; oc++)
        for (size_t ic = 0; ic < ic_n; ic++) {
            const float *g = weight + (oc * ic_n + ic) * 9;
            double gt[6][3]; /* G g */
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 3; j++)
                    gt[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++) {
                    const double v = gt[i][0] * G[j][0] + gt[i][1] * G[j][1] + gt[i][2] * G[j][2];
                    u[(size_t)(i * 6 + j) * plane + oc * ic_n + ic] = (float)v;
                }
        }
}

/* ---- input transform: V = B^T d B ----
 * B^T = [4  0 -5  0 1 0]
 *       [0 -4 -4  1 1 0]
 *       [0  4 -4 -1 1 0]
 *       [0 -2 -1  2 1 0]
 *       [0  2 -1 -2 1 0]
 *       [0  4  0 -5 0 1]
 * The loops below take every array as a restrict parameter: GCC does not trust restrict on
 * pointers declared inside a function, and with twelve arrays it gives up on run-time alias
 * checks (measured: no vectorisation at all). */

/* v_k[i] = (B^T (d_0[i], ..., d_5[i]))_k for i < n. The inputs may overlap (they are only
 * read). */
MS_NN_INLINE void bt6(const float *restrict d0, const float *restrict d1, const float *restrict d2,
                      const float *restrict d3, const float *restrict d4, const float *restrict d5,
                      float *restrict v0, float *restrict v1, float *restrict v2,
                      float *restrict v3, float *restrict v4, float *restrict v5, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float a = d4[i] - 4.0f * d2[i], b = d3[i] - 4.0f * d1[i];
        const float c = d4[i] - d2[i], e = 2.0f * (d3[i] - d1[i]);
        v0[i] = 4.0f * d0[i] - 5.0f * d2[i] + d4[i];
        v1[i] = a + b;
        v2[i] = a - b;
        v3[i] = c + e;
        v4[i] = c - e;
        v5[i] = 4.0f * d1[i] - 5.0f * d3[i] + d5[i];
    }
}

/* p_r[t] = s[4 t + r] for t < n. */
MS_NN_INLINE void deinterleave4(const float *restrict s, float *restrict p0, float *restrict p1,
                                float *restrict p2, float *restrict p3, size_t n) {
    for (size_t t = 0; t < n; t++) {
        p0[t] = s[4 * t];
        p1[t] = s[4 * t + 1];
        p2[t] = s[4 * t + 2];
        p3[t] = s[4 * t + 3];
    }
}

/* One tile row of one channel: n tiles whose first input row and column are iy0 and ix0
 * (negative in the padding). Tile t covers columns 4 t .. 4 t + 5 of the row segment, so the
 * six input rows are first split by column modulo 4 (ph[j][r][t] = row j, column 4 t + r, zero
 * outside the input): then tile t's columns are ph[j][0..3][t] and ph[j][0..1][t + 1], and
 * both transforms run on contiguous arrays. td[k][r][t] = (B^T d)[k] at column 4 t + r. V_e's
 * values for the tiles go to dst[e * estride + t]. */
MS_NN_INLINE void input_row(const float *restrict src, int32_t in_h, int32_t in_w, int64_t iy0,
                            int64_t ix0, int32_t n, float *restrict ph, float *restrict td,
                            float *restrict dst, size_t estride) {
    const size_t nt = (size_t)n + 1, w4 = 4 * nt;
    int64_t xa = -ix0, xb = (int64_t)in_w - ix0; /* valid columns of the segment: [xa, xb) */
    xa = xa < 0 ? 0 : xa > (int64_t)w4 ? (int64_t)w4 : xa;
    xb = xb < xa ? xa : xb > (int64_t)w4 ? (int64_t)w4 : xb;
    /* tiles whose four columns all lie inside the input: [ta, tb) */
    const size_t ta = ((size_t)xa + 3) / 4, tb = (size_t)xb / 4 > ta ? (size_t)xb / 4 : ta;
    for (int j = 0; j < 6; j++) {
        float *p = ph + (size_t)j * w4;
        const int64_t iy = iy0 + j;
        if (iy < 0 || iy >= in_h || xa == xb) {
            memset(p, 0, w4 * sizeof(float));
            continue;
        }
        const float *row = src + (size_t)iy * (size_t)in_w; /* column x is row[ix0 + x] */
        if (tb > ta)
            deinterleave4(row + (ix0 + 4 * (int64_t)ta), p + ta, p + nt + ta, p + 2 * nt + ta,
                          p + 3 * nt + ta, tb - ta);
        for (size_t t = 0; t < nt; t++) {
            if (t == ta) t = tb;
            if (t >= nt) break;
            for (size_t r = 0; r < 4; r++) {
                const int64_t x = 4 * (int64_t)t + (int64_t)r;
                p[r * nt + t] = x >= xa && x < xb ? row[ix0 + x] : 0.0f;
            }
        }
    }
    for (size_t r = 0; r < 4; r++) /* vertical */
        bt6(ph + r * nt, ph + w4 + r * nt, ph + 2 * w4 + r * nt, ph + 3 * w4 + r * nt,
            ph + 4 * w4 + r * nt, ph + 5 * w4 + r * nt, td + r * nt, td + w4 + r * nt,
            td + 2 * w4 + r * nt, td + 3 * w4 + r * nt, td + 4 * w4 + r * nt, td + 5 * w4 + r * nt,
            nt);
    for (size_t k = 0; k < 6; k++) { /* horizontal */
        const float *q = td + k * w4;
        float *v = dst + 6 * k * estride;
        bt6(q, q + nt, q + 2 * nt, q + 3 * nt, q + 1, q + nt + 1, v, v + estride, v + 2 * estride,
            v + 3 * estride, v + 4 * estride, v + 5 * estride, (size_t)n);
    }
}

/* The input transform of one block: tiles [b0, b0 + nb) in raster order, every channel;
 * V_e goes to slot e + 1 as [in_c][nb]. The block is walked as runs of one tile row. */
MS_NN_INLINE void input_block_body(const ms_conv2d *p, const float *img, int32_t in_h, int32_t in_w,
                                   size_t b0, size_t nb, const wino_plan *pl, float *ws) {
    const size_t plane = (size_t)in_h * (size_t)in_w, tx_n = (size_t)pl->tiles_x;
    float *ph = ws + SLOTS * pl->slot, *td = ph + 24 * ((size_t)pl->seg + 1);
    for (int32_t c = 0; c < p->in_c; c++)
        for (size_t i = b0; i < b0 + nb;) {
            const size_t ty = i / tx_n, tx = i % tx_n;
            const size_t n = tx_n - tx < b0 + nb - i ? tx_n - tx : b0 + nb - i;
            input_row(img + (size_t)c * plane, in_h, in_w, 4 * (int64_t)ty - p->pad_t,
                      4 * (int64_t)tx - p->pad_l, (int32_t)n, ph, td,
                      ws + pl->slot + (size_t)c * nb + (i - b0), pl->slot);
            i += n;
        }
}

/* ---- output transform: Y = A^T M A ----
 * A^T = [1 1  1 1  1 0]
 *       [0 1 -1 2 -2 0]
 *       [0 1  1 4  4 0]
 *       [0 1 -1 8 -8 1] */

/* o_q[i] = (A^T (m_0[i], ..., m_5[i]))_q for i < n. */
MS_NN_INLINE void at6(const float *restrict m0, const float *restrict m1, const float *restrict m2,
                      const float *restrict m3, const float *restrict m4, const float *restrict m5,
                      float *restrict o0, float *restrict o1, float *restrict o2,
                      float *restrict o3, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float a = m1[i] + m2[i], b = m1[i] - m2[i];
        const float c = m3[i] + m4[i], d = m3[i] - m4[i];
        o0[i] = m0[i] + a + c;
        o1[i] = b + 2.0f * d;
        o2[i] = a + 4.0f * c;
        o3[i] = b + 8.0f * d + m5[i];
    }
}

/* The same with the four results of i stored at o[4 i .. 4 i + 3] (one output row of tile i),
 * plus the bias, and ReLU when relu. */
MS_NN_INLINE void at6_row(const float *restrict m0, const float *restrict m1,
                          const float *restrict m2, const float *restrict m3,
                          const float *restrict m4, const float *restrict m5, float *restrict o,
                          size_t n, float bias, bool relu) {
    if (relu) {
        for (size_t i = 0; i < n; i++) {
            const float a = m1[i] + m2[i], b = m1[i] - m2[i];
            const float c = m3[i] + m4[i], d = m3[i] - m4[i];
            const float y0 = m0[i] + a + c + bias, y1 = b + 2.0f * d + bias;
            const float y2 = a + 4.0f * c + bias, y3 = b + 8.0f * d + m5[i] + bias;
            o[4 * i] = y0 > 0.0f ? y0 : 0.0f;
            o[4 * i + 1] = y1 > 0.0f ? y1 : 0.0f;
            o[4 * i + 2] = y2 > 0.0f ? y2 : 0.0f;
            o[4 * i + 3] = y3 > 0.0f ? y3 : 0.0f;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            const float a = m1[i] + m2[i], b = m1[i] - m2[i];
            const float c = m3[i] + m4[i], d = m3[i] - m4[i];
            o[4 * i] = m0[i] + a + c + bias;
            o[4 * i + 1] = b + 2.0f * d + bias;
            o[4 * i + 2] = a + 4.0f * c + bias;
            o[4 * i + 3] = b + 8.0f * d + m5[i] + bias;
        }
    }
}

/* One tile row of one output channel: M_e of the n tiles at src[e * estride + t]. Writes rows
 * 0..nrow-1 and columns 0..ncol-1 of its 4 x 4n outputs to dst (row stride ld), with bias and
 * activation. wv: 24 n floats (wv[q][l][t] = (A^T M)[q][l] of tile t), ob: 4 n floats. */
MS_NN_INLINE void output_row(const float *src, size_t estride, int32_t n, float *wv, float *ob,
                             float *dst, size_t ld, int32_t nrow, int32_t ncol, float bias,
                             ms_act act, float alpha) {
    const size_t nn = (size_t)n, l6 = 6 * nn;
    for (size_t l = 0; l < 6; l++) { /* vertical */
        const float *m = src + l * estride;
        at6(m, m + 6 * estride, m + 12 * estride, m + 18 * estride, m + 24 * estride,
            m + 30 * estride, wv + l * nn, wv + l6 + l * nn, wv + 2 * l6 + l * nn,
            wv + 3 * l6 + l * nn, nn);
    }
    const bool whole = ncol == 4 * n, relu = act == MS_ACT_RELU;
    for (int32_t q = 0; q < nrow; q++) { /* horizontal, into the output row when it fits */
        const float *w = wv + (size_t)q * l6;
        float *row = dst + (size_t)q * ld, *o = whole ? row : ob;
        at6_row(w, w + nn, w + 2 * nn, w + 3 * nn, w + 4 * nn, w + 5 * nn, o, nn, bias, relu);
        if (!whole) memcpy(row, ob, (size_t)ncol * sizeof(float));
        if (!relu && act != MS_ACT_NONE) ms_nn_bias_act(row, (size_t)ncol, 0.0f, act, alpha);
    }
}

/* The output transform of one block for output channels [oc0, oc1): M_e in slot e as
 * [out_c][nb]. */
MS_NN_INLINE void output_block_body(const ms_conv2d *p, const float *bias, float *oimg, size_t b0,
                                    size_t nb, int32_t oc0, int32_t oc1, const wino_plan *pl,
                                    float *ws) {
    const size_t ow = (size_t)pl->out_w, plane = (size_t)pl->out_h * ow;
    const size_t tx_n = (size_t)pl->tiles_x;
    float *wv = ws + SLOTS * pl->slot, *ob = wv + 24 * (size_t)pl->seg;
    for (int32_t oc = oc0; oc < oc1; oc++)
        for (size_t i = b0; i < b0 + nb;) {
            const size_t ty = i / tx_n, tx = i % tx_n;
            const size_t n = tx_n - tx < b0 + nb - i ? tx_n - tx : b0 + nb - i;
            const size_t oy = 4 * ty, ox = 4 * tx;
            const int32_t nrow = (int32_t)((size_t)pl->out_h - oy < 4 ? (size_t)pl->out_h - oy : 4);
            const int32_t ncol = (int32_t)(ow - ox < 4 * n ? ow - ox : 4 * n);
            /* Ask for the next channel's output lines now: the stores are the costliest part
             * of this loop (the image is in L3 or memory, and a store first reads its line).
             * Measured: 5-7% off the whole convolution at 32->32 and 128->128. */
            if (oc + 1 < oc1)
                for (int32_t q = 0; q < nrow; q++) {
                    const float *r = oimg + (size_t)(oc + 1) * plane + (oy + (size_t)q) * ow + ox;
                    for (int32_t x = 0; x < ncol; x += 16) MS_NN_PREFETCH_W(r + x);
                }
            output_row(ws + (size_t)oc * nb + (i - b0), pl->slot, (int32_t)n, wv, ob,
                       oimg + (size_t)oc * plane + oy * ow + ox, ow, nrow, ncol,
                       bias ? bias[oc] : 0.0f, p->act, p->act_alpha);
            i += n;
        }
}

static void input_block(const ms_conv2d *p, const float *img, int32_t in_h, int32_t in_w, size_t b0,
                        size_t nb, const wino_plan *pl, float *ws) {
    input_block_body(p, img, in_h, in_w, b0, nb, pl, ws);
}

static void output_block(const ms_conv2d *p, const float *bias, float *oimg, size_t b0, size_t nb,
                         int32_t oc0, int32_t oc1, const wino_plan *pl, float *ws) {
    output_block_body(p, bias, oimg, b0, nb, oc0, oc1, pl, ws);
}

#ifdef MS_NN_X86_CLONES
MS_NN_TARGET_AVX2 static void input_block_avx2(const ms_conv2d *p, const float *img, int32_t in_h,
                                               int32_t in_w, size_t b0, size_t nb,
                                               const wino_plan *pl, float *ws) {
    input_block_body(p, img, in_h, in_w, b0, nb, pl, ws);
}

MS_NN_TARGET_AVX2 static void output_block_avx2(const ms_conv2d *p, const float *bias, float *oimg,
                                                size_t b0, size_t nb, int32_t oc0, int32_t oc1,
                                                const wino_plan *pl, float *ws) {
    output_block_body(p, bias, oimg, b0, nb, oc0, oc1, pl, ws);
}
#endif

/* One task per block of tiles of one image and share of the output channels: fixed by the
 * shapes, so any number of threads computes the same bits; each task uses its worker's
 * workspace slot. Shares exist for images of one block (ResNet's 128@28): without them such a
 * layer ran on one thread only. Each share repeats the block's input transform (cheap: O(in_c)
 * per tile against the products' O(in_c * out_c)). */
enum { SHARE_MIN_OUT = 64 }; /* output channels per share, at least */

typedef struct wino_job {
    const ms_conv2d *p;
    wino_plan pl;
    const ms_tensor *in;
    const float *u, *bias;
    ms_tensor *out;
    float *workspace;
    size_t ws_stride, blocks;
    int32_t shares, share_rows;
    void (*in_fn)(const ms_conv2d *, const float *, int32_t, int32_t, size_t, size_t,
                  const wino_plan *, float *);
    void (*out_fn)(const ms_conv2d *, const float *, float *, size_t, size_t, int32_t, int32_t,
                   const wino_plan *, float *);
} wino_job;

static void wino_task(void *ctx, size_t task, int32_t worker) {
    const wino_job *j = ctx;
    const ms_conv2d *p = j->p;
    const wino_plan *pl = &j->pl;
    float *ws = j->workspace + (size_t)worker * j->ws_stride;
    const size_t shares = (size_t)j->shares;
    const size_t n = task / shares / j->blocks;
    const size_t b0 = task / shares % j->blocks * (size_t)pl->block;
    const int32_t oc0 = (int32_t)(task % shares) * j->share_rows;
    const int32_t oc1 = p->out_c - oc0 > j->share_rows ? oc0 + j->share_rows : p->out_c;
    const size_t in_img = (size_t)p->in_c * (size_t)j->in->h * (size_t)j->in->w;
    const size_t out_img = (size_t)p->out_c * (size_t)pl->out_h * (size_t)pl->out_w;
    const size_t ue = (size_t)p->out_c * (size_t)p->in_c;
    const blasint k = (blasint)p->in_c;
    const size_t nb = pl->tiles - b0 < (size_t)pl->block ? pl->tiles - b0 : (size_t)pl->block;
    j->in_fn(p, j->in->data + n * in_img, j->in->h, j->in->w, b0, nb, pl, ws);
    /* M_e (slot e) = U_e [out_c x in_c] * V_e (slot e + 1) [in_c x nb], rows oc0 .. oc1 - 1 */
    for (size_t e = 0; e < 36; e++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)(oc1 - oc0), (blasint)nb, k,
                    1.0f, j->u + e * ue + (size_t)oc0 * (size_t)p->in_c, k, ws + (e + 1) * pl->slot,
                    (blasint)nb, 0.0f, ws + e * pl->slot + (size_t)oc0 * nb, (blasint)nb);
    j->out_fn(p, j->bias, j->out->data + n * out_img, b0, nb, oc0, oc1, pl, ws);
}

static void wino_forward(const ms_conv2d *p, const ms_tensor *in, const float *u, const float *bias,
                         ms_tensor *out, float *workspace, size_t ws_stride, ms_pool *pool,
                         ms_nn_isa isa) {
    wino_job j = {.p = p,
                  .in = in,
                  .u = u,
                  .bias = bias,
                  .out = out,
                  .workspace = workspace,
                  .ws_stride = ws_stride,
                  .in_fn = input_block,
                  .out_fn = output_block};
    if (!plan_make(p, in->h, in->w, &j.pl)) {
        assert(0 && "ms_conv2d_winograd_forward: parameters ms_conv2d_winograd_workspace refuses");
        return;
    }
    assert(in->c == p->in_c && out->n == in->n && out->c == p->out_c && out->h == j.pl.out_h &&
           out->w == j.pl.out_w && workspace != NULL);
    assert(ms_pool_threads(pool) == 1 || ws_stride >= j.pl.workspace);
#ifdef MS_NN_X86_CLONES
    if (isa >= MS_NN_ISA_AVX2 && ms_nn_cpu_avx2_fma()) {
        j.in_fn = input_block_avx2;
        j.out_fn = output_block_avx2;
    }
#endif
    j.blocks = (j.pl.tiles + (size_t)j.pl.block - 1) / (size_t)j.pl.block;
    /* Shares depend on the shapes only (one block per image), never on the thread count. */
    j.shares = j.blocks == 1 && p->out_c >= 2 * SHARE_MIN_OUT ? 2 : 1;
    j.share_rows = (p->out_c + j.shares - 1) / j.shares;
    ms_pool_run(pool, (size_t)in->n * j.blocks * (size_t)j.shares, wino_task, &j);
}

void ms_conv2d_winograd_forward_pool(const ms_conv2d *p, const ms_tensor *in, const float *u,
                                     const float *bias, ms_tensor *out, float *workspace,
                                     size_t ws_stride, ms_pool *pool) {
    wino_forward(p, in, u, bias, out, workspace, ws_stride, pool, MS_NN_ISA_AVX512);
}

void ms_conv2d_winograd_forward(const ms_conv2d *p, const ms_tensor *in, const float *u,
                                const float *bias, ms_tensor *out, float *workspace) {
    wino_forward(p, in, u, bias, out, workspace, 0, NULL, MS_NN_ISA_AVX512);
}

void ms_nn_conv2d_winograd_forward_isa(const ms_conv2d *p, const ms_tensor *in, const float *u,
                                       const float *bias, ms_tensor *out, float *workspace,
                                       ms_nn_isa isa) {
    wino_forward(p, in, u, bias, out, workspace, 0, NULL, isa);
}

/* Measured with bench_winograd and a grid of layers (min of 3 x 15-30 runs, 1 thread, Xeon,
 * OpenBLAS 0.3.21 SkylakeX kernels; im2col time / Winograd time, bias + ReLU; C@N is C
 * channels in and out at an N x N output; im2col as before its tasks of output-channel shares,
 * which since cost it 1.2-1.6x at 256-512 channels on 7-14 px in one thread):
 *   channels in = out   1 tile  4 tiles  9 tiles  16 tiles   many
 *   16-64               1.0-1.5 1.2-1.6                       2.5-3.1 (32@256, 64@128, 64@56)
 *   128                 1.28    1.58     1.19                 2.3-2.8 (128@28, 128@64)
 *   256                 0.85    1.42     1.10     1.6-1.7
 *   384                         1.32     1.03     1.36
 *   512                 0.81    0.55     0.56-0.85 1.30-2.21  2.5 (@28), 3.7 (@56)
 * With few tiles a layer is bound by streaming the transformed weights (36 * in * out floats,
 * 4x im2col's 9), which only pays with enough tiles to share them. Fewer input and output
 * channels favour Winograd (2-3x at 4-16 channels, 128x128), down to 1.1-1.3x at 1-2 input
 * channels; with one input channel ms_conv2d_forward's direct kernel is 2-3x faster still.
 * With two OpenBLAS threads only the products run in parallel, so the margins shrink (e.g.
 * 256@14: 1.09x); the 1.0-1.2x cases above may lose there. */
bool ms_conv2d_winograd_worthwhile(const ms_conv2d *p, int32_t in_h, int32_t in_w) {
    wino_plan pl;
    if (!plan_make(p, in_h, in_w, &pl) || p->in_c < 2) return false;
    /* The packed direct kernel, where the CPU has it, beats Winograd on few tiles: inside a
     * network the transformed weights (36 * in_c * out_c floats) come from L3 at every run.
     * ResNet-18's 256@14 (16 tiles): 2.0 ms Winograd, 1.6 ms packed. */
    if (pl.tiles <= 16 && ms_conv2d_packed_worthwhile(p, in_h, in_w)) return false;
    const int64_t cc = (int64_t)p->in_c * p->out_c;
    if (pl.tiles >= 16 || cc <= 128 * 128) return true;
    return cc <= 384 * 384 && pl.tiles >= 4;
}
