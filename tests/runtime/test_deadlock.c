/* test_deadlock.c: a description whose counters expect more notifies than arrive is reported as
 * MLK_ERR_DEADLOCK, with a message naming the megakernel, op, queue, event, counter and the per-run
 * counts, and the model stays usable afterwards.
 *
 * The bad description passes validation (it is self-consistent) but lies about a producer: a TILE
 * event's ptile is smaller than the producer op's tile, so the index maps count more producer
 * tiles than the op has tasks. (A ptile larger than the op's tile would make counters expect
 * fewer notifies, which cannot hang, only race.) This is the failure a wrong start value in
 * generated code produces on the GPU. The event is an extra one on a tensor its consumer does not
 * read, so that no consumer that does get its notifies reads data the lie left unsynchronized.
 * (An ALL event cannot lie this way: validation checks its count against the tasks that notify
 * it, test_errors.c.)
 *
 * The simulator reports the run the moment every simulated SM is blocked (deterministic mode), or
 * once every host thread is blocked on a counter that did not reach its target (threaded mode): no
 * deadline is involved, so MLK_WAIT_TIMEOUT_MS=1 changes nothing, and neither do load or random
 * delays. Where a stuck static run stops does not depend on the interleaving (counters only grow,
 * so every queue runs as far as it ever can), so the message is exact and the same in both modes:
 * the blocked queue head with the smallest task number, its first short counter and the counts.
 * Under the dynamic schedule (forced by the simulator options, or compiled into the kernel) the
 * same descriptions leave tasks that never become ready: the run reports the first of them. Each
 * on 1, 4 and 16 SMs, three seeds (threaded: two, one with random delays).
 */
#include "rt_test.h"

static RtData data;

static void set_all(mlk_model *m) {
  CHECK_OK(mlk_model_set_tensor(m, T_W1, data.W1, sizeof data.W1));
  CHECK_OK(mlk_model_set_tensor(m, T_W2, data.W2, sizeof data.W2));
  CHECK_OK(mlk_model_set_tensor(m, T_X, data.x, sizeof data.x));
  CHECK_OK(mlk_model_set_tensor(m, T_B, data.b, sizeof data.b));
  CHECK_OK(mlk_model_set_tensor(m, T_G, data.g, sizeof data.g));
  CHECK_OK(mlk_model_set_tensor(m, T_R, data.r, sizeof data.r));
}

/* Kernel "post" is correct in every variant: it must keep working around the deadlocks. */
static void run_post(mlk_model *m) {
  float v[RT_R];
  CHECK_OK(mlk_model_fill_tensor(m, T_V, 0xff));
  CHECK_OK(mlk_model_run(m, K_POST));
  CHECK_OK(mlk_model_get_tensor(m, T_V, v, sizeof v));
  double err = rt_rel_l2(v, data.v, RT_R);
  CHECK(err < 1e-6, "post after a deadlock: relative L2 error %g", err);
}

/* Runs "forward", which must deadlock; every needle must be in the message. */
static void expect_deadlock(mlk_model *m, const char *const *needles) {
  mlk_status st = mlk_model_run(m, K_FORWARD);
  CHECK(st == MLK_ERR_DEADLOCK, "run returned %s: %s", mlk_status_name(st), mlk_last_error());
  const char *msg = mlk_last_error();
  printf("    %s\n", msg);
  for (; *needles; needles++)
    CHECK_CONTAINS(msg, *needles);
}

/* An extra TILE event h: op 0 -> op 2 with tiles of 8, so only the counters of elements [0, 152)
 * are notified. */
static void variant(mlk_backend *be, int compiled_dynamic, const char *const *needles) {
  RtModel rm;
  rt_mlp_init(&rm);
  if (compiled_dynamic)
    rm.kernels[K_FORWARD].schedule = MLK_SCHED_DYNAMIC;
  rm.events[4] = (MlkEventDesc){"h: matvec@mlp.mlk:3 -> mul@mlp.mlk:5", 0, 2, T_H, MLK_MAP_TILE,
                                RT_N, 8, 7, 0, 43, 63, 0};
  rm.desc.nevents = 5;
  rm.desc.ncounters = 63 + 43;
  rt_mlp_link(&rm);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &rm.desc, &m));
  if (!m)
    return;
  set_all(m);
  run_post(m);
  run_post(m);
  run_post(m);
  expect_deadlock(m, needles);
  run_post(m);
  /* Fixing nothing: the next run must report the same way (counters were reset, so the per-run
   * counts are the same), not hang or crash. */
  expect_deadlock(m, needles);
  expect_deadlock(m, needles);
  run_post(m);
  mlk_model_free(m);
}

/* Every variant on `threads` SMs in `mode`: exact messages, the same in both modes. */
static void configs(mlk_sim_mode mode, int threads) {
  char tile[512];
  /* The static deal gives global task g to queue g % threads: op 2's task 21 (the first whose
   * tile [147, 154) reaches past the 152 elements that the event's producer tiles of 8 cover) is
   * task 19 + 38 + 21 = 78. */
  snprintf(tile, sizeof tile, "megakernel 'forward': task 21 of op 'mul@mlp.mlk:5' (queue %d) waited on "
           "event 'h: matvec@mlp.mlk:3 -> mul@mlp.mlk:5' counter [21]: expected 2 notifies, saw 1 when "
           "every simulated SM was blocked", 78 % threads);
  const char *tile_needles[] = {tile, NULL};
  /* The dynamic schedule reports the first task that never became ready (in op and task order). */
  const char *const dyn_tile_needles[] = {
      "megakernel 'forward' (dynamic schedule): task 21 of op 'mul@mlp.mlk:5' never became ready: "
      "it waits on event 'h: matvec@mlp.mlk:3 -> mul@mlp.mlk:5' counter [21]: expected 2 notifies, "
      "saw 1 when no task was ready or running",
      NULL};
  int threaded = mode == MLK_SIM_THREADED;
  for (int seed = 1; seed <= (threaded ? 2 : 3); seed++)
    for (int d = 0; d < 3; d++) {
      mlk_sim_options opt = {.threads = threads, .seed = (uint64_t)seed, .mode = mode,
                             .max_delay_us = threaded && seed == 2 ? 20 : 0,
                             .schedule = d == 0 ? MLK_SIM_STATIC : d == 1 ? MLK_SIM_DYNAMIC
                                                                          : MLK_SIM_AS_COMPILED};
      mlk_backend *be;
      CHECK_OK(mlk_backend_create_cpu(&opt, &be));
      if (!be)
        continue;
      printf("  %s%s\n", mlk_backend_name(be), d == 2 ? ", kernel compiled dynamic" : "");
      variant(be, d == 2, d == 0 ? tile_needles : dyn_tile_needles);
      mlk_backend_free(be);
    }
}

int main(void) {
  rt_watchdog(120);
  rt_seed();
  unsetenv("MLK_SIM_MODE");
  unsetenv("MLK_SIM_EXPLORE");
  /* The GPU's deadline: the simulator takes none. A tiny one must change nothing here. */
  setenv("MLK_WAIT_TIMEOUT_MS", "1", 1);
  rt_new_params(&data);
  rt_new_inputs(&data);
  rt_reference(&data);
  static const int sms[] = {1, 4, 16};
  for (size_t t = 0; t < sizeof sms / sizeof *sms; t++) {
    configs(MLK_SIM_DETERMINISTIC, sms[t]);
    configs(MLK_SIM_THREADED, sms[t]);
  }
  return rt_finish("runtime_deadlock");
}
