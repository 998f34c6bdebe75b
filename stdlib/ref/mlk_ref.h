/* mlk_ref.h: plain C reference of every device tile in stdlib/tiles/.
 *
 * Each function computes exactly the part of the output one device task computes, with the same
 * arguments as its device twin (mlk_tile_* in stdlib/tiles/mlk_tiles.h), so the CPU simulator
 * runs the same task grid with these in place of the GPU tiles, and tests call them over the whole
 * range as the sequential reference. Activations are f32 [batch, cols], row stride cols; weights
 * bf16; accumulation in f32. Columns [c0, c0 + count) are the task's output columns (MlkOpDesc).
 */
#ifndef MLK_REF_H
#define MLK_REF_H

#include <stdint.h>

#include "mlk_desc.h"

/* out[b, r] = fn(sum_k W[r, k] * xn[b, k] + bias[r]) (+ res[b, r]) for r in [row0, row0 + rows),
 * b < batch; W bf16 [n, k]; res may be NULL; xn = x, or when norm_w is not NULL the rmsnorm of
 * each row x[b] * rsqrt(mean(x[b]^2) + eps) * norm_w (bf16 [k]); bias bf16 [n], or NULL (0); fn
 * NONE, RELU or SILU; or fn MUL: out[b, r] = (sum + bias[r]) * res[b, r] (a gated product, res
 * required). */
void mlk_ref_matvec(float *out, const float *x, const uint16_t *W, const float *res,
                    const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n, int64_t k,
                    int64_t row0, int64_t rows, int64_t batch, int fn);

/* A task's arrival at its group's counter `arrive` (a split matvec's slices, a folded split
 * attention's chunks), after its writes: returns 1 to the last of `members` to arrive, which then
 * sees every member's writes and has put the counter back to 0; 0 to the others. */
int mlk_ref_group_arrive(uint32_t *arrive, int64_t members);

/* Slice `slice` of k of a split matvec's group of `members` tasks from `first` (rows [row0, row0 +
 * rows)): its partial sums into `scratch` (mlk_desc.h), then an arrival at `arrive`; the last
 * task to arrive merges the slices in slice order and writes out (the same result as
 * mlk_ref_matvec up to f32 rounding) and returns 1; the others return 0. */
int mlk_ref_matvec_split(float *out, const float *x, const uint16_t *W, const float *res,
                         const uint16_t *norm_w, const uint16_t *bias, float eps, int64_t n,
                         int64_t k, int64_t row0, int64_t rows, int64_t batch, int fn,
                         int64_t split, int64_t first, int64_t members, int64_t slice,
                         float *scratch, uint32_t *arrive);

/* out[b, i] = fn(a[b, i] + bias[i], c[b, i]) for i in [c0, c0 + count); c NULL for unary
 * functions; bias bf16 [n] (every row the same), or NULL (0). */
/* out = the sum over r = 0 .. ranks-1, in that order, of the f32 rows at xs[r] (each rank's x). */
void mlk_ref_allreduce(float *out, const uint64_t *xs, int64_t ranks, int64_t n, int64_t c0,
                       int64_t count, int64_t batch);
void mlk_ref_eltwise(float *out, const float *a, const float *c, const uint16_t *bias, int64_t n,
                     int64_t c0, int64_t count, int64_t batch, int fn);

/* out[b, i] = table[ids[b], i] for i in [c0, c0 + count): table bf16 [rows, n]. */
void mlk_ref_gather(float *out, const int32_t *ids, const uint16_t *table, int64_t n, int64_t c0,
                    int64_t count, int64_t batch);

/* out[b, :] = x[b, :] * rsqrt(mean(x[b, :]^2) + eps) * w, all n columns. */
void mlk_ref_rmsnorm(float *out, const float *x, const uint16_t *w, float eps, int64_t n,
                     int64_t batch);

/* Rotary embedding of columns [c0, c0 + count) (whole heads of head_dim) of x [batch, n]. For the
 * pair (j, j + head_dim/2) of a head, angle = pos[b] * inv_freq[j], inv_freq[j] = theta^(-2j/hd),
 * with the Llama 3 scaling of inv_freq when factor > 1 (low/high frequency factors, original
 * context original_max_pos): out[j] = x[j] cos - x[j+h] sin, out[j+h] = x[j+h] cos + x[j] sin. */
void mlk_ref_rope(float *out, const float *x, const int32_t *pos, int64_t n, int64_t head_dim,
                  int64_t c0, int64_t count, int64_t batch, float theta, float factor,
                  float low_freq_factor, float high_freq_factor, int64_t original_max_pos);

/* The inverse frequency of pair j of a head (shared by rope and its tests). */
float mlk_ref_rope_inv_freq(int64_t j, int64_t head_dim, float theta, float factor,
                            float low_freq_factor, float high_freq_factor,
                            int64_t original_max_pos);

/* Writes k and v rows (f32 [batch, kv_heads*head_dim]) of kv heads [head0, head0 + nheads) at
 * position pos[b] of layer `layer` into the bf16 cache pool (layout: mlk_cache_offset), through
 * the page table pages[b * pages_per_seq + pos[b] / page]. The geometry is the cache's
 * (MlkCacheDesc: kv_heads, head_dim, page); pages_per_seq and npages are its run-time sizes.
 * theta > 0: each key head is written rotated, as mlk_ref_rope with these parameters would
 * rotate it (a rope fused into the append); theta 0: as given. A row whose position is outside
 * its page table (an idle row's -1) or whose page is outside the pool writes nothing. */
void mlk_ref_kv_append(uint16_t *cache, const float *k, const float *v, const int32_t *pos,
                       const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                       int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t head0,
                       int64_t nheads, int64_t batch, float theta, float factor,
                       float low_freq_factor, float high_freq_factor, int64_t original_max_pos);

