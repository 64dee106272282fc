/* Convolution and fully connected layers over tiled weights.
 *
 * Every kernel decodes each weight tile once and applies it to whole output planes, so the
 * decode (one index unpack per tile) costs nothing next to the multiply-adds. Padding is
 * handled by clipping the output range each kernel tap can reach, so inner loops carry no
 * bounds checks.
 *
 * lego_*_ref_f32 are the plain reference kernels; lego_*_f32 are the register-blocked ones,
 * which fall back to the reference for shapes they do not block. Building with
 * -DLEGO_REFERENCE_KERNELS makes lego_*_f32 the reference, for testing both. */
#include "lego_runtime.h"

#include <string.h>

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

static int lego_conv_check(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *in,
                           const float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    int rc = lego_weights_check(w);
    if (rc != LEGO_OK) return rc;
    if (p->groups <= 0 || p->in_c % p->groups || p->out_c % p->groups || p->stride_h <= 0 ||
        p->stride_w <= 0 || w->rows != p->out_c || w->cols != (p->in_c / p->groups) * p->k_h * p->k_w)
        return LEGO_ERR_PARAM;
    return LEGO_OK;
}

/* One kernel tap of one input plane, clipped to the output rectangle [y0,y1) x [x0,x1):
 * out_plane += wv * shifted input plane. */
static void lego_tap_rect(const lego_conv2d_params_t *p, const float *in_plane, float *out_plane, float wv,
                          int32_t offy, int32_t offx, int32_t y0, int32_t y1, int32_t x0, int32_t x1)
{
    for (int32_t oy = y0; oy < y1; oy++) {
        const float *src = in_plane + (oy * p->stride_h + offy) * p->in_w + offx;
        float *dst = out_plane + oy * p->out_w;
        for (int32_t ox = x0; ox < x1; ox++) dst[ox] += wv * src[ox * p->stride_w];
    }
}

/* Where tap (ky, kx) lands: input offsets and the output rectangle it reaches. */
typedef struct {
    int32_t offy, offx, y0, y1, x0, x1;
} lego_tap_t;

static lego_tap_t lego_tap(const lego_conv2d_params_t *p, int32_t ky, int32_t kx)
{
    lego_tap_t t;
    t.offy = ky * p->dil_h - p->pad_top;
    t.offx = kx * p->dil_w - p->pad_left;
    lego_valid_range(t.offy, p->stride_h, p->in_h, p->out_h, &t.y0, &t.y1);
    lego_valid_range(t.offx, p->stride_w, p->in_w, p->out_w, &t.x0, &t.x1);
    return t;
}

int lego_conv2d_ref_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *in,
                        const float *residual, float *out, float *scratch)
{
    (void)scratch; /* the reference handles borders itself */
    int rc = lego_conv_check(p, w, in, out);
    if (rc != LEGO_OK) return rc;
    const int32_t plane_out = p->out_h * p->out_w, plane_in = p->in_h * p->in_w;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const int32_t n_tr = (w->rows + w->tile_rows - 1) / w->tile_rows;
    const int32_t n_tc = (w->cols + w->tile_cols - 1) / w->tile_cols;
    float tile[LEGO_MAX_TILE];
    lego_weights_start(w, out, plane_out, plane_out, p->out_c, residual);
    for (int32_t tr = 0; tr < n_tr; tr++) {
        for (int32_t tc = 0; tc < n_tc; tc++) {
            int32_t nr, nc;
            lego_weights_tile(w, tr, tc, tile, &nr, &nc);
            for (int32_t j = 0; j < nc; j++) {
                const int32_t r = tc * w->tile_cols + j;
                const int32_t ci = r / taps, tap = r % taps;
                const lego_tap_t t = lego_tap(p, tap / p->k_w, tap % p->k_w);
                for (int32_t i = 0; i < nr; i++) {
                    const float wv = tile[i * w->tile_cols + j];
                    if (wv == 0.0f) continue; /* zero padding and pruned weights add nothing */
                    const int32_t oc = tr * w->tile_rows + i;
                    const int32_t c = (oc / cout_g) * cin_g + ci;
                    lego_tap_rect(p, in + c * plane_in, out + oc * plane_out, wv, t.offy, t.offx, t.y0, t.y1,
                                  t.x0, t.x1);
                }
            }
        }
    }
    lego_weights_finish(w, out, plane_out, plane_out, p->out_c);
    return LEGO_OK;
}

