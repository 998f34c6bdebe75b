/* mlk_run.c: mlk-run, text generation from a Hugging Face checkpoint directory in one command.
 *
 *   mlk-run --model DIR --prompt-ids 1,2,3 --steps N [--temperature T --top-k K --top-p P
 *           --seed S] [--logits-out FILE]
 *
 * DIR is a checkpoint as published: config.json and model.safetensors (or shards with their
 * index). mlk-run reads the family from config.json (model_type: llama or qwen2), compiles the
 * family's model (STDLIB/models/<family>.mlk) in-process with its dims bound from config.json, as
 * mlkc --config would (no C compiler, no generated files; PTX only when the backend is a GPU), loads the
 * checkpoint, and decodes every prompt as a sequence of one batch over the runtime's paged KV
 * cache: a prompt goes in as consecutive rows of a run, one position each (prefill; a prompt
 * longer than the rows left takes several runs), then each run feeds the token the previous one
 * produced, and a sequence leaves the batch when it has its N tokens (continuous batching).
 * Sampling is per sequence at run time (greedy unless --temperature > 0; prompt i draws from seed
 * S + i). Without a GPU the runtime runs the CPU simulator.
 *
 * stdout: the generated ids, one line per prompt. stderr: the backend, the model, and the timings
 * (time to first token, ms per decode step). --logits-out: for each prompt in order, N rows of
 * vocabulary f32 (little-endian): the logits that produced each generated token, the first of
 * them at the prompt's last position.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "mlk.h"
#include "mlkc.h"

#define MAX_PROMPTS 4096
/* the most rows a run gets by default: prompts longer together are prefilled over several runs */
#define PREFILL_ROWS 4096
#define MAX_RANKS 64 /* --tp */

/* The world of a multi-process run, told when this process stops so that the others do not wait
 * for it. */
static mlk_world *the_world;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "mlk-run: error: %s\n", msg);
  mlk_world_abort(the_world, msg);
  exit(1);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: mlk-run --model DIR (--prompt-ids IDS | --prompts FILE)... --steps N [options]\n"
          "\n"
          "Generates N tokens after each prompt with the Hugging Face checkpoint in DIR\n"
          "(config.json and model.safetensors, or shards with model.safetensors.index.json),\n"
          "on the GPU, or on the CPU simulator without one.\n"
          "\n"
          "  --model DIR         the checkpoint directory; its config.json says the family and\n"
          "                      the sizes (supported: llama, qwen2)\n"
          "  --prompt-ids IDS    a prompt as token ids, comma-separated (1,2,3); repeat it for\n"
          "                      several prompts, which run as one batch (more than the\n"
          "                      model's batch wait for rows)\n"
          "  --prompts FILE      prompts from a file, one per line (ids separated by commas or\n"
          "                      spaces; empty lines and lines starting with # are skipped)\n"
          "  --steps N           tokens to generate per prompt (>= 1)\n"
          "  --temperature T     sample at temperature T > 0 (default 0: greedy, the argmax)\n"
          "  --top-k K           with T > 0: the K most likely tokens, 1..1024 (default 50)\n"
          "  --top-p P           with T > 0: then the fewest whose probability reaches P, (0, 1]\n"
          "                      (default 1: no cut)\n"
          "  --seed S            with T > 0: prompt i draws from seed S + i (default 0)\n"
          "  --logits-out FILE   write the f32 logits behind every generated token: per prompt,\n"
          "                      N rows of the vocabulary (the first at the prompt's last\n"
          "                      position)\n"
          "  --context N         tokens a sequence may hold (default: the longest prompt + N)\n"
          "  --prefill-chunk N   the most positions of a prompt one run takes (default: the\n"
          "                      model's batch; 1: a token per run)\n"
          "  --warmup N          run the whole generation N times untimed first (default 0)\n"
          "  --repeat N          then N timed times: the timings are the medians (default 1)\n"
          "  --batch N           rows of a run (decode rows and prompt positions together):\n"
          "                      the model is compiled for batches up to N (default: every\n"
          "                      prompt's tokens, in steps of 64, up to 4096; at least the\n"
          "                      family's, 64), so that the prompts are prefilled in one run\n"
          "  --tp N              tensor parallelism over N ranks (the family's mesh axis tp): N\n"
          "                      models, each with its part of the sharded weights, run as one\n"
          "                      world, the sums all-reduced between them (default 1)\n"
          "  --collectives C     with --tp: cut (default: the megakernel ends at each allreduce\n"
          "                      and the sum runs between launches) or kernel (the sum is an op\n"
          "                      of the megakernel over the ranks' memory: a GPU per rank)\n"
          "                      A world of processes, a rank each: mpirun -n N mlk-run ..., or\n"
          "                      MLK_WORLD_SIZE=N MLK_RANK=r MLK_RENDEZVOUS=FILE mlk-run ... per\n"
          "                      rank (rank 0 prints the ids)\n"
          "  --mlk FILE          compile this .mlk instead of the family's (its dims bound to\n"
          "                      the config.json as the family's are)\n"
          "  --help              print this help\n"
          "\n"
          "stdout: the generated ids, one line per prompt; stderr: what ran and the timings.\n"
          "MLK_BACKEND=cpu forces the simulator (docs/runtime.md lists the environment).\n");
}

