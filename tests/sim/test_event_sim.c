/* test_event_sim.c: explicit events (wait/notify clauses) on the CPU simulator.
 *
 *   - event_war (tests/sim/event_war.mlk) attends over a cache layer and then rewrites an entry of
 *     it; its clauses order the append after the attention, which the data flow does not (the
 *     append writes what the attention reads). It runs with the inputs X1, X2, X1, X2, X2 at the
 *     same positions, each run under many schedules of the deterministic simulator (the
 *     dependency checker on; a schedule that leaves other values than the first fails too), under
 *     the static and the dynamic schedule. The attention must read the entry the run before wrote:
 *     the 2nd and 4th runs (x = X2 over the entry of X1) give the same output, bit for bit, and the
 *     5th (x = X2 over the entry of X2) another;
 *   - event_war_racy, the same model without the clauses (tests/sim/event_war_racy.mlk): some
 *     schedule must fail with the checker's "missing dependency" (about half of them do, so the
 *     SCHEDULES of a run miss it with probability 2^-24; the default seed replays the same ones);
 *   - events_fused (tests/codegen/events_fused.mlk), whose clauses go through every fusion: the
 *     runtime accepts its lists and counts, and every schedule, static and dynamic, passes.
 *
 * Usage: test_event_sim [SEED]   (0 or none: the time; CTest passes MLK_TEST_SEED)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlk.h"

extern const MlkModelDesc event_war_desc, event_war_racy_desc, fused_desc;

enum { RUNS = 5, SCHEDULES = 24, MAX_ELEMS = 1 << 14 };

static uint64_t rng;
static float uniform(void) { /* [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static void fail(const char *what, const char *name) {
  printf("FAIL: %s '%s': %s\n", what, name, mlk_last_error());
  exit(1);
}

static int tensor(const mlk_model *m, const char *name) {
  int t = mlk_model_find_tensor(m, name);
  if (t < 0) {
    printf("FAIL: model '%s' has no tensor '%s'\n", mlk_model_desc(m)->name, name);
    exit(1);
  }
  return t;
}

/* A model of desc with `batch` rows on a deterministic simulator that tries SCHEDULES schedules
 * per run: its params random bf16, its f32 inputs random, its i32 inputs (positions) 2 + row. */
static mlk_model *create(const MlkModelDesc *desc, uint64_t seed, mlk_sim_schedule schedule,
                         int64_t batch, mlk_backend **be) {
  mlk_sim_options opt = {.threads = 4, .seed = seed, .mode = MLK_SIM_DETERMINISTIC,
                         .explore = SCHEDULES, .schedule = schedule};
  mlk_model *m = NULL;
  if (mlk_backend_create_cpu(&opt, be) != MLK_OK || mlk_model_create(*be, desc, &m) != MLK_OK ||
      mlk_model_set_batch(m, batch) != MLK_OK)
    fail("cannot create", desc->name);
  rng = seed * 0x9e3779b97f4a7c15ull | 1;
  static union {
    float f[MAX_ELEMS];
    uint16_t bf[MAX_ELEMS];
    int32_t i[MAX_ELEMS];
  } data;
  for (int t = 0; t < desc->ntensors; t++) {
    const MlkTensorDesc *td = &desc->tensors[t];
    if (td->kind != MLK_TENSOR_PARAM && td->kind != MLK_TENSOR_INPUT)
      continue;
    size_t bytes = mlk_model_tensor_bytes(m, t), n = bytes / (td->dtype == MLK_BF16 ? 2 : 4);
    if (n > MAX_ELEMS) {
      printf("FAIL: tensor '%s' of '%s' is larger than the test's buffer\n", td->name, desc->name);
      exit(1);
    }
    for (size_t i = 0; i < n; i++) {
      if (td->dtype == MLK_BF16)
        data.bf[i] = mlk_f32_to_bf16(uniform() / 2);
      else if (td->dtype == MLK_I32)
        data.i[i] = 2 + (int32_t)i;
      else
        data.f[i] = uniform();
    }
    if (mlk_model_set_tensor(m, t, &data, bytes) != MLK_OK)
      fail("cannot set a tensor of", desc->name);
  }
  return m;
}

static const char *schedule_name(mlk_sim_schedule s) {
  return s == MLK_SIM_DYNAMIC ? "dynamic" : "static";
}

