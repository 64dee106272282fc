/* Windowed pooling and axis reductions. */
#include "lego_runtime.h"

#include <float.h>

/* The pooled value of a window lying wholly inside the input: no bounds checks. */
static float lego_pool_interior(const lego_pool2d_params_t *p, const float *win)
{
    float acc = p->is_max ? -FLT_MAX : 0.0f;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const float *row = win + ky * p->dil_h * p->in_w;
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const float v = row[kx * p->dil_w];
            if (p->is_max) {
                acc = v > acc ? v : acc;
            } else {
                acc += v;
            }
        }
    }
    return p->is_max ? acc : acc / (float)(p->k_h * p->k_w);
}

/* Windows that reach into the padding (or past it, with ceil_mode). */
static float lego_pool_border(const lego_pool2d_params_t *p, const float *plane, int32_t oy, int32_t ox)
{
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    float acc = p->is_max ? -FLT_MAX : 0.0f;
    int32_t count = 0, padded = 0;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t y = y0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const int32_t x = x0 + kx * p->dil_w;
            /* Positions in the explicit padding count for count_include_pad; positions beyond
             * it (ceil_mode overhang) never do. */
            if (y >= -p->pad_top && y < p->in_h + p->pad_bottom && x >= -p->pad_left && x < p->in_w + p->pad_right)
                padded++;
            if (y < 0 || y >= p->in_h || x < 0 || x >= p->in_w) continue;
            const float v = plane[y * p->in_w + x];
            if (p->is_max) {
                acc = v > acc ? v : acc;
            } else {
                acc += v;
            }
            count++;
        }
    }
    if (p->is_max) return acc;
    const int32_t d = p->count_include_pad ? padded : count;
    return d > 0 ? acc / (float)d : 0.0f;
}

/* First output index whose window starts at or after 0, and one past the last whose window
 * ends inside `limit`. */
static void lego_pool_interior_range(int32_t pad, int32_t stride, int32_t span, int32_t limit, int32_t n,
                                     int32_t *lo, int32_t *hi)
{
    *lo = (pad + stride - 1) / stride;
    *hi = limit - span + pad >= 0 ? (limit - span + pad) / stride + 1 : 0;
    if (*hi > n) *hi = n;
    if (*lo > *hi) *lo = *hi;
}

int lego_pool2d_f32(const lego_pool2d_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->stride_h <= 0 || p->stride_w <= 0 || p->k_h <= 0 || p->k_w <= 0) return LEGO_ERR_PARAM;
    int32_t y_lo, y_hi, x_lo, x_hi;
    lego_pool_interior_range(p->pad_top, p->stride_h, (p->k_h - 1) * p->dil_h + 1, p->in_h, p->out_h, &y_lo, &y_hi);
    lego_pool_interior_range(p->pad_left, p->stride_w, (p->k_w - 1) * p->dil_w + 1, p->in_w, p->out_w, &x_lo, &x_hi);
    for (int32_t c = 0; c < p->channels; c++) {
        const float *plane = in + c * p->in_h * p->in_w;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int inner_row = oy >= y_lo && oy < y_hi;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                if (inner_row && ox >= x_lo && ox < x_hi) {
                    const float *win = plane + (oy * p->stride_h - p->pad_top) * p->in_w + ox * p->stride_w - p->pad_left;
                    *out++ = lego_pool_interior(p, win);
                } else {
                    *out++ = lego_pool_border(p, plane, oy, ox);
                }
            }
        }
    }
    return LEGO_OK;
}

int lego_reduce_f32(const lego_reduce_params_t *p, const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->reduce <= 0) return LEGO_ERR_PARAM;
    for (int32_t o = 0; o < p->outer; o++) {
        for (int32_t i = 0; i < p->inner; i++) {
            const float *src = in + o * p->reduce * p->inner + i;
            float acc = src[0];
            for (int32_t r = 1; r < p->reduce; r++) {
                const float v = src[r * p->inner];
                if (p->is_max) {
                    if (v > acc) acc = v;
                } else {
                    acc += v;
                }
            }
            out[o * p->inner + i] = p->is_max ? acc : acc / (float)p->reduce;
        }
    }
    return LEGO_OK;
}