/* ---- arguments ---- */

typedef struct Prompt {
  int32_t *ids;
  int64_t n;
} Prompt;

typedef struct Args {
  const char *model_dir, *logits_out, *mlk;
  Prompt prompts[MAX_PROMPTS];
  int nprompts;
  int64_t steps, context;
  int64_t chunk;      /* --prefill-chunk: most rows a prompt takes in a run (0: the batch) */
  int64_t warmup;     /* --warmup: untimed generations first */
  int64_t repeat;     /* --repeat: timed generations (the timings are their medians) */
  int64_t batch;      /* --batch: rows of a run, the model's batch dim's maximum (0: as written) */
  int64_t tp;         /* --tp: ranks of the mesh axis tp (0: as written, 1) */
  int in_kernel;      /* --collectives kernel: the allreduces inside the megakernel */
  double temperature, top_p;
  int64_t top_k;
  uint64_t seed;
  int sampling_flags; /* --top-k, --top-p or --seed given */
} Args;

/* A whole decimal integer in [lo, hi], or death naming the option. */
static int64_t parse_int(const char *opt, const char *s, int64_t lo, int64_t hi) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi)
    die("%s needs an integer in %lld..%lld, got '%s'", opt, (long long)lo, (long long)hi, s);
  return v;
}

static double parse_num(const char *opt, const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !isfinite(v))
    die("%s needs a number, got '%s'", opt, s);
  return v;
}

/* Token ids separated by commas or blanks; `what` names the prompt in messages. */
static void parse_ids(Args *a, const char *s, const char *what) {
  if (a->nprompts == MAX_PROMPTS)
    die("more than %d prompts", MAX_PROMPTS);
  Prompt *p = &a->prompts[a->nprompts];
  size_t cap = 16;
  p->ids = malloc(cap * sizeof *p->ids);
  p->n = 0;
  if (!p->ids)
    die("out of memory");
  const char *c = s;
  while (*c) {
    while (*c == ',' || *c == ' ' || *c == '\t' || *c == '\r' || *c == '\n')
      c++;
    if (!*c)
      break;
    char *end;
    errno = 0;
    long long v = strtoll(c, &end, 10);
    if (end == c || errno || v < 0 || v > INT32_MAX ||
        (*end && *end != ',' && *end != ' ' && *end != '\t' && *end != '\r' && *end != '\n'))
      die("%s: '%s' is not a list of token ids (non-negative integers separated by commas)", what,
          s);
    if ((size_t)p->n == cap && !(p->ids = realloc(p->ids, (cap *= 2) * sizeof *p->ids)))
      die("out of memory");
    p->ids[p->n++] = (int32_t)v;
    c = end;
  }
  if (p->n == 0)
    die("%s: an empty prompt", what);
  a->nprompts++;
}

static void read_prompts(Args *a, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    die("--prompts: cannot read '%s': %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lineno = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    const char *c = line;
    while (*c == ' ' || *c == '\t')
      c++;
    if (*c == '#' || *c == '\n' || *c == '\r' || !*c)
      continue;
    char what[512];
    snprintf(what, sizeof what, "--prompts '%s' line %d", path, lineno);
    parse_ids(a, line, what);
  }
  free(line);
  fclose(f);
}

