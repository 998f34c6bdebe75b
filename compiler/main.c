/* main.c: the mlkc driver. Parses the command line and runs the passes in order:
 *
 *   load_program (source_read, lexer, parse_program for the file and each module it imports) ->
 *   config_bind_json (--config) -> sema_check -> lower_model (elaborate_model and the graph
 *   passes: fuse, tile, schedule, cut, events) -> serialize_graph -> codegen_graph (PTX for sm_90a and
 *   sm_80) -> emit_header / emit_source
 *
 * `--emit=KIND` stops after the pass that produces KIND and prints it, so every stage can be
 * inspected. Exit status: 0 on success, 1 on any user error (bad usage, unreadable file,
 * malformed or ill-typed program), with the reason on stderr.
 */
#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"
#include "ptxas.h"

typedef enum EmitKind {
  EMIT_C, /* default: PATH.h and PATH.c */
  EMIT_TOKENS,
  EMIT_AST,
  EMIT_GRAPH,
  EMIT_EVENTS,
  EMIT_DOT,
  EMIT_LLVM,
  EMIT_PTX,
  EMIT_HEADER,
  EMIT_SOURCE
} EmitKind;

static const struct {
  const char *name;
  EmitKind kind;
} emit_kinds[] = {
    {"tokens", EMIT_TOKENS}, {"ast", EMIT_AST},       {"graph", EMIT_GRAPH},
    {"events", EMIT_EVENTS}, {"dot", EMIT_DOT},       {"llvm", EMIT_LLVM},
    {"ptx", EMIT_PTX},
    {"header", EMIT_HEADER}, {"source", EMIT_SOURCE},
};

static void usage(FILE *out) {
  fprintf(out,
          "usage: mlkc [options] FILE.mlk\n"
          "\n"
          "Compiles a .mlk model into one persistent GPU megakernel and a typed C API.\n"
          "\n"
          "options:\n"
          "  -o PATH         write PATH.h and PATH.c (default: the input's name, without .mlk);\n"
          "                  with --emit, write the dump to PATH instead of stdout\n"
          "  --emit=KIND     stop after a pass and print its result; KIND is one of\n"
          "                  tokens, ast, graph, events, dot, llvm, ptx, header, source\n"
          "  --after=PASS    with --emit=graph: print the graph IR after PASS instead of the\n"
          "                  runtime descriptor: elaborate, fuse, tile, schedule, cut, events\n"
          "  --check         check the program as the full compile does, without generating\n"
          "                  code (errors and warnings only)\n"
          "  --arch=ARCH     target of --emit=llvm|ptx: sm_90a (default) or sm_80\n"
          "  --model=NAME    the model to compile when the file defines several\n"
          "  --config=FILE   a Hugging Face config.json: every dim bound to one of its keys\n"
          "                  (dim D = 2048 from \"hidden_size\") takes the file's value\n"
          "  --batch-max=N   every dynamic dim (dim B in 1..64) ranges up to N instead\n"
          "  --mesh=AXIS=N   the mesh axis AXIS (mesh tp = 1) has N ranks instead: N ranks each\n"
          "                  hold their part of the params sharded over it\n"
          "  --collectives=C cut (default): an allreduce over several ranks ends a launch and\n"
          "                  the runtime sums between launches; kernel: the sum is an op of\n"
          "                  the megakernel, over the ranks' memory (a GPU per rank)\n"
          "  -I DIR          look for imported modules (import a.b: a/b.mlk) in DIR too, after\n"
          "                  the importing file's directory; repeatable, searched in order\n"
          "  --stdlib=DIR    where `import std.X` finds X.mlk (default: $MLKC_STDLIB, else\n"
          "                  %s)\n"
          "  --schedule=S    static or dynamic: the schedule of every megakernel, whatever its\n"
          "                  (schedule = ...) says\n"
          "  --attn-split=N  split every attention without a tile(split = s) hint over the\n"
          "                  context into N chunks (1..%d; 1: no split, no reduction op);\n"
          "                  default: about %d tasks per attention op (kv heads x chunks)\n"
          "  --attn-min-chunk=N  the fewest positions per chunk of a split attention (default\n"
          "                  %d): a short context uses the first chunks only\n"
          "  --attn-reduce-op  merge a split attention's chunks in an op of its own (attn_reduce)\n"
          "                  instead of in the last task of each block of kv heads\n"
          "  -O0 .. -O3      LLVM optimization level (default -O3)\n"
          "  --cubin         also compile the sm_90a PTX as the driver would (ptxas -c, nvlink)\n"
          "                  and embed the cubin in PATH.c: on an sm_90 GPU the model then\n"
          "                  starts without the driver's compile of the PTX (ptxas as for -v,\n"
          "                  nvlink beside it; an error without them)\n"
          "  -v              print ptxas's resource report (registers, shared memory, and each\n"
          "                  function's stack and spills by name) of each megakernel (ptxas:\n"
          "                  $MLKC_PTXAS, else from $CUDA_HOME/bin, the build's toolkit or PATH)\n"
          "  --help          print this help\n"
          "  --version       print the version\n",
          mlkc_default_stdlib(), MLK_ATTN_MAX_SPLIT, MLKC_ATTN_SPLIT_TARGET_TASKS,
          MLKC_ATTN_MIN_CHUNK);
}

