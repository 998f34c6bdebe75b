/* codegen.c: builds the persistent megakernel with the LLVM-C API and emits PTX.
 *
 * For each megakernel of the graph, one kernel entry (PTX kernel calling convention):
 *
 *   void ENTRY(const MlkDevOp *ops, const MlkDevEvent *events, const u32 *refs, u32 *counters,
 *              const u32 *qoff, const u64 *queue, u32 epoch, u64 timeout_ns, MlkDevError *err,
 *              const i64 *rt, u64 *trace)                                        (mlk_desc.h)
 *
 * The kernel is an interpreter over op records the runtime builds (MlkDevOp): the model's ops are
 * data, and the code holds one call site per op kind the megakernel uses, so its size, its
 * registers and ptxas's time stay the same whatever the depth of the model. Static schedule:
 * block b walks queue[qoff[b] .. qoff[b+1]) of task words (op << 32 | task). Dynamic schedule:
 * the blocks take queue[0 .. qoff[1]) in order from a shared ticket counter. Per task: point at
 * the op's record, prefetch a matvec's weights, wait for the record's events
 * (mlk_dev_task_wait), switch on the record's kind to mlk_task_<kind> (stdlib/task.c, the same
 * dispatch the simulator runs), barrier, notify (mlk_dev_task_notify). The stdlib tile bitcode
 * (embedded in mlkc at build time) is linked in, everything but the entries is internalized, and
 * the O3 pipeline optimizes the whole before the NVPTX backend writes PTX. With a trace buffer,
 * thread 0 stamps %globaltimer when the block takes a task, when its waits are satisfied and when
 * it is done.
 */
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

static const char *const task_fns[] = {
#define X(K, name, r0, r1, r2, r3) "mlk_task_" #name,
    MLK_OP_KINDS(X)
#undef X
};
_Static_assert(sizeof task_fns / sizeof *task_fns == MLK_OP_KIND_COUNT, "one task function per kind");
_Static_assert(MLK_OP_KIND_COUNT <= 32, "kinds_used is a 32-bit set");

/* The kernel's parameters, in the order of the entry's signature (mlk_desc.h). */
enum { P_OPS, P_EVENTS, P_REFS, P_COUNTERS, P_QOFF, P_QUEUE, P_EPOCH, P_TIMEOUT, P_ERR, P_RT,
       P_TRACE, P_COUNT };
static const char *const param_names[P_COUNT] = {"ops", "events", "refs", "counters", "qoff",
                                                 "queue", "epoch", "timeout_ns", "err", "rt",
                                                 "trace"};

static void add_annotation(Cg *c, LLVMValueRef fn, const char *key, int value) {
  LLVMMetadataRef md[] = {LLVMValueAsMetadata(fn), LLVMMDStringInContext2(c->ctx, key, strlen(key)),
                          LLVMValueAsMetadata(c32(c, value))};
  LLVMAddNamedMetadataOperand(c->mod, "nvvm.annotations",
                              LLVMMetadataAsValue(c->ctx, LLVMMDNodeInContext2(c->ctx, md, 3)));
}