/* Transposed convolution as a scatter: input pixel (iy, ix) adds w * in to output pixel
 * (iy*stride + ky*dil - pad_top, ...). The weight is stored like a Conv's, (out_c, in_c/groups *
 * k_h * k_w) with the kernel flipped (compress.weight_matrix), so it tiles and clusters like one. It is
 * decoded in 4x4 blocks whatever the tile shape: each column's tap is placed once for four output channels. */
int lego_conv_transpose2d_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *in, float *out)
{
    int rc = lego_conv_check(p, w, in, out);
    if (rc != LEGO_OK) return rc;
    const int32_t plane_out = p->out_h * p->out_w, plane_in = p->in_h * p->in_w;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    float block[16];
    lego_weights_start(w, out, plane_out, plane_out, p->out_c, NULL);
    for (int32_t r0 = 0; r0 < w->rows; r0 += 4) {
        for (int32_t c0 = 0; c0 < w->cols; c0 += 4) {
            lego_weights_block4x4(w, r0, c0, block);
            for (int32_t j = 0; j < 4 && c0 + j < w->cols; j++) {
                const int32_t ci = (c0 + j) / taps, tap = (c0 + j) % taps;
                const int32_t offy = (p->k_h - 1 - tap / p->k_w) * p->dil_h - p->pad_top;
                const int32_t offx = (p->k_w - 1 - tap % p->k_w) * p->dil_w - p->pad_left;
                int32_t y0, y1, x0, x1; /* the input pixels whose outputs land inside */
                lego_valid_range(offy, p->stride_h, p->out_h, p->in_h, &y0, &y1);
                lego_valid_range(offx, p->stride_w, p->out_w, p->in_w, &x0, &x1);
                for (int32_t i = 0; i < 4 && r0 + i < w->rows; i++) {
                    const float wv = block[i * 4 + j];
                    if (wv == 0.0f) continue;
                    const int32_t oc = r0 + i;
                    const float *src = in + ((oc / cout_g) * cin_g + ci) * plane_in;
                    for (int32_t iy = y0; iy < y1; iy++) {
                        const float *s = src + iy * p->in_w;
                        float *d = out + oc * plane_out + (iy * p->stride_h + offy) * p->out_w;
                        for (int32_t ix = x0; ix < x1; ix++) d[ix * p->stride_w + offx] += wv * s[ix];
                    }
                }
            }
        }
    }
    lego_weights_finish(w, out, plane_out, plane_out, p->out_c);
    return LEGO_OK;
}

#ifndef LEGO_REFERENCE_KERNELS

/* The blocked kernels read input planes through zero-padded copies in `scratch` (a few
 * planes, reused), so that every tap of every output pixel is inside its plane: no border
 * cases at all. Unpadded convs read the input in place. */
typedef struct {
    const float *in;
    float *scratch;
    int32_t pad_w, pad_h, padded; /* padded plane geometry; padded = 0: read `in` directly */
    int32_t slots;
    int32_t slot_ch[LEGO_MAX_CONV_SLOTS];
} lego_planes_t;

static int32_t lego_pads(const lego_conv2d_params_t *p)
{
    return p->pad_top | p->pad_left | p->pad_bottom | p->pad_right;
}

static void lego_planes_init(lego_planes_t *pl, const lego_conv2d_params_t *p, const float *in, float *scratch,
                             int32_t slots)
{
    pl->in = in;
    pl->scratch = scratch;
    pl->padded = lego_pads(p) != 0;
    pl->pad_w = p->in_w + (pl->padded ? p->pad_left + p->pad_right : 0);
    pl->pad_h = p->in_h + (pl->padded ? p->pad_top + p->pad_bottom : 0);
    pl->slots = slots;
    for (int32_t i = 0; i < LEGO_MAX_CONV_SLOTS; i++) pl->slot_ch[i] = -1;
}

/* Input channel `c` as a plane of pad_h x pad_w floats (its top-left is the padding's). */
static const float *lego_plane(lego_planes_t *pl, const lego_conv2d_params_t *p, int32_t c)
{
    const float *src = pl->in + c * p->in_h * p->in_w;
    if (!pl->padded) return src;
    const int32_t slot = c % pl->slots;
    float *dst = pl->scratch + slot * pl->pad_h * pl->pad_w;
    if (pl->slot_ch[slot] != c) {
        memset(dst, 0, sizeof(float) * (size_t)(pl->pad_h * pl->pad_w));
        for (int32_t y = 0; y < p->in_h; y++)
            memcpy(dst + (y + p->pad_top) * pl->pad_w + p->pad_left, src + y * p->in_w, sizeof(float) * (size_t)p->in_w);
        pl->slot_ch[slot] = c;
    }
    return dst;
}

