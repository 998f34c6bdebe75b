/* test_mlk_run.c: mlk-run end to end on the CPU simulator, against the sequential C reference of
 * examples/llama/llama_ref.c.
 *
 * For three tiny checkpoints written here as Hugging Face publishes one (config.json and
 * model.safetensors in a fresh directory): (A) Llama with Llama 3 RoPE scaling, a tied embedding
 * and every key present; (B) Llama with plain RoPE, odd sizes (hidden 72, 6 query heads over 2 kv
 * heads, head_dim 12 left to its default, vocabulary 101), eps 1e-6 and an untied lm_head.weight;
 * (C) Qwen2 (model_type qwen2: q, k and v biases, plain RoPE over theta 1000000, eps 1e-6, the
 * sliding window off), odd sizes (hidden 84, 7 query heads over 1 kv head, vocabulary 89), tied.
 * mlk-run (its path is argv[1]) runs prompts of different lengths as one batch, and the test
 * checks:
 *   - greedy ids: each prompt's tokens are the reference's greedy decode of the same prompt (one
 *     token per step, as mlk-run feeds it), except after a near tie of the reference's two best
 *     logits, where rounding may pick either and the rest of that prompt is not compared;
 *   - --logits-out: per prompt, steps rows of the vocabulary, each within LOGITS_TOL (relative L2)
 *     of the reference's logits for that token;
 *   - sampling: with --temperature, --top-k, --top-p and --seed, each token is the reference's
 *     sample (mlk_ref_sample_row) of the reference's logits with the draw the runtime takes:
 *     sequence i draws from seed S + i, one draw per run it is in, so the token after position p
 *     uses draw p (mlk_sampling_uniform); the same command replays the same ids, another seed
 *     draws other ones;
 *   - --prompts FILE gives the same ids as repeated --prompt-ids; 66 prompts (more than --batch
 *     64: the rest wait for rows) each get the reference's greedy tokens; a prompt of 100
 *     tokens gives the same tokens in two runs with --batch 64 and in one by default (the runs
 *     as wide as the prompts);
 *   - prefill: prompts that go in whole in one run (the default), or --prefill-chunk 2 or 1
 *     positions a run, give the same sampled ids (a row's draw is its position), after a --warmup
 *     generation too;
 *   - refusals, each with its message and exit status 1: a directory without config.json, an
 *     unsupported model_type, a config.json without a required key (the compiler names the key and
 *     the dim), a token id past the vocabulary, bad options; for Qwen2, an untied config over the
 *     tied checkpoint, the sliding window on, and a Llama checkpoint (no biases) said to be qwen2.
 *
 *   test_mlk_run MLK_RUN [SEED]
 *   test_mlk_run MLK_RUN SEED gpu   (the greedy ids and logits of A, B and C with mlk-run on the
 *                                    GPU against the same reference; SKIP, exit 77, without one)
 *   test_mlk_run --write-checkpoint DIR   (writes checkpoint A into DIR, for the install test)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "llama_ref.h"
#include "mlk_ref.h"
#include "rt_test.h"
#include "st_write.h"

/* The logits of mlk-run against the reference: f32 accumulation against double (~1e-6), plus a
 * bf16 rounding of a K or V value that falls on the other side of a tie in the kernel (up to
 * ~6e-4 where it happens: tests/sim/test_llama_sim.c measures both; this test cannot follow the
 * kernel's cache). A wrong operation moves them by 1e-1 or more. */
#define LOGITS_TOL 2e-3
/* Two logits closer than this (relative to the row's largest |logit|) are a near tie; so is a
 * sampled token whose reference margin (mlk_ref_sample_row) is below SAMPLE_TIE. */
#define TIE 2e-3
#define SAMPLE_TIE 1e-4

enum { MAXP = 3, STEPS = 6, MAXV = 128, MAXLEN = 16 };

typedef struct Cfg {
  const char *name;
  int D, F, L, H, KVH, HD, V;
  double eps, theta;
  int llama3;       /* rope_scaling llama3 (factor 32, low 1, high 4, original 8192), else null */
  int tied;
  int write_head_dim, write_kv_heads;
  float temperature; /* of the sampled runs: the tied tiny model is peaked (its own token's
                        embedding dominates its logits), so it samples hotter */
  int qwen2;         /* model_type qwen2: q, k and v biases, and Qwen2's keys */
} Cfg;

