/* bind.c: expands the checkpoint bindings of a lowered model's params into MlkBindings.
 *
 * `param w : bf16[L, R, C] from "a.{l}.w"` becomes one binding per layer l (offset l * R * C,
 * shape [R, C], name "a.<l>.w"); `from cat("a.{l}.{q,k,v}.w")` becomes, per layer, the names q,
 * k, v in order as consecutive row ranges of the layer (docs/language.md, "Declarations"). The
 * rows of each part of a cat are not written in the declaration; they come from how the model
 * reads the param: a fused weight is only useful split into row slices, `split(matvec(x,
 * wqkv[l]), n1, n2, n3)`, which lowers into one matvec per slice, and a fused bias likewise,
 * `split(matvec(x, wqkv[l]) + bqkv[l], ...)`, each slice adding its rows of the bias (a bias
 * vector's rows are its elements). So this runs after lowering,
 * over the graph's ops, and a cat whose parts those slices do not tell is an error rather than a
 * guess. The runtime checks the result again (coverage, order) and the loader checks each
 * checkpoint tensor's shape against it. A sharded param is one rank's slice: its bindings name
 * whole checkpoint tensors and the dimension the loader cuts (a cat's parts each cut alike, so a
 * fused q/k/v of a rank is its q heads, then its k heads, then its v heads).
 */
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"

/* A name template cut into pieces: literal text, the layer index `{l}`, or `{a,b,...}`. */
typedef enum PieceKind { PIECE_TEXT, PIECE_LAYER, PIECE_ALT } PieceKind;

typedef struct Piece {
  PieceKind kind;
  const char *text; /* PIECE_TEXT: the text; PIECE_ALT: the alternatives, comma separated */
  size_t len;
  int nalts;        /* PIECE_ALT */
} Piece;

typedef struct Template {
  Piece *pieces;
  int npieces;
  int nnames;       /* product of the alternatives' counts */
  bool layer;       /* has {l} */
} Template;

/* Cuts `s` the way sema's check_template reads it (which already accepted it). */
static Template parse_template(Arena *a, const char *s) {
  Template t = {.nnames = 1};
  size_t n = strlen(s);
  t.pieces = arena_alloc(a, (2 * n + 1) * sizeof *t.pieces);
  const char *p = s;
  while (*p) {
    Piece *pc = &t.pieces[t.npieces++];
    if (*p != '{') {
      size_t k = strcspn(p, "{");
      *pc = (Piece){.kind = PIECE_TEXT, .text = p, .len = k};
      p += k;
      continue;
    }
    const char *end = strchr(p, '}');
    if (!end)
      MLKC_BUG("unclosed '{' in checkpoint name \"%s\" after sema", s);
    size_t k = (size_t)(end - p - 1);
    if (k == 1 && p[1] == 'l') {
      *pc = (Piece){.kind = PIECE_LAYER};
      t.layer = true;
    } else {
      int nalts = 1;
      for (size_t i = 0; i < k; i++)
        nalts += p[1 + i] == ',';
      if (nalts < 2)
        MLKC_BUG("placeholder {%.*s} in \"%s\" after sema", (int)k, p + 1, s);
      *pc = (Piece){.kind = PIECE_ALT, .text = p + 1, .len = k, .nalts = nalts};
      t.nnames *= nalts;
    }
    p = end + 1;
  }
  return t;
}

/* Name `which` (0 .. nnames - 1, the first alternative group varying slowest) of a template, with
 * `{l}` replaced by `layer`. */
