/* rope.c: rotary embedding with the Llama 3 scaled inverse frequencies.
 *
 * Freestanding, so the math is here. Both ends follow the reference, where small errors are
 * amplified: the angle pos * inv_freq[j] is an f32 product of values up to ~1e5, so one ulp of
 * inv_freq moves a large angle by ~1e-2 rad. Hence:
 *   - inv_freq[j] = theta^(-2j/head_dim) and the Llama 3 scaling are evaluated in double (log and
 *     exp below, ~1e-16 relative) and rounded to f32 once, with FP contraction off: the f32 result
 *     equals the correctly rounded value, like a reference in double with libm pow.
 *   - the angle is the f32 product (float)pos * inv_freq, as in the reference.
 *   - sin/cos of that f32 angle: reduction by pi/2 in double (two-part pi/2 with fma, error
 *     ~1e-16 absolute for |angle| < 2^31), then the f32 minimax polynomials on [-pi/4, pi/4]
 *     (cephes sinf/cosf): within ~2 ulp of libm sinf/cosf of the same angle.
 * The inverse frequencies of a task are computed once into shared memory.
 */
#include "mlk_tiles.h"

extern MLK_SHARED float mlk_tile_smem[MLK_MATVEC_MAX_K] __attribute__((aligned(16)));

#define LN2_HI 6.93147180369123816490e-01 /* 32 significant bits: k * LN2_HI is exact */
#define LN2_LO 1.90821492927058770002e-10
#define PIO2_HI 1.57079632679489655800e+00 /* pi/2 = PIO2_HI + PIO2_LO to ~1e-33 */
#define PIO2_LO 6.12323399573676603587e-17
#define TWO_PI 6.28318530717958647692

static inline double d_from_bits(uint64_t u) {
  union { uint64_t u; double d; } c = {u};
  return c.d;
}
static inline uint64_t d_bits(double d) {
  union { double d; uint64_t u; } c = {d};
  return c.u;
}

/* ln x for a positive normal finite x: x = 2^e m with m in [sqrt(1/2), sqrt(2)),
 * ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, series to s^25 (< 1e-19). */
