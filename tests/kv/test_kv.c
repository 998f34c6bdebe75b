/* test_kv.c: the managed paged KV cache (runtime/kv.c) over the llama_tiny megakernel
 * (tests/sim/llama_tiny.mlk: 2 layers, 2 kv heads, pages of 8 tokens) on the CPU simulator.
 *
 * Page accounting: thousands of random creates, appends (some past the pool: refused, nothing
 * changed), forks and frees, with the allocator's invariants recounted after each (mlk_kv_check)
 * and every page free again at the end. The API's refusals and their messages.
 *
 * Continuous batching: six sequences of different lengths, two of them forked from others (one
 * in the middle of a page: the shared page is copied by whoever writes it first; one at a page
 * boundary: only full pages are shared), join a batch of at most 4 rows as rows free up and leave
 * when done, in a new row order every step, on a pool smaller than 4 whole contexts. Every row's
 * logits must equal those of the same sequence decoded alone at batch 1 in the fixed page layout
 * of another model: bit for bit on the simulator (its references compute each row alone), within
 * GPU_TOL relative L2 on the GPU (whose tiles sum a batch of 4 rows in another order than a batch
 * of 1, and a bf16 rounding of a cached key can then differ).
 *
 * Prefill: a sequence takes several consecutive rows of a run, one position each (its prompt in
 * chunks of up to 4 rows, beside another sequence decoding a token per run): every row's logits
 * must again equal its decode alone. Rows of one sequence out of order are refused.
 */
#include "llama_tiny.h"
#include "internal.h"
#include "rt_test.h"

enum {
  D = LLAMA_TINY_D,
  F = LLAMA_TINY_F,
  L = LLAMA_TINY_L,
  H = LLAMA_TINY_H,
  KVH = LLAMA_TINY_KVH,
  HD = LLAMA_TINY_HD,
  V = LLAMA_TINY_V,
  QKV = (H + 2 * KVH) * HD,
  PAGE = 8,
  CTX = 24, /* 3 pages a sequence */
  BMAX = 4
};
/* A key or value rounded to bf16 one step apart in the cache (another summation order) moves every
 * later logit of its sequence: seed 594918813 on an H100 gave 2.3e-4 to 6.5e-4 from position 2 on,
 * the same in every run (6 other seeds within 2e-4). The tolerance of the GPU differential tests'
 * steps with a cache element apart by rounding; a wrong page or position attends over other keys
 * and values, not a rounding step away (its size on the GPU not measured here), and the
 * simulator's comparison stays bit for bit. */
#define GPU_TOL 2e-3

static uint16_t embed[V * D], ln1[L * D], wqkv[L * QKV * D], wo[L * D * H * HD], ln2[L * D],
    w_gate[L * F * D], w_up[L * F * D], w_down[L * D * F], lnf[D];

static void set_weights(llama_tiny_model *m) {
  CHECK_OK(llama_tiny_set_embed(m, embed));
  CHECK_OK(llama_tiny_set_ln1(m, ln1));
  CHECK_OK(llama_tiny_set_wqkv(m, wqkv));
  CHECK_OK(llama_tiny_set_wo(m, wo));
  CHECK_OK(llama_tiny_set_ln2(m, ln2));
  CHECK_OK(llama_tiny_set_w_gate(m, w_gate));
  CHECK_OK(llama_tiny_set_w_up(m, w_up));
  CHECK_OK(llama_tiny_set_w_down(m, w_down));
  CHECK_OK(llama_tiny_set_lnf(m, lnf));
}

