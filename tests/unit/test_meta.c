/* meta tests: models/FORMAT.md "Metadata keys (meta format 1)". Every key's good and bad
 * values, the keys scan requires, duplicate and unknown keys, names and shapes checked against
 * the graph, the size limits, legacy free-form metadata, the hook in ms_net_from_msm, the
 * in-memory writer the tests build models with, and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "alloc_hooks.h"
#include "medscreen/core.h"
#include "medscreen/meta.h"

/* x [3,16,12] -> 1x1 conv to 2 channels (map [2,16,12]) -> global pool (score [2,1,1]) */
static const char k_graph1[] = "graph 1\n"
                               "input x 3 16 12\n"
                               "node conv2d c in=x out=map weight=w\n"
                               "node globalavgpool g in=map out=score\n"
                               "output score\n"
                               "output map\n";
/* two inputs */
static const char k_graph2[] = "graph 1\n"
                               "input a 1 8 8\n"
                               "input b 1 8 8\n"
                               "node add s in=a,b out=y\n"
                               "node globalmaxpool g in=y out=z\n"
                               "output z\n";

/* Every key of meta format 1, valid for k_graph1. */
static const char k_full[] = "meta_format=1\n"
                             "name=Thorax screen \xc3\xbc\n" /* UTF-8 is fine in text */
                             "version=1.2.0-rc.1+b.7\n"
                             "description=tests only\n"
                             "task=screen\n"
                             "input=x\n"
                             "input_size=16x12\n"
                             "input_channels=3\n"
                             "colour=grey\n"
                             "resize=letterbox\n"
                             "resize_filter=bilinear\n"
                             "pad_value=0.25\n"
                             "norm_mean=0.485,0.456,0.406\n"
                             "norm_std=0.229,0.224,0.225\n"
                             "window=-600,1500\n"
                             "output_score=score\n"
                             "score_channel=1\n"
                             "score_kind=logit\n"
                             "temperature=1.5\n"
                             "output_map=map\n"
                             "map_channel=1\n"
                             "map_kind=probability\n"
                             "map_threshold=0.4\n"
                             "operating_points=sens90:0.31,spec90:0.62,youden:0.5\n"
                             "default_operating_point=spec90\n"
                             "modalities=CR,DX\n"
                             "body_parts=CHEST\n"
                             "views=PA,AP\n"
                             "training_data=synthetic phantoms\n"
                             "training_code=https://example.org/medscreen@abc123\n"
                             "trained=2024-02-29\n"
                             "source=onnx\n"
                             "producer=pytorch 1.13.0\n"
                             "onnx_opset=13\n"
                             "licence=MIT\n"
                             "credits=the medscreen authors\n"
                             "card=thorax-screen.md\n"
                             "x-site.note=anything = goes here\n";

/* What scan needs and nothing else, for k_graph1. */
static const char k_min_scan[] = "meta_format=1\n"
                                 "name=m\n"
                                 "version=1.0\n"
                                 "task=screen\n"
                                 "input_size=16x12\n"
                                 "input_channels=3\n"
                                 "resize=stretch\n"
                                 "norm_mean=0\n"
                                 "norm_std=1\n"
                                 "window=file\n"
                                 "output_score=score\n"
                                 "score_kind=probability\n"
                                 "operating_points=a:0.5\n"
                                 "modalities=any\n"
                                 "body_parts=CHEST\n";

static float g_w[6] = {1, 2, 3, 4, 5, 6};

/* Builds a model in memory (ms_msm_writer_encode, ms_msm_decode) and loads it. */
static ms_status build(const char *graph, const char *meta, size_t meta_len, ms_net **out,
                       ms_err *err) {
    ms_msm_writer *w = NULL;
    assert_int_equal(ms_msm_writer_create(&w, NULL), MS_OK);
    uint32_t gl = (uint32_t)strlen(graph), wd[4] = {2, 3, 1, 1};
    assert_int_equal(ms_msm_writer_add(w, "graph", MS_DTYPE_U8, 1, &gl, graph, NULL), MS_OK);
    if (graph == k_graph1)
        assert_int_equal(ms_msm_writer_add(w, "w", MS_DTYPE_F32, 4, wd, g_w, NULL), MS_OK);
    if (meta != NULL) {
        uint32_t ml = (uint32_t)meta_len;
        assert_int_equal(ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, &ml, meta, NULL), MS_OK);
    }
    uint8_t *bytes = NULL;
    size_t size = 0;
    assert_int_equal(ms_msm_writer_encode(w, &bytes, &size, NULL), MS_OK);
    ms_msm_writer_destroy(w);
    ms_msm *m = NULL;
    ms_status st = ms_msm_decode(bytes, size, "test.msm", NULL, &m, err);
    ms_free(bytes);
    if (st != MS_OK) return st;
    return ms_net_from_msm(m, "test.msm", out, err);
}

static ms_net *g_net1, *g_net2;

static int setup(void **state) {
    (void)state;
    if (build(k_graph1, NULL, 0, &g_net1, NULL) != MS_OK) return 1;
    if (build(k_graph2, NULL, 0, &g_net2, NULL) != MS_OK) return 1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ms_net_destroy(g_net1);
    ms_net_destroy(g_net2);
    return 0;
}

static ms_status parse(const char *text, const ms_net *net, ms_model_meta **out, ms_err *err) {
    return ms_model_meta_parse(text, strlen(text), net, "m.msm", out, err);
}

/* base with the line of key replaced by key=value (appended when absent; removed when value
 * is NULL). Caller frees. */
