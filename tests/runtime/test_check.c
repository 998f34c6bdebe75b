/* test_check.c: the simulator's dependency checker.
 *
 * Each case runs a model whose events are right except for one edge the drop_event hook removes
 * (its waits skipped, its producers run only when nothing else can), and expects the checker to
 * report it as MLK_ERR_INVALID "missing dependency ...", naming the reading op, the columns and
 * the tensor, and the writing op. The runs use the simulator's deterministic mode: a seed fixes
 * the interleaving, so every case is caught on every run of this test (eight seeds, both
 * schedules), in milliseconds, however loaded the machine. The same cases with the checker off
 * (no_check, or MLK_SIM_CHECK=0) must run through: the report comes from the checker alone, not
 * from poisoned data, so disabling the checker fails this test. Also:
 *   - the dropped edges: an ALL event (a matvec reading all of h), a TILE event (an eltwise
 *     reading its tiles of y), the cache of attention written by kv_append (layer columns), the
 *     same with the attention split over the context (an ALL event), the partials of a split
 *     attention read by its reduce (a TILE event over S producers), and a write-after-read edge
 *     (a later op overwriting what an earlier op reads);
 *   - a seed replays its interleaving: with an edge missing and the checker off, the racy result
 *     is bitwise the same for the same seed, and differs between some seeds;
 *   - exploration: a missing edge that one schedule hits with probability 1/34 is found by 256
 *     schedules per run on every seed tried, by the checker, and with the checker off by the
 *     schedules' different values; a correct model passes 64 schedules per run;
 *   - a double write (two ops writing overlapping columns, at offsets) is reported, in both modes;
 *   - correct models pass, including one whose consumer reads a tensor only through a
 *     transitive dependency (no direct event), deterministically and on threads with delays;
 *   - the model stays usable after a report, and drop_event out of range is refused.
 */
#include "rt_llama.h"

static RtData data;

static void set_mlp(mlk_model *m) {
  CHECK_OK(mlk_model_set_tensor(m, T_W1, data.W1, sizeof data.W1));
  CHECK_OK(mlk_model_set_tensor(m, T_W2, data.W2, sizeof data.W2));
  CHECK_OK(mlk_model_set_tensor(m, T_X, data.x, sizeof data.x));
  CHECK_OK(mlk_model_set_tensor(m, T_B, data.b, sizeof data.b));
  CHECK_OK(mlk_model_set_tensor(m, T_G, data.g, sizeof data.g));
  CHECK_OK(mlk_model_set_tensor(m, T_R, data.r, sizeof data.r));
}

/* > 0: the dropped-edge cases run threaded, with random delays up to this many us. */
static int case_delay;

/* A deterministic simulator, or a threaded one when `delay` > 0 (random delays up to `delay` us). */
static mlk_backend *backend(int threads, uint64_t seed, mlk_sim_schedule sched, int drop, int no_check,
                            int delay) {
  mlk_sim_options opt = {.threads = threads, .seed = seed, .max_delay_us = delay, .schedule = sched,
                         .no_check = no_check, .drop_event = drop,
                         .mode = delay ? MLK_SIM_THREADED : MLK_SIM_DETERMINISTIC};
  mlk_backend *be = NULL;
  CHECK_OK(mlk_backend_create_cpu(&opt, &be));
  return be;
}

/* Runs kernel `k` of `m`: with the checker, it must report every needle; without, succeed. */
static void expect_report(mlk_model *m, int k, int checking, const char *const *needles) {
  mlk_status st = mlk_model_run(m, k);
  if (!checking) {
    CHECK(st == MLK_OK, "checker off: run returned %s: %s", mlk_status_name(st), mlk_last_error());
    return;
  }
  CHECK(st == MLK_ERR_INVALID, "run returned %s, expected the checker's MLK_ERR_INVALID: %s",
        mlk_status_name(st), mlk_last_error());
  for (; *needles; needles++)
    CHECK_CONTAINS(mlk_last_error(), *needles);
}