typedef struct Options {
  const char *input;
  const char **include_dirs; /* -I, in order (argc entries allocated) */
  int ninclude;
  const char *stdlib_dir;
  const char *output;
  const char *model;
  const char *arch;
  EmitKind emit;
  int opt_level;
  int schedule;    /* --schedule: -1 as written, else an MlkSchedule for every megakernel */
  const char *after; /* --after=PASS: --emit=graph prints the graph IR after that pass */
  const char *config; /* --config=FILE: a config.json whose keys bind dims */
  bool check_only; /* --check: every check, no code generation */
  bool verbose;    /* -v: ptxas resource report */
  bool cubin;      /* --cubin: embed the sm_90a PTX assembled by ptxas */
  int attn_split;  /* --attn-split=N, 0: the default policy */
  int64_t batch_max; /* --batch-max=N, 0: the dynamic dims' ranges as written */
  const char *mesh_axis; /* --mesh=AXIS=N: that axis has N ranks (NULL: as written) */
  char mesh_axis_buf[64];
  bool kernel_collectives; /* --collectives=kernel */
  int64_t mesh_ranks;
  int attn_min_chunk; /* --attn-min-chunk=N, 0: MLKC_ATTN_MIN_CHUNK */
  bool attn_reduce_op; /* --attn-reduce-op */
} Options;

