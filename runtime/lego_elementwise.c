/* Activations and broadcasting binary ops. */
#include "lego_runtime.h"

#include <math.h>

static float lego_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

int lego_unary_f32(const lego_unary_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    const float a = p->alpha, b = p->beta;
    for (int32_t i = 0; i < p->size; i++) {
        const float x = in[i];
        float y;
        switch (p->op) {
        case LEGO_RELU: y = x > 0.0f ? x : 0.0f; break;
        case LEGO_CLIP: y = x < a ? a : (x > b ? b : x); break;
        case LEGO_LEAKY_RELU: y = x >= 0.0f ? x : a * x; break;
        case LEGO_SIGMOID: y = lego_sigmoid(x); break;
        case LEGO_TANH: y = tanhf(x); break;
        case LEGO_HARD_SIGMOID: y = a * x + b; y = y < 0.0f ? 0.0f : (y > 1.0f ? 1.0f : y); break;
        case LEGO_HARD_SWISH: {
            float h = x / 6.0f + 0.5f;
            h = h < 0.0f ? 0.0f : (h > 1.0f ? 1.0f : h);
            y = x * h;
            break;
        }
        default: return LEGO_ERR_PARAM;
        }
        out[i] = y;
    }
    return LEGO_OK;
}

static float lego_apply(int32_t op, float a, float b)
{
    switch (op) {
    case LEGO_ADD: return a + b;
    case LEGO_SUB: return a - b;
    case LEGO_MUL: return a * b;
    case LEGO_DIV: return a / b;
    default: return a >= 0.0f ? a : a * b; /* LEGO_PRELU */
    }
}

int lego_binary_f32(const lego_binary_params_t *p, const float *a, const float *b, float *out)
{
    if (p == NULL || a == NULL || b == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->ndim < 1 || p->ndim > LEGO_MAX_DIMS || p->op < LEGO_ADD || p->op > LEGO_PRELU)
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
        for (int32_t i = 0; i < n; i++) out[i] = lego_apply(p->op, a[oa + i * sa], b[ob + i * sb]);
        out += n;
        for (int32_t d = last - 1; d >= 0; d--) {
            if (++idx[d] < p->shape[d]) break;
            idx[d] = 0;
        }
    }
    return LEGO_OK;
}