/* The mlp model of rt_test.h with event `ev` dropped. */
static void mlp_case(int ev, mlk_sim_schedule sched, uint64_t seed, int checking,
                     const char *const *needles) {
  mlk_backend *be = backend(4, seed, sched, ev + 1, !checking, case_delay);
  if (!be)
    return;
  RtModel rm;
  rt_mlp_init(&rm);
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &rm.desc, &m));
  if (m) {
    set_mlp(m);
    int k = rm.events[ev].producer < 4 ? K_FORWARD : K_POST;
    expect_report(m, k, checking, needles);
    if (checking && rt_failures == 0)
      printf("    %s:\n      %s\n", mlk_backend_name(be), mlk_last_error());
    /* A report leaves the model usable: the other kernel runs clean, and the same one reports
     * again (the counters were reset). */
    if (ev == 0 || ev == 1) {
      CHECK_OK(mlk_model_run(m, K_POST));
      expect_report(m, k, checking, needles);
    }
    mlk_model_free(m);
  }
  mlk_backend_free(be);
}

/* The tiny Llama with the cache edge of layer 1 (kv_append -> attention) dropped; with `split`,
 * the attention split in that many chunks and the edge producer -> consumer dropped. */
static void llama_case(mlk_sim_schedule sched, uint64_t seed, int checking, int64_t split,
                       const char *producer, const char *consumer, const char *const *needles) {
  static Llama s;
  /* split < 0: -split chunks merged by the attention's own tasks */
  build_attn(&s, MLK_SCHED_STATIC, split < 0 ? -split : split, 1, split < 0);
  int ev = rtb_find_event(&s.b, producer, consumer);
  CHECK(ev >= 0, "no event %s -> %s", producer, consumer);
  mlk_backend *be = backend(4, seed, sched, ev + 1, !checking, case_delay);
  if (!be || ev < 0) {
    mlk_backend_free(be);
    return;
  }
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &s.b.desc, &m));
  if (m) {
    set_params(m, &s);
    CHECK_OK(mlk_model_set_batch(m, 3));
    int32_t tokens[3] = {1, 2, 3}, pos[3] = {0, 4, 9};
    CHECK_OK(mlk_model_set_tensor(m, s.tokens, tokens, sizeof tokens));
    CHECK_OK(mlk_model_set_tensor(m, s.pos, pos, sizeof pos));
    expect_report(m, 0, checking, needles);
    if (checking && rt_failures == 0)
      printf("    %s:\n      %s\n", mlk_backend_name(be), mlk_last_error());
    mlk_model_free(m);
  }
  mlk_backend_free(be);
}

/* op 0 reads s, op 1 (later) writes it: with the write-after-read event op 0 -> op 1 the run is
 * correct; dropped, op 1 overwrites s while op 0 may still read it. */
static void war_case(mlk_sim_schedule sched, uint64_t seed, int drop, int checking) {
  static RtB b;
  rtb_init(&b, "war", 0);
  rtb_kernel(&b, "step", MLK_SCHED_STATIC);
  int r = rtb_act(&b, "r", MLK_F32, MLK_TENSOR_INPUT, 50);
  int st = rtb_act(&b, "state", MLK_F32, MLK_TENSOR_TEMP, 50);
  int o = rtb_act(&b, "o", MLK_F32, MLK_TENSOR_OUTPUT, 50);
  int p = rtb_eltwise(&b, "relu@war:1", o, st, -1, 50, 17, MLK_FN_RELU);
  int c = rtb_eltwise(&b, "silu@war:2", st, r, -1, 50, 10, MLK_FN_SILU);
  rtb_event(&b, p, c, st, MLK_MAP_TILE, 50, 10);
  rtb_done(&b);
  mlk_backend *be = backend(4, seed, sched, drop ? 1 : 0, !checking, case_delay);
  if (!be)
    return;
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &b.desc, &m));
  if (m) {
    float rv[50];
    rt_fill(rv, 50, 1.0f);
    CHECK_OK(mlk_model_set_tensor(m, r, rv, sizeof rv));
    if (!drop) {
      for (int i = 0; i < 3; i++)
        CHECK_OK(mlk_model_run(m, 0));
    } else {
      const char *const needles[] = {"missing dependency in megakernel 'step': task ",
                                     " of op 'silu@war:2' wrote columns [", ") of 'state' before task ",
                                     " of op 'relu@war:1', an earlier op that reads them, finished", NULL};
      expect_report(m, 0, checking, needles);
      if (checking && rt_failures == 0)
        printf("    %s:\n      %s\n", mlk_backend_name(be), mlk_last_error());
    }
    mlk_model_free(m);
  }
  mlk_backend_free(be);
}

