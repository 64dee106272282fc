/* Convolution and fully connected layers over tiled weights.
 *
 * Each weight tile is decoded once and applied to whole output planes, so decoding costs
 * one index unpack per tile, not per multiply. Padding is handled by clipping the output
 * range each kernel tap can reach, so the inner loops carry no bounds checks. */
#include "lego_runtime.h"

/* First output index o with o*stride + off >= 0, and one past the last with
 * o*stride + off < limit, clamped to [0, n). */
static void lego_valid_range(int32_t off, int32_t stride, int32_t limit, int32_t n,
                             int32_t *lo, int32_t *hi)
{
    int32_t a = (off >= 0) ? 0 : (-off + stride - 1) / stride;
    int32_t b = (limit - off <= 0) ? 0 : (limit - off + stride - 1) / stride;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
    if (*hi < *lo) *hi = *lo;
}

/* out_plane += wv * shifted input plane, for one kernel tap. */
static void lego_conv_tap(const lego_conv2d_params_t *p, const float *in_plane, float *out_plane,
                          float wv, int32_t ky, int32_t kx)
{
    const int32_t offy = ky * p->dil_h - p->pad_top, offx = kx * p->dil_w - p->pad_left;
    int32_t y0, y1, x0, x1;
    lego_valid_range(offy, p->stride_h, p->in_h, p->out_h, &y0, &y1);
    lego_valid_range(offx, p->stride_w, p->in_w, p->out_w, &x0, &x1);
    for (int32_t oy = y0; oy < y1; oy++) {
        const float *src = in_plane + (oy * p->stride_h + offy) * p->in_w + offx;
        float *dst = out_plane + oy * p->out_w;
        if (p->stride_w == 1) {
            for (int32_t ox = x0; ox < x1; ox++) dst[ox] += wv * src[ox];
        } else {
            for (int32_t ox = x0; ox < x1; ox++) dst[ox] += wv * src[ox * p->stride_w];
        }
    }
}

int lego_conv2d_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *bias,
                    const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    int rc = lego_weights_check(w);
    if (rc != LEGO_OK) return rc;
    if (p->groups <= 0 || p->in_c % p->groups || p->out_c % p->groups || p->stride_h <= 0 ||
        p->stride_w <= 0 || w->rows != p->out_c || w->cols != (p->in_c / p->groups) * p->k_h * p->k_w)
        return LEGO_ERR_PARAM;

    const int32_t plane_out = p->out_h * p->out_w, plane_in = p->in_h * p->in_w;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        const float b = bias ? bias[oc] : 0.0f;
        for (int32_t i = 0; i < plane_out; i++) out[oc * plane_out + i] = b;
    }
    const int32_t n_tr = (w->rows + w->tile_rows - 1) / w->tile_rows;
    const int32_t n_tc = (w->cols + w->tile_cols - 1) / w->tile_cols;
    float tile[LEGO_MAX_TILE];
    for (int32_t tr = 0; tr < n_tr; tr++) {
        for (int32_t tc = 0; tc < n_tc; tc++) {
            int32_t nr, nc;
            lego_weights_tile(w, tr, tc, tile, &nr, &nc);
            for (int32_t j = 0; j < nc; j++) {
                const int32_t r = tc * w->tile_cols + j;
                const int32_t ci = r / taps, tap = r % taps;
                const int32_t ky = tap / p->k_w, kx = tap % p->k_w;
                for (int32_t i = 0; i < nr; i++) {
                    const float wv = tile[i * w->tile_cols + j];
                    if (wv == 0.0f) continue; /* zero padding and pruned weights add nothing */
                    const int32_t oc = tr * w->tile_rows + i;
                    const int32_t c = (oc / cout_g) * cin_g + ci;
                    lego_conv_tap(p, in + c * plane_in, out + oc * plane_out, wv, ky, kx);
                }
            }
        }
    }
    return LEGO_OK;
}

int lego_fc_f32(const lego_fc_params_t *p, const lego_weights_t *w, const float *bias,
                const float *in, float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    int rc = lego_weights_check(w);
    if (rc != LEGO_OK) return rc;
    if (w->rows != p->out_features || w->cols != p->in_features || p->rows <= 0) return LEGO_ERR_PARAM;

    const int32_t n = p->out_features, k = p->in_features;
    for (int32_t m = 0; m < p->rows; m++)
        for (int32_t o = 0; o < n; o++) out[m * n + o] = bias ? bias[o] : 0.0f;
    const int32_t n_tr = (w->rows + w->tile_rows - 1) / w->tile_rows;
    const int32_t n_tc = (w->cols + w->tile_cols - 1) / w->tile_cols;
    float tile[LEGO_MAX_TILE];
    for (int32_t tr = 0; tr < n_tr; tr++) {
        for (int32_t tc = 0; tc < n_tc; tc++) {
            int32_t nr, nc;
            lego_weights_tile(w, tr, tc, tile, &nr, &nc);
            const int32_t o0 = tr * w->tile_rows, k0 = tc * w->tile_cols;
            for (int32_t m = 0; m < p->rows; m++) {
                const float *x = in + m * k + k0;
                float *y = out + m * n + o0;
                for (int32_t i = 0; i < nr; i++) {
                    const float *t = tile + i * w->tile_cols;
                    float acc = 0.0f;
                    for (int32_t j = 0; j < nc; j++) acc += t[j] * x[j];
                    y[i] += acc;
                }
            }
        }
    }
    return LEGO_OK;
}
