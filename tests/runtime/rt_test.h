/* rt_test.h: what the runtime tests share: checks, a seeded RNG, and a hand-built model.
 *
 * The model is written out as MlkModelDesc tables the way mlkc would emit them, so the runtime is
 * tested without the compiler. Its shapes are deliberately awkward (no size is a multiple of its
 * tile, producer and consumer tiles differ) so that partial tiles and multi-counter notifies are
 * exercised. Tests copy the tables (rt_mlp_init) and break one field to get invalid or
 * deadlocking variants.
 *
 *   kernel "forward":  h = relu(W1 x)           matvec, tile 16   (ALL event h -> op 1)
 *                      y = W2 h + b             matvec, tile 8    (TILE event y, 8 -> 7)
 *                      z = y * g                eltwise, tile 7   (TILE event z, 7 -> 32)
 *                      o = silu(z)              eltwise, tile 32
 *   kernel "post":     u = relu(r)              eltwise, tile 5   (TILE event u, 5 -> 9)
 *                      v = u + r                eltwise, tile 9
 */
#ifndef RT_TEST_H
#define RT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlk.h"

static int rt_failures;

#define CHECK(cond, ...)                                                                          \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                    \
      fprintf(stderr, __VA_ARGS__);                                                               \
      fputc('\n', stderr);                                                                        \
      rt_failures++;                                                                              \
    }                                                                                             \
  } while (0)

/* Runs `call`, which must return `want`; prints mlk_last_error() otherwise. */
#define CHECK_ST(call, want)                                                                      \
  do {                                                                                            \
    mlk_status st_ = (call);                                                                      \
    CHECK(st_ == (want), "%s returned %s, expected %s: %s", #call, mlk_status_name(st_),          \
          mlk_status_name(want), mlk_last_error());                                               \
  } while (0)
#define CHECK_OK(call) CHECK_ST(call, MLK_OK)

#define CHECK_CONTAINS(hay, needle)                                                               \
  CHECK(strstr((hay), (needle)) != NULL, "'%s' does not contain '%s'", (hay), (needle))

static inline int rt_finish(const char *name) {
  if (rt_failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", name, rt_failures);
    return 1;
  }
  printf("%s: ok\n", name);
  return 0;
}

/* A test that hangs must fail, not stall CTest: every test arms this watchdog first. */
static inline void rt_watchdog(unsigned seconds) { alarm(seconds); }

/* ---- RNG: seeded from RT_SEED (CTest sets MLK_TEST_SEED there), else from the clock, and printed
 * so a failure can be replayed ---- */

static uint64_t rt_rng_state;

static inline uint64_t rt_seed(void) {
  const char *s = getenv("RT_SEED");
  uint64_t seed = s && *s ? strtoull(s, NULL, 10) : 0;
  if (seed == 0) /* unset or 0: a fresh one */
    seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  printf("seed %llu (replay with RT_SEED=%llu)\n", (unsigned long long)seed, (unsigned long long)seed);
  rt_rng_state = seed;
  return seed;
}

