/* Data movement (Concat, Pad, Transpose, Slice) and Softmax. */
#include "lego_runtime.h"

#include <math.h>
#include <string.h>

int lego_concat_f32(const lego_concat_params_t *p, const float *const *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->n_inputs < 1 || p->n_inputs > LEGO_MAX_CONCAT) return LEGO_ERR_PARAM;
    int32_t offset = 0;
    for (int32_t k = 0; k < p->n_inputs; k++) {
        if (in[k] == NULL) return LEGO_ERR_NULL;
        for (int32_t o = 0; o < p->outer; o++)
            memcpy(out + o * p->out_inner + offset, in[k] + o * p->in_inner[k],
                   (size_t)p->in_inner[k] * sizeof(float));
        offset += p->in_inner[k];
    }
    return offset == p->out_inner ? LEGO_OK : LEGO_ERR_PARAM;
}

int lego_pad_f32(const lego_pad_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->ndim < 1 || p->ndim > LEGO_MAX_DIMS) return LEGO_ERR_PARAM;
    int32_t total = 1, in_total = 1;
    for (int32_t d = 0; d < p->ndim; d++) {
        total *= p->out_shape[d];
        in_total *= p->in_shape[d];
    }
    for (int32_t i = 0; i < total; i++) out[i] = p->value;
    /* Copy input rows (innermost dim) to their shifted place in the output. */
    const int32_t last = p->ndim - 1, row = p->in_shape[last];
    int32_t idx[LEGO_MAX_DIMS] = {0};
    for (int32_t s = 0; s < in_total; s += row) {
        int32_t off = 0;
        for (int32_t d = 0; d < p->ndim; d++) off = off * p->out_shape[d] + idx[d] + p->pad_begin[d];
        memcpy(out + off, in + s, (size_t)row * sizeof(float));
        for (int32_t d = last - 1; d >= 0; d--) {
            if (++idx[d] < p->in_shape[d]) break;
            idx[d] = 0;
        }
    }
    return LEGO_OK;
}

int lego_strided_copy_f32(const lego_strided_copy_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->ndim < 1 || p->ndim > LEGO_MAX_DIMS) return LEGO_ERR_PARAM;
    int32_t total = 1;
    for (int32_t d = 0; d < p->ndim; d++) total *= p->out_shape[d];
    /* Walk the output in order; `off` follows the same element in the input. */
    int32_t idx[LEGO_MAX_DIMS] = {0}, off = p->offset;
    for (int32_t i = 0; i < total; i++) {
        out[i] = in[off];
        for (int32_t d = p->ndim - 1; d >= 0; d--) {
            off += p->in_stride[d];
            if (++idx[d] < p->out_shape[d]) break;
            off -= p->in_stride[d] * p->out_shape[d];
            idx[d] = 0;
        }
    }
    return LEGO_OK;
}

int lego_softmax_f32(const lego_softmax_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->axis_len <= 0) return LEGO_ERR_PARAM;
    const int32_t n = p->axis_len, s = p->inner;
    for (int32_t o = 0; o < p->outer; o++) {
        for (int32_t i = 0; i < s; i++) {
            const float *x = in + o * n * s + i;
            float *y = out + o * n * s + i;
            float mx = x[0], sum = 0.0f;
            for (int32_t k = 1; k < n; k++) mx = x[k * s] > mx ? x[k * s] : mx;
            for (int32_t k = 0; k < n; k++) {
                y[k * s] = expf(x[k * s] - mx);
                sum += y[k * s];
            }
            for (int32_t k = 0; k < n; k++) y[k * s] /= sum;
        }
    }
    return LEGO_OK;
}