static char *with(const char *base, const char *key, const char *value) {
    size_t kl = strlen(key), cap = strlen(base) + kl + (value ? strlen(value) : 0) + 4;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n = 0;
    bool done = false;
    for (const char *p = base; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (len > kl && p[kl] == '=' && memcmp(p, key, kl) == 0) {
            if (value) n += (size_t)snprintf(out + n, cap - n, "%s=%s\n", key, value);
            done = true;
        } else {
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
    }
    if (!done && value) n += (size_t)snprintf(out + n, cap - n, "%s=%s\n", key, value);
    out[n] = '\0';
    return out;
}

/* Parses text against net, expecting status st with every needle in the message. */
static void expect_fail_text(const char *text, size_t len, const ms_net *net, ms_status st,
                             const char *n1, const char *n2) {
    ms_model_meta *m = NULL;
    ms_err err = {0};
    ms_status got = ms_model_meta_parse(text, len, net, "m.msm", &m, &err);
    if (got != st) {
        print_error("text:\n%.*s\ngot %d (%s), want %d\n", (int)len, text, got, err.msg, st);
        ms_model_meta_destroy(m);
        fail();
    }
    assert_null(m);
    if (strstr(err.msg, "m.msm: ") != err.msg || (n1 && !strstr(err.msg, n1)) ||
        (n2 && !strstr(err.msg, n2))) {
        print_error("message '%s' lacks '%s' / '%s'\n", err.msg, n1 ? n1 : "", n2 ? n2 : "");
        fail();
    }
}

/* key=value in k_full fails naming key=value and the reason. */
static void bad(const char *key, const char *value, const char *reason) {
    char *t = with(k_full, key, value);
    char kv[200]; /* messages quote 80 bytes of a value */
    snprintf(kv, sizeof kv, "%s=%.80s", key, value);
    expect_fail_text(t, strlen(t), g_net1, MS_EFORMAT, kv, reason);
    free(t);
}

/* key=value in base parses. */
static ms_model_meta *good_in(const char *base, const char *key, const char *value) {
    char *t = with(base, key, value);
    ms_model_meta *m = NULL;
    ms_err err = {0};
    ms_status st = parse(t, g_net1, &m, &err);
    if (st != MS_OK) {
        print_error("%s=%s: %s\n", key, value ? value : "(removed)", err.msg);
        fail();
    }
    free(t);
    return m;
}
static ms_model_meta *good(const char *key, const char *value) {
    return good_in(k_full, key, value);
}

/* ---- the in-memory writer ---- */

static void test_encode(void **state) {
    (void)state;
    ms_msm_writer *w = NULL;
    uint8_t *b = NULL;
    size_t n = 0;
    ms_err err = {0};
    assert_int_equal(ms_msm_writer_create(&w, NULL), MS_OK);
    assert_int_equal(ms_msm_writer_encode(w, &b, &n, &err), MS_EINVAL); /* no tensors */
    assert_null(b);
    uint32_t d = 5;
    assert_int_equal(ms_msm_writer_add(w, "meta", MS_DTYPE_U8, 1, &d, "a=b\nc", NULL), MS_OK);
    assert_int_equal(ms_msm_writer_encode(w, &b, &n, &err), MS_OK);
    /* the same bytes as the file writer */
    char path[512];
    snprintf(path, sizeof path, "%s/test_meta_%ld.msm", MS_BINARY_DIR, (long)getpid());
    assert_int_equal(ms_msm_writer_save(w, path, &err), MS_OK);
    uint8_t *f = NULL;
    size_t fn = 0;
    assert_int_equal(ms_file_read_all(path, 1u << 20, &f, &fn, &err), MS_OK);
    remove(path);
    assert_int_equal(fn, n);
    assert_memory_equal(f, b, n);
    ms_msm *m = NULL;
    assert_int_equal(ms_msm_decode(b, n, "mem", NULL, &m, &err), MS_OK);
    assert_memory_equal(ms_msm_find(m, "meta")->data, "a=b\nc", 5);
    ms_msm_destroy(m);
    ms_free(f);
    ms_free(b);
    assert_int_equal(ms_msm_writer_encode(NULL, &b, &n, &err), MS_EINVAL);
    ms_msm_writer_destroy(w);
}

/* ---- valid metadata ---- */

static void test_full(void **state) {
    (void)state;
    ms_model_meta *m = NULL;
    ms_err err = {0};
    assert_int_equal(parse(k_full, g_net1, &m, &err), MS_OK);
    assert_int_equal(m->format, 1);
    assert_string_equal(m->name, "Thorax screen \xc3\xbc");
    assert_string_equal(m->version, "1.2.0-rc.1+b.7");
    assert_string_equal(m->description, "tests only");
    assert_string_equal(m->task, "screen");
    assert_string_equal(m->input, "x");
    assert_int_equal(m->input_index, 0);
    assert_int_equal(m->graph_inputs, 1);
    assert_int_equal(m->input_h, 16);
    assert_int_equal(m->input_w, 12);
    assert_int_equal(m->input_channels, 3);
    assert_int_equal(m->colour, MS_META_COLOUR_GREY);
    assert_int_equal(m->resize, MS_META_RESIZE_LETTERBOX);
    assert_int_equal(m->resize_filter, MS_META_FILTER_BILINEAR);
    assert_true(m->pad_value == 0.25f);
    assert_int_equal(m->norm_count, 3);
    assert_true(m->norm_mean[0] == 0.485f && m->norm_mean[2] == 0.406f);
    assert_true(m->norm_std[1] == 0.224f);
    assert_int_equal(m->window, MS_META_WINDOW_FIXED);
    assert_true(m->window_center == -600.0 && m->window_width == 1500.0);
    assert_string_equal(m->output_score, "score");
    assert_int_equal(m->score_index, 0);
    assert_int_equal(m->score_channel, 1);
    assert_int_equal(m->score_kind, MS_META_KIND_LOGIT);
    assert_true(m->temperature == 1.5f);
    assert_string_equal(m->output_map, "map");
    assert_int_equal(m->map_index, 1);
    assert_int_equal(m->map_channel, 1);
    assert_int_equal(m->map_kind, MS_META_KIND_PROBABILITY);
    assert_true(m->map_threshold == 0.4f);
    assert_int_equal(m->point_count, 3);
    assert_string_equal(m->points[0].name, "sens90");
    assert_true(m->points[0].threshold == 0.31f);
    assert_string_equal(m->points[2].name, "youden");
    assert_int_equal(m->default_point, 1);
    assert_int_equal(m->modalities.count, 2);
    assert_false(m->modalities.any);
    assert_string_equal(m->modalities.items[1], "DX");
    assert_int_equal(m->body_parts.count, 1);
    assert_string_equal(m->body_parts.items[0], "CHEST");
    assert_string_equal(m->views.items[0], "PA");
    assert_string_equal(m->training_data, "synthetic phantoms");
    assert_string_equal(m->training_code, "https://example.org/medscreen@abc123");
    assert_string_equal(m->trained, "2024-02-29");
    assert_string_equal(m->source, "onnx");
    assert_string_equal(m->producer, "pytorch 1.13.0");
    assert_int_equal(m->onnx_opset, 13);
    assert_string_equal(m->licence, "MIT");
    assert_string_equal(m->credits, "the medscreen authors");
    assert_string_equal(m->card, "thorax-screen.md");
    /* raw lines: every line in order; list values are not cut by the typed parse */
    assert_int_equal(m->line_count, 38);
    assert_string_equal(m->keys[0], "meta_format");
    assert_string_equal(ms_model_meta_get(m, "operating_points"),
                        "sens90:0.31,spec90:0.62,youden:0.5");
    assert_string_equal(ms_model_meta_get(m, "modalities"), "CR,DX");
    assert_string_equal(ms_model_meta_get(m, "x-site.note"), "anything = goes here");
    assert_null(ms_model_meta_get(m, "absent"));
    assert_null(ms_model_meta_get(NULL, "name"));
    assert_int_equal(ms_model_meta_check_scan(m, "m.msm", &err), MS_OK);
    ms_model_meta_destroy(m);
    ms_model_meta_destroy(NULL);
    /* names for messages */
    assert_string_equal(ms_meta_resize_name(MS_META_RESIZE_CROP), "crop");
    assert_string_equal(ms_meta_filter_name(MS_META_FILTER_AREA), "area");
    assert_string_equal(ms_meta_colour_name(MS_META_COLOUR_RGB), "rgb");
    assert_string_equal(ms_meta_window_name(MS_META_WINDOW_AUTO), "auto");
    assert_string_equal(ms_meta_kind_name(MS_META_KIND_NONE), "none");
}

static void test_defaults(void **state) {
    (void)state;
    ms_model_meta *m = NULL;
    assert_int_equal(parse("meta_format=1\n", g_net1, &m, NULL), MS_OK);
    assert_int_equal(m->format, 1);
    assert_null(m->name);
    assert_string_equal(m->input, "x"); /* the only input */
    assert_int_equal(m->input_index, 0);
    assert_int_equal(m->input_h, 0);
    assert_int_equal(m->input_channels, 0);
    assert_int_equal(m->colour, MS_META_COLOUR_GREY);
    assert_int_equal(m->resize, MS_META_RESIZE_NONE);
    assert_int_equal(m->resize_filter, MS_META_FILTER_AREA);
    assert_true(m->pad_value == 0.0f);
    assert_int_equal(m->norm_count, 0);
    assert_int_equal(m->window, MS_META_WINDOW_NONE);
    assert_null(m->output_score);
    assert_int_equal(m->score_index, UINT32_MAX);
    assert_int_equal(m->score_kind, MS_META_KIND_NONE);
    assert_true(m->temperature == 1.0f);
    assert_true(m->map_threshold == 0.5f);
    assert_int_equal(m->map_index, UINT32_MAX);
    assert_int_equal(m->point_count, 0);
    assert_int_equal(m->default_point, -1);
    assert_false(m->modalities.any);
    assert_int_equal(m->modalities.count, 0);
    assert_int_equal(m->onnx_opset, 0);
    ms_model_meta_destroy(m);
    /* empty lines and a missing final newline are fine */
    assert_int_equal(parse("\nmeta_format=1\n\nname=a", g_net1, &m, NULL), MS_OK);
    assert_string_equal(m->name, "a");
    ms_model_meta_destroy(m);
    /* one operating point is the default */
    m = good_in(k_min_scan, "operating_points", "only:0.7");
    assert_int_equal(m->default_point, 0);
    ms_model_meta_destroy(m);
}

static void test_good_values(void **state) {
    (void)state;
    static const char *const kv[][2] = {
        {"version", "1.0"},
        {"version", "0.1.0"},
        {"version", "10.20.30-rc-1.x+b.2"},
        {"version", "1.0.0+20240101"},
        {"version", "999999999.0"},
        {"name", "x"},
        {"colour", "rgb"},
        {"resize", "stretch"},
        {"resize", "crop"},
        {"resize_filter", "area"},
        {"pad_value", "1"},
        {"pad_value", "0"},
        {"window", "file"},
        {"window", "auto"},
        {"window", "40.5,1e3"},
        {"window", "-1e9,1e-3"},
        {"temperature", "0.01"},
        {"temperature", "100"},
        {"map_threshold", "0"},
        {"map_threshold", "1"},
        {"map_kind", "logit"},
        {"score_kind", "logit"},
        {"score_channel", "0"},
        {"modalities", "any"},
        {"modalities", "CT,MR,PT,US,MG,XA,RF,OT,SC,NM,DX,CR,IO,PX,RG,ANY"},
        {"body_parts", "CHEST,ABDOMEN_2"},
        {"views", "any"},
        {"trained", "2000-02-29"},
        {"trained", "1900-01-01"},
        {"trained", "2023-12-31"},
        {"card", "card_v1.2-final.md"},
        {"onnx_opset", "1"},
        {"onnx_opset", "1000"},
        {"operating_points", "a:0,b:1,c-d_e:0.5,sens90:.3"},
        {"licence", "CC-BY-4.0"},
        {"x-a", "1"},
        {"input_channels", "3"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++) {
        const char *k = kv[i][0];
        /* dependent keys: keep the rest of k_full consistent */
        const char *base = k_full;
        char *tmp = NULL;
        if (strcmp(k, "operating_points") == 0)
            base = tmp = with(k_full, "default_operating_point", "c-d_e");
        if (strcmp(k, "resize") == 0) base = tmp = with(k_full, "pad_value", NULL);
        ms_model_meta *m = good_in(base, k, kv[i][1]);
        assert_string_equal(ms_model_meta_get(m, k), kv[i][1]);
        ms_model_meta_destroy(m);
        free(tmp);
    }
    /* one normalisation value for every channel */
    char *t = with(k_full, "norm_mean", "0.5");
    ms_model_meta *m = good_in(t, "norm_std", "0.25");
    assert_int_equal(m->norm_count, 1);
    assert_true(m->norm_mean[0] == 0.5f && m->norm_std[0] == 0.25f);
    ms_model_meta_destroy(m);
    free(t);
    m = good("colour", "rgb");
    assert_int_equal(m->colour, MS_META_COLOUR_RGB);
    ms_model_meta_destroy(m);
    m = good("window", "auto");
    assert_int_equal(m->window, MS_META_WINDOW_AUTO);
    ms_model_meta_destroy(m);
    m = good("modalities", "any");
    assert_true(m->modalities.any);
    assert_int_equal(m->modalities.count, 0);
    ms_model_meta_destroy(m);
    /* optional keys may be left out */
    static const char *const optional[] = {
        "description",   "input",         "colour",      "resize_filter", "pad_value",
        "score_channel", "temperature",   "map_channel", "map_threshold", "views",
        "training_data", "training_code", "trained",     "source",        "producer",
        "onnx_opset",    "licence",       "credits",     "card",          "x-site.note"};
    for (size_t i = 0; i < sizeof optional / sizeof *optional; i++) {
        m = good(optional[i], NULL);
        assert_null(ms_model_meta_get(m, optional[i]));
        assert_int_equal(ms_model_meta_check_scan(m, "m", NULL), MS_OK);
        ms_model_meta_destroy(m);
    }
}

static void test_bad_values(void **state) {
    (void)state;
    char long_text[2100];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    char long_short[258];
    memset(long_short, 'b', sizeof long_short - 1);
    long_short[sizeof long_short - 1] = '\0';

    bad("meta_format", "x", "format number");
    bad("meta_format", "0", "format number");
    bad("meta_format", "-1", "format number");
    bad("name", long_short, "longer than 256");
    static const char *const versions[] = {"1",       "1.02",         "01.2", "1.2.3.4",
                                           "1.2-",    "1.2+",         "v1.2", "1.2.3-a..b",
                                           "1.2.3-é", "1234567890.1", "1..2", "1.2 "};
    for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
        if (strchr(versions[i], ' ')) continue; /* trailing space: a line rule, below */
        bad("version", versions[i], "MAJOR.MINOR");
    }
    bad("description", long_text, "longer than 2048");
    bad("task", "segment", "one task: screen");
    bad("input", "nope", "no input named 'nope'");
    bad("input", "bad#name", "not a graph value name");
    bad("input_size", "16x13", "graph input 'x' is 16x12");
    bad("input_size", "12x16", "graph input 'x' is 16x12");
    static const char *const sizes[] = {"16X12",   "16x",    "x12",    "0x12",  "65536x12",
                                        "16x12x1", "+16x12", "16x-12", "16*12", "1e1x12"};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        bad("input_size", sizes[i], "expected HxW");
    bad("input_channels", "2", "expected 1 or 3");
    bad("input_channels", "4", "expected 1 or 3");
    bad("input_channels", "3.0", "expected 1 or 3");
    bad("input_channels", "1", "has 3 channels");
    bad("colour", "gray", "grey or rgb");
    bad("colour", "RGB", "grey or rgb");
    bad("resize", "fit", "stretch, letterbox or crop");
    bad("resize", "Letterbox", "stretch, letterbox or crop");
    bad("resize_filter", "nearest", "area or bilinear");
    bad("pad_value", "1.5", "[0, 1]");
    bad("pad_value", "-0.1", "[0, 1]");
    bad("pad_value", "nan", "[0, 1]");
    bad("pad_value", "0x1", "[0, 1]");
    char *t2 = with(k_full, "norm_mean", "0.5,0.5");
    char *t3 = with(t2, "norm_std", "1,1");
    expect_fail_text(t3, strlen(t3), g_net1, MS_EFORMAT, "norm_mean=0.5,0.5",
                     "2 values for 3 input channels (give 1 or 3)");
    free(t2);
    free(t3);
    bad("norm_mean", "a,b,c", "'a' is not a decimal number");
    bad("norm_mean", "1,,2", "comma-separated");
    bad("norm_mean", "1,2,3,4", "comma-separated");
    bad("norm_mean", "inf,1,1", "'inf' is not");
    bad("norm_mean", "2e6,1,1", "'2e6' is not");
    bad("norm_std", "0,1,1", "'0' is not");
    bad("norm_std", "1,-1,1", "'-1' is not");
    bad("norm_std", "0.5", "1 value, norm_mean has 3");
    static const char *const windows[] = {"File",    "40",       "40,0", "40,-1", "40,400,1",
                                          "nan,400", "0x10,400", "40,",  ",400",  "2e9,1"};
    for (size_t i = 0; i < sizeof windows / sizeof *windows; i++)
        bad("window", windows[i], "expected file, auto or CENTER,WIDTH");
    bad("output_score", "nope", "no output named 'nope' (its outputs: score, map)");
    bad("output_score", "x", "no output named 'x'");
    bad("score_channel", "2", "the output has 2 channels");
    bad("score_channel", "-1", "channel index");
    bad("score_channel", "one", "channel index");
    bad("score_kind", "prob", "logit or probability");
    bad("temperature", "0", "[0.01, 100]");
    bad("temperature", "101", "[0.01, 100]");
    bad("temperature", "-1", "[0.01, 100]");
    bad("output_map", "score", "the same output as output_score");
    bad("output_map", "nope", "no output named 'nope'");
    bad("map_channel", "2", "the output has 2 channels");
    bad("map_kind", "sigmoid", "logit or probability");
    bad("map_threshold", "1.01", "[0, 1]");
    bad("map_threshold", "-0.5", "[0, 1]");
    bad("operating_points", "sens90", "'sens90' is not NAME:THRESHOLD");
    bad("operating_points", "sens90:1.5", "threshold '1.5' is not a probability");
    bad("operating_points", "sens90:-0.1", "threshold '-0.1'");
    bad("operating_points", "sens90:0.1:0.2", "threshold '0.1:0.2'");
    bad("operating_points", "sens90:", "threshold ''");
    bad("operating_points", "Sens90:0.3", "point name 'Sens90'");
    bad("operating_points", ":0.3", "point name ''");
    bad("operating_points", "spec90:0.1,spec90:0.2", "point 'spec90' is listed twice");
    bad("operating_points", "spec90:0.1,", "none empty");
    bad("operating_points",
        "spec90:0.1,a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1,j:1,k:1,l:1,m:1,n:1,o:1,p:1", "1 to 16");
    bad("operating_points", "abcdefghijklmnopqrstuvwxyz0123456:0.5", "point name");
    bad("default_operating_point", "other", "not one of operating_points");
    bad("modalities", "cr", "'cr' is not a DICOM code string");
    bad("modalities", "CR,,DX", "none empty");
    bad("modalities", "CR,CR", "'CR' is listed twice");
    bad("modalities", "any,CR", "'any' is not a DICOM code string");
    bad("modalities", "ABCDEFGHIJKLMNOPQ", "is not a DICOM code string");
    bad("modalities", "A,B,C,D,E,F,G,H,I,J,K,L,M,N,O,P,Q", "1 to 16");
    bad("body_parts", "chest", "'chest' is not a DICOM code string");
    bad("body_parts", "CHEST WALL", "'CHEST WALL' is not");
    bad("views", "pa", "'pa' is not");
    static const char *const dates[] = {"2023-02-29", "2024-13-01", "24-01-01",
                                        "1899-12-31", "2024-1-01",  "2024-04-31",
                                        "2024/01/01", "2024-01-00", "1900-02-29"};
    for (size_t i = 0; i < sizeof dates / sizeof *dates; i++)
        bad("trained", dates[i], "YYYY-MM-DD");
    static const char *const cards[] = {"../x.md", ".hidden", "a/b.md", "a b.md", "c:d"};
    for (size_t i = 0; i < sizeof cards / sizeof *cards; i++) bad("card", cards[i], "file name");
    bad("onnx_opset", "0", "1..1000");
    bad("onnx_opset", "1001", "1..1000");
    bad("onnx_opset", "x", "1..1000");
    bad("licence", long_short, "longer than 256");
    bad("source", long_short, "longer than 256");
    bad("producer", long_short, "longer than 256");
    bad("credits", long_text, "longer than 2048");
    bad("training_data", long_text, "longer than 2048");
    bad("training_code", long_text, "longer than 2048");
}

/* Keys that need another key: remove the keys listed, the last named key must then fail. */
static void test_dependencies(void **state) {
    (void)state;
    static const struct {
        const char *remove[4];
        const char *key, *reason;
    } cases[] = {
        {{"output_score"}, "score_channel=1", "needs output_score"},
        {{"output_score", "score_channel", "temperature"},
         "score_kind=logit",
         "needs output_score"},
        {{"output_score", "score_channel", "score_kind"}, "temperature=1.5", "needs output_score"},
        {{"output_map"}, "map_channel=1", "needs output_map"},
        {{"output_map", "map_channel"}, "map_kind=probability", "needs output_map"},
        {{"output_map", "map_channel", "map_kind"}, "map_threshold=0.4", "needs output_map"},
        {{"operating_points"}, "default_operating_point=spec90", "needs operating_points"},
        {{"norm_std"}, "norm_mean=0.485,0.456,0.406", "needs norm_std (both or neither)"},
        {{"norm_mean"}, "norm_std=0.229,0.224,0.225", "needs norm_mean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *t = with(k_full, cases[i].remove[0], NULL);
        for (int r = 1; r < 4 && cases[i].remove[r]; r++) {
            char *u = with(t, cases[i].remove[r], NULL);
            free(t);
            t = u;
        }
        expect_fail_text(t, strlen(t), g_net1, MS_EFORMAT, cases[i].key, cases[i].reason);
        free(t);
    }
}

static void test_dependencies_values(void **state) {
    (void)state;
    char *t = with(k_full, "score_kind", "probability");
    expect_fail_text(t, strlen(t), g_net1, MS_EFORMAT, "temperature=1.5",
                     "temperature scaling needs score_kind=logit");
    free(t);
    t = with(k_full, "resize", "crop");
    expect_fail_text(t, strlen(t), g_net1, MS_EFORMAT, "pad_value=0.25", "only resize=letterbox");
    free(t);
    /* rgb needs 3 channels: against a 1-channel graph input */
    t = with("meta_format=1\ninput=a\n", "colour", "rgb");
    expect_fail_text(t, strlen(t), g_net2, MS_EFORMAT, "colour=rgb", "needs 3 input channels");
    free(t);
}

static void test_lines(void **state) {
    (void)state;
    static const struct {
        const char *text;
        const char *n1, *n2;
    } cases[] = {
        {"meta_format=1\nname=a\nname=b\n", "meta line 3: key 'name' repeats line 2", NULL},
        {"meta_format=1\nmeta_format=1\n", "key 'meta_format' repeats line 1", NULL},
        {"meta_format=1\nx-a=1\nx-a=2\n", "key 'x-a' repeats line 2", NULL},
        {"meta_format=1\nnorm_men=0\n", "unknown key 'norm_men'", "start with x-"},
        {"meta_format=1\nmodality=CR\n", "unknown key 'modality'", NULL},
        {"meta_format=1\nName=a\n", "unknown key 'Name'", NULL},
        {"meta_format=1\nname =a\n", "unknown key 'name '", NULL},
        {"meta_format=1\nx-=a\n", "unknown key 'x-'", NULL},
        {"meta_format=1\nX-foo=a\n", "unknown key 'X-foo'", NULL},
        {"meta_format=1\nx-Foo=a\n", "unknown key 'x-Foo'", NULL},
        {"meta_format=1\nnoequals\n", "meta line 2: 'noequals' is not key=value", NULL},
        {"meta_format=1\n=value\n", "'=value' is not key=value", NULL},
        {"meta_format=1\nname=\n", "name='': empty value", NULL},
        {"meta_format=1\nname= a\n", "leading or trailing space", NULL},
        {"meta_format=1\nname=a \n", "leading or trailing space", NULL},
        {"meta_format=1\nname=a\r\n", "line 2: byte 7 (0x0d) is a control character", NULL},
        {"meta_format=1\nname=a\tb\n", "line 2: byte 7 (0x09)", NULL},
        {"meta_format=1\nname=a\x7f\n", "(0x7f)", NULL},
        {"meta_format=1\nname=a\xff\n", "(0xff) is a control character or not UTF-8", NULL},
        {"meta_format=1\nname=\xc0\x80\n", "(0xc0)", NULL},         /* overlong NUL */
        {"meta_format=1\nname=\xe0\x9f\xbf\n", "(0xe0)", NULL},     /* overlong U+07FF */
        {"meta_format=1\nname=\xed\xa0\x80\n", "(0xed)", NULL},     /* a surrogate */
        {"meta_format=1\nname=\xf4\x90\x80\x80\n", "(0xf4)", NULL}, /* over U+10FFFF */
        {"meta_format=1\nname=\xc2\x85\n", "(0xc2)", NULL},         /* C1 control NEL */
        {"meta_format=1\nname=\xe2\x82\n", "(0xe2)", NULL},         /* truncated */
        {"meta_format=1\nname=a\x1b[31m\n", "(0x1b)", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_fail_text(cases[i].text, strlen(cases[i].text), g_net1, MS_EFORMAT, cases[i].n1,
                         cases[i].n2);
    /* a NUL byte */
    static const char nul[] = "meta_format=1\nname=a\0b\n";
    expect_fail_text(nul, sizeof nul - 1, g_net1, MS_EFORMAT, "NUL byte at offset 20", NULL);
    /* x- keys are kept and reachable */
    ms_model_meta *m = NULL;
    assert_int_equal(parse("meta_format=1\nx-my_tool.v2=a=b\n", g_net1, &m, NULL), MS_OK);
    assert_string_equal(ms_model_meta_get(m, "x-my_tool.v2"), "a=b");
    ms_model_meta_destroy(m);
}

static void test_versions(void **state) {
    (void)state;
    /* a newer format is refused before its (unknown to us) keys are looked at */
    expect_fail_text("name=a\nmeta_format=2\nnew_key=1\n", 31, g_net1, MS_EUNSUPPORTED,
                     "meta line 2: meta_format=2: newer than this medscreen reads (1)", NULL);
    expect_fail_text("meta_format=4294967295\n", 23, g_net1, MS_EUNSUPPORTED, "newer", NULL);
    expect_fail_text("meta_format=4294967296\n", 23, g_net1, MS_EFORMAT, "format number", NULL);
    expect_fail_text("meta_format=1.0\n", 16, g_net1, MS_EFORMAT, "meta_format=1.0", NULL);
    expect_fail_text("meta_format=\n", 13, g_net1, MS_EFORMAT, "meta_format", NULL);
}

static void test_limits(void **state) {
    (void)state;
    size_t n = MS_META_MAX_BYTES + 1;
    char *t = malloc(n + 1);
    assert_non_null(t);
    /* total size */
    memset(t, '\n', n);
    memcpy(t, "meta_format=1\n", 14);
    expect_fail_text(t, n, g_net1, MS_ELIMIT, "65537 bytes, at most 65536", NULL);
    /* lines */
    n = 14 + MS_META_MAX_LINES;
    expect_fail_text(t, n, g_net1, MS_ELIMIT, "more than 1024 lines", NULL);
    ms_model_meta *m = NULL;
    assert_int_equal(ms_model_meta_parse(t, n - 1, g_net1, "m", &m, NULL), MS_OK); /* 1024 */
    ms_model_meta_destroy(m);
    /* one line */
    memcpy(t, "meta_format=1\nx-a=", 18);
    memset(t + 18, 'a', MS_META_MAX_LINE - 4);
    assert_int_equal(ms_model_meta_parse(t, 14 + MS_META_MAX_LINE, g_net1, "m", &m, NULL),
                     MS_EFORMAT); /* 4096 bytes: in the line limit, over the x- value limit */
    memcpy(t + 14, "description=", 12);
    t[14 + MS_META_MAX_LINE] = 'a';
    expect_fail_text(t, 15 + MS_META_MAX_LINE, g_net1, MS_ELIMIT,
                     "line 2: 4097 bytes, at most 4096", NULL);
    free(t);
}

static void test_graph_inputs(void **state) {
    (void)state;
    ms_model_meta *m = NULL;
    ms_err err = {0};
    /* two inputs: input= is needed to check the input's size and channels */
    expect_fail_text("meta_format=1\ninput_size=8x8\n", 29, g_net2, MS_EFORMAT,
                     "input_size=8x8: needs input=NAME: the graph has 2 inputs", NULL);
    expect_fail_text("meta_format=1\ninput_channels=1\n", 31, g_net2, MS_EFORMAT,
                     "input_channels=1: needs input=NAME", NULL);
    expect_fail_text("meta_format=1\ninput=c\n", 22, g_net2, MS_EFORMAT,
                     "no input named 'c' (its inputs: a, b)", NULL);
    assert_int_equal(
        parse("meta_format=1\ninput=b\ninput_size=8x8\ninput_channels=1\n", g_net2, &m, &err),
        MS_OK);
    assert_int_equal(m->input_index, 1);
    assert_int_equal(m->graph_inputs, 2);
    ms_model_meta_destroy(m);
    /* without input= nothing names an input */
    assert_int_equal(parse("meta_format=1\n", g_net2, &m, &err), MS_OK);
    assert_null(m->input);
    assert_int_equal(m->input_index, UINT32_MAX);
    ms_model_meta_destroy(m);
    /* a score output must be Cx1x1 */
    char *t = with(k_full, "output_map", NULL);
    char *u = with(t, "map_channel", NULL);
    free(t);
    t = with(u, "map_kind", NULL);
    free(u);
    u = with(t, "map_threshold", NULL);
    free(t);
    t = with(u, "output_score", "map");
    expect_fail_text(t, strlen(t), g_net1, MS_EFORMAT, "output_score=map",
                     "one value per channel (Cx1x1), 'map' is 2x16x12");
    free(t);
    free(u);
}

/* Without a graph: every value is still checked, names and shapes cannot be. */
static void test_no_graph(void **state) {
    (void)state;
    ms_model_meta *m = NULL;
    ms_err err = {0};
    char *t = with(k_full, "input_size", "1x1");
    char *u = with(t, "output_score", "anything");
    assert_int_equal(parse(u, NULL, &m, &err), MS_OK);
    assert_int_equal(m->input_index, UINT32_MAX);
    assert_int_equal(m->score_index, UINT32_MAX);
    assert_int_equal(m->graph_inputs, 0);
    assert_int_equal(ms_model_meta_check_scan(m, "m.msm", &err), MS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "the graph has 0 inputs"));
    ms_model_meta_destroy(m);
    free(t);
    free(u);
    expect_fail_text("meta_format=1\ninput_size=0x1\n", 29, NULL, MS_EFORMAT, "expected HxW", NULL);
    assert_int_equal(ms_model_meta_parse(NULL, 0, NULL, NULL, &m, &err), MS_OK);
    assert_int_equal(m->format, 0);
    assert_int_equal(m->line_count, 0);
    ms_model_meta_destroy(m);
    assert_int_equal(ms_model_meta_parse(NULL, 1, NULL, NULL, &m, &err), MS_EINVAL);
    assert_int_equal(ms_model_meta_parse("a", 1, NULL, NULL, NULL, &err), MS_EINVAL);
}

static void test_scan_required(void **state) {
    (void)state;
    ms_model_meta *m = NULL;
    ms_err err = {0};
    assert_int_equal(parse(k_min_scan, g_net1, &m, &err), MS_OK);
    assert_int_equal(ms_model_meta_check_scan(m, "m.msm", &err), MS_OK);
    ms_model_meta_destroy(m);
    static const char *const required[] = {"name",       "version",        "task",
                                           "input_size", "input_channels", "resize",
                                           "window",     "output_score",   "operating_points",
                                           "modalities", "body_parts"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        char *t = with(k_min_scan, required[i], NULL);
        if (strcmp(required[i], "output_score") == 0) { /* score_kind needs it */
            char *u = with(t, "score_kind", NULL);
            free(t);
            t = u;
        }
        assert_int_equal(parse(t, g_net1, &m, &err), MS_OK);
        assert_int_equal(ms_model_meta_check_scan(m, "m.msm", &err), MS_EUNSUPPORTED);
        char want[128];
        snprintf(want, sizeof want, "m.msm: not usable by scan: metadata lacks %s", required[i]);
        if (strstr(err.msg, want) != err.msg) {
            print_error("'%s' does not start with '%s'\n", err.msg, want);
            fail();
        }
        ms_model_meta_destroy(m);
        free(t);
    }
    /* norm_mean and norm_std go together; both missing: both listed */
    char *t = with(k_min_scan, "norm_mean", NULL);
    char *u = with(t, "norm_std", NULL);
    assert_int_equal(parse(u, g_net1, &m, &err), MS_OK);
    assert_int_equal(ms_model_meta_check_scan(m, "m", &err), MS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "lacks norm_mean, norm_std"));
    ms_model_meta_destroy(m);
    free(t);
    free(u);
    /* several missing: every one is listed */
    assert_int_equal(parse("meta_format=1\nname=a\n", g_net1, &m, &err), MS_OK);
    assert_int_equal(ms_model_meta_check_scan(m, "m", &err), MS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "lacks version, task, input_size, input_channels, resize, "
                                    "norm_mean, norm_std, window, output_score, score_kind, "
                                    "operating_points, modalities, body_parts"));
    ms_model_meta_destroy(m);
    /* more than one point needs a default */
    t = with(k_min_scan, "operating_points", "a:0.2,b:0.4");
    assert_int_equal(parse(t, g_net1, &m, &err), MS_OK);
    assert_int_equal(ms_model_meta_check_scan(m, "m", &err), MS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "lacks default_operating_point"));
    ms_model_meta_destroy(m);
    free(t);
    /* a region map needs its kind */
    t = with(k_min_scan, "output_map", "map");
    assert_int_equal(parse(t, g_net1, &m, &err), MS_OK);
    assert_int_equal(ms_model_meta_check_scan(m, "m", &err), MS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "lacks map_kind"));
    ms_model_meta_destroy(m);
    free(t);
    /* scan feeds one input */
    assert_int_equal(parse("meta_format=1\nname=a\nversion=1.0\ntask=screen\ninput=a\n"
                           "input_size=8x8\ninput_channels=1\nresize=crop\nnorm_mean=0\n"
                           "norm_std=1\nwindow=auto\noutput_score=z\nscore_kind=logit\n"
                           "operating_points=p:0.5\nmodalities=CR\nbody_parts=CHEST\n",
                           g_net2, &m, &err),
                     MS_OK);
    assert_int_equal(ms_model_meta_check_scan(m, "m", &err), MS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "the graph has 2 inputs, scan feeds exactly one"));
    ms_model_meta_destroy(m);
    /* no metadata, legacy metadata */
    assert_int_equal(ms_model_meta_check_scan(NULL, "m", &err), MS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "m: not usable by scan: the model has no metadata"));
    assert_int_equal(parse("name=a\n", g_net1, &m, &err), MS_OK);
    assert_int_equal(ms_model_meta_check_scan(m, NULL, &err), MS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "<model>: not usable by scan: its metadata has no "
                                    "meta_format=1 line"));
    ms_model_meta_destroy(m);
}

