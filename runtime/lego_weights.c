/* Weight access shared by every weighted kernel: one decode path per storage kind. */
#include "lego_runtime.h"

#include <string.h>

static inline float lego_load(const void *base, int32_t dtype, int32_t i)
{
    switch (dtype) {
    case LEGO_F16: return lego_f16_to_f32(((const uint16_t *)base)[i]);
    case LEGO_I8: return (float)((const int8_t *)base)[i];
    default: return ((const float *)base)[i];
    }
}

/* One codebook entry as stored (an int8 codebook's unit is applied with the row scale). */
static inline float lego_codebook_value(const lego_weights_t *w, uint32_t i)
{
    return lego_load(w->values, w->dtype, (int32_t)i);
}

static int lego_exp_ok(int32_t e) { return e >= -126 && e <= 127; }

int lego_weights_check(const lego_weights_t *w)
{
    if (w == NULL || w->values == NULL) return LEGO_ERR_NULL;
    if (w->rows <= 0 || w->cols <= 0 || w->tile_rows <= 0 || w->tile_cols <= 0 ||
        w->tile_rows > LEGO_MAX_TILE_SIDE || w->tile_cols > LEGO_MAX_TILE_SIDE || w->dtype < LEGO_F32 || w->dtype > LEGO_I8 ||
        w->side_dtype < LEGO_F32 || w->side_dtype > LEGO_I8 || !lego_exp_ok(w->values_exp) ||
        !lego_exp_ok(w->scale_exp) || !lego_exp_ok(w->bias_exp) || (w->values_exp != 0 && w->row_scale == NULL))
        return LEGO_ERR_PARAM;
    if (w->kind == LEGO_W_DENSE) return LEGO_OK;
    if (w->kind == LEGO_W_TILED) {
        if (w->indices == NULL) return LEGO_ERR_NULL;
        return (w->index_bits >= 1 && w->index_bits <= 16 && w->entries >= 1 && w->entries <= (1 << w->index_bits))
                   ? LEGO_OK
                   : LEGO_ERR_PARAM;
    }
    return LEGO_ERR_PARAM;
}

float lego_weights_scale(const lego_weights_t *w, int32_t row)
{
    if (w->row_scale == NULL) return 1.0f;
    return lego_load(w->row_scale, w->side_dtype, row) * lego_pow2(w->scale_exp) * lego_pow2(w->values_exp);
}

float lego_weights_bias(const lego_weights_t *w, int32_t row)
{
    return w->bias ? lego_load(w->bias, w->side_dtype, row) * lego_pow2(w->bias_exp) : 0.0f;
}

void lego_weights_start(const lego_weights_t *w, float *out, int32_t n, int32_t stride, int32_t rows,
                        const float *residual)
{
    for (int32_t r = 0; r < rows; r++) {
        float *o = out + r * stride;
        const float *res = residual ? residual + r * stride : NULL;
        if (w->row_scale && res == NULL) { /* lego_weights_finish adds the bias */
            for (int32_t i = 0; i < n; i++) o[i] = 0.0f;
        } else if (w->row_scale) {
            /* The residual enters pre-divided by the scale that lego_weights_finish applies, so
             * that out may be the residual's own buffer (in place). */
            const float s = lego_weights_scale(w, r), inv = s != 0.0f ? 1.0f / s : 0.0f;
            for (int32_t i = 0; i < n; i++) o[i] = res[i] * inv;
        } else {
            const float b = lego_weights_bias(w, r);
            for (int32_t i = 0; i < n; i++) o[i] = res ? res[i] + b : b;
        }
    }
}

void lego_weights_finish(const lego_weights_t *w, float *out, int32_t n, int32_t stride, int32_t rows)
{
    if (w->row_scale == NULL) return;
    for (int32_t r = 0; r < rows; r++) {
        const float s = lego_weights_scale(w, r), b = lego_weights_bias(w, r);
        float *o = out + r * stride;
        for (int32_t i = 0; i < n; i++) o[i] = o[i] * s + b;
    }
}

