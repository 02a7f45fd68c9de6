/* Model metadata (include/medscreen/meta.h, models/FORMAT.md "Metadata keys (meta format 1)").
 * The meta text is untrusted: a text with a meta_format line is checked key by key, value by
 * value (parsed whole, range checked) and against the graph; each message names the model,
 * the meta line, the key and the value. Without meta_format the text is legacy free-form and
 * only indexed, exactly as before meta format 1 existed. */
#include "medscreen/meta.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "medscreen/core.h"

/* ---- the keys of meta format 1 ---- */

typedef enum mkey {
    K_META_FORMAT = 0,
    K_NAME,
    K_VERSION,
    K_DESCRIPTION,
    K_TASK,
    K_INPUT,
    K_INPUT_SIZE,
    K_INPUT_CHANNELS,
    K_COLOUR,
    K_RESIZE,
    K_RESIZE_FILTER,
    K_PAD_VALUE,
    K_NORM_MEAN,
    K_NORM_STD,
    K_WINDOW,
    K_OUTPUT_SCORE,
    K_SCORE_CHANNEL,
    K_SCORE_KIND,
    K_TEMPERATURE,
    K_OUTPUT_MAP,
    K_MAP_CHANNEL,
    K_MAP_KIND,
    K_MAP_THRESHOLD,
    K_OPERATING_POINTS,
    K_DEFAULT_OPERATING_POINT,
    K_MODALITIES,
    K_BODY_PARTS,
    K_VIEWS,
    K_TRAINING_DATA,
    K_TRAINING_CODE,
    K_TRAINED,
    K_SOURCE,
    K_PRODUCER,
    K_ONNX_OPSET,
    K_LICENCE,
    K_CREDITS,
    K_CARD,
    K_COUNT
} mkey;

static const char *const k_names[K_COUNT] = {
    [K_META_FORMAT] = "meta_format",
    [K_NAME] = "name",
    [K_VERSION] = "version",
    [K_DESCRIPTION] = "description",
    [K_TASK] = "task",
    [K_INPUT] = "input",
    [K_INPUT_SIZE] = "input_size",
    [K_INPUT_CHANNELS] = "input_channels",
    [K_COLOUR] = "colour",
    [K_RESIZE] = "resize",
    [K_RESIZE_FILTER] = "resize_filter",
    [K_PAD_VALUE] = "pad_value",
    [K_NORM_MEAN] = "norm_mean",
    [K_NORM_STD] = "norm_std",
    [K_WINDOW] = "window",
    [K_OUTPUT_SCORE] = "output_score",
    [K_SCORE_CHANNEL] = "score_channel",
    [K_SCORE_KIND] = "score_kind",
    [K_TEMPERATURE] = "temperature",
    [K_OUTPUT_MAP] = "output_map",
    [K_MAP_CHANNEL] = "map_channel",
    [K_MAP_KIND] = "map_kind",
    [K_MAP_THRESHOLD] = "map_threshold",
    [K_OPERATING_POINTS] = "operating_points",
    [K_DEFAULT_OPERATING_POINT] = "default_operating_point",
    [K_MODALITIES] = "modalities",
    [K_BODY_PARTS] = "body_parts",
    [K_VIEWS] = "views",
    [K_TRAINING_DATA] = "training_data",
    [K_TRAINING_CODE] = "training_code",
    [K_TRAINED] = "trained",
    [K_SOURCE] = "source",
    [K_PRODUCER] = "producer",
    [K_ONNX_OPSET] = "onnx_opset",
    [K_LICENCE] = "licence",
    [K_CREDITS] = "credits",
    [K_CARD] = "card",
};

/* Keys `scan` needs (ms_model_meta_check_scan), in the order they are reported. */
static const mkey k_scan_keys[] = {
    K_NAME,       K_VERSION,          K_TASK,       K_INPUT_SIZE, K_INPUT_CHANNELS,
    K_RESIZE,     K_NORM_MEAN,        K_NORM_STD,   K_WINDOW,     K_OUTPUT_SCORE,
    K_SCORE_KIND, K_OPERATING_POINTS, K_MODALITIES, K_BODY_PARTS};

enum {
    MAX_TEXT_SHORT = 256, /* name, licence, source, producer */
    MAX_TEXT_LONG = 2048, /* description, training_*, credits, x- values */
    MAX_X_KEY = 64,
    MAX_POINT_NAME = 32,
    MAX_CODE = 16, /* DICOM CS values are at most 16 characters (PS3.5 6.2) */
    MAX_SIZE = 65535,
    MAX_CHANNEL = 65535,
    SHOW = 80 /* bytes of a bad value quoted in a message */
};

typedef struct storage {
    char *raw;  /* the text, split into key\0value\0 per line */
    char *work; /* a second copy, split further by list parsers */
    const char **keys, **vals;
} storage;

typedef struct mctx {
    ms_model_meta *m;
    const ms_net *net;
    const char *name; /* the model, for messages */
    ms_err *err;
    const char *val[K_COUNT]; /* raw values (into storage.raw), NULL when absent */
    char *wval[K_COUNT];      /* the same in storage.work, free to split */
    uint32_t line[K_COUNT];
} mctx;

