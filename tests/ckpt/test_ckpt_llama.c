/* test_ckpt_llama.c: a Llama compiled by mlkc (tests/ckpt/llama_ckpt.mlk, Hugging Face names)
 * loaded from a checkpoint written here as Hugging Face publishes one: two shards and
 * model.safetensors.index.json, q, k and v as separate tensors, some of them F16 or F32.
 *
 * The test builds what each param must hold on its own (wqkv of layer l = the rows of q, then k,
 * then v of layer l; per-layer tensors stacked; F16 and F32 rounded to bf16), loads the directory
 * through the generated llama_ckpt_load, and compares every param, read back, bit for bit. Then a
 * second model gets the same params through the llama_ckpt_set_* calls, and both decode the same
 * tokens for a few steps at batch 2: the logits must be bitwise equal. Checkpoints of a model with
 * a third layer or an untied lm_head.weight are refused: the model would ignore those tensors.
 */
#include "llama_ckpt.h"
#include "rt_test.h"
#include "st_write.h"

enum {
  D = LLAMA_CKPT_D,
  F = LLAMA_CKPT_F,
  L = LLAMA_CKPT_L,
  H = LLAMA_CKPT_H,
  KVH = LLAMA_CKPT_KVH,
  HD = LLAMA_CKPT_HD,
  V = LLAMA_CKPT_V,
  QKV = (H + 2 * KVH) * HD,
  STEPS = 5
};

/* What the params must hold. */
static uint16_t embed[V * D], ln1[L * D], wqkv[L * QKV * D], wo[L * D * H * HD], ln2[L * D],
    w_gate[L * F * D], w_up[L * F * D], w_down[L * D * F], lnf[D];

enum { MAXT = 64 };
static StT tensors[MAXT];
static char names[MAXT][96];
static void *datas[MAXT];
static int nt;

/* A checkpoint tensor `name` of `rows` x `cols` (cols 0: a vector of rows) in dtype `dt`, random
 * around `center` within `scale`, and the bf16 it must become at want[0 .. rows * cols). */
static void add(const char *name, const char *dt, int64_t rows, int64_t cols, float center,
                float scale, uint16_t *want) {
  int64_t n = rows * (cols ? cols : 1);
  size_t es = strcmp(dt, "F32") ? 2 : 4;
  uint8_t *data = malloc((size_t)n * es);
  if (!data || nt == MAXT) {
    fprintf(stderr, "out of room for '%s'\n", name);
    exit(2);
  }
  for (int64_t i = 0; i < n; i++) {
    if (!strcmp(dt, "BF16")) {
      uint16_t h = mlk_f32_to_bf16(center + rt_uniform(scale));
      memcpy(data + 2 * i, &h, 2);
      want[i] = h;
    } else if (!strcmp(dt, "F32")) {
      float f = center + rt_uniform(scale);
      memcpy(data + 4 * i, &f, 4);
      want[i] = mlk_f32_to_bf16(f);
    } else { /* F16 of magnitude 2^-6 .. 2^-2, either sign */
      uint16_t h = (uint16_t)((9 + rt_next() % 5) << 10 | rt_next() % 1024 | (rt_next() & 0x8000u));
      memcpy(data + 2 * i, &h, 2);
      want[i] = mlk_f32_to_bf16((float)st_f16_value(h));
    }
  }
  snprintf(names[nt], sizeof names[nt], "%s", name);
  tensors[nt] = (StT){names[nt], dt, cols ? 2 : 1, {rows, cols}, data, (size_t)n * es};
  datas[nt++] = data;
}