static void parse_args(int argc, char **argv, Args *a) {
  a->steps = -1;
  a->top_k = 50;
  a->top_p = 1.0;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      usage(stdout);
      exit(0);
    }
    if (strncmp(o, "--", 2))
      die("unexpected argument '%s' (see mlk-run --help)", o);
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    static const char *const known[] = {"--model", "--prompt-ids", "--prompts", "--steps",
                                        "--temperature", "--top-k", "--top-p", "--seed",
                                        "--logits-out", "--context", "--mlk", "--prefill-chunk",
                                        "--warmup", "--repeat", "--batch", "--tp", "--collectives"};
    int k = -1;
    for (int j = 0; j < (int)(sizeof known / sizeof *known); j++)
      if (!strcmp(o, known[j]))
        k = j;
    if (k < 0)
      die("unknown option '%s' (see mlk-run --help)", o);
    if (!v)
      die("%s needs a value", o);
    i++;
    switch (k) {
    case 0: a->model_dir = v; break;
    case 1: parse_ids(a, v, "--prompt-ids"); break;
    case 2: read_prompts(a, v); break;
    case 3: a->steps = parse_int(o, v, 1, 1 << 24); break;
    case 4:
      a->temperature = parse_num(o, v);
      if (a->temperature < 0)
        die("--temperature must be >= 0 (0: greedy), got %s", v);
      break;
    case 5: a->top_k = parse_int(o, v, 1, MLK_SAMPLE_MAX_TOP_K), a->sampling_flags = 1; break;
    case 6:
      a->top_p = parse_num(o, v), a->sampling_flags = 1;
      if (!(a->top_p > 0 && a->top_p <= 1))
        die("--top-p must be in (0, 1], got %s", v);
      break;
    case 7: a->seed = (uint64_t)parse_int(o, v, 0, INT64_MAX), a->sampling_flags = 1; break;
    case 8: a->logits_out = v; break;
    case 9: a->context = parse_int(o, v, 1, 1 << 24); break;
    case 10: a->mlk = v; break;
    case 11: a->chunk = parse_int(o, v, 1, 1 << 24); break;
    case 12: a->warmup = parse_int(o, v, 0, 1000); break;
    case 13: a->repeat = parse_int(o, v, 1, 1000); break;
    case 14: a->batch = parse_int(o, v, 1, 1 << 16); break;
    case 15: a->tp = parse_int(o, v, 1, MAX_RANKS); break;
    default:
      if (strcmp(v, "kernel") && strcmp(v, "cut"))
        die("--collectives needs kernel or cut, got '%s'", v);
      a->in_kernel = !strcmp(v, "kernel");
      break;
    }
  }
  if (!a->model_dir)
    die("no --model DIR (see mlk-run --help)");
  if (!a->nprompts)
    die("no prompt: give --prompt-ids or --prompts");
  if (a->steps < 0)
    die("no --steps N");
  if (a->sampling_flags && a->temperature == 0)
    fprintf(stderr, "mlk-run: note: --top-k, --top-p and --seed only matter with --temperature > 0 "
            "(greedy decoding takes the argmax)\n");
}

/* ---- the model ---- */

typedef struct Family {
  const char *model_type; /* config.json "model_type" */
  const char *file;       /* STDLIB/models/<file> */
  const char *tied;       /* the model whose LM head is the embedding (tie_word_embeddings) */
  const char *untied;     /* the model with its own lm_head.weight */
} Family;

/* transformers' LlamaConfig and Qwen2Config both untie by default (tie_word_embeddings false) */
static const Family families[] = {{"llama", "llama.mlk", "llama", "llama_untied"},
                                  {"qwen2", "qwen2.mlk", "qwen2", "qwen2_untied"}};

/* "llama, qwen2": the model types mlk-run runs, for messages. */
static const char *supported(void) {
  static char list[256];
  size_t n = 0;
  for (size_t i = 0; i < sizeof families / sizeof *families; i++)
    n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", families[i].model_type);
  return list;
}

/* The family's .mlk and the model in it for the checkpoint's config.json. */
static void pick_family(const char *config, const char **file, const char **model) {
  json_error_t je;
  json_t *root = json_load_file(config, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    die("--model: cannot read '%s': %s", config, je.text);
  if (!json_is_object(root))
    die("--model: '%s' is not a JSON object", config);
  const char *type = json_string_value(json_object_get(root, "model_type"));
  if (!type)
    die("--model: '%s' has no model_type (a Hugging Face config.json says \"model_type\": "
        "\"llama\")", config);
  const Family *fam = NULL;
  for (size_t i = 0; i < sizeof families / sizeof *families; i++)
    if (!strcmp(type, families[i].model_type))
      fam = &families[i];
  if (!fam)
    die("--model: '%s' is model_type '%s', which mlk-run does not run (supported: %s)", config,
        type, supported());
  *file = fam->file;
  *model = json_is_true(json_object_get(root, "tie_word_embeddings")) ? fam->tied : fam->untied;
  json_decref(root);
}

static int find(const mlk_model *m, const char *name) {
  int t = mlk_model_find_tensor(m, name);
  if (t < 0)
    die("model '%s' has no tensor '%s': mlk-run needs inputs tokens and pos, outputs logits and "
        "next", mlk_model_desc(m)->name, name);
  return t;
}

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != MLK_OK)                                                                          \
      die("%s", mlk_last_error());                                                                 \
  } while (0)

