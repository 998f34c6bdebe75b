/* test_sample_sim.c: sampling per row and per sequence at run time, on the CPU simulator, through
 * sample_tiny's generated API (tests/sim/sample_tiny.mlk: two sample ops with their own keywords
 * next to an argmax, and a KV cache so that rows can be sequences).
 *
 * Rows (no sequences): row 0 samples as compiled, row 1 greedily, row 2 with its own temperature,
 * top-k, top-p and seed. Every token must be the reference's (mlk_ref_sample_row) for the model's
 * logits and the row's parameters, and its random number the seed's stream (mlk_sampling_uniform)
 * at the row's draw, which the sampling tensor holds as well; the greedy row's tokens are the
 * argmax; over many runs, row 0's tokens follow the renormalized top-k/top-p probabilities;
 * setting the same settings again replays the same tokens, another seed gives others; a refused
 * run takes no draw; bad settings are refused with their message.
 *
 * Sequences: settings set on sequences follow them through batches of other row orders and
 * sizes, a fork continues its parent's stream, and setting a row is refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlk_ref.h"
#include "sample_tiny.h"

static uint64_t rng = 88172645463325252ull;
static double uniform(void) { /* [0, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

enum { B = 3, D = SAMPLE_TINY_D, V = SAMPLE_TINY_V, HD = SAMPLE_TINY_HD, RUNS = 400, REPLAY = 24 };

static int failed;
#define CHECK(c, ...)                                                                              \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      printf("FAIL: " __VA_ARGS__);                                                                \
      printf("\n");                                                                                \
      failed++;                                                                                    \
    }                                                                                              \
  } while (0)
#define OK(st) CHECK((st) == MLK_OK, "%s:%d: %s", __FILE__, __LINE__, mlk_last_error())
#define REFUSED(st, needle)                                                                        \
  CHECK((st) == MLK_ERR_INVALID && strstr(mlk_last_error(), needle), "%s:%d: expected '%s', got %s", \
        __FILE__, __LINE__, needle, mlk_last_error())

/* The two sample ops' keywords: next, nucleus. */
static const mlk_sampling ops[2] = {{0.8f, 40, 0.95f, 0}, {1.2f, 1024, 0.5f, 0}};

/* The tokens of both ops for logits l, a row's settings and its random number u. */
static void want_tokens(const float *l, const mlk_sampling *set, float u, int32_t out[2]) {
  for (int i = 0; i < 2; i++) {
    const mlk_sampling *p = set->top_k ? set : &ops[i];
    out[i] = mlk_ref_sample_row(l, u, V, p->temperature, p->top_k, p->top_p, NULL);
  }
}

typedef struct Step {
  float logits[B * V], sp[B * MLK_SAMPLE_PARAMS];
  int32_t greedy[B], next[B], nucleus[B];
} Step;

/* One run at the current batch; reads every output and the sampling tensor. */
static void run(sample_tiny_model *m, Step *s) {
  int64_t rows = mlk_model_batch(m);
  int sp = mlk_model_find_tensor(m, "sampling");
  OK(sample_tiny_decode(m));
  OK(sample_tiny_get_logits(m, s->logits));
  OK(sample_tiny_get_greedy(m, s->greedy));
  OK(sample_tiny_get_next(m, s->next));
  OK(sample_tiny_get_nucleus(m, s->nucleus));
  CHECK(sp >= 0, "no tensor 'sampling'");
  OK(mlk_model_get_tensor(m, sp, s->sp, (size_t)rows * MLK_SAMPLE_PARAMS * sizeof(float)));
}

/* Row b of step s: the sampling tensor holds its settings and draw `draw` of its seed, and both
 * tokens are the reference's (the argmax when greedy). */