static void make_weights(void) {
  rt_fill_bf16(embed, V * D, 1.0f);
  for (int i = 0; i < L * D; i++) {
    ln1[i] = mlk_f32_to_bf16(1.0f + rt_uniform(0.2f));
    ln2[i] = mlk_f32_to_bf16(1.0f + rt_uniform(0.2f));
  }
  rt_fill_bf16(wqkv, (size_t)L * QKV * D, 2.0f / 8.0f);
  rt_fill_bf16(wo, (size_t)L * D * H * HD, 1.0f / 8.0f);
  rt_fill_bf16(w_gate, (size_t)L * F * D, 1.0f / 8.0f);
  rt_fill_bf16(w_up, (size_t)L * F * D, 1.0f / 8.0f);
  rt_fill_bf16(w_down, (size_t)L * D * F, 1.0f / 11.0f);
  for (int i = 0; i < D; i++)
    lnf[i] = mlk_f32_to_bf16(1.0f + rt_uniform(0.2f));
}

static llama_tiny_model *new_model(mlk_backend *be, int64_t context, int64_t pages) {
  mlk_model_options o = {.kv_context = context, .kv_pages = pages};
  llama_tiny_model *m = NULL;
  CHECK_OK(mlk_model_create_opt(be, &llama_tiny_desc, &o, &m));
  return m;
}

#define KV_CHECK(m)                                                                               \
  do {                                                                                            \
    mlk_status st_ = mlk_kv_check(m);                                                             \
    CHECK(st_ == MLK_OK, "allocator invariant: %s", mlk_last_error());                            \
  } while (0)

/* ---- page accounting ---- */

enum { MAXS = 12 };

static void test_accounting(mlk_backend *be) {
  const int64_t npages = 40, ctx = 64; /* 8 pages a sequence at most */
  llama_tiny_model *m = new_model(be, ctx, npages);
  if (!m)
    return;
  CHECK(mlk_model_kv_pages(m) == npages, "%lld pages", (long long)mlk_model_kv_pages(m));
  mlk_seq *s[MAXS] = {0};
  int ns = 0, refused = 0, cows = 0;
  for (int it = 0; it < 3000; it++) {
    int op = (int)(rt_next() % 8), i = ns ? (int)(rt_next() % (uint64_t)ns) : 0;
    if (ns == 0 || (op == 0 && ns < MAXS)) {
      CHECK_OK(mlk_seq_create(m, &s[ns]));
      ns++;
    } else if (op == 1 && ns < MAXS) {
      CHECK_OK(mlk_seq_fork(s[i], &s[ns]));
      CHECK(mlk_seq_length(s[ns]) == mlk_seq_length(s[i]), "a fork has the length of its parent");
      ns++;
    } else if (op == 2) {
      mlk_seq_free(s[i]);
      s[i] = s[--ns];
    } else {
      int64_t len = mlk_seq_length(s[i]), room = ctx - len, n = 1 + (int64_t)(rt_next() % 10);
      int64_t free0 = mlk_model_kv_pages_free(m);
      if (room == 0)
        continue;
      n = n > room ? room : n;
      mlk_status st = mlk_seq_append(s[i], n);
      if (st == MLK_OK) {
        CHECK(mlk_seq_length(s[i]) == len + n, "length %lld after appending %lld to %lld",
              (long long)mlk_seq_length(s[i]), (long long)n, (long long)len);
        int64_t grown = (len + n + PAGE - 1) / PAGE - (len + PAGE - 1) / PAGE;
        int64_t taken = free0 - mlk_model_kv_pages_free(m);
        CHECK(taken == grown || taken == grown + 1, "appending took %lld pages for %lld new ones",
              (long long)taken, (long long)grown);
        cows += taken == grown + 1;
      } else {
        CHECK(st == MLK_ERR_NOMEM, "append: %s", mlk_last_error());
        CHECK_CONTAINS(mlk_last_error(), "the KV caches of model 'llama_tiny' are out of pages");
        CHECK(mlk_seq_length(s[i]) == len && mlk_model_kv_pages_free(m) == free0,
              "a refused append changed the sequence or the pool");
        refused++;
      }
    }
    KV_CHECK(m);
  }
  CHECK(refused > 0 && cows > 0, "the run should have hit the pool's end (%d) and copied shared "
        "pages (%d)", refused, cows);
  printf("accounting: 3000 operations, %d appends refused for want of pages, %d shared pages copied\n",
         refused, cows);
  while (ns)
    mlk_seq_free(s[--ns]);
  KV_CHECK(m);
  CHECK(mlk_model_kv_pages_free(m) == npages, "%lld of %lld pages free after freeing everything",
        (long long)mlk_model_kv_pages_free(m), (long long)npages);
  llama_tiny_free(m);
}