/* Two ops writing overlapping columns of one tensor (elements [0, 50) and [40, 90) of t);
 * deterministic, or on threads with delays. */
static void double_write(mlk_sim_schedule sched, int threaded) {
  static RtB b;
  rtb_init(&b, "dw", 0);
  rtb_kernel(&b, "twice", MLK_SCHED_STATIC);
  int r = rtb_act(&b, "r", MLK_F32, MLK_TENSOR_INPUT, 50);
  int t = rtb_act(&b, "t", MLK_F32, MLK_TENSOR_OUTPUT, 100);
  rtb_eltwise(&b, "relu@dw:1", t, r, -1, 50, 8, MLK_FN_RELU);
  int o = rtb_eltwise(&b, "silu@dw:2", t, r, -1, 50, 8, MLK_FN_SILU);
  b.ops[o].out.offset = 40;
  rtb_done(&b);
  mlk_backend *be = backend(3, 5, sched, 0, 0, threaded ? 10 : 0);
  if (!be)
    return;
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &b.desc, &m));
  if (m) {
    float rv[50];
    rt_fill(rv, 50, 1.0f);
    CHECK_OK(mlk_model_set_tensor(m, r, rv, sizeof rv));
    for (int i = 0; i < 3; i++) {
      CHECK(mlk_model_run(m, 0) == MLK_ERR_INVALID, "double write not reported: %s", mlk_last_error());
      CHECK_CONTAINS(mlk_last_error(), "double write in megakernel 'twice': task ");
      CHECK_CONTAINS(mlk_last_error(), "also writes in the same run");
      CHECK(strstr(mlk_last_error(), "columns [40, 48) of 't'") ||
                strstr(mlk_last_error(), "columns [48, 50) of 't'"),
            "overlap columns: %s", mlk_last_error());
    }
    printf("    %s:\n      %s\n", mlk_backend_name(be), mlk_last_error());
    mlk_model_free(m);
  }
  mlk_backend_free(be);
}

/* The mlp model without its y event (matvec@mlp.mlk:4 -> mul@mlp.mlk:5): a real race. With the
 * checker off the output depends on the interleaving, so it shows what a seed replays: the same
 * seed gives the same bits, run after run on fresh backends, and some seeds give other bits. */
static void replay(mlk_sim_schedule sched) {
  enum { NSEEDS = 8 };
  static float out[NSEEDS][RT_N];
  for (int i = 0; i < NSEEDS; i++)
    for (int rep = 0; rep < 2; rep++) {
      mlk_backend *be = backend(4, (uint64_t)i + 1, sched, 0, 1, 0);
      if (!be)
        return;
      RtModel rm;
      rt_mlp_init(&rm);
      rm.events[1] = rm.events[2];
      rm.events[2] = rm.events[3];
      rm.events[1].base = 1;
      rm.events[2].base = 11;
      rm.desc.nevents = 3;
      rm.desc.ncounters = 20;
      rt_mlp_link(&rm);
      mlk_model *m;
      CHECK_OK(mlk_model_create(be, &rm.desc, &m));
      if (m) {
        float o[RT_N];
        set_mlp(m);
        CHECK_OK(mlk_model_run(m, K_FORWARD));
        CHECK_OK(mlk_model_get_tensor(m, T_O, o, sizeof o));
        if (rep == 0)
          memcpy(out[i], o, sizeof o);
        else
          CHECK(!memcmp(out[i], o, sizeof o), "%s: the same seed computed different values",
                mlk_backend_name(be));
        mlk_model_free(m);
      }
      mlk_backend_free(be);
    }
  int differ = 0;
  for (int i = 1; i < NSEEDS; i++)
    differ += memcmp(out[i], out[0], sizeof out[0]) != 0;
  CHECK(differ > 0, "the race without the y event gave the same values under %d seeds", NSEEDS);
  printf("    %s schedule: each seed replays its values; %d of seeds 2..%d differ from seed 1\n",
         sched == MLK_SIM_STATIC ? "static" : "dynamic", differ, NSEEDS);
}

