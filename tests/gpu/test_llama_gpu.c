/* test_llama_gpu.c: the llama_tiny megakernel on the GPU against the sequential reference
 * (examples/llama/llama_ref.c) and against the CPU simulator, step by step, with the harness of
 * tests/sim/test_llama_sim.c (included below): batch sizes 1, 3 and 4 on one model object (its
 * batch changed between sequences) and 4 on a fresh one; outputs poisoned before every step; rows
 * at different positions, crossing KV pages. Per step and row: the GPU's logits within LT_TOL
 * (relative L2) of its reference and of the simulator's, its `next` equal to the argmax of its own
 * logits and to the reference's token (unless a near tie), its KV cache equal to the reference's
 * up to roundings explained by f32 noise.
 *
 * Prints "SKIP: ..." and exits 77 where there is no usable GPU.
 * Usage: test_llama_gpu [SEED]
 */
#define LLAMA_TEST_NO_MAIN
#include "test_llama_sim.c"

int main(int argc, char **argv) {
  mlk_backend *gpu = NULL, *sim = NULL;
  mlk_status st = mlk_backend_create(MLK_BACKEND_GPU, &gpu);
  if (st == MLK_ERR_NO_GPU) {
    printf("SKIP: %s\n", mlk_last_error());
    return 77;
  }
  if (st != MLK_OK) {
    printf("FAIL: GPU backend: %s\n", mlk_last_error());
    return 1;
  }
  uint64_t base = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
  mlk_sim_options opt = {.threads = 8, .seed = base, .schedule = MLK_SIM_AS_COMPILED};
  if (mlk_backend_create_cpu(&opt, &sim) != MLK_OK) {
    printf("FAIL: CPU simulator: %s\n", mlk_last_error());
    mlk_backend_free(gpu);
    return 1;
  }
  printf("llama_tiny on %s vs the sequential reference and %s: base seed %llu (rerun: "
         "test_llama_gpu %llu), tolerance rel L2 %g per row\n",
         mlk_backend_name(gpu), mlk_backend_name(sim), (unsigned long long)base,
         (unsigned long long)base, LT_TOL);
  int passed = 0, failed = 0;
  int bad = lt_check_reference();
  printf("%s: reference self-checks\n", bad ? "FAIL" : "ok");
  bad ? failed++ : passed++;
  TinyWeights w;
  lt_make_weights(base, &w);
  llama_tiny_model *gm = NULL, *sm = NULL;
  if (lt_create(gpu, &w, 0, &gm) != MLK_OK || lt_create(sim, &w, 0, &sm) != MLK_OK) {
    printf("FAIL: setup: %s\n", mlk_last_error());
    failed++;
  } else {
    static const int batches[] = {1, 3, 4, 4};
    for (int k = 0; k < 4; k++) {
      int batch = batches[k];
      llama_tiny_model *models[2] = {gm, sm};
      const char *names[2] = {"gpu", "sim"};
      const char *which = "same model";
      if (k == 3) {
        which = "fresh model";
        if (lt_create(gpu, &w, batch, &models[0]) != MLK_OK) {
          printf("FAIL: batch %d (%s): setup: %s\n", batch, which, mlk_last_error());
          failed++;
          continue;
        }
      }
      LtResult r;
      int ok = lt_run(models, names, 2, batch, &w, base + k, &r);
      printf("%s: batch %d (%s): %d steps, logits rel L2 max %.3g vs the reference, %.3g vs the "
             "simulator (tol %g), next: %d wrong, %d near ties; K/V: %ld roundings within noise "
             "followed; %.3f ms per step (host clock, with the copies)%s%s\n",
             ok ? "ok" : "FAIL", batch, which, r.steps, r.max_rel[0], r.max_rel_pair, LT_TOL,
             r.next_self_bad + r.next_ref_bad, r.ties, r.kv_ties[0], r.steps ? r.ms / r.steps : 0,
             r.why[0] ? ": " : "", r.why);
      ok ? passed++ : failed++;
      if (k == 3)
        llama_tiny_free(models[0]);
    }
  }
  llama_tiny_free(gm);
  llama_tiny_free(sm);
  lt_free_weights(&w);
  mlk_backend_free(sim);
  mlk_backend_free(gpu);
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