#if defined(__ARM_ARCH_7EM__) && defined(__ARM_FP) && !defined(LEGO_NO_ASM)
/* Whole output rows of one tile, in lego_tile_arm.S (the field offsets are fixed there). */
typedef struct {
    const float *tile;
    const float *in[4];
    float *out[4];
    int32_t rows, pairs, odd;
    int32_t skip;   /* bytes from the end of one input row to the start of the next */
    int32_t stride; /* 1 or 2 */
} lego_tile_job_t;
void lego_tile4x4_rows(const lego_tile_job_t *job);
#define LEGO_TILE_ASM 1
#endif

/* A 4x4 tile (4 output channels x 4 reduction positions) held in registers and applied to
 * every output pixel: per pixel, 4 input loads feed 16 fused multiply-adds into 4 planes. */
static void lego_tile4x4_planes(const lego_conv2d_params_t *p, int32_t pad_w, const float *tile,
                                const float *const src[4], float *const dst[4])
{
    const float w00 = tile[0], w01 = tile[1], w02 = tile[2], w03 = tile[3];
    const float w10 = tile[4], w11 = tile[5], w12 = tile[6], w13 = tile[7];
    const float w20 = tile[8], w21 = tile[9], w22 = tile[10], w23 = tile[11];
    const float w30 = tile[12], w31 = tile[13], w32 = tile[14], w33 = tile[15];
    const int32_t sw = p->stride_w, in_row = p->stride_h * pad_w;
#ifdef LEGO_TILE_ASM
    if (sw <= 2) {
        const lego_tile_job_t job = {tile, {src[0], src[1], src[2], src[3]}, {dst[0], dst[1], dst[2], dst[3]},
                                     p->out_h, p->out_w / 2, p->out_w % 2,
                                     (int32_t)sizeof(float) * (in_row - p->out_w * sw), sw};
        lego_tile4x4_rows(&job);
        return;
    }
#endif
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        const float *a = src[0] + oy * in_row, *b = src[1] + oy * in_row;
        const float *c = src[2] + oy * in_row, *d = src[3] + oy * in_row;
        float *o0 = dst[0] + oy * p->out_w, *o1 = dst[1] + oy * p->out_w;
        float *o2 = dst[2] + oy * p->out_w, *o3 = dst[3] + oy * p->out_w;
        for (int32_t n = p->out_w; n > 0; n--) {
            /* Chained so that each product is one fused multiply-add (-ffp-contract=fast). */
            const float xa = *a, xb = *b, xc = *c, xd = *d;
            float y0 = *o0, y1 = *o1, y2 = *o2, y3 = *o3;
            y0 += w00 * xa; y0 += w01 * xb; y0 += w02 * xc; y0 += w03 * xd;
            y1 += w10 * xa; y1 += w11 * xb; y1 += w12 * xc; y1 += w13 * xd;
            y2 += w20 * xa; y2 += w21 * xb; y2 += w22 * xc; y2 += w23 * xd;
            y3 += w30 * xa; y3 += w31 * xb; y3 += w32 * xc; y3 += w33 * xd;
            *o0++ = y0;
            *o1++ = y1;
            *o2++ = y2;
            *o3++ = y3;
            a += sw;
            b += sw;
            c += sw;
            d += sw;
        }
    }
}

/* One reduction position over every output pixel, for `nr` output planes (a partial tile). */
static void lego_column_planes(const lego_conv2d_params_t *p, int32_t pad_w, const float *tile, int32_t j,
                               int32_t nr, const float *src, float *const dst[4])
{
    for (int32_t i = 0; i < nr; i++) {
        const float wv = tile[i * 4 + j];
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const float *x = src + oy * p->stride_h * pad_w;
            float *o = dst[i] + oy * p->out_w;
            for (int32_t ox = 0; ox < p->out_w; ox++) o[ox] += wv * x[ox * p->stride_w];
        }
    }
}