static ms_status kfail(const mctx *c, mkey k, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* "<model>: meta line N: key=value: <reason>" (the value cut at SHOW bytes). */
static ms_status kfail(const mctx *c, mkey k, const char *fmt, ...) {
    char msg[MS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *v = c->val[k] ? c->val[k] : "";
    size_t vl = strlen(v);
    return ms_fail(c->err, MS_EFORMAT, "%s: meta line %u: %s=%.*s%s: %s", c->name, c->line[k],
                   k_names[k], (int)(vl > SHOW ? SHOW : vl), v, vl > SHOW ? "..." : "", msg);
}

/* ---- value parsers ---- */

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Decimal integer in [lo, hi] spanning exactly [p, e); no sign, no spaces. */
static bool int_span(const char *p, const char *e, int64_t lo, int64_t hi, int64_t *out) {
    if (p == e || e - p > 12) return false;
    int64_t v = 0;
    for (; p < e; p++) {
        if (!is_digit(*p)) return false;
        v = v * 10 + (*p - '0');
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool int_str(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    return int_span(s, s + strlen(s), lo, hi, out);
}

/* A C decimal floating-point literal (no hex, inf or nan) in [lo, hi]. */
static bool float_str(const char *s, double lo, double hi, double *out) {
    if (*s == '\0' || strlen(s) > 64) return false;
    for (const char *p = s; *p; p++)
        if (!(is_digit(*p) || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-'))
            return false;
    double d;
    if (!ms_parse_double(s, &d) || !isfinite(d) || d < lo || d > hi) return false;
    *out = d;
    return true;
}

/* Splits s in place at sep into at most max parts; false on an empty part or too many. */
static bool split(char *s, char sep, uint32_t max, char **parts, uint32_t *n) {
    *n = 0;
    for (;;) {
        char *e = strchr(s, sep);
        if (e) *e = '\0';
        if (*s == '\0' || *n == max) return false;
        parts[(*n)++] = s;
        if (e == NULL) return true;
        s = e + 1;
    }
}

/* Valid UTF-8 (no overlongs, surrogates or code points over U+10FFFF), no C0 control
 * characters or DEL. Returns the offset of the first bad byte, or n. */
static size_t text_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            if (b < 0x20 || b == 0x7f) return i;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (b >= 0xc2 && b <= 0xdf)
            len = 2, cp = b & 0x1fu;
        else if (b >= 0xe0 && b <= 0xef)
            len = 3, cp = b & 0x0fu;
        else if (b >= 0xf0 && b <= 0xf4)
            len = 4, cp = b & 0x07u;
        else
            return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        /* overlongs, surrogates, beyond U+10FFFF, and C1 controls (U+0080..U+009F) */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
            return i;
        i += len;
    }
    return n;
}

static bool graph_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > MS_MSM_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '_' ||
              ch == '.' || ch == ':' || ch == '/' || ch == '-'))
            return false;
    }
    return true;
}

static ms_status text_key(mctx *c, mkey k, size_t max, const char **dst) {
    const char *v = c->val[k];
    if (v == NULL) return MS_OK;
    if (strlen(v) > max) return kfail(c, k, "longer than %zu bytes", max);
    *dst = v;
    return MS_OK;
}

/* Index of v in names (count entries) or -1. */
static int pick(const char *v, const char *const *names, int count) {
    for (int i = 0; i < count; i++)
        if (strcmp(v, names[i]) == 0) return i;
    return -1;
}

/* MAJOR.MINOR[.PATCH][-PRERELEASE][+BUILD]: numbers without leading zeros (semver 2.0 with the
 * patch optional); identifiers of [0-9A-Za-z-] separated by dots. */
static bool version_ok(const char *s) {
    int parts = 0;
    const char *p = s;
    for (;;) {
        const char *b = p;
        while (is_digit(*p)) p++;
        if (p == b || p - b > 9 || (p - b > 1 && *b == '0')) return false;
        parts++;
        if (*p != '.' || parts == 3) break;
        p++;
    }
    if (parts < 2) return false;
    for (int sect = 0; sect < 2; sect++) {
        char lead = sect == 0 ? '-' : '+';
        if (*p != lead) continue;
        p++;
        for (;;) {
            const char *b = p;
            while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= 'A' && *p <= 'Z') || *p == '-')
                p++;
            if (p == b) return false;
            if (*p != '.') break;
            p++;
        }
    }
    return *p == '\0' && strlen(s) <= 64;
}

/* YYYY-MM-DD, a real calendar date from 1900 on. */
static bool date_ok(const char *s) {
    int64_t y, mo, d;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') return false;
    if (!int_span(s, s + 4, 1900, 9999, &y) || !int_span(s + 5, s + 7, 1, 12, &mo) ||
        !int_span(s + 8, s + 10, 1, 31, &d))
        return false;
    static const int days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (d > days[mo - 1]) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(mo == 2 && d == 29 && !leap);
}

static bool card_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > MS_MSM_MAX_NAME || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '_' ||
              ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