/* ---- refusals ---- */

static void test_errors(mlk_backend *be) {
  llama_tiny_model *m = new_model(be, CTX, 5), *other = new_model(be, CTX, 0);
  if (!m || !other)
    return;
  set_weights(m);
  int32_t tok[BMAX] = {1, 2, 3, 4}, pos[BMAX] = {0, 0, 0, 0};
  CHECK_OK(llama_tiny_set_tokens(m, tok));
  CHECK_OK(llama_tiny_set_pos(m, pos));
  /* 5 pages cannot give 4 rows a whole context each: the fixed layout is refused */
  CHECK_ST(llama_tiny_decode(m), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "KV cache 'kv' of model 'llama_tiny' has 5 pages, fewer than 4 "
                                   "rows x 3 pages: bind sequences to the rows");
  mlk_seq *a, *b, *x;
  CHECK_OK(mlk_seq_create(m, &a));
  CHECK_OK(mlk_seq_create(m, &b));
  CHECK_OK(mlk_seq_create(other, &x));
  CHECK_ST(mlk_seq_append(a, 0), MLK_ERR_INVALID);
  CHECK_ST(mlk_seq_append(a, CTX + 1), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "25 tokens onto a sequence of 0: append 1 or more, up to the "
                                   "context of 24 tokens");
  CHECK_OK(mlk_seq_append(a, CTX)); /* 3 pages */
  CHECK_ST(mlk_seq_append(b, 17), MLK_ERR_NOMEM);
  CHECK_CONTAINS(mlk_last_error(), "out of pages: a sequence of 0 tokens appending 17 needs 3 more, "
                                   "2 of 5 are free (mlk_model_options.kv_pages)");
  CHECK(mlk_seq_length(b) == 0 && mlk_model_kv_pages_free(m) == 2, "a refused append changed "
        "something");
  CHECK_OK(mlk_seq_append(b, 1));
  mlk_seq *rows[3] = {a, b, a};
  CHECK_ST(mlk_model_set_seqs(m, rows, 3), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "rows 0 and 2 are the same sequence, with another between them");
  rows[2] = x;
  CHECK_ST(mlk_model_set_seqs(m, rows, 3), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "row 2 is a sequence of another model");
  rows[2] = NULL;
  CHECK_ST(mlk_model_set_seqs(m, rows, 3), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "row 2 is NULL");
  CHECK_ST(mlk_model_set_seqs(m, rows, 0), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "batch 0 is outside B in 1..4");
  CHECK_OK(mlk_model_set_seqs(m, rows, 2));
  CHECK_OK(llama_tiny_set_tokens(m, tok));
  pos[0] = 23;
  pos[1] = 1; /* b holds 1 token: position 0 only */
  CHECK_OK(llama_tiny_set_pos(m, pos));
  CHECK_ST(llama_tiny_decode(m), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "input 'pos' row 1 is 1: op 'kv_append@nn.mlk:");
  CHECK_CONTAINS(mlk_last_error(), "writes position 1 of a sequence of 1 tokens (mlk_seq_append "
                                   "reserves positions)");
  pos[1] = 0;
  CHECK_OK(llama_tiny_set_pos(m, pos));
  CHECK_OK(llama_tiny_decode(m));
  mlk_seq_free(b); /* leaves row 1 */
  CHECK_ST(llama_tiny_decode(m), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "model 'llama_tiny' runs 2 rows, but row 1 has no sequence");
  KV_CHECK(m);
  mlk_seq_free(a);
  CHECK(mlk_model_kv_pages_free(m) == 5, "pages left held");
  mlk_seq_free(NULL);
  CHECK_ST(mlk_seq_fork(NULL, &a), MLK_ERR_INVALID);
  CHECK_ST(mlk_seq_append(NULL, 1), MLK_ERR_INVALID);
  llama_tiny_free(m);
  llama_tiny_free(other); /* frees x with it */

  /* options and their environment variables */
  mlk_model_options o = {.kv_pages = -1};
  mlk_model *bad = NULL;
  CHECK_ST(mlk_model_create_opt(be, &llama_tiny_desc, &o, &bad), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "mlk_model_options.kv_pages is -1");
  setenv("MLK_KV_PAGES", "seven", 1);
  CHECK_ST(mlk_model_create(be, &llama_tiny_desc, &bad), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "MLK_KV_PAGES");
  setenv("MLK_KV_PAGES", "7", 1);
  CHECK_OK(mlk_model_create(be, &llama_tiny_desc, &bad));
  CHECK(mlk_model_kv_pages(bad) == 7, "MLK_KV_PAGES=7 gave %lld pages",
        (long long)mlk_model_kv_pages(bad));
  mlk_model_free(bad);
  o.kv_pages = 9; /* the option wins over the environment */
  CHECK_OK(mlk_model_create_opt(be, &llama_tiny_desc, &o, &bad));
  CHECK(mlk_model_kv_pages(bad) == 9, "kv_pages 9 gave %lld", (long long)mlk_model_kv_pages(bad));
  mlk_model_free(bad);
  unsetenv("MLK_KV_PAGES");
}

