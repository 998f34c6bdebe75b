/* test_rope_linear.c: rope(..., linear_factor = F) is linear scaling, every frequency divided by F,
 * as the runtime computes it. elaborate writes it as the runtime's Llama 3 scaling over a window of
 * one position (builtins.def); this compiles tests/compiler/rope_linear.mlk (F = 4, theta 10000,
 * head_dim 16) to the graph IR, takes the rope node's attributes, and checks that the reference
 * frequencies of the runtime (mlk_ref_rope_inv_freq, which the simulator runs and the device tile
 * mirrors) for them are exactly theta^(-2j/head_dim) / F for every pair j.
 *
 * Usage: test_rope_linear FILE.mlk STDLIB_DIR
 */
#include <math.h>
#include <stdio.h>

#include "mlk_ref.h"
#include "mlkc.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_rope_linear FILE.mlk STDLIB_DIR\n");
    return 2;
  }
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, NULL, stderr);
  Program *p = load_program(argv[1], NULL, 0, argv[2], a, &d);
  IrGraph *g = p && sema_check(p, a, &d) ? elaborate_model(p, p->models, a, &d) : NULL;
  if (!g) {
    printf("FAIL: %s does not compile\n", argv[1]);
    return 1;
  }
  int bad = 0, ropes = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->op != IR_ROPE)
      continue;
    ropes++;
    for (int64_t j = 0; j < n->attr.head_dim / 2; j++) {
      float got = mlk_ref_rope_inv_freq(j, n->attr.head_dim, n->attr.theta, n->attr.rope_factor,
                                        n->attr.rope_low_freq, n->attr.rope_high_freq,
                                        n->attr.rope_original_max_pos);
      float want = (float)(pow(10000.0, -2.0 * (double)j / 16.0) / 4.0);
      if (got != want) {
        printf("FAIL: pair %lld: inv_freq %.9g, linear scaling by 4 gives %.9g\n", (long long)j,
               got, want);
        bad++;
      }
    }
  }
  arena_free(a);
  if (ropes != 1) {
    printf("FAIL: %d rope nodes, expected 1\n", ropes);
    return 1;
  }
  if (bad)
    return 1;
  printf("ok: rope linear_factor = 4 divides all 8 frequencies by 4\n");
  return 0;
}
