/* codegen.c: builds the persistent megakernel with the LLVM-C API and emits PTX.
 *
 * For each megakernel of the graph, one kernel entry (PTX kernel calling convention):
 *
 *   void ENTRY(u64 *bufs, u32 *counters, const u32 *qoff, const u32 *queue, u32 epoch,
 *              u64 timeout_ns, MlkDevError *err, const i64 *rt, u64 *trace)   (mlk_desc.h)
 *
 * Static schedule: block b walks queue[qoff[b] .. qoff[b+1]) of task words (op << 24 | task).
 * Dynamic schedule: the blocks take queue[0 .. qoff[1]) in order from a shared ticket counter.
 * Per task: for every
 * event tensor the op consumes, wait on the counter given by the index map until it reaches
 * epoch * start_value; run the op's tile; barrier; notify every counter of each event it
 * produces. The index maps and start values are the arithmetic of mlk_desc.h, emitted as IR with
 * the op's constants. The stdlib tile bitcode (embedded in mlkc at build time) is linked in,
 * everything but the entries is internalized, and the O3 pipeline inlines the tiles into the
 * skeleton before the NVPTX backend writes PTX. With a trace buffer, thread 0 stamps %globaltimer
 * when the block takes a task, when its waits are satisfied and when it is done.
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
  /* the kernel being built */
  LLVMValueRef fn, bufs, counters, epoch, timeout, err, rt, trace;
  LLVMValueRef slot; /* the current task's trace slot (i32) */
  LLVMBasicBlockRef exit;
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

static LLVMValueRef smin64(Cg *c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, a, b, ""), a, b, "");
}

static LLVMValueRef cf32(Cg *c, double v) { return LLVMConstReal(c->f32, v); }

static size_t dtype_size(MlkDType t) {
  return t == MLK_F32 || t == MLK_I32 ? 4 : t == MLK_BF16 || t == MLK_F16 ? 2 : 1;
}

/* Pointer to an operand: bufs[t] plus its element offset (NULL for no operand). */
static LLVMValueRef arg_ptr(Cg *c, MlkArg a) {
  if (a.tensor < 0)
    return LLVMConstNull(c->ptr);
  LLVMValueRef idx = c64(c, a.tensor);
  LLVMValueRef slot = LLVMBuildGEP2(c->b, c->ptr, c->bufs, &idx, 1, "");
  LLVMValueRef p = LLVMBuildLoad2(c->b, c->ptr, slot, c->g->tensors[a.tensor].name);
  if (a.offset) {
    LLVMValueRef off = c64(c, a.offset * (int64_t)dtype_size(c->g->tensors[a.tensor].dtype));
    p = LLVMBuildGEP2(c->b, LLVMInt8TypeInContext(c->ctx), p, &off, 1, "");
  }
  return p;
}

/* rt[i], a run-time value (mlk_desc.h MLK_RT_*). */
static LLVMValueRef rt_value(Cg *c, int i, const char *name) {
  LLVMValueRef idx = c64(c, i);
  return LLVMBuildLoad2(c->b, c->i64, LLVMBuildGEP2(c->b, c->i64, c->rt, &idx, 1, ""), name);
}

/* &counters[base + idx] */
static LLVMValueRef counter_ptr(Cg *c, const MlkEventDesc *e, LLVMValueRef idx) {
  LLVMValueRef off = LLVMBuildAdd(c->b, c64(c, e->base), idx, "");
  return LLVMBuildGEP2(c->b, c->i32, c->counters, &off, 1, "");
}