typedef struct Ckpt {
  char dir[600];
  uint16_t *embed, *ln1, *wqkv, *wo, *ln2, *w_gate, *w_up, *w_down, *lnf, *head, *bqkv;
} Ckpt;

static uint16_t *bf16s(int64_t n, float center, float scale) {
  uint16_t *p = malloc((size_t)n * sizeof *p);
  if (!p)
    abort();
  for (int64_t i = 0; i < n; i++)
    p[i] = mlk_f32_to_bf16(center + rt_uniform(scale));
  return p;
}

enum { MAXT = 64 };
static StT tensors[MAXT];
static char tnames[MAXT][96];
static int nt;

static void add(const char *name, const uint16_t *data, int64_t rows, int64_t cols) {
  snprintf(tnames[nt], sizeof tnames[nt], "%s", name);
  tensors[nt] = (StT){tnames[nt], "BF16", cols ? 2 : 1, {rows, cols}, data,
                      (size_t)(rows * (cols ? cols : 1)) * 2};
  nt++;
}

/* A random checkpoint of configuration c in directory `dir` (NULL: a fresh one), and the weights
 * the reference reads. */
static void make(const Cfg *c, Ckpt *k, const char *dir) {
  snprintf(k->dir, sizeof k->dir, "%s", dir ? dir : st_tmpdir());
  int64_t D = c->D, F = c->F, L = c->L, QKV = (int64_t)(c->H + 2 * c->KVH) * c->HD, V = c->V;
  float s = 1.0f / sqrtf((float)D);
  k->embed = bf16s(V * D, 0, 1.0f);
  k->ln1 = bf16s(L * D, 1.0f, 0.2f);
  k->wqkv = bf16s(L * QKV * D, 0, s);
  k->wo = bf16s(L * D * c->H * c->HD, 0, s);
  k->ln2 = bf16s(L * D, 1.0f, 0.2f);
  k->w_gate = bf16s(L * F * D, 0, s);
  k->w_up = bf16s(L * F * D, 0, s);
  k->w_down = bf16s(L * D * F, 0, 1.0f / sqrtf((float)F));
  k->lnf = bf16s(D, 1.0f, 0.2f);
  k->head = c->tied ? NULL : bf16s(V * D, 0, s * 4);
  k->bqkv = c->qwen2 ? bf16s(L * QKV, 0, 0.5f) : NULL;
  nt = 0;
  add("model.embed_tokens.weight", k->embed, V, D);
  char n[96];
  for (int l = 0; l < L; l++) {
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
    const uint16_t *q = k->wqkv + (size_t)(l * QKV * D);
    add(NAME("input_layernorm.weight"), k->ln1 + l * D, D, 0);
    add(NAME("self_attn.q_proj.weight"), q, (int64_t)c->H * c->HD, D);
    add(NAME("self_attn.k_proj.weight"), q + (size_t)c->H * c->HD * D, (int64_t)c->KVH * c->HD, D);
    add(NAME("self_attn.v_proj.weight"), q + (size_t)(c->H + c->KVH) * c->HD * D,
        (int64_t)c->KVH * c->HD, D);
    if (k->bqkv) {
      const uint16_t *bq = k->bqkv + (size_t)(l * QKV);
      add(NAME("self_attn.q_proj.bias"), bq, (int64_t)c->H * c->HD, 0);
      add(NAME("self_attn.k_proj.bias"), bq + (size_t)c->H * c->HD, (int64_t)c->KVH * c->HD, 0);
      add(NAME("self_attn.v_proj.bias"), bq + (size_t)(c->H + c->KVH) * c->HD,
          (int64_t)c->KVH * c->HD, 0);
    }
    add(NAME("self_attn.o_proj.weight"), k->wo + (size_t)(l * D * c->H * c->HD), D,
        (int64_t)c->H * c->HD);
    add(NAME("post_attention_layernorm.weight"), k->ln2 + l * D, D, 0);
    add(NAME("mlp.gate_proj.weight"), k->w_gate + (size_t)(l * F * D), F, D);
    add(NAME("mlp.up_proj.weight"), k->w_up + (size_t)(l * F * D), F, D);
    add(NAME("mlp.down_proj.weight"), k->w_down + (size_t)(l * D * F), D, F);
#undef NAME
  }
  add("model.norm.weight", k->lnf, D, 0);
  if (k->head)
    add("lm_head.weight", k->head, V, D);
  char path[700];
  snprintf(path, sizeof path, "%s/model.safetensors", k->dir);
  st_write(path, tensors, nt, "\"__metadata__\": {\"format\": \"pt\"}");
  char cfg[2048], opt[512] = "";
  if (c->write_kv_heads)
    snprintf(opt + strlen(opt), sizeof opt - strlen(opt), "  \"num_key_value_heads\": %d,\n", c->KVH);
  if (c->write_head_dim)
    snprintf(opt + strlen(opt), sizeof opt - strlen(opt), "  \"head_dim\": %d,\n", c->HD);
  if (c->qwen2) /* as Qwen2's config.json files have them */
    snprintf(opt + strlen(opt), sizeof opt - strlen(opt), "  \"max_window_layers\": %d,\n"
             "  \"sliding_window\": 32768,\n  \"use_sliding_window\": false,\n"
             "  \"attention_dropout\": 0.0,\n", c->L);
  snprintf(cfg, sizeof cfg,
           "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
           "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
           "  \"num_attention_heads\": %d,\n%s  \"vocab_size\": %d,\n  \"rms_norm_eps\": %g,\n"
           "  \"rope_theta\": %.1f,\n  \"rope_scaling\": %s,\n  \"tie_word_embeddings\": %s,\n"
           "  \"torch_dtype\": \"bfloat16\"\n}\n",
           c->qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", c->qwen2 ? "qwen2" : "llama", c->D,
           c->F, c->L, c->H, opt, c->V, c->eps, c->theta,
           c->llama3 ? "{\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                       "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}"
                     : "null",
           c->tied ? "true" : "false");
  snprintf(path, sizeof path, "%s/config.json", k->dir);
  st_text(path, cfg);
}

