/* program.c: the records a megakernel's interpreter reads, built from the model description.
 *
 * The generated kernel (compiler/codegen.c) and the simulator (sim.c) both execute op records
 * (MlkDevOp), not the MlkOpDesc the compiler emitted: the same fields, with each operand resolved
 * to an address (a device address on the GPU, a host pointer in the simulator) and the cache
 * geometry an op needs copied in. Building them here, once per model and backend, is what lets the
 * device code be one call site per op kind whatever the model's depth.
 */
#include <string.h>

#include "internal.h"

/* The address of operand `a` given the tensors' base addresses, or 0 for none. */
static uint64_t operand(const MlkModelDesc *d, const uint64_t *addr, MlkArg a) {
  if (a.tensor < 0)
    return 0;
  return addr[a.tensor] + (uint64_t)a.offset * mlk_dtype_size(d->tensors[a.tensor].dtype);
}

/* The record of the event named by event_refs[r]; an event that reaches every rank gets the
 * table of the ranks' counter arrays (the peer area's first words). */
static MlkDevSync sync_of(const MlkModelDesc *d, int r, uint64_t peers) {
  int ev = d->event_refs[r];
  const MlkEventDesc *e = &d->events[ev];
  return (MlkDevSync){.event = (uint32_t)ev, .map = (uint32_t)e->map, .base = e->base, .n = e->n,
                      .ptile = e->ptile, .ctile = e->ctile, .count = e->count, .ranks = e->ranks,
                      .peers = e->ranks > 1 ? peers : 0};
}

int64_t mlk_program_peer_words(const MlkModelDesc *d) {
  int64_t n = 0;
  for (int o = 0; o < d->nops; o++)
    n += d->ops[o].kind == MLK_OP_ALLREDUCE;
  return n ? d->ranks * (1 + n) : 0;
}

int64_t mlk_program_nsyncs(const MlkModelDesc *d, int kernel) {
  const MlkKernelDesc *k = &d->kernels[kernel];
  int64_t n = 0;
  for (int o = k->first_op; o < k->first_op + k->nops; o++)
    n += d->ops[o].nwaits + d->ops[o].nnotifies;
  return n;
}

/* The scratch bytes of op `op` at the model's largest batch: a split matvec's or a folded split
 * attention's (0 for the rest). Such an op also has an arrival counter a task. */
static int64_t op_scratch_bytes(const MlkModelDesc *d, const MlkOpDesc *op) {
  if (op->kind == MLK_OP_MATVEC)
    return mlk_matvec_scratch_bytes(op->split, op->n, op->k, op->ntasks, d->batch_max);
  if (op->kind == MLK_OP_ATTENTION && mlk_attn_folds(op->split, op->n, op->heads, op->head_dim))
    return mlk_attn_scratch_bytes(op->kv_heads, op->heads, op->head_dim, op->split, op->tile,
                                  d->batch_max);
  return 0;
}

int64_t mlk_program_arrivals(const MlkModelDesc *d) {
  int64_t n = 0;
  for (int o = 0; o < d->nops; o++)
    n += op_scratch_bytes(d, &d->ops[o]) ? d->ops[o].ntasks : 0;
  return n;
}

int64_t mlk_program_scratch_bytes(const MlkModelDesc *d) {
  int64_t n = 0;
  for (int o = 0; o < d->nops; o++)
    n += op_scratch_bytes(d, &d->ops[o]);
  return n;
}

void mlk_program_kernel(const MlkModelDesc *d, int kernel, const uint64_t *addr, uint64_t peers,
                        uint64_t arrive, uint64_t scratch, MlkDevOp *out, MlkDevSync *syncs) {
  const MlkKernelDesc *k = &d->kernels[kernel];
  uint32_t ns = 0;
  int64_t allreduces = 0; /* of the model before this kernel's first op */
  for (int o = 0; o < k->first_op; o++) {
    allreduces += d->ops[o].kind == MLK_OP_ALLREDUCE;
    if (op_scratch_bytes(d, &d->ops[o])) { /* the model's split ops, in op order */
      arrive += (uint64_t)d->ops[o].ntasks * sizeof(uint32_t);
      scratch += (uint64_t)op_scratch_bytes(d, &d->ops[o]);
    }
  }
  for (int i = 0; i < k->nops; i++) {
    const MlkOpDesc *op = &d->ops[k->first_op + i];
    MlkDevOp *r = &out[i];
    memset(r, 0, sizeof *r);
    r->kind = (uint32_t)op->kind;
    r->fn = (uint32_t)op->fn;
    /* the op's waits, then its notifies, next to each other in the kernel's sync array */
    r->wait0 = ns;
    r->nwaits = (uint32_t)op->nwaits;
    for (int j = op->wait0; j < op->wait0 + op->nwaits; j++)
      syncs[ns++] = sync_of(d, j, peers);
    r->notify0 = ns;
    r->nnotifies = (uint32_t)op->nnotifies;
    for (int j = op->notify0; j < op->notify0 + op->nnotifies; j++)
      syncs[ns++] = sync_of(d, j, peers);
    r->batched = op->batched;
    r->variant = (uint32_t)op->variant;
    if (r->nwaits + r->nnotifies <= MLK_DEV_INLINE_SYNCS)
      memcpy(r->sync, syncs + r->wait0, (r->nwaits + r->nnotifies) * sizeof *syncs);
    r->n = op->n;
    r->k = op->k;
    r->tile = op->tile;
    r->ntasks = op->ntasks;
    r->out = operand(d, addr, op->out);
    for (int j = 0; j < MLK_OP_INPUTS; j++)
      r->in[j] = operand(d, addr, op->in[j]);
#define X(type, name, per_op, what) r->name = op->name;
    MLK_OP_ATTRS(X)
#undef X
    if ((op->kind == MLK_OP_KV_APPEND || op->kind == MLK_OP_ATTENTION) && op->cache >= 0 &&
        op->cache < d->ncaches)
      r->page = d->caches[op->cache].page;
    if (op->kind == MLK_OP_ALLREDUCE) /* its table of the ranks' x in the peer area (0: none yet) */
      r->in[1] = peers ? peers + (uint64_t)(d->ranks * (1 + allreduces)) * sizeof(uint64_t) : 0;
    allreduces += op->kind == MLK_OP_ALLREDUCE;
    if (op_scratch_bytes(d, op)) {
      r->arrive = arrive, r->scratch = scratch;
      arrive += (uint64_t)op->ntasks * sizeof(uint32_t);
      scratch += (uint64_t)op_scratch_bytes(d, op);
    }
  }
}