static void make_checkpoint(void) {
  float s = 1.0f / 8.0f; /* ~ 1/sqrt(D) */
  add("model.embed_tokens.weight", "BF16", V, D, 0, 1.0f, embed);
  for (int l = 0; l < L; l++) {
    char n[96];
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
    uint16_t *qkv = wqkv + (size_t)l * QKV * D;
    add(NAME("input_layernorm.weight"), "F32", D, 0, 1.0f, 0.2f, ln1 + l * D);
    add(NAME("self_attn.q_proj.weight"), "BF16", H * HD, D, 0, s, qkv);
    add(NAME("self_attn.k_proj.weight"), "F16", KVH * HD, D, 0, s, qkv + H * HD * D);
    add(NAME("self_attn.v_proj.weight"), "BF16", KVH * HD, D, 0, s, qkv + (H + KVH) * HD * D);
    add(NAME("self_attn.o_proj.weight"), "BF16", D, H * HD, 0, s, wo + (size_t)l * D * H * HD);
    add(NAME("post_attention_layernorm.weight"), "BF16", D, 0, 1.0f, 0.2f, ln2 + l * D);
    add(NAME("mlp.gate_proj.weight"), "BF16", F, D, 0, s, w_gate + (size_t)l * F * D);
    add(NAME("mlp.up_proj.weight"), "F32", F, D, 0, s, w_up + (size_t)l * F * D);
    add(NAME("mlp.down_proj.weight"), "F16", D, F, 0, s, w_down + (size_t)l * D * F);
#undef NAME
  }
  add("model.norm.weight", "F32", D, 0, 1.0f, 0.2f, lnf);
}

/* The checkpoint in dir: shard 1 holds the first `split` tensors, shard 2 the rest. */
static void write_checkpoint(const char *dir, int n, int split) {
  char p[600];
  const char *f1 = "model-00001-of-00002.safetensors", *f2 = "model-00002-of-00002.safetensors";
  snprintf(p, sizeof p, "%s/%s", dir, f1);
  st_write(p, tensors, split, "\"__metadata__\": {\"format\": \"pt\"}");
  snprintf(p, sizeof p, "%s/%s", dir, f2);
  st_write(p, tensors + split, n - split, "\"__metadata__\": {\"format\": \"pt\"}");
  const char *nm[MAXT], *fl[MAXT];
  for (int i = 0; i < n; i++) {
    nm[i] = tensors[i].name;
    fl[i] = i < split ? f1 : f2;
  }
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  st_index(p, nm, fl, n);
}

/* config.json of the model as transformers writes a Llama 3.2's, with `key` set to the JSON text
 * `value` instead (key NULL: as it is; value NULL: the key left out). */
static void write_config(const char *dir, const char *key, const char *value) {
  static const char *const kv[][2] = {
      {"architectures", "[\"LlamaForCausalLM\"]"}, {"hidden_size", "64"},
      {"intermediate_size", "128"}, {"num_hidden_layers", "2"}, {"num_attention_heads", "4"},
      {"num_key_value_heads", "2"}, {"head_dim", "16"}, {"vocab_size", "96"},
      {"rms_norm_eps", "1e-05"}, {"rope_theta", "500000.0"},
      {"rope_scaling", "{\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                       "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}"},
      {"tie_word_embeddings", "true"}, {"torch_dtype", "\"bfloat16\""},
      {"use_sliding_window", NULL}}; /* (NULL: not written unless a test sets it) */
  char text[2048], p[600];
  size_t n = (size_t)snprintf(text, sizeof text, "{\n");
  int first = 1;
  for (size_t i = 0; i < sizeof kv / sizeof *kv; i++) {
    const char *v = key && !strcmp(key, kv[i][0]) ? value : kv[i][1];
    if (!v)
      continue;
    n += (size_t)snprintf(text + n, sizeof text - n, "%s  \"%s\": %s", first ? "" : ",\n", kv[i][0], v);
    first = 0;
  }
  snprintf(text + n, sizeof text - n, "\n}\n");
  snprintf(p, sizeof p, "%s/config.json", dir);
  st_text(p, text);
}

/* config.json as transformers 5 writes it: RoPE in one rope_parameters object (theta and factor as
 * given), no top-level rope_theta or rope_scaling. */
