/* Activations and broadcasting binary ops. */
#include "lego_runtime.h"

#include <math.h>

int lego_unary_f32(const lego_unary_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    const float a = p->alpha, b = p->beta;
    const int32_t n = p->size;
    /* One loop per op, so the common ones (ReLU, clipping) vectorise and carry no dispatch. */
    switch (p->op) {
    case LEGO_RELU:
        for (int32_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
        break;
    case LEGO_CLIP:
        for (int32_t i = 0; i < n; i++) out[i] = in[i] < a ? a : (in[i] > b ? b : in[i]);
        break;
    case LEGO_LEAKY_RELU:
        for (int32_t i = 0; i < n; i++) out[i] = in[i] >= 0.0f ? in[i] : a * in[i];
        break;
    case LEGO_HARD_SIGMOID:
        for (int32_t i = 0; i < n; i++) {
            const float y = a * in[i] + b;
            out[i] = y < 0.0f ? 0.0f : (y > 1.0f ? 1.0f : y);
        }
        break;
    case LEGO_HARD_SWISH:
        for (int32_t i = 0; i < n; i++) {
            float h = in[i] / 6.0f + 0.5f;
            h = h < 0.0f ? 0.0f : (h > 1.0f ? 1.0f : h);
            out[i] = in[i] * h;
        }
        break;
    case LEGO_NEG: for (int32_t i = 0; i < n; i++) out[i] = -in[i]; break;
    case LEGO_ABS: for (int32_t i = 0; i < n; i++) out[i] = fabsf(in[i]); break;
    case LEGO_RECIPROCAL: for (int32_t i = 0; i < n; i++) out[i] = 1.0f / in[i]; break;
    case LEGO_SOFTSIGN:
        for (int32_t i = 0; i < n; i++) out[i] = in[i] / (1.0f + fabsf(in[i]));
        break;
    default: return LEGO_ERR_PARAM;
    }
    return LEGO_OK;
}

/* Ops that call the maths library get a kernel each: a firmware links only the library functions its model's
 * ops use (erff, powf and the like take kilobytes of flash each). `a` and `b` are the params' alpha and beta. */
#define LEGO_MATH_KERNEL(name, expr)                                                \
    int lego_##name##_f32(const lego_unary_params_t *p, const float *in, float *out) \
    {                                                                               \
        if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;           \
        const float a = p->alpha, b = p->beta;                                      \
        (void)a;                                                                    \
        (void)b;                                                                    \
        for (int32_t i = 0; i < p->size; i++) {                                     \
            const float x = in[i];                                                  \
            out[i] = (expr);                                                        \
        }                                                                           \
        return LEGO_OK;                                                             \
    }

/* log(1 + e^x) without overflow for large x. */
static float lego_softplus(float x) { return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }

LEGO_MATH_KERNEL(sigmoid, 1.0f / (1.0f + expf(-x)))
LEGO_MATH_KERNEL(tanh, tanhf(x))
LEGO_MATH_KERNEL(exp, expf(x))
LEGO_MATH_KERNEL(log, logf(x))
LEGO_MATH_KERNEL(sqrt, sqrtf(x))
LEGO_MATH_KERNEL(erf, erff(x))
LEGO_MATH_KERNEL(elu, x > 0.0f ? x : a * expm1f(x))
LEGO_MATH_KERNEL(selu, b * (x > 0.0f ? x : a * expm1f(x)))
LEGO_MATH_KERNEL(softplus, lego_softplus(x))
LEGO_MATH_KERNEL(gelu, 0.5f * x * (1.0f + erff(x * 0.70710678f)))
LEGO_MATH_KERNEL(gelu_tanh, 0.5f * x * (1.0f + tanhf(0.79788456f * (x + 0.044715f * x * x * x))))
LEGO_MATH_KERNEL(mish, x * tanhf(lego_softplus(x)))

int lego_fake_quantize_f32(const lego_fake_quantize_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    const float s = p->scale, lo = p->lo, hi = p->hi;
    for (int32_t i = 0; i < p->size; i++) {
        const float v = in[i] / s;
        /* The bounds are integers, so clipping before rounding gives what rounding first would. */
        out[i] = rintf(v < lo ? lo : (v > hi ? hi : v)) * s;
    }
    return LEGO_OK;
}

/* One row of n outputs; a loop per op so the op is not dispatched per element. */
typedef void (*lego_binary_row_t)(int32_t op, const float *a, int32_t sa, const float *b, int32_t sb, float *out,
                                  int32_t n);

static void lego_arith_row(int32_t op, const float *a, int32_t sa, const float *b, int32_t sb, float *out, int32_t n)
{
    switch (op) {
    case LEGO_ADD: for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] + b[i * sb]; break;
    case LEGO_SUB: for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] - b[i * sb]; break;
    case LEGO_MUL: for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] * b[i * sb]; break;
    case LEGO_DIV: for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] / b[i * sb]; break;
    case LEGO_MAX: for (int32_t i = 0; i < n; i++) out[i] = fmaxf(a[i * sa], b[i * sb]); break;
    case LEGO_MIN: for (int32_t i = 0; i < n; i++) out[i] = fminf(a[i * sa], b[i * sb]); break;
    default: /* LEGO_PRELU */
        for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] >= 0.0f ? a[i * sa] : a[i * sa] * b[i * sb];
        break;
    }
}

static void lego_pow_row(int32_t op, const float *a, int32_t sa, const float *b, int32_t sb, float *out, int32_t n)
{
    (void)op;
    for (int32_t i = 0; i < n; i++) out[i] = powf(a[i * sa], b[i * sb]);
}

/* Walk the output in order; the innermost dim is a tight loop over two strides. */
static int lego_broadcast(const lego_binary_params_t *p, const float *a, const float *b, float *out,
                          lego_binary_row_t row)
{
    if (p == NULL || a == NULL || b == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->ndim < 1 || p->ndim > LEGO_MAX_DIMS) return LEGO_ERR_PARAM;
    const int32_t last = p->ndim - 1, n = p->shape[last];
    const int32_t sa = p->a_stride[last], sb = p->b_stride[last];
    int32_t idx[LEGO_MAX_DIMS] = {0};
    int32_t outer = 1;
    for (int32_t d = 0; d < last; d++) outer *= p->shape[d];
    for (int32_t o = 0; o < outer; o++) {
        int32_t oa = 0, ob = 0;
        for (int32_t d = 0; d < last; d++) {
            oa += idx[d] * p->a_stride[d];
            ob += idx[d] * p->b_stride[d];
        }
        row(p->op, a + oa, sa, b + ob, sb, out, n);
        out += n;
        for (int32_t d = last - 1; d >= 0; d--) {
            if (++idx[d] < p->shape[d]) break;
            idx[d] = 0;
        }
    }
    return LEGO_OK;
}

int lego_binary_f32(const lego_binary_params_t *p, const float *a, const float *b, float *out)
{
    if (p != NULL && (p->op < LEGO_ADD || p->op > LEGO_MIN)) return LEGO_ERR_PARAM;
    return lego_broadcast(p, a, b, out, lego_arith_row);
}

/* powf on its own, so that only models with a Pow link it. */
int lego_pow_f32(const lego_binary_params_t *p, const float *a, const float *b, float *out)
{
    return lego_broadcast(p, a, b, out, lego_pow_row);
}
