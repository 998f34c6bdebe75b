/* test_tp.c: tensor parallelism on the simulator: the Llama family's model (stdlib/models/
 * llama.mlk) compiled for a mesh of 1, 2 and 4 ranks from one checkpoint (8 query heads over 4 kv
 * heads, so that 4 ranks hold one kv head each), the ranks loading their shards and run as a world.
 *
 *   - For batches 1, 3 and 5 and for the static and dynamic schedules, with the dependency checker
 *     on, a few decode steps (the same tokens fed at every step, whatever each world predicts) at
 *     2 and 4 ranks give the logits of 1 rank within reduction-order tolerance, and the same
 *     greedy tokens but at near ties: the sums of a layer's parts are added in another order
 *     (~1e-7), and where that moves a key or value across a bf16 rounding boundary of the KV
 *     cache, later positions see one bf16 step (2^-8) in one element (relative L2 up to ~3e-4
 *     seen); two worlds of the same ranks give bitwise equal logits (the sums go in rank order).
 *   - A description whose collective runs one segment late (a reader of its sum before it) is
 *     refused at world creation, naming the collective and the reader: a dropped cross-rank edge.
 *   - A world of the wrong size, a cut megakernel run through mlk_model_run, and a rank whose
 *     simulator drops an event (its checker fails) are clear errors naming what and which rank;
 *     the world then runs again.
 *   - Compiled with the allreduces inside the megakernel (--collectives=kernel: one launch, each
 *     rank's allreduce tasks read the others' operands after their notifies reached every rank),
 *     2 and 4 ranks give bitwise the logits of the cut megakernels (both sum in rank order), at
 *     batches 1, 3 and 5; a rank that drops the cross-rank event is caught by its checker.
 */
#include <math.h>

#include "mlkc.h"
#include "rt_test.h"
#include "st_write.h"

enum { D = 64, F = 128, L = 2, H = 8, KVH = 4, HD = 8, V = 96, QKV = (H + 2 * KVH) * HD };
enum { MAXT = 32, STEPS = 3, MAXB = 5 };

static StT tensors[MAXT];
static char names[MAXT][96];
static int nt;

/* A bf16 tensor `name` of rows x cols (cols 0: a vector), random around center within scale. */
static void add(const char *name, int64_t rows, int64_t cols, float center, float scale) {
  int64_t n = rows * (cols ? cols : 1);
  uint16_t *data = malloc((size_t)n * 2);
  if (!data || nt == MAXT)
    exit(2);
  for (int64_t i = 0; i < n; i++)
    data[i] = mlk_f32_to_bf16(center + rt_uniform(scale));
  snprintf(names[nt], sizeof names[nt], "%s", name);
  tensors[nt] = (StT){names[nt], "BF16", cols ? 2 : 1, {rows, cols}, data, (size_t)n * 2};
  nt++;
}

static void write_checkpoint(const char *dir) {
  float s = 0.125f;
  add("model.embed_tokens.weight", V, D, 0, 1.0f);
  for (int l = 0; l < L; l++) {
    char n[96];
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
    add(NAME("input_layernorm.weight"), D, 0, 1.0f, 0.2f);
    add(NAME("self_attn.q_proj.weight"), H * HD, D, 0, s);
    add(NAME("self_attn.k_proj.weight"), KVH * HD, D, 0, s);
    add(NAME("self_attn.v_proj.weight"), KVH * HD, D, 0, s);
    add(NAME("self_attn.o_proj.weight"), D, H * HD, 0, s);
    add(NAME("post_attention_layernorm.weight"), D, 0, 1.0f, 0.2f);
    add(NAME("mlp.gate_proj.weight"), F, D, 0, s);
    add(NAME("mlp.up_proj.weight"), F, D, 0, s);
    add(NAME("mlp.down_proj.weight"), D, F, 0, s);
#undef NAME
  }
  add("model.norm.weight", D, 0, 1.0f, 0.2f);
  char p[600];
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  st_write(p, tensors, nt, NULL);
  snprintf(p, sizeof p, "%s/config.json", dir);
  char text[1024];
  snprintf(text, sizeof text,
           "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": %d, "
           "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
           "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, "
           "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true}\n",
           D, F, L, H, KVH, HD, V);
  st_text(p, text);
}