static void add_attr(Cg *c, LLVMValueRef fn, unsigned idx, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(c->ctx, kind, 0));
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
  /* the same target attributes as the tiles, so that the inliner treats them as compatible */
  LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(c->ctx, "target-cpu", 10, c->cpu, strlen(c->cpu)));
  LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(c->ctx, "target-features", 15, c->features,
                                                    strlen(c->features)));
  /* the tiles are freestanding ("no-builtins"); the inliner refuses to mix the two */
  LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(c->ctx, "no-builtins", 11, "", 0));
  /* the records and queues never change during a launch: noalias + readonly lets the backend read
   * them through the non-coherent cache */
  static const int readonly[] = {P_OPS, P_EVENTS, P_REFS, P_QOFF, P_QUEUE};
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
  LLVMTypeRef rec_t = LLVMArrayType2(LLVMInt8TypeInContext(c->ctx), sizeof(MlkDevOp));
  LLVMBuildBr(c->b, loop);

  LLVMPositionBuilderAtEnd(c->b, loop);
  LLVMValueRef q;
  if (dynamic) {
    LLVMValueRef t = call(c, "mlk_dev_ticket", &ticket, 1);
    q = LLVMBuildSub(c->b, t, tbase, "q");
  } else {
    q = LLVMBuildPhi(c->b, c->i32, "q");
  }
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntULT, q, qe, ""), body, exit);

  LLVMPositionBuilderAtEnd(c->b, body);
  LLVMValueRef word = LLVMBuildLoad2(c->b, c->i64, LLVMBuildGEP2(c->b, c->i64, p[P_QUEUE], &q, 1, ""), "word");
  LLVMValueRef begin[] = {p[P_TRACE], q, word};
  call(c, "mlk_dev_trace_begin", begin, 3);
  LLVMValueRef op = LLVMBuildTrunc(c->b, LLVMBuildLShr(c->b, word, c64(c, 32), ""), c->i32, "op");
  LLVMValueRef task32 = LLVMBuildTrunc(c->b, word, c->i32, "task32");
  LLVMValueRef task = LLVMBuildZExt(c->b, task32, c->i64, "task");
  LLVMValueRef op64 = LLVMBuildZExt(c->b, op, c->i64, "");
  LLVMValueRef rec = LLVMBuildGEP2(c->b, rec_t, p[P_OPS], &op64, 1, "rec");
  uint32_t used = kinds_used(c->g, kernel);
  if (used & (1u << MLK_OP_MATVEC)) {
    /* weights depend on no event: start streaming them into L2 before waiting */
    LLVMValueRef pf[] = {rec, task};
    call(c, "mlk_task_prefetch", pf, 2);
  }
  LLVMValueRef wargs[] = {rec, p[P_EVENTS], p[P_REFS], p[P_COUNTERS], op, task32, p[P_EPOCH],
                          p[P_TIMEOUT], p[P_ERR]};
  LLVMValueRef ok = call(c, "mlk_dev_task_wait", wargs, 9);
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntNE, ok, c32(c, 0), ""), ready, exit);

  LLVMPositionBuilderAtEnd(c->b, ready);
  LLVMValueRef stamp_ready[] = {p[P_TRACE], q, c32(c, MLK_TRACE_READY)};
  call(c, "mlk_dev_trace_stamp", stamp_ready, 3);
  /* MlkDevOp.kind is the record's first field */
  LLVMValueRef kind = LLVMBuildLoad2(c->b, c->i32, rec, "kind");
  int ncases = 0;
  for (int i = 0; i < MLK_OP_KIND_COUNT; i++)
    ncases += (used >> i) & 1;
  LLVMValueRef sw = LLVMBuildSwitch(c->b, kind, done, (unsigned)ncases);
  for (int i = 0; i < MLK_OP_KIND_COUNT; i++) {
    if (!(used & (1u << i)))
      continue;
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, task_fns[i] + 9);
    LLVMAddCase(sw, c32(c, i), bb);
    LLVMPositionBuilderAtEnd(c->b, bb);
    LLVMValueRef targs[] = {rec, task, p[P_RT]};
    call(c, task_fns[i], targs, 3);
    LLVMBuildBr(c->b, done);
  }

  LLVMPositionBuilderAtEnd(c->b, done);
  call(c, "mlk_dev_barrier", NULL, 0);
  LLVMValueRef nargs[] = {rec, p[P_EVENTS], p[P_REFS], p[P_COUNTERS], task32};
  call(c, "mlk_dev_task_notify", nargs, 5);
  LLVMValueRef stamp_end[] = {p[P_TRACE], q, c32(c, MLK_TRACE_END)};
  call(c, "mlk_dev_trace_stamp", stamp_end, 3);
  if (!dynamic) {
    LLVMValueRef q1 = LLVMBuildAdd(c->b, q, c32(c, 1), "");
    LLVMValueRef inc_v[] = {qs, q1};
    LLVMBasicBlockRef inc_b[] = {entry, done};
    LLVMAddIncoming(q, inc_v, inc_b, 2);
  }
  LLVMBuildBr(c->b, loop);

  LLVMPositionBuilderAtEnd(c->b, exit);
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

  for (LLVMValueRef gv = LLVMGetFirstGlobal(c.mod); gv; gv = LLVMGetNextGlobal(gv))
    if (!LLVMIsDeclaration(gv))
      LLVMSetLinkage(gv, LLVMInternalLinkage); /* shared scratch of the tiles: not an export */

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
  char pipeline[32];
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