static void check_row(const Step *s, int64_t b, const mlk_sampling *set, uint64_t draw,
                      const char *what) {
  const float *r = s->sp + b * MLK_SAMPLE_PARAMS;
  float u = mlk_sampling_uniform(set->seed, draw);
  CHECK(r[MLK_SAMPLE_TEMPERATURE] == set->temperature && r[MLK_SAMPLE_TOP_K] == set->top_k &&
        r[MLK_SAMPLE_TOP_P] == set->top_p && r[MLK_SAMPLE_U] == u,
        "%s row %lld: sampling row %g %g %g %g, expected %g %d %g %g (draw %llu)", what,
        (long long)b, r[0], r[1], r[2], r[3], set->temperature, set->top_k, set->top_p, u,
        (unsigned long long)draw);
  int32_t want[2];
  want_tokens(s->logits + b * V, set, u, want);
  CHECK(s->next[b] == want[0] && s->nucleus[b] == want[1], "%s row %lld: next %d nucleus %d, the "
        "reference %d %d", what, (long long)b, s->next[b], s->nucleus[b], want[0], want[1]);
  if (set->top_k && set->temperature == 0.0f)
    CHECK(s->next[b] == s->greedy[b] && s->nucleus[b] == s->greedy[b], "%s row %lld: greedy gave "
          "%d and %d, the argmax is %d", what, (long long)b, s->next[b], s->nucleus[b],
          s->greedy[b]);
}

static const mlk_sampling rowset[B] = {
    {0.0f, 0, 0.0f, 0},   /* as compiled (row 0's default seed) */
    {0.0f, 1, 1.0f, 77},  /* greedy */
    {1.5f, 7, 0.9f, 42}}; /* its own temperature, top-k, top-p and seed */