/* event_war: every schedule of every run passes and reads what the run before wrote. */
static int event_war(uint64_t seed, mlk_sim_schedule schedule) {
  enum { B = 3, D = 32, HHD = 32 };
  static float x1[B * D], x2[B * D], a[RUNS][B * HHD];
  mlk_backend *be;
  mlk_model *m = create(&event_war_desc, seed, schedule, B, &be);
  for (int i = 0; i < B * D; i++) {
    x1[i] = uniform();
    x2[i] = uniform();
  }
  const float *xs[RUNS] = {x1, x2, x1, x2, x2};
  int x = tensor(m, "x"), out = tensor(m, "a");
  int failed = 0;
  for (int r = 0; r < RUNS && !failed; r++)
    if (mlk_model_set_tensor(m, x, xs[r], sizeof x1) || mlk_model_run(m, 0) ||
        mlk_model_get_tensor(m, out, a[r], sizeof a[r])) {
      printf("FAIL: event_war, %s schedule, run %d (seed %llu): %s\n", schedule_name(schedule),
             r + 1, (unsigned long long)seed, mlk_last_error());
      failed++;
    }
  if (!failed && memcmp(a[1], a[3], sizeof a[1])) {
    printf("FAIL: event_war, %s schedule: runs 2 and 4 (X2 over the entry X1 wrote) differ\n",
           schedule_name(schedule));
    failed++;
  }
  if (!failed && !memcmp(a[3], a[4], sizeof a[3])) {
    printf("FAIL: event_war, %s schedule: runs 4 and 5 (X2 over the entries of X1 and of X2) "
           "agree: the attention read the entry its own step rewrote\n", schedule_name(schedule));
    failed++;
  }
  mlk_model_free(m);
  mlk_backend_free(be);
  if (!failed)
    printf("ok: event_war, %s schedule, %d runs under %d schedules each (seed %llu): the attention "
           "reads the entry before its rewrite, no missing dependency\n", schedule_name(schedule),
           RUNS, SCHEDULES, (unsigned long long)seed);
  return failed;
}

/* event_war_racy: the append may rewrite the entry before the attention has read it. */
static int event_war_racy(uint64_t seed) {
  mlk_backend *be;
  mlk_model *m = create(&event_war_racy_desc, seed, MLK_SIM_STATIC, 3, &be);
  int caught = 0, failed = 0;
  for (int r = 0; r < RUNS && !caught && !failed; r++) {
    if (mlk_model_run(m, 0) == MLK_OK)
      continue;
    caught = strstr(mlk_last_error(), "missing dependency") != NULL;
    if (caught) {
      printf("ok: event_war_racy run %d: %s\n", r + 1, mlk_last_error());
    } else {
      printf("FAIL: event_war_racy run %d failed otherwise: %s\n", r + 1, mlk_last_error());
      failed++;
    }
  }
  if (!caught && !failed) {
    printf("FAIL: event_war_racy: %d runs under %d schedules each (seed %llu) and no missing "
           "dependency\n", RUNS, SCHEDULES, (unsigned long long)seed);
    failed++;
  }
  mlk_model_free(m);
  mlk_backend_free(be);
  return failed;
}

/* events_fused: the lists the fusions merged are complete and in order (the runtime checks them
 * when it creates the model), and no schedule finds a missing dependency or gets stuck. */
static int events_fused(uint64_t seed, mlk_sim_schedule schedule) {
  mlk_backend *be;
  mlk_model *m = create(&fused_desc, seed, schedule, 4, &be);
  int failed = 0;
  for (int r = 0; r < 3 && !failed; r++)
    if (mlk_model_run(m, 0) != MLK_OK) {
      printf("FAIL: events_fused, %s schedule, run %d (seed %llu): %s\n", schedule_name(schedule),
             r + 1, (unsigned long long)seed, mlk_last_error());
      failed++;
    }
  mlk_model_free(m);
  mlk_backend_free(be);
  if (!failed)
    printf("ok: events_fused, %s schedule, 3 runs under %d schedules each (seed %llu)\n",
           schedule_name(schedule), SCHEDULES, (unsigned long long)seed);
  return failed;
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
  if (seed == 0)
    seed = (uint64_t)time(NULL);
  int failed = event_war(seed, MLK_SIM_STATIC) + event_war(seed, MLK_SIM_DYNAMIC) +
               event_war_racy(seed) + events_fused(seed, MLK_SIM_STATIC) +
               events_fused(seed, MLK_SIM_DYNAMIC);
  return failed ? 1 : 0;
}
