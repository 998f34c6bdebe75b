/* mlk_ref.h: plain C reference of every device tile in stdlib/tiles/.
 *
 * Each function computes exactly the part of the output one device task computes, with the same
 * arguments, so the CPU simulator runs the same task grid with these in place of the GPU tiles,
 * and tests call them over the whole range (row0 = 0, rows = n) as the sequential reference.
 * Accumulation is in f32 like the device; tests compare with a stated relative tolerance.
 */
#ifndef MLK_REF_H
#define MLK_REF_H

#include <stdint.h>

#include "mlk_desc.h"

/* out[r] = fn(sum_k W[r,k] * x[k]) (+ res[r]) for r in [row0, row0 + rows); W is bf16 [n, k] row-major,
 * res may be NULL; fn is MLK_FN_NONE, MLK_FN_RELU or MLK_FN_SILU. */
void mlk_ref_matvec(float *out, const float *x, const uint16_t *W, const float *res, int64_t n,
                    int64_t k, int64_t row0, int64_t rows, int fn);

/* out[i] = fn(a[i], b[i]) for i in [i0, i0 + count); b is NULL for unary functions. */
void mlk_ref_eltwise(float *out, const float *a, const float *b, int64_t i0, int64_t count, int fn);

/* The activation functions, shared by the references above. */
float mlk_ref_relu(float v);
float mlk_ref_silu(float v);

#endif /* MLK_REF_H */