/* Waits of op `o` for task `task` (i64); branches to the kernel exit when a wait fails. */
static void emit_waits(Cg *c, int o, LLVMValueRef word, LLVMValueRef task) {
  const Graph *g = c->g;
  for (int i = 0; i < g->nevents; i++) {
    const MlkEventDesc *e = &g->events[i];
    if (e->consumer != o)
      continue;
    LLVMValueRef idx, start;
    if (e->map == MLK_MAP_ALL) {
      idx = c64(c, 0);
      start = c64(c, mlk_event_start_value(e, 0));
    } else {
      /* start value = (min((i+1)*ctile, n) - 1)/ptile - i*ctile/ptile + 1 */
      idx = task;
      LLVMValueRef lo = LLVMBuildMul(c->b, idx, c64(c, e->ctile), "");
      LLVMValueRef hi = smin64(c, LLVMBuildAdd(c->b, lo, c64(c, e->ctile), ""), c64(c, e->n));
      LLVMValueRef last = LLVMBuildSDiv(c->b, LLVMBuildSub(c->b, hi, c64(c, 1), ""),
                                        c64(c, e->ptile), "");
      LLVMValueRef first = LLVMBuildSDiv(c->b, lo, c64(c, e->ptile), "");
      start = LLVMBuildAdd(c->b, LLVMBuildSub(c->b, last, first, ""), c64(c, 1), "start");
    }
    LLVMValueRef target =
        LLVMBuildMul(c->b, c->epoch, LLVMBuildTrunc(c->b, start, c->i32, ""), "target");
    LLVMValueRef args[] = {counter_ptr(c, e, idx), target, c->timeout, c->err, word,
                           c32(c, i), LLVMBuildTrunc(c->b, idx, c->i32, "")};
    LLVMValueRef ok = call(c, "mlk_dev_wait", args, 7);
    LLVMBasicBlockRef cont = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ready");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntNE, ok, c32(c, 0), ""), cont, c->exit);
    LLVMPositionBuilderAtEnd(c->b, cont);
  }
}

static void emit_notifies(Cg *c, int o, LLVMValueRef task) {
  const Graph *g = c->g;
  for (int i = 0; i < g->nevents; i++) {
    const MlkEventDesc *e = &g->events[i];
    if (e->producer != o)
      continue;
    LLVMValueRef lo, hi;
    if (e->map == MLK_MAP_ALL) {
      lo = hi = c64(c, 0);
    } else {
      /* [t*ptile/ctile, (min((t+1)*ptile, n) - 1)/ctile] */
      LLVMValueRef s = LLVMBuildMul(c->b, task, c64(c, e->ptile), "");
      LLVMValueRef end = smin64(c, LLVMBuildAdd(c->b, s, c64(c, e->ptile), ""), c64(c, e->n));
      lo = LLVMBuildSDiv(c->b, s, c64(c, e->ctile), "lo");
      hi = LLVMBuildSDiv(c->b, LLVMBuildSub(c->b, end, c64(c, 1), ""), c64(c, e->ctile), "hi");
    }
    LLVMValueRef base = counter_ptr(c, e, c64(c, 0));
    LLVMValueRef args[] = {base, lo, hi};
    call(c, "mlk_dev_notify", args, 3);
  }
}