static const char *expand(Arena *a, const Template *t, int which, int64_t layer) {
  /* the index of each group's alternative, from the last group (fastest) to the first */
  int *pick = arena_alloc(a, (size_t)(t->npieces + 1) * sizeof *pick);
  for (int i = t->npieces - 1; i >= 0; i--)
    if (t->pieces[i].kind == PIECE_ALT) {
      pick[i] = which % t->pieces[i].nalts;
      which /= t->pieces[i].nalts;
    }
  size_t cap = 32;
  for (int i = 0; i < t->npieces; i++)
    cap += t->pieces[i].len;
  char *out = arena_alloc(a, cap), *o = out;
  for (int i = 0; i < t->npieces; i++) {
    const Piece *pc = &t->pieces[i];
    if (pc->kind == PIECE_TEXT) {
      memcpy(o, pc->text, pc->len);
      o += pc->len;
    } else if (pc->kind == PIECE_LAYER) {
      o += snprintf(o, cap - (size_t)(o - out), "%lld", (long long)layer);
    } else {
      const char *alt = pc->text, *end = pc->text + pc->len;
      for (int k = 0; k < pick[i]; k++)
        alt = memchr(alt, ',', (size_t)(end - alt)) + 1;
      const char *comma = memchr(alt, ',', (size_t)(end - alt));
      size_t len = (size_t)((comma ? comma : end) - alt);
      memcpy(o, alt, len);
      o += len;
    }
  }
  *o = 0;
  return out;
}

typedef struct Slice {
  int64_t row, rows;
} Slice;

static int cmp_slice(const void *x, const void *y) {
  const Slice *a = x, *b = y;
  return a->row < b->row ? -1 : a->row > b->row ? 1 : (a->rows > b->rows) - (a->rows < b->rows);
}

/* The rows of each of the `nparts` parts of a cat over param t: groups (layers) of `gnumel`
 * elements, each `R` rows of `C`. Taken from the matvecs that read t as their weight, and the
 * matvecs and eltwise ops that read it as their bias (a vector: C = 1): each reads a row slice of
 * one group, and together, over all groups, they must cut a group into exactly nparts consecutive
 * slices. Returns false when they do not (or t is read any other way). */
static bool infer_part_rows(const Graph *g, int t, int64_t gnumel, int64_t R, int64_t C, int nparts,
                            int64_t *rows, Arena *a) {
  Slice *sl = arena_alloc(a, (size_t)(g->nops + 1) * sizeof *sl);
  int n = 0;
  for (int o = 0; o < g->nops; o++) {
    const MlkOpDesc *op = &g->ops[o].d;
    if (op->out.tensor == t)
      return false;
    for (int j = 0; j < MLK_OP_INPUTS; j++) {
      if (op->in[j].tensor != t)
        continue;
      bool weight = op->kind == MLK_OP_MATVEC && j == 1 && op->k == C;
      bool bias = (op->kind == MLK_OP_MATVEC || op->kind == MLK_OP_ELTWISE) && j == 4 && C == 1;
      if (!weight && !bias)
        return false;
      int64_t within = op->in[j].offset % gnumel;
      if (within % C)
        return false;
      Slice s = {within / C, op->n};
      bool seen = false;
      for (int i = 0; i < n && !seen; i++)
        seen = sl[i].row == s.row && sl[i].rows == s.rows;
      if (!seen)
        sl[n++] = s;
    }
  }
  if (n != nparts)
    return false;
  qsort(sl, (size_t)n, sizeof *sl, cmp_slice);
  int64_t next = 0;
  for (int i = 0; i < n; i++) {
    if (sl[i].row != next || sl[i].rows < 1)
      return false;
    rows[i] = sl[i].rows;
    next += sl[i].rows;
  }
  return next == R;
}