static void free_ckpt(Ckpt *k) {
  free(k->embed), free(k->ln1), free(k->wqkv), free(k->wo), free(k->ln2), free(k->w_gate);
  free(k->w_up), free(k->w_down), free(k->lnf), free(k->head), free(k->bqkv);
  st_rmdir(k->dir);
}

/* ---- the reference ---- */

typedef struct Sampling {
  float temperature, top_p;
  int top_k;
  uint64_t seed;
} Sampling;

/* Decodes prompt `p` (n ids) for STEPS tokens with the reference: greedy, or sampled as mlk-run's
 * sequence `i` draws. out[STEPS] tokens and logits[STEPS][V]; *tie_at: the first token decided at
 * a near tie (a sampling margin or two close logits), STEPS if none. */
static void reference(const Cfg *c, const Ckpt *k, const int32_t *p, int n, const Sampling *smp,
                      int i, int32_t *out, float *logits, int *tie_at) {
  LlamaRefConfig rc = llama_ref_default_config();
  rc.dim = c->D, rc.ffn = c->F, rc.layers = c->L, rc.heads = c->H, rc.kv_heads = c->KVH;
  rc.head_dim = c->HD, rc.vocab = c->V, rc.eps = (float)c->eps, rc.rope_theta = c->theta;
  if (!c->llama3)
    rc.rope_factor = 1.0;
  rc.max_context = n + STEPS, rc.max_batch = 1;
  LlamaRefWeights w = {k->embed, k->ln1, k->wqkv, k->wo, k->ln2, k->w_gate, k->w_up, k->w_down,
                       k->lnf, k->head, k->bqkv};
  LlamaRefState *s = llama_ref_create(&rc, &w);
  if (!s)
    abort();
  float row[MAXV];
  *tie_at = STEPS;
  int32_t tok = p[0];
  for (int32_t pos = 0, g = 0; g < STEPS; pos++) {
    int32_t nx;
    if (llama_ref_step(s, 1, &tok, &pos, row, &nx)) {
      fprintf(stderr, "reference: %s\n", llama_ref_error(s));
      abort();
    }
    if (pos + 1 < n) {
      tok = p[pos + 1];
      continue;
    }
    double big = 0, margin = INFINITY;
    for (int v = 0; v < c->V; v++)
      big = fmax(big, fabs(row[v]));
    if (smp) {
      float u = mlk_sampling_uniform(smp->seed + (uint64_t)i, (uint64_t)pos);
      nx = mlk_ref_sample_row(row, u, c->V, smp->temperature, smp->top_k, smp->top_p, &margin);
      margin = margin < SAMPLE_TIE ? 0 : INFINITY;
    } else {
      for (int v = 0; v < c->V; v++) /* distance of the best to the runner-up */
        if (v != nx)
          margin = fmin(margin, (row[nx] - row[v]) / big);
    }
    if (margin < TIE && *tie_at == STEPS)
      *tie_at = g;
    memcpy(logits + (size_t)g * c->V, row, (size_t)c->V * sizeof *row);
    out[g++] = nx;
    tok = nx;
  }
  llama_ref_free(s);
}

