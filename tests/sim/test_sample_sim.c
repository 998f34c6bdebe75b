/* test_sample_sim.c: sample_tiny (tests/sim/sample_tiny.mlk) on the CPU simulator through its
 * generated typed API: u is an input like any other. Each sampled token must be the reference's
 * (mlk_ref_sample_row) for the model's own logits; over many runs with a fixed x and u spread over
 * [0, 1), the tokens drawn follow the renormalized top-k/top-p probabilities. */
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

enum { B = 3, D = SAMPLE_TINY_D, V = SAMPLE_TINY_V, RUNS = 400 };

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

int main(void) {
  mlk_sim_options opt = {.threads = 4, .seed = 7, .max_delay_us = 10, .mode = MLK_SIM_THREADED};
  mlk_backend *be;
  sample_tiny_model *m;
  if (mlk_backend_create_cpu(&opt, &be) != MLK_OK || sample_tiny_create(be, &m) != MLK_OK) {
    printf("FAIL: %s\n", mlk_last_error());
    return 1;
  }
  static uint16_t embed[V * D], lnf[D];
  static float x[B * D], u[B], logits[B * V];
  int32_t greedy[B], next[B], nucleus[B];
  for (int i = 0; i < V * D; i++)
    embed[i] = mlk_f32_to_bf16((float)(uniform() * 2 - 1));
  for (int i = 0; i < D; i++)
    lnf[i] = mlk_f32_to_bf16(1.0f);
  for (int i = 0; i < B * D; i++)
    x[i] = (float)(uniform() * 2 - 1);
  OK(sample_tiny_set_embed(m, embed));
  OK(sample_tiny_set_lnf(m, lnf));
  OK(mlk_model_set_batch(m, B));
  OK(sample_tiny_set_x(m, x));
  /* next: top_k 40, top_p 0.95 at temperature 0.8; the frequencies of each row's tokens */
  static int count[B][V], ncount[B][V];
  for (int r = 0; r < RUNS; r++) {
    for (int b = 0; b < B; b++)
      u[b] = (float)((r + uniform()) / RUNS); /* stratified: one u per 1/RUNS of [0, 1) */
    OK(sample_tiny_set_u(m, u));
    OK(sample_tiny_decode(m));
    OK(sample_tiny_get_logits(m, logits));
    OK(sample_tiny_get_greedy(m, greedy));
    OK(sample_tiny_get_next(m, next));
    OK(sample_tiny_get_nucleus(m, nucleus));
    for (int b = 0; b < B; b++) {
      const float *l = logits + b * V;
      int32_t w1 = mlk_ref_sample_row(l, u[b], V, 0.8f, 40, 0.95f, NULL);
      int32_t w2 = mlk_ref_sample_row(l, u[b], V, 1.2f, 1024, 0.5f, NULL);
      CHECK(next[b] == w1 && nucleus[b] == w2, "run %d row %d: next %d nucleus %d, the reference "
            "%d %d", r, b, next[b], nucleus[b], w1, w2);
      if (r == 0)
        CHECK(next[b] == greedy[b], "row %d: u = 0 (and below 1/%d) gives the top token %d, got %d",
              b, RUNS, greedy[b], next[b]);
      count[b][next[b]]++;
      ncount[b][nucleus[b]]++;
    }
  }
  /* Expected frequencies in double from the same logits (they do not depend on u). */
  int distinct = 0;
  for (int b = 0; b < B; b++) {
    const float *l = logits + b * V;
    int32_t ord[40];
    int n = 0;
    for (int i = 0; i < V; i++) { /* top 40 by value, ties by index (none expected) */
      int j = n < 40 ? n++ : 39;
      if (n == 40 && j == 39 && !(l[i] > l[ord[39]]))
        continue;
      for (; j > 0 && l[i] > l[ord[j - 1]]; j--)
        ord[j] = ord[j - 1];
      ord[j] = i;
    }
    double p[40], sum = 0, cum = 0;
    for (int i = 0; i < 40; i++)
      sum += p[i] = exp((l[ord[i]] - l[ord[0]]) / 0.8);
    int J = 0;
    while (J < 39 && (cum += p[J]) < 0.95 * sum)
      J++;
    double kept = 0;
    for (int i = 0; i <= J; i++)
      kept += p[i];
    int inside = 0;
    for (int i = 0; i <= J; i++) {
      double want = p[i] / kept * RUNS;
      /* stratified u: a token of probability q covers q*RUNS strata, give or take the 2 at its ends */
      CHECK(fabs(count[b][ord[i]] - want) <= 2.0, "row %d: token %d drawn %d times, expected %.1f", b,
            ord[i], count[b][ord[i]], want);
      inside += count[b][ord[i]];
      distinct += count[b][ord[i]] > 0;
    }
    CHECK(inside == RUNS, "row %d: %d of %d draws outside the %d kept tokens", b, RUNS - inside,
          RUNS, J + 1);
  }
  CHECK(distinct > 3 * B, "only %d distinct tokens drawn", distinct);
  sample_tiny_free(m);
  mlk_backend_free(be);
  printf("%s: sample_tiny on the simulator, %d runs of %d rows, %d distinct tokens\n",
         failed ? "FAIL" : "ok", RUNS, B, distinct);
  return failed != 0;
}
