/* world.c: the ranks of a sharded model, run together (mlk_world_*).
 *
 * A megakernel of a model over N ranks that all-reduces was cut by mlkc at its collectives into
 * segments (MlkKernelDesc.segment), each collective to run after the segment that computes its
 * operand (MlkCollectiveDesc.after). A world run launches segment s on every rank at once, a host
 * thread per rank (each backend makes its own context current), waits for all of them, then runs
 * the collectives after s, and goes on with segment s + 1. So no rank starts a segment before every
 * rank's sums it reads exist, which is the only cross-rank order the cut needs (mlk_desc_validate
 * checks that the segments read and write the collectives' tensors accordingly).
 *
 * A world is all its ranks in this process (a thread each, as above), or one rank per process
 * (launched by mpirun, or with MLK_WORLD_SIZE and MLK_RANK: mlk_world_options_from_env): then
 * each process runs its rank's segments, and the ranks of one host meet in a shared file
 * (rendezvous.c) for the sums, for a rank's failure and for the deadline of one that is gone.
 *
 * The sum, through one of two communicators (mlk_world_comm says which):
 *   host: every rank's rows of the operand come to the host (into the rendezvous's slots for a
 *         world of processes), are added in rank order in f32 (((r0 + r1) + r2) + ...), and the
 *         same result goes to every rank's out tensor: the same bits on every rank, in every run,
 *         in one process or several. The simulator's, and any world NCCL cannot serve;
 *   NCCL: ranks on distinct GPUs (nccl.c), of this process (ncclCommInitAll) or a process each
 *         (ncclCommInitRank, the id through the rendezvous): ncclAllReduce on the devices'
 *         default streams, in whatever order NCCL's algorithm adds (the same on every rank).
 * MLK_COMM=host or nccl chooses; unset, NCCL where it can serve, else the host. A rank that fails (a deadlock
 * its watchdog reported, a bad input) stops the run after the segment in progress on every rank,
 * and the message names the rank; the counters of every rank are left consistent by each model's
 * own failure handling, so the world can run again.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct mlk_world {
  const MlkModelDesc *desc;
  int n;                    /* ranks of the world */
  int first, nlocal;        /* the ranks this process holds: [first, first + nlocal) */
  mlk_model **models;       /* theirs, by rank - first */
  MlkRdv *rdv;              /* a world of processes: the rendezvous, else NULL */
  uint64_t ncoll;           /* collectives run (a world of processes alternates its slot sets) */
  int in_kernel;            /* its allreduces are ops of the megakernels (the ranks' peer areas) */
  mlk_backend *own_backend; /* the simulator made for a world created without backends, or NULL */
  float *acc, *part;        /* host buffers of the sums: a collective's rows */
  size_t buf_floats;
  MlkNccl *nccl;            /* the NCCL communicators, or NULL: the host sums */
  uint64_t *send, *recv;    /* a collective's device addresses, per rank */
};

/* NCCL for a world of GPUs on distinct devices unless MLK_COMM=host; the host otherwise, and when
 * NCCL cannot be had (with MLK_COMM=nccl that is an error). */
static mlk_status pick_comm(mlk_world *w, mlk_backend *const *bes) {
  const char *want = getenv("MLK_COMM");
  if (want && *want && strcmp(want, "host") && strcmp(want, "nccl"))
    return mlk_set_error(MLK_ERR_INVALID, "MLK_COMM='%s': host or nccl", want);
  if ((want && !strcmp(want, "host")) || w->n < 2 || !w->desc->ncollectives)
    return MLK_OK;
  const char *why = NULL;
  mlk_status st = MLK_OK;
  char msg[1024];
  if (w->rdv) { /* every rank of the processes takes part in the choice */
    st = mlk_nccl_create_rank(w->first, w->n, w->models[0]->be->device, w->rdv, &w->nccl);
    if (st == MLK_ERR_NO_GPU) {
      snprintf(msg, sizeof msg, "%s", mlk_last_error());
      why = msg;
    } else if (st) {
      return st;
    }
  } else {
    int *devs = MLK_CALLOC((size_t)w->n, sizeof *devs, "world devices");
    if (!devs)
      return MLK_ERR_NOMEM;
    for (int r = 0; r < w->n && !why; r++) {
      devs[r] = bes ? bes[r]->device : -1;
      if (devs[r] < 0)
        why = "a rank runs on the CPU simulator";
      for (int q = 0; q < r && !why; q++)
        if (devs[q] == devs[r])
          why = "two ranks share a GPU";
    }
    if (!why && (st = mlk_nccl_create(devs, w->n, &w->nccl))) {
      snprintf(msg, sizeof msg, "%s", mlk_last_error());
      why = msg;
    }
    free(devs);
  }
  if (why && want && !strcmp(want, "nccl"))
    return mlk_set_error(st ? st : MLK_ERR_INVALID, "MLK_COMM=nccl: %s", why);
  if (why)
    mlk_debug("world of %d ranks: the host sums its collectives (%s)", w->n, why);
  if (w->nccl && (!(w->send = MLK_CALLOC((size_t)w->nlocal, sizeof *w->send, "collective addresses")) ||
                  !(w->recv = MLK_CALLOC((size_t)w->nlocal, sizeof *w->recv, "collective addresses"))))
    return MLK_ERR_NOMEM;
  return MLK_OK;
}