static void test_rows(sample_tiny_model *m) {
  static float x[B * D];
  static Step s;
  static int32_t first[REPLAY][B][2];
  int32_t pos[B] = {0, 1, 2};
  for (int i = 0; i < B * D; i++)
    x[i] = (float)(uniform() * 2 - 1);
  OK(mlk_model_set_batch(m, B));
  OK(sample_tiny_set_x(m, x));
  OK(sample_tiny_set_pos(m, pos));

  mlk_sampling dflt;
  OK(mlk_model_sampling_default(m, &dflt));
  CHECK(dflt.temperature == 0.8f && dflt.top_k == 40 && dflt.top_p == 0.95f && dflt.seed == 0,
        "the defaults are the first sample op's keywords: %g %d %g %llu", dflt.temperature,
        dflt.top_k, dflt.top_p, (unsigned long long)dflt.seed);
  /* before anything is set, row b samples as compiled with seed b */
  run(m, &s);
  for (int64_t b = 0; b < B; b++)
    check_row(&s, b, &(mlk_sampling){.seed = (uint64_t)b}, 0, "default");

  for (int64_t b = 1; b < B; b++)
    OK(mlk_model_set_sampling(m, b, &rowset[b]));
  OK(mlk_model_set_sampling(m, 0, &rowset[0])); /* as compiled, its stream restarted */
  static int count[V];
  for (int r = 0; r < RUNS; r++) {
    run(m, &s);
    char what[32];
    snprintf(what, sizeof what, "run %d", r);
    for (int64_t b = 0; b < B; b++)
      check_row(&s, b, &rowset[b], (uint64_t)r, what);
    count[s.next[0]]++;
    if (r < REPLAY)
      for (int64_t b = 0; b < B; b++)
        first[r][b][0] = s.next[b], first[r][b][1] = s.nucleus[b];
  }

  /* row 0's `next` (top_k 40, top_p 0.95 at temperature 0.8) follows the renormalized
   * probabilities, computed in double from the same logits */
  const float *l = s.logits;
  int32_t ord[40];
  int n = 0;
  for (int i = 0; i < V; i++) { /* top 40 by value, ties by index (none expected) */
    int full = n == 40, j = full ? 39 : n++;
    if (full && !(l[i] > l[ord[39]]))
      continue;
    for (; j > 0 && l[i] > l[ord[j - 1]]; j--)
      ord[j] = ord[j - 1];
    ord[j] = i;
  }
  double p[40], sum = 0, cum = 0, kept = 0;
  for (int i = 0; i < 40; i++)
    sum += p[i] = exp((l[ord[i]] - l[ord[0]]) / 0.8);
  int J = 0;
  while (J < 39 && (cum += p[J]) < 0.95 * sum)
    J++;
  for (int i = 0; i <= J; i++)
    kept += p[i];
  int inside = 0, distinct = 0;
  for (int i = 0; i <= J; i++) {
    double q = p[i] / kept, want = q * RUNS, sd = sqrt(RUNS * q * (1 - q));
    CHECK(fabs(count[ord[i]] - want) <= 5 * sd + 1, "token %d drawn %d times, expected %.1f (sd %.1f)",
          ord[i], count[ord[i]], want, sd);
    inside += count[ord[i]];
    distinct += count[ord[i]] > 0;
  }
  CHECK(inside == RUNS, "%d of %d draws outside the %d kept tokens", RUNS - inside, RUNS, J + 1);
  CHECK(distinct > 3, "only %d distinct tokens drawn", distinct);

  /* the same settings again: the same tokens */
  for (int64_t b = 0; b < B; b++)
    OK(mlk_model_set_sampling(m, b, &rowset[b]));
  for (int r = 0; r < REPLAY; r++) {
    run(m, &s);
    for (int64_t b = 0; b < B; b++)
      CHECK(s.next[b] == first[r][b][0] && s.nucleus[b] == first[r][b][1], "replay run %d row %lld: "
            "%d %d, first %d %d", r, (long long)b, s.next[b], s.nucleus[b], first[r][b][0],
            first[r][b][1]);
  }
  /* another seed: other tokens (row 2: 24 draws over about 7 candidates) */
  mlk_sampling other = rowset[2];
  other.seed = 43;
  OK(mlk_model_set_sampling(m, 2, &other));
  int differ = 0;
  for (int r = 0; r < REPLAY; r++) {
    run(m, &s);
    check_row(&s, 2, &other, (uint64_t)r, "seed 43");
    differ += s.next[2] != first[r][2][0];
  }
  CHECK(differ > 0, "seed 43 drew the tokens of seed 42");

  /* a refused run takes no draw: the next run uses the draw the refused one would have */
  OK(mlk_model_set_sampling(m, 2, &rowset[2]));
  int32_t bad[B] = {0, 1, 1 << 20};
  OK(sample_tiny_set_pos(m, bad));
  REFUSED(sample_tiny_decode(m), "input 'pos' row 2 is 1048576");
  OK(sample_tiny_set_pos(m, pos));
  run(m, &s);
  check_row(&s, 2, &rowset[2], 0, "after a refused run");

  /* bad settings */
  REFUSED(mlk_model_set_sampling(m, 3, &rowset[1]), "mlk_model_set_sampling: row 3 is outside 0..2 "
          "of model 'sample_tiny'");
  REFUSED(mlk_model_set_sampling(m, -1, &rowset[1]), "row -1 is outside");
  REFUSED(mlk_model_set_sampling(m, 0, NULL), "mlk_model_set_sampling: the settings are NULL");
  REFUSED(mlk_model_set_sampling(NULL, 0, &rowset[1]), "mlk_model_set_sampling: model is NULL");
  REFUSED(mlk_model_set_sampling(m, 0, &(mlk_sampling){1.0f, 1025, 1.0f, 0}),
          "mlk_model_set_sampling: top_k is 1025, must be in [1, 1024] (0: as compiled)");
  REFUSED(mlk_model_set_sampling(m, 0, &(mlk_sampling){1.0f, -1, 1.0f, 0}), "top_k is -1");
  REFUSED(mlk_model_set_sampling(m, 0, &(mlk_sampling){-0.5f, 5, 1.0f, 0}),
          "mlk_model_set_sampling: temperature is -0.5, must be finite and >= 0 (0: greedy)");
  REFUSED(mlk_model_set_sampling(m, 0, &(mlk_sampling){NAN, 5, 1.0f, 0}), "temperature is nan");
  REFUSED(mlk_model_set_sampling(m, 0, &(mlk_sampling){INFINITY, 5, 1.0f, 0}), "temperature is inf");
  REFUSED(mlk_model_set_sampling(m, 0, &(mlk_sampling){1.0f, 5, 0.0f, 0}),
          "mlk_model_set_sampling: top_p is 0, must be in (0, 1] (1: no cut)");
  REFUSED(mlk_model_set_sampling(m, 0, &(mlk_sampling){1.0f, 5, 1.5f, 0}), "top_p is 1.5");
  REFUSED(mlk_model_set_sampling(m, 0, &(mlk_sampling){1.0f, 5, NAN, 0}), "top_p is nan");
  float junk[B * MLK_SAMPLE_PARAMS] = {0};
  REFUSED(mlk_model_set_tensor(m, mlk_model_find_tensor(m, "sampling"), junk, sizeof junk),
          "tensor 'sampling' is the sampling tensor, owned by the runtime: it cannot be set");
}