/* groups == 1: 4x4 weight blocks (whatever the tile shape), block columns outer so each input
 * channel is padded once; every block is decoded once and applied to 4 whole output planes. */
static void lego_conv2d_blocked(const lego_conv2d_params_t *p, const lego_weights_t *w, lego_planes_t *pl,
                                 float *out)
{
    const int32_t plane_out = p->out_h * p->out_w, taps = p->k_h * p->k_w;
    const int32_t n_tr = w->rows / 4, n_tc = (w->cols + 3) / 4;
    float tile[16];
    for (int32_t tc = 0; tc < n_tc; tc++) {
        const float *src[4];
        const int32_t nc = (w->cols - tc * 4 < 4) ? w->cols - tc * 4 : 4;
        for (int32_t j = 0; j < nc; j++) {
            const int32_t r = tc * 4 + j, tap = r % taps;
            src[j] = lego_plane(pl, p, r / taps) + (tap / p->k_w) * p->dil_h * pl->pad_w + (tap % p->k_w) * p->dil_w;
        }
        for (int32_t tr = 0; tr < n_tr; tr++) {
            float *const dst[4] = {out + tr * 4 * plane_out, out + (tr * 4 + 1) * plane_out,
                                   out + (tr * 4 + 2) * plane_out, out + (tr * 4 + 3) * plane_out};
            lego_weights_block4x4(w, tr * 4, tc * 4, tile);
            if (nc == 4) {
                lego_tile4x4_planes(p, pl->pad_w, tile, src, dst);
            } else {
                for (int32_t j = 0; j < nc; j++) lego_column_planes(p, pl->pad_w, tile, j, 4, src[j], dst);
            }
        }
    }
}

/* Depthwise 3x3 (one input channel per output channel): the nine weights in registers, every
 * output pixel computed in one pass over a padded copy of its channel. */
static void lego_depthwise3x3(const lego_conv2d_params_t *p, const lego_weights_t *w, lego_planes_t *pl,
                              float *out)
{
    const int32_t plane_out = p->out_h * p->out_w, sw = p->stride_w, dh = p->dil_h * pl->pad_w, dw = p->dil_w;
    float rows[4 * 12]; /* the 9 taps of 4 channels, decoded as three 4x4 blocks */
    float block[16];
    for (int32_t c0 = 0; c0 < p->out_c; c0 += 4) {
        for (int32_t b = 0; b < 3; b++) {
            lego_weights_block4x4(w, c0, b * 4, block);
            for (int32_t i = 0; i < 4; i++)
                for (int32_t j = 0; j < 4; j++) rows[i * 12 + b * 4 + j] = block[i * 4 + j];
        }
        const int32_t nr = p->out_c - c0 < 4 ? p->out_c - c0 : 4;
        for (int32_t i = 0; i < nr; i++) {
            const int32_t ch = c0 + i;
            const float *k = rows + i * 12, *plane = lego_plane(pl, p, ch);
            const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6], k7 = k[7],
                        k8 = k[8];
            float *o = out + ch * plane_out;
            for (int32_t oy = 0; oy < p->out_h; oy++) {
                const float *r0 = plane + oy * p->stride_h * pl->pad_w, *r1 = r0 + dh, *r2 = r1 + dh;
                for (int32_t n = p->out_w; n > 0; n--) {
                    float y = *o;
                    y += k0 * r0[0]; y += k1 * r0[dw]; y += k2 * r0[2 * dw];
                    y += k3 * r1[0]; y += k4 * r1[dw]; y += k5 * r1[2 * dw];
                    y += k6 * r2[0]; y += k7 * r2[dw]; y += k8 * r2[2 * dw];
                    *o++ = y;
                    r0 += sw;
                    r1 += sw;
                    r2 += sw;
                }
            }
        }
    }
}

int lego_conv2d_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *in,
                    const float *residual, float *out, float *scratch)
{
    int rc = lego_conv_check(p, w, in, out);
    if (rc != LEGO_OK) return rc;
    const int32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const int32_t blocked = lego_conv_scratch_planes(p);
    if (blocked < 0 || (lego_pads(p) && (scratch == NULL || p->scratch_planes < blocked)))
        return lego_conv2d_ref_f32(p, w, in, residual, out, scratch);
    lego_planes_t pl;
    lego_planes_init(&pl, p, in, scratch, p->scratch_planes);
    const int32_t plane_out = p->out_h * p->out_w;
    lego_weights_start(w, out, plane_out, plane_out, p->out_c, residual);
    if (cin_g == 1 && cout_g == 1)
        lego_depthwise3x3(p, w, &pl, out);
    else
        lego_conv2d_blocked(p, w, &pl, out);
    lego_weights_finish(w, out, plane_out, plane_out, p->out_c);
    return LEGO_OK;
}