static char dir[512], config[600], mlk[1024];

static Compiled compile_tp_as(int tp, bool in_kernel) {
  Compiled c;
  CompileRequest r = {.file = mlk, .model = "llama", .config = config, .mesh_axis = "tp",
                      .mesh_ranks = tp, .kernel_collectives = in_kernel};
  if (!compile_request(&r, &c)) {
    fprintf(stderr, "cannot compile for tp=%d\n", tp);
    exit(1);
  }
  return c;
}

static Compiled compile_tp(int tp) { return compile_tp_as(tp, false); }

/* A world of `tp` ranks of desc on simulators of this schedule (rank `bad`'s dropping event
 * `drop`, -1: none), its checkpoint loaded (the test ends when it cannot be made). */
static mlk_world *make_world(const MlkModelDesc *d, int tp, mlk_sim_schedule sched,
                             mlk_backend **bes, int bad, int drop) {
  for (int r = 0; r < tp; r++) {
    mlk_sim_options so = {.schedule = sched, .seed = 7 + (uint64_t)r,
                          .drop_event = r == bad ? drop + 1 : 0};
    CHECK_OK(mlk_backend_create_cpu(&so, &bes[r]));
  }
  mlk_world *w = NULL;
  mlk_model_options mo = {.kv_context = 16};
  mlk_status st = mlk_world_create(d, &(mlk_world_options){.nranks = tp, .backends = bes, .model = &mo}, &w);
  if (st != MLK_OK) {
    fprintf(stderr, "tp=%d world: %s\n", tp, mlk_last_error());
    exit(1);
  }
  for (int r = 0; r < tp; r++)
    CHECK_OK(mlk_model_load_checkpoint(mlk_world_model(w, r), dir, NULL));
  return w;
}

static void free_world(mlk_world *w, mlk_backend **bes, int tp) {
  mlk_world_free(w);
  for (int r = 0; r < tp; r++)
    mlk_backend_free(bes[r]);
}

/* STEPS decode steps of `batch` rows (row b at step s is fed token 3b + 7s + 1: the same in every
 * world, so that a near tie one world breaks otherwise cannot change what the next step sees) on
 * world w: the logits of every step into out[step][row][V]; the status of the first failure. */
static mlk_status decode(mlk_world *w, int batch, float *out) {
  int tp = mlk_world_size(w);
  mlk_model *m0 = mlk_world_model(w, 0);
  int t_tokens = mlk_model_find_tensor(m0, "tokens"), t_pos = mlk_model_find_tensor(m0, "pos");
  int t_logits = mlk_model_find_tensor(m0, "logits"), t_next = mlk_model_find_tensor(m0, "next");
  int32_t tokens[MAXB], pos[MAXB], next[MAXB];
  for (int b = 0; b < batch; b++)
    tokens[b] = (3 * b + 1) % V;
  mlk_status st;
  for (int s = 0; s < STEPS; s++) {
    for (int b = 0; b < batch; b++)
      pos[b] = s;
    for (int r = 0; r < tp; r++) {
      mlk_model *m = mlk_world_model(w, r);
      if ((st = mlk_model_set_batch(m, batch)) ||
          (st = mlk_model_set_tensor(m, t_tokens, tokens, sizeof(int32_t) * (size_t)batch)) ||
          (st = mlk_model_set_tensor(m, t_pos, pos, sizeof(int32_t) * (size_t)batch)))
        return st;
    }
    if ((st = mlk_world_run(w, 0)))
      return st;
    for (int r = 0; r < tp; r++) { /* every rank has the whole logits and the same tokens */
      float *lg = out + (size_t)s * MAXB * V;
      float other[MAXB * V];
      int32_t nr[MAXB];
      mlk_model *m = mlk_world_model(w, r);
      CHECK_OK(mlk_model_get_tensor(m, t_logits, r ? other : lg, sizeof(float) * (size_t)(batch * V)));
      CHECK_OK(mlk_model_get_tensor(m, t_next, r ? nr : next, sizeof(int32_t) * (size_t)batch));
      if (r)
        CHECK(!memcmp(other, lg, sizeof(float) * (size_t)(batch * V)) &&
                     !memcmp(nr, next, sizeof(int32_t) * (size_t)batch),
                 "tp=%d: rank %d's logits or tokens differ from rank 0's", tp, r);
    }
    for (int b = 0; b < batch; b++)
      tokens[b] = (3 * b + 7 * (s + 1) + 1) % V;
  }
  return MLK_OK;
}