static void write_config_v5(const char *dir, const char *theta, const char *factor) {
  char text[2048], p[600];
  snprintf(text, sizeof text,
           "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
           "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
           "\"num_key_value_heads\": 2, \"head_dim\": 16, \"vocab_size\": 96, "
           "\"rms_norm_eps\": 1e-05, \"rope_parameters\": {\"factor\": %s, "
           "\"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
           "\"original_max_position_embeddings\": 8192, \"rope_theta\": %s, "
           "\"rope_type\": \"llama3\"}, \"tie_word_embeddings\": true, \"dtype\": \"bfloat16\"}\n",
           factor, theta);
  snprintf(p, sizeof p, "%s/config.json", dir);
  st_text(p, text);
}

/* A load with config.json's `key` set to `value` is refused with a message containing `needle`. */
static void config_refused(llama_ckpt_model *m, const char *dir, const char *key, const char *value,
                           const char *needle) {
  write_config(dir, key, value);
  mlk_status st = llama_ckpt_load(m, dir);
  CHECK(st == MLK_ERR_INVALID, "config %s = %s: %s (%s)", key, value ? value : "(none)",
        mlk_status_name(st), mlk_last_error());
  CHECK_CONTAINS(mlk_last_error(), needle);
}

static void test_config(llama_ckpt_model *m, const char *dir) {
  char q[700];
  snprintf(q, sizeof q, "config '%s/config.json': ", dir);
  write_config(dir, NULL, NULL);
  CHECK_OK(llama_ckpt_load(m, dir));
  /* keys that may be missing: transformers' defaults, or nothing to check */
  write_config(dir, "head_dim", NULL);
  CHECK_OK(llama_ckpt_load(m, dir));
  write_config(dir, "rope_theta", NULL);
  CHECK_OK(llama_ckpt_load(m, dir));
  config_refused(m, dir, "num_hidden_layers", "16", q);
  config_refused(m, dir, "num_hidden_layers", "16",
                 "num_hidden_layers is 16, but model 'llama_ckpt' has 2 (cache 'kv')");
  config_refused(m, dir, "num_key_value_heads", "8",
                 "num_key_value_heads is 8, but model 'llama_ckpt' has 2 (cache 'kv')");
  config_refused(m, dir, "num_key_value_heads", NULL, /* defaults to the 4 heads */
                 "num_key_value_heads is 4, but model 'llama_ckpt' has 2");
  config_refused(m, dir, "num_attention_heads", "8",
                 "num_attention_heads is 8, but model 'llama_ckpt' has 4 (op 'attention@nn.mlk:");
  config_refused(m, dir, "head_dim", "32", "head_dim is 32, but model 'llama_ckpt' has 16");
  config_refused(m, dir, "hidden_size", "128",
                 "hidden_size is 128, but model 'llama_ckpt' has 64 (op 'gather@llama_ckpt.mlk:");
  config_refused(m, dir, "vocab_size", "128256",
                 "vocab_size is 128256, but model 'llama_ckpt' has 96 (tensor 'embed')");
  config_refused(m, dir, "rms_norm_eps", "1e-06",
                 "rms_norm_eps is 1e-06, but model 'llama_ckpt' has 9.99999975e-06 (op "
                 "'matvec@nn.mlk:");
  config_refused(m, dir, "rope_theta", "10000.0",
                 "rope_theta is 10000, but model 'llama_ckpt' has 500000 (op 'rope@nn.mlk:");
  config_refused(m, dir, "rope_scaling", "null",
                 "rope_scaling is none, but op 'rope@nn.mlk:28[l=0]' of model 'llama_ckpt' applies "
                 "Llama 3 scaling");
  config_refused(m, dir, "rope_scaling",
                 "{\"factor\": 8.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                 "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}",
                 "rope_scaling.factor is 8, but model 'llama_ckpt' has 32");
  config_refused(m, dir, "rope_scaling",
                 "{\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                 "\"original_max_position_embeddings\": 4096, \"rope_type\": \"llama3\"}",
                 "rope_scaling.original_max_position_embeddings is 4096, but model 'llama_ckpt' "
                 "has 8192");
  config_refused(m, dir, "rope_scaling", "{\"factor\": 32.0, \"type\": \"yarn\"}",
                 "rope_scaling of type 'yarn' is not what the rope op computes");
  config_refused(m, dir, "rope_scaling", "{\"factor\": 32.0, \"rope_type\": \"llama3\"}",
                 "rope_scaling (llama3) has no low_freq_factor");
  config_refused(m, dir, "rope_scaling", "[]", "rope_scaling is an array without a rope_type");
  /* transformers 5's layout is checked as the older one */
  write_config_v5(dir, "500000.0", "32.0");
  CHECK_OK(llama_ckpt_load(m, dir));
  write_config_v5(dir, "10000.0", "32.0");
  CHECK_ST(llama_ckpt_load(m, dir), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "rope_theta is 10000, but model 'llama_ckpt' has 500000");
  write_config_v5(dir, "500000.0", "8.0");
  CHECK_ST(llama_ckpt_load(m, dir), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "rope_scaling.factor is 8, but model 'llama_ckpt' has 32");
  config_refused(m, dir, "num_attention_heads", "4.0",
                 "num_attention_heads is a number, expected an integer");
  config_refused(m, dir, "rms_norm_eps", "\"1e-5\"", "rms_norm_eps is a string, expected a number");
  /* Qwen2's sliding window: off is what the attention computes, on is refused */
  write_config(dir, "use_sliding_window", "false");
  CHECK_OK(llama_ckpt_load(m, dir));
  config_refused(m, dir, "use_sliding_window", "true",
                 "use_sliding_window is true, but op 'attention@nn.mlk:35[l=0]' of model "
                 "'llama_ckpt' attends to every position (no sliding window)");
  config_refused(m, dir, "use_sliding_window", "1", "use_sliding_window is an integer, expected "
                 "true or false");
  char p[600];
  snprintf(p, sizeof p, "%s/config.json", dir);
  st_text(p, "{\"hidden_size\": 64,");
  CHECK_ST(llama_ckpt_load(m, dir), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "config.json': the file is not valid JSON");
  /* options: no config at all, or one given by path (which must exist) */
  mlk_load_options o = {.config = ""};
  CHECK_OK(mlk_model_load_checkpoint(m, dir, &o));
  o.config = "/no/such/config.json";
  CHECK_ST(mlk_model_load_checkpoint(m, dir, &o), MLK_ERR_IO);
  CHECK_CONTAINS(mlk_last_error(), "fopen(config '/no/such/config.json') failed");
  remove(p); /* none next to it: nothing to check */
  CHECK_OK(llama_ckpt_load(m, dir));
}

