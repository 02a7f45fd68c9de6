#include "rle.h"

#include <string.h>

/* PackBits (PS3.5 G.3.1): a header byte n in 0..127 copies n+1 literal bytes, -1..-127
 * repeats the next byte 1-n times, -128 is a no-op. The segment's bytes land at
 * out[0], out[stride], out[2*stride], ... Returns the number of bytes produced. */
static size_t unpack_segment(const uint8_t *seg, size_t seg_len, uint8_t *out, size_t count,
                             size_t stride) {
    ms_rd rd = ms_rd_init(seg, seg_len);
    size_t n = 0;
    const uint8_t *p;
    while (n < count && ms_rd_bytes(&rd, &p, 1)) {
        int8_t h = (int8_t)p[0];
        if (h >= 0) {
            size_t run = (size_t)h + 1u;
            if (run > count - n) run = count - n;
            const uint8_t *lit;
            if (!ms_rd_bytes(&rd, &lit, run)) break;
            for (size_t i = 0; i < run; i++, n++) out[n * stride] = lit[i];
        } else if (h != -128) {
            size_t run = (size_t)(1 - h);
            if (run > count - n) run = count - n;
            const uint8_t *v;
            if (!ms_rd_bytes(&rd, &v, 1)) break;
            for (size_t i = 0; i < run; i++, n++) out[n * stride] = v[0];
        }
    }
    return n;
}

static bool host_little_endian(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

ms_status ms_rle_decode(const uint8_t *data, size_t size, const char *name, size_t pixels,
                        unsigned samples_per_pixel, unsigned bytes_per_sample, void *out,
                        size_t out_size, ms_err *err) {
    size_t need, nseg_expected = (size_t)samples_per_pixel * bytes_per_sample;
    if (!ms_mul_size(pixels, nseg_expected, &need) || need > out_size)
        return ms_fail(err, MS_EINTERNAL, "%s: RLE output buffer too small", name);
    ms_rd rd = ms_rd_init(data, size);
    uint32_t nseg, offsets[16];
    if (!ms_rd_u32le(&rd, &nseg))
        return ms_fail(err, MS_EFORMAT, "%s: RLE fragment of %zu bytes has no header", name, size);
    for (int i = 0; i < 15; i++)
        if (!ms_rd_u32le(&rd, &offsets[i]))
            return ms_fail(err, MS_EFORMAT, "%s: RLE header is truncated (%zu bytes)", name, size);
    if (nseg != nseg_expected)
        return ms_fail(err, MS_EFORMAT, "%s: RLE frame has %u segments, the header implies %zu",
                       name, nseg, nseg_expected);
    offsets[nseg] = (uint32_t)(size > UINT32_MAX ? UINT32_MAX : size);
    uint8_t *dst = out;
    bool le = host_little_endian();
    for (uint32_t s = 0; s < nseg; s++) {
        /* Segments are ordered sample by sample, most significant byte first (G.2). */
        uint32_t start = offsets[s], end = offsets[s + 1];
        if (start < 64 || start > size || (s + 1 < nseg && end < start) || end > size)
            return ms_fail(err, MS_EFORMAT, "%s: RLE segment %u has offsets %u..%u in %zu bytes",
                           name, s + 1, start, end, size);
        if (end < start) end = (uint32_t)size;
        unsigned sample = s / bytes_per_sample, byte_of = s % bytes_per_sample;
        unsigned byte_index = le ? bytes_per_sample - 1u - byte_of : byte_of;
        uint8_t *base = dst + (size_t)sample * pixels * bytes_per_sample + byte_index;
        size_t got = unpack_segment(data + start, end - start, base, pixels, bytes_per_sample);
        if (got < pixels)
            return ms_fail(err, MS_EFORMAT, "%s: RLE segment %u decodes to %zu bytes, expected %zu",
                           name, s + 1, got, pixels);
    }
    return MS_OK;
}
