/* codegen.c: builds the persistent megakernel with the LLVM-C API and emits PTX.
 *
 * For each megakernel of the graph, one kernel entry (PTX kernel calling convention):
 *
 *   void ENTRY(const MlkDevOp *ops, const MlkDevSync *syncs, u32 *counters, const u32 *qoff,
 *              const u64 *queue, u32 epoch, u64 timeout_ns, MlkDevError *err, const i64 *rt,
 *              u64 *trace)                                                       (mlk_desc.h)
 *
 * The kernel is an interpreter over op records the runtime builds (MlkDevOp): the model's ops are
 * data, and the code holds one call site per op kind the megakernel uses, so its size, its
 * registers and ptxas's time stay the same whatever the depth of the model. Static schedule:
 * block b walks queue[qoff[b] .. qoff[b+1]) of task words (op << 32 | task). Dynamic schedule:
 * the blocks take queue[0 .. qoff[1]) in order from a shared ticket counter. Per task: point at
 * the op's record, pump the weight stream (stdlib/tiles/stream.c: the block's coming matvec weights
 * copied into shared memory) or prefetch a matvec's weights to L2, wait for the record's waits
 * (mlk_dev_task_wait), switch on the record's kind to mlk_task_<kind> (stdlib/task.c, the same
 * dispatch the simulator runs), barrier, notify (mlk_dev_task_notify). The stdlib tile bitcode
 * (embedded in mlkc at build time) is linked in, everything but the entries is internalized, and
 * the O3 pipeline optimizes the whole before the NVPTX backend writes PTX. With a trace buffer,
 * thread 0 stamps %globaltimer when the block takes a task, when its waits are satisfied and when
 * it is done.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/Core.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "mlkc.h"

extern const char mlk_tiles_bc_sm90a[], mlk_tiles_bc_sm90a_end[];
extern const char mlk_tiles_bc_sm80[], mlk_tiles_bc_sm80_end[];

#define TRIPLE "nvptx64-nvidia-cuda"

typedef struct Cg {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  const Graph *g;
  LLVMTypeRef i32, i64, f32, ptr, voidt;
  LLVMValueRef fn; /* the kernel being built */
  const char *cpu;      /* "sm_90a" */
  const char *features; /* the tiles' "target-features", e.g. "+ptx85,+sm_90a" */
} Cg;

static char *xstrndup(const char *s, size_t n) {
  char *r = malloc(n + 1);
  if (!r)
    MLKC_BUG("out of memory");
  memcpy(r, s, n);
  r[n] = 0;
  return r;
}

static LLVMValueRef c32(Cg *c, int64_t v) { return LLVMConstInt(c->i32, (uint64_t)v, 0); }
static LLVMValueRef c64(Cg *c, int64_t v) { return LLVMConstInt(c->i64, (uint64_t)v, 0); }

static LLVMValueRef tile_fn(Cg *c, const char *name, LLVMTypeRef *type) {
  LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
  if (!f)
    MLKC_BUG("stdlib tile '%s' missing from the embedded bitcode", name);
  *type = LLVMGlobalGetValueType(f);
  return f;
}

static LLVMValueRef call(Cg *c, const char *name, LLVMValueRef *args, unsigned n) {
  LLVMTypeRef t;
  LLVMValueRef f = tile_fn(c, name, &t);
  if (LLVMCountParamTypes(t) != n)
    MLKC_BUG("stdlib '%s' takes %u arguments, codegen passes %u", name, LLVMCountParamTypes(t), n);
  return LLVMBuildCall2(c->b, t, f, args, n, "");
}

static LLVMValueRef intrinsic(Cg *c, const char *name) {
  LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
  if (!f)
    f = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->i32, NULL, 0, 0));
  return LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, NULL, 0, 0), f, NULL, 0, "");
}

/* The kinds of op megakernel `kernel` uses, as a bit set over MlkOpKind. */
static uint32_t kinds_used(const Graph *g, int kernel) {
  const GKernel *k = &g->kernels[kernel];
  uint32_t used = 0;
  for (int o = k->first_op; o < k->first_op + k->nops; o++)
    used |= 1u << g->ops[o].d.kind;
  return used;
}

