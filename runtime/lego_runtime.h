/*
 * lego2c runtime: the C99 kernels that generated models call.
 *
 * Every kernel takes a small parameter struct (shapes, strides, attributes), its tensors as
 * plain float pointers, and returns LEGO_OK or a negative error code. Conv and FC weights
 * come as a lego_weights_t: either a dense float matrix or tiles decoded on the fly from a
 * codebook through bit-packed indices (see docs/format.md). No kernel allocates memory.
 */
#ifndef LEGO_RUNTIME_H
#define LEGO_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LEGO_OK 0
#define LEGO_ERR_NULL (-1)  /* a NULL pointer was passed */
#define LEGO_ERR_PARAM (-2) /* a parameter is out of range */

#define LEGO_MAX_DIMS 6
#define LEGO_MAX_TILE 64 /* largest tile: 8 x 8 */
#define LEGO_MAX_CONCAT 8

/* ---- weights ----------------------------------------------------------- */

typedef enum {
    LEGO_W_DENSE_F32 = 0, /* rows x cols float32, row-major */
    LEGO_W_TILED_F32 = 1  /* codebook of float32 tiles + packed indices */
} lego_weight_kind_t;

/* One layer's weight viewed as a (rows = out channels) x (cols = reduction) matrix. */
typedef struct {
    int32_t kind;                 /* lego_weight_kind_t */
    int32_t rows, cols;           /* logical matrix shape */
    int32_t tile_rows, tile_cols; /* tile shape; dense weights are walked in tiles too */
    int32_t index_bits;           /* width of one packed index */
    const float *dense;           /* LEGO_W_DENSE_F32 */
    const float *codebook;        /* LEGO_W_TILED_F32: K x (tile_rows*tile_cols) */
    const uint8_t *indices;       /* LEGO_W_TILED_F32: packed, tile-row-major */
} lego_weights_t;

/* Index of tile t in a packed stream (LSB first; the stream carries 2 padding bytes). */
static inline uint32_t lego_unpack_index(const uint8_t *stream, uint32_t t, uint32_t bits)
{
    uint32_t bit = t * bits;
    const uint8_t *p = stream + (bit >> 3);
    uint32_t word = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
    return (word >> (bit & 7u)) & ((1u << bits) - 1u);
}

/* Copy tile (tr, tc) into `tile` (tile_rows x tile_cols, row-major); edge tiles are
 * zero-padded. Returns the tile shape actually inside the matrix via *nr, *nc. */
void lego_weights_tile(const lego_weights_t *w, int32_t tr, int32_t tc, float *tile,
                       int32_t *nr, int32_t *nc);

int lego_weights_check(const lego_weights_t *w);

/* ---- convolution and fully connected ----------------------------------- */

typedef struct {
    int32_t in_c, in_h, in_w;
    int32_t out_c, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w;
    int32_t pad_top, pad_left, pad_bottom, pad_right;
    int32_t groups;
} lego_conv2d_params_t;

/* NCHW convolution (batch 1); bias may be NULL. */
int lego_conv2d_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *bias,
                    const float *in, float *out);

typedef struct {
    int32_t rows;         /* independent input rows (leading dims of a MatMul) */
    int32_t in_features;  /* K */
    int32_t out_features; /* N */
} lego_fc_params_t;

/* out[m][n] = bias[n] + sum_k W[n][k] * in[m][k]; bias may be NULL. */
int lego_fc_f32(const lego_fc_params_t *p, const lego_weights_t *w, const float *bias,
                const float *in, float *out);

/* ---- elementwise -------------------------------------------------------- */

typedef enum {
    LEGO_RELU = 0, LEGO_CLIP = 1, LEGO_LEAKY_RELU = 2, LEGO_SIGMOID = 3,
    LEGO_TANH = 4, LEGO_HARD_SIGMOID = 5, LEGO_HARD_SWISH = 6
} lego_unary_op_t;

typedef struct {
    int32_t op;   /* lego_unary_op_t */
    int32_t size;
    float alpha;  /* Clip: min; LeakyRelu: slope; HardSigmoid: alpha */
    float beta;   /* Clip: max; HardSigmoid: beta */
} lego_unary_params_t;

/* May run in place (in == out). */
int lego_unary_f32(const lego_unary_params_t *p, const float *in, float *out);

typedef enum { LEGO_ADD = 0, LEGO_SUB = 1, LEGO_MUL = 2, LEGO_DIV = 3, LEGO_PRELU = 4 } lego_binary_op_t;

typedef struct {
    int32_t op;   /* lego_binary_op_t */
    int32_t ndim; /* 1..LEGO_MAX_DIMS, after merging contiguous dims */
    int32_t shape[LEGO_MAX_DIMS];
    int32_t a_stride[LEGO_MAX_DIMS]; /* element strides, 0 where broadcast */
    int32_t b_stride[LEGO_MAX_DIMS];
} lego_binary_params_t;

/* out = a (op) b with numpy broadcasting; may run in place on a. */
int lego_binary_f32(const lego_binary_params_t *p, const float *a, const float *b, float *out);

/* ---- pooling and reductions --------------------------------------------- */

typedef struct {
    int32_t channels, in_h, in_w, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w;
    int32_t pad_top, pad_left, pad_bottom, pad_right;
    int32_t is_max;
    int32_t count_include_pad;
} lego_pool2d_params_t;

int lego_pool2d_f32(const lego_pool2d_params_t *p, const float *in, float *out);

typedef struct {
    int32_t outer, reduce, inner;
    int32_t is_max; /* else mean */
} lego_reduce_params_t;

int lego_reduce_f32(const lego_reduce_params_t *p, const float *in, float *out);

/* ---- data movement ------------------------------------------------------ */

typedef struct {
    int32_t outer;
    int32_t out_inner; /* elements per outer step in the output */
    int32_t n_inputs;
    int32_t in_inner[LEGO_MAX_CONCAT];
} lego_concat_params_t;

int lego_concat_f32(const lego_concat_params_t *p, const float *const *in, float *out);

typedef struct {
    int32_t ndim;
    int32_t in_shape[LEGO_MAX_DIMS];
    int32_t out_shape[LEGO_MAX_DIMS];
    int32_t pad_begin[LEGO_MAX_DIMS];
    float value;
} lego_pad_params_t;

int lego_pad_f32(const lego_pad_params_t *p, const float *in, float *out);

typedef struct {
    int32_t outer, axis_len, inner;
} lego_softmax_params_t;

/* May run in place. */
int lego_softmax_f32(const lego_softmax_params_t *p, const float *in, float *out);

#ifdef __cplusplus
}
#endif

#endif /* LEGO_RUNTIME_H */