/* Returns 0 to go on, 1 on a usage error, -1 when done (--help, --version). */
static int parse_args(int argc, char **argv, Options *o) {
  o->arch = "sm_90a";
  o->opt_level = 3;
  o->schedule = -1;
  o->include_dirs = calloc((size_t)argc, sizeof *o->include_dirs);
  if (!o->include_dirs) {
    fprintf(stderr, "mlkc: error: out of memory\n");
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return -1;
    } else if (!strcmp(a, "--version")) {
      printf("mlkc %s (LLVM 19, targets sm_90a sm_80)\n", MLKC_VERSION);
      return -1;
    } else if (!strcmp(a, "-o")) {
      if (++i >= argc) {
        fprintf(stderr, "mlkc: error: -o needs a path\n");
        return 1;
      }
      o->output = argv[i];
    } else if (!strncmp(a, "-I", 2)) {
      const char *dir = a[2] ? a + 2 : i + 1 < argc ? argv[++i] : NULL;
      if (!dir || !*dir) {
        fprintf(stderr, "mlkc: error: -I needs a directory\n");
        return 1;
      }
      o->include_dirs[o->ninclude++] = dir;
    } else if (!strncmp(a, "--stdlib=", 9)) {
      if (!a[9]) {
        fprintf(stderr, "mlkc: error: --stdlib needs a directory\n");
        return 1;
      }
      o->stdlib_dir = a + 9;
    } else if (!strcmp(a, "-v")) {
      o->verbose = true;
    } else if (!strcmp(a, "--cubin")) {
      o->cubin = true;
    } else if (!strcmp(a, "--check")) {
      o->check_only = true;
    } else if (!strncmp(a, "--emit=", 7)) {
      size_t k;
      for (k = 0; k < sizeof emit_kinds / sizeof emit_kinds[0]; k++)
        if (!strcmp(a + 7, emit_kinds[k].name))
          break;
      if (k == sizeof emit_kinds / sizeof emit_kinds[0]) {
        fprintf(stderr,
                "mlkc: error: unknown --emit kind '%s' (tokens, ast, graph, events, dot, llvm, "
                "ptx, header, source)\n",
                a + 7);
        return 1;
      }
      o->emit = emit_kinds[k].kind;
    } else if (!strncmp(a, "--after=", 8)) {
      if (lower_pass_index(a + 8) < 0) {
        fprintf(stderr, "mlkc: error: unknown --after pass '%s' (elaborate, fuse, tile, schedule, "
                "events)\n", a + 8);
        return 1;
      }
      o->after = a + 8;
    } else if (!strncmp(a, "--arch=", 7)) {
      if (strcmp(a + 7, "sm_90a") && strcmp(a + 7, "sm_80")) {
        fprintf(stderr, "mlkc: error: unknown --arch '%s' (sm_90a, sm_80)\n", a + 7);
        return 1;
      }
      o->arch = a + 7;
    } else if (!strncmp(a, "--schedule=", 11)) {
      if (strcmp(a + 11, "static") && strcmp(a + 11, "dynamic")) {
        fprintf(stderr, "mlkc: error: unknown --schedule '%s' (static, dynamic)\n", a + 11);
        return 1;
      }
      o->schedule = strcmp(a + 11, "static") ? MLK_SCHED_DYNAMIC : MLK_SCHED_STATIC;
    } else if (!strncmp(a, "--model=", 8)) {
      o->model = a + 8;
    } else if (!strncmp(a, "--config=", 9) || !strcmp(a, "--config")) {
      const char *f = a[8] ? a + 9 : i + 1 < argc ? argv[++i] : NULL;
      if (!f || !*f) {
        fprintf(stderr, "mlkc: error: --config needs a config.json file\n");
        return 1;
      }
      o->config = f;
    } else if (!strncmp(a, "--batch-max=", 12)) {
      char *end;
      long long v = strtoll(a + 12, &end, 10);
      if (!a[12] || *end || v < 1 || v > (1 << 16)) {
        fprintf(stderr, "mlkc: error: --batch-max needs a number of rows in 1..%d, got '%s'\n",
                1 << 16, a + 12);
        return 1;
      }
      o->batch_max = v;
    } else if (!strncmp(a, "--collectives=", 14)) {
      if (strcmp(a + 14, "kernel") && strcmp(a + 14, "cut")) {
        fprintf(stderr, "mlkc: error: --collectives needs kernel or cut, got '%s'\n", a + 14);
        return 1;
      }
      o->kernel_collectives = !strcmp(a + 14, "kernel");
    } else if (!strncmp(a, "--mesh=", 7)) {
      const char *eq = strchr(a + 7, '=');
      char *end;
      long long v = eq ? strtoll(eq + 1, &end, 10) : 0;
      if (!eq || eq == a + 7 || !eq[1] || *end || v < 1 || v > 1024 ||
          (size_t)(eq - (a + 7)) >= sizeof o->mesh_axis_buf) {
        fprintf(stderr, "mlkc: error: --mesh needs AXIS=N, N ranks in 1..1024, got '%s'\n", a + 7);
        return 1;
      }
      snprintf(o->mesh_axis_buf, sizeof o->mesh_axis_buf, "%.*s", (int)(eq - (a + 7)), a + 7);
      o->mesh_axis = o->mesh_axis_buf;
      o->mesh_ranks = v;
    } else if (!strncmp(a, "--attn-split=", 13)) {
      char *end;
      long v = strtol(a + 13, &end, 10);
      if (!a[13] || *end || v < 1 || v > MLK_ATTN_MAX_SPLIT) {
        fprintf(stderr, "mlkc: error: --attn-split needs a number of chunks in 1..%d, got '%s'\n",
                MLK_ATTN_MAX_SPLIT, a + 13);
        return 1;
      }
      o->attn_split = (int)v;
    } else if (!strncmp(a, "--attn-min-chunk=", 17)) {
      char *end;
      long v = strtol(a + 17, &end, 10);
      if (!a[17] || *end || v < 1 || v > (1 << 24)) {
        fprintf(stderr, "mlkc: error: --attn-min-chunk needs a number of positions in 1..%d, got "
                "'%s'\n", 1 << 24, a + 17);
        return 1;
      }
      o->attn_min_chunk = (int)v;
    } else if (!strcmp(a, "--attn-reduce-op")) {
      o->attn_reduce_op = true;
    } else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
      o->opt_level = a[2] - '0';
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "mlkc: error: unknown option '%s' (see mlkc --help)\n", a);
      return 1;
    } else if (o->input) {
      fprintf(stderr, "mlkc: error: more than one input file ('%s' and '%s')\n", o->input, a);
      return 1;
    } else {
      o->input = a;
    }
  }
  if (!o->input) {
    fprintf(stderr, "mlkc: error: no input file (see mlkc --help)\n");
    return 1;
  }
  if (o->cubin && o->emit != EMIT_C && o->emit != EMIT_SOURCE) {
    const char *kind = "";
    for (size_t k = 0; k < sizeof emit_kinds / sizeof emit_kinds[0]; k++)
      if (emit_kinds[k].kind == o->emit)
        kind = emit_kinds[k].name;
    fprintf(stderr, "mlkc: error: --cubin embeds the cubin in the generated C: it goes with -o or "
            "--emit=source, not --emit=%s\n", kind);
    return 1;
  }
  if (o->after && o->emit != EMIT_GRAPH) {
    fprintf(stderr, "mlkc: error: --after=%s needs --emit=graph\n", o->after);
    return 1;
  }
  if (!o->stdlib_dir) {
    const char *env = getenv("MLKC_STDLIB");
    o->stdlib_dir = env && *env ? env : mlkc_default_stdlib();
  }
  return 0;
}

