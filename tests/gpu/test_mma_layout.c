/* test_mma_layout.c: host check of the fragment indexing of matvec.c's tensor-core path (no GPU).
 *
 * An emulation of mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 as the PTX ISA lays out its
 * fragments (lane = 4 g + t; A: a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..],
 * a3 = A[g+8][2t+8..]; B: b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; D: d0,d1 = D[g][2t..2t+1],
 * d2,d3 = D[g+8][2t..2t+1]; the lower k in the low 16 bits), fed exactly as mma_chunk feeds it:
 * lane t's 16-byte weight load of rows g and g + 8 at columns 8t..8t+7 of each block of 32, the
 * staged hi/lo pair words of batch row 8j + g (mma_stage's layout and rounding), the same register
 * order in the four MMAs per block. The formulas are restated here, not shared: a change to
 * mma_chunk's indexing must be mirrored. Checks D against a double-precision product for odd k
 * (zero-padded to a multiple of 32) within the stated bound |err| <= 2^-15 sum |w x|. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float bf(uint32_t h) {
  union { uint32_t u; float f; } c = {h << 16};
  return c.f;
}
static uint32_t rne(float f) { /* as matvec.c bf16_rne */
  union { float f; uint32_t u; } c = {f};
  if (f != f)
    return (c.u >> 16) | 0x40u;
  return (c.u + 0x7fffu + ((c.u >> 16) & 1u)) >> 16;
}

/* The emulated instruction over a whole warp's registers. */
static void mma(float d[32][4], const uint32_t a[32][4], const uint32_t b[32][2]) {
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; l++) {
    int g = l >> 2, t = l & 3;
    for (int e = 0; e < 2; e++) {
      A[g][2 * t + e] = bf(a[l][0] >> (16 * e) & 0xffff);
      A[g + 8][2 * t + e] = bf(a[l][1] >> (16 * e) & 0xffff);
      A[g][2 * t + 8 + e] = bf(a[l][2] >> (16 * e) & 0xffff);
      A[g + 8][2 * t + 8 + e] = bf(a[l][3] >> (16 * e) & 0xffff);
      B[2 * t + e][g] = bf(b[l][0] >> (16 * e) & 0xffff);
      B[2 * t + 8 + e][g] = bf(b[l][1] >> (16 * e) & 0xffff);
    }
  }
  for (int l = 0; l < 32; l++) {
    int g = l >> 2, t = l & 3;
    for (int e = 0; e < 4; e++) {
      int r = g + 8 * (e >> 1), c = 2 * t + (e & 1);
      float s = d[l][e]; /* products of bf16 are exact in f32 */
      for (int kk = 0; kk < 16; kk++)
        s += A[r][kk] * B[kk][c];
      d[l][e] = s;
    }
  }
}

int main(void) {
  srand(7);
  int fails = 0;
  static const int ks[] = {8, 32, 200, 520, 1000};
  for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
    int k = ks[ki], kp = (k + 31) & ~31;
    uint16_t *W = calloc((size_t)16 * kp, 2);
    uint32_t *hi = calloc((size_t)8 * kp / 2, 4), *lo = calloc((size_t)8 * kp / 2, 4);
    float *x = calloc((size_t)8 * kp, 4);
    for (int r = 0; r < 16; r++)
      for (int i = 0; i < k; i++)
        W[r * kp + i] = (uint16_t)rne((float)rand() / RAND_MAX * 2.0f - 1.0f);
    for (int b = 0; b < 8; b++)
      for (int i = 0; i < k; i++)
        x[b * kp + i] = ((float)rand() / RAND_MAX * 2.0f - 1.0f) * (b == 3 ? 1e-3f : 1.0f);
    /* staging: pairs of k, hi and lo (split2) */
    for (int b = 0; b < 8; b++)
      for (int p = 0; p < kp / 2; p++) {
        float v0 = x[b * kp + 2 * p], v1 = x[b * kp + 2 * p + 1];
        uint32_t h0 = rne(v0), h1 = rne(v1);
        hi[b * kp / 2 + p] = h0 | h1 << 16;
        lo[b * kp / 2 + p] = rne(v0 - bf(h0)) | rne(v1 - bf(h1)) << 16;
      }
    float d[32][4];
    memset(d, 0, sizeof d);
    for (int kb = 0; kb < kp / 32; kb++) {
      uint32_t w[32][2][4], h[32][4], l[32][4];
      for (int ln = 0; ln < 32; ln++) {
        int g = ln >> 2, t = ln & 3;
        for (int q = 0; q < 4; q++) {
          for (int rr = 0; rr < 2; rr++) {
            const uint16_t *p = W + (g + 8 * rr) * kp + kb * 32 + 8 * t + 2 * q;
            w[ln][rr][q] = p[0] | (uint32_t)p[1] << 16; /* a little-endian 16-byte load */
          }
          h[ln][q] = hi[g * kp / 2 + kb * 16 + 4 * t + q];
          l[ln][q] = lo[g * kp / 2 + kb * 16 + 4 * t + q];
        }
      }
      uint32_t a[32][4], bb[32][2];
      for (int step = 0; step < 2; step++)
        for (int part = 0; part < 2; part++) {
          for (int ln = 0; ln < 32; ln++) {
            int q = 2 * step; /* step 0: words a, b; step 1: c, d */
            a[ln][0] = w[ln][0][q], a[ln][1] = w[ln][1][q];
            a[ln][2] = w[ln][0][q + 1], a[ln][3] = w[ln][1][q + 1];
            const uint32_t *src = part ? l[ln] : h[ln];
            bb[ln][0] = src[q], bb[ln][1] = src[q + 1];
          }
          mma(d, a, bb);
        }
    }
    double worst = 0;
    for (int ln = 0; ln < 32; ln++) {
      int g = ln >> 2, t = ln & 3;
      for (int e = 0; e < 4; e++) {
        int r = g + 8 * (e >> 1), b = 2 * t + (e & 1);
        double s = 0, m = 0;
        for (int i = 0; i < k; i++) {
          double p = (double)bf(W[r * kp + i]) * x[b * kp + i];
          s += p, m += fabs(p);
        }
        double err = fabs(d[ln][e] - s) / (m > 0 ? m : 1);
        if (err > worst)
          worst = err;
      }
    }
    int ok = worst <= 0x1p-15;
    printf("%s: k %d: max |err| / sum|w x| = %.3g (bound 2^-15 = %.3g)\n", ok ? "ok" : "FAIL", k,
           worst, 0x1p-15);
    fails += !ok;
    free(W), free(hi), free(lo), free(x);
  }
  return fails != 0;
}
