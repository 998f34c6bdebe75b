/* app.c: the application of docs/tutorial.md (kept in sync: the tutorial test builds and runs it). */
#include <stdio.h>
#include "tiny.h"

int main(void) {
  static uint16_t w1[TINY_H * TINY_D], w2[TINY_D * TINY_H];
  static float x[TINY_D], y[TINY_D];
  for (int i = 0; i < TINY_H * TINY_D; i++) {
    w1[i] = mlk_f32_to_bf16(((i * 7919L) % 1000) / 32000.0f);
    w2[i] = mlk_f32_to_bf16(((i * 104729L) % 1000) / 64000.0f);
  }
  for (int i = 0; i < TINY_D; i++)
    x[i] = (float)(i % 17) / 17.0f;

  mlk_backend *be;
  tiny_model *m;
  if (mlk_backend_create(MLK_BACKEND_AUTO, &be) || tiny_create(be, &m) ||
      tiny_set_W1(m, w1) || tiny_set_W2(m, w2) || tiny_set_x(m, x) ||
      tiny_forward(m) || tiny_get_y(m, y)) {
    fprintf(stderr, "tiny: %s\n", mlk_last_error());
    return 1;
  }
  printf("%s: y[0] = %f\n", mlk_backend_name(be), y[0]);
  tiny_free(m);
  mlk_backend_free(be);
  return 0;
}
