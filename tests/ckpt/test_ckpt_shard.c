/* test_ckpt_shard.c: sharded params (tests/ckpt/shard.mlk, a mesh axis of 2 ranks) loaded from
 * whole checkpoint tensors, one rank's slice each, on the simulator.
 *
 * The checkpoint holds each tensor whole, as published: a per-layer q/k/v cat (BF16, rows cut),
 * a matrix cut along its columns (F32: converted to bf16 on the way), one cut along its rows
 * (BF16) and a vector (F16). For rank 0 and rank 1 (mlk_model_options.rank) every param must
 * equal its rank's slice of the whole tensors, element for element (a rank's fused q/k/v is its
 * q rows, then its k rows, then its v rows, per layer), and a run must compute with that slice
 * (yr = wr x + bias of the rank's rows, against a double product). Rank 2 is refused naming the
 * param and the ranks.
 */
#include "rt_test.h"
#include "sharded.h"
#include "st_write.h"

enum { D = 16, R = 8, C = 12, L = 2, WAYS = 2 };

static uint16_t qkv[L][3][R * D], rows_w[C * D], bias_h[C];
static float cols_w[C * D];

static void write_checkpoint(const char *dir) {
  StT t[L * 3 + 3];
  static char names[L * 3][64];
  static const char *part[3] = {"q", "k", "v"};
  int n = 0;
  for (int l = 0; l < L; l++)
    for (int p = 0; p < 3; p++) {
      rt_fill_bf16(qkv[l][p], R * D, 1.0f);
      snprintf(names[n], sizeof names[n], "layers.%d.%s.weight", l, part[p]);
      t[n++] = (StT){names[n - 1], "BF16", 2, {R, D}, qkv[l][p], sizeof qkv[l][p]};
    }
  for (int i = 0; i < C * D; i++)
    cols_w[i] = rt_uniform(1.0f);
  rt_fill_bf16(rows_w, C * D, 1.0f);
  for (int i = 0; i < C; i++)
    bias_h[i] = (uint16_t)(0x3800 + (rt_next() % 0x800)); /* f16 in [0.5, 1) */
  t[n++] = (StT){"cols.weight", "F32", 2, {C, D}, cols_w, sizeof cols_w};
  t[n++] = (StT){"rows.weight", "BF16", 2, {C, D}, rows_w, sizeof rows_w};
  t[n++] = (StT){"rows.bias", "F16", 1, {C}, bias_h, sizeof bias_h};
  char p[600];
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  st_write(p, t, n, NULL);
}

static void get_one(mlk_model *m, const char *name, uint16_t *buf, size_t n) {
  int t = mlk_model_find_tensor(m, name);
  CHECK(t >= 0, "no tensor '%s'", name);
  if (t >= 0)
    CHECK_OK(mlk_model_get_tensor(m, t, buf, n * sizeof *buf));
}