static void emit_op(Cg *c, int o, LLVMValueRef word, LLVMValueRef task) {
  const MlkOpDesc *d = &c->g->ops[o].d;
  if (d->kind == MLK_OP_MATVEC) {
    /* weights depend on no event: start streaming them into L2 before waiting */
    LLVMValueRef row0 = LLVMBuildMul(c->b, task, c64(c, d->tile), "");
    LLVMValueRef args[] = {arg_ptr(c, d->in[1]), c64(c, d->n), c64(c, d->k), row0, c64(c, d->tile)};
    call(c, "mlk_tile_matvec_prefetch", args, 5);
  }
  emit_waits(c, o, word, task);
  LLVMValueRef ready[] = {c->trace, c->slot, c32(c, MLK_TRACE_READY)};
  call(c, "mlk_dev_trace_stamp", ready, 3);
  LLVMValueRef first = LLVMBuildMul(c->b, task, c64(c, d->tile), "first");
  LLVMValueRef count = smin64(c, c64(c, d->tile), LLVMBuildSub(c->b, c64(c, d->n), first, ""));
  LLVMValueRef batch = d->batched ? rt_value(c, MLK_RT_BATCH, "batch") : c64(c, 1);
  LLVMValueRef out = arg_ptr(c, d->out);
  LLVMValueRef in[4];
  for (int i = 0; i < 4; i++)
    in[i] = arg_ptr(c, d->in[i]);
  switch (d->kind) {
  case MLK_OP_MATVEC: {
    LLVMValueRef args[] = {out, in[0], in[1], in[2], in[3], cf32(c, d->eps), c64(c, d->n),
                           c64(c, d->k), first, count, batch, c32(c, d->fn)};
    call(c, "mlk_tile_matvec", args, 12);
    break;
  }
  case MLK_OP_ELTWISE: {
    LLVMValueRef args[] = {out, in[0], in[1], c64(c, d->n), first, count, batch, c32(c, d->fn)};
    call(c, "mlk_tile_eltwise", args, 8);
    break;
  }
  case MLK_OP_GATHER: {
    LLVMValueRef args[] = {out, in[0], in[1], c64(c, d->n), first, count, batch};
    call(c, "mlk_tile_gather", args, 7);
    break;
  }
  case MLK_OP_RMSNORM: {
    LLVMValueRef args[] = {out, in[0], in[1], cf32(c, d->eps), c64(c, d->n), batch};
    call(c, "mlk_tile_rmsnorm", args, 6);
    break;
  }
  case MLK_OP_ROPE: {
    LLVMValueRef args[] = {out, in[0], in[1], c64(c, d->n), c64(c, d->head_dim), first, count,
                           batch, cf32(c, d->theta), cf32(c, d->rope_factor),
                           cf32(c, d->rope_low_freq), cf32(c, d->rope_high_freq),
                           c64(c, d->rope_original_max_pos)};
    call(c, "mlk_tile_rope", args, 13);
    break;
  }
  case MLK_OP_KV_APPEND:
  case MLK_OP_ATTENTION: {
    const MlkCacheDesc *cd = &c->g->caches[d->cache];
    LLVMValueRef pps = rt_value(c, MLK_RT_PAGES_PER_SEQ(d->cache), "pages_per_seq");
    LLVMValueRef npages = rt_value(c, MLK_RT_PAGES(d->cache), "pages");
    if (d->kind == MLK_OP_KV_APPEND) {
      LLVMValueRef head0 = LLVMBuildSDiv(c->b, first, c64(c, cd->head_dim), "head0");
      LLVMValueRef nheads = LLVMBuildSDiv(c->b, count, c64(c, cd->head_dim), "nheads");
      LLVMValueRef args[] = {out, in[0], in[1], in[2], in[3], c64(c, cd->kv_heads),
                             c64(c, cd->head_dim), c64(c, cd->page), pps, npages,
                             c64(c, d->layer), head0, nheads, batch};
      call(c, "mlk_tile_kv_append", args, 14);
    } else if (d->split <= 1) {
      /* the task's columns are whole kv heads of (heads / kv_heads) * head_dim */
      int64_t per = d->heads / d->kv_heads * d->head_dim;
      LLVMValueRef kvh0 = LLVMBuildSDiv(c->b, first, c64(c, per), "kvh0");
      LLVMValueRef nkvh = LLVMBuildSDiv(c->b, count, c64(c, per), "nkvh");
      LLVMValueRef args[] = {out, in[0], in[1], in[2], in[3], c64(c, cd->kv_heads),
                             c64(c, cd->head_dim), c64(c, cd->page), pps, npages,
                             c64(c, d->layer), c64(c, d->heads), kvh0, nkvh, batch};
      call(c, "mlk_tile_attention", args, 15);
    } else {
      /* task t: the kv heads of block t / split (kvh of them, fewer in the last), chunk t % split */
      int64_t kvh = d->tile / mlk_attn_part_rec(d->heads / d->kv_heads, d->head_dim);
      LLVMValueRef blk = LLVMBuildUDiv(c->b, task, c64(c, d->split), "block");
      LLVMValueRef chunk = LLVMBuildURem(c->b, task, c64(c, d->split), "chunk");
      LLVMValueRef kvh0 = LLVMBuildMul(c->b, blk, c64(c, kvh), "kvh0");
      LLVMValueRef nkvh = smin64(c, c64(c, kvh), LLVMBuildSub(c->b, c64(c, d->kv_heads), kvh0, ""));
      LLVMValueRef args[] = {out, in[0], in[1], in[2], in[3], c64(c, cd->kv_heads),
                             c64(c, cd->head_dim), c64(c, cd->page), pps, npages,
                             c64(c, d->layer), c64(c, d->heads), c64(c, kvh), c64(c, d->split),
                             c64(c, d->min_chunk), kvh0, nkvh, chunk, batch};
      call(c, "mlk_tile_attention_split", args, 19);
    }
    break;
  }
  case MLK_OP_ATTN_REDUCE: {
    int64_t per = d->heads / d->kv_heads * d->head_dim;
    LLVMValueRef kvh0 = LLVMBuildSDiv(c->b, first, c64(c, per), "kvh0");
    LLVMValueRef nkvh = LLVMBuildSDiv(c->b, count, c64(c, per), "nkvh");
    LLVMValueRef args[] = {out, in[0], c64(c, d->kv_heads), c64(c, d->head_dim), c64(c, d->heads),
                           c64(c, d->tile / per), c64(c, d->split), kvh0, nkvh, batch};
    call(c, "mlk_tile_attn_reduce", args, 10);
    break;
  }
  case MLK_OP_ARGMAX: {
    LLVMValueRef args[] = {out, in[0], c64(c, d->k), batch};
    call(c, "mlk_tile_argmax", args, 4);
    break;
  }
  case MLK_OP_SAMPLE: {
    LLVMValueRef args[] = {out, in[0], in[1], c64(c, d->k), cf32(c, d->temperature),
                           c64(c, d->top_k), cf32(c, d->top_p), batch};
    call(c, "mlk_tile_sample", args, 8);
    break;
  }
  }
  call(c, "mlk_dev_barrier", NULL, 0);
  emit_notifies(c, o, task);
  LLVMValueRef end[] = {c->trace, c->slot, c32(c, MLK_TRACE_END)};
  call(c, "mlk_dev_trace_stamp", end, 3);
}

