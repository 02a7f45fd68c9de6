/* Shared by net.c (graph parsing and validation) and net_session.c (planning and running). */
#ifndef MEDSCREEN_NET_INTERNAL_H
#define MEDSCREEN_NET_INTERNAL_H

#include "medscreen/meta.h"
#include "medscreen/net.h"

typedef enum net_op {
    OP_CONV2D = 0,
    OP_BATCHNORM,
    OP_ACT,
    OP_MAXPOOL,
    OP_AVGPOOL,
    OP_GLOBALAVGPOOL,
    OP_GLOBALMAXPOOL,
    OP_UPSAMPLE,
    OP_CONCAT,
    OP_ADD,
    OP_MUL,
    OP_FC,
    OP_FLATTEN,
    OP_SOFTMAX,
    OP_COUNT
} net_op;

/* A value: a graph input or a node output, with its per-image shape. */
typedef struct net_value {
    const char *name;
    int32_t c, h, w;
    uint32_t line;      /* where it is defined */
    uint32_t def_time;  /* 0 for inputs, node index + 1 for node outputs */
    uint32_t last_time; /* last node (index + 1) reading it; nodes + 1 for outputs */
} net_value;

typedef struct net_node {
    net_op op;
    uint32_t line;
    const char *name;
    uint32_t in_first, in_count; /* into ms_net.in_idx */
    uint32_t out;
    ms_conv2d conv;
    ms_pool2d pool;
    ms_act act;
    float alpha, eps;
    ms_upsample_mode mode;
    bool align;
    int32_t fc_out;
    const float *weight, *bias, *mean, *var;
    size_t workspace; /* floats (conv2d) */
    float *wino_u;    /* conv2d: Winograd-transformed weights where that path pays (net-owned) */
    size_t fast_workspace; /* floats of workspace the fast path (Winograd or packed) needs */
    float *packed_w;       /* conv2d: weights packed for the direct kernel where that pays */
    /* A first layer fused into the packed layer that reads it (ms_conv2d_packed_fusable):
     * the first has fused_into set and is skipped, its output never stored; the packed layer
     * has fused_pre = the first's index + 1 and computes both. Sessions with direct_only run
     * them apart. */
    bool fused_into;
    uint32_t fused_pre;
} net_node;

struct ms_net {
    ms_msm *msm;
    size_t fast_bytes; /* weight copies of the fast paths (ms_net_fast_weight_bytes) */
    char *name;
    char *text; /* the graph text, split in place; names point into it */
    net_value *values;
    uint32_t value_count;
    net_node *nodes;
    uint32_t node_count;
    uint32_t *in_idx;
    uint32_t in_idx_count;
    uint32_t *inputs, input_count;
    uint32_t *outputs, output_count;
    size_t workspace;    /* max over conv2d nodes and both paths, floats */
    ms_model_meta *meta; /* the `meta` tensor parsed and checked (meta.c); NULL without one */
};

static inline size_t net_value_count(const net_value *v) {
    return (size_t)v->c * (size_t)v->h * (size_t)v->w;
}

#endif