/* c = (relu(r) + r) * relu(r): op 2 reads a = relu(r) with no event of its own; it is ready
 * through op 1, whose tiles waited for a. The checker must accept it (delay > 0: on threads). */
static void transitive(mlk_sim_schedule sched, uint64_t seed, int delay) {
  static RtB b;
  rtb_init(&b, "transitive", 3);
  rtb_kernel(&b, "k", MLK_SCHED_STATIC);
  int r = rtb_act(&b, "r", MLK_F32, MLK_TENSOR_INPUT, 90);
  int a = rtb_act(&b, "a", MLK_F32, MLK_TENSOR_TEMP, 90);
  int s = rtb_act(&b, "s", MLK_F32, MLK_TENSOR_TEMP, 90);
  int c = rtb_act(&b, "c", MLK_F32, MLK_TENSOR_OUTPUT, 90);
  rtb_eltwise(&b, "relu@tr:1", a, r, -1, 90, 7, MLK_FN_RELU);
  rtb_eltwise(&b, "add@tr:2", s, a, r, 90, 10, MLK_FN_ADD);
  int o = rtb_eltwise(&b, "mul@tr:3", c, s, a, 90, 20, MLK_FN_MUL);
  /* Remove the direct a -> mul event rt_build added. */
  for (int i = 0; i < b.desc.nevents; i++)
    if (b.events[i].consumer == o && b.events[i].tensor == a)
      b.events[i] = b.events[--b.desc.nevents];
  rtb_done(&b);
  CHECK(b.desc.nevents == 2, "%d events", b.desc.nevents);
  mlk_backend *be = backend(5, seed, sched, 0, 0, delay);
  if (!be)
    return;
  mlk_model *m;
  CHECK_OK(mlk_model_create(be, &b.desc, &m));
  if (m) {
    CHECK_OK(mlk_model_set_batch(m, 3));
    float rv[3 * 90], cv[3 * 90];
    double want[3 * 90];
    for (int run = 0; run < 3; run++) {
      rt_fill(rv, 3 * 90, 1.0f);
      for (int i = 0; i < 3 * 90; i++) {
        double ai = rv[i] > 0 ? rv[i] : 0;
        want[i] = (ai + rv[i]) * ai;
      }
      CHECK_OK(mlk_model_set_tensor(m, r, rv, sizeof rv));
      CHECK_OK(mlk_model_fill_tensor(m, c, 0xff));
      CHECK_OK(mlk_model_run(m, 0));
      CHECK_OK(mlk_model_get_tensor(m, c, cv, sizeof cv));
      CHECK(rt_rel_l2(cv, want, 3 * 90) < 1e-6, "transitive: wrong result");
    }
    mlk_model_free(m);
  }
  mlk_backend_free(be);
}

/* A race that one schedule rarely shows. Op 1 (relu@ex:1, one task) writes a; op 2 (32 tasks)
 * writes s; op 3, a matvec over all of s, adds a as its residual, but its event from op 1 is
 * missing. Under the dynamic schedule op 3 is ready once op 2 is done and op 1 is ready from the
 * start, so the race shows only when op 1 runs after all 33 other tasks: a depth-1 bug, which PCT
 * of depth 1 hits with probability >= 1 / n = 1 / 34 per schedule (n = k = 34 tasks; exactly
 * 1/34 here: op 1 must draw the lowest priority). Exploring 256 schedules per run misses it with
 * probability <= (33/34)^256 < 5e-4 for a seed, and the seeds are fixed. */
static RtB race;
static int race_a, race_r, race_ra, race_w, race_c;

