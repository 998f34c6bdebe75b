/* builtins.c: the table of the language's operations, made from compiler/builtins.def. sema checks
 * every call against it (arity, keyword names, the values each keyword accepts) and elaborate
 * reads operands, attributes and keyword defaults from it, so a default or a keyword is written
 * once. Also the result type of each operation, which both of them give a value.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "mlkc.h"

/* KW(..., ATTR) names a field of IrAttrs, or `none`: this struct has both, with IrAttrs' fields
 * first and in its order (the same layout: a common initial sequence), so `none` lands past
 * them. */
struct KwTargets {
  MLKC_OP_ATTRS(MLKC_X_FIELD)
  char none;
};

#define ATTR_TYPE_OF(field)                                                                        \
  _Generic(((struct KwTargets *)0)->field, float: ATTR_F32, int32_t: ATTR_I32, int64_t: ATTR_I64, \
           char: ATTR_NONE)

/* Marks a keyword without a default (builtins.def). */
#define KW_REQUIRED (-HUGE_VAL)

static Builtin table[IR_OP_COUNT];
static bool table_built;

static void add_arg(Builtin *b, int pos, BuiltinArg arg) {
  if (pos != b->nargs || pos >= BUILTIN_MAX_ARGS)
    MLKC_BUG("builtins.def: argument %d of '%s' out of order", pos, b->name);
  b->args[b->nargs++] = arg;
}

static void add_kw(Builtin *b, BuiltinKw kw) {
  if (b->nkws == BUILTIN_MAX_KWS)
    MLKC_BUG("builtins.def: '%s' has more than %d keywords", b->name, BUILTIN_MAX_KWS);
  kw.required = kw.def == KW_REQUIRED;
  if (kw.required)
    kw.def = 0;
  b->kws[b->nkws++] = kw;
}

static const Builtin *builtins(void) {
  if (table_built)
    return table;
#define OP(ID, NAME, SYNTAX, MINPOS, MAXPOS, TILE, KIND, FN)                                       \
  table[IR_##ID] = (Builtin){.op = IR_##ID, .name = #NAME, .syntax = SYNTAX, .min_pos = MINPOS,    \
                             .max_pos = MAXPOS, .tile = TILE, .kind = KIND, .fn = FN};
#define ARG(ID, POS, ROLE, NAME, SLOT) add_arg(&table[IR_##ID], POS, (BuiltinArg){ROLE, #NAME, SLOT});
#define KW(ID, NAME, TYPE, DEFAULT, RULE, ATTR)                                                    \
  add_kw(&table[IR_##ID], (BuiltinKw){.name = #NAME, .type = TYPE, .def = DEFAULT, .rule = RULE,   \
                                      .attr_type = ATTR_TYPE_OF(ATTR),                             \
                                      .attr_offset = offsetof(struct KwTargets, ATTR)});
#include "builtins.def"
  table_built = true;
  return table;
}

const Builtin *builtin_of(IrOp op) {
  if ((unsigned)op >= IR_OP_COUNT)
    MLKC_BUG("bad IrOp %d", (int)op);
  return &builtins()[op];
}

const Builtin *builtin_find(OpSyntax syntax, const char *name) {
  const Builtin *t = builtins();
  for (int i = 0; i < IR_OP_COUNT; i++)
    if (t[i].syntax == syntax && !strcmp(t[i].name, name))
      return &t[i];
  return NULL;
}

const char *builtin_call_names(Arena *a) {
  const Builtin *t = builtins();
  int n = 0, k = 0;
  for (int i = 0; i < IR_OP_COUNT; i++)
    n += t[i].syntax == OPS_CALL;
  char buf[512];
  size_t len = 0;
  for (int i = 0; i < IR_OP_COUNT && len < sizeof buf; i++) {
    if (t[i].syntax != OPS_CALL)
      continue;
    k++;
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", k == 1 ? "" : k == n ? " and " : ", ",
                            t[i].name);
  }
  return arena_strndup(a, buf, strlen(buf));
}

const BuiltinArg *builtin_arg(const Builtin *b, int pos) {
  if (b->nargs == 0)
    MLKC_BUG("'%s' has no arguments", b->name);
  return &b->args[pos < b->nargs ? pos : b->nargs - 1];
}

int builtin_kw_index(const Builtin *b, const char *name) {
  for (int i = 0; i < b->nkws; i++)
    if (!strcmp(b->kws[i].name, name))
      return i;
  return -1;
}

void builtin_set_attr(const BuiltinKw *kw, IrAttrs *attrs, double v) {
  char *p = (char *)attrs + kw->attr_offset;
  switch (kw->attr_type) {
  case ATTR_NONE: return;
  case ATTR_F32: *(float *)p = (float)v; return;
  case ATTR_I32: *(int32_t *)p = (int32_t)v; return;
  case ATTR_I64: *(int64_t *)p = (int64_t)v; return;
  }
}

/* The type of an argmax or a sample: one i32 per row. */
static Type one_per_row(const Type *x) {
  Type r = *x;
  r.dtype = MLK_I32;
  r.rank--;
  if (r.rank == 0) {
    r.rank = 1;
    r.shape[0] = 1;
    r.sym[0] = NULL;
  }
  return r;
}

Type builtin_result_type(IrOp op, const Type *const *in, const int64_t *sizes, int i) {
  Type r = {0};
  switch (op) {
  case IR_MATVEC: /* x [.., K] times w [N, K]: [.., N] */
    r = *in[0];
    r.shape[r.rank - 1] = in[1]->shape[0];
    r.sym[r.rank - 1] = NULL;
    return r;
  case IR_RELU:
  case IR_SILU:
  case IR_RMSNORM:
  case IR_ROPE:
  case IR_ATTENTION:
  case IR_COPY:
  case IR_STORE:
    return *in[0];
  case IR_ALLREDUCE:
    return *in[1];
  case IR_ADD:
  case IR_MUL: /* the operand of higher rank: the other is broadcast over its leading dims */
    return in[0]->rank >= in[1]->rank ? *in[0] : *in[1];
  case IR_SPLIT:
    r = *in[0];
    r.shape[r.rank - 1] = sizes[i];
    r.sym[r.rank - 1] = NULL;
    return r;
  case IR_ARGMAX:
  case IR_SAMPLE:
    return one_per_row(in[0]);
  case IR_GATHER: /* the ids' dims, then a row of the table: f32 */
    r = *in[1];
    r.dtype = MLK_F32;
    for (int d = 1; d < in[0]->rank; d++) {
      r.shape[r.rank] = in[0]->shape[d];
      r.sym[r.rank++] = in[0]->sym[d];
    }
    return r;
  case IR_KV_APPEND:
  case IR_PAGED_KV:
  case IR_ATTN_REDUCE:
  case IR_ARGMAX_REDUCE:
  case IR_OP_COUNT:
    break;
  }
  MLKC_BUG("'%s' has no result type", ir_op_name(op));
}