/* ---- running mlk-run ---- */

static const char *mlk_run;
static const char *backend = "cpu"; /* MLK_BACKEND of mlk-run's runs: cpu, or gpu */

/* Runs mlk-run with `args` on the simulator: its exit status, stdout in out[], stderr in err[]. */
static int run(const char *args, char *out, size_t on, char *err, size_t en) {
  char eo[] = "/tmp/mlk_run_err_XXXXXX";
  int fd = mkstemp(eo);
  if (fd < 0)
    abort();
  close(fd);
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "MLK_BACKEND=%s '%s' %s 2>'%s'", backend, mlk_run, args, eo);
  FILE *p = popen(cmd, "r");
  if (!p)
    abort();
  size_t n = fread(out, 1, on - 1, p);
  out[n] = 0;
  int st = pclose(p);
  FILE *e = fopen(eo, "r");
  n = e ? fread(err, 1, en - 1, e) : 0;
  err[n] = 0;
  if (e)
    fclose(e);
  unlink(eo);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The ids of each line of mlk-run's stdout: ids[line][STEPS]; returns the lines. */
static int parse_ids(const char *out, int32_t ids[MAXP][STEPS]) {
  int lines = 0;
  const char *c = out;
  while (*c && lines < MAXP) {
    for (int j = 0; j < STEPS; j++) {
      char *end;
      ids[lines][j] = (int32_t)strtol(c, &end, 10);
      if (end == c)
        return -1;
      c = end;
    }
    if (*c != '\n')
      return -1;
    c++;
    lines++;
  }
  return *c ? -1 : lines;
}

static void prompt_args(char *buf, size_t n, int32_t p[MAXP][MAXLEN], const int *len, int np) {
  size_t o = 0;
  for (int i = 0; i < np; i++) {
    o += (size_t)snprintf(buf + o, n - o, " --prompt-ids ");
    for (int j = 0; j < len[i]; j++)
      o += (size_t)snprintf(buf + o, n - o, "%s%d", j ? "," : "", p[i][j]);
  }
}