/* A model whose allreduces are ops of its megakernels (mlkc --collectives=kernel): every rank
 * reads the others' operands and bumps their counters, so each rank's model gets the peer area
 * (program.c): the ranks' counter arrays and, per allreduce, the ranks' operands. The ranks must
 * all be in this process, and on the GPU each on a GPU of its own with peer access: the
 * megakernels of two ranks occupy every SM of their GPU and wait for each other, so they must
 * run at once. */
static mlk_status in_kernel_peers(mlk_world *w, const mlk_world_options *opt) {
  const MlkModelDesc *d = w->desc;
  int64_t nwords = mlk_program_peer_words(d);
  if (!nwords)
    return MLK_OK;
  if (w->rdv)
    return mlk_set_error(MLK_ERR_INVALID, "model '%s' all-reduces inside its megakernels: every "
                         "rank must be in this process (compile it with --collectives=cut for a "
                         "world of processes)", d->name);
  mlk_backend *const *bes = opt->backends;
  for (int r = 0; bes && r < w->n; r++)
    for (int q = 0; q < r; q++) {
      if (bes[r]->is_gpu != bes[q]->is_gpu)
        return mlk_set_error(MLK_ERR_INVALID, "model '%s' all-reduces inside its megakernels: "
                             "ranks %d and %d run on a GPU and on the simulator", d->name, q, r);
      if (bes[r]->is_gpu && bes[r]->device == bes[q]->device)
        return mlk_set_error(MLK_ERR_INVALID, "model '%s' all-reduces inside its megakernels: ranks "
                             "%d and %d are both on GPU %d, whose SMs each rank's persistent "
                             "megakernel takes whole (give each rank a GPU, or compile with "
                             "--collectives=cut)", d->name, q, r, bes[r]->device);
      if (bes[r]->is_gpu) {
        mlk_status st;
        if ((st = mlk_gpu_enable_peer(bes[r], bes[q])) || (st = mlk_gpu_enable_peer(bes[q], bes[r])))
          return st;
      }
    }
  uint64_t *words = MLK_CALLOC((size_t)nwords, sizeof *words, "peer area");
  if (!words)
    return MLK_ERR_NOMEM;
  for (int r = 0; r < w->n; r++) {
    mlk_model *m = w->models[r];
    words[r] = m->be->ops->counters_addr(m);
  }
  int64_t j = 0;
  for (int o = 0; o < d->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    if (op->kind != MLK_OP_ALLREDUCE)
      continue;
    j++;
    for (int r = 0; r < w->n; r++) {
      mlk_model *m = w->models[r];
      words[d->ranks * j + r] = m->be->ops->tensor_addr(m, op->in[0].tensor) +
                                (uint64_t)op->in[0].offset * sizeof(float);
    }
  }
  mlk_status st = MLK_OK;
  for (int r = 0; r < w->n && !st; r++)
    st = w->models[r]->be->ops->set_peers(w->models[r], words, (size_t)nwords);
  free(words);
  w->in_kernel = 1;
  return st;
}

const char *mlk_world_comm(const mlk_world *w) {
  return !w ? "" : w->in_kernel ? "in the megakernel" : w->nccl ? mlk_nccl_name(w->nccl) : "host";
}