static void add_annotation(Cg *c, LLVMValueRef fn, const char *key, int value) {
  LLVMMetadataRef md[] = {LLVMValueAsMetadata(fn), LLVMMDStringInContext2(c->ctx, key, strlen(key)),
                          LLVMValueAsMetadata(c32(c, value))};
  LLVMAddNamedMetadataOperand(c->mod, "nvvm.annotations",
                              LLVMMetadataAsValue(c->ctx, LLVMMDNodeInContext2(c->ctx, md, 3)));
}

static void emit_kernel(Cg *c, int kernel) {
  const GKernel *k = &c->g->kernels[kernel];
  LLVMTypeRef params[] = {c->ptr, c->ptr, c->ptr, c->ptr, c->i32, c->i64, c->ptr, c->ptr, c->ptr};
  LLVMTypeRef ft = LLVMFunctionType(c->voidt, params, 9, 0);
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
  /* older NVPTX backends also look for the annotation; the block size bounds registers */
  add_annotation(c, c->fn, "kernel", 1);
  add_annotation(c, c->fn, "maxntidx", MLK_BLOCK_THREADS);
  static const char *pnames[] = {"bufs", "counters", "qoff", "queue", "epoch",
                                 "timeout_ns", "err", "rt", "trace"};
  for (unsigned i = 0; i < 9; i++)
    LLVMSetValueName2(LLVMGetParam(c->fn, i), pnames[i], strlen(pnames[i]));
  c->bufs = LLVMGetParam(c->fn, 0);
  c->counters = LLVMGetParam(c->fn, 1);
  LLVMValueRef qoff = LLVMGetParam(c->fn, 2), queue = LLVMGetParam(c->fn, 3);
  c->epoch = LLVMGetParam(c->fn, 4);
  c->timeout = LLVMGetParam(c->fn, 5);
  c->err = LLVMGetParam(c->fn, 6);
  c->rt = LLVMGetParam(c->fn, 7);
  c->trace = LLVMGetParam(c->fn, 8);
  bool dynamic = k->schedule == MLK_SCHED_DYNAMIC;

  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry");
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "task");
  LLVMBasicBlockRef latch = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "next");
  c->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "exit");

  LLVMPositionBuilderAtEnd(c->b, entry);
  LLVMValueRef bid = intrinsic(c, "llvm.nvvm.read.ptx.sreg.ctaid.x");
  LLVMValueRef bid1 = LLVMBuildAdd(c->b, bid, c32(c, 1), "");
  LLVMValueRef qs, qe, ticket = NULL, tbase = NULL;
  if (dynamic) {
    /* tickets of run `epoch` start at (epoch - 1) * (ntasks + blocks), mod 2^32 */
    LLVMValueRef one = c32(c, 1);
    qs = c32(c, 0);
    qe = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, qoff, &one, 1, ""), "ntasks");
    LLVMValueRef per_run = LLVMBuildAdd(c->b, qe, intrinsic(c, "llvm.nvvm.read.ptx.sreg.nctaid.x"), "");
    tbase = LLVMBuildMul(c->b, LLVMBuildSub(c->b, c->epoch, one, ""), per_run, "ticket_base");
    LLVMValueRef tidx = c64(c, MLK_TICKET_COUNTER(c->g->ncounters, kernel));
    ticket = LLVMBuildGEP2(c->b, c->i32, c->counters, &tidx, 1, "ticket");
  } else {
    qs = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, qoff, &bid, 1, ""), "qstart");
    qe = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, qoff, &bid1, 1, ""), "qend");
  }
  LLVMBuildBr(c->b, loop);

  LLVMPositionBuilderAtEnd(c->b, loop);
  LLVMValueRef q;
  if (dynamic) {
    LLVMValueRef t = call(c, "mlk_dev_ticket", &ticket, 1);
    q = LLVMBuildSub(c->b, t, tbase, "q");
  } else {
    q = LLVMBuildPhi(c->b, c->i32, "q");
  }
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntULT, q, qe, ""), body, c->exit);

  LLVMPositionBuilderAtEnd(c->b, body);
  LLVMValueRef word = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, queue, &q, 1, ""), "word");
  c->slot = q;
  LLVMValueRef begin[] = {c->trace, q, word};
  call(c, "mlk_dev_trace_begin", begin, 3);
  LLVMValueRef op = LLVMBuildLShr(c->b, word, c32(c, MLK_TASK_OP_SHIFT), "op");
  LLVMValueRef task = LLVMBuildZExt(
      c->b, LLVMBuildAnd(c->b, word, c32(c, MLK_TASK_INDEX_MASK), ""), c->i64, "t");
  LLVMValueRef sw = LLVMBuildSwitch(c->b, op, latch, k->nops);
  for (int i = 0; i < k->nops; i++) {
    int o = k->first_op + i;
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, c->g->ops[o].d.name);
    LLVMAddCase(sw, c32(c, i), bb);
    LLVMPositionBuilderAtEnd(c->b, bb);
    emit_op(c, o, word, task);
    LLVMBuildBr(c->b, latch);
  }

  LLVMPositionBuilderAtEnd(c->b, latch);
  if (!dynamic) {
    LLVMValueRef q1 = LLVMBuildAdd(c->b, q, c32(c, 1), "");
    LLVMValueRef inc_v[] = {qs, q1};
    LLVMBasicBlockRef inc_b[] = {entry, latch};
    LLVMAddIncoming(q, inc_v, inc_b, 2);
  }
  LLVMBuildBr(c->b, loop);

  LLVMPositionBuilderAtEnd(c->b, c->exit);
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