/* Greedy and sampled runs of checkpoint c against the reference. */
static void test_config(const Cfg *c) {
  Ckpt k;
  make(c, &k, NULL);
  int32_t prompts[MAXP][MAXLEN];
  int len[MAXP] = {3, 1, 7};
  for (int i = 0; i < MAXP; i++)
    for (int j = 0; j < len[i]; j++)
      prompts[i][j] = (int32_t)(rt_next() % (uint64_t)c->V);
  char pa[1024], args[4096], out[8192], err[16384];
  prompt_args(pa, sizeof pa, prompts, len, MAXP);
  char lpath[700];
  snprintf(lpath, sizeof lpath, "%s/logits.f32", k.dir);

  /* greedy, with the logits */
  snprintf(args, sizeof args, "--model '%s'%s --steps %d --logits-out '%s'", k.dir, pa, STEPS, lpath);
  int rc = run(args, out, sizeof out, err, sizeof err);
  CHECK(rc == 0, "%s: mlk-run %s exited %d: %s", c->name, args, rc, err);
  CHECK_CONTAINS(err, "time to first token:");
  CHECK_CONTAINS(err, "ms per token");
  if (!strcmp(backend, "cpu"))
    CHECK_CONTAINS(err, "CPU simulator");
  else
    CHECK(!strstr(err, "CPU simulator"), "%s: mlk-run ran on the simulator: %s", c->name, err);
  int32_t ids[MAXP][STEPS];
  int lines = parse_ids(out, ids);
  CHECK(lines == MAXP, "%s: stdout '%s' is not %d lines of %d ids", c->name, out, MAXP, STEPS);
  static float got[MAXP * STEPS * MAXV];
  FILE *f = fopen(lpath, "rb");
  size_t nread = f ? fread(got, sizeof(float), (size_t)(MAXP * STEPS * c->V) + 1, f) : 0;
  if (f)
    fclose(f);
  CHECK(nread == (size_t)(MAXP * STEPS * c->V), "%s: --logits-out holds %zu floats, expected %d",
        c->name, nread, MAXP * STEPS * c->V);
  int compared = 0, ties = 0;
  double worst = 0;
  for (int i = 0; i < MAXP && lines == MAXP; i++) {
    int32_t want[STEPS];
    static float wl[STEPS * MAXV];
    int tie_at;
    reference(c, &k, prompts[i], len[i], NULL, i, want, wl, &tie_at);
    for (int g = 0; g < STEPS; g++) {
      if (g > tie_at) /* after a near tie the two may follow other tokens */
        break;
      const float *gl = got + (size_t)(i * STEPS + g) * c->V;
      double num = 0, den = 0;
      for (int v = 0; v < c->V; v++)
        num += (gl[v] - wl[g * c->V + v]) * (gl[v] - wl[g * c->V + v]), den += wl[g * c->V + v] * wl[g * c->V + v];
      double rel = sqrt(num / den);
      worst = fmax(worst, rel);
      CHECK(rel <= LOGITS_TOL, "%s: prompt %d token %d: logits rel L2 %.3g from the reference", c->name,
            i, g, rel);
      if (g == tie_at) {
        ties++;
        break;
      }
      CHECK(ids[i][g] == want[g], "%s: prompt %d token %d: %d, the reference %d", c->name, i, g,
            ids[i][g], want[g]);
      compared++;
    }
  }
  printf("%s: greedy: %d of %d tokens compared (%d near ties), logits rel L2 at most %.3g\n",
         c->name, compared, MAXP * STEPS, ties, worst);
  CHECK(compared >= MAXP * STEPS / 2, "%s: too few tokens compared", c->name);
  if (strcmp(backend, "cpu")) { /* the rest does not depend on the backend */
    free_ckpt(&k);
    return;
  }

  /* the same prompts from a file */
  char ppath[700];
  snprintf(ppath, sizeof ppath, "%s/prompts.txt", k.dir);
  FILE *pf = fopen(ppath, "w");
  fprintf(pf, "# prompts\n");
  for (int i = 0; i < MAXP; i++) {
    for (int j = 0; j < len[i]; j++)
      fprintf(pf, "%s%d", j ? (i == 1 ? "," : " ") : "", prompts[i][j]);
    fprintf(pf, "\n%s", i == 0 ? "\n" : "");
  }
  fclose(pf);
  char out2[8192];
  snprintf(args, sizeof args, "--model '%s' --prompts '%s' --steps %d", k.dir, ppath, STEPS);
  rc = run(args, out2, sizeof out2, err, sizeof err);
  CHECK(rc == 0 && !strcmp(out, out2), "%s: --prompts gave '%s' (exit %d: %s), --prompt-ids '%s'",
        c->name, out2, rc, err, out);

  /* more prompts than the model's batch of 64: the rest wait for rows, each still decoded as
   * alone (the reference's greedy tokens up to a near tie) */
  if (!strcmp(c->name, "llama3")) {
    enum { NMANY = 66 };
    static int32_t many[NMANY][5];
    int mlen[NMANY];
    pf = fopen(ppath, "w");
    for (int i = 0; i < NMANY; i++) {
      mlen[i] = 1 + (int)(rt_next() % 5);
      for (int j = 0; j < mlen[i]; j++) {
        many[i][j] = (int32_t)(rt_next() % (uint64_t)c->V);
        fprintf(pf, "%s%d", j ? "," : "", many[i][j]);
      }
      fprintf(pf, "\n");
    }
    fclose(pf);
    static char big[NMANY * STEPS * 8 + 64];
    char a64[4200];
    snprintf(a64, sizeof a64, "%s --batch 64", args);
    rc = run(a64, big, sizeof big, err, sizeof err);
    CHECK(rc == 0, "%s: %d prompts: exit %d: %s", c->name, NMANY, rc, err);
    CHECK_CONTAINS(err, "66 prompts");
    const char *line = big;
    int checked = 0;
    for (int i = 0; i < NMANY && rc == 0; i++) {
      int32_t want[STEPS];
      static float wl[STEPS * MAXV];
      int tie_at;
      reference(c, &k, many[i], mlen[i], NULL, i, want, wl, &tie_at);
      char *end;
      for (int g = 0; g < STEPS; g++) {
        long v = strtol(line, &end, 10);
        CHECK(end != line, "%s: %d prompts: line %d has fewer than %d ids", c->name, NMANY, i, STEPS);
        line = end;
        if (g < tie_at) {
          CHECK(v == want[g], "%s: %d prompts: prompt %d token %d is %ld, the reference %d", c->name,
                NMANY, i, g, v, want[g]);
          checked++;
        }
      }
    }
    printf("%s: %d prompts over a batch of 64: %d tokens equal to the reference\n", c->name, NMANY,
           checked);

    /* a prompt of 100 tokens: two runs with --batch 64, one by default (runs as wide as the
     * prompts: 128 rows), the same tokens */
    pf = fopen(ppath, "w");
    for (int j = 0; j < 100; j++)
      fprintf(pf, "%s%d", j ? "," : "", (int)(rt_next() % (uint64_t)c->V));
    fprintf(pf, "\n");
    fclose(pf);
    static char one[2][256];
    for (int w = 0; w < 2; w++) {
      char a2[4200];
      snprintf(a2, sizeof a2, "%s%s", args, w ? "" : " --batch 64");
      rc = run(a2, one[w], sizeof one[w], err, sizeof err);
      CHECK(rc == 0, "%s: a prompt of 100 tokens%s: exit %d: %s", c->name, w ? "" : " at --batch 64",
            rc, err);
      CHECK_CONTAINS(err, w ? "its first token from run 1;" : "its first token from run 2;");
    }
    CHECK(!strcmp(one[0], one[1]), "%s: a prompt of 100 tokens gave '%s' in two runs, '%s' in one",
          c->name, one[0], one[1]);
  }

  /* sampled, twice with one seed, once with another */
  Sampling smp = {c->temperature, 0.95f, 20, 11};
  snprintf(args, sizeof args, "--model '%s'%s --steps %d --temperature %g --top-k 20 --top-p 0.95 "
           "--seed 11", k.dir, pa, STEPS, (double)c->temperature);
  rc = run(args, out, sizeof out, err, sizeof err);
  CHECK(rc == 0, "%s: sampled run exited %d: %s", c->name, rc, err);
  lines = parse_ids(out, ids);
  CHECK(lines == MAXP, "%s: sampled stdout '%s'", c->name, out);
  compared = 0;
  for (int i = 0; i < MAXP && lines == MAXP; i++) {
    int32_t want[STEPS];
    static float wl[STEPS * MAXV];
    int tie_at;
    reference(c, &k, prompts[i], len[i], &smp, i, want, wl, &tie_at);
    for (int g = 0; g < STEPS && g < tie_at; g++, compared++)
      CHECK(ids[i][g] == want[g], "%s: sampled prompt %d token %d: %d, the reference %d", c->name,
            i, g, ids[i][g], want[g]);
  }
  printf("%s: sampled: %d of %d tokens compared\n", c->name, compared, MAXP * STEPS);
  rc = run(args, out2, sizeof out2, err, sizeof err);
  CHECK(rc == 0 && !strcmp(out, out2), "%s: the same seed gave '%s', then '%s'", c->name, out, out2);
  snprintf(args, sizeof args, "--model '%s'%s --steps %d --temperature %g --top-k 20 --top-p 0.95 "
           "--seed 12", k.dir, pa, STEPS, (double)c->temperature);
  rc = run(args, out2, sizeof out2, err, sizeof err);
  CHECK(rc == 0 && strcmp(out, out2), "%s: seeds 11 and 12 both gave '%s'", c->name, out);

  /* prefill: every prompt whole in the first run, or 2 or 1 positions a run: the same draws */
  snprintf(args, sizeof args, "--model '%s'%s --steps %d --temperature %g --top-k 20 --top-p 0.95 "
           "--seed 11", k.dir, pa, STEPS, (double)c->temperature);
  rc = run(args, out, sizeof out, err, sizeof err);
  CHECK(rc == 0, "%s: sampled run exited %d: %s", c->name, rc, err);
  CHECK_CONTAINS(err, "its first token from run 1;");
  for (int chunk = 1; chunk <= 2; chunk++) {
    char a2[4200], want_run[64];
    snprintf(a2, sizeof a2, "%s --prefill-chunk %d --warmup %d", args, chunk, chunk - 1);
    rc = run(a2, out2, sizeof out2, err, sizeof err);
    CHECK(rc == 0 && !strcmp(out, out2), "%s: --prefill-chunk %d gave '%s' (exit %d: %s), whole "
          "prompts '%s'", c->name, chunk, out2, rc, err, out);
    snprintf(want_run, sizeof want_run, "its first token from run %d;", chunk == 1 ? 7 : 4);
    CHECK_CONTAINS(err, want_run);
  }
  free_ckpt(&k);
}