static void check_param(llama_ckpt_model *m, const char *name, const uint16_t *want, size_t n) {
  int t = mlk_model_find_tensor(m, name);
  uint16_t *got = calloc(n, 2);
  CHECK(t >= 0 && got, "param '%s'", name);
  if (t < 0 || !got)
    return;
  CHECK_OK(mlk_model_get_tensor(m, t, got, n * 2));
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; i++)
    if (got[i] != want[i] && !bad++)
      first = i;
  CHECK(bad == 0, "param '%s': %zu of %zu elements differ, the first at %zu: 0x%04x, expected 0x%04x",
        name, bad, n, first, got[first], want[first]);
  free(got);
}

static void set_all(llama_ckpt_model *m) {
  CHECK_OK(llama_ckpt_set_embed(m, embed));
  CHECK_OK(llama_ckpt_set_ln1(m, ln1));
  CHECK_OK(llama_ckpt_set_wqkv(m, wqkv));
  CHECK_OK(llama_ckpt_set_wo(m, wo));
  CHECK_OK(llama_ckpt_set_ln2(m, ln2));
  CHECK_OK(llama_ckpt_set_w_gate(m, w_gate));
  CHECK_OK(llama_ckpt_set_w_up(m, w_up));
  CHECK_OK(llama_ckpt_set_w_down(m, w_down));
  CHECK_OK(llama_ckpt_set_lnf(m, lnf));
}

