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
#define LEGO_MAX_TILE_SIDE 8
#define LEGO_MAX_TILE (LEGO_MAX_TILE_SIDE * LEGO_MAX_TILE_SIDE) /* largest tile: 8 x 8 */
#define LEGO_MAX_CONCAT 8

/* ---- weights ----------------------------------------------------------- */

typedef enum { LEGO_F32 = 0, LEGO_F16 = 1, LEGO_I8 = 2 } lego_dtype_t;

typedef enum {
    LEGO_W_DENSE = 0, /* rows x cols values, row-major */
    LEGO_W_TILED = 1  /* a codebook of tiles + one packed index per tile */
} lego_weight_kind_t;

/* One layer's weight viewed as a (rows = out channels) x (cols = reduction) matrix, with its
 * per-row scale and bias. The effective weight is values * row_scale[row]. An LEGO_I8 array
 * holds int8 codes of one power of two, 2^exp, zero-initialised to 1: dense int8 weights keep
 * values_exp 0 (their row scales carry the magnitude); an int8 codebook needs row scales, which
 * apply its 2^values_exp once per row, so the kernels decode plain codes. */
typedef struct {
    int32_t kind;                 /* lego_weight_kind_t */
    int32_t dtype;                /* lego_dtype_t of `values` */
    int32_t rows, cols;           /* logical matrix shape */
    int32_t tile_rows, tile_cols; /* tile shape; dense weights are walked in tiles too */
    int32_t index_bits;           /* width of one packed index (tiled) */
    int32_t entries;              /* tiled: codebook entries (K) */
    const void *values;           /* dense: rows x cols; tiled: codebook, K x (tile_rows*tile_cols) */
    const uint8_t *indices;       /* tiled: packed, tile-row-major */
    int32_t side_dtype;           /* lego_dtype_t of row_scale and bias */
    const void *row_scale;        /* per output channel, or NULL for 1 */
    const void *bias;             /* per output channel, or NULL for 0 */
    int32_t values_exp, scale_exp, bias_exp; /* LEGO_I8 arrays: each code stands for 2^exp */
} lego_weights_t;

/* 2^e as a float, for e in the normal range [-126, 127]. */
static inline float lego_pow2(int32_t e)
{
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)(127 + e) << 23;
    return v.f;
}