/* mlk-run `args` must exit 1 with `needle` on stderr. */
static void refused(const char *args, const char *needle) {
  char out[4096], err[16384];
  int rc = run(args, out, sizeof out, err, sizeof err);
  CHECK(rc == 1, "mlk-run %s exited %d, expected 1 (stderr: %s)", args, rc, err);
  CHECK(strstr(err, needle) != NULL, "mlk-run %s: stderr '%s' does not say '%s'", args, err, needle);
}

static void test_refusals(void) {
  Cfg c = {"refusals", 32, 48, 1, 2, 1, 16, 50, 1e-5, 10000, 0, 1, 1, 1, 1.0f, 0};
  Ckpt k;
  make(&c, &k, NULL);
  char a[2048], path[700];
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1,2 --steps 2", k.dir);
  char out[4096], err[8192];
  CHECK(run(a, out, sizeof out, err, sizeof err) == 0, "the refusals' checkpoint runs: %s", err);
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1,50 --steps 2", k.dir);
  refused(a, "prompt 0: token id 50 is outside the vocabulary of 50 tokens");
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1,x --steps 2", k.dir);
  refused(a, "--prompt-ids: '1,x' is not a list of token ids");
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1 --steps 0", k.dir);
  refused(a, "--steps needs an integer in 1..16777216, got '0'");
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1 --steps 2 --temperature -1", k.dir);
  refused(a, "--temperature must be >= 0");
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1 --steps 2 --temperature 1 --top-k 2000", k.dir);
  refused(a, "--top-k needs an integer in 1..1024, got '2000'");
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1 --steps 2 --top-p 0", k.dir);
  refused(a, "--top-p must be in (0, 1], got 0");
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1 --steps 2 --frobnicate 3", k.dir);
  refused(a, "unknown option '--frobnicate'");
  snprintf(a, sizeof a, "--model '%s' --steps 2", k.dir);
  refused(a, "no prompt: give --prompt-ids or --prompts");
  snprintf(a, sizeof a, "--model '%s' --prompts '%s/none.txt' --steps 2", k.dir, k.dir);
  refused(a, "--prompts: cannot read");
  snprintf(a, sizeof a, "--model '%s/nowhere' --prompt-ids 1 --steps 2", k.dir);
  refused(a, "--model: cannot read '");
  /* config.json: another family, a required key missing, a key of the wrong kind */
  snprintf(path, sizeof path, "%s/config.json", k.dir);
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1 --steps 2", k.dir);
  st_text(path, "{\"model_type\": \"mistral\", \"hidden_size\": 32}");
  refused(a, "is model_type 'mistral', which mlk-run does not run (supported: llama, qwen2)");
  /* a Llama checkpoint (no q, k, v biases) said to be a Qwen2 */
  st_text(path, "{\"model_type\": \"qwen2\", \"hidden_size\": 32, \"intermediate_size\": 48, "
                "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
                "\"vocab_size\": 50, \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true}");
  refused(a, "tensor 'model.layers.0.self_attn.q_proj.bias' is missing");
  st_text(path, "{\"model_type\": \"llama\", \"hidden_size\": 32, \"num_hidden_layers\": 1, "
                "\"num_attention_heads\": 2, \"vocab_size\": 50, \"tie_word_embeddings\": true}");
  refused(a, "has no 'intermediate_size', which dim 'F' of config 'llama_cfg' takes its value from");
  st_text(path, "{\"model_type\": \"llama\", \"hidden_size\": \"32\", \"intermediate_size\": 48, "
                "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 50, "
                "\"tie_word_embeddings\": true}");
  refused(a, "'hidden_size' is a string, dim 'D' needs a number");
  st_text(path, "{\"model_type\": \"llama\", \"hidden_size\": 32, \"intermediate_size\": 48, "
                "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
                "\"vocab_size\": 50, \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": false}");
  refused(a, "tensor 'lm_head.weight' is missing"); /* untied, but the checkpoint ties */
  st_text(path, "{\"model_type\": \"llama\", \"hidden_size\": 32, \"intermediate_size\": 48, "
                "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
                "\"vocab_size\": 50, \"rms_norm_eps\": 1e-5, \"rope_scaling\": {\"rope_type\": "
                "\"linear\", \"factor\": 2.0}, \"tie_word_embeddings\": true}");
  refused(a, "rope_scaling of type 'linear' is not what the rope op computes");
  st_text(path, "{\"model_type\": \"llama\", ");
  refused(a, "--model: cannot read '");
  free_ckpt(&k);
}

