/* Tile access shared by every weighted kernel: one decode path per storage kind. */
#include "lego_runtime.h"

#include <string.h>

int lego_weights_check(const lego_weights_t *w)
{
    if (w == NULL) return LEGO_ERR_NULL;
    if (w->rows <= 0 || w->cols <= 0 || w->tile_rows <= 0 || w->tile_cols <= 0 ||
        w->tile_rows * w->tile_cols > LEGO_MAX_TILE)
        return LEGO_ERR_PARAM;
    if (w->kind == LEGO_W_DENSE_F32) return w->dense ? LEGO_OK : LEGO_ERR_NULL;
    if (w->kind == LEGO_W_TILED_F32) {
        if (w->codebook == NULL || w->indices == NULL) return LEGO_ERR_NULL;
        return (w->index_bits >= 1 && w->index_bits <= 16) ? LEGO_OK : LEGO_ERR_PARAM;
    }
    return LEGO_ERR_PARAM;
}

void lego_weights_tile(const lego_weights_t *w, int32_t tr, int32_t tc, float *tile,
                       int32_t *nr, int32_t *nc)
{
    const int32_t r0 = tr * w->tile_rows, c0 = tc * w->tile_cols;
    const int32_t rows = (w->rows - r0 < w->tile_rows) ? w->rows - r0 : w->tile_rows;
    const int32_t cols = (w->cols - c0 < w->tile_cols) ? w->cols - c0 : w->tile_cols;
    *nr = rows;
    *nc = cols;
    if (w->kind == LEGO_W_TILED_F32) {
        const int32_t tiles_per_row = (w->cols + w->tile_cols - 1) / w->tile_cols;
        const uint32_t t = (uint32_t)(tr * tiles_per_row + tc);
        const int32_t n = w->tile_rows * w->tile_cols;
        const float *src = w->codebook + (int32_t)lego_unpack_index(w->indices, t, (uint32_t)w->index_bits) * n;
        memcpy(tile, src, (size_t)n * sizeof(float));
        return;
    }
    for (int32_t i = 0; i < w->tile_rows; i++)
        for (int32_t j = 0; j < w->tile_cols; j++)
            tile[i * w->tile_cols + j] =
                (i < rows && j < cols) ? w->dense[(r0 + i) * w->cols + c0 + j] : 0.0f;
}
