/* Model metadata: the `meta` tensor of a .msm model parsed into typed, validated fields
 * (models/FORMAT.md, "Metadata keys (meta format 1)").
 *
 * A meta text with a `meta_format=1` line is validated strictly: every line is key=value, every
 * key is known (or starts with `x-`) and appears once, every value is parsed whole and range
 * checked, and names and shapes are checked against the graph. A meta text without
 * `meta_format` is legacy free-form: only its raw lines are kept (format 0) and `scan` refuses
 * the model. ms_net_load runs this on every model, so every consumer sees checked metadata.
 *
 * The struct is plain data, read-only after parsing; its strings live as long as it does. */
#ifndef MEDSCREEN_META_H
#define MEDSCREEN_META_H

#include "medscreen/net.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MS_META_FORMAT 1u        /* the newest meta format this medscreen reads */
#define MS_META_MAX_BYTES 65536u /* whole meta text (strict only) */
#define MS_META_MAX_LINE 4096u   /* bytes of one line, newline excluded (strict only) */
#define MS_META_MAX_LINES 1024u  /* lines, empty ones included (strict only) */
#define MS_META_MAX_POINTS 16u   /* operating points */
#define MS_META_MAX_CODES 16u    /* entries of modalities, body_parts, views */

/* The *_NONE values mean "key absent"; ms_model_meta_check_scan guarantees they are set. */
typedef enum ms_meta_resize {
    MS_META_RESIZE_NONE = 0,
    MS_META_RESIZE_STRETCH,   /* both axes scaled to the input size */
    MS_META_RESIZE_LETTERBOX, /* scaled to fit, aspect kept, padded with pad_value */
    MS_META_RESIZE_CROP       /* scaled to cover, aspect kept, centre crop */
} ms_meta_resize;
typedef enum ms_meta_filter { MS_META_FILTER_AREA = 0, MS_META_FILTER_BILINEAR } ms_meta_filter;
typedef enum ms_meta_colour { MS_META_COLOUR_GREY = 0, MS_META_COLOUR_RGB } ms_meta_colour;
typedef enum ms_meta_window {
    MS_META_WINDOW_NONE = 0,
    MS_META_WINDOW_FILE, /* the file's first VOI window / LUT, else automatic */
    MS_META_WINDOW_AUTO, /* always the frame's min..max */
    MS_META_WINDOW_FIXED /* window_center / window_width, in modality units */
} ms_meta_window;
typedef enum ms_meta_kind {
    MS_META_KIND_NONE = 0,
    MS_META_KIND_LOGIT,      /* probability = sigmoid(value / temperature) */
    MS_META_KIND_PROBABILITY /* the value is a probability in [0,1] */
} ms_meta_kind;

typedef struct ms_meta_point {
    const char *name;
    float threshold; /* on the probability scale, in [0,1] */
} ms_meta_point;

/* A list of DICOM code strings; any = the literal `any` (then count is 0). count 0 and any
 * false: the key is absent. */
typedef struct ms_meta_codes {
    uint32_t count;
    bool any;
    const char *items[MS_META_MAX_CODES];
} ms_meta_codes;

typedef struct ms_model_meta {
    uint32_t format; /* 1, or 0 for legacy free-form text (only the raw lines are set) */

    /* identity; NULL when absent */
    const char *name, *version, *description, *task;

    /* input and preprocessing */
    const char *input;        /* the graph input fed by scan (given or the only one), or NULL */
    uint32_t input_index;     /* its index in the graph; UINT32_MAX when unknown */
    uint32_t graph_inputs;    /* the graph's input count (0: parsed without a graph) */
    int32_t input_h, input_w; /* input_size; 0 when absent */
    int32_t input_channels;   /* 0 when absent */
    ms_meta_colour colour;    /* default grey (replicated when input_channels is 3) */
    ms_meta_resize resize;
    ms_meta_filter resize_filter;    /* default area */
    float pad_value;                 /* letterbox fill before normalisation, [0,1], default 0 */
    uint32_t norm_count;             /* 0 when absent; else 1 (all channels) or input_channels */
    float norm_mean[3], norm_std[3]; /* model input = (pixel in [0,1] - mean) / std */
    ms_meta_window window;
    double window_center, window_width; /* MS_META_WINDOW_FIXED only */

    /* outputs */
    const char *output_score; /* NULL when absent */
    uint32_t score_index;     /* graph output index; UINT32_MAX when unknown */
    int32_t score_channel;    /* default 0 */
    ms_meta_kind score_kind;
    float temperature;      /* default 1; logit scores only */
    const char *output_map; /* NULL when absent */
    uint32_t map_index;
    int32_t map_channel; /* default 0 */
    ms_meta_kind map_kind;
    float map_threshold; /* default 0.5, probability scale */

    /* operating points, in file order */
    uint32_t point_count;
    ms_meta_point points[MS_META_MAX_POINTS];
    int32_t default_point; /* index into points; -1 when absent */

    /* where the model applies (DICOM Modality, Body Part Examined, View Position) */
    ms_meta_codes modalities, body_parts, views;

    /* provenance; NULL when absent */
    const char *training_data, *training_code, *trained, *source, *producer, *licence, *credits,
        *card;
    int32_t onnx_opset; /* 0 when absent */

    /* every key=value line, in file order (legacy: lines without '=' or with an empty key are
     * skipped, and a repeated key keeps every line) */
    uint32_t line_count;
    const char *const *keys;
    const char *const *values;

    void *priv_; /* owned storage */
} ms_model_meta;

/* Parses meta text (len bytes, not NUL-terminated) and, when net is not NULL, checks it
 * against net's graph (input names and shapes, output names and shapes). name labels
 * messages (NULL: "<model>"); each message names the model, the meta line, the key and the
 * value. On success *out belongs to the caller (ms_model_meta_destroy). Thread-safe.
 * Errors: MS_EFORMAT (a bad line, key, value or combination), MS_EUNSUPPORTED (meta_format
 * newer than MS_META_FORMAT), MS_ELIMIT (the sizes above), MS_ENOMEM, MS_EINVAL (NULL text
 * with len > 0, NULL out). */
ms_status ms_model_meta_parse(const char *text, size_t len, const ms_net *net, const char *name,
                              ms_model_meta **out, ms_err *err);
void ms_model_meta_destroy(ms_model_meta *meta); /* NULL is a no-op */

/* The raw value of the first line with key; NULL when absent (meta may be NULL). */
const char *ms_model_meta_get(const ms_model_meta *meta, const char *key);

/* Whether `scan` can use a model with this metadata: meta format 1, every key scan needs
 * present, and a graph with exactly one input. meta NULL means "no meta tensor". The message
 * lists every missing key. Errors: MS_EUNSUPPORTED. Thread-safe. */
ms_status ms_model_meta_check_scan(const ms_model_meta *meta, const char *name, ms_err *err);

/* The metadata of a loaded net (validated at load); NULL when the model has no meta tensor.
 * Lives as long as net. */
const ms_model_meta *ms_net_model_meta(const ms_net *net);

/* Names for messages and JSON ("letterbox", "logit", ...); never NULL. */
const char *ms_meta_resize_name(ms_meta_resize r);
const char *ms_meta_filter_name(ms_meta_filter f);
const char *ms_meta_colour_name(ms_meta_colour c);
const char *ms_meta_window_name(ms_meta_window w);
const char *ms_meta_kind_name(ms_meta_kind k);

#ifdef __cplusplus
}
#endif
#endif