mlk_status mlk_world_create(const MlkModelDesc *desc, const mlk_world_options *opt, mlk_world **out) {
  if (!out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_world_create: out is NULL");
  *out = NULL;
  if (!opt)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_world_create: options are NULL (nranks is needed)");
  mlk_status st = mlk_desc_validate(desc);
  if (st)
    return st;
  int64_t ranks = desc->ranks > 0 ? desc->ranks : 1;
  if (opt->nranks != ranks)
    return mlk_set_error(MLK_ERR_INVALID, "model '%s' (%s) is compiled for a mesh of %lld rank%s: a "
                         "world of %d ranks cannot run it (compile it with mlkc --mesh=AXIS=%d)",
                         desc->name, desc->source, (long long)ranks, ranks == 1 ? "" : "s",
                         opt->nranks, opt->nranks);
  if (opt->rendezvous && (opt->rank < 0 || opt->rank >= opt->nranks))
    return mlk_set_error(MLK_ERR_INVALID, "mlk_world_create: rank %d of a world of %d", opt->rank,
                         opt->nranks);
  mlk_world *w = MLK_CALLOC(1, sizeof *w, "world");
  if (!w)
    return MLK_ERR_NOMEM;
  w->desc = desc;
  w->n = opt->nranks;
  w->first = opt->rendezvous ? opt->rank : 0;
  w->nlocal = opt->rendezvous ? 1 : w->n;
  w->models = MLK_CALLOC((size_t)w->nlocal, sizeof *w->models, "world models");
  if (!w->models) {
    free(w);
    return MLK_ERR_NOMEM;
  }
  /* the largest collective's rows, at batch_max */
  for (int i = 0; i < desc->ncollectives; i++) {
    const MlkCollectiveDesc *c = &desc->collectives[i];
    size_t floats = (size_t)(c->n * (c->batched ? desc->batch_max : 1));
    if (floats > w->buf_floats)
      w->buf_floats = floats;
  }
  if (w->buf_floats) {
    w->acc = MLK_CALLOC(w->buf_floats, sizeof(float), "collective sums");
    w->part = MLK_CALLOC(w->buf_floats, sizeof(float), "collective operands");
    if (!w->acc || !w->part) {
      mlk_world_free(w);
      return MLK_ERR_NOMEM;
    }
  }
  if (!opt->backends && (st = mlk_backend_create(MLK_BACKEND_CPU, &w->own_backend))) {
    mlk_world_free(w);
    return st;
  }
  mlk_model_options mo = opt->model ? *opt->model : (mlk_model_options){0};
  for (int i = 0; i < w->nlocal; i++) {
    int r = w->first + i;
    mo.rank = r;
    mlk_backend *be = opt->backends ? opt->backends[i] : w->own_backend;
    if (!be) {
      mlk_world_free(w);
      return mlk_set_error(MLK_ERR_INVALID, "mlk_world_create: backend of rank %d is NULL", r);
    }
    if ((st = mlk_model_create_opt(be, desc, &mo, &w->models[i]))) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", mlk_last_error());
      mlk_world_free(w);
      return mlk_set_error(st, "rank %d of %d: %s", r, w->n, msg);
    }
    w->models[i]->rank = r; /* whatever MLK_RANK says: the world numbers its ranks */
  }
  /* a world of processes: every rank joins the rendezvous, with a slot per rank for the largest
   * collective */
  if (opt->rendezvous &&
      (st = mlk_rdv_open(opt->rendezvous, w->first, w->n, w->buf_floats ? w->buf_floats : 1, &w->rdv))) {
    mlk_world_free(w);
    return st;
  }
  if ((st = pick_comm(w, opt->backends)) || (st = in_kernel_peers(w, opt))) {
    mlk_world_free(w);
    return st;
  }
  *out = w;
  return MLK_OK;
}

void mlk_world_free(mlk_world *w) {
  if (!w)
    return;
  for (int i = 0; i < w->nlocal && w->models; i++)
    mlk_model_free(w->models[i]);
  mlk_rdv_close(w->rdv);
  free(w->models);
  mlk_backend_free(w->own_backend);
  free(w->acc);
  free(w->part);
  mlk_nccl_free(w->nccl);
  free(w->send);
  free(w->recv);
  free(w);
}

int mlk_world_size(const mlk_world *w) { return w ? w->n : 0; }

mlk_model *mlk_world_model(mlk_world *w, int rank) {
  return w && rank >= w->first && rank < w->first + w->nlocal ? w->models[rank - w->first] : NULL;
}

void mlk_world_abort(mlk_world *w, const char *why) {
  if (w && w->rdv)
    mlk_rdv_fail(w->rdv, why && *why ? why : "stopped");
}

/* One rank's launch of a segment, on its own thread; the message of a failure is kept here, since
 * the last error is per thread. */
typedef struct RankRun {
  mlk_model *m;
  int kernel;
  pthread_t thread;
  int threaded;
  mlk_status st;
  char msg[2048];
} RankRun;

static void *rank_run(void *arg) {
  RankRun *rr = arg;
  rr->st = mlk_model_run_kernel(rr->m, rr->kernel, NULL);
  if (rr->st)
    snprintf(rr->msg, sizeof rr->msg, "%s", mlk_last_error());
  return NULL;
}