#else

int lego_conv2d_f32(const lego_conv2d_params_t *p, const lego_weights_t *w, const float *in,
                    const float *residual, float *out, float *scratch)
{
    return lego_conv2d_ref_f32(p, w, in, residual, out, scratch);
}

#endif

int32_t lego_conv_scratch_planes(const lego_conv2d_params_t *p)
{
    const int32_t taps = p->k_h * p->k_w, cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    int32_t planes;
    if (cin_g == 1 && cout_g == 1 && p->k_h == 3 && p->k_w == 3)
        planes = 1;
    else if (p->groups == 1 && p->out_c % 4 == 0)
        planes = (4 - 1 + taps - 1) / taps + 1; /* input channels 4 reduction positions can span */
    else
        return -1;
    return planes < p->in_c ? planes : p->in_c;
}

static int lego_fc_check(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, const float *out)
{
    if (p == NULL || in == NULL || out == NULL) return LEGO_ERR_NULL;
    int rc = lego_weights_check(w);
    if (rc != LEGO_OK) return rc;
    if (w->rows != p->out_features || w->cols != p->in_features || p->rows <= 0) return LEGO_ERR_PARAM;
    return LEGO_OK;
}

int lego_fc_ref_f32(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, float *out)
{
    int rc = lego_fc_check(p, w, in, out);
    if (rc != LEGO_OK) return rc;
    const int32_t n = p->out_features, k = p->in_features;
    const int32_t n_tr = (w->rows + w->tile_rows - 1) / w->tile_rows;
    const int32_t n_tc = (w->cols + w->tile_cols - 1) / w->tile_cols;
    float tile[LEGO_MAX_TILE];
    for (int32_t m = 0; m < p->rows; m++) lego_weights_start(w, out + m * n, 1, 1, n, NULL);
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
    for (int32_t m = 0; m < p->rows; m++) lego_weights_finish(w, out + m * n, 1, 1, n);
    return LEGO_OK;
}

#ifndef LEGO_REFERENCE_KERNELS

/* Four outputs accumulate in registers across a whole row of 4x4 tiles; each tile is read
 * straight from the float32 codebook (or dense matrix) without a copy. */
static void lego_fc_tiles4x4(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, float *out)
{
    const int32_t n = p->out_features, k = p->in_features, n_tc = k / 4;
    const float *values = (const float *)w->values;
    for (int32_t m = 0; m < p->rows; m++) {
        const float *x = in + m * k;
        for (int32_t o = 0; o < n; o += 4) {
            float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            for (int32_t tc = 0; tc < n_tc; tc++) {
                const float *t0, *t1, *t2, *t3;
                if (w->kind == LEGO_W_TILED) {
                    const uint32_t t = (uint32_t)((o / 4) * n_tc + tc);
                    t0 = values + lego_unpack_index(w->indices, t, (uint32_t)w->index_bits) * 16u;
                    t1 = t0 + 4;
                    t2 = t0 + 8;
                    t3 = t0 + 12;
                } else {
                    t0 = values + o * k + tc * 4;
                    t1 = t0 + k;
                    t2 = t1 + k;
                    t3 = t2 + k;
                }
                const float x0 = x[tc * 4], x1 = x[tc * 4 + 1], x2 = x[tc * 4 + 2], x3 = x[tc * 4 + 3];
                a0 += t0[0] * x0 + t0[1] * x1 + t0[2] * x2 + t0[3] * x3;
                a1 += t1[0] * x0 + t1[1] * x1 + t1[2] * x2 + t1[3] * x3;
                a2 += t2[0] * x0 + t2[1] * x1 + t2[2] * x2 + t2[3] * x3;
                a3 += t3[0] * x0 + t3[1] * x1 + t3[2] * x2 + t3[3] * x3;
            }
            float *y = out + m * n + o;
            y[0] += a0;
            y[1] += a1;
            y[2] += a2;
            y[3] += a3;
        }
    }
}

