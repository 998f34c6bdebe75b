/* test_deadlock.c: a description whose counters expect more notifies than arrive is reported as
 * MLK_ERR_DEADLOCK within a bounded time, with a message naming the megakernel, op, queue, event,
 * counter and the per-run counts, and the model stays usable afterwards.
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
 * Under the dynamic schedule (forced by the simulator options, or compiled into the kernel) the
 * same descriptions leave tasks that never become ready: after a timeout without progress the run
 * reports the first of them, the event and counter it still lacks, and the counts.
 */
#include "rt_test.h"

static RtData data;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

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
  double t0 = now_s();
  mlk_status st = mlk_model_run(m, K_FORWARD);
  double dt = now_s() - t0;
  CHECK(st == MLK_ERR_DEADLOCK, "run returned %s: %s", mlk_status_name(st), mlk_last_error());
  /* 200 ms per wait; a few waits may run back to back before the abort spreads. */
  CHECK(dt < 5.0, "the deadlock took %.2f s to report", dt);
  const char *msg = mlk_last_error();
  printf("    %.2f s: %s\n", dt, msg);
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
                                RT_N, 8, 7, 0, 43, 63};
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

int main(void) {
  rt_watchdog(120);
  rt_seed();
  setenv("MLK_WAIT_TIMEOUT_MS", "200", 1);
  rt_new_params(&data);
  rt_new_inputs(&data);
  rt_reference(&data);

  /* Which of the starved TILE counters times out first depends on the timing: counts unchecked. */
  const char *const tile_needles[] = {"megakernel 'forward': task ", " of op 'mul@mlp.mlk:5' (queue ",
                                      "waited on event 'h: matvec@mlp.mlk:3 -> mul@mlp.mlk:5' counter [",
                                      " notifies, saw ", " after 200 ms", NULL};
  /* The dynamic schedule reports the first task that never became ready (in op and task order):
   * op 2's task 21, the first whose tile [147, 154) reaches past the 152 elements that the event's
   * producer tiles of 8 cover. */
  const char *const dyn_tile_needles[] = {
      "megakernel 'forward' (dynamic schedule): task 21 of op 'mul@mlp.mlk:5' never became ready: "
      "it waits on event 'h: matvec@mlp.mlk:3 -> mul@mlp.mlk:5' counter [21]: expected 2 notifies, "
      "saw 1 after 100 ms without progress",
      NULL};
  static const int threads[] = {1, 4, 16};
  for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
    mlk_sim_options opt = {.threads = threads[t], .seed = 3, .max_delay_us = t == 1 ? 20 : 0};
    mlk_backend *be;
    CHECK_OK(mlk_backend_create_cpu(&opt, &be));
    if (!be)
      continue;
    printf("  %s\n", mlk_backend_name(be));
    variant(be, 0, tile_needles);
    mlk_backend_free(be);
  }
  /* Dynamic: forced by the options on 1 and 4 threads, then compiled into the kernel. */
  setenv("MLK_WAIT_TIMEOUT_MS", "100", 1);
  for (int d = 0; d < 3; d++) {
    mlk_sim_options opt = {.threads = d == 0 ? 1 : 4, .seed = 3, .max_delay_us = d == 1 ? 20 : 0,
                           .schedule = d < 2 ? MLK_SIM_DYNAMIC : MLK_SIM_AS_COMPILED};
    mlk_backend *be;
    CHECK_OK(mlk_backend_create_cpu(&opt, &be));
    if (!be)
      continue;
    printf("  %s%s\n", mlk_backend_name(be), d == 2 ? ", kernel compiled dynamic" : "");
    variant(be, d == 2, dyn_tile_needles);
    mlk_backend_free(be);
  }

  /* The deadline comes from MLK_WAIT_TIMEOUT_MS at each run. */
  setenv("MLK_WAIT_TIMEOUT_MS", "50", 1);
  mlk_backend *be;
  CHECK_OK(mlk_backend_create_cpu(NULL, &be));
  if (be) {
    const char *const needles[] = {" notifies, saw ", " after 50 ms", NULL};
    variant(be, 0, needles);
    mlk_backend_free(be);
  }
  return rt_finish("runtime_deadlock");
}