/* config.json of checkpoint k with `from` replaced by `to` (which must be there). */
static void rewrite_config(const Ckpt *k, const char *from, const char *to) {
  char path[700], text[4096], out[4096];
  snprintf(path, sizeof path, "%s/config.json", k->dir);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
  if (f)
    fclose(f);
  text[n] = 0;
  const char *at = strstr(text, from);
  if (!at) {
    fprintf(stderr, "config.json of '%s' has no '%s'\n", k->dir, from);
    abort();
  }
  snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  st_text(path, out);
}

/* Qwen2's refusals over checkpoint c (tied): an untied config, whose model qwen2_untied reads an
 * lm_head.weight the checkpoint lacks, and the sliding window on. */
static void test_qwen2_refusals(const Cfg *c) {
  Ckpt k;
  make(c, &k, NULL);
  char a[2048];
  snprintf(a, sizeof a, "--model '%s' --prompt-ids 1,2 --steps 2", k.dir);
  rewrite_config(&k, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
  refused(a, "tensor 'lm_head.weight' is missing (param 'head' of model 'qwen2_untied'");
  rewrite_config(&k, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
  rewrite_config(&k, "\"use_sliding_window\": false", "\"use_sliding_window\": true");
  refused(a, "use_sliding_window is true, but op 'attention@nn.mlk:35[l=0]' of model 'qwen2' "
             "attends to every position");
  free_ckpt(&k);
}

int main(int argc, char **argv) {
  static const Cfg a = {"llama3", 64, 128, 2, 4, 2, 16, 96, 1e-5, 500000, 1, 1, 1, 1, 12.0f, 0};
  if (argc == 3 && !strcmp(argv[1], "--write-checkpoint")) {
    Ckpt k;
    rt_rng_state = 1;
    make(&a, &k, argv[2]);
    return 0;
  }
  if (argc < 2) {
    fprintf(stderr, "usage: test_mlk_run MLK_RUN [SEED [gpu]] | --write-checkpoint DIR\n");
    return 2;
  }
  mlk_run = argv[1];
  if (argc > 2)
    setenv("RT_SEED", argv[2], 1);
  rt_seed();
  rt_watchdog(600);
  if (argc > 3 && !strcmp(argv[3], "gpu")) {
    backend = "gpu";
    char out[4096], err[16384];
    if (run("--help", out, sizeof out, err, sizeof err) == 0) { /* mlk-run starts at all */
      Ckpt k;
      make(&a, &k, NULL);
      char args[1024];
      snprintf(args, sizeof args, "--model '%s' --prompt-ids 1 --steps 1", k.dir);
      int rc = run(args, out, sizeof out, err, sizeof err);
      free_ckpt(&k);
      if (rc != 0 && strstr(err, "no GPU")) {
        printf("SKIP: no GPU: %s", err);
        return 77;
      }
    }
  }
  static const Cfg b = {"plain-odd-untied", 72, 100, 2, 6, 2, 12, 101, 1e-6, 10000, 0, 0, 0, 1,
                        2.5f, 0};
  static const Cfg q = {"qwen2-odd-tied", 84, 136, 2, 7, 1, 12, 89, 1e-6, 1000000, 0, 1, 0, 1,
                        12.0f, 1};
  test_config(&a);
  test_config(&b);
  test_config(&q);
  if (!strcmp(backend, "cpu")) {
    test_refusals();
    test_qwen2_refusals(&q);
  }
  return rt_finish("mlk_run");
}