/* The output stream for a dump: stdout, or the -o file. */
static FILE *open_dump(const Options *o) {
  if (!o->output)
    return stdout;
  FILE *f = fopen(o->output, "w");
  if (!f)
    fprintf(stderr, "mlkc: error: cannot write '%s': %s\n", o->output, strerror(errno));
  return f;
}

static bool close_dump(const Options *o, FILE *f) {
  if (f == stdout)
    return fflush(f) == 0;
  if (fclose(f) != 0) {
    fprintf(stderr, "mlkc: error: cannot write '%s': %s\n", o->output, strerror(errno));
    return false;
  }
  return true;
}

/* Writes text to PATH, reporting failures. */
static bool write_file(const char *path, void (*fn)(FILE *, const void *), const void *arg) {
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "mlkc: error: cannot write '%s': %s\n", path, strerror(errno));
    return false;
  }
  fn(f, arg);
  if (ferror(f) | (fclose(f) != 0)) {
    fprintf(stderr, "mlkc: error: cannot write '%s': %s\n", path, strerror(errno));
    return false;
  }
  return true;
}

typedef struct EmitArgs {
  const Graph *g;
  const char *header_name;
  const char *ptx90, *ptx80;
  const unsigned char *cubin90; /* --cubin: the sm_90a PTX assembled, else NULL */
  size_t cubin90_bytes;
} EmitArgs;