static inline uint64_t rt_next(void) { /* splitmix64 */
  uint64_t z = (rt_rng_state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* Uniform in [-scale, scale). */
static inline float rt_uniform(float scale) {
  return (float)((double)(rt_next() >> 11) / 9007199254740992.0 * 2.0 - 1.0) * scale;
}

static inline void rt_fill(float *v, size_t n, float scale) {
  for (size_t i = 0; i < n; i++)
    v[i] = rt_uniform(scale);
}

static inline void rt_fill_bf16(uint16_t *v, size_t n, float scale) {
  for (size_t i = 0; i < n; i++)
    v[i] = mlk_f32_to_bf16(rt_uniform(scale));
}

/* ||got - want|| / ||want||; infinite when got has a NaN (outputs are poisoned with NaN). */
static inline double rt_rel_l2(const float *got, const double *want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(got[i]))
      return INFINITY;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---- event lists ---- */

/* The ops' wait and notify lists (MlkOpDesc.wait0, ... over refs[0 .. 2 * nevents)) and the ALL
 * events' counts (the producer's tasks), from the events' producers and consumers, as mlkc derives
 * them (graph_link_events). Call again after changing the events or the ops' grids. */
static inline void rt_link_events(MlkModelDesc *d, MlkOpDesc *ops, MlkEventDesc *events, int *refs) {
  int n = 0;
  for (int i = 0; i < d->nevents; i++)
    if (events[i].map == MLK_MAP_ALL && events[i].producer >= 0)
      events[i].count = ops[events[i].producer].ntasks;
  for (int o = 0; o < d->nops; o++) {
    ops[o].wait0 = n;
    for (int i = 0; i < d->nevents; i++)
      if (events[i].consumer == o)
        refs[n++] = i;
    ops[o].nwaits = n - ops[o].wait0;
    ops[o].notify0 = n;
    for (int i = 0; i < d->nevents; i++)
      if (events[i].producer == o)
        refs[n++] = i;
    ops[o].nnotifies = n - ops[o].notify0;
  }
  d->event_refs = refs;
  d->nevent_refs = n;
}

/* ---- the model ---- */

enum { RT_N = 300, RT_K = 200, RT_R = 77 };
enum { T_X, T_W1, T_H, T_W2, T_B, T_Y, T_G, T_Z, T_O, T_R, T_U, T_V, RT_NTENSORS };
enum { K_FORWARD, K_POST };

typedef struct RtModel {
  MlkTensorDesc tensors[RT_NTENSORS];
  MlkOpDesc ops[6];
  MlkEventDesc events[5]; /* room for one more in variants */
  int refs[16]; /* 2 per event, and room for tests to append lists */
  MlkKernelDesc kernels[2];
  MlkModelDesc desc;
} RtModel;

/* rt_link_events for an RtModel (after changing its events). */
static inline void rt_mlp_link(RtModel *m) { rt_link_events(&m->desc, m->ops, m->events, m->refs); }

#define RT_T(nm, dt, kd, r, s0, s1, ne) {nm, dt, kd, r, {s0, s1, 0, 0}, ne, NULL, 0}
/* An unbatched op as mlkc emits it: whole operands at offset 0 (-1: none), no cache. */
#define RT_OP(nm, kd, f, o, i0, i1, i2, n_, k_, tile_, ntasks_)                                   \
  {.name = nm, .kind = kd, .fn = f, .out = {o, 0}, .in = {{i0, 0}, {i1, 0}, {i2, 0}, {-1, 0}, {-1, 0}}, \
   .n = n_, .k = k_, .tile = tile_, .ntasks = ntasks_, .layer = -1, .cache = -1}

/* The same with its wait and notify lists (MlkOpDesc.wait0, nwaits, notify0, nnotifies). */
#define RT_OP_EV(nm, kd, f, o, i0, i1, i2, n_, k_, tile_, ntasks_, w0, nw, n0, nn)                 \
  {.name = nm, .kind = kd, .fn = f, .out = {o, 0}, .in = {{i0, 0}, {i1, 0}, {i2, 0}, {-1, 0}, {-1, 0}}, \
   .n = n_, .k = k_, .tile = tile_, .ntasks = ntasks_, .layer = -1, .cache = -1, .wait0 = w0,      \
   .nwaits = nw, .notify0 = n0, .nnotifies = nn}

/* Fills `m` with the model above; m->desc points into m, so m must not move afterwards. */
static inline void rt_mlp_init(RtModel *m) {
  const MlkTensorDesc tensors[RT_NTENSORS] = {
      [T_X] = RT_T("x", MLK_F32, MLK_TENSOR_INPUT, 1, RT_K, 0, RT_K),
      [T_W1] = RT_T("W1", MLK_BF16, MLK_TENSOR_PARAM, 2, RT_N, RT_K, RT_N * RT_K),
      [T_H] = RT_T("h", MLK_F32, MLK_TENSOR_TEMP, 1, RT_N, 0, RT_N),
      [T_W2] = RT_T("W2", MLK_BF16, MLK_TENSOR_PARAM, 2, RT_N, RT_N, RT_N * RT_N),
      [T_B] = RT_T("b", MLK_F32, MLK_TENSOR_INPUT, 1, RT_N, 0, RT_N),
      [T_Y] = RT_T("y", MLK_F32, MLK_TENSOR_OUTPUT, 1, RT_N, 0, RT_N),
      [T_G] = RT_T("g", MLK_F32, MLK_TENSOR_INPUT, 1, RT_N, 0, RT_N),
      [T_Z] = RT_T("z", MLK_F32, MLK_TENSOR_TEMP, 1, RT_N, 0, RT_N),
      [T_O] = RT_T("o", MLK_F32, MLK_TENSOR_OUTPUT, 1, RT_N, 0, RT_N),
      [T_R] = RT_T("r", MLK_F32, MLK_TENSOR_INPUT, 1, RT_R, 0, RT_R),
      [T_U] = RT_T("u", MLK_F32, MLK_TENSOR_TEMP, 1, RT_R, 0, RT_R),
      [T_V] = RT_T("v", MLK_F32, MLK_TENSOR_OUTPUT, 1, RT_R, 0, RT_R),
  };
  const MlkOpDesc ops[6] = {
      RT_OP("matvec@mlp.mlk:3", MLK_OP_MATVEC, MLK_FN_RELU, T_H, T_X, T_W1, -1, RT_N, RT_K, 16, 19),
      RT_OP("matvec@mlp.mlk:4", MLK_OP_MATVEC, MLK_FN_NONE, T_Y, T_H, T_W2, T_B, RT_N, RT_N, 8, 38),
      RT_OP("mul@mlp.mlk:5", MLK_OP_ELTWISE, MLK_FN_MUL, T_Z, T_Y, T_G, -1, RT_N, 0, 7, 43),
      RT_OP("silu@mlp.mlk:6", MLK_OP_ELTWISE, MLK_FN_SILU, T_O, T_Z, -1, -1, RT_N, 0, 32, 10),
      RT_OP("relu@mlp.mlk:9", MLK_OP_ELTWISE, MLK_FN_RELU, T_U, T_R, -1, -1, RT_R, 0, 5, 16),
      RT_OP("add@mlp.mlk:10", MLK_OP_ELTWISE, MLK_FN_ADD, T_V, T_U, T_R, -1, RT_R, 0, 9, 9),
  };
  const MlkEventDesc events[4] = {
      {"h: matvec@mlp.mlk:3 -> matvec@mlp.mlk:4", 0, 1, T_H, MLK_MAP_ALL, RT_N, 16, 8, 19, 1, 0, 0},
      {"y: matvec@mlp.mlk:4 -> mul@mlp.mlk:5", 1, 2, T_Y, MLK_MAP_TILE, RT_N, 8, 7, 0, 43, 1, 0},
      {"z: mul@mlp.mlk:5 -> silu@mlp.mlk:6", 2, 3, T_Z, MLK_MAP_TILE, RT_N, 7, 32, 0, 10, 44, 0},
      {"u: relu@mlp.mlk:9 -> add@mlp.mlk:10", 4, 5, T_U, MLK_MAP_TILE, RT_R, 5, 9, 0, 9, 54, 0},
  };
  const MlkKernelDesc kernels[2] = {{"forward", "mlk_forward", 0, 4, MLK_SCHED_STATIC, NULL, 0, 0, 1},
                                    {"post", "mlk_post", 4, 2, MLK_SCHED_STATIC, NULL, 0, 0, 1}};
  memcpy(m->tensors, tensors, sizeof tensors);
  memcpy(m->ops, ops, sizeof ops);
  memcpy(m->events, events, sizeof events);
  memcpy(m->kernels, kernels, sizeof kernels);
  m->desc = (MlkModelDesc){
      .abi = MLK_DESC_ABI,
      .name = "mlp",
      .source = "mlp.mlk",
      .tensors = m->tensors,
      .ntensors = RT_NTENSORS,
      .ops = m->ops,
      .nops = 6,
      .events = m->events,
      .nevents = 4,
      .ncounters = 63,
      .kernels = m->kernels,
      .nkernels = 2,
      .batch_name = NULL, /* one row per run, as mlkc emits it: batch 1..1 */
      .batch_min = 1,
      .batch_max = 1,
      .ptx_sm90a = NULL,
      .ptx_sm80 = NULL,
  };
  rt_mlp_link(m);
}

/* Host copies of everything the application sets, and the double-precision reference. */
typedef struct RtData {
  uint16_t W1[RT_N * RT_K], W2[RT_N * RT_N];
  float x[RT_K], b[RT_N], g[RT_N], r[RT_R];
  double h[RT_N], y[RT_N], o[RT_N], v[RT_R];
} RtData;

static inline void rt_new_params(RtData *d) {
  rt_fill_bf16(d->W1, RT_N * RT_K, 1.0f / sqrtf((float)RT_K) * 1.7f);
  rt_fill_bf16(d->W2, RT_N * RT_N, 1.0f / sqrtf((float)RT_N) * 1.7f);
}

static inline void rt_new_inputs(RtData *d) {
  rt_fill(d->x, RT_K, 1.0f);
  rt_fill(d->b, RT_N, 0.5f);
  rt_fill(d->g, RT_N, 2.0f);
  rt_fill(d->r, RT_R, 1.0f);
}

/* The naive sequential reference in double precision (bf16 weights widened exactly). */
static inline void rt_reference(RtData *d) {
  for (int i = 0; i < RT_N; i++) {
    double s = 0;
    for (int k = 0; k < RT_K; k++)
      s += (double)mlk_bf16_to_f32(d->W1[i * RT_K + k]) * d->x[k];
    d->h[i] = s > 0 ? s : 0;
  }
  for (int i = 0; i < RT_N; i++) {
    double s = 0;
    for (int k = 0; k < RT_N; k++)
      s += (double)mlk_bf16_to_f32(d->W2[i * RT_N + k]) * d->h[k];
    d->y[i] = s + d->b[i];
    double z = d->y[i] * d->g[i];
    d->o[i] = z / (1.0 + exp(-z));
  }
  for (int i = 0; i < RT_R; i++)
    d->v[i] = (d->r[i] > 0 ? d->r[i] : 0) + d->r[i];
}

#endif /* RT_TEST_H */
