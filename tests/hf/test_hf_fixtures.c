/* test_hf_fixtures.c: mlk-run on the CPU simulator against Hugging Face transformers' own numbers,
 * with no PyTorch on the machine.
 *
 * A fixture directory (tests/hf/fixtures/<name>, written by tests/hf/compare_hf.py --fixtures on
 * a machine with transformers) holds a small random-init checkpoint as save_pretrained writes it
 * (config.json, model.safetensors, bf16), prompts.txt (one prompt per line), and what
 * transformers computed in f32 from those bf16 weights: expected.json (steps, vocab, the
 * tolerance, the near-tie threshold, and each prompt's greedy tokens) and expected_logits.f32
 * (per prompt, `steps` rows of the vocabulary: the logits behind each of those tokens).
 *
 * The test runs `mlk-run --model DIR --prompts DIR/prompts.txt --steps S --logits-out F` with
 * MLK_BACKEND=cpu (all prompts as one batch) and checks, per prompt and step, while mlk-run's
 * tokens are transformers': the logits row within `tol` (relative L2) of transformers', and the
 * token equal to transformers' or, where the two differ, a near tie in transformers' row (its two
 * logits within `tie` of the row's largest |logit|, or within twice the row's largest difference
 * between mlk-run and transformers, which `tol` bounds), after which that prompt's prefixes differ
 * and its later rows are not compared.
 *
 *   test_hf_fixtures MLK_RUN FIXTURE_DIR [OPTIONS]
 *
 * OPTIONS are more options of mlk-run, one word: "--tp 2" runs the model over two ranks, each with
 * its shard of the checkpoint, against the same numbers.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rt_test.h"

enum { MAXP = 64, MAXS = 256 };

static float *read_f32(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long bytes = ftell(f);
  fseek(f, 0, SEEK_SET);
  float *v = malloc(bytes > 0 ? (size_t)bytes : 1);
  *n = fread(v, 1, (size_t)(bytes > 0 ? bytes : 0), f) / sizeof(float);
  fclose(f);
  return v;
}

/* Token ids per line of `path` (separated by anything that is not a digit or '-'). */
static int read_ids(const char *path, int ids[MAXP][MAXS], int len[MAXP]) {
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  char line[1 << 14];
  int n = 0;
  while (n < MAXP && fgets(line, sizeof line, f)) {
    len[n] = 0;
    for (char *p = line; *p;) {
      if ((*p >= '0' && *p <= '9') || *p == '-') {
        char *e;
        long v = strtol(p, &e, 10);
        if (len[n] < MAXS)
          ids[n][len[n]++] = (int)v;
        p = e;
      } else {
        p++;
      }
    }
    if (len[n] > 0)
      n++;
  }
  fclose(f);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: test_hf_fixtures MLK_RUN FIXTURE_DIR [OPTIONS]\n");
    return 2;
  }
  rt_watchdog(600);
  const char *run = argv[1], *dir = argv[2];
  char path[1024], cmd[4096], ids_out[256], logits_out[256];
  snprintf(path, sizeof path, "%s/expected.json", dir);
  json_error_t je;
  json_t *meta = json_load_file(path, 0, &je);
  if (!meta) {
    fprintf(stderr, "cannot read %s: %s\n", path, je.text);
    return 1;
  }
  int steps = (int)json_integer_value(json_object_get(meta, "steps"));
  int vocab = (int)json_integer_value(json_object_get(meta, "vocab"));
  double tol = json_number_value(json_object_get(meta, "tol"));
  double tie = json_number_value(json_object_get(meta, "tie"));
  json_t *want = json_object_get(meta, "ids");
  int np = (int)json_array_size(want);
  if (steps <= 0 || steps > MAXS || vocab <= 0 || np <= 0 || np > MAXP || !(tol > 0)) {
    fprintf(stderr, "%s: steps %d, vocab %d, %d prompts, tol %g: not a fixture\n", path, steps,
                    vocab, np, tol);
    return 1;
  }
  snprintf(path, sizeof path, "%s/expected_logits.f32", dir);
  size_t nref = 0;
  float *ref = read_f32(path, &nref);
  if (!ref || nref != (size_t)np * (size_t)steps * (size_t)vocab) {
    fprintf(stderr, "%s: %zu floats, expected %d prompts x %d steps x %d\n", path, nref, np, steps,
            vocab);
    return 1;
  }

  snprintf(ids_out, sizeof ids_out, "/tmp/mlk_hf_ids_%d.txt", (int)getpid());
  snprintf(logits_out, sizeof logits_out, "/tmp/mlk_hf_logits_%d.f32", (int)getpid());
  snprintf(cmd, sizeof cmd,
           "MLK_BACKEND=cpu '%s' --model '%s' --prompts '%s/prompts.txt' --steps %d "
           "--logits-out '%s' %s > '%s'",
           run, dir, dir, steps, logits_out, argc == 4 ? argv[3] : "", ids_out);
  printf("%s\n", cmd);
  fflush(stdout);
  int rc = system(cmd);
  CHECK(rc == 0, "mlk-run exited with %d", rc);
  static int got[MAXP][MAXS];
  int glen[MAXP] = {0};
  int ngot = read_ids(ids_out, got, glen);
  size_t nlog = 0;
  float *logits = read_f32(logits_out, &nlog);
  remove(ids_out);
  remove(logits_out);
  CHECK(ngot == np, "mlk-run printed %d lines of ids for %d prompts", ngot, np);
  CHECK(logits && nlog == nref, "mlk-run wrote %zu logits, expected %zu", nlog, nref);
  if (rt_failures)
    return rt_finish("test_hf_fixtures");

  double worst = 0;
  int compared = 0, equal = 0, ties = 0;
  for (int p = 0; p < np; p++) {
    json_t *w = json_array_get(want, (size_t)p);
    CHECK(glen[p] == steps, "prompt %d: %d ids, expected %d", p, glen[p], steps);
    for (int s = 0; s < steps && s < glen[p]; s++) {
      const float *r = ref + ((size_t)p * steps + s) * vocab;
      const float *g = logits + ((size_t)p * steps + s) * vocab;
      double d2 = 0, r2 = 0, rmax = 0, emax = 0;
      for (int v = 0; v < vocab; v++) {
        d2 += ((double)g[v] - r[v]) * ((double)g[v] - r[v]);
        r2 += (double)r[v] * r[v];
        rmax = fmax(rmax, fabs(r[v]));
        emax = fmax(emax, fabs((double)g[v] - r[v]));
      }
      double rel = sqrt(d2 / (r2 > 0 ? r2 : 1e-30));
      worst = fmax(worst, rel);
      compared++;
      CHECK(rel <= tol, "prompt %d step %d: logits rel L2 %.3e > %.1e", p, s, rel, tol);
      int expect = (int)json_integer_value(json_array_get(w, (size_t)s));
      if (got[p][s] == expect) {
        equal++;
        continue;
      }
      int tok = got[p][s];
      int near = tok >= 0 && tok < vocab &&
                 fabs((double)r[expect] - r[tok]) <= fmax(tie * rmax, 2 * emax);
      CHECK(near, "prompt %d step %d: mlk-run's token %d, transformers' %d (logits %.6g vs %.6g, "
            "not a near tie)", p, s, tok, expect, tok >= 0 && tok < vocab ? r[tok] : NAN, r[expect]);
      if (near) {
        printf("prompt %d step %d: near tie (%d vs transformers' %d), rest of the prompt not "
               "compared\n", p, s, tok, expect);
        ties++;
      }
      break;
    }
  }
  printf("%s: %d prompts, %d rows compared: logits rel L2 max %.3e (tolerance %.1e), %d tokens "
         "equal, %d near ties\n", dir, np, compared, worst, tol, equal, ties);
  free(ref);
  free(logits);
  json_decref(meta);
  return rt_finish("test_hf_fixtures");
}