static void check_rank(mlk_backend *be, const char *dir, int rank) {
  mlk_model_options o = {.rank = rank};
  mlk_model *m = NULL;
  CHECK_OK(mlk_model_create_opt(be, &sharded_desc, &o, &m));
  if (!m)
    return;
  mlk_load_options lo = {.config = ""};
  CHECK_OK(mlk_model_load_checkpoint(m, dir, &lo));
  int bad = 0;
  /* wqkv: [L][3 * R / 2][D], per layer the rank's q rows, k rows, v rows */
  static uint16_t wqkv[L * 3 * (R / WAYS) * D];
  get_one(m, "wqkv", wqkv, sizeof wqkv / sizeof *wqkv);
  for (int l = 0; l < L; l++)
    for (int p = 0; p < 3; p++)
      for (int i = 0; i < R / WAYS; i++)
        for (int k = 0; k < D; k++)
          bad += wqkv[((l * 3 + p) * (R / WAYS) + i) * D + k] != qkv[l][p][(rank * R / WAYS + i) * D + k];
  CHECK(!bad, "rank %d: %d elements of wqkv are not the rank's q/k/v rows", rank, bad);
  /* wc: [C][D / 2], the rank's columns, f32 -> bf16 */
  static uint16_t wc[C * (D / WAYS)];
  get_one(m, "wc", wc, sizeof wc / sizeof *wc);
  bad = 0;
  for (int r = 0; r < C; r++)
    for (int j = 0; j < D / WAYS; j++)
      bad += wc[r * (D / WAYS) + j] != mlk_f32_to_bf16(cols_w[r * D + rank * (D / WAYS) + j]);
  CHECK(!bad, "rank %d: %d elements of wc are not the rank's columns", rank, bad);
  /* wr: [C / 2][D], the rank's rows; bias: [C / 2], f16 -> bf16 */
  static uint16_t wr[(C / WAYS) * D], bias[C / WAYS];
  get_one(m, "wr", wr, sizeof wr / sizeof *wr);
  get_one(m, "bias", bias, sizeof bias / sizeof *bias);
  bad = 0;
  for (int i = 0; i < (C / WAYS) * D; i++)
    bad += wr[i] != rows_w[rank * (C / WAYS) * D + i];
  for (int i = 0; i < C / WAYS; i++)
    bad += bias[i] != mlk_f32_to_bf16((float)st_f16_value(bias_h[rank * (C / WAYS) + i]));
  CHECK(!bad, "rank %d: %d elements of wr and bias are not the rank's rows", rank, bad);

  /* a run computes with the slice: yr = wr x + bias */
  float x[D], xh[D / WAYS], yr[C / WAYS];
  for (int i = 0; i < D; i++)
    x[i] = rt_uniform(1.0f);
  for (int i = 0; i < D / WAYS; i++)
    xh[i] = rt_uniform(1.0f);
  CHECK_OK(mlk_model_set_tensor(m, mlk_model_find_tensor(m, "x"), x, sizeof x));
  CHECK_OK(mlk_model_set_tensor(m, mlk_model_find_tensor(m, "xh"), xh, sizeof xh));
  CHECK_OK(mlk_model_run(m, 0));
  CHECK_OK(mlk_model_get_tensor(m, mlk_model_find_tensor(m, "yr"), yr, sizeof yr));
  double worst = 0;
  for (int r = 0; r < C / WAYS; r++) {
    double s = mlk_bf16_to_f32(bias[r]), mag = fabs(s); /* error relative to sum |terms| */
    for (int k = 0; k < D; k++) {
      s += (double)mlk_bf16_to_f32(wr[r * D + k]) * x[k];
      mag += fabs((double)mlk_bf16_to_f32(wr[r * D + k]) * x[k]);
    }
    worst = fmax(worst, fabs(yr[r] - s) / mag);
  }
  CHECK(worst < 1e-5, "rank %d: yr differs from the rank's rows times x by %.3g", rank, worst);
  printf("rank %d: every param its slice of the whole tensors; yr within %.2g\n", rank, worst);
  mlk_model_free(m);
}

int main(void) {
  rt_watchdog(60);
  rt_seed();
  char *dir = st_tmpdir();
  write_checkpoint(dir);
  mlk_backend *be = NULL;
  mlk_sim_options so = {.threads = 2};
  CHECK_OK(mlk_backend_create_cpu(&so, &be));
  if (!be)
    return rt_finish("ckpt_shard");
  check_rank(be, dir, 0);
  check_rank(be, dir, 1);
  mlk_model_options o = {.rank = 2};
  mlk_model *m = NULL;
  CHECK_OK(mlk_model_create_opt(be, &sharded_desc, &o, &m));
  if (m) {
    mlk_load_options lo = {.config = ""};
    CHECK_ST(mlk_model_load_checkpoint(m, dir, &lo), MLK_ERR_INVALID);
    CHECK_CONTAINS(mlk_last_error(), "param 'wqkv' of model 'sharded' is sharded over 2 ranks, but "
                                     "the model is rank 2");
    mlk_model_free(m);
  }
  mlk_backend_free(be);
  st_rmdir(dir);

  return rt_finish("ckpt_shard");
}