static void write_header(FILE *f, const void *arg) { emit_header(f, ((const EmitArgs *)arg)->g); }
static void write_source(FILE *f, const void *arg) {
  const EmitArgs *e = arg;
  emit_source(f, e->g, e->header_name, e->ptx90, e->ptx80, e->cubin90, e->cubin90_bytes);
}

/* The default output base: the input's file name without directory and `.mlk`. */
static char *default_base(Arena *a, const char *input) {
  const char *slash = strrchr(input, '/');
  const char *name = slash ? slash + 1 : input;
  size_t n = strlen(name);
  if (n > 4 && !strcmp(name + n - 4, ".mlk"))
    n -= 4;
  return arena_strndup(a, name, n);
}

static Model *pick_model(Program *p, const Options *o, Diag *d) {
  if (!p->models) {
    diag_fatal(d, "%s defines no model", o->input);
    return NULL;
  }
  if (!o->model) {
    if (p->models->next) {
      diag_fatal(d, "%s defines several models: choose one with --model=NAME", o->input);
      return NULL;
    }
    return p->models;
  }
  Model *m = find_model(p, o->model);
  if (!m)
    diag_fatal(d, "%s has no model '%s'", o->input, o->model);
  return m;
}

/* Runs elaborate and the passes on model m, up to `last` (LOWER_NPASSES - 1: all of them). NULL
 * after an error. */
static IrGraph *run_passes(Program *p, Model *m, const Options *o, int last, Arena *a, Diag *d) {
  TileOptions t = {o->attn_split, o->attn_min_chunk, o->kernel_collectives, o->attn_reduce_op};
  return lower_model(p, m, &t, last, a, d);
}