static const char *const kind_names[] = {
#define X(K, name, r0, r1, r2, r3, r4) #name,
    MLK_OP_KINDS(X)
#undef X
};
_Static_assert(sizeof kind_names / sizeof *kind_names == MLK_OP_KIND_COUNT, "a name per kind");
_Static_assert(MLK_OP_KIND_COUNT <= 32, "kinds_used is a 32-bit set");

static void add_attr(Cg *c, LLVMValueRef fn, unsigned idx, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(c->ctx, kind, 0));
}

/* The tiles' target attributes, so that the inliner treats a function we build as compatible
 * with them; the tiles are freestanding ("no-builtins"), and the inliner refuses to mix the two. */
static void copy_target_attrs(Cg *c, LLVMValueRef fn) {
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(c->ctx, "target-cpu", 10, c->cpu, strlen(c->cpu)));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(c->ctx, "target-features", 15, c->features,
                                                    strlen(c->features)));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(c->ctx, "no-builtins", 11, "", 0));
}

/* Stores `v` (an LLVM constant) at byte `off` of the record copy `rec`. */
static void store_at(Cg *c, LLVMValueRef rec, size_t off, LLVMValueRef v) {
  LLVMValueRef idx = c64(c, (int64_t)off);
  LLVMBuildStore(c->b, v, LLVMBuildGEP2(c->b, LLVMInt8TypeInContext(c->ctx), rec, &idx, 1, ""));
}

static LLVMValueRef const_float(Cg *c, float v) { return LLVMConstReal(c->f32, v); }
static LLVMValueRef const_i32(Cg *c, int64_t v) { return c32(c, v); }
static LLVMValueRef const_i64(Cg *c, int64_t v) { return c64(c, v); }
/* The LLVM constant of an MlkDevOp field of C type float, int32_t or int64_t. */
#define FIELD_CONST(c, field, v)                                                                   \
  _Generic(((MlkDevOp *)0)->field, float: const_float, int32_t: const_i32, default: const_i64)(    \
      (c), (v))

/* Whether the ops of a variant have a split form besides their plain one (mlk_desc.h MATVEC: a
 * split matvec at a large batch), chosen per task at run time (mlk_task_matvec_splits). */
static bool has_split_form(const MlkOpDesc *d) { return d->kind == MLK_OP_MATVEC && d->split > 1; }

/* The code of variant v of kernel `kernel` in one form: a function that copies the op's record,
 * overwrites every field the variant's ops share with its value (constants) and runs the kind's
 * task on the copy, inlined. After optimization the copy is gone and the tile is compiled for the
 * constants: divisions by a head_dim or a page become shifts, loops over a head get known trip
 * counts. Kept out of line (noinline) so that ptxas allocates each variant's registers alone. A
 * variant with a split form gets two such functions: the plain one with split folded to 0 (the
 * split's code in none of it: inlined, it made every matvec task 7% slower on the H100, split or
 * not), and the split one, which runs mlk_task_matvec_split_inline. */