/* Sequences: each with its settings (or its default seed), bound to rows in other orders. */
static void test_seqs(sample_tiny_model *m) {
  enum { NS = 4, STEPS = 12 };
  mlk_seq *seq[NS];
  mlk_sampling set[NS];
  uint64_t draws[NS] = {0};
  for (int i = 0; i < 3; i++)
    OK(mlk_seq_create(m, &seq[i]));
  set[0] = (mlk_sampling){0.0f, 1, 1.0f, 5};   /* greedy */
  set[1] = (mlk_sampling){1.0f, 50, 0.9f, 9};
  set[2] = (mlk_sampling){.seed = 2};          /* its default: created third */
  OK(mlk_seq_set_sampling(seq[0], &set[0]));
  OK(mlk_seq_set_sampling(seq[1], &set[1]));
  REFUSED(mlk_model_set_sampling(m, 0, &set[0]), "the rows of model 'sample_tiny' are sequences: set "
          "the sampling of a sequence (mlk_seq_set_sampling)");
  REFUSED(mlk_seq_set_sampling(seq[0], &(mlk_sampling){1.0f, 2000, 1.0f, 0}), "mlk_seq_set_sampling: "
          "top_k is 2000");
  REFUSED(mlk_seq_set_sampling(NULL, &set[0]), "mlk_seq_set_sampling: the sequence is NULL");
  int live = 3;
  static float x[B * D];
  static Step s;
  for (int step = 0; step < STEPS; step++) {
    if (step == 4) { /* a fork continues its parent's stream with its settings */
      OK(mlk_seq_fork(seq[1], &seq[3]));
      set[3] = set[1];
      draws[3] = draws[1];
      live = 4;
    }
    /* up to 3 of the live sequences, rotated */
    int64_t rows = 1 + step % 3;
    mlk_seq *bound[B];
    int which[B];
    for (int64_t b = 0; b < rows; b++) {
      which[b] = (int)((step + b) % live);
      bound[b] = seq[which[b]];
      OK(mlk_seq_append(bound[b], 1));
    }
    OK(mlk_model_set_seqs(m, bound, rows));
    int32_t pos[B];
    for (int64_t b = 0; b < rows; b++)
      pos[b] = (int32_t)mlk_seq_length(bound[b]) - 1;
    for (int i = 0; i < rows * D; i++)
      x[i] = (float)(uniform() * 2 - 1);
    OK(sample_tiny_set_x(m, x));
    OK(sample_tiny_set_pos(m, pos));
    run(m, &s);
    char what[48];
    for (int64_t b = 0; b < rows; b++) {
      snprintf(what, sizeof what, "step %d (sequence %d)", step, which[b]);
      check_row(&s, b, &set[which[b]], draws[which[b]]++, what);
    }
  }
  for (int i = 0; i < live; i++)
    mlk_seq_free(seq[i]);
}

int main(void) {
  mlk_sim_options opt = {.threads = 4, .seed = 7, .max_delay_us = 10, .mode = MLK_SIM_THREADED};
  mlk_backend *be;
  sample_tiny_model *m;
  if (mlk_backend_create_cpu(&opt, &be) != MLK_OK || sample_tiny_create(be, &m) != MLK_OK) {
    printf("FAIL: %s\n", mlk_last_error());
    return 1;
  }
  static uint16_t embed[V * D], lnf[D], wkv[2 * HD * D];
  for (int i = 0; i < V * D; i++)
    embed[i] = mlk_f32_to_bf16((float)(uniform() * 2 - 1));
  for (int i = 0; i < D; i++)
    lnf[i] = mlk_f32_to_bf16(1.0f);
  for (int i = 0; i < 2 * HD * D; i++)
    wkv[i] = mlk_f32_to_bf16((float)(uniform() * 0.2 - 0.1));
  OK(sample_tiny_set_embed(m, embed));
  OK(sample_tiny_set_lnf(m, lnf));
  OK(sample_tiny_set_wkv(m, wkv));
  test_rows(m);
  test_seqs(m);
  sample_tiny_free(m);
  mlk_backend_free(be);
  printf("%s: sample_tiny on the simulator: rows (%d runs) and sequences\n", failed ? "FAIL" : "ok",
         RUNS);
  return failed != 0;
}
