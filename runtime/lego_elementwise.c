/* Activations and broadcasting binary ops. */
#include "lego_runtime.h"

#include <math.h>

static float lego_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* log(1 + e^x) without overflow for large x. */
static float lego_softplus(float x) { return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }

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
    case LEGO_SIGMOID:
        for (int32_t i = 0; i < n; i++) out[i] = lego_sigmoid(in[i]);
        break;
    case LEGO_TANH:
        for (int32_t i = 0; i < n; i++) out[i] = tanhf(in[i]);
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
    case LEGO_EXP: for (int32_t i = 0; i < n; i++) out[i] = expf(in[i]); break;
    case LEGO_LOG: for (int32_t i = 0; i < n; i++) out[i] = logf(in[i]); break;
    case LEGO_SQRT: for (int32_t i = 0; i < n; i++) out[i] = sqrtf(in[i]); break;
    case LEGO_NEG: for (int32_t i = 0; i < n; i++) out[i] = -in[i]; break;
    case LEGO_ABS: for (int32_t i = 0; i < n; i++) out[i] = fabsf(in[i]); break;
    case LEGO_RECIPROCAL: for (int32_t i = 0; i < n; i++) out[i] = 1.0f / in[i]; break;
    case LEGO_ERF: for (int32_t i = 0; i < n; i++) out[i] = erff(in[i]); break;
    case LEGO_ELU: for (int32_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : a * expm1f(in[i]); break;
    case LEGO_SELU:
        for (int32_t i = 0; i < n; i++) out[i] = b * (in[i] > 0.0f ? in[i] : a * expm1f(in[i]));
        break;
    case LEGO_SOFTPLUS: for (int32_t i = 0; i < n; i++) out[i] = lego_softplus(in[i]); break;
    case LEGO_SOFTSIGN: for (int32_t i = 0; i < n; i++) out[i] = in[i] / (1.0f + fabsf(in[i])); break;
    case LEGO_GELU:
        for (int32_t i = 0; i < n; i++) out[i] = 0.5f * in[i] * (1.0f + erff(in[i] * 0.70710678f));
        break;
    case LEGO_GELU_TANH:
        for (int32_t i = 0; i < n; i++) {
            const float x = in[i];
            out[i] = 0.5f * x * (1.0f + tanhf(0.79788456f * (x + 0.044715f * x * x * x)));
        }
        break;
    case LEGO_MISH: for (int32_t i = 0; i < n; i++) out[i] = in[i] * tanhf(lego_softplus(in[i])); break;
    default: return LEGO_ERR_PARAM;
    }
    return LEGO_OK;
}

/* One row of n outputs; a loop per op so the op is not dispatched per element. */
static void lego_binary_row(int32_t op, const float *a, int32_t sa, const float *b, int32_t sb, float *out, int32_t n)
{
    switch (op) {
    case LEGO_ADD: for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] + b[i * sb]; break;
    case LEGO_SUB: for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] - b[i * sb]; break;
    case LEGO_MUL: for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] * b[i * sb]; break;
    case LEGO_DIV: for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] / b[i * sb]; break;
    case LEGO_MAX: for (int32_t i = 0; i < n; i++) out[i] = fmaxf(a[i * sa], b[i * sb]); break;
    case LEGO_MIN: for (int32_t i = 0; i < n; i++) out[i] = fminf(a[i * sa], b[i * sb]); break;
    case LEGO_POW: for (int32_t i = 0; i < n; i++) out[i] = powf(a[i * sa], b[i * sb]); break;
    default: /* LEGO_PRELU */
        for (int32_t i = 0; i < n; i++) out[i] = a[i * sa] >= 0.0f ? a[i * sa] : a[i * sa] * b[i * sb];
        break;
    }
}

int lego_binary_f32(const lego_binary_params_t *p, const float *a, const float *b, float *out)
{
    if (p == NULL || a == NULL || b == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->ndim < 1 || p->ndim > LEGO_MAX_DIMS || p->op < LEGO_ADD || p->op > LEGO_POW)
        return LEGO_ERR_PARAM;
    /* Walk the output in order; the innermost dim is a tight loop over two strides. */
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
        lego_binary_row(p->op, a + oa, sa, b + ob, sb, out, n);
        out += n;
        for (int32_t d = last - 1; d >= 0; d--) {
            if (++idx[d] < p->shape[d]) break;
            idx[d] = 0;
        }
    }
    return LEGO_OK;
}