/* ---- continuous batching ---- */

enum { NSEQ = 6, MAXLEN = 20 };

typedef struct Plan {
  int total;      /* tokens it decodes */
  int parent;     /* forked from this sequence (-1: none) ... */
  int at;         /* ... when the parent holds this many tokens (its first `at` tokens) */
} Plan;

/* A: 20 tokens; B: 14; C forks B at 5 (mid-page: page 0 is shared, then copied); D: 17; E: 6;
 * F forks A at 16 (a page boundary: two full pages shared, nothing copied). */
static const Plan plan[NSEQ] = {{20, -1, 0}, {14, -1, 0}, {11, 1, 5},
                                {17, -1, 0}, {6, -1, 0},  {19, 0, 16}};
static int32_t toks[NSEQ][MAXLEN];
static float alone[NSEQ][MAXLEN][V];

/* Each sequence decoded alone, batch 1, fixed page layout. */
static void decode_alone(mlk_backend *be) {
  llama_tiny_model *m = new_model(be, CTX, 0);
  if (!m)
    return;
  set_weights(m);
  for (int s = 0; s < NSEQ; s++)
    for (int p = 0; p < plan[s].total; p++) {
      int32_t t = toks[s][p], pos = p;
      CHECK_OK(llama_tiny_set_tokens(m, &t));
      CHECK_OK(llama_tiny_set_pos(m, &pos));
      CHECK_OK(llama_tiny_decode(m));
      CHECK_OK(llama_tiny_get_logits(m, alone[s][p]));
    }
  llama_tiny_free(m);
}

/* Whether a row's logits equal its sequence's decode alone: bit for bit on the simulator, within
 * GPU_TOL relative L2 on the GPU (*err: that distance, 0 when equal). */
static int same_as_alone(mlk_backend *be, const float *got, const float *want, double *err) {
  *err = 0;
  if (!memcmp(got, want, sizeof(float) * V))
    return 1;
  if (!mlk_backend_is_gpu(be))
    return 0;
  double w[V];
  for (int i = 0; i < V; i++)
    w[i] = want[i];
  *err = rt_rel_l2(got, w, V);
  return *err <= GPU_TOL;
}