/* The bindings of param tensor t declared by td. */
static void bind_param(Graph *g, int t, const TensorDecl *td, Arena *a, Diag *d) {
  GTensor *gt = &g->tensors[t];
  int nstr = 0;
  for (const StrList *s = td->from; s; s = s->next)
    nstr++;
  Template *tpl = arena_alloc(a, (size_t)nstr * sizeof *tpl);
  int nparts = 0, k = 0;
  bool layer = false;
  for (const StrList *s = td->from; s; s = s->next, k++) {
    tpl[k] = parse_template(a, s->str);
    nparts += tpl[k].nnames;
    layer = layer || tpl[k].layer;
  }
  /* a group is what one set of names fills: a layer with {l} (sema: then rank >= 2), else all */
  int64_t ngroups = layer ? gt->shape[0] : 1;
  int grank = layer ? gt->rank - 1 : gt->rank; /* >= 1: a type has one dimension or more */
  const int64_t *gshape = layer ? gt->shape + 1 : gt->shape;
  int64_t gnumel = gt->numel / ngroups, R = gshape[0], C = gnumel / R;
  int64_t *rows = arena_alloc(a, (size_t)nparts * sizeof *rows);
  rows[0] = R;
  if (nparts > 1 && !infer_part_rows(g, t, gnumel, R, C, nparts, rows, a)) {
    diag_error(d, td->from_loc,
               "cat(...) of %d names fills the %lld rows of %s'%s', but how many rows each name "
               "fills cannot be told from how the model reads it", nparts, (long long)R,
               layer ? "each layer of " : "", td->name);
    if (grank == 1) /* a vector per group: a bias */
      diag_note(d, td->from_loc,
                "the rows of each name are those of the row slices the model's matvecs add it to, "
                "one per name, as in split(matvec(x, w) + %s%s, n1, %sn%d)", td->name,
                layer ? "[l]" : "", nparts == 2 ? "" : nparts == 3 ? "n2, " : "..., ", nparts);
    else
      diag_note(d, td->from_loc,
                "the rows of each name are those of the row slices the model's matvecs read, one "
                "per name, as in split(matvec(x, %s%s), n1, %sn%d)", td->name, layer ? "[l]" : "",
                nparts == 2 ? "" : nparts == 3 ? "n2, " : "..., ", nparts);
    return;
  }
  if (ngroups * nparts > MLKC_MAX_BINDINGS) {
    diag_error(d, td->from_loc, "'%s' binds %lld checkpoint tensors, more than the %d a param may",
               td->name, (long long)(ngroups * nparts), MLKC_MAX_BINDINGS);
    return;
  }
  /* a sharded param holds one rank's slice (sema): each checkpoint tensor is whole, and the
   * loader cuts the binding's dimension sd (the param's, less the layer dim) */
  int sd = td->shard_ways > 1 ? td->shard_dim_v - (layer ? 1 : 0) : -1;
  if (td->shard_ways > 1 && sd < 0) {
    diag_error(d, td->from_loc, "'%s' is sharded over its layers (dimension 0), which its per-layer "
               "checkpoint names ({l}) bind one by one: shard another dimension", td->name);
    return;
  }
  MlkBinding *b = arena_alloc(a, (size_t)(ngroups * nparts) * sizeof *b);
  int nb = 0;
  for (int64_t l = 0; l < ngroups; l++) {
    int64_t off = l * gnumel;
    int part = 0;
    for (k = 0; k < nstr; k++)
      for (int w = 0; w < tpl[k].nnames; w++, part++) {
        MlkBinding *bb = &b[nb++];
        bb->name = expand(a, &tpl[k], w, l);
        bb->offset = off;
        bb->rank = grank;
        bb->shape[0] = rows[part];
        for (int r = 1; r < grank; r++)
          bb->shape[r] = gshape[r];
        bb->shard_dim = sd;
        bb->shard_ways = sd >= 0 ? td->shard_ways : 1;
        if (sd >= 0)
          bb->shape[sd] *= td->shard_ways; /* the whole tensor: each part of a cat cut alike */
        off += rows[part] * C;
      }
  }
  gt->bindings = b;
  gt->nbindings = nb;
}

void bind_params(Graph *g, Arena *a, Diag *d) {
  for (int t = 0; t < g->ntensors; t++) {
    if (g->tensors[t].kind != MLK_TENSOR_PARAM)
      continue;
    for (const TensorDecl *td = g->model->decls; td; td = td->next)
      if (td->kind == DECL_PARAM && td->from && !strcmp(td->name, g->tensors[t].name))
        bind_param(g, t, td, a, d);
  }
}
