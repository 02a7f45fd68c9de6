#include "j2k.h"

#include <openjpeg.h>
#include <string.h>

typedef struct mem_stream {
    const uint8_t *data;
    size_t size, pos;
} mem_stream;

static OPJ_SIZE_T mem_read(void *buf, OPJ_SIZE_T n, void *user) {
    mem_stream *s = user;
    size_t left = s->size - s->pos;
    if (left == 0) return (OPJ_SIZE_T)-1;
    if (n > left) n = left;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return n;
}

static OPJ_OFF_T mem_skip(OPJ_OFF_T n, void *user) {
    mem_stream *s = user;
    if (n < 0) {
        if ((size_t)(-n) > s->pos) return -1;
        s->pos -= (size_t)(-n);
    } else {
        size_t left = s->size - s->pos;
        if ((uint64_t)n > left) n = (OPJ_OFF_T)left;
        s->pos += (size_t)n;
    }
    return n;
}

static OPJ_BOOL mem_seek(OPJ_OFF_T n, void *user) {
    mem_stream *s = user;
    if (n < 0 || (uint64_t)n > s->size) return OPJ_FALSE;
    s->pos = (size_t)n;
    return OPJ_TRUE;
}

typedef struct msg_sink {
    char text[200];
} msg_sink;

static void on_error(const char *msg, void *user) {
    msg_sink *m = user;
    if (m->text[0] == '\0') { /* keep the first, most specific message */
        ms_str_copy(m->text, sizeof m->text, msg);
        size_t n = strlen(m->text);
        while (n > 0 && (m->text[n - 1] == '\n' || m->text[n - 1] == ' ')) m->text[--n] = '\0';
    }
}

static void on_warning(const char *msg, void *user) {
    (void)user;
    ms_log(MS_LOG_DEBUG, "OpenJPEG: %s", msg);
}

static void on_info(const char *msg, void *user) {
    (void)msg;
    (void)user;
}

ms_status ms_j2k_decode(const uint8_t *data, size_t size, const char *name, uint32_t expected_width,
                        uint32_t expected_height, uint32_t expected_components,
                        unsigned bytes_per_sample, void *out, size_t out_size, ms_j2k_info *info,
                        ms_err *err) {
    static const uint8_t jp2_sig[12] = {0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A};
    bool jp2 = size >= 12 && memcmp(data, jp2_sig, 12) == 0;
    if (!jp2 &&
        !(size >= 4 && data[0] == 0xFF && data[1] == 0x4F && data[2] == 0xFF && data[3] == 0x51))
        return ms_fail(
            err, MS_EFORMAT,
            "%s: JPEG 2000 fragment does not start with a codestream (SOC/SIZ) or JP2 signature",
            name);

    mem_stream ms = {data, size, 0};
    msg_sink sink = {{0}};
    opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    opj_stream_t *stream = opj_stream_create(1u << 16, OPJ_TRUE);
    opj_image_t *image = NULL;
    ms_status st = MS_OK;
    if (codec == NULL || stream == NULL) {
        st = ms_fail(err, MS_ENOMEM, "%s: cannot create the JPEG 2000 decoder", name);
        goto done;
    }
    opj_set_error_handler(codec, on_error, &sink);
    opj_set_warning_handler(codec, on_warning, NULL);
    opj_set_info_handler(codec, on_info, NULL);
    opj_stream_set_user_data(stream, &ms, NULL);
    opj_stream_set_user_data_length(stream, (OPJ_UINT64)size);
    opj_stream_set_read_function(stream, mem_read);
    opj_stream_set_skip_function(stream, mem_skip);
    opj_stream_set_seek_function(stream, mem_seek);

    opj_dparameters_t params;
    opj_set_default_decoder_parameters(&params);
    if (!opj_setup_decoder(codec, &params) || !opj_read_header(stream, codec, &image) ||
        image == NULL) {
        st = ms_fail(err, MS_EFORMAT, "%s: JPEG 2000 header: %s", name,
                     sink.text[0] ? sink.text : "unreadable");
        goto done;
    }
    /* Check the header against the DICOM attributes before decoding anything. */
    uint32_t w = image->x1 - image->x0, h = image->y1 - image->y0, nc = image->numcomps;
    if (w != expected_width || h != expected_height || nc != expected_components) {
        st = ms_fail(err, MS_EFORMAT,
                     "%s: JPEG 2000 codestream is %ux%u with %u components, the DICOM header says "
                     "%ux%u with %u",
                     name, w, h, nc, expected_width, expected_height, expected_components);
        goto done;
    }
    for (uint32_t c = 0; c < nc; c++) {
        const opj_image_comp_t *cp = &image->comps[c];
        if (cp->dx != 1 || cp->dy != 1) {
            st = ms_fail(err, MS_EUNSUPPORTED, "%s: JPEG 2000 component %u is subsampled", name, c);
            goto done;
        }
        if (cp->prec == 0 || cp->prec > 8 * bytes_per_sample) {
            st = ms_fail(err, MS_EFORMAT,
                         "%s: JPEG 2000 component %u has %u bits, more than Bits Allocated %u",
                         name, c, cp->prec, 8 * bytes_per_sample);
            goto done;
        }
    }
    size_t plane = (size_t)w * h, need;
    if (!ms_mul_size(plane, nc, &need) || !ms_mul_size(need, bytes_per_sample, &need) ||
        need > out_size) {
        st = ms_fail(err, MS_EINTERNAL, "%s: JPEG 2000 output buffer too small", name);
        goto done;
    }
    if (!opj_decode(codec, stream, image) || !opj_end_decompress(codec, stream)) {
        st = ms_fail(err, MS_EFORMAT, "%s: JPEG 2000 decode: %s", name,
                     sink.text[0] ? sink.text : "corrupt codestream");
        goto done;
    }
    for (uint32_t c = 0; c < nc; c++) {
        const OPJ_INT32 *src = image->comps[c].data;
        if (src == NULL) {
            st = ms_fail(err, MS_EFORMAT, "%s: JPEG 2000 component %u has no data", name, c);
            goto done;
        }
        if (bytes_per_sample == 1) {
            uint8_t *dst = (uint8_t *)out + c * plane;
            for (size_t i = 0; i < plane; i++) dst[i] = (uint8_t)((uint32_t)src[i] & 0xFFu);
        } else {
            uint16_t *dst = (uint16_t *)out + c * plane;
            for (size_t i = 0; i < plane; i++) dst[i] = (uint16_t)((uint32_t)src[i] & 0xFFFFu);
        }
    }
    if (info != NULL) {
        info->width = w;
        info->height = h;
        info->components = nc;
        info->precision = image->comps[0].prec;
        info->is_signed = image->comps[0].sgnd != 0;
        info->jp2 = jp2;
    }
done:
    if (image) opj_image_destroy(image);
    if (stream) opj_stream_destroy(stream);
    if (codec) opj_destroy_codec(codec);
    return st;
}