/* Usage: test_ckpt_llama [gpu]: with "gpu", both models on the GPU (exit 77 without one). */
int main(int argc, char **argv) {
  rt_watchdog(120);
  rt_seed();
  mlk_sim_options so = {.threads = 4};
  mlk_backend *be = NULL;
  llama_ckpt_model *a = NULL, *b = NULL;
  if (argc > 1 && !strcmp(argv[1], "gpu")) {
    if (mlk_backend_create(MLK_BACKEND_GPU, &be) != MLK_OK) {
      printf("SKIP: %s\n", mlk_last_error());
      return 77;
    }
    printf("backend: %s\n", mlk_backend_name(be));
  } else {
    CHECK_OK(mlk_backend_create_cpu(&so, &be));
  }
  const char *dir = st_tmpdir();
  make_checkpoint();
  write_checkpoint(dir, nt, 1 + 9); /* the embedding and layer 0, then the rest */
  if (be) {
    CHECK_OK(llama_ckpt_create(be, &a));
    CHECK_OK(llama_ckpt_create(be, &b));
  }
  if (!a || !b)
    return rt_finish("ckpt_llama");
  CHECK_OK(llama_ckpt_load(a, dir));
  check_param(a, "embed", embed, V * D);
  check_param(a, "ln1", ln1, L * D);
  check_param(a, "wqkv", wqkv, (size_t)L * QKV * D);
  check_param(a, "wo", wo, (size_t)L * D * H * HD);
  check_param(a, "ln2", ln2, L * D);
  check_param(a, "w_gate", w_gate, (size_t)L * F * D);
  check_param(a, "w_up", w_up, (size_t)L * F * D);
  check_param(a, "w_down", w_down, (size_t)L * D * F);
  check_param(a, "lnf", lnf, D);

  /* the loaded model decodes exactly as one whose params were set */
  set_all(b);
  CHECK_OK(mlk_model_set_batch(a, 2));
  CHECK_OK(mlk_model_set_batch(b, 2));
  int32_t tok[2] = {5, 77}, pos[2];
  float la[2 * V], lb[2 * V];
  for (int step = 0; step < STEPS; step++) {
    pos[0] = pos[1] = step;
    llama_ckpt_model *ms[2] = {a, b};
    for (int k = 0; k < 2; k++) {
      CHECK_OK(llama_ckpt_set_tokens(ms[k], tok));
      CHECK_OK(llama_ckpt_set_pos(ms[k], pos));
      CHECK_OK(llama_ckpt_decode(ms[k]));
    }
    CHECK_OK(llama_ckpt_get_logits(a, la));
    CHECK_OK(llama_ckpt_get_logits(b, lb));
    CHECK(!memcmp(la, lb, sizeof la), "step %d: the logits of the loaded model differ", step);
    int32_t next[2];
    CHECK_OK(llama_ckpt_get_next(a, next));
    tok[0] = next[0];
    tok[1] = next[1];
  }

  test_config(b, dir);

  /* a checkpoint with more than the model binds: a third layer, an untied LM head */
  static uint16_t scratch[D];
  add("model.layers.2.input_layernorm.weight", "BF16", D, 0, 1.0f, 0.2f, scratch);
  write_checkpoint(dir, nt, 10);
  CHECK_ST(llama_ckpt_load(b, dir), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "tensor 'model.layers.2.input_layernorm.weight' is bound to no "
                                   "param of model 'llama_ckpt'");
  tensors[nt - 1].name = "lm_head.weight";
  tensors[nt - 1].rank = 2;
  tensors[nt - 1].shape[0] = 1; /* (any shape: it is refused before its shape matters) */
  tensors[nt - 1].shape[1] = D;
  write_checkpoint(dir, nt, 10);
  CHECK_ST(llama_ckpt_load(b, dir), MLK_ERR_INVALID);
  CHECK_CONTAINS(mlk_last_error(), "tensor 'lm_head.weight' is bound to no param");

  llama_ckpt_free(a);
  llama_ckpt_free(b);
  mlk_backend_free(be);
  for (int i = 0; i < nt; i++)
    free(datas[i]);
  st_rmdir(dir);
  return rt_finish("ckpt_llama");
}
