/* Data movement (Concat, Pad, Transpose, Slice, Resize), Softmax and LayerNormalization. */
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

/* The input coordinate of output position x along an axis, as ONNX's coordinate_transformation_mode says. */
static float lego_resize_coord(int32_t coord, int32_t x, float scale, int32_t in_len, int32_t out_len)
{
    const float xf = (float)x;
    switch (coord) {
    case LEGO_ASYMMETRIC: return xf / scale;
    case LEGO_ALIGN_CORNERS: return out_len == 1 ? 0.0f : xf * (float)(in_len - 1) / (float)(out_len - 1);
    case LEGO_PYTORCH_HALF_PIXEL: return out_len > 1 ? (xf + 0.5f) / scale - 0.5f : 0.0f;
    case LEGO_TF_HALF_PIXEL_FOR_NN: return (xf + 0.5f) / scale;
    default: return (xf + 0.5f) / scale - 0.5f; /* LEGO_HALF_PIXEL */
    }
}

/* One axis's taps: source indices i0, i1 and their weights w0, w1. */
static void lego_resize_taps(const lego_resize_params_t *p, int32_t x, float scale, int32_t in_len, int32_t out_len,
                             int32_t *i0, int32_t *i1, float *w0, float *w1)
{
    float c = lego_resize_coord(p->coord, x, scale, in_len, out_len);
    if (!p->linear) {
        float r;
        switch (p->nearest_mode) {
        case LEGO_FLOOR: r = floorf(c); break;
        case LEGO_CEIL: r = ceilf(c); break;
        case LEGO_ROUND_PREFER_CEIL: r = roundf(c); break;
        default: r = (c == floorf(c) + 0.5f) ? floorf(c) : roundf(c); break;
        }
        const int32_t i = r < 0.0f ? 0 : (r > (float)(in_len - 1) ? in_len - 1 : (int32_t)r);
        *i0 = *i1 = i;
        *w0 = 1.0f;
        *w1 = 0.0f;
        return;
    }
    c = c < 0.0f ? 0.0f : (c > (float)(in_len - 1) ? (float)(in_len - 1) : c);
    *i0 = (int32_t)c;
    *i1 = *i0 + 1 < in_len ? *i0 + 1 : in_len - 1;
    if (*i0 == *i1) {
        *w0 = *w1 = 0.5f;
    } else {
        *w0 = fabsf(c - (float)*i1);
        *w1 = fabsf(c - (float)*i0);
    }
}

int lego_resize_f32(const lego_resize_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->channels < 1 || p->in_h < 1 || p->in_w < 1 || p->out_h < 1 || p->out_w < 1) return LEGO_ERR_PARAM;
    const int32_t in_plane = p->in_h * p->in_w, out_plane = p->out_h * p->out_w;
    /* Taps are computed per output position and used across channels: no tables, no stack to size. */
    for (int32_t y = 0; y < p->out_h; y++) {
        int32_t y0, y1;
        float wy0, wy1;
        lego_resize_taps(p, y, p->scale_h, p->in_h, p->out_h, &y0, &y1, &wy0, &wy1);
        for (int32_t x = 0; x < p->out_w; x++) {
            int32_t x0, x1;
            float wx0, wx1;
            lego_resize_taps(p, x, p->scale_w, p->in_w, p->out_w, &x0, &x1, &wx0, &wx1);
            const float *src = in;
            float *dst = out + y * p->out_w + x;
            for (int32_t c = 0; c < p->channels; c++, src += in_plane, dst += out_plane) {
                if (!p->linear) {
                    *dst = src[y0 * p->in_w + x0];
                } else {
                    const float *r0 = src + y0 * p->in_w, *r1 = src + y1 * p->in_w;
                    *dst = wx0 * wy0 * r0[x0] + wx1 * wy0 * r0[x1] + wx0 * wy1 * r1[x0] + wx1 * wy1 * r1[x1];
                }
            }
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

int lego_layernorm_f32(const lego_layernorm_params_t *p, const float *in, const float *scale, const float *bias,
                       float *out)
{
    if (p == NULL || in == NULL || scale == NULL || bias == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->size <= 0) return LEGO_ERR_PARAM;
    const int32_t n = p->size;
    for (int32_t o = 0; o < p->outer; o++) {
        const float *x = in + o * n;
        float *y = out + o * n;
        float mean = 0.0f, var = 0.0f;
        for (int32_t i = 0; i < n; i++) mean += x[i];
        mean /= (float)n;
        for (int32_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
        const float inv = 1.0f / sqrtf(var / (float)n + p->epsilon);
        for (int32_t i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * scale[i] + bias[i];
    }
    return LEGO_OK;
}