/* "any", or unique DICOM code strings [A-Z0-9_] of 1..16 characters, comma-separated. */
static ms_status codes_key(mctx *c, mkey k, ms_meta_codes *out) {
    if (c->val[k] == NULL) return MS_OK;
    if (strcmp(c->val[k], "any") == 0) {
        out->any = true;
        return MS_OK;
    }
    char *parts[MS_META_MAX_CODES];
    uint32_t n;
    if (!split(c->wval[k], ',', MS_META_MAX_CODES, parts, &n))
        return kfail(c, k, "expected 'any' or 1 to %u comma-separated codes, none empty",
                     MS_META_MAX_CODES);
    for (uint32_t i = 0; i < n; i++) {
        size_t len = strlen(parts[i]);
        bool ok = len <= MAX_CODE;
        for (size_t j = 0; ok && j < len; j++) {
            char ch = parts[i][j];
            ok = (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '_';
        }
        if (!ok)
            return kfail(c, k,
                         "'%s' is not a DICOM code string (A-Z, 0-9 and _, at most %d characters; "
                         "'any' alone for every value)",
                         parts[i], MAX_CODE);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(parts[i], parts[j]) == 0)
                return kfail(c, k, "'%s' is listed twice", parts[i]);
        out->items[i] = parts[i];
    }
    out->count = n;
    return MS_OK;
}

/* 1 to 3 comma-separated floats in [lo, hi]. */
static ms_status floats_key(mctx *c, mkey k, double lo, double hi, float *out, uint32_t *count) {
    char *parts[3];
    uint32_t n;
    if (!split(c->wval[k], ',', 3, parts, &n))
        return kfail(c, k, "expected 1 value, or one per channel (up to 3), comma-separated");
    for (uint32_t i = 0; i < n; i++) {
        double d;
        if (!float_str(parts[i], lo, hi, &d) || (lo == 0.0 && d <= 0.0))
            return kfail(c, k, "'%s' is not a decimal number in %s%g, %g]", parts[i],
                         lo == 0.0 ? "(" : "[", lo, hi);
        out[i] = (float)d;
    }
    *count = n;
    return MS_OK;
}

/* A graph value named by key k: a graph input (inputs) or output; returns its index. */
static ms_status graph_ref(mctx *c, mkey k, bool inputs, uint32_t *index) {
    const char *v = c->val[k];
    if (!graph_name_ok(v)) return kfail(c, k, "not a graph value name");
    *index = UINT32_MAX;
    if (c->net == NULL) return MS_OK;
    uint32_t n = inputs ? ms_net_input_count(c->net) : ms_net_output_count(c->net);
    for (uint32_t i = 0; i < n; i++) {
        const char *g = inputs ? ms_net_input_name(c->net, i) : ms_net_output_name(c->net, i);
        if (strcmp(g, v) == 0) {
            *index = i;
            return MS_OK;
        }
    }
    char list[256] = "";
    size_t ll = 0;
    for (uint32_t i = 0; i < n && ll < sizeof list; i++) {
        int r = snprintf(list + ll, sizeof list - ll, "%s%s", i ? ", " : "",
                         inputs ? ms_net_input_name(c->net, i) : ms_net_output_name(c->net, i));
        if (r > 0) ll += (size_t)r;
    }
    return kfail(c, k, "the graph has no %s named '%s' (its %ss: %s)", inputs ? "input" : "output",
                 v, inputs ? "input" : "output", list);
}

static ms_status kind_key(mctx *c, mkey k, ms_meta_kind *out) {
    if (c->val[k] == NULL) return MS_OK;
    static const char *const names[] = {"logit", "probability"};
    int i = pick(c->val[k], names, 2);
    if (i < 0) return kfail(c, k, "expected logit or probability");
    *out = (ms_meta_kind)(i + 1);
    return MS_OK;
}

/* channel key k for an output of C channels (unknown without a graph) */
static ms_status channel_key(mctx *c, mkey k, uint32_t index, int32_t *out) {
    if (c->val[k] == NULL) return MS_OK;
    int64_t v;
    if (!int_str(c->val[k], 0, MAX_CHANNEL, &v))
        return kfail(c, k, "expected a channel index 0..%d", MAX_CHANNEL);
    int32_t ch;
    if (index != UINT32_MAX && ms_net_output_shape(c->net, index, &ch, NULL, NULL) && v >= ch)
        return kfail(c, k, "the output has %d channel%s", ch, ch == 1 ? "" : "s");
    *out = (int32_t)v;
    return MS_OK;
}

static ms_status need(mctx *c, mkey k, mkey other, const char *why) {
    if (c->val[k] != NULL && c->val[other] == NULL)
        return kfail(c, k, "needs %s%s", k_names[other], why);
    return MS_OK;
}

/* ---- strict parsing ---- */

