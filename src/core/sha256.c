/* SHA-256 (FIPS 180-4), for model and input identities in reports. The block function is
 * portable C, or on x86 CPUs with the SHA extensions (Intel Goldmont / Ice Lake and later, AMD
 * Zen) the SHA-NI instructions, chosen once at run time: hashing 8 MB inputs for every scan
 * made the portable code a visible share of a scan's time. */
#include <assert.h>
#include <string.h>

#include "medscreen/core.h"
#include "sha256_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#define MS_SHA256_X86 1
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#else
#define MS_SHA256_X86 0
#endif

static _Alignas(16) const uint32_t k_round[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }

static void blocks_portable(uint32_t h[8], const uint8_t *p, size_t nblocks) {
    for (; nblocks > 0; nblocks--, p += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
                   (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                          k_round[i] + w[i];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            hh = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += hh;
    }
}

#if MS_SHA256_X86
/* SHA-NI. sha256rnds2 does two rounds on the state split as {A,B,E,F} and {C,D,G,H} (A and C in
 * the top lanes), taking W[t] + K[t] for both rounds from the low 64 bits of its third operand;
 * the two rounds turn the old ABEF into the new CDGH, so alternating the two registers as
 * destination needs no moves. sha256msg1 / sha256msg2 compute the sigma0 and sigma1 halves of
 * the message schedule four words at a time. */
#define MS_SHA_TARGET __attribute__((target("sha,ssse3,sse4.1")))

/* Four rounds t..t+3 with wk = W[t..t+3] + K[t..t+3]. */
MS_SHA_TARGET static inline void shani_rounds4(__m128i *abef, __m128i *cdgh, __m128i wk) {
    *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
    *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32(wk, 0x0e));
}

/* W[t..t+3] from w0 = W[t-16..t-13], w1 = W[t-12..t-9], w2 = W[t-8..t-5], w3 = W[t-4..t-1]:
 * msg1 gives W[t-16+i] + sigma0(W[t-15+i]), the alignr adds W[t-7+i], msg2 adds sigma1(W[t-2+i])
 * (chaining through the two words it produces itself). */
MS_SHA_TARGET static inline __m128i shani_schedule(__m128i w0, __m128i w1, __m128i w2, __m128i w3) {
    __m128i x = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
    return _mm_sha256msg2_epu32(x, w3);
}

MS_SHA_TARGET static void blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks) {
    /* Big-endian words: reverse the bytes within each 32-bit lane. */
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    const __m128i *k = (const __m128i *)k_round;

    /* h[0..7] = A..H -> abef = {A,B,E,F}, cdgh = {C,D,G,H}, the first named in lane 3 (the
     * comments list lanes 0..3). */
    __m128i abcd = _mm_loadu_si128((const __m128i *)h);       /* lanes 0..3: A B C D */
    __m128i efgh = _mm_loadu_si128((const __m128i *)(h + 4)); /* lanes 0..3: E F G H */
    __m128i badc = _mm_shuffle_epi32(abcd, 0xb1);             /* B A D C */
    __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1b);             /* H G F E */
    __m128i abef = _mm_alignr_epi8(badc, hgfe, 8);            /* F E B A */
    __m128i cdgh = _mm_blend_epi16(hgfe, badc, 0xf0);         /* H G D C */

    for (; nblocks > 0; nblocks--, p += 64) {
        const __m128i abef0 = abef, cdgh0 = cdgh;
        __m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), bswap);
        __m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
        __m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
        __m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
        shani_rounds4(&abef, &cdgh, _mm_add_epi32(w0, _mm_load_si128(k + 0)));
        shani_rounds4(&abef, &cdgh, _mm_add_epi32(w1, _mm_load_si128(k + 1)));
        shani_rounds4(&abef, &cdgh, _mm_add_epi32(w2, _mm_load_si128(k + 2)));
        shani_rounds4(&abef, &cdgh, _mm_add_epi32(w3, _mm_load_si128(k + 3)));
        for (int g = 4; g < 16; g += 4) {
            w0 = shani_schedule(w0, w1, w2, w3);
            shani_rounds4(&abef, &cdgh, _mm_add_epi32(w0, _mm_load_si128(k + g)));
            w1 = shani_schedule(w1, w2, w3, w0);
            shani_rounds4(&abef, &cdgh, _mm_add_epi32(w1, _mm_load_si128(k + g + 1)));
            w2 = shani_schedule(w2, w3, w0, w1);
            shani_rounds4(&abef, &cdgh, _mm_add_epi32(w2, _mm_load_si128(k + g + 2)));
            w3 = shani_schedule(w3, w0, w1, w2);
            shani_rounds4(&abef, &cdgh, _mm_add_epi32(w3, _mm_load_si128(k + g + 3)));
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }

    __m128i lanes_abef = _mm_shuffle_epi32(abef, 0x1b);                               /* A B E F */
    __m128i lanes_ghcd = _mm_shuffle_epi32(cdgh, 0xb1);                               /* G H C D */
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(lanes_abef, lanes_ghcd, 0xf0));    /* A B C D */
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(lanes_ghcd, lanes_abef, 8)); /* E F G H */
}