/* A world of 2 ranks of d whose rank 1 skips its waits on event ev: the run must fail naming rank
 * 1 and `why` (rank 0, which waits for rank 1, gives up after 300 ms and comes second). */
static void expect_rank1_fails(const MlkModelDesc *d, int ev, const char *why, float *out) {
  mlk_backend *bes[2];
  CHECK(ev >= 0, "no event to drop (%s)", why);
  if (ev < 0)
    return;
  setenv("MLK_WAIT_TIMEOUT_MS", "300", 1);
  mlk_world *w = make_world(d, 2, MLK_SIM_STATIC, bes, 1, ev);
  mlk_status st = decode(w, 2, out);
  unsetenv("MLK_WAIT_TIMEOUT_MS");
  CHECK(st != MLK_OK && strstr(mlk_last_error(), "rank 1 of 2") && strstr(mlk_last_error(), why),
        "rank 1 dropping event '%s': %s (%s)", d->events[ev].name, mlk_status_name(st),
        mlk_last_error());
  printf("rank 1 drops '%s': %s\n", d->events[ev].name, mlk_last_error());
  free_world(w, bes, 2);
}

static double rel_l2(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return sqrt(num / (den > 0 ? den : 1));
}

static size_t argmax(const float *v, size_t n) {
  size_t k = 0;
  for (size_t i = 1; i < n; i++)
    if (v[i] > v[k])
      k = i;
  return k;
}