#define LEGO_FC_BOOK 256 /* floats: a codebook up to this size is decoded once per call */
#define LEGO_FC_RUN 64   /* weights of one row decoded at a time for several input rows */

/* sum of book[index] * x[j] over the next k indices of 4 bits (K <= 16, the `safe` recipe's): from a byte
 * boundary on, eight indices come out of each 32-bit word with a shift and a mask each. */
static float lego_dot_book4(lego_index_reader_t *r, const float *book, const float *x, int32_t k)
{
    float acc = 0.0f;
    int32_t j = 0;
    for (; j < k && r->have != 0; j++) acc += book[lego_read_index(r, 4)] * x[j];
    for (; j + 8 <= k; j += 8) {
        uint32_t v;
        memcpy(&v, r->next, sizeof v); /* least significant nibble first, as docs/format.md packs them */
        r->next += sizeof v;
        const float *xj = x + j; /* written out: GCC then takes each index with one ubfx */
        acc += book[v & 15u] * xj[0];
        acc += book[(v >> 4) & 15u] * xj[1];
        acc += book[(v >> 8) & 15u] * xj[2];
        acc += book[(v >> 12) & 15u] * xj[3];
        acc += book[(v >> 16) & 15u] * xj[4];
        acc += book[(v >> 20) & 15u] * xj[5];
        acc += book[(v >> 24) & 15u] * xj[6];
        acc += book[v >> 28] * xj[7];
    }
    for (; j < k; j++) acc += book[lego_read_index(r, 4)] * x[j];
    return acc;
}

/* 1x1 tiles, a codebook of scalars (what `safe` stores FC and recurrent weights in): one index read and
 * one multiply-add per weight and input row. Several rows take a decoded run of the weight row each. */
static void lego_fc_scalar(const lego_fc_params_t *p, const lego_weights_t *w, const float *book, const float *in,
                           float *out)
{
    const int32_t n = p->out_features, k = p->in_features;
    const uint32_t bits = (uint32_t)w->index_bits;
    lego_index_reader_t r = {w->indices, 0, 0};
    float run[LEGO_FC_RUN];
    for (int32_t o = 0; o < n; o++) {
        if (p->rows == 1) {
            float acc = 0.0f;
            if (bits == 4)
                acc = lego_dot_book4(&r, book, in, k);
            else
                for (int32_t j = 0; j < k; j++) acc += book[lego_read_index(&r, bits)] * in[j];
            out[o] += acc;
            continue;
        }
        for (int32_t j0 = 0; j0 < k; j0 += LEGO_FC_RUN) {
            const int32_t len = k - j0 < LEGO_FC_RUN ? k - j0 : LEGO_FC_RUN;
            for (int32_t j = 0; j < len; j++) run[j] = book[lego_read_index(&r, bits)];
            for (int32_t m = 0; m < p->rows; m++) {
                const float *x = in + m * k + j0;
                float s = 0.0f;
                for (int32_t j = 0; j < len; j++) s += run[j] * x[j];
                out[m * n + o] += s;
            }
        }
    }
}

/* Any tile shape and codebook type: tiles are walked in stored order (tile-row-major), so the
 * index stream is read front to back; each entry is decoded once, into tile_rows running sums for one
 * input row or applied to every input row. With one input row every weight is used once, so decoding
 * is the cost to keep small. */