/* CPUID rather than __builtin_cpu_supports("sha"): clang 14 (Debian 12) rejects that feature
 * name. Leaf 7 EBX bit 29 is SHA; leaf 1 ECX bits 9 and 19 are SSSE3 and SSE4.1. CPUID can trap
 * to a hypervisor (microseconds), hence once per process. */
static bool shani_ok;
static pthread_once_t shani_once = PTHREAD_ONCE_INIT;

static void shani_detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool sse = (c >> 9 & 1u) && (c >> 19 & 1u);
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    shani_ok = sse && (b >> 29 & 1u);
}

bool ms_sha256_shani_available(void) {
    pthread_once(&shani_once, shani_detect);
    return shani_ok;
}
#else
bool ms_sha256_shani_available(void) { return false; }
#endif

static void blocks(uint32_t h[8], const uint8_t *p, size_t nblocks, ms_sha256_impl impl) {
    if (nblocks == 0) return;
#if MS_SHA256_X86
    if (impl == MS_SHA256_SHANI || (impl == MS_SHA256_AUTO && ms_sha256_shani_available())) {
        assert(ms_sha256_shani_available());
        blocks_shani(h, p, nblocks);
        return;
    }
#else
    assert(impl != MS_SHA256_SHANI);
    (void)impl;
#endif
    blocks_portable(h, p, nblocks);
}

void ms_sha256_init(ms_sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->len = 0;
    s->fill = 0;
}

void ms_sha256_update_impl(ms_sha256 *s, const void *data, size_t n, ms_sha256_impl impl) {
    const uint8_t *p = data;
    s->len += n;
    if (s->fill) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->buf + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill < 64) return;
        blocks(s->h, s->buf, 1, impl);
        s->fill = 0;
    }
    /* All whole blocks in one call, so SHA-NI keeps the state in registers across them. */
    blocks(s->h, p, n / 64, impl);
    p += n / 64 * 64;
    n %= 64;
    if (n) memcpy(s->buf, p, n);
    s->fill = n;
}

void ms_sha256_update(ms_sha256 *s, const void *data, size_t n) {
    ms_sha256_update_impl(s, data, n, MS_SHA256_AUTO);
}

void ms_sha256_final_impl(ms_sha256 *s, uint8_t out[32], ms_sha256_impl impl) {
    uint64_t bits = s->len * 8u;
    /* 0x80, zeros up to 56 mod 64, then the bit length big-endian: one or two blocks. */
    s->buf[s->fill++] = 0x80;
    if (s->fill > 56) {
        memset(s->buf + s->fill, 0, 64 - s->fill);
        blocks(s->h, s->buf, 1, impl);
        s->fill = 0;
    }
    memset(s->buf + s->fill, 0, 56 - s->fill);
    for (int i = 0; i < 8; i++) s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    blocks(s->h, s->buf, 1, impl);
    s->fill = 0;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

void ms_sha256_final(ms_sha256 *s, uint8_t out[32]) {
    ms_sha256_final_impl(s, out, MS_SHA256_AUTO);
}

void ms_sha256_hex(const void *data, size_t n, char out[65]) {
    static const char hex[] = "0123456789abcdef";
    ms_sha256 s;
    uint8_t d[32];
    ms_sha256_init(&s);
    ms_sha256_update(&s, data, n);
    ms_sha256_final(&s, d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}