static double dlog(double x) {
#pragma clang fp contract(off)
  uint64_t u = d_bits(x);
  int e = (int)((u >> 52) & 0x7ff) - 1023;
  double m = d_from_bits((u & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
  if (m > 1.41421356237309504880) {
    m *= 0.5;
    e += 1;
  }
  double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double p = 1.0 / 25.0;
  for (int i = 23; i >= 1; i -= 2)
    p = p * s2 + 1.0 / (double)i;
  return (double)e * LN2_HI + ((double)e * LN2_LO + 2.0 * s * p);
}

/* e^y for |y| < 700: y = k ln2 + r, |r| <= ln2/2, Taylor to r^17 (< 1e-19). */
static double dexp(double y) {
#pragma clang fp contract(off)
  double k = __builtin_rint(y * 1.44269504088896340736);
  double r = (y - k * LN2_HI) - k * LN2_LO;
  double p = 1.0 / 355687428096000.0; /* 1/17! */
  double f = 355687428096000.0;
  for (int i = 17; i >= 1; i--) {
    f /= (double)i; /* (i-1)! exactly */
    p = p * r + 1.0 / f;
  }
  return p * d_from_bits((uint64_t)((int64_t)k + 1023) << 52);
}

/* The device twin of mlk_ref_rope_inv_freq (double, then one rounding to f32). Out of line: it
 * runs once per pair and task, and every rope op of a megakernel shares it. */
static __attribute__((noinline)) float inv_freq(int64_t j, int64_t head_dim, float theta,
                                                float factor, float low_freq_factor,
                                                float high_freq_factor, int64_t original_max_pos) {
#pragma clang fp contract(off)
  double f = dexp(-(double)(2 * j) / (double)head_dim * dlog((double)theta));
  if (factor > 1.0f) {
    double omp = (double)original_max_pos, lo = low_freq_factor, hi = high_freq_factor;
    double low_wavelen = omp / lo, high_wavelen = omp / hi;
    double wavelen = TWO_PI / f;
    if (wavelen > low_wavelen) {
      f = f / (double)factor;
    } else if (wavelen >= high_wavelen) {
      double smooth = (omp / wavelen - lo) / (hi - lo);
      f = (1.0 - smooth) * f / (double)factor + smooth * f;
    }
  }
  return (float)f;
}

/* sin and cos of an f32 angle (see the top of the file). */
static inline void sincos_f(float a, float *sp, float *cp) {
  if (!(__builtin_fabsf(a) < 1e30f)) { /* inf, NaN */
    *sp = *cp = a - a;
    return;
  }
  double x = a;
  double q = __builtin_rint(x * 0.63661977236758134308);
  double rd = __builtin_fma(-q, PIO2_HI, x);
  rd = __builtin_fma(-q, PIO2_LO, rd);
  int quad = (int)(q - 4.0 * __builtin_floor(q * 0.25));
  float r = (float)rd, z = r * r;
  float s = __builtin_fmaf(__builtin_fmaf(-1.95152959e-4f, z, 8.33216087e-3f), z, -1.66666546e-1f);
  s = __builtin_fmaf(s * z, r, r);
  float c = __builtin_fmaf(__builtin_fmaf(2.44331571e-5f, z, -1.38873163e-3f), z, 4.16666457e-2f);
  c = __builtin_fmaf(__builtin_fmaf(c, z, -0.5f), z, 1.0f);
  switch (quad) {
  case 0: *sp = s; *cp = c; break;
  case 1: *sp = c; *cp = -s; break;
  case 2: *sp = -s; *cp = -c; break;
  default: *sp = -c; *cp = s; break;
  }
}

/* The rotated pair of (x0, x1) = (x[j], x[j + head_dim/2]): one definition, so that a fused rope
 * (kv_append's keys) rounds exactly as the rope op does. */
static inline float rotate0(float x0, float x1, float c, float s) { return x0 * c - x1 * s; }
static inline float rotate1(float x0, float x1, float c, float s) { return x1 * c + x0 * s; }

void mlk_tile_rope(float *out, const float *x, const int32_t *pos, int64_t n, int64_t head_dim,
                   int64_t c0, int64_t count, int64_t batch, float theta, float factor,
                   float low_freq_factor, float high_freq_factor, int64_t original_max_pos) {
  int64_t half = head_dim / 2;
  int64_t heads = half > 0 ? count / head_dim : 0;
  if (heads <= 0 || batch <= 0)
    return;
  uint32_t tid = mlk_tid();
  int tab = half <= MLK_MATVEC_MAX_K;
  if (tab) {
    for (int64_t j = tid; j < half; j += MLK_BLOCK_THREADS)
      mlk_tile_smem[j] = inv_freq(j, head_dim, theta, factor, low_freq_factor, high_freq_factor,
                                  original_max_pos);
    __nvvm_barrier_sync(0);
  }
  /* One item per (row, head, pair), in 32-bit arithmetic (a task holds far fewer than 2^32). */
  uint32_t items = (uint32_t)(batch * heads * half), uh = (uint32_t)half, uheads = (uint32_t)heads;
  for (uint32_t e = tid; e < items; e += MLK_BLOCK_THREADS) {
    uint32_t r = e / uh, j = e - r * uh;
    uint32_t b = r / uheads, h = r - b * uheads;
    float f = tab ? mlk_tile_smem[j]
                  : inv_freq(j, head_dim, theta, factor, low_freq_factor, high_freq_factor,
                             original_max_pos);
    float s, c;
    sincos_f((float)pos[b] * f, &s, &c);
    int64_t base = (int64_t)b * n + c0 + (int64_t)h * head_dim + j;
    float x0 = x[base], x1 = x[base + half];
    out[base] = rotate0(x0, x1, c, s);
    out[base + half] = rotate1(x0, x1, c, s);
  }
}

int mlk_rope_freqs(int64_t head_dim, float theta, float factor, float low_freq_factor,
                   float high_freq_factor, int64_t original_max_pos) {
  int64_t half = head_dim / 2;
  if (half > MLK_MATVEC_MAX_K)
    return 0;
  for (int64_t j = mlk_tid(); j < half; j += MLK_BLOCK_THREADS)
    mlk_tile_smem[j] = inv_freq(j, head_dim, theta, factor, low_freq_factor, high_freq_factor,
                                original_max_pos);
  __nvvm_barrier_sync(0);
  return 1;
}

float mlk_rope_elem(const float *x, uint32_t d, uint32_t half, int32_t pos, int tab, int64_t head_dim,
                    float theta, float factor, float low_freq_factor, float high_freq_factor,
                    int64_t original_max_pos) {
  uint32_t j = d < half ? d : d - half;
  float f = tab ? mlk_tile_smem[j]
                : inv_freq(j, head_dim, theta, factor, low_freq_factor, high_freq_factor,
                           original_max_pos);
  float s, c;
  sincos_f((float)pos * f, &s, &c);
  float x0 = x[j], x1 = x[j + half];
  return d < half ? rotate0(x0, x1, c, s) : rotate1(x0, x1, c, s);
}