static void test_continuous(mlk_backend *be) {
  for (int s = 0; s < NSEQ; s++)
    for (int p = 0; p < plan[s].total; p++)
      toks[s][p] = plan[s].parent >= 0 && p < plan[s].at ? toks[plan[s].parent][p]
                                                          : (int32_t)(rt_next() % V);
  decode_alone(be);
  /* 10 pages: fewer than the 12 of 4 whole contexts, more than the 4 rows need at once */
  llama_tiny_model *m = new_model(be, CTX, 10);
  if (!m)
    return;
  set_weights(m);
  mlk_seq *seq[NSEQ] = {0};
  int waiting[NSEQ] = {0, 1, 3, 4}, nwait = 4; /* roots in order; forks are queued when made */
  int active[BMAX], nact = 0, done = 0, steps = 0, compared = 0;
  while (done < NSEQ && steps < 200) {
    while (nact < BMAX && nwait) { /* join */
      int s = waiting[0];
      memmove(waiting, waiting + 1, (size_t)--nwait * sizeof *waiting);
      if (!seq[s])
        CHECK_OK(mlk_seq_create(m, &seq[s]));
      active[nact++] = s;
    }
    for (int i = nact - 1; i > 0; i--) { /* a new row order every step */
      int j = (int)(rt_next() % (uint64_t)(i + 1)), t = active[i];
      active[i] = active[j];
      active[j] = t;
    }
    mlk_seq *rows[BMAX];
    int32_t tok[BMAX], pos[BMAX];
    for (int b = 0; b < nact; b++) {
      mlk_seq *s = seq[active[b]];
      CHECK_OK(mlk_seq_append(s, 1));
      pos[b] = (int32_t)mlk_seq_length(s) - 1;
      tok[b] = toks[active[b]][pos[b]];
      rows[b] = s;
    }
    CHECK_OK(mlk_model_set_seqs(m, rows, nact));
    CHECK_OK(llama_tiny_set_tokens(m, tok));
    CHECK_OK(llama_tiny_set_pos(m, pos));
    CHECK_OK(llama_tiny_decode(m));
    float logits[BMAX * V];
    CHECK_OK(llama_tiny_get_logits(m, logits));
    for (int b = 0; b < nact; b++) {
      double err;
      int same = same_as_alone(be, logits + b * V, alone[active[b]][pos[b]], &err);
      CHECK(same, "step %d: sequence %c at position %d (row %d of %d) differs from its decode alone "
            "(rel L2 %.3g)", steps, 'A' + active[b], pos[b], b, nact, err);
      compared++;
    }
    KV_CHECK(m);
    /* forks of sequences that just reached the fork point; then leave when done */
    for (int b = 0; b < nact; b++)
      for (int c = 0; c < NSEQ; c++)
        if (plan[c].parent == active[b] && mlk_seq_length(seq[active[b]]) == plan[c].at) {
          CHECK_OK(mlk_seq_fork(seq[active[b]], &seq[c]));
          waiting[nwait++] = c;
        }
    for (int b = 0; b < nact; b++)
      if (mlk_seq_length(seq[active[b]]) == plan[active[b]].total) {
        mlk_seq_free(seq[active[b]]);
        seq[active[b]] = NULL;
        active[b--] = active[--nact];
        done++;
      }
    steps++;
  }
  CHECK(done == NSEQ, "%d of %d sequences finished in %d steps", done, NSEQ, steps);
  CHECK(mlk_model_kv_pages_free(m) == 10, "%lld of 10 pages free at the end",
        (long long)mlk_model_kv_pages_free(m));
  printf("continuous batching: %d steps, %d rows compared with their sequence decoded alone\n", steps,
         compared);
  llama_tiny_free(m);
}

/* Sequence A's 20 tokens go in as prompt chunks of up to 3 or 4 rows while D decodes a token per
 * run in the row before them; then A's chunk alone. Each row's logits against the decode alone. */