/* Decode attention for kv heads [kvh0, kvh0 + nkvh) and their query heads: for each row b and
 * query head h (kv head h / (heads / kv_heads)), softmax over positions t in [0, pos[b]] of
 * q[b, h] . K[t] / sqrt(head_dim), times V[t]; out f32 [batch, heads*head_dim]. A row with
 * pos[b] < 0 gets zeros; positions past the page table's reach are left out (as on the device). */
void mlk_ref_attention(float *out, const float *q, const uint16_t *cache, const int32_t *pos,
                       const int32_t *pages, int64_t kv_heads, int64_t head_dim, int64_t page,
                       int64_t pages_per_seq, int64_t npages, int64_t layer, int64_t heads,
                       int64_t kvh0, int64_t nkvh, int64_t batch);

/* Split attention (MLK_OP_ATTENTION with split > 1, mlk_desc.h): for kv heads [kvh0, kvh0 + nkvh)
 * and slot `chunk` of `split`, the partials of the positions [c * len, min((c + 1) * len, T)) of
 * the row's chunk c in that slot (T = pos[b] + 1, len = mlk_attn_chunk_len(T, split, min_chunk,
 * batch), c = mlk_attn_slot_chunk(..)) into their records of `part` (f32 [batch,
 * mlk_attn_part_cols(kv_heads, heads, head_dim, split, kvh)], tasks of kvh kv heads): o = sum
 * exp(s - m) V, m = max s, l = sum exp(s - m); a slot without a chunk gives o = 0, m = -inf,
 * l = 0. */
void mlk_ref_attention_split(float *part, const float *q, const uint16_t *cache,
                             const int32_t *pos, const int32_t *pages, int64_t kv_heads,
                             int64_t head_dim, int64_t page, int64_t pages_per_seq, int64_t npages,
                             int64_t layer, int64_t heads, int64_t kvh, int64_t split,
                             int64_t min_chunk, int64_t kvh0, int64_t nkvh, int64_t chunk,
                             int64_t batch);

/* A split attention that merges its own chunks (mlk_attn_folds), task `chunk` of kv heads [kvh0,
 * kvh0 + nkvh): at batch < split, mlk_ref_attention_split into `part`, returning 1 (the block's
 * last task then merges); at batch >= split each row is one chunk (mlk_attn_chunk_len), its whole
 * attention, which the slot holding it writes into `out` (mlk_ref_attention; slot 0 the zeros of
 * a row with no positions), returning 0: no merge. */
int mlk_ref_attention_fold(float *out, float *part, const float *q, const uint16_t *cache,
                           const int32_t *pos, const int32_t *pages, int64_t kv_heads,
                           int64_t head_dim, int64_t page, int64_t pages_per_seq, int64_t npages,
                           int64_t layer, int64_t heads, int64_t kvh, int64_t split,
                           int64_t min_chunk, int64_t kvh0, int64_t nkvh, int64_t chunk,
                           int64_t batch);

/* The merge of the `split` chunks' partials of kv heads [kvh0, kvh0 + nkvh) (layout as above) into
 * the attention output f32 [batch, heads * head_dim]: sum_c exp(m_c - M) o_c / sum_c exp(m_c - M)
 * l_c, M = max_c m_c; zeros where every chunk is empty. */
void mlk_ref_attn_reduce(float *out, const float *part, int64_t kv_heads, int64_t head_dim,
                         int64_t heads, int64_t kvh, int64_t split, int64_t kvh0, int64_t nkvh,
                         int64_t batch);

/* out[b] = the index of the largest x[b, i], i < k (the first of equal maxima). */
void mlk_ref_argmax(int32_t *out, const float *x, int64_t k, int64_t batch);
/* The split argmax (mlk_desc.h ARGMAX with split, ARGMAX_REDUCE): chunk `chunk` of every row into
 * its partials (value, index bits), and the index of the best partials. */
void mlk_ref_argmax_part(float *part, const float *x, int64_t k, int64_t split, int64_t chunk,
                         int64_t batch);
void mlk_ref_argmax_reduce(int32_t *out, const float *part, int64_t split, int64_t batch);

/* out[b] = a token of row b of the logits x [batch, k] drawn with row b of `params`, the sampling
 * tensor's rows of MLK_SAMPLE_PARAMS floats (MLK_OP_SAMPLE in mlk_desc.h says how; a row whose
 * top_k is 0 takes `temperature`, `top_k` and `top_p`): softmax of x / temperature over the top_k
 * largest logits, cut to the smallest prefix whose probability reaches top_p, and the first token
 * whose cumulative probability exceeds u times that prefix's; temperature 0 is the argmax. */
void mlk_ref_sample(int32_t *out, const float *x, const float *params, int64_t k,
                    float temperature, int64_t top_k, float top_p, int64_t batch);

/* One row of mlk_ref_sample, with its parameters (temperature 0: the argmax; top_k clamped to
 * [1, MLK_SAMPLE_MAX_TOP_K]). With `margin` not NULL, also how close the row came to another
 * result: the smallest distance between u * C_J and any C_r (r <= J), or, with top_p < 1, between
 * top_p * C_{K-1} and any C_r, relative to C_J and C_{K-1} (infinite when no sum decides, as for
 * a non-finite largest logit). A device tile sums in another order: where margin is below ~1e-5,
 * its token may differ. */
int32_t mlk_ref_sample_row(const float *x, float u, int64_t k, float temperature, int64_t top_k,
                           float top_p, double *margin);

/* The activation functions, shared by the references above. */
float mlk_ref_relu(float v);
float mlk_ref_silu(float v);

#endif /* MLK_REF_H */
