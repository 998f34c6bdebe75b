/* test_graph_ir.c: the graph IR's builders and its text dump (compiler/graph.c), on a graph built
 * by hand: y = relu(matvec(x, W[1])) over a batch, with a tile hint, and an event. Checks the dump
 * line by line, and that ir_uses and ir_replace_uses see live nodes only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlkc.h"

static int failures;

static void expect_dump(const IrGraph *g, const char *want) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ir_dump(f, g);
  fclose(f);
  if (strcmp(buf, want)) {
    printf("FAIL: the dump differs\n--- expected:\n%s--- got:\n%s", want, buf);
    failures++;
  }
  free(buf);
}

static void expect(bool ok, const char *what) {
  if (!ok) {
    printf("FAIL: %s\n", what);
    failures++;
  }
}

int main(void) {
  Arena *a = arena_new();
  Source src = {.path = "dir/t.mlk", .text = "", .len = 0};
  Program prog = {.src = &src};
  Model model = {.name = "t"};
  DimDecl batch = {.name = "B", .lo_v = 1, .hi_v = 8};
  IrGraph *g = ir_graph_new(a, &prog, &model);
  g->batch = &batch;

  Type wt = {.dtype = MLK_BF16, .rank = 3, .shape = {2, 16, 4}};
  Type xt = {.dtype = MLK_F32, .rank = 2, .shape = {1, 4}, .sym = {&batch}};
  Type yt = {.dtype = MLK_F32, .rank = 2, .shape = {1, 16}, .sym = {&batch}};
  int tw = ir_add_tensor(g, (IrTensor){.name = "W", .kind = MLK_TENSOR_PARAM, .type = wt,
                                       .from = "w.{l}", .cache = -1});
  int tx = ir_add_tensor(g, (IrTensor){.name = "x", .kind = MLK_TENSOR_INPUT, .type = xt, .cache = -1});
  int ty = ir_add_tensor(g, (IrTensor){.name = "y", .kind = MLK_TENSOR_OUTPUT, .type = yt, .cache = -1});
  Type w1 = {.dtype = MLK_BF16, .rank = 2, .shape = {16, 4}};
  int vw = ir_add_value(g, (IrValue){.type = w1, .tensor = tw, .offset = 64, .producer = -1, .layer = -1});
  int vx = ir_add_value(g, (IrValue){.type = xt, .tensor = tx, .producer = -1, .layer = -1});
  g->kernels = arena_alloc(a, sizeof *g->kernels);
  g->kernels[0] = (IrKernel){.name = "f", .entry = "mlk_t_f", .schedule = MLK_SCHED_STATIC};
  g->nkernels = 1;

  Loc loc = {.line = 3, .col = 7};
  int mv = ir_add_node(g, IR_MATVEC, loc, "[l=1]", 0);
  g->nodes[mv].in[0] = vx;
  g->nodes[mv].in[1] = vw;
  int h = ir_add_result(g, mv, &yt);
  int relu = ir_add_node(g, IR_RELU, (Loc){.line = 3, .col = 2}, "", 0);
  g->nodes[relu].in[0] = h;
  g->nodes[relu].hint.tile = 8;
  int r = ir_add_result(g, relu, &yt);
  g->values[r].name = "h";
  g->values[r].tensor = ty;
  expect(g->nodes[relu].attr.layer == -1 && g->nodes[relu].attr.cache == -1,
         "a fresh node has no layer and no cache");
  expect(g->nodes[relu].fn == MLK_FN_RELU, "relu's function comes from the table");
  expect(ir_uses(g, h) == 1, "the matvec's result has one use");
  expect(ir_type_batched(&yt) && ir_type_cols(&yt) == 16, "f32[B, 16] is batched, 16 columns");
  g->pass = "elaborate";
  expect_dump(g,
              "# model t after elaborate: 3 tensors, 2 nodes, 0 event tensors\n"
              "t0 W param bf16[2, 16, 4] from \"w.{l}\"\n"
              "t1 x input f32[B, 4]\n"
              "t2 y output f32[B, 16]\n"
              "megakernel f (static)\n"
              "  n0 matvec %2 f32[B, 16] <- x, W+64 bf16[16, 4] @t.mlk:3[l=1]\n"
              "  n1 relu %3 ->y h f32[B, 16] <- %2 tile(8) @t.mlk:3\n");

  /* fold the relu into the matvec, as the fuse pass does, then tile and link them by an event */
  g->nodes[mv].fn = MLK_FN_RELU;
  g->nodes[mv].out[0] = r;
  g->values[r].producer = mv;
  g->nodes[relu].dead = true;
  expect(ir_uses(g, h) == 0, "a dead node's operands are not uses");
  g->nodes[mv].n = 16, g->nodes[mv].k = 4, g->nodes[mv].tile = 8, g->nodes[mv].ntasks = 2;
  g->nodes[mv].batched = 1;
  int ev = ir_add_event(g, (IrEvent){.producer = mv, .consumer = mv, .value = r, .map = MLK_MAP_TILE,
                                     .n = 16, .ptile = 8, .ctile = 4, .size = 4, .base = 1});
  expect(ev == 0, "the first event is event 0");
  ir_replace_uses(g, vx, r);
  expect(g->nodes[mv].in[0] == r, "ir_replace_uses rewrites a live node's operand");
  g->pass = "tile";
  expect_dump(g,
              "# model t after tile: 3 tensors, 1 nodes, 1 event tensors\n"
              "t0 W param bf16[2, 16, 4] from \"w.{l}\"\n"
              "t1 x input f32[B, 4]\n"
              "t2 y output f32[B, 16]\n"
              "megakernel f (static)\n"
              "  n0 matvec.relu %3 ->y h f32[B, 16] <- %3, W+64 bf16[16, 4] grid n=16 k=4 tile=8 "
              "tasks=2 batched @t.mlk:3[l=1]\n"
              "e0 n0 -> n0 %3 tile n=16 ptile=8 ctile=4 counters 1..4\n");
  arena_free(a);
  if (failures)
    return 1;
  printf("ok: graph IR dump and uses\n");
  return 0;
}