static LLVMValueRef emit_variant(Cg *c, int kernel, int v, bool split_form) {
  const GKernel *k = &c->g->kernels[kernel];
  const MlkOpDesc *d = &c->g->ops[k->variant_ops[v]].d;
  char name[128], inl[64];
  snprintf(name, sizeof name, "mlk_variant_%s_%s_%d%s", k->name, kind_names[d->kind], v,
           split_form ? "_split" : "");
  snprintf(inl, sizeof inl, "mlk_task_%s%s_inline", kind_names[d->kind], split_form ? "_split" : "");
  LLVMTypeRef params[] = {c->ptr, c->i64, c->ptr};
  LLVMValueRef fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->i64, params, 3, 0));
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  copy_target_attrs(c, fn);
  add_attr(c, fn, LLVMAttributeFunctionIndex, "noinline");
  LLVMBasicBlockRef saved = LLVMGetInsertBlock(c->b);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
  LLVMValueRef src = LLVMGetParam(fn, 0);
  LLVMValueRef rec = LLVMBuildAlloca(c->b, LLVMArrayType2(LLVMInt8TypeInContext(c->ctx), sizeof(MlkDevOp)), "rec");
  LLVMSetAlignment(rec, 8);
  LLVMBuildMemCpy(c->b, rec, 8, src, 8, c64(c, sizeof(MlkDevOp)));
  store_at(c, rec, offsetof(MlkDevOp, kind), c32(c, d->kind));
  store_at(c, rec, offsetof(MlkDevOp, fn), c32(c, d->fn));
  store_at(c, rec, offsetof(MlkDevOp, batched), c32(c, d->batched));
  store_at(c, rec, offsetof(MlkDevOp, variant), c32(c, v));
  store_at(c, rec, offsetof(MlkDevOp, n), c64(c, d->n));
  store_at(c, rec, offsetof(MlkDevOp, k), c64(c, d->k));
  store_at(c, rec, offsetof(MlkDevOp, tile), c64(c, d->tile));
  store_at(c, rec, offsetof(MlkDevOp, ntasks), c64(c, d->ntasks));
  /* an operand the variant's ops do not have is a constant null */
  if (d->out.tensor < 0)
    store_at(c, rec, offsetof(MlkDevOp, out), c64(c, 0));
  for (int i = 0; i < MLK_OP_INPUTS; i++)
    if (d->in[i].tensor < 0)
      store_at(c, rec, offsetof(MlkDevOp, in) + (size_t)i * sizeof(uint64_t), c64(c, 0));
  if ((d->kind == MLK_OP_KV_APPEND || d->kind == MLK_OP_ATTENTION) && d->cache >= 0 &&
      d->cache < c->g->ncaches)
    store_at(c, rec, offsetof(MlkDevOp, page), c64(c, c->g->caches[d->cache].page));
#define X(type, fname, per_op, what)                                                               \
  if (!(per_op))                                                                                   \
    store_at(c, rec, offsetof(MlkDevOp, fname), FIELD_CONST(c, fname, d->fname));
  MLK_OP_ATTRS(X)
#undef X
  if (has_split_form(d) && !split_form)
    store_at(c, rec, offsetof(MlkDevOp, split), FIELD_CONST(c, split, 0));
  LLVMValueRef args[] = {rec, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2)};
  LLVMBuildRet(c->b, call(c, inl, args, 3)); /* the tasks whose notifies are due (MlkTaskDone) */
  LLVMPositionBuilderAtEnd(c->b, saved);
  return fn;
}

/* The kernel's parameters, in the order of the entry's signature (mlk_desc.h). */
enum { P_OPS, P_SYNCS, P_COUNTERS, P_QOFF, P_QUEUE, P_EPOCH, P_TIMEOUT, P_ERR, P_RT, P_TRACE,
       P_COUNT };
static const char *const param_names[P_COUNT] = {"ops", "syncs", "counters", "qoff", "queue",
                                                 "epoch", "timeout_ns", "err", "rt", "trace"};

static void add_annotation(Cg *c, LLVMValueRef fn, const char *key, int value) {
  LLVMMetadataRef md[] = {LLVMValueAsMetadata(fn), LLVMMDStringInContext2(c->ctx, key, strlen(key)),
                          LLVMValueAsMetadata(c32(c, value))};
  LLVMAddNamedMetadataOperand(c->mod, "nvvm.annotations",
                              LLVMMetadataAsValue(c->ctx, LLVMMDNodeInContext2(c->ctx, md, 3)));
}

/* One megakernel: an interpreter over the op records. Per task: read the word, point at the op's
 * record, prefetch (matvec weights), wait (the record's wait list), dispatch on the record's kind
 * to mlk_task_<kind> (one call site per kind the megakernel uses), barrier, notify, trace. */