static int compile(const Options *o, Arena *a) {
  Diag d;
  diag_init(&d, NULL, stderr);

  /* Tokens are the root file's alone; everything else starts from it and what it imports. */
  if (o->emit == EMIT_TOKENS) {
    Source src;
    if (!source_read(a, o->input, &src)) {
      diag_fatal(&d, "cannot read '%s': %s", o->input, strerror(errno));
      return 1;
    }
    diag_init(&d, &src, stderr);
    FILE *f = open_dump(o);
    if (!f)
      return 1;
    lexer_dump_tokens(f, &src, a, &d);
    return close_dump(o, f) && d.nerrors == 0 ? 0 : 1;
  }

  Program *prog = load_program(o->input, o->include_dirs, o->ninclude, o->stdlib_dir, a, &d);
  if (!prog || d.nerrors)
    return 1;
  if (o->config && !config_bind_json(prog, o->config, a, &d))
    return 1;
  if (o->batch_max && !config_batch_max(prog, o->batch_max, false, a, &d))
    return 1;
  if (o->mesh_axis && !config_set_mesh(prog, o->mesh_axis, o->mesh_ranks, a, &d))
    return 1;
  if (o->emit == EMIT_AST) {
    FILE *f = open_dump(o);
    if (!f)
      return 1;
    ast_dump(f, prog);
    return close_dump(o, f) ? 0 : 1;
  }

  if (!sema_check(prog, a, &d))
    return 1;
  if (o->check_only) {
    /* every check of the full compile: some need a model's lowered graph (the rows of each name
     * of a checkpoint cat, the limits of the ABI), so each model goes through the passes too;
     * code generation, which finds nothing wrong with a program, is all that is skipped */
    for (Model *m = prog->models; m; m = m->next) {
      IrGraph *ir = run_passes(prog, m, o, LOWER_NPASSES - 1, a, &d);
      if (ir)
        serialize_graph(ir, a, &d);
    }
    return d.nerrors ? 1 : 0;
  }
  Model *m = pick_model(prog, o, &d);
  if (!m)
    return 1;
  int last = o->after ? lower_pass_index(o->after) : LOWER_NPASSES;
  IrGraph *ir = run_passes(prog, m, o, last, a, &d);
  if (!ir)
    return 1;
  if (last < LOWER_NPASSES) {
    FILE *f = open_dump(o);
    if (!f)
      return 1;
    ir_dump(f, ir);
    return close_dump(o, f) ? 0 : 1;
  }
  Graph *g = serialize_graph(ir, a, &d);
  if (!g)
    return 1;
  if (o->schedule >= 0)
    for (int k = 0; k < g->nkernels; k++)
      g->kernels[k].schedule = (MlkSchedule)o->schedule;
  if (o->emit == EMIT_GRAPH || o->emit == EMIT_EVENTS || o->emit == EMIT_DOT ||
      o->emit == EMIT_HEADER) {
    FILE *f = open_dump(o);
    if (!f)
      return 1;
    if (o->emit == EMIT_GRAPH)
      graph_dump(f, g);
    else if (o->emit == EMIT_EVENTS)
      graph_dump_events(f, g);
    else if (o->emit == EMIT_DOT)
      graph_dump_dot(f, g);
    else
      emit_header(f, g);
    return close_dump(o, f) ? 0 : 1;
  }

  if (o->emit == EMIT_LLVM || o->emit == EMIT_PTX) {
    CodegenOptions co = {.arch = o->arch, .opt_level = o->opt_level};
    char *text = NULL;
    if (!codegen_graph(g, &co, o->emit == EMIT_LLVM, &text, &d))
      return 1;
    if (o->verbose && o->emit == EMIT_PTX)
      ptxas_report(text, o->arch);
    FILE *f = open_dump(o);
    if (!f) {
      free(text);
      return 1;
    }
    fputs(text, f);
    free(text);
    return close_dump(o, f) ? 0 : 1;
  }

  /* The generated C embeds PTX for both targets: the runtime picks one for the device. */
  char *ptx90 = NULL, *ptx80 = NULL;
  CodegenOptions c90 = {.arch = "sm_90a", .opt_level = o->opt_level};
  CodegenOptions c80 = {.arch = "sm_80", .opt_level = o->opt_level};
  if (!codegen_graph(g, &c90, false, &ptx90, &d) || !codegen_graph(g, &c80, false, &ptx80, &d)) {
    free(ptx90);
    free(ptx80);
    return 1;
  }
  if (o->verbose)
    ptxas_report(ptx90, "sm_90a");
  unsigned char *cubin90 = NULL;
  size_t cubin90_bytes = 0;
  if (o->cubin && (o->emit == EMIT_C || o->emit == EMIT_SOURCE) &&
      !ptxas_cubin(ptx90, "sm_90a", &cubin90, &cubin90_bytes)) {
    free(ptx90);
    free(ptx80);
    return 1;
  }
  int rc = 0;
  if (o->emit == EMIT_SOURCE) {
    EmitArgs ea = {g, arena_printf(a, "%s.h", default_base(a, o->input)), ptx90, ptx80, cubin90,
                   cubin90_bytes};
    FILE *f = open_dump(o);
    if (f) {
      write_source(f, &ea);
      rc = close_dump(o, f) ? 0 : 1;
    } else {
      rc = 1;
    }
  } else {
    const char *base = o->output ? o->output : default_base(a, o->input);
    const char *slash = strrchr(base, '/');
    EmitArgs ea = {g, arena_printf(a, "%s.h", slash ? slash + 1 : base), ptx90, ptx80, cubin90,
                   cubin90_bytes};
    if (!write_file(arena_printf(a, "%s.h", base), write_header, &ea) ||
        !write_file(arena_printf(a, "%s.c", base), write_source, &ea))
      rc = 1;
  }
  free(ptx90);
  free(ptx80);
  free(cubin90);
  return rc;
}

int main(int argc, char **argv) {
  Options o = {0};
  int r = parse_args(argc, argv, &o);
  if (r != 0) {
    free(o.include_dirs);
    return r < 0 ? 0 : 1;
  }
  Arena *a = arena_new();
  int rc = compile(&o, a);
  arena_free(a);
  free(o.include_dirs);
  return rc;
}