/* IEEE half to float, exactly (used only when decoding a tile or a side value). */
static inline float lego_f16_to_f32(uint16_t h)
{
#if defined(__ARM_FP16_FORMAT_IEEE) && defined(__ARM_FP)
    /* -mfp16-format=ieee: one VCVTB instruction on cores with an FPU. */
    union { uint16_t u; __fp16 f; } half;
    half.u = h;
    return (float)half.f;
#else
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    union { uint32_t u; float f; } v;
    if (exp == 0u) { /* zero or subnormal: man * 2^-24 */
        v.f = (float)man * 5.9604644775390625e-08f;
        v.u |= sign;
    } else if (exp == 31u) {
        v.u = sign | 0x7f800000u | (man << 13);
    } else {
        v.u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    return v.f;
#endif
}

/* Index of tile t in a packed stream (LSB first; the stream carries 2 padding bytes). */
static inline uint32_t lego_unpack_index(const uint8_t *stream, uint32_t t, uint32_t bits)
{
    uint32_t bit = t * bits;
    const uint8_t *p = stream + (bit >> 3);
    uint32_t word = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
    return (word >> (bit & 7u)) & ((1u << bits) - 1u);
}

/* Reads packed indices in stream order, a byte at a time, without recomputing each one's address. */
typedef struct {
    const uint8_t *next;
    uint32_t buf, have;
} lego_index_reader_t;

static inline uint32_t lego_read_index(lego_index_reader_t *r, uint32_t bits)
{
    while (r->have < bits) {
        r->buf |= (uint32_t)*r->next++ << r->have;
        r->have += 8;
    }
    const uint32_t v = r->buf & ((1u << bits) - 1u);
    r->buf >>= bits;
    r->have -= bits;
    return v;
}

/* Codebook entry `index` of a tiled weight as float (tile_rows x tile_cols), without the row scale.
 * Inline: a fully connected layer with small tiles calls it once per weight or two. */
static inline void lego_weights_entry(const lego_weights_t *w, uint32_t index, float *tile)
{
    const int32_t n = w->tile_rows * w->tile_cols, base = (int32_t)index * n;
    switch (w->dtype) { /* one branch per entry, not per value */
    case LEGO_F16:
        for (int32_t i = 0; i < n; i++) tile[i] = lego_f16_to_f32(((const uint16_t *)w->values)[base + i]);
        break;
    case LEGO_I8:
        for (int32_t i = 0; i < n; i++) tile[i] = (float)((const int8_t *)w->values)[base + i];
        break;
    default:
        for (int32_t i = 0; i < n; i++) tile[i] = ((const float *)w->values)[base + i];
    }
}

/* Decode tile (tr, tc) as float into `tile` (tile_rows x tile_cols, row-major), without the
 * row scale; edge tiles are zero-padded. The tile shape inside the matrix goes to *nr, *nc. */
void lego_weights_tile(const lego_weights_t *w, int32_t tr, int32_t tc, float *tile,
                       int32_t *nr, int32_t *nc);

/* Decode the 4x4 block of the matrix at (r0, c0), any tile shape, without the row scale;
 * zero outside the matrix. The blocked kernels work on these blocks whatever the tiles are. */
void lego_weights_block4x4(const lego_weights_t *w, int32_t r0, int32_t c0, float *block);

/* Row scale (1 if none) and bias (0 if none) of one output channel. */
float lego_weights_scale(const lego_weights_t *w, int32_t row);
float lego_weights_bias(const lego_weights_t *w, int32_t row);

int lego_weights_check(const lego_weights_t *w);

/* Start `n` outputs of each row with bias + residual (residual may be NULL, or `out` itself);
 * with row scales, lego_weights_finish applies scale and bias once at the end instead.
 * Rows are `stride` floats apart and `residual` is laid out like `out`. */
void lego_weights_start(const lego_weights_t *w, float *out, int32_t n, int32_t stride, int32_t rows,
                        const float *residual);
void lego_weights_finish(const lego_weights_t *w, float *out, int32_t n, int32_t stride, int32_t rows);

/* ---- convolution and fully connected ----------------------------------- */

typedef struct {
    int32_t in_c, in_h, in_w;
    int32_t out_c, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w;
    int32_t pad_top, pad_left, pad_bottom, pad_right;
    int32_t groups;
    int32_t scratch_planes; /* padded input planes the scratch buffer holds (0: none) */
} lego_conv2d_params_t;

#define LEGO_MAX_CONV_SLOTS 8

/* NCHW convolution (batch 1): out = conv(in) + residual (a fused residual Add; NULL for none,
 * may be `out` itself). lego_conv2d_ref_f32 is the plain
 * reference; lego_conv2d_f32 is the blocked kernel (the reference when built with
 * -DLEGO_REFERENCE_KERNELS). `scratch` holds p->scratch_planes zero-padded input planes of
 * (in_h + pads) x (in_w + pads) floats; it may be NULL for unpadded convs. */
int lego_conv2d_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *in,
                    const float *residual, float *out, float *scratch);
int lego_conv2d_ref_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *in,
                        const float *residual, float *out, float *scratch);

/* NCHW transposed convolution (ConvTranspose, batch 1) with the same parameters: in_* and out_*
 * are its own input and output; pad_top and pad_left are ONNX's begin pads. */
int lego_conv_transpose2d_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *in, float *out);

/* Padded planes the blocked kernel needs for this conv, or -1 if it does not block it (the
 * reference runs). The compiler sizes scratch with the same rule (ops.conv_scratch_floats). */
int32_t lego_conv_scratch_planes(const lego_conv2d_params_t *p);

typedef struct {
    int32_t rows;         /* independent input rows (leading dims of a MatMul) */
    int32_t in_features;  /* K */
    int32_t out_features; /* N */
} lego_fc_params_t;

/* out[m][n] = bias[n] + sum_k W[n][k] * in[m][k]. */
int lego_fc_f32(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, float *out);
int lego_fc_ref_f32(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, float *out);

typedef struct {
    int32_t batch, m, k, n;
    int32_t b_batch_stride; /* k * n, or 0: one right matrix for every left one */
} lego_matmul_params_t;

/* out[t] = a[t] (m x k) @ b[t] (k x n) for t < batch, both operands activations (attention). */
int lego_matmul_f32(const lego_matmul_params_t *p, const float *a, const float *b, float *out);

/* ---- elementwise -------------------------------------------------------- */

typedef enum {
    LEGO_RELU = 0, LEGO_CLIP = 1, LEGO_LEAKY_RELU = 2, LEGO_SIGMOID = 3,
    LEGO_TANH = 4, LEGO_HARD_SIGMOID = 5, LEGO_HARD_SWISH = 6,
    LEGO_EXP = 7, LEGO_LOG = 8, LEGO_SQRT = 9, LEGO_NEG = 10, LEGO_ABS = 11, LEGO_RECIPROCAL = 12,
    LEGO_ERF = 13, LEGO_ELU = 14, LEGO_SELU = 15, LEGO_SOFTPLUS = 16, LEGO_SOFTSIGN = 17,
    LEGO_GELU = 18, LEGO_GELU_TANH = 19, LEGO_MISH = 20
} lego_unary_op_t;