/* Segment `kernel` on every rank at once. */
static mlk_status run_segment(mlk_world *w, int kernel, RankRun *runs) {
  for (int i = 0; i < w->nlocal; i++) {
    runs[i] = (RankRun){.m = w->models[i], .kernel = kernel};
    runs[i].threaded = w->nlocal > 1 && pthread_create(&runs[i].thread, NULL, rank_run, &runs[i]) == 0;
    if (!runs[i].threaded)
      rank_run(&runs[i]); /* one rank, or no thread to spare: on this one */
  }
  for (int i = 0; i < w->nlocal; i++)
    if (runs[i].threaded)
      pthread_join(runs[i].thread, NULL);
  /* the cause before its consequences: a rank that waited in vain for another that failed reports
   * a deadlock, so another rank's failure comes first */
  int first = -1;
  for (int i = 0; i < w->nlocal; i++)
    if (runs[i].st && (first < 0 || (runs[first].st == MLK_ERR_DEADLOCK && runs[i].st != MLK_ERR_DEADLOCK)))
      first = i;
  for (int i = first < 0 ? w->nlocal : first; i < w->nlocal; i++)
    if (runs[i].st) {
      mlk_status st = mlk_set_error(runs[i].st, "rank %d of %d, megakernel '%s': %s", w->first + i,
                                    w->n, w->desc->kernels[kernel].name, runs[i].msg);
      mlk_world_abort(w, mlk_last_error()); /* the other processes stop at their next barrier */
      return st;
    }
  return MLK_OK;
}

/* Collective c: every rank's operand rows summed, into every rank's out. */
static mlk_status allreduce(mlk_world *w, const MlkCollectiveDesc *c) {
  const MlkModelDesc *d = w->desc;
  int64_t rows = c->batched ? mlk_model_batch(w->models[0]) : 1;
  size_t floats = (size_t)(rows * c->n), bytes = floats * sizeof(float);
  mlk_status st;
  if (w->nccl) {
    for (int i = 0; i < w->nlocal; i++) {
      mlk_model *m = w->models[i];
      w->send[i] = m->be->ops->tensor_addr(m, c->in.tensor);
      w->recv[i] = m->be->ops->tensor_addr(m, c->out.tensor);
    }
    if ((st = mlk_nccl_allreduce(w->nccl, w->send, w->recv, floats))) {
      st = mlk_set_error(st, "collective '%s' over %d ranks: %s", c->name, w->n, mlk_last_error());
      mlk_world_abort(w, mlk_last_error());
      return st;
    }
    goto done;
  }
  if (w->rdv) { /* this process's rows into its slot; every rank's, summed in rank order */
    int parity = (int)(w->ncoll++ & 1);
    mlk_model *m = w->models[0];
    char what[600];
    snprintf(what, sizeof what, "collective '%s'", c->name);
    if ((st = m->be->ops->download(m, c->in.tensor, mlk_rdv_slot(w->rdv, parity, w->first), bytes)) ||
        (st = mlk_rdv_barrier(w->rdv, what))) {
      if (st != MLK_ERR_DEADLOCK && st != MLK_ERR_INVALID)
        mlk_world_abort(w, mlk_last_error());
      return st;
    }
    memcpy(w->acc, mlk_rdv_slot(w->rdv, parity, 0), bytes);
    for (int r = 1; r < w->n; r++) {
      const float *p = mlk_rdv_slot(w->rdv, parity, r);
      for (size_t i = 0; i < floats; i++)
        w->acc[i] += p[i];
    }
    if ((st = m->be->ops->upload(m, c->out.tensor, w->acc, bytes))) {
      mlk_world_abort(w, mlk_last_error());
      return st;
    }
    goto done;
  }
  for (int r = 0; r < w->n; r++) {
    mlk_model *m = w->models[r];
    if ((st = m->be->ops->download(m, c->in.tensor, r ? w->part : w->acc, bytes)))
      return mlk_set_error(st, "rank %d of %d, collective '%s' (tensor '%s'): %s", r, w->n,
                           c->name, d->tensors[c->in.tensor].name, mlk_last_error());
    if (r)
      for (size_t i = 0; i < floats; i++)
        w->acc[i] += w->part[i];
  }
  for (int r = 0; r < w->n; r++) {
    mlk_model *m = w->models[r];
    if ((st = m->be->ops->upload(m, c->out.tensor, w->acc, bytes)))
      return mlk_set_error(st, "rank %d of %d, collective '%s' (tensor '%s'): %s", r, w->n,
                           c->name, d->tensors[c->out.tensor].name, mlk_last_error());
  }
done:
  if (d->tensors[c->out.tensor].kind == MLK_TENSOR_OUTPUT)
    for (int i = 0; i < w->nlocal; i++)
      w->models[i]->rows_set[c->out.tensor] = rows;
  return MLK_OK;
}