static void build_race(void) {
  RtB *b = &race;
  rtb_init(b, "race", 0);
  race_ra = rtb_act(b, "ra", MLK_F32, MLK_TENSOR_INPUT, 4);
  race_r = rtb_act(b, "r", MLK_F32, MLK_TENSOR_INPUT, 64);
  race_w = rtb_param(b, "w", 4, 64, 0);
  rtb_kernel(b, "k", MLK_SCHED_DYNAMIC);
  race_a = rtb_act(b, "a", MLK_F32, MLK_TENSOR_TEMP, 4);
  int s = rtb_act(b, "s", MLK_F32, MLK_TENSOR_TEMP, 64);
  race_c = rtb_act(b, "c", MLK_F32, MLK_TENSOR_OUTPUT, 4);
  rtb_eltwise(b, "relu@ex:1", race_a, race_ra, -1, 4, 4, MLK_FN_RELU);
  rtb_eltwise(b, "relu@ex:2", s, race_r, -1, 64, 2, MLK_FN_RELU);
  int o = rtb_matvec(b, "matvec@ex:3", race_c, s, A(race_w), race_a, NOARG, 4, 64, 4, MLK_FN_NONE, 0);
  for (int i = 0; i < b->desc.nevents; i++)
    if (b->events[i].consumer == o && b->events[i].tensor == race_a)
      b->events[i] = b->events[--b->desc.nevents];
  rtb_done(b);
}

/* Runs the race with `explore` schedules per run: 1 when a failure was reported (its message in
 * mlk_last_error()), 0 when the run passed. */
static int race_run(uint64_t seed, int explore, int checking) {
  mlk_sim_options opt = {.threads = 4, .seed = seed, .mode = MLK_SIM_DETERMINISTIC, .pct_depth = 1,
                         .explore = explore, .no_check = !checking};
  mlk_backend *be;
  mlk_model *m = NULL;
  int reported = -1;
  CHECK_OK(mlk_backend_create_cpu(&opt, &be));
  if (be)
    CHECK_OK(mlk_model_create(be, &race.desc, &m));
  if (m) {
    float ra[4] = {0.5f, 1, 2, 3}, r[64];
    uint16_t w[4 * 64];
    rt_fill(r, 64, 1.0f);
    rt_fill_bf16(w, 4 * 64, 0.2f);
    CHECK_OK(mlk_model_set_tensor(m, race_ra, ra, sizeof ra));
    CHECK_OK(mlk_model_set_tensor(m, race_r, r, sizeof r));
    CHECK_OK(mlk_model_set_tensor(m, race_w, w, sizeof w));
    mlk_status st = mlk_model_run(m, 0);
    CHECK(st == MLK_OK || st == MLK_ERR_INVALID, "race: %s", mlk_last_error());
    reported = st == MLK_ERR_INVALID;
    mlk_model_free(m); /* keeps the last error */
  }
  mlk_backend_free(be);
  return reported;
}

static void explore(void) {
  build_race();
  /* Single schedules: the PCT bound says at least 1 in 34 on average. */
  int hits = 0;
  for (uint64_t seed = 1; seed <= 340; seed++)
    hits += race_run(seed, 1, 1) == 1;
  printf("    one schedule per run: %d of 340 seeds hit the race (probability 1/34 each)\n", hits);
  CHECK(hits > 0 && hits < 340, "%d of 340 single schedules hit the race", hits);
  for (uint64_t seed = 1; seed <= 4; seed++) {
    CHECK(race_run(seed, 256, 1) == 1, "seed %llu: 256 schedules did not find the missing dependency",
          (unsigned long long)seed);
    CHECK_CONTAINS(mlk_last_error(), "missing dependency in megakernel 'k': task 0 of op 'matvec@ex:3' "
                   "read columns [0, 4) of 'a' before task 0 of op 'relu@ex:1' wrote them (schedule ");
    CHECK_CONTAINS(mlk_last_error(), " of 256 explored in this run)");
    if (seed == 1)
      printf("    checker on, 256 schedules, seed 1: %s\n", mlk_last_error());
    /* Without the checker the schedules' values differ. */
    CHECK(race_run(seed, 256, 0) == 1, "seed %llu: 256 schedules without the checker saw no race",
          (unsigned long long)seed);
    CHECK_CONTAINS(mlk_last_error(), "race in megakernel 'k': schedules 1 and ");
    CHECK_CONTAINS(mlk_last_error(), " of 256 left different values in 'c' (element ");
    if (seed == 1)
      printf("    checker off, 256 schedules, seed 1: %s\n", mlk_last_error());
  }
}