typedef struct {
    int32_t op;   /* lego_unary_op_t */
    int32_t size;
    float alpha;  /* Clip: min; LeakyRelu: slope; HardSigmoid, Elu, Selu: alpha */
    float beta;   /* Clip: max; HardSigmoid: beta; Selu: gamma */
} lego_unary_params_t;

/* May run in place (in == out). lego_unary_f32 runs the ops that need no maths library (ReLU, clipping, the
 * hard activations, Neg, Abs, Reciprocal, Softsign); each of the others has its own kernel, so that a firmware
 * links only the library functions its model uses. */
int lego_unary_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_sigmoid_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_tanh_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_exp_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_log_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_sqrt_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_erf_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_elu_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_selu_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_softplus_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_gelu_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_gelu_tanh_f32(const lego_unary_params_t *p, const float *in, float *out);
int lego_mish_f32(const lego_unary_params_t *p, const float *in, float *out);

/* An activation's QuantizeLinear and DequantizeLinear (QDQ models), in float: each value is divided by the
 * scale (divided, as onnxruntime does, not multiplied by its inverse), clipped to the integer type's range
 * less the zero point, rounded half to even (rintf) and multiplied back. May run in place. */
typedef struct {
    int32_t size;
    float scale;
    float lo; /* qmin - zero point */
    float hi; /* qmax - zero point */
} lego_fake_quantize_params_t;

int lego_fake_quantize_f32(const lego_fake_quantize_params_t *p, const float *in, float *out);

typedef enum {
    LEGO_ADD = 0, LEGO_SUB = 1, LEGO_MUL = 2, LEGO_DIV = 3, LEGO_PRELU = 4, LEGO_MAX = 5, LEGO_MIN = 6, LEGO_POW = 7
} lego_binary_op_t;

typedef struct {
    int32_t op;   /* lego_binary_op_t */
    int32_t ndim; /* 1..LEGO_MAX_DIMS, after merging contiguous dims */
    int32_t shape[LEGO_MAX_DIMS];
    int32_t a_stride[LEGO_MAX_DIMS]; /* element strides, 0 where broadcast */
    int32_t b_stride[LEGO_MAX_DIMS];
} lego_binary_params_t;

/* out = a (op) b with numpy broadcasting; may run in place on a. Pow has its own kernel (it links powf). */
int lego_binary_f32(const lego_binary_params_t *p, const float *a, const float *b, float *out);
int lego_pow_f32(const lego_binary_params_t *p, const float *a, const float *b, float *out);

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
    int32_t ndim;
    int32_t out_shape[LEGO_MAX_DIMS];
    int32_t in_stride[LEGO_MAX_DIMS]; /* the input's stride along each output axis (negative steps back) */
    int32_t offset;                   /* the input element of the output's first */
} lego_strided_copy_params_t;

/* out[i0..] = in[offset + sum_d i_d * in_stride[d]]: Transpose and Slice. */
int lego_strided_copy_f32(const lego_strided_copy_params_t *p, const float *in, float *out);

typedef enum { LEGO_HALF_PIXEL = 0, LEGO_ASYMMETRIC = 1, LEGO_ALIGN_CORNERS = 2, LEGO_PYTORCH_HALF_PIXEL = 3,
               LEGO_TF_HALF_PIXEL_FOR_NN = 4 } lego_resize_coord_t;
typedef enum { LEGO_ROUND_PREFER_FLOOR = 0, LEGO_ROUND_PREFER_CEIL = 1, LEGO_FLOOR = 2, LEGO_CEIL = 3 } lego_nearest_t;

typedef struct {
    int32_t channels, in_h, in_w, out_h, out_w;
    int32_t linear;       /* 0: nearest, 1: (bi)linear */
    int32_t coord;        /* lego_resize_coord_t: output to input coordinates, as ONNX defines them */
    int32_t nearest_mode; /* lego_nearest_t */
    float scale_h, scale_w;
} lego_resize_params_t;

/* ONNX Resize of an NCHW (or NCW, in_h = out_h = 1) tensor, as onnxruntime computes it. */
int lego_resize_f32(const lego_resize_params_t *p, const float *in, float *out);

typedef struct {
    int32_t outer, axis_len, inner;
} lego_softmax_params_t;

/* May run in place. */
int lego_softmax_f32(const lego_softmax_params_t *p, const float *in, float *out);

typedef struct {
    int32_t outer, size; /* `outer` rows of `size` values, each normalised on its own */
    float epsilon;
} lego_layernorm_params_t;

/* (x - mean) / sqrt(var + epsilon) * scale + bias per row, scale and bias `size` long; may run in place. */
int lego_layernorm_f32(const lego_layernorm_params_t *p, const float *in, const float *scale, const float *bias,
                       float *out);

#ifdef __cplusplus
}
#endif

#endif /* LEGO_RUNTIME_H */