int main(void) {
  rt_watchdog(600);
  rt_seed();
  char *tmp = st_tmpdir();
  snprintf(dir, sizeof dir, "%s", tmp);
  snprintf(config, sizeof config, "%s/config.json", dir);
  const char *stdlib = getenv("MLKC_STDLIB");
  snprintf(mlk, sizeof mlk, "%s/models/llama.mlk", stdlib && *stdlib ? stdlib : mlkc_default_stdlib());
  write_checkpoint(dir);

  Compiled c1 = compile_tp(1), c2 = compile_tp(2), c4 = compile_tp(4);
  CHECK(c1.desc->ncollectives == 0 && c2.desc->ncollectives == 2 * L &&
               c4.desc->ncollectives == 2 * L && c2.desc->nkernels == 2 * L + 1,
           "collectives: %d / %d / %d, kernels at tp=2: %d", c1.desc->ncollectives,
           c2.desc->ncollectives, c4.desc->ncollectives, c2.desc->nkernels);

  static float ref[STEPS * MAXB * V], got[STEPS * MAXB * V], again[STEPS * MAXB * V];
  const int batches[] = {1, 3, 5};
  const mlk_sim_schedule scheds[] = {MLK_SIM_STATIC, MLK_SIM_DYNAMIC};
  mlk_backend *bes[4];
  double worst = 0;
  for (int si = 0; si < 2; si++)
    for (int bi = 0; bi < 3; bi++) {
      int batch = batches[bi];
      mlk_world *w1 = make_world(c1.desc, 1, scheds[si], bes, -1, -1);
      CHECK_OK(decode(w1, batch, ref));
      free_world(w1, bes, 1);
      for (int tp = 2; tp <= 4; tp *= 2) {
        const MlkModelDesc *d = tp == 2 ? c2.desc : c4.desc;
        mlk_world *w = make_world(d, tp, scheds[si], bes, -1, -1);
        CHECK_OK(decode(w, batch, got));
        free_world(w, bes, tp);
        w = make_world(d, tp, scheds[si], bes, -1, -1);
        CHECK_OK(decode(w, batch, again));
        free_world(w, bes, tp);
        for (int s = 0; s < STEPS; s++)
          for (int b = 0; b < batch; b++) {
            size_t off = ((size_t)s * MAXB + (size_t)b) * V;
            double e = rel_l2(got + off, ref + off, V);
            worst = e > worst ? e : worst;
            CHECK(e < 2e-3, "tp=%d %s batch %d step %d row %d: logits rel L2 %.3g from tp=1", tp,
                     si ? "dynamic" : "static", batch, s, b, e);
            size_t ka = argmax(got + off, V), kb = argmax(ref + off, V);
            double diff = 0;
            for (int i = 0; i < V; i++)
              diff = fmax(diff, fabs((double)got[off + (size_t)i] - ref[off + (size_t)i]));
            CHECK(ka == kb || fabs((double)ref[off + kb] - ref[off + ka]) <= 2 * diff,
                     "tp=%d batch %d step %d row %d: token %zu, tp=1's %zu, not a near tie", tp,
                     batch, s, b, ka, kb);
            CHECK(!memcmp(got + off, again + off, V * sizeof(float)),
                     "tp=%d batch %d step %d row %d: two worlds differ", tp, batch, s, b);
          }
      }
    }
  printf("tp=2 and tp=4 against tp=1: logits rel L2 at most %.3g; two worlds bitwise equal\n", worst);

  /* a collective moved one segment late: the next segment reads its sum before it exists */
  {
    MlkModelDesc bad = *c2.desc;
    MlkCollectiveDesc colls[2 * L];
    memcpy(colls, c2.desc->collectives, sizeof colls);
    colls[0].after++;
    bad.collectives = colls;
    mlk_world *w = NULL;
    mlk_status st = mlk_world_create(&bad, &(mlk_world_options){.nranks = 2}, &w);
    CHECK(st == MLK_ERR_INVALID && strstr(mlk_last_error(), "dropped cross-rank dependency") &&
                 strstr(mlk_last_error(), colls[0].name),
             "a late collective: %s (%s)", mlk_status_name(st), mlk_last_error());
    printf("late collective: %s\n", mlk_last_error());
  }
  /* a segment that is not the last of its megakernel followed by a new megakernel: the world
   * would run past the kernels (a heap overflow the fuzzer found) */
  {
    MlkModelDesc bad = *c2.desc;
    MlkKernelDesc ks[2 * L + 1];
    memcpy(ks, c2.desc->kernels, sizeof ks);
    ks[2 * L].segment = 0;
    ks[2 * L].nsegments = 1;
    bad.kernels = ks;
    char want[160];
    snprintf(want, sizeof want, "is segment %d of %d, but kernel %d is not segment %d of them",
             2 * L - 1, 2 * L + 1, 2 * L, 2 * L);
    mlk_world *w = NULL;
    mlk_status st = mlk_world_create(&bad, &(mlk_world_options){.nranks = 2}, &w);
    CHECK(st == MLK_ERR_INVALID && strstr(mlk_last_error(), want),
          "a megakernel cut short: %s (%s)", mlk_status_name(st), mlk_last_error());
    printf("cut short: %s\n", mlk_last_error());
  }
  /* the wrong world size; a cut megakernel run alone */
  {
    mlk_world *w = NULL;
    mlk_status st = mlk_world_create(c2.desc, &(mlk_world_options){.nranks = 3}, &w);
    CHECK(st == MLK_ERR_INVALID && strstr(mlk_last_error(), "mesh of 2 ranks") &&
                 strstr(mlk_last_error(), "world of 3"),
             "a world of 3 for 2 ranks: %s", mlk_last_error());
    printf("world size: %s\n", mlk_last_error());
    w = make_world(c2.desc, 2, MLK_SIM_STATIC, bes, -1, -1);
    st = mlk_model_run(mlk_world_model(w, 0), 0);
    CHECK(st == MLK_ERR_INVALID && strstr(mlk_last_error(), "mlk_world_run"),
             "a cut megakernel run alone: %s", mlk_last_error());
    printf("run alone: %s\n", mlk_last_error());
    free_world(w, bes, 2);
  }
  /* rank 1's simulator drops the first event of the second segment: its checker fails the run,
   * the message names the rank; after it, a world runs */
  {
    const MlkModelDesc *d = c2.desc;
    int ev = -1;
    for (int e = 0; e < d->nevents && ev < 0; e++)
      if (d->events[e].consumer >= d->kernels[1].first_op &&
          d->events[e].consumer < d->kernels[1].first_op + d->kernels[1].nops)
        ev = e;
    expect_rank1_fails(d, ev, "missing dependency", got);
    mlk_world *w = make_world(d, 2, MLK_SIM_STATIC, bes, -1, -1);
    CHECK_OK(decode(w, 2, got));
    free_world(w, bes, 2);
  }

  /* the allreduces inside the megakernel: bitwise the cut megakernels' logits */
  {
    Compiled k2 = compile_tp_as(2, true), k4 = compile_tp_as(4, true);
    CHECK(k2.desc->nkernels == 1 && k2.desc->ncollectives == 0, "in-kernel tp=2: %d kernels, %d "
          "collectives", k2.desc->nkernels, k2.desc->ncollectives);
    static float cut[STEPS * MAXB * V];
    for (int bi = 0; bi < 3; bi++)
      for (int tp = 2; tp <= 4; tp *= 2) {
        int batch = batches[bi];
        mlk_world *w = make_world(tp == 2 ? c2.desc : c4.desc, tp, MLK_SIM_STATIC, bes, -1, -1);
        CHECK_OK(decode(w, batch, cut));
        free_world(w, bes, tp);
        w = make_world(tp == 2 ? k2.desc : k4.desc, tp, MLK_SIM_STATIC, bes, -1, -1);
        CHECK(!strcmp(mlk_world_comm(w), "in the megakernel"), "comm: %s", mlk_world_comm(w));
        CHECK_OK(decode(w, batch, got));
        free_world(w, bes, tp);
        for (int s = 0; s < STEPS; s++)
          CHECK(!memcmp(got + (size_t)s * MAXB * V, cut + (size_t)s * MAXB * V,
                        (size_t)batch * V * sizeof(float)),
                "in-kernel tp=%d batch %d step %d: logits differ from the cut megakernels'", tp,
                batch, s);
      }
    printf("in the megakernel: tp=2 and tp=4 bitwise the cut megakernels' logits\n");
    /* rank 1 skips its waits on the cross-rank event of the first allreduce */
    const MlkModelDesc *d = k2.desc;
    int ev = -1;
    for (int e = 0; e < d->nevents && ev < 0; e++)
      if (d->events[e].ranks > 1)
        ev = e;
    expect_rank1_fails(d, ev, "missing dependency", got);
    /* the model alone is refused */
    mlk_world *w = make_world(d, 2, MLK_SIM_STATIC, bes, -1, -1);
    mlk_status st = mlk_model_run(mlk_world_model(w, 0), 0);
    CHECK(st == MLK_ERR_INVALID && strstr(mlk_last_error(), "inside the megakernel"),
          "an in-kernel allreduce run alone: %s", mlk_last_error());
    free_world(w, bes, 2);
    compiled_free(&k2);
    compiled_free(&k4);
  }

  compiled_free(&c1);
  compiled_free(&c2);
  compiled_free(&c4);
  st_rmdir(dir);
  for (int i = 0; i < nt; i++)
    free((void *)tensors[i].data);
  return rt_finish("test_tp");
}