int main(void) {
  rt_watchdog(120);
  rt_seed();
  unsetenv("MLK_WAIT_TIMEOUT_MS");
  unsetenv("MLK_SIM_MODE");
  unsetenv("MLK_SIM_EXPLORE");
  setenv("MLK_KV_CONTEXT", "16", 1);
  /* the folded attention's split (its records and merge: the edges below), not the whole rows
   * that a context of 16 would otherwise get (mlk_attn_whole), except where a case says */
  setenv("MLK_ATTN_WHOLE_POSITIONS", "0", 1);
  rt_new_params(&data);
  rt_new_inputs(&data);
  new_params();
  /* Schedules, not data: fixed, so that every run of this test checks the same interleavings. */
  const uint64_t seeds[] = {1, 2, 3, 4, 5, 6, 7, 8};
  const mlk_sim_schedule scheds[] = {MLK_SIM_STATIC, MLK_SIM_DYNAMIC};
  const char *const h_needles[] = {"missing dependency in megakernel 'forward': task ",
                                   " of op 'matvec@mlp.mlk:4' read columns [", ") of 'h' before task ",
                                   " of op 'matvec@mlp.mlk:3' wrote them", NULL};
  const char *const y_needles[] = {"missing dependency in megakernel 'forward': task ",
                                   " of op 'mul@mlp.mlk:5' read columns [", ") of 'y' before task ",
                                   " of op 'matvec@mlp.mlk:4' wrote them", NULL};
  const char *const cache_needles[] = {"missing dependency in megakernel 'decode': task ",
                                       " of op 'attention@llama:11[l=1]' read columns [",
                                       ") of layer 1 of KV cache 'kv' before task ",
                                       " of op 'kv_append@llama:10[l=1]' wrote them", NULL};
  const char *const part_needles[] = {"missing dependency in megakernel 'decode': task ",
                                      " of op 'attn_reduce@llama:11[l=1]' read columns [",
                                      ") of 'part.1' before task ",
                                      " of op 'attention@llama:11[l=1]' wrote them", NULL};
  const char *const att_needles[] = {"missing dependency in megakernel 'decode': task ",
                                     " of op 'matvec@llama:12[l=1]' read columns [",
                                     ") of 'att.1' before task ",
                                     " of op 'attention@llama:11[l=1]' wrote them", NULL};
  for (int checking = 1; checking >= 0; checking--) {
    printf("  checker %s\n", checking ? "on" : "off");
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++)
      for (size_t s = 0; s < 2; s++) {
        int before = rt_failures;
        mlk_sim_schedule sch = scheds[s];
        mlp_case(0, sch, seeds[i], checking, h_needles);
        mlp_case(1, sch, seeds[i], checking, y_needles);
        llama_case(sch, seeds[i], checking, 1, "kv_append@llama:10[l=1]", "attention@llama:11[l=1]",
                   cache_needles);
        llama_case(sch, seeds[i], checking, 3, "kv_append@llama:10[l=1]", "attention@llama:11[l=1]",
                   cache_needles);
        llama_case(sch, seeds[i], checking, 3, "attention@llama:11[l=1]",
                   "attn_reduce@llama:11[l=1]", part_needles);
        /* merged by its own tasks: the output projection reads what the last ones wrote */
        llama_case(sch, seeds[i], checking, -4, "kv_append@llama:10[l=1]", "attention@llama:11[l=1]",
                   cache_needles);
        llama_case(sch, seeds[i], checking, -4, "attention@llama:11[l=1]", "matvec@llama:12[l=1]",
                   att_needles);
        /* the same rows taken whole (mlk_attn_whole: slot 0 attends them, reading the cache).
         * (The attention -> projection edge is not among these cases: when the held-back
         * attention task that the simulator lets go first is slot 0, it completes its whole
         * block at once, and the projection after it reads nothing early.) */
        setenv("MLK_ATTN_WHOLE_POSITIONS", "1000", 1);
        llama_case(sch, seeds[i], checking, -4, "kv_append@llama:10[l=1]", "attention@llama:11[l=1]",
                   cache_needles);
        setenv("MLK_ATTN_WHOLE_POSITIONS", "0", 1);
        war_case(sch, seeds[i], 1, checking);
        if (rt_failures != before)
          fprintf(stderr, "  ^ failed with seed %llu, %s schedule\n", (unsigned long long)seeds[i],
                  sch == MLK_SIM_STATIC ? "static" : "dynamic");
      }
  }
  /* Threaded, the held producers go only when nothing else can run (one at a time), so the edges
   * whose consumers reach a held producer's data are caught whatever the timing: under the
   * dynamic schedule every edge (consumers are ready at once); under the static one an ALL edge
   * whose producers sit on several queues, and the write-after-read edge (a writer on a queue
   * without readers). */
  printf("  threaded\n");
  case_delay = 5;
  for (uint64_t seed = 1; seed <= 3; seed++)
    for (size_t s = 0; s < 2; s++) {
      int before = rt_failures;
      mlk_sim_schedule sch = scheds[s];
      mlp_case(0, sch, seed, 1, h_needles);
      war_case(sch, seed, 1, 1);
      if (sch == MLK_SIM_DYNAMIC) {
        mlp_case(1, sch, seed, 1, y_needles);
        llama_case(sch, seed, 1, 1, "kv_append@llama:10[l=1]", "attention@llama:11[l=1]", cache_needles);
        llama_case(sch, seed, 1, 3, "attention@llama:11[l=1]", "attn_reduce@llama:11[l=1]", part_needles);
        llama_case(sch, seed, 1, -4, "attention@llama:11[l=1]", "matvec@llama:12[l=1]", att_needles);
      }
      if (rt_failures != before)
        fprintf(stderr, "  ^ failed with seed %llu, %s schedule, threaded\n", (unsigned long long)seed,
                sch == MLK_SIM_STATIC ? "static" : "dynamic");
    }
  case_delay = 0;

  /* MLK_SIM_CHECK=0 turns it off like no_check. */
  printf("  MLK_SIM_CHECK=0, then 1\n");
  setenv("MLK_SIM_CHECK", "0", 1);
  mlp_case(0, MLK_SIM_DYNAMIC, 3, 0, h_needles);
  setenv("MLK_SIM_CHECK", "1", 1);
  mlp_case(0, MLK_SIM_DYNAMIC, 3, 1, h_needles);
  unsetenv("MLK_SIM_CHECK");

  printf("  replay\n");
  for (size_t s = 0; s < 2; s++)
    replay(scheds[s]);

  printf("  exploration\n");
  explore();

  printf("  correct models\n");
  for (size_t s = 0; s < 2; s++) {
    double_write(scheds[s], 0);
    double_write(scheds[s], 1);
    war_case(scheds[s], 7, 0, 1);
    for (size_t i = 0; i < 3; i++) {
      transitive(scheds[s], seeds[i], 0);
      transitive(scheds[s], seeds[i], 30);
    }
    /* Every one of 64 schedules per run agrees (MLK_SIM_EXPLORE, the environment's way). */
    setenv("MLK_SIM_EXPLORE", "64", 1);
    transitive(scheds[s], 9, 0);
    unsetenv("MLK_SIM_EXPLORE");
  }

  /* drop_event names an event of the model. */
  mlk_backend *be = backend(2, 1, MLK_SIM_AS_COMPILED, 5, 0, 0);
  if (be) {
    RtModel rm;
    rt_mlp_init(&rm);
    mlk_model *m = (mlk_model *)&m;
    CHECK(mlk_model_create(be, &rm.desc, &m) == MLK_ERR_INVALID && m == NULL, "drop_event 5 accepted");
    CHECK_CONTAINS(mlk_last_error(), "simulator option drop_event = 5 (event 4) is out of range: model "
                   "'mlp' has 4 events");
    mlk_backend_free(be);
  }
  return rt_finish("runtime_check");
}