static void lego_fc_tiled(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, float *out)
{
    const int32_t n = p->out_features, k = p->in_features, tr = w->tile_rows, tc = w->tile_cols, size = tr * tc;
    const uint32_t bits = (uint32_t)w->index_bits;
    /* Without reuse across an output plane, a weight would cost its entry's decode: a small codebook
     * (FC layers and recurrent steps use 1x1 to 2x2 tiles with a few dozen entries) is decoded up front. */
    float book[LEGO_FC_BOOK], tile[LEGO_MAX_TILE];
    const int decoded = w->entries * size <= LEGO_FC_BOOK;
    if (decoded)
        for (int32_t e = 0; e < w->entries; e++) lego_weights_entry(w, (uint32_t)e, book + e * size);
    if (decoded && size == 1) {
        lego_fc_scalar(p, w, book, in, out);
        return;
    }
    lego_index_reader_t r = {w->indices, 0, 0};
    for (int32_t o0 = 0; o0 < n; o0 += tr) {
        const int32_t nr = n - o0 < tr ? n - o0 : tr;
        float acc[LEGO_MAX_TILE_SIDE] = {0.0f}; /* one input row: the block's sums stay in registers */
        for (int32_t k0 = 0; k0 < k; k0 += tc) {
            const uint32_t e = lego_read_index(&r, bits);
            const float *entry = book + e * (uint32_t)size;
            if (!decoded) {
                lego_weights_entry(w, e, tile);
                entry = tile;
            }
            const int32_t nc = k - k0 < tc ? k - k0 : tc;
            if (p->rows == 1) {
                for (int32_t i = 0; i < nr; i++)
                    for (int32_t j = 0; j < nc; j++) acc[i] += entry[i * tc + j] * in[k0 + j];
                continue;
            }
            /* Each tile once for every input row (a recurrent layer's time steps, a sequence's tokens). */
            for (int32_t m = 0; m < p->rows; m++) {
                const float *x = in + m * k + k0;
                for (int32_t i = 0; i < nr; i++) {
                    float s = 0.0f;
                    for (int32_t j = 0; j < nc; j++) s += entry[i * tc + j] * x[j];
                    out[m * n + o0 + i] += s;
                }
            }
        }
        if (p->rows == 1)
            for (int32_t i = 0; i < nr; i++) out[o0 + i] += acc[i];
    }
}

/* Dense rows of any storage type: the type is chosen once per row, not per weight. */
static void lego_fc_dense(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, float *out)
{
    const int32_t n = p->out_features, k = p->in_features;
    for (int32_t m = 0; m < p->rows; m++) {
        const float *x = in + m * k;
        for (int32_t o = 0; o < n; o++) {
            float acc = 0.0f;
            if (w->dtype == LEGO_I8) {
                const int8_t *v = (const int8_t *)w->values + o * k;
                for (int32_t j = 0; j < k; j++) acc += (float)v[j] * x[j];
            } else if (w->dtype == LEGO_F16) {
                const uint16_t *v = (const uint16_t *)w->values + o * k;
                for (int32_t j = 0; j < k; j++) acc += lego_f16_to_f32(v[j]) * x[j];
            } else {
                const float *v = (const float *)w->values + o * k;
                for (int32_t j = 0; j < k; j++) acc += v[j] * x[j];
            }
            out[m * n + o] += acc;
        }
    }
}

int lego_fc_f32(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, float *out)
{
    int rc = lego_fc_check(p, w, in, out);
    if (rc != LEGO_OK) return rc;
    const int32_t n = p->out_features;
    for (int32_t m = 0; m < p->rows; m++) lego_weights_start(w, out + m * n, 1, 1, n, NULL);
    if (w->tile_rows == 4 && w->tile_cols == 4 && w->dtype == LEGO_F32 && n % 4 == 0 && p->in_features % 4 == 0)
        lego_fc_tiles4x4(p, w, in, out);
    else if (w->kind == LEGO_W_TILED)
        lego_fc_tiled(p, w, in, out);
    else
        lego_fc_dense(p, w, in, out);
    for (int32_t m = 0; m < p->rows; m++) lego_weights_finish(w, out + m * n, 1, 1, n);
    return LEGO_OK;
}

#else

int lego_fc_f32(const lego_fc_params_t *p, const lego_weights_t *w, const float *in, float *out)
{
    return lego_fc_ref_f32(p, w, in, out);
}

#endif

int lego_matmul_f32(const lego_matmul_params_t *p, const float *a, const float *b, float *out)
{
    if (p == NULL || a == NULL || b == NULL || out == NULL) return LEGO_ERR_NULL;
    if (p->batch < 1 || p->m < 1 || p->k < 1 || p->n < 1) return LEGO_ERR_PARAM;
    for (int32_t t = 0; t < p->batch; t++) {
        const float *at = a + t * p->m * p->k, *bt = b + t * p->b_batch_stride;
        float *o = out + t * p->m * p->n;
        for (int32_t i = 0; i < p->m; i++) {
            for (int32_t j = 0; j < p->n; j++) o[i * p->n + j] = 0.0f;
            /* Row i of a times b, a row of b at a time: both read in order. */
            for (int32_t kk = 0; kk < p->k; kk++) {
                const float av = at[i * p->k + kk];
                const float *br = bt + kk * p->n;
                for (int32_t j = 0; j < p->n; j++) o[i * p->n + j] += av * br[j];
            }
        }
    }
    return LEGO_OK;
}
