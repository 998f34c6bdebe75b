/* test_sched.c: the static queues of sched.c and the index maps of mlk_desc.h.
 *
 * For each kernel of the test model and many queue counts: every task appears exactly once,
 * every queue is in increasing global (topological) order (the properties the no-deadlock
 * argument in sched.c rests on), and the queues are balanced: replaying the deal, each task went
 * to a queue with the least estimated work at that point. Also checks that the test model's events are self-consistent: the notifies
 * each counter receives from all producer tasks equal its start value.
 */
#include "internal.h"
#include "rt_test.h"

static void check_queues(const MlkModelDesc *d, int k, int nq) {
  uint32_t *qoff;
  MlkTaskWord *words;
  int64_t total;
  CHECK_OK(mlk_sched_build(d, k, nq, &qoff, &words, &total));
  if (!qoff)
    return;
  const MlkKernelDesc *kd = &d->kernels[k];
  /* Global number of the first task of each op of the kernel. */
  int64_t *first = calloc((size_t)kd->nops + 1, sizeof *first), sum = 0;
  for (int o = 0; o < kd->nops; o++) {
    first[o] = sum;
    sum += d->ops[kd->first_op + o].ntasks;
  }
  CHECK(total == sum, "kernel %d, %d queues: %lld tasks, expected %lld", k, nq, (long long)total,
        (long long)sum);
  CHECK(qoff[0] == 0 && qoff[nq] == (uint32_t)sum, "kernel %d, %d queues: offsets %u..%u", k, nq,
        qoff[0], qoff[nq]);
  unsigned char *seen = calloc((size_t)sum, 1);
  int *queue_of = calloc((size_t)sum + 1, sizeof *queue_of);
  for (int q = 0; q < nq; q++) {
    int64_t prev = -1;
    for (uint32_t i = qoff[q]; i < qoff[q + 1]; i++) {
      uint32_t op = MLK_TASK_OP(words[i]), t = MLK_TASK_INDEX(words[i]);
      if (op >= (uint32_t)kd->nops || t >= (uint64_t)d->ops[kd->first_op + op].ntasks) {
        CHECK(0, "kernel %d, %d queues: bad task word 0x%016llx", k, nq, (unsigned long long)words[i]);
        continue;
      }
      int64_t g = first[op] + t;
      CHECK(g > prev, "kernel %d, %d queues: queue %d not increasing (%lld after %lld)", k, nq, q,
            (long long)g, (long long)prev);
      queue_of[g] = q;
      CHECK(!seen[g], "kernel %d, %d queues: task %lld twice", k, nq, (long long)g);
      seen[g] = 1;
      prev = g;
    }
  }
  for (int64_t g = 0; g < sum; g++)
    CHECK(seen[g], "kernel %d, %d queues: task %lld missing", k, nq, (long long)g);
  /* the deal: round-robin by default, least-loaded queue with MLK_SCHED_POLICY=balanced */
  const char *policy = getenv("MLK_SCHED_POLICY");
  int balanced = policy && !strcmp(policy, "balanced");
  int64_t *load = calloc((size_t)nq, sizeof *load);
  int64_t g = 0;
  for (int o = 0; o < kd->nops; o++) {
    const MlkOpDesc *op = &d->ops[kd->first_op + o];
    for (int64_t t = 0; t < op->ntasks; t++, g++) {
      int64_t min = load[0];
      for (int q = 1; q < nq; q++)
        min = load[q] < min ? load[q] : min;
      if (balanced)
        CHECK(load[queue_of[g]] == min, "kernel %d, %d queues: task %lld went to queue %d with "
              "load %lld, not a least-loaded one (%lld)", k, nq, (long long)g, queue_of[g],
              (long long)load[queue_of[g]], (long long)min);
      else
        CHECK(queue_of[g] == (int)(g % nq), "kernel %d, %d queues: task %lld in queue %d", k, nq,
              (long long)g, queue_of[g]);
      int64_t cols = op->n - t * op->tile < op->tile ? op->n - t * op->tile : op->tile;
      load[queue_of[g]] += mlk_sched_task_cost(op, cols);
    }
  }
  free(load);
  free(queue_of);
  free(seen);
  free(first);
  free(qoff);
  free(words);
}

static void check_event(const MlkModelDesc *d, int i) {
  const MlkEventDesc *e = &d->events[i];
  int64_t got[64] = {0};
  CHECK(e->size <= 64, "event %d too large for this test", i);
  for (int64_t t = 0; t < d->ops[e->producer].ntasks; t++) {
    int64_t lo, hi;
    mlk_event_notify_range(e, t, &lo, &hi);
    CHECK(lo >= 0 && lo <= hi && hi < e->size, "event %d task %lld notifies [%lld, %lld]", i,
          (long long)t, (long long)lo, (long long)hi);
    for (int64_t c = lo; c <= hi && c < 64; c++)
      got[c]++;
  }
  for (int64_t t = 0; t < d->ops[e->consumer].ntasks; t++) {
    int64_t c = mlk_event_wait_index(e, t);
    CHECK(c >= 0 && c < e->size, "event %d consumer task %lld waits on %lld", i, (long long)t,
          (long long)c);
  }
  for (int64_t c = 0; c < e->size && c < 64; c++)
    CHECK(got[c] == mlk_event_start_value(e, c), "event %d counter %lld: %lld notifies, start value %lld",
          i, (long long)c, (long long)got[c], (long long)mlk_event_start_value(e, c));
}

int main(void) {
  rt_watchdog(60);
  RtModel rm;
  rt_mlp_init(&rm);
  CHECK_OK(mlk_desc_validate(&rm.desc));
  static const int nqs[] = {1, 2, 3, 7, 16, 64, 132, 1000};
  for (int policy = 0; policy < 2; policy++) {
    if (policy)
      setenv("MLK_SCHED_POLICY", "balanced", 1);
    else
      unsetenv("MLK_SCHED_POLICY");
    for (int k = 0; k < rm.desc.nkernels; k++)
      for (size_t i = 0; i < sizeof nqs / sizeof *nqs; i++)
        check_queues(&rm.desc, k, nqs[i]);
  }
  unsetenv("MLK_SCHED_POLICY");
  for (int i = 0; i < rm.desc.nevents; i++)
    check_event(&rm.desc, i);

  uint32_t *qoff;
  MlkTaskWord *words;
  CHECK_ST(mlk_sched_build(&rm.desc, 2, 4, &qoff, &words, NULL), MLK_ERR_INVALID);
  CHECK_ST(mlk_sched_build(&rm.desc, 0, 0, &qoff, &words, NULL), MLK_ERR_INVALID);
  CHECK(qoff == NULL && words == NULL, "failed build left pointers");
  return rt_finish("runtime_sched");
}