mlk_status mlk_world_run(mlk_world *w, int kernel) { return mlk_world_run_timed(w, kernel, NULL); }

mlk_status mlk_world_run_timed(mlk_world *w, int kernel, double *ms) {
  if (!w)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_world_run: world is NULL");
  const MlkModelDesc *d = w->desc;
  if (kernel < 0 || kernel >= d->nkernels || d->kernels[kernel].segment != 0)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_world_run: kernel index %d is not a megakernel of "
                         "model '%s' (%d kernels%s)", kernel, d->name, d->nkernels,
                         kernel >= 0 && kernel < d->nkernels ? "; it is a later segment of one" : "");
  int64_t batch = mlk_model_batch(w->models[0]);
  for (int i = 1; i < w->nlocal; i++)
    if (mlk_model_batch(w->models[i]) != batch)
      return mlk_set_error(MLK_ERR_INVALID, "mlk_world_run: rank %d runs a batch of %lld, rank 0 "
                           "of %lld: every rank runs the same rows", i,
                           (long long)mlk_model_batch(w->models[i]), (long long)batch);
  RankRun *runs = MLK_CALLOC((size_t)w->nlocal, sizeof *runs, "rank runs");
  if (!runs)
    return MLK_ERR_NOMEM;
  double t0 = mlk_now_ms();
  mlk_status st = MLK_OK;
  int nseg = d->kernels[kernel].nsegments, next = 0;
  while (next < d->ncollectives && d->collectives[next].after < kernel)
    next++;
  for (int s = 0; s < nseg && !st; s++) {
    st = run_segment(w, kernel + s, runs);
    /* in-kernel allreduces: the ranks that finished bumped the counters of the one that failed
     * (and it theirs): every rank starts again from zero */
    if (st && w->in_kernel)
      for (int i = 0; i < w->nlocal; i++)
        mlk_model_reset_counters(w->models[i]);
    for (; !st && next < d->ncollectives && d->collectives[next].after == kernel + s; next++)
      st = allreduce(w, &d->collectives[next]);
  }
  free(runs);
  if (ms)
    *ms = mlk_now_ms() - t0;
  return st;
}

/* A decimal environment variable in [lo, hi]: 1 and *out, 0 when unset or empty, -1 when bad. */
static int env_rank_var(const char *name, int64_t lo, int64_t hi, int64_t *out) {
  const char *v = getenv(name);
  if (!v || !*v)
    return 0;
  return mlk_env_int(name, lo, hi, 0, out) ? -1 : 1;
}

int mlk_world_options_from_env(mlk_world_options *o) {
  int64_t size = 0, rank = 0;
  const char *sv = "MLK_WORLD_SIZE", *rv = "MLK_RANK";
  int s = env_rank_var(sv, 1, 256, &size);
  if (s == 0) {
    sv = "OMPI_COMM_WORLD_SIZE", rv = "OMPI_COMM_WORLD_RANK";
    s = env_rank_var(sv, 1, 256, &size);
  }
  if (s < 0)
    return -1;
  if (s == 0 || size < 2)
    return 0;
  int r = env_rank_var(rv, 0, size - 1, &rank);
  if (r <= 0) {
    if (r == 0)
      mlk_set_error(MLK_ERR_INVALID, "%s=%lld says this process is one rank of a world, but %s is "
                    "not set", sv, (long long)size, rv);
    return -1;
  }
  static char path[600];
  const char *rdv = getenv("MLK_RENDEZVOUS"), *job = getenv("PMIX_NAMESPACE");
  if (!rdv || !*rdv) {
    if (!job || !*job) {
      mlk_set_error(MLK_ERR_INVALID, "%s=%lld: a world of processes needs MLK_RENDEZVOUS, a file "
                    "path every rank can open (under mpirun, the job's name gives one)", sv,
                    (long long)size);
      return -1;
    }
    snprintf(path, sizeof path, "/tmp/mlk-world-%s", job);
    for (char *p = path + 5; *p; p++)
      if (*p == '/')
        *p = '_';
    rdv = path;
  }
  o->nranks = (int)size;
  o->rank = (int)rank;
  o->rendezvous = rdv;
  return 1;
}
