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

void mlk_program_ops(const MlkModelDesc *d, int kernel, const uint64_t *addr, MlkDevOp *out) {
  const MlkKernelDesc *k = &d->kernels[kernel];
  for (int i = 0; i < k->nops; i++) {
    const MlkOpDesc *op = &d->ops[k->first_op + i];
    MlkDevOp *r = &out[i];
    memset(r, 0, sizeof *r);
    r->kind = (uint32_t)op->kind;
    r->fn = (uint32_t)op->fn;
    r->wait0 = (uint32_t)op->wait0;
    r->nwaits = (uint32_t)op->nwaits;
    r->notify0 = (uint32_t)op->notify0;
    r->nnotifies = (uint32_t)op->nnotifies;
    r->batched = op->batched;
    r->n = op->n;
    r->k = op->k;
    r->tile = op->tile;
    r->ntasks = op->ntasks;
    r->out = operand(d, addr, op->out);
    for (int j = 0; j < 4; j++)
      r->in[j] = operand(d, addr, op->in[j]);
#define X(type, name, what) r->name = op->name;
    MLK_OP_ATTRS(X)
#undef X
    if ((op->kind == MLK_OP_KV_APPEND || op->kind == MLK_OP_ATTENTION) && op->cache >= 0 &&
        op->cache < d->ncaches)
      r->page = d->caches[op->cache].page;
  }
}

void mlk_program_events(const MlkModelDesc *d, MlkDevEvent *out) {
  for (int i = 0; i < d->nevents; i++) {
    const MlkEventDesc *e = &d->events[i];
    out[i] = (MlkDevEvent){.map = (uint32_t)e->map, .base = e->base, .n = e->n, .ptile = e->ptile,
                           .ctile = e->ctile, .count = e->count};
  }
}

void mlk_program_refs(const MlkModelDesc *d, uint32_t *out) {
  for (int i = 0; i < d->nevent_refs; i++)
    out[i] = (uint32_t)d->event_refs[i];
}