static void test_prefill(mlk_backend *be) {
  llama_tiny_model *m = new_model(be, CTX, 10);
  if (!m)
    return;
  set_weights(m);
  mlk_seq *a, *d;
  CHECK_OK(mlk_seq_create(m, &a));
  CHECK_OK(mlk_seq_create(m, &d));
  int runs = 0, compared = 0;
  while (mlk_seq_length(a) < plan[0].total) {
    mlk_seq *rows[BMAX];
    int32_t tok[BMAX], pos[BMAX];
    int src[BMAX], n = 0;
    if (mlk_seq_length(d) < plan[3].total) { /* D: one token */
      CHECK_OK(mlk_seq_append(d, 1));
      pos[n] = (int32_t)mlk_seq_length(d) - 1;
      tok[n] = toks[3][pos[n]];
      src[n] = 3;
      rows[n++] = d;
    }
    int64_t start = mlk_seq_length(a), left = plan[0].total - start, take = BMAX - n;
    take = take < left ? take : left;
    CHECK_OK(mlk_seq_append(a, take));
    for (int64_t j = 0; j < take; j++) {
      pos[n] = (int32_t)(start + j);
      tok[n] = toks[0][pos[n]];
      src[n] = 0;
      rows[n++] = a;
    }
    CHECK_OK(mlk_model_set_seqs(m, rows, n));
    CHECK_OK(llama_tiny_set_tokens(m, tok));
    if (runs == 1 && n > 2) { /* two rows of A swapped: refused, nothing run */
      int32_t bad[BMAX];
      memcpy(bad, pos, sizeof bad);
      bad[n - 1] = pos[n - 2];
      bad[n - 2] = pos[n - 1];
      CHECK_OK(llama_tiny_set_pos(m, bad));
      CHECK_ST(llama_tiny_decode(m), MLK_ERR_INVALID);
      CHECK_CONTAINS(mlk_last_error(), "rows of one sequence must hold increasing positions");
    }
    CHECK_OK(llama_tiny_set_pos(m, pos));
    CHECK_OK(llama_tiny_decode(m));
    float logits[BMAX * V];
    CHECK_OK(llama_tiny_get_logits(m, logits));
    for (int b = 0; b < n; b++) {
      double err;
      int same = same_as_alone(be, logits + b * V, alone[src[b]][pos[b]], &err);
      CHECK(same, "prefill run %d: sequence %c at position %d (row %d of %d) differs from its "
            "decode alone (rel L2 %.3g)", runs, 'A' + src[b], pos[b], b, n, err);
      compared++;
    }
    KV_CHECK(m);
    runs++;
  }
  mlk_seq_free(a);
  mlk_seq_free(d);
  CHECK(mlk_model_kv_pages_free(m) == 10, "pages left held");
  printf("prefill: %d runs, %d rows compared with their sequence decoded alone\n", runs, compared);
  llama_tiny_free(m);
}

/* Usage: test_kv [gpu]: with "gpu", on the GPU (copies of shared pages by cuMemcpyDtoD; exit 77
 * without one). */
int main(int argc, char **argv) {
  rt_watchdog(150);
  rt_seed();
  make_weights();
  mlk_sim_options so = {.threads = 4, .max_delay_us = 0};
  mlk_backend *be = NULL;
  if (argc > 1 && !strcmp(argv[1], "gpu")) {
    if (mlk_backend_create(MLK_BACKEND_GPU, &be) != MLK_OK) {
      printf("SKIP: %s\n", mlk_last_error());
      return 77;
    }
    printf("backend: %s\n", mlk_backend_name(be));
  } else {
    CHECK_OK(mlk_backend_create_cpu(&so, &be));
  }
  if (!be)
    return rt_finish("kv_pages");
  test_accounting(be);
  test_errors(be);
  test_continuous(be);
  test_prefill(be);
  mlk_backend_free(be);
  return rt_finish("kv_pages");
}