/* Without meta_format: indexed as before meta format 1, nothing checked. */
static void test_legacy(void **state) {
    (void)state;
    ms_model_meta *m = NULL;
    static const char legacy[] = "name=tiny\nnoequals\nthreshold=0.5\n=x\nname=second\n"
                                 "bad value \xff\x01=\x1b\nx=\nmeta_format\n";
    assert_int_equal(ms_model_meta_parse(legacy, sizeof legacy - 1, g_net1, "m", &m, NULL), MS_OK);
    assert_int_equal(m->format, 0);
    assert_null(m->name); /* no typed fields */
    assert_int_equal(m->line_count, 5);
    assert_string_equal(ms_model_meta_get(m, "name"), "tiny");
    assert_string_equal(m->values[2], "second");
    assert_string_equal(ms_model_meta_get(m, "threshold"), "0.5");
    assert_null(ms_model_meta_get(m, "noequals"));
    assert_null(ms_model_meta_get(m, "meta_format"));
    assert_string_equal(ms_model_meta_get(m, "x"), "");
    assert_string_equal(ms_model_meta_get(m, "bad value \xff\x01"), "\x1b");
    ms_model_meta_destroy(m);
    /* a NUL byte in legacy text cuts that line, as before */
    static const char nul[] = "a=b\0c\nd=e";
    assert_int_equal(ms_model_meta_parse(nul, sizeof nul - 1, NULL, "m", &m, NULL), MS_OK);
    assert_string_equal(ms_model_meta_get(m, "a"), "b");
    assert_string_equal(ms_model_meta_get(m, "d"), "e");
    ms_model_meta_destroy(m);
}