static void emit_kernel(Cg *c, int kernel) {
  const GKernel *k = &c->g->kernels[kernel];
  LLVMTypeRef params[P_COUNT];
  for (int i = 0; i < P_COUNT; i++)
    params[i] = c->ptr;
  params[P_EPOCH] = c->i32;
  params[P_TIMEOUT] = c->i64;
  LLVMTypeRef ft = LLVMFunctionType(c->voidt, params, P_COUNT, 0);
  c->fn = LLVMAddFunction(c->mod, k->entry, ft);
  LLVMSetFunctionCallConv(c->fn, LLVMPTXKernelCallConv);
  copy_target_attrs(c, c->fn);
  /* the records and queues never change during a launch: noalias + readonly lets the backend read
   * them through the non-coherent cache */
  static const int readonly[] = {P_OPS, P_SYNCS, P_QOFF, P_QUEUE};
  for (unsigned i = 0; i < sizeof readonly / sizeof *readonly; i++) {
    add_attr(c, c->fn, (unsigned)readonly[i] + 1, "noalias");
    add_attr(c, c->fn, (unsigned)readonly[i] + 1, "readonly");
  }
  /* older NVPTX backends also look for the annotation; the block size bounds registers */
  add_annotation(c, c->fn, "kernel", 1);
  add_annotation(c, c->fn, "maxntidx", MLK_BLOCK_THREADS);
  LLVMValueRef p[P_COUNT];
  for (unsigned i = 0; i < P_COUNT; i++) {
    p[i] = LLVMGetParam(c->fn, i);
    LLVMSetValueName2(p[i], param_names[i], strlen(param_names[i]));
  }
  bool dynamic = k->schedule == MLK_SCHED_DYNAMIC;

  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry");
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "task");
  LLVMBasicBlockRef ready = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ready");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "done");
  LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "exit");

  LLVMPositionBuilderAtEnd(c->b, entry);
  LLVMValueRef bid = intrinsic(c, "llvm.nvvm.read.ptx.sreg.ctaid.x");
  LLVMValueRef bid1 = LLVMBuildAdd(c->b, bid, c32(c, 1), "");
  LLVMValueRef qs, qe, ticket = NULL, tbase = NULL;
  if (dynamic) {
    /* tickets of run `epoch` start at (epoch - 1) * (ntasks + blocks), mod 2^32 */
    LLVMValueRef one = c32(c, 1);
    qs = c32(c, 0);
    qe = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, p[P_QOFF], &one, 1, ""), "ntasks");
    LLVMValueRef per_run = LLVMBuildAdd(c->b, qe, intrinsic(c, "llvm.nvvm.read.ptx.sreg.nctaid.x"), "");
    tbase = LLVMBuildMul(c->b, LLVMBuildSub(c->b, p[P_EPOCH], one, ""), per_run, "ticket_base");
    LLVMValueRef tidx = c64(c, MLK_TICKET_COUNTER(c->g->ncounters, kernel));
    ticket = LLVMBuildGEP2(c->b, c->i32, p[P_COUNTERS], &tidx, 1, "ticket");
  } else {
    qs = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, p[P_QOFF], &bid, 1, ""), "qstart");
    qe = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, p[P_QOFF], &bid1, 1, ""), "qend");
  }
  uint32_t used = kinds_used(c->g, kernel);
  bool stream = (used & (1u << MLK_OP_MATVEC)) != 0;
  if (stream) {
    /* the weight stream walks the block's queue ahead of it: off with the dynamic schedule */
    LLVMValueRef sargs[] = {p[P_QOFF], p[P_QUEUE], p[P_RT], c32(c, dynamic ? 0 : 1)};
    call(c, "mlk_stream_start", sargs, 4);
  }
  /* the run's batch, for the variants with a split form (read once: a launch is one run) */
  LLVMValueRef batch = NULL;
  for (int v = 0; v < k->nvariants && !batch; v++)
    if (has_split_form(&c->g->ops[k->variant_ops[v]].d)) {
      LLVMValueRef bi = c64(c, MLK_RT_BATCH);
      batch = LLVMBuildLoad2(c->b, c->i64, LLVMBuildGEP2(c->b, c->i64, p[P_RT], &bi, 1, ""), "batch");
    }
  LLVMTypeRef rec_t = LLVMArrayType2(LLVMInt8TypeInContext(c->ctx), sizeof(MlkDevOp));
  /* Static schedule: the words of the next two tasks are loaded a task ahead, so that the next
   * task's record can be prefetched while this one runs without waiting for its word (the queue
   * array has MLK_QUEUE_PAD zero words after its end, so these loads stay inside it). */
  LLVMValueRef w0 = NULL, w1 = NULL;
  if (!dynamic) {
    LLVMValueRef qs1 = LLVMBuildAdd(c->b, qs, c32(c, 1), "");
    w0 = LLVMBuildLoad2(c->b, c->i64, LLVMBuildGEP2(c->b, c->i64, p[P_QUEUE], &qs, 1, ""), "first");
    w1 = LLVMBuildLoad2(c->b, c->i64, LLVMBuildGEP2(c->b, c->i64, p[P_QUEUE], &qs1, 1, ""), "second");
  }
  LLVMBuildBr(c->b, loop);

  LLVMPositionBuilderAtEnd(c->b, loop);
  LLVMValueRef q, cur = NULL, nxt = NULL;
  if (dynamic) {
    LLVMValueRef t = call(c, "mlk_dev_ticket", &ticket, 1);
    q = LLVMBuildSub(c->b, t, tbase, "q");
  } else {
    q = LLVMBuildPhi(c->b, c->i32, "q");
    cur = LLVMBuildPhi(c->b, c->i64, "cur");
    nxt = LLVMBuildPhi(c->b, c->i64, "next");
  }
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntULT, q, qe, ""), body, exit);

  LLVMPositionBuilderAtEnd(c->b, body);
  LLVMValueRef word, after_next = NULL;
  if (dynamic) {
    word = LLVMBuildLoad2(c->b, c->i64, LLVMBuildGEP2(c->b, c->i64, p[P_QUEUE], &q, 1, ""), "word");
  } else {
    word = cur;
    LLVMValueRef q2 = LLVMBuildAdd(c->b, q, c32(c, 2), "");
    after_next = LLVMBuildLoad2(c->b, c->i64, LLVMBuildGEP2(c->b, c->i64, p[P_QUEUE], &q2, 1, ""),
                                "after_next");
    LLVMValueRef nop = LLVMBuildLShr(c->b, nxt, c64(c, 32), "");
    LLVMValueRef next_rec = LLVMBuildGEP2(c->b, rec_t, p[P_OPS], &nop, 1, "next_rec");
    call(c, "mlk_dev_prefetch_record", &next_rec, 1);
  }
  LLVMValueRef begin[] = {p[P_TRACE], q, word};
  call(c, "mlk_dev_trace_begin", begin, 3);
  LLVMValueRef op = LLVMBuildTrunc(c->b, LLVMBuildLShr(c->b, word, c64(c, 32), ""), c->i32, "op");
  LLVMValueRef task32 = LLVMBuildTrunc(c->b, word, c->i32, "task32");
  LLVMValueRef task = LLVMBuildZExt(c->b, task32, c->i64, "task");
  LLVMValueRef op64 = LLVMBuildZExt(c->b, op, c->i64, "");
  LLVMValueRef rec = LLVMBuildGEP2(c->b, rec_t, p[P_OPS], &op64, 1, "rec");
  if (stream) {
    /* weights depend on no event: the stream copies coming tasks' weights into shared memory,
     * the others go to L2, before the waits */
    LLVMValueRef pf[] = {rec, task, p[P_RT]};
    call(c, "mlk_task_prefetch", pf, 3);
    call(c, "mlk_stream_pump", NULL, 0);
  }
  LLVMValueRef wargs[] = {rec, p[P_SYNCS], p[P_COUNTERS], op, task32, p[P_EPOCH], p[P_TIMEOUT],
                          p[P_ERR]};
  LLVMValueRef ok = call(c, "mlk_dev_task_wait", wargs, 8);
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntNE, ok, c32(c, 0), ""), ready, exit);

  LLVMPositionBuilderAtEnd(c->b, ready);
  LLVMValueRef stamp_ready[] = {p[P_TRACE], q, c32(c, MLK_TRACE_READY)};
  call(c, "mlk_dev_trace_stamp", stamp_ready, 3);
  /* one call site per code variant (MlkKernelDesc), chosen by the record's variant */
  LLVMValueRef vidx = c64(c, (int64_t)offsetof(MlkDevOp, variant));
  LLVMValueRef variant = LLVMBuildLoad2(
      c->b, c->i32, LLVMBuildGEP2(c->b, LLVMInt8TypeInContext(c->ctx), rec, &vidx, 1, ""), "variant");
  /* what the task completes (MlkTaskDone): the variant's answer, or the task itself */
  LLVMValueRef self = LLVMBuildOr(c->b, LLVMBuildShl(c->b, task, c64(c, 32), ""), c64(c, 1), "self");
  LLVMValueRef sw = LLVMBuildSwitch(c->b, variant, done, (unsigned)k->nvariants);
  /* the phi's incoming edges: the switch's default, then one or two (forms) a variant */
  LLVMBasicBlockRef *from = malloc(((size_t)k->nvariants * 2 + 1) * sizeof *from);
  LLVMValueRef *answers = malloc(((size_t)k->nvariants * 2 + 1) * sizeof *answers);
  if (!from || !answers)
    MLKC_BUG("out of memory");
  unsigned nin = 0;
  from[nin] = ready, answers[nin++] = self;
  LLVMValueRef targs[] = {rec, task, p[P_RT]};
  for (int v = 0; v < k->nvariants; v++) {
    const MlkOpDesc *vd = &c->g->ops[k->variant_ops[v]].d;
    LLVMValueRef vf = emit_variant(c, kernel, v, false);
    size_t n;
    const char *vname = LLVMGetValueName2(vf, &n);
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, vname + 12);
    LLVMAddCase(sw, c32(c, v), bb);
    LLVMPositionBuilderAtEnd(c->b, bb);
    if (has_split_form(vd)) {
      /* the form is the task's at this run's batch: the split one in its own function */
      LLVMValueRef sf = emit_variant(c, kernel, v, true);
      LLVMBasicBlockRef sbb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "split_form");
      LLVMBasicBlockRef pbb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "plain_form");
      /* the op's smallest task's rows (its last) */
      LLVMValueRef sargs[] = {c64(c, vd->split), c64(c, vd->k), c64(c, vd->ntasks), batch, task,
                              c64(c, vd->n - (vd->ntasks - 1) * vd->tile)};
      LLVMValueRef taken = call(c, "mlk_task_matvec_splits", sargs, 6);
      LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntNE, taken, c32(c, 0), ""), sbb, pbb);
      LLVMPositionBuilderAtEnd(c->b, sbb);
      answers[nin] = LLVMBuildCall2(c->b, LLVMGlobalGetValueType(sf), sf, targs, 3, "");
      from[nin++] = sbb;
      LLVMBuildBr(c->b, done);
      LLVMPositionBuilderAtEnd(c->b, pbb);
      bb = pbb;
    }
    answers[nin] = LLVMBuildCall2(c->b, LLVMGlobalGetValueType(vf), vf, targs, 3, "");
    from[nin++] = bb;
    LLVMBuildBr(c->b, done);
  }

  LLVMPositionBuilderAtEnd(c->b, done);
  LLVMValueRef completed = LLVMBuildPhi(c->b, c->i64, "completed");
  LLVMAddIncoming(completed, answers, from, nin);
  free(from);
  free(answers);
  call(c, "mlk_dev_barrier", NULL, 0);
  LLVMValueRef nargs[] = {rec, p[P_SYNCS], p[P_COUNTERS], completed};
  call(c, "mlk_dev_task_notify", nargs, 4);
  LLVMValueRef stamp_end[] = {p[P_TRACE], q, c32(c, MLK_TRACE_END)};
  call(c, "mlk_dev_trace_stamp", stamp_end, 3);
  if (!dynamic) {
    LLVMValueRef q1 = LLVMBuildAdd(c->b, q, c32(c, 1), "");
    LLVMBasicBlockRef inc_b[] = {entry, done};
    LLVMValueRef q_v[] = {qs, q1}, cur_v[] = {w0, nxt}, nxt_v[] = {w1, after_next};
    LLVMAddIncoming(q, q_v, inc_b, 2);
    LLVMAddIncoming(cur, cur_v, inc_b, 2);
    LLVMAddIncoming(nxt, nxt_v, inc_b, 2);
  }
  LLVMBuildBr(c->b, loop);

  LLVMPositionBuilderAtEnd(c->b, exit);
  if (stream)
    call(c, "mlk_stream_drain", NULL, 0); /* copies still in flight after a failed wait */
  LLVMBuildRetVoid(c->b);
}