/* ---- generation ---- */

/* The median of v[0..n-1] (sorts v); 0 for n = 0. */
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
static double median(double *v, int n) {
  if (n <= 0)
    return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct Row {
  mlk_seq *seq[MAX_RANKS]; /* its sequence on each rank's model (the same pages on every rank) */
  int64_t fed;       /* tokens fed so far (prompt, then generated) */
  int64_t generated; /* tokens generated so far */
  int32_t *out;      /* the generated ids */
  double first_ms;   /* when its first token was there */
  int64_t first_run; /* the run (1, 2, ...) that gave it */
} Row;

int main(int argc, char **argv) {
  static Args a;
  parse_args(argc, argv, &a);
  char config[4096];
  snprintf(config, sizeof config, "%s/config.json", a.model_dir);
  const char *family_file, *model_name;
  pick_family(config, &family_file, &model_name);
  char mlk[4096];
  if (a.mlk)
    snprintf(mlk, sizeof mlk, "%s", a.mlk);
  else
    snprintf(mlk, sizeof mlk, "%s/models/%s",
             getenv("MLKC_STDLIB") && *getenv("MLKC_STDLIB") ? getenv("MLKC_STDLIB")
                                                             : mlkc_default_stdlib(),
             family_file);

  /* one rank of a world of processes (mpirun, or MLK_WORLD_SIZE and MLK_RANK)? */
  mlk_world_options wo = {0};
  int procs = mlk_world_options_from_env(&wo);
  if (procs < 0)
    die("%s", mlk_last_error());
  if (procs && a.tp && a.tp != wo.nranks)
    die("--tp %lld, but the environment makes a world of %d processes", (long long)a.tp, wo.nranks);
  if (procs)
    a.tp = wo.nranks;
  mlk_backend *be;
  CHECK(mlk_backend_create(MLK_BACKEND_AUTO, &be));
  /* a rank of a world of processes on a GPU takes the GPU of its place on the host */
  int ngpus = mlk_backend_is_gpu(be) ? mlk_gpu_count() : 0;
  if (procs && ngpus > 1) {
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    int dev = (lr && *lr ? atoi(lr) : wo.rank) % ngpus;
    if (dev != 0) {
      mlk_backend_free(be);
      CHECK(mlk_backend_create_gpu(dev, &be));
    }
  }
  fprintf(stderr, "backend: %s%s%s\n", mlk_backend_name(be), *mlk_backend_note(be) ? "; " : "",
          mlk_backend_note(be));

  double t0 = now_ms();
  /* without --batch, runs wide enough for every prompt's positions at once (prefill in one run),
   * in steps of the tensor-core tile's 64 rows, up to PREFILL_ROWS; a family written with more
   * rows keeps them */
  int64_t prompt_rows = 0;
  for (int i = 0; i < a.nprompts; i++)
    prompt_rows += a.prompts[i].n;
  prompt_rows = (prompt_rows + 63) / 64 * 64;
  Compiled c;
  CompileRequest req = {.file = mlk, .model = model_name, .config = config,
                        .arch = mlk_backend_ptx_arch(be),
                        .batch_max = a.batch ? a.batch
                                   : prompt_rows < PREFILL_ROWS ? prompt_rows : PREFILL_ROWS,
                        .batch_at_least = !a.batch,
                        .mesh_axis = a.tp ? "tp" : NULL, .mesh_ranks = a.tp,
                        .kernel_collectives = a.in_kernel};
  if (!compile_request(&req, &c))
    die("cannot compile model '%s' of '%s' for '%s' (above)", model_name, mlk, config);
  double t_compile = now_ms() - t0;
  const MlkModelDesc *d = c.desc;
  if (!d->batch_name)
    die("model '%s' has no batch dim: mlk-run runs sequences as the rows of a batch", d->name);
  if (d->ncaches < 1)
    die("model '%s' has no KV cache: mlk-run decodes over one", d->name);

  /* a context that holds the longest sequence, and a pool of exactly the pages they need */
  int64_t longest = 0, page = d->caches[0].page, pages = 0;
  for (int i = 0; i < a.nprompts; i++) {
    int64_t len = a.prompts[i].n + a.steps;
    longest = len > longest ? len : longest;
    pages += (len + page - 1) / page;
  }
  if (a.context && a.context < longest)
    die("--context %lld is shorter than the longest prompt and its %lld steps (%lld tokens)",
        (long long)a.context, (long long)a.steps, (long long)longest);
  if (longest > (1 << 24))
    die("a prompt and its steps hold %lld tokens, more than the runtime's context of 2^24",
        (long long)longest);
  mlk_model_options opt = {.kv_context = a.context ? a.context : longest, .kv_pages = pages};
  /* --tp N: a world of N ranks, every rank's model on the same backend (nlocal = N), or, in a
   * world of processes, this process's rank (nlocal = 1); else one model. Every call on a model
   * is made on each local rank's alike. */
  int nranks = a.tp > 1 ? (int)a.tp : 1, nlocal = procs ? 1 : nranks, me = procs ? wo.rank : 0;
  mlk_model *ms[MAX_RANKS];
  mlk_world *world = NULL;
  t0 = now_ms();
  mlk_backend *bes[MAX_RANKS] = {0};
  if (nranks > 1) {
    /* the ranks of this process: a GPU each where there are enough (then NCCL sums), else all on
     * the one backend (the host sums) */
    for (int i = 0; i < nlocal; i++)
      bes[i] = be;
    if (!procs && ngpus >= nranks)
      for (int i = 1; i < nlocal; i++)
        CHECK(mlk_backend_create_gpu(i, &bes[i]));
    wo.nranks = nranks, wo.backends = bes, wo.model = &opt;
    CHECK(mlk_world_create(d, &wo, &world));
    the_world = world;
    for (int i = 0; i < nlocal; i++)
      ms[i] = mlk_world_model(world, me + i);
  } else {
    CHECK(mlk_model_create_opt(be, d, &opt, &ms[0]));
  }
  for (int i = 0; i < nlocal; i++)
    CHECK(mlk_model_load_checkpoint(ms[i], a.model_dir, NULL));
  mlk_model *m = ms[0]; /* every rank has the whole outputs */
  char tp_note[160] = "";
  if (world)
    snprintf(tp_note, sizeof tp_note, ", over %d ranks%s (sums: %s)", nranks,
             procs ? ", a process each" : "", mlk_world_comm(world));
  /* in a world of processes, rank 0 prints the ids and writes the logits */
  int quiet = procs && me != 0;
  if (quiet)
    a.logits_out = NULL;
  double t_load = now_ms() - t0;
  int t_tokens = find(m, "tokens"), t_pos = find(m, "pos"), t_logits = find(m, "logits"),
      t_next = find(m, "next");
  int64_t vocab = d->tensors[t_logits].numel / d->tensors[t_logits].shape[0];
  for (int i = 0; i < a.nprompts; i++)
    for (int64_t j = 0; j < a.prompts[i].n; j++)
      if (a.prompts[i].ids[j] >= vocab)
        die("prompt %d: token id %d is outside the vocabulary of %lld tokens", i,
            a.prompts[i].ids[j], (long long)vocab);
  fprintf(stderr, "model: %s (%s) from %s%s: compiled in %.1f ms, created and loaded in %.1f ms%s%s\n",
          d->name, mlk, a.model_dir, tp_note, t_compile, t_load,
          *mlk_model_load_note(m) ? "; module " : "", mlk_model_load_note(m));

  FILE *lf = NULL;
  if (a.logits_out && !(lf = fopen(a.logits_out, "wb")))
    die("--logits-out: cannot write '%s': %s", a.logits_out, strerror(errno));

  /* a run's rows: at most the model's batch */
  int64_t bmax = d->batch_max, chunk = a.chunk && a.chunk < bmax ? a.chunk : bmax;
  Row *rows = calloc((size_t)a.nprompts, sizeof *rows);
  mlk_seq **bound = calloc((size_t)(bmax * nlocal), sizeof *bound); /* rank i: bound + i * bmax */
  int *which = calloc((size_t)bmax, sizeof *which);
  int32_t *tokens = calloc((size_t)bmax, sizeof *tokens), *pos = calloc((size_t)bmax, sizeof *pos);
  int32_t *next = calloc((size_t)bmax, sizeof *next);
  float *logits = lf ? calloc((size_t)(bmax * vocab), sizeof *logits) : NULL;
  if (!rows || !bound || !which || !tokens || !pos || !next || (lf && !logits))
    die("out of memory");
  /* --warmup W --repeat R: the whole generation W times untimed, then R times timed (the
   * sequences freed after each); the ids and logits are the last one's, the timings medians */
  double start = 0, decode_ms = 0, wall = 0;
  int64_t nsteps = 0, decode_steps = 0, total = 0, last = a.warmup + (a.repeat ? a.repeat : 1) - 1;
  double *ttfts = calloc((size_t)last + 1, sizeof *ttfts), *dms = calloc((size_t)last + 1, sizeof *dms);
  int ntimed = 0, slowest = 0;
  if (!ttfts || !dms)
    die("out of memory");
  for (int rep = 0;; rep++) {
    FILE *out_logits = rep == last ? lf : NULL;
    for (int i = 0; i < a.nprompts; i++) {
      for (int r = 0; r < nlocal; r++)
        CHECK(mlk_seq_create(ms[r], &rows[i].seq[r]));
      if (!(rows[i].out = calloc((size_t)a.steps, sizeof *rows[i].out)))
        die("out of memory");
      if (a.temperature > 0) {
        mlk_sampling s = {(float)a.temperature, (int32_t)a.top_k, (float)a.top_p,
                          a.seed + (uint64_t)i};
        for (int r = 0; r < nlocal; r++)
          CHECK(mlk_seq_set_sampling(rows[i].seq[r], &s));
      }
    }

    /* Each run: first every sequence past its prompt that still needs tokens feeds the last one it
     * generated (a row each); then prompts fill the rows left, each up to `chunk` consecutive rows
     * of its next positions (prefill: a prompt of n tokens takes ceil(n / chunk) runs, or fewer
     * rows where the batch is full). A sequence gets a token from the run that fed its prompt's
     * last position, and from every run after. Sequences beyond the batch wait for rows. */
    start = now_ms(), decode_ms = 0, nsteps = 0, decode_steps = 0, total = 0;
    for (;;) {
      int n = 0, decoding = 1;
      for (int i = 0; i < a.nprompts && n < bmax; i++) {
        Row *r = &rows[i];
        if (r->generated == a.steps || r->fed < a.prompts[i].n)
          continue;
        for (int k = 0; k < nlocal; k++) {
          CHECK(mlk_seq_append(r->seq[k], 1));
          bound[k * bmax + n] = r->seq[k];
        }
        tokens[n] = r->out[r->generated - 1];
        pos[n] = (int32_t)(mlk_seq_length(r->seq[0]) - 1);
        which[n++] = i;
      }
      for (int i = 0; i < a.nprompts && n < bmax; i++) {
        Row *r = &rows[i];
        const Prompt *p = &a.prompts[i];
        if (r->fed >= p->n)
          continue;
        int64_t take = p->n - r->fed, room = bmax - n;
        take = take < chunk ? take : chunk;
        take = take < room ? take : room;
        for (int k = 0; k < nlocal; k++)
          CHECK(mlk_seq_append(r->seq[k], take));
        for (int64_t j = 0; j < take; j++) {
          tokens[n] = p->ids[r->fed + j];
          pos[n] = (int32_t)(mlk_seq_length(r->seq[0]) - take + j);
          for (int k = 0; k < nlocal; k++)
            bound[k * bmax + n] = r->seq[k];
          which[n++] = i;
        }
        decoding = 0; /* a run that feeds prompt tokens is not a decode step */
      }
      if (!n)
        break;
      double s0 = now_ms();
      for (int k = 0; k < nlocal; k++) {
        CHECK(mlk_model_set_seqs(ms[k], bound + k * bmax, n));
        CHECK(mlk_model_set_tensor(ms[k], t_tokens, tokens, (size_t)n * sizeof *tokens));
        CHECK(mlk_model_set_tensor(ms[k], t_pos, pos, (size_t)n * sizeof *pos));
      }
      CHECK(world ? mlk_world_run(world, 0) : mlk_model_run(m, 0));
      CHECK(mlk_model_get_tensor(m, t_next, next, (size_t)n * sizeof *next));
      if (out_logits)
        CHECK(mlk_model_get_tensor(m, t_logits, logits, (size_t)(n * vocab) * sizeof *logits));
      double s1 = now_ms();
      nsteps++;
      if (decoding) {
        decode_ms += s1 - s0;
        decode_steps++;
      }
      for (int b = 0; b < n; b++) {
        Row *r = &rows[which[b]];
        if (++r->fed < a.prompts[which[b]].n)
          continue; /* inside its prompt: the token after it is the prompt's own */
        if (out_logits) {
          long off = (long)((which[b] * a.steps + r->generated) * vocab) * (long)sizeof(float);
          if (fseek(out_logits, off, SEEK_SET) ||
              fwrite(logits + b * vocab, sizeof(float), (size_t)vocab, out_logits) != (size_t)vocab)
            die("--logits-out: cannot write '%s': %s", a.logits_out, strerror(errno));
        }
        if (r->generated == 0) {
          r->first_ms = s1 - start;
          r->first_run = nsteps;
        }
        r->out[r->generated++] = next[b];
        total++;
      }
    }
    wall = now_ms() - start;
    if (rep >= a.warmup) {
      double t = 0;
      for (int i = 0; i < a.nprompts; i++)
        if (rows[i].first_ms > t)
          t = rows[i].first_ms, slowest = i;
      ttfts[ntimed] = t;
      dms[ntimed++] = decode_steps ? decode_ms / (double)decode_steps : 0;
    }
    if (rep == last)
      break;
    for (int i = 0; i < a.nprompts; i++) {
      for (int r = 0; r < nlocal; r++)
        mlk_seq_free(rows[i].seq[r]);
      free(rows[i].out);
    }
    memset(rows, 0, (size_t)a.nprompts * sizeof *rows);
  }
  if (lf && fclose(lf))
    die("--logits-out: cannot write '%s': %s", a.logits_out, strerror(errno));

  for (int i = 0; i < a.nprompts && !quiet; i++) {
    for (int64_t j = 0; j < a.steps; j++)
      printf("%s%d", j ? " " : "", rows[i].out[j]);
    putchar('\n');
  }
  if (fflush(stdout))
    die("cannot write the ids: %s", strerror(errno));

  int64_t plen = 0;
  for (int i = 0; i < a.nprompts; i++)
    plen = a.prompts[i].n > plen ? a.prompts[i].n : plen;
  double ttft = median(ttfts, ntimed), per_token = median(dms, ntimed);
  char of[64] = "";
  if (ntimed > 1)
    snprintf(of, sizeof of, ", medians of %d generations", ntimed);
  fprintf(stderr, "%d prompt%s (longest %lld tokens), %lld runs of up to %lld rows, %lld tokens "
          "in %.1f ms\n", a.nprompts, a.nprompts == 1 ? "" : "s", (long long)plen,
          (long long)nsteps, (long long)bmax, (long long)total, wall);
  fprintf(stderr, "time to first token: %.2f ms (prompt %d of %lld tokens, its first token from "
          "run %lld; prompts go in chunks of up to %lld positions a run%s)\n", ttft, slowest,
          (long long)a.prompts[slowest].n, (long long)rows[slowest].first_run, (long long)chunk, of);
  if (decode_steps)
    fprintf(stderr, "decode: %.3f ms per token (%lld steps in which every sequence fed a generated "
            "token%s), %.1f tokens/s over the batch\n", per_token, (long long)decode_steps, of,
            (double)total / (wall / 1e3));
  else
    fprintf(stderr, "decode: no step fed generated tokens only (--steps 1, or prompts of other "
            "lengths)\n");

  for (int i = 0; i < a.nprompts; i++) {
    for (int r = 0; r < nlocal; r++)
      mlk_seq_free(rows[i].seq[r]);
    free(rows[i].out);
    free(a.prompts[i].ids);
  }
  free(rows);
  free(ttfts);
  free(dms);
  free(bound);
  free(which);
  free(tokens);
  free(pos);
  free(next);
  free(logits);
  if (world)
    mlk_world_free(world);
  else
    mlk_model_free(m);
  for (int i = 1; i < nlocal; i++)
    if (bes[i] != be)
      mlk_backend_free(bes[i]);
  mlk_backend_free(be);
  compiled_free(&c);
  return 0;
}