/* ms_net_from_msm checks meta format 1 against the graph; every consumer sees it. */
static void test_net_hook(void **state) {
    (void)state;
    ms_net *net = NULL;
    ms_err err = {0};
    assert_int_equal(build(k_graph1, k_full, strlen(k_full), &net, &err), MS_OK);
    const ms_model_meta *m = ms_net_model_meta(net);
    assert_non_null(m);
    assert_int_equal(m->format, 1);
    assert_int_equal(m->score_index, 0);
    assert_string_equal(ms_net_meta(net, "name"), "Thorax screen \xc3\xbc");
    assert_string_equal(ms_net_meta(net, "operating_points"), "sens90:0.31,spec90:0.62,youden:0.5");
    assert_null(ms_net_meta(net, "absent"));
    assert_null(ms_net_meta(net, NULL));
    ms_net_destroy(net);
    /* a bad value fails the load, naming the model, the line, the key and the value */
    char *t = with(k_full, "input_size", "512x512");
    assert_int_equal(build(k_graph1, t, strlen(t), &net, &err), MS_EFORMAT);
    assert_non_null(strstr(err.msg, "test.msm: meta line 7: input_size=512x512: the graph input "
                                    "'x' is 16x12 (HxW)"));
    free(t);
    expect_fail_text("meta_format=2\n", 14, NULL, MS_EUNSUPPORTED, "newer", NULL);
    assert_int_equal(build(k_graph1, "meta_format=2\n", 14, &net, &err), MS_EUNSUPPORTED);
    /* legacy metadata loads; no meta at all gives NULL */
    static const char legacy[] = "name=tiny\nnoequals\nthreshold=0.5\nname=second";
    assert_int_equal(build(k_graph1, legacy, sizeof legacy - 1, &net, &err), MS_OK);
    assert_int_equal(ms_net_model_meta(net)->format, 0);
    assert_string_equal(ms_net_meta(net, "name"), "tiny");
    ms_net_destroy(net);
    assert_int_equal(build(k_graph1, NULL, 0, &net, &err), MS_OK);
    assert_null(ms_net_model_meta(net));
    assert_null(ms_net_meta(net, "name"));
    assert_int_equal(ms_model_meta_check_scan(ms_net_model_meta(net), "x", &err), MS_EUNSUPPORTED);
    ms_net_destroy(net);
}

/* Every allocation of a parse can fail: MS_ENOMEM, nothing leaked. */
static void test_alloc_failures(void **state) {
    (void)state;
    for (int strict = 0; strict < 2; strict++) {
        const char *text = strict ? k_full : "name=a\nb=c\n";
        for (long k = 1;; k++) {
            hook_state hs = {.fail_at = k};
            hooks_install(&hs);
            ms_model_meta *m = NULL;
            ms_status st = parse(text, g_net1, &m, NULL);
            ms_model_meta_destroy(m);
            ms_alloc_set_hooks(NULL);
            assert_int_equal(hs.live, 0);
            if (st == MS_OK) break;
            assert_int_equal(st, MS_ENOMEM);
            assert_true(k < 100);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_good_values),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_dependencies),
        cmocka_unit_test(test_dependencies_values),
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_graph_inputs),
        cmocka_unit_test(test_no_graph),
        cmocka_unit_test(test_scan_required),
        cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_net_hook),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
