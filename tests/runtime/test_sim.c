/* test_sim.c: the CPU simulator computes the hand-built model correctly, run after run.
 *
 * For several thread counts, seeds and random-delay settings: set the params once, then run each
 * kernel several times in a row (so the never-reset counters go through several epochs, with the
 * two kernels' epochs interleaved), each time with fresh random inputs and with every output and
 * intermediate poisoned (0xff bytes = NaN) first, so a task that ran too early or not at all shows
 * up. Results are compared with a naive double-precision reference: relative L2 error < 1e-5 (the
 * simulator accumulates in f32; bf16 weights are widened exactly on both sides). Every
 * configuration runs under the static schedule and again under the dynamic one (a shared ready
 * queue), with the dependency checker on throughout, in the deterministic mode (one host thread,
 * the SMs interleaved by the seeded scheduler; PCT depths 1 to 4) and in the threaded mode (a host
 * thread per SM, with and without random delays).
 */
#include "rt_test.h"

#define TOLERANCE 1e-5

static RtData data;

static void check_vec(mlk_model *m, int t, const double *want, size_t n, const char *what) {
  float got[RT_N];
  CHECK_OK(mlk_model_get_tensor(m, t, got, n * sizeof(float)));
  double err = rt_rel_l2(got, want, n);
  CHECK(err < TOLERANCE, "%s: relative L2 error %g >= %g", what, err, TOLERANCE);
}

static void run_config(mlk_backend *be) {
  RtModel rm;
  rt_mlp_init(&rm);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &rm.desc, &m));
  if (!m)
    return;
  CHECK(mlk_model_desc(m) == &rm.desc, "mlk_model_desc");
  rt_new_params(&data);
  CHECK_OK(mlk_model_set_tensor(m, mlk_model_find_tensor(m, "W1"), data.W1, sizeof data.W1));
  CHECK_OK(mlk_model_set_tensor(m, mlk_model_find_tensor(m, "W2"), data.W2, sizeof data.W2));
  /* forward, forward, post, forward, post, post, forward: epochs 1..4 and 1..3, interleaved. */
  static const int order[] = {K_FORWARD, K_FORWARD, K_POST, K_FORWARD, K_POST, K_POST, K_FORWARD};
  for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
    rt_new_inputs(&data);
    rt_reference(&data);
    CHECK_OK(mlk_model_set_tensor(m, T_X, data.x, sizeof data.x));
    CHECK_OK(mlk_model_set_tensor(m, T_B, data.b, sizeof data.b));
    CHECK_OK(mlk_model_set_tensor(m, T_G, data.g, sizeof data.g));
    CHECK_OK(mlk_model_set_tensor(m, T_R, data.r, sizeof data.r));
    for (int t = 0; t < RT_NTENSORS; t++) {
      MlkTensorKind k = rm.tensors[t].kind;
      if (k == MLK_TENSOR_OUTPUT || k == MLK_TENSOR_TEMP)
        CHECK_OK(mlk_model_fill_tensor(m, t, 0xff));
    }
    CHECK_OK(mlk_model_run(m, order[i]));
    char what[64];
    if (order[i] == K_FORWARD) {
      snprintf(what, sizeof what, "run %zu (forward): h", i);
      check_vec(m, T_H, data.h, RT_N, what);
      snprintf(what, sizeof what, "run %zu (forward): y", i);
      check_vec(m, T_Y, data.y, RT_N, what);
      snprintf(what, sizeof what, "run %zu (forward): o", i);
      check_vec(m, T_O, data.o, RT_N, what);
    } else {
      snprintf(what, sizeof what, "run %zu (post): v", i);
      check_vec(m, T_V, data.v, RT_R, what);
    }
  }
  mlk_model_free(m);
}

int main(void) {
  rt_watchdog(120);
  uint64_t seed = rt_seed();
  unsetenv("MLK_SIM_MODE");
  static const int threads[] = {1, 2, 3, 8, 33};
  const uint64_t seeds[] = {1, 7, seed | 1};
  static const int delays[] = {0, 30};
  static const mlk_sim_schedule scheds[] = {MLK_SIM_AS_COMPILED, MLK_SIM_DYNAMIC};
  /* Every (mode, schedule, threads, seed, delay); delays only where they are cheap: they exist to
   * reorder tasks across threads. The deterministic mode takes no delays; it varies the PCT depth
   * with the seed instead. */
  size_t nt = sizeof threads / sizeof *threads, ns = sizeof seeds / sizeof *seeds, nd = 2;
  for (int mode = MLK_SIM_DETERMINISTIC; mode <= MLK_SIM_THREADED; mode++)
    for (size_t i = 0; i < 2 * nt * ns * nd; i++) {
      size_t c = i / (nt * ns * nd), t = i / (ns * nd) % nt, s = i / nd % ns, d = i % nd;
      int det = mode == MLK_SIM_DETERMINISTIC;
      if (delays[d] && (det || threads[t] == 1 || s == 0))
        continue;
      mlk_sim_options opt = {.threads = threads[t], .seed = seeds[s], .max_delay_us = delays[d],
                             .schedule = scheds[c], .mode = (mlk_sim_mode)mode,
                             .pct_depth = det ? 1 + (int)((s + t) % 4) : 0};
      mlk_backend *be;
      CHECK_OK(mlk_backend_create_cpu(&opt, &be));
      if (!be)
        continue;
      printf("  %s\n", mlk_backend_name(be));
      CHECK(!mlk_backend_is_gpu(be), "simulator claims to be a GPU");
      int before = rt_failures;
      run_config(be);
      if (rt_failures != before)
        fprintf(stderr, "  ^ failed with %s\n", mlk_backend_name(be));
      mlk_backend_free(be);
    }
  /* The environment path: MLK_BACKEND=cpu with MLK_SIM_THREADS / MLK_SIM_SEED, then MLK_SIM_MODE
   * and MLK_SIM_PCT_DEPTH. */
  setenv("MLK_BACKEND", "cpu", 1);
  setenv("MLK_SIM_THREADS", "5", 1);
  setenv("MLK_SIM_SEED", "42", 1);
  static const struct {
    const char *mode, *depth, *name;
  } envs[] = {
      {NULL, NULL, "CPU simulator (5 SMs, deterministic, seed 42)"},
      {"deterministic", "7", "CPU simulator (5 SMs, deterministic, seed 42, PCT depth 7)"},
      {"threaded", NULL, "CPU simulator (5 threads, seed 42)"},
  };
  for (size_t i = 0; i < sizeof envs / sizeof *envs; i++) {
    if (envs[i].mode)
      setenv("MLK_SIM_MODE", envs[i].mode, 1);
    if (envs[i].depth)
      setenv("MLK_SIM_PCT_DEPTH", envs[i].depth, 1);
    mlk_backend *be;
    CHECK_OK(mlk_backend_create(MLK_BACKEND_AUTO, &be));
    if (be) {
      CHECK(!strcmp(mlk_backend_name(be), envs[i].name), "name '%s', expected '%s'",
            mlk_backend_name(be), envs[i].name);
      CHECK(!strcmp(mlk_backend_note(be), ""), "note '%s'", mlk_backend_note(be));
      run_config(be);
      mlk_backend_free(be);
    }
    unsetenv("MLK_SIM_MODE");
    unsetenv("MLK_SIM_PCT_DEPTH");
  }
  return rt_finish("runtime_sim");
}