void lego_weights_tile(const lego_weights_t *w, int32_t tr, int32_t tc, float *tile,
                       int32_t *nr, int32_t *nc)
{
    const int32_t r0 = tr * w->tile_rows, c0 = tc * w->tile_cols;
    *nr = (w->rows - r0 < w->tile_rows) ? w->rows - r0 : w->tile_rows;
    *nc = (w->cols - c0 < w->tile_cols) ? w->cols - c0 : w->tile_cols;
    if (w->kind == LEGO_W_TILED) {
        const int32_t tiles_per_row = (w->cols + w->tile_cols - 1) / w->tile_cols;
        const uint32_t t = (uint32_t)(tr * tiles_per_row + tc);
        lego_weights_entry(w, lego_unpack_index(w->indices, t, (uint32_t)w->index_bits), tile);
        return;
    }
    for (int32_t i = 0; i < w->tile_rows; i++) {
        float *row = tile + i * w->tile_cols;
        const int32_t from = (r0 + i) * w->cols + c0, n_in = i < *nr ? *nc : 0;
        if (w->dtype == LEGO_F32) {
            memcpy(row, (const float *)w->values + from, (size_t)n_in * sizeof(float));
        } else {
            for (int32_t j = 0; j < n_in; j++) row[j] = lego_load(w->values, w->dtype, from + j);
        }
        for (int32_t j = n_in; j < w->tile_cols; j++) row[j] = 0.0f;
    }
}

void lego_weights_block4x4(const lego_weights_t *w, int32_t r0, int32_t c0, float *block)
{
    const int32_t tr = w->tile_rows, tc = w->tile_cols;
    int32_t nr, nc;
    if (tr == 4 && tc == 4 && r0 % 4 == 0 && c0 % 4 == 0) { /* one whole tile */
        lego_weights_tile(w, r0 / 4, c0 / 4, block, &nr, &nc);
        return;
    }
    const int32_t tiles_per_row = (w->cols + tc - 1) / tc, n = tr * tc;
    if (w->kind == LEGO_W_TILED && 4 % tr == 0 && 4 % tc == 0 && r0 + 4 <= w->rows && c0 + 4 <= w->cols) {
        /* Tiles that divide the block (1x1 .. 4x4): one index unpack per tile. */
        uint32_t t_row = (uint32_t)((r0 / tr) * tiles_per_row + c0 / tc);
        const uint32_t bits = (uint32_t)w->index_bits;
        if (tr == 1) { /* row tiles, the common small shapes: unrolled */
            for (int32_t a = 0; a < 4; a++, t_row += (uint32_t)tiles_per_row) {
                float *dst = block + a * 4;
                const uint8_t *ix = w->indices;
                if (tc == 1) {
                    dst[0] = lego_codebook_value(w, lego_unpack_index(ix, t_row, bits));
                    dst[1] = lego_codebook_value(w, lego_unpack_index(ix, t_row + 1u, bits));
                    dst[2] = lego_codebook_value(w, lego_unpack_index(ix, t_row + 2u, bits));
                    dst[3] = lego_codebook_value(w, lego_unpack_index(ix, t_row + 3u, bits));
                } else if (tc == 2) {
                    const uint32_t s0 = 2u * lego_unpack_index(ix, t_row, bits);
                    const uint32_t s1 = 2u * lego_unpack_index(ix, t_row + 1u, bits);
                    dst[0] = lego_codebook_value(w, s0), dst[1] = lego_codebook_value(w, s0 + 1u);
                    dst[2] = lego_codebook_value(w, s1), dst[3] = lego_codebook_value(w, s1 + 1u);
                } else {
                    const uint32_t s0 = 4u * lego_unpack_index(ix, t_row, bits);
                    for (uint32_t j = 0; j < 4u; j++) dst[j] = lego_codebook_value(w, s0 + j);
                }
            }
            return;
        }
        for (int32_t a = 0; a < 4; a += tr, t_row += (uint32_t)tiles_per_row) {
            uint32_t t = t_row;
            for (int32_t b = 0; b < 4; b += tc, t++) {
                const int32_t base = (int32_t)lego_unpack_index(w->indices, t, (uint32_t)w->index_bits) * n;
                for (int32_t i = 0; i < tr; i++)
                    for (int32_t j = 0; j < tc; j++)
                        block[(a + i) * 4 + b + j] = w->dtype == LEGO_F32 ? ((const float *)w->values)[base + i * tc + j]
                                                                          : lego_load(w->values, w->dtype, base + i * tc + j);
            }
        }
        return;
    }
    /* Any other shape or an edge block: each element straight from its tile. */
    for (int32_t i = 0; i < 4; i++) {
        const int32_t row = r0 + i;
        for (int32_t j = 0; j < 4; j++) {
            const int32_t col = c0 + j;
            float v = 0.0f;
            if (row < w->rows && col < w->cols) {
                if (w->kind == LEGO_W_TILED) {
                    const uint32_t t = (uint32_t)((row / tr) * tiles_per_row + col / tc);
                    const int32_t idx = (int32_t)lego_unpack_index(w->indices, t, (uint32_t)w->index_bits);
                    v = lego_load(w->values, w->dtype, idx * n + (row % tr) * tc + col % tc);
                } else {
                    v = lego_load(w->values, w->dtype, row * w->cols + col);
                }
            }
            block[i * 4 + j] = v;
        }
    }
}