static ms_status parse_values(mctx *c) {
    ms_model_meta *m = c->m;
    ms_status st;
    int64_t iv;
    double dv;

    if ((st = text_key(c, K_NAME, MAX_TEXT_SHORT, &m->name)) != MS_OK) return st;
    if (c->val[K_VERSION]) {
        if (!version_ok(c->val[K_VERSION]))
            return kfail(c, K_VERSION,
                         "expected MAJOR.MINOR[.PATCH][-PRERELEASE][+BUILD] (e.g. 1.2.0)");
        m->version = c->val[K_VERSION];
    }
    if ((st = text_key(c, K_DESCRIPTION, MAX_TEXT_LONG, &m->description)) != MS_OK) return st;
    if (c->val[K_TASK]) {
        if (strcmp(c->val[K_TASK], "screen") != 0)
            return kfail(c, K_TASK, "meta format 1 knows one task: screen");
        m->task = c->val[K_TASK];
    }

    /* input: the named graph input, or the only one */
    uint32_t gin = c->net ? ms_net_input_count(c->net) : 0;
    m->graph_inputs = gin;
    if (c->val[K_INPUT]) {
        if ((st = graph_ref(c, K_INPUT, true, &m->input_index)) != MS_OK) return st;
        m->input = c->val[K_INPUT];
    } else if (gin == 1) {
        m->input_index = 0;
        m->input = ms_net_input_name(c->net, 0);
    }
    int32_t gc = 0, gh = 0, gw = 0;
    bool have_graph_input =
        m->input_index != UINT32_MAX && ms_net_input_shape(c->net, m->input_index, &gc, &gh, &gw);
    if (gin > 1 && m->input_index == UINT32_MAX) {
        static const mkey uses[] = {K_INPUT_SIZE, K_INPUT_CHANNELS};
        for (size_t i = 0; i < 2; i++)
            if (c->val[uses[i]])
                return kfail(c, uses[i], "needs input=NAME: the graph has %u inputs", gin);
    }
    if (c->val[K_INPUT_SIZE]) {
        const char *v = c->val[K_INPUT_SIZE], *x = strchr(v, 'x');
        int64_t h, w;
        if (x == NULL || !int_span(v, x, 1, MAX_SIZE, &h) ||
            !int_span(x + 1, v + strlen(v), 1, MAX_SIZE, &w))
            return kfail(c, K_INPUT_SIZE, "expected HxW, each 1..%d (e.g. 512x512)", MAX_SIZE);
        if (have_graph_input && (h != gh || w != gw))
            return kfail(c, K_INPUT_SIZE, "the graph input '%s' is %dx%d (HxW)", m->input, gh, gw);
        m->input_h = (int32_t)h, m->input_w = (int32_t)w;
    }
    if (c->val[K_INPUT_CHANNELS]) {
        if (!int_str(c->val[K_INPUT_CHANNELS], 1, 3, &iv) || iv == 2)
            return kfail(c, K_INPUT_CHANNELS, "expected 1 or 3");
        if (have_graph_input && iv != gc)
            return kfail(c, K_INPUT_CHANNELS, "the graph input '%s' has %d channel%s", m->input, gc,
                         gc == 1 ? "" : "s");
        m->input_channels = (int32_t)iv;
    }
    /* the channel count the per-channel keys are checked against (0: unknown) */
    int32_t channels = m->input_channels ? m->input_channels : have_graph_input ? gc : 0;
    if (c->val[K_COLOUR]) {
        static const char *const names[] = {"grey", "rgb"};
        int i = pick(c->val[K_COLOUR], names, 2);
        if (i < 0) return kfail(c, K_COLOUR, "expected grey or rgb");
        if (i == 1 && channels != 0 && channels != 3)
            return kfail(c, K_COLOUR, "rgb needs 3 input channels, the input has %d", channels);
        m->colour = (ms_meta_colour)i;
    }
    if (c->val[K_RESIZE]) {
        static const char *const names[] = {"stretch", "letterbox", "crop"};
        int i = pick(c->val[K_RESIZE], names, 3);
        if (i < 0) return kfail(c, K_RESIZE, "expected stretch, letterbox or crop");
        m->resize = (ms_meta_resize)(i + 1);
    }
    if (c->val[K_RESIZE_FILTER]) {
        static const char *const names[] = {"area", "bilinear"};
        int i = pick(c->val[K_RESIZE_FILTER], names, 2);
        if (i < 0) return kfail(c, K_RESIZE_FILTER, "expected area or bilinear");
        m->resize_filter = (ms_meta_filter)i;
    }
    if (c->val[K_PAD_VALUE]) {
        if (m->resize != MS_META_RESIZE_LETTERBOX)
            return kfail(c, K_PAD_VALUE, "only resize=letterbox pads");
        if (!float_str(c->val[K_PAD_VALUE], 0.0, 1.0, &dv))
            return kfail(c, K_PAD_VALUE, "expected a decimal number in [0, 1]");
        m->pad_value = (float)dv;
    }
    if ((st = need(c, K_NORM_MEAN, K_NORM_STD, " (both or neither)")) != MS_OK ||
        (st = need(c, K_NORM_STD, K_NORM_MEAN, " (both or neither)")) != MS_OK)
        return st;
    if (c->val[K_NORM_MEAN]) {
        uint32_t nm, ns;
        if ((st = floats_key(c, K_NORM_MEAN, -1e6, 1e6, m->norm_mean, &nm)) != MS_OK ||
            (st = floats_key(c, K_NORM_STD, 0.0, 1e6, m->norm_std, &ns)) != MS_OK)
            return st;
        if (nm != ns)
            return kfail(c, K_NORM_STD, "%u value%s, norm_mean has %u", ns, ns == 1 ? "" : "s", nm);
        if (nm != 1 && channels != 0 && nm != (uint32_t)channels)
            return kfail(c, K_NORM_MEAN, "%u values for %d input channel%s (give 1 or %d)", nm,
                         channels, channels == 1 ? "" : "s", channels);
        m->norm_count = nm;
    }
    if (c->val[K_WINDOW]) {
        const char *v = c->val[K_WINDOW];
        if (strcmp(v, "file") == 0) {
            m->window = MS_META_WINDOW_FILE;
        } else if (strcmp(v, "auto") == 0) {
            m->window = MS_META_WINDOW_AUTO;
        } else {
            char *parts[2];
            uint32_t n;
            double wc, ww;
            if (!split(c->wval[K_WINDOW], ',', 2, parts, &n) || n != 2 ||
                !float_str(parts[0], -1e9, 1e9, &wc) || !float_str(parts[1], 0.0, 1e9, &ww) ||
                !(ww > 0.0))
                return kfail(c, K_WINDOW,
                             "expected file, auto or CENTER,WIDTH (decimal, width > 0)");
            m->window = MS_META_WINDOW_FIXED;
            m->window_center = wc, m->window_width = ww;
        }
    }

    /* outputs */
    static const mkey score_keys[] = {K_SCORE_CHANNEL, K_SCORE_KIND, K_TEMPERATURE};
    static const mkey map_keys[] = {K_MAP_CHANNEL, K_MAP_KIND, K_MAP_THRESHOLD};
    for (size_t i = 0; i < 3; i++)
        if ((st = need(c, score_keys[i], K_OUTPUT_SCORE, "")) != MS_OK ||
            (st = need(c, map_keys[i], K_OUTPUT_MAP, "")) != MS_OK)
            return st;
    if (c->val[K_OUTPUT_SCORE]) {
        if ((st = graph_ref(c, K_OUTPUT_SCORE, false, &m->score_index)) != MS_OK) return st;
        int32_t oc, oh, ow;
        if (m->score_index != UINT32_MAX &&
            ms_net_output_shape(c->net, m->score_index, &oc, &oh, &ow) && (oh != 1 || ow != 1))
            return kfail(c, K_OUTPUT_SCORE,
                         "a score output has one value per channel (Cx1x1), '%s' is %dx%dx%d",
                         c->val[K_OUTPUT_SCORE], oc, oh, ow);
        m->output_score = c->val[K_OUTPUT_SCORE];
    }
    if ((st = channel_key(c, K_SCORE_CHANNEL, m->score_index, &m->score_channel)) != MS_OK ||
        (st = kind_key(c, K_SCORE_KIND, &m->score_kind)) != MS_OK)
        return st;
    if (c->val[K_TEMPERATURE]) {
        if (m->score_kind != MS_META_KIND_LOGIT)
            return kfail(c, K_TEMPERATURE, "temperature scaling needs score_kind=logit");
        if (!float_str(c->val[K_TEMPERATURE], 0.01, 100.0, &dv))
            return kfail(c, K_TEMPERATURE, "expected a decimal number in [0.01, 100]");
        m->temperature = (float)dv;
    }
    if (c->val[K_OUTPUT_MAP]) {
        if ((st = graph_ref(c, K_OUTPUT_MAP, false, &m->map_index)) != MS_OK) return st;
        if (m->output_score && strcmp(m->output_score, c->val[K_OUTPUT_MAP]) == 0)
            return kfail(c, K_OUTPUT_MAP, "the same output as output_score");
        m->output_map = c->val[K_OUTPUT_MAP];
    }
    if ((st = channel_key(c, K_MAP_CHANNEL, m->map_index, &m->map_channel)) != MS_OK ||
        (st = kind_key(c, K_MAP_KIND, &m->map_kind)) != MS_OK)
        return st;
    if (c->val[K_MAP_THRESHOLD] && !float_str(c->val[K_MAP_THRESHOLD], 0.0, 1.0, &dv))
        return kfail(c, K_MAP_THRESHOLD, "expected a probability: a decimal number in [0, 1]");
    if (c->val[K_MAP_THRESHOLD]) m->map_threshold = (float)dv;

    /* operating points */
    if ((st = need(c, K_DEFAULT_OPERATING_POINT, K_OPERATING_POINTS, "")) != MS_OK) return st;
    if (c->val[K_OPERATING_POINTS]) {
        char *parts[MS_META_MAX_POINTS];
        uint32_t n;
        if (!split(c->wval[K_OPERATING_POINTS], ',', MS_META_MAX_POINTS, parts, &n))
            return kfail(c, K_OPERATING_POINTS,
                         "expected 1 to %u NAME:THRESHOLD pairs, comma-separated, none empty",
                         MS_META_MAX_POINTS);
        for (uint32_t i = 0; i < n; i++) {
            char *colon = strchr(parts[i], ':');
            if (colon == NULL)
                return kfail(c, K_OPERATING_POINTS, "'%s' is not NAME:THRESHOLD", parts[i]);
            *colon = '\0';
            size_t nl = strlen(parts[i]);
            bool ok = nl >= 1 && nl <= MAX_POINT_NAME;
            for (size_t j = 0; ok && j < nl; j++) {
                char ch = parts[i][j];
                ok = (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '_' || ch == '-';
            }
            if (!ok)
                return kfail(c, K_OPERATING_POINTS, "point name '%s': 1 to %d of a-z, 0-9, _ and -",
                             parts[i], MAX_POINT_NAME);
            for (uint32_t j = 0; j < i; j++)
                if (strcmp(m->points[j].name, parts[i]) == 0)
                    return kfail(c, K_OPERATING_POINTS, "point '%s' is listed twice", parts[i]);
            if (!float_str(colon + 1, 0.0, 1.0, &dv))
                return kfail(c, K_OPERATING_POINTS,
                             "point '%s': threshold '%s' is not a probability in [0, 1]", parts[i],
                             colon + 1);
            m->points[i].name = parts[i];
            m->points[i].threshold = (float)dv;
        }
        m->point_count = n;
    }
    if (c->val[K_DEFAULT_OPERATING_POINT]) {
        for (uint32_t i = 0; i < m->point_count; i++)
            if (strcmp(m->points[i].name, c->val[K_DEFAULT_OPERATING_POINT]) == 0)
                m->default_point = (int32_t)i;
        if (m->default_point < 0)
            return kfail(c, K_DEFAULT_OPERATING_POINT, "not one of operating_points");
    } else if (m->point_count == 1) {
        m->default_point = 0;
    }

    /* applicability */
    if ((st = codes_key(c, K_MODALITIES, &m->modalities)) != MS_OK ||
        (st = codes_key(c, K_BODY_PARTS, &m->body_parts)) != MS_OK ||
        (st = codes_key(c, K_VIEWS, &m->views)) != MS_OK)
        return st;

    /* provenance */
    if ((st = text_key(c, K_TRAINING_DATA, MAX_TEXT_LONG, &m->training_data)) != MS_OK ||
        (st = text_key(c, K_TRAINING_CODE, MAX_TEXT_LONG, &m->training_code)) != MS_OK ||
        (st = text_key(c, K_SOURCE, MAX_TEXT_SHORT, &m->source)) != MS_OK ||
        (st = text_key(c, K_PRODUCER, MAX_TEXT_SHORT, &m->producer)) != MS_OK ||
        (st = text_key(c, K_LICENCE, MAX_TEXT_SHORT, &m->licence)) != MS_OK ||
        (st = text_key(c, K_CREDITS, MAX_TEXT_LONG, &m->credits)) != MS_OK)
        return st;
    if (c->val[K_TRAINED]) {
        if (!date_ok(c->val[K_TRAINED])) return kfail(c, K_TRAINED, "expected a date YYYY-MM-DD");
        m->trained = c->val[K_TRAINED];
    }
    if (c->val[K_CARD]) {
        if (!card_ok(c->val[K_CARD]))
            return kfail(c, K_CARD,
                         "expected a file name beside the model (A-Z a-z 0-9 _ . -, not "
                         "starting with '.')");
        m->card = c->val[K_CARD];
    }
    if (c->val[K_ONNX_OPSET]) {
        if (!int_str(c->val[K_ONNX_OPSET], 1, 1000, &iv))
            return kfail(c, K_ONNX_OPSET, "expected an integer 1..1000");
        m->onnx_opset = (int32_t)iv;
    }
    return MS_OK;
}

static bool x_key_ok(const char *k) {
    size_t n = strlen(k);
    if (n < 3 || n > MAX_X_KEY || k[0] != 'x' || k[1] != '-') return false;
    for (size_t i = 2; i < n; i++) {
        char ch = k[i];
        if (!((ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

/* The lines of a meta format 1 text (raw split into key\0value\0 already, nlines entries). */
static ms_status parse_strict(mctx *c, const char *text, size_t len, const uint32_t *lineno) {
    ms_model_meta *m = c->m;
    storage *s = m->priv_;
    if (len > MS_META_MAX_BYTES)
        return ms_fail(c->err, MS_ELIMIT, "%s: meta: %zu bytes, at most %u", c->name, len,
                       MS_META_MAX_BYTES);
    /* meta_format first: a newer format may have keys this version does not know */
    for (uint32_t i = 0; i < m->line_count; i++)
        if (strcmp(s->keys[i], "meta_format") == 0) {
            c->val[K_META_FORMAT] = s->vals[i];
            c->line[K_META_FORMAT] = lineno[i];
            int64_t v;
            if (!int_str(s->vals[i], 0, UINT32_MAX, &v) || v == 0)
                return kfail(c, K_META_FORMAT, "expected a format number (1)");
            if (v > MS_META_FORMAT)
                return ms_fail(c->err, MS_EUNSUPPORTED,
                               "%s: meta line %u: meta_format=%s: newer than this medscreen "
                               "reads (%u)",
                               c->name, lineno[i], s->vals[i], MS_META_FORMAT);
            break;
        }
    /* every line: syntax, length, UTF-8, known or x- key, no duplicates */
    const char *p = text, *end = text + len;
    uint32_t ln = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        ln++;
        if (ln > MS_META_MAX_LINES)
            return ms_fail(c->err, MS_ELIMIT, "%s: meta: more than %u lines", c->name,
                           MS_META_MAX_LINES);
        if (ll > MS_META_MAX_LINE)
            return ms_fail(c->err, MS_ELIMIT, "%s: meta line %u: %zu bytes, at most %u", c->name,
                           ln, ll, MS_META_MAX_LINE);
        size_t bad = text_check((const uint8_t *)p, ll);
        if (bad < ll)
            return ms_fail(c->err, MS_EFORMAT,
                           "%s: meta line %u: byte %zu (0x%02x) is a control character or not "
                           "UTF-8",
                           c->name, ln, bad + 1, (unsigned)(uint8_t)p[bad]);
        if (ll > 0) {
            const char *eq = memchr(p, '=', ll);
            if (eq == NULL || eq == p)
                return ms_fail(c->err, MS_EFORMAT, "%s: meta line %u: '%.*s' is not key=value",
                               c->name, ln, (int)(ll > SHOW ? SHOW : ll), p);
        }
        p += ll + 1;
    }
    for (uint32_t i = 0; i < m->line_count; i++) {
        const char *k = s->keys[i], *v = s->vals[i];
        size_t vl = strlen(v);
        int id = pick(k, k_names, K_COUNT);
        if (id < 0 && !x_key_ok(k))
            return ms_fail(c->err, MS_EFORMAT,
                           "%s: meta line %u: unknown key '%s' (meta format 1 keys are listed "
                           "in models/FORMAT.md; others must start with x-)",
                           c->name, lineno[i], k);
        if (vl == 0 || v[0] == ' ' || v[vl - 1] == ' ')
            return ms_fail(c->err, MS_EFORMAT, "%s: meta line %u: %s='%s': %s", c->name, lineno[i],
                           k, vl > SHOW ? "..." : v,
                           vl == 0 ? "empty value (leave the key out instead)"
                                   : "leading or trailing space");
        if (id < 0) {
            if (vl > MAX_TEXT_LONG)
                return ms_fail(c->err, MS_EFORMAT, "%s: meta line %u: %s: longer than %d bytes",
                               c->name, lineno[i], k, MAX_TEXT_LONG);
            for (uint32_t j = 0; j < i; j++)
                if (strcmp(s->keys[j], k) == 0)
                    return ms_fail(c->err, MS_EFORMAT, "%s: meta line %u: key '%s' repeats line %u",
                                   c->name, lineno[i], k, lineno[j]);
            continue;
        }
        if (c->val[id] != NULL && c->line[id] != lineno[i])
            return ms_fail(c->err, MS_EFORMAT, "%s: meta line %u: key '%s' repeats line %u",
                           c->name, lineno[i], k, c->line[id]);
        c->val[id] = v;
        c->wval[id] = s->work + (v - s->raw);
        c->line[id] = lineno[i];
    }
    m->format = MS_META_FORMAT;
    return parse_values(c);
}

ms_status ms_model_meta_parse(const char *text, size_t len, const ms_net *net, const char *name,
                              ms_model_meta **out, ms_err *err) {
    if (out == NULL || (text == NULL && len > 0))
        return ms_fail(err, MS_EINVAL, "ms_model_meta_parse: NULL argument");
    if (name == NULL) name = "<model>";
    size_t lines = 1, cap;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    ms_model_meta *m = ms_calloc(1, sizeof *m);
    storage *s = ms_calloc(1, sizeof *s);
    uint32_t *lineno = NULL;
    ms_status st = MS_OK;
    if (m == NULL || s == NULL) {
        ms_free(m);
        ms_free(s);
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate the metadata", name);
    }
    m->priv_ = s;
    if (!ms_add_size(len, 1, &cap)) goto oom;
    s->raw = ms_malloc(cap);
    s->work = ms_malloc(cap);
    s->keys = ms_calloc(lines, sizeof *s->keys);
    s->vals = ms_calloc(lines, sizeof *s->vals);
    lineno = ms_calloc(lines, sizeof *lineno);
    if (!s->raw || !s->work || !s->keys || !s->vals || !lineno) goto oom;
    if (len > 0) memcpy(s->raw, text, len);
    s->raw[len] = '\0';
    m->keys = s->keys;
    m->values = s->vals;
    m->input_index = m->score_index = m->map_index = UINT32_MAX;
    m->temperature = 1.0f;
    m->map_threshold = 0.5f;
    m->default_point = -1;

    /* index the key=value lines (the legacy rules: no '=' or an empty key: skipped) */
    bool strict = false;
    char *p = s->raw, *end = s->raw + len;
    uint32_t ln = 0;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        *le = '\0';
        ln++;
        char *eq = memchr(p, '=', (size_t)(le - p));
        if (eq != NULL && eq > p) {
            *eq = '\0';
            if (strcmp(p, "meta_format") == 0) strict = true;
            lineno[m->line_count] = ln;
            s->keys[m->line_count] = p;
            s->vals[m->line_count++] = eq + 1;
        }
        p = le + 1;
    }
    memcpy(s->work, s->raw, cap);
    if (strict) {
        if (memchr(text, '\0', len) != NULL) {
            st = ms_fail(err, MS_EFORMAT, "%s: meta: the text has a NUL byte at offset %zu", name,
                         (size_t)((const char *)memchr(text, '\0', len) - text));
            goto fail;
        }
        mctx c = {.m = m, .net = net, .name = name, .err = err};
        if ((st = parse_strict(&c, text, len, lineno)) != MS_OK) goto fail;
    }
    ms_free(lineno);
    *out = m;
    return MS_OK;
oom:
    st = ms_fail(err, MS_ENOMEM, "%s: cannot allocate the metadata (%zu bytes)", name, len);
fail:
    ms_free(lineno);
    ms_model_meta_destroy(m); /* and s, through m->priv_ */
    return st;
}

void ms_model_meta_destroy(ms_model_meta *meta) {
    if (meta == NULL) return;
    storage *s = meta->priv_;
    if (s != NULL) {
        ms_free(s->raw);
        ms_free(s->work);
        ms_free(s->keys);
        ms_free(s->vals);
        ms_free(s);
    }
    ms_free(meta);
}

const char *ms_model_meta_get(const ms_model_meta *meta, const char *key) {
    if (meta == NULL || key == NULL) return NULL;
    for (uint32_t i = 0; i < meta->line_count; i++)
        if (strcmp(meta->keys[i], key) == 0) return meta->values[i];
    return NULL;
}

ms_status ms_model_meta_check_scan(const ms_model_meta *meta, const char *name, ms_err *err) {
    if (name == NULL) name = "<model>";
    if (meta == NULL)
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: not usable by scan: the model has no metadata (meta format 1 is "
                       "needed, see models/FORMAT.md)",
                       name);
    if (meta->format == 0)
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: not usable by scan: its metadata has no meta_format=1 line (legacy "
                       "free-form metadata, see models/FORMAT.md)",
                       name);
    char missing[512] = "";
    size_t ml = 0;
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof k_scan_keys / sizeof *k_scan_keys; i++)
        if (ms_model_meta_get(meta, k_names[k_scan_keys[i]]) == NULL) {
            int r = snprintf(missing + ml, sizeof missing - ml, "%s%s", n++ ? ", " : "",
                             k_names[k_scan_keys[i]]);
            if (r > 0 && (size_t)r < sizeof missing - ml) ml += (size_t)r;
        }
    if (meta->point_count > 1 && meta->default_point < 0) {
        int r = snprintf(missing + ml, sizeof missing - ml, "%sdefault_operating_point",
                         n++ ? ", " : "");
        if (r > 0 && (size_t)r < sizeof missing - ml) ml += (size_t)r;
    }
    if (meta->output_map != NULL && meta->map_kind == MS_META_KIND_NONE) {
        int r = snprintf(missing + ml, sizeof missing - ml, "%smap_kind", n++ ? ", " : "");
        if (r > 0 && (size_t)r < sizeof missing - ml) ml += (size_t)r;
    }
    if (n > 0)
        return ms_fail(err, MS_EUNSUPPORTED, "%s: not usable by scan: metadata lacks %s", name,
                       missing);
    if (meta->graph_inputs != 1)
        return ms_fail(err, MS_EUNSUPPORTED,
                       "%s: not usable by scan: the graph has %u inputs, scan feeds exactly one",
                       name, meta->graph_inputs);
    return MS_OK;
}

const char *ms_meta_resize_name(ms_meta_resize r) {
    switch (r) {
    case MS_META_RESIZE_STRETCH: return "stretch";
    case MS_META_RESIZE_LETTERBOX: return "letterbox";
    case MS_META_RESIZE_CROP: return "crop";
    default: return "none";
    }
}

const char *ms_meta_filter_name(ms_meta_filter f) {
    return f == MS_META_FILTER_BILINEAR ? "bilinear" : "area";
}

const char *ms_meta_colour_name(ms_meta_colour c) {
    return c == MS_META_COLOUR_RGB ? "rgb" : "grey";
}

const char *ms_meta_window_name(ms_meta_window w) {
    switch (w) {
    case MS_META_WINDOW_FILE: return "file";
    case MS_META_WINDOW_AUTO: return "auto";
    case MS_META_WINDOW_FIXED: return "fixed";
    default: return "none";
    }
}

const char *ms_meta_kind_name(ms_meta_kind k) {
    switch (k) {
    case MS_META_KIND_LOGIT: return "logit";
    case MS_META_KIND_PROBABILITY: return "probability";
    default: return "none";
    }
}