static bool is_entry(const Graph *g, const char *name) {
  for (int k = 0; k < g->nkernels; k++)
    if (!strcmp(g->kernels[k].entry, name))
      return true;
  return false;
}

bool codegen_graph(const Graph *g, const CodegenOptions *opt, bool emit_llvm, char **out, Diag *d) {
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();

  bool sm90 = !strcmp(opt->arch, "sm_90a");
  const char *bc = sm90 ? mlk_tiles_bc_sm90a : mlk_tiles_bc_sm80;
  size_t bclen = sm90 ? (size_t)(mlk_tiles_bc_sm90a_end - mlk_tiles_bc_sm90a)
                      : (size_t)(mlk_tiles_bc_sm80_end - mlk_tiles_bc_sm80);

  Cg c = {.g = g};
  c.ctx = LLVMContextCreate();
  LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRange(bc, bclen, "mlk_tiles", 0);
  LLVMModuleRef tiles;
  if (LLVMParseBitcodeInContext2(c.ctx, buf, &tiles))
    MLKC_BUG("cannot parse the embedded tile bitcode (%zu bytes)", bclen);
  LLVMDisposeMemoryBuffer(buf);

  c.mod = LLVMModuleCreateWithNameInContext(g->name, c.ctx);
  LLVMSetTarget(c.mod, TRIPLE);
  LLVMSetDataLayout(c.mod, LLVMGetDataLayoutStr(tiles));
  if (LLVMLinkModules2(c.mod, tiles))
    MLKC_BUG("linking the tile bitcode failed");

  c.b = LLVMCreateBuilderInContext(c.ctx);
  c.i32 = LLVMInt32TypeInContext(c.ctx);
  c.i64 = LLVMInt64TypeInContext(c.ctx);
  c.f32 = LLVMFloatTypeInContext(c.ctx);
  c.ptr = LLVMPointerTypeInContext(c.ctx, 0);
  c.voidt = LLVMVoidTypeInContext(c.ctx);
  c.cpu = opt->arch;
  c.features = xstrndup("", 0);
  LLVMValueRef probe = LLVMGetNamedFunction(c.mod, "mlk_tile_matvec");
  LLVMAttributeRef fa =
      probe ? LLVMGetStringAttributeAtIndex(probe, LLVMAttributeFunctionIndex, "target-features", 15)
            : NULL;
  if (fa) {
    unsigned n;
    const char *v = LLVMGetStringAttributeValue(fa, &n);
    free((char *)c.features);
    c.features = xstrndup(v, n);
  }
  for (int k = 0; k < g->nkernels; k++)
    emit_kernel(&c, k);
  LLVMDisposeBuilder(c.b);

  /* Only the entries are visible: the tiles get inlined and their bodies dropped. */
  for (LLVMValueRef f = LLVMGetFirstFunction(c.mod); f; f = LLVMGetNextFunction(f)) {
    size_t n;
    const char *name = LLVMGetValueName2(f, &n);
    if (!LLVMIsDeclaration(f) && !is_entry(g, name))
      LLVMSetLinkage(f, LLVMInternalLinkage);
  }

  /* The tiles' globals are shared scratch, not exports; but the launch-time knobs stay visible
   * (the runtime writes them by name after loading the module: mlk_desc.h MlkDevTune), and so
   * not folded into their initial values. */
  for (LLVMValueRef gv = LLVMGetFirstGlobal(c.mod); gv; gv = LLVMGetNextGlobal(gv)) {
    size_t n;
    const char *name = LLVMGetValueName2(gv, &n);
    if (!LLVMIsDeclaration(gv) && strcmp(name, MLK_DEV_TUNE_SYMBOL) != 0)
      LLVMSetLinkage(gv, LLVMInternalLinkage);
  }

  char *msg = NULL;
  if (LLVMVerifyModule(c.mod, LLVMReturnStatusAction, &msg))
    MLKC_BUG("generated LLVM module does not verify:\n%s", msg);
  LLVMDisposeMessage(msg);

  LLVMTargetRef target;
  if (LLVMGetTargetFromTriple(TRIPLE, &target, &msg)) {
    diag_fatal(d, "LLVM has no NVPTX target: %s", msg);
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(c.mod);
    LLVMContextDispose(c.ctx);
    free((char *)c.features);
    return false;
  }
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(
      target, TRIPLE, opt->arch, c.features, opt->opt_level >= 2 ? LLVMCodeGenLevelAggressive
                                                              : LLVMCodeGenLevelDefault,
      LLVMRelocDefault, LLVMCodeModelDefault);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  char pipeline[96];
  /* From -O2 on, a second round: the variants' constants reach the arguments of the tiles' out of
   * line helpers (attend_*, matvec_*) only after the first round inlined the tasks into the
   * variants; interprocedural constant propagation then specializes the helpers (with a clone per
   * set of constants when their callers differ), and the second round folds what that exposes.
   * Without it, every division by a head_dim or page in those helpers stays a 64-bit division. */
  if (opt->opt_level >= 2)
    snprintf(pipeline, sizeof pipeline, "default<O%d>,ipsccp,deadargelim,default<O%d>",
             opt->opt_level, opt->opt_level);
  else
    snprintf(pipeline, sizeof pipeline, "default<O%d>", opt->opt_level);
  LLVMErrorRef perr = LLVMRunPasses(c.mod, pipeline, tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (perr) {
    char *m = LLVMGetErrorMessage(perr);
    diag_fatal(d, "LLVM pass pipeline failed: %s", m);
    LLVMDisposeErrorMessage(m);
    LLVMDisposeTargetMachine(tm);
    LLVMDisposeModule(c.mod);
    LLVMContextDispose(c.ctx);
    free((char *)c.features);
    return false;
  }
  if (LLVMVerifyModule(c.mod, LLVMReturnStatusAction, &msg))
    MLKC_BUG("optimized LLVM module does not verify:\n%s", msg);
  LLVMDisposeMessage(msg);

  bool ok = true;
  if (emit_llvm) {
    char *s = LLVMPrintModuleToString(c.mod);
    *out = strdup(s);
    LLVMDisposeMessage(s);
  } else {
    LLVMMemoryBufferRef ptx;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, c.mod, LLVMAssemblyFile, &msg, &ptx)) {
      diag_fatal(d, "PTX emission failed: %s", msg);
      LLVMDisposeMessage(msg);
      ok = false;
    } else {
      size_t n = LLVMGetBufferSize(ptx);
      *out = malloc(n + 1);
      if (!*out)
        MLKC_BUG("out of memory");
      memcpy(*out, LLVMGetBufferStart(ptx), n);
      (*out)[n] = 0;
      LLVMDisposeMemoryBuffer(ptx);
    }
  }
  LLVMDisposeTargetMachine(tm);
  LLVMDisposeModule(c.mod);
  LLVMContextDispose(c.ctx);
  free((char *)c.features);
  return ok;
}
