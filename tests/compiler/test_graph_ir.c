/* test_graph_ir.c: the graph IR's builders and its text dump (compiler/graph.c), on a graph built
 * by hand: y = relu(matvec(x, W[1])) over a batch, with a tile hint, an inferred event and an
 * explicit counter that the relu waits on and the matvec notifies. Checks the dump line by line,
 * that ir_uses and ir_replace_uses see live nodes only, and that the wait and notify lists merge
 * and change without touching a list another node shares.
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
  /* wait(done[1]) on the relu's statement, notify(done[1], done[0]) on the matvec's */
  Expr dim = {.kind = EXPR_INT, .ival = 2};
  EventDecl done = {.name = "done", .dims = &dim, .ndims = 1};
  int64_t i0[MLK_MAX_RANK] = {0}, i1[MLK_MAX_RANK] = {1};
  int c1 = ir_counter(g, &done, i1, 0), c0 = ir_counter(g, &done, i0, 0);
  expect(c1 == 0 && c0 == 1 && ir_counter(g, &done, i1, 0) == c1 && ir_counter(g, &done, i1, 1) == 2,
         "a counter per event element and megakernel, made once");
  expect(!strcmp(g->explicit_counters[c1].name, "done[1]"), "a counter is named done[1]");
  ir_add_sync(g, relu, (IrSync){.counter = c1, .loc = loc}, false);
  ir_add_sync(g, mv, (IrSync){.counter = c1, .loc = loc}, true);
  ir_add_sync(g, mv, (IrSync){.counter = c0, .loc = loc}, true);
  ir_add_sync(g, mv, (IrSync){.counter = c1, .loc = loc}, true);
  expect(g->nodes[mv].nnotifies == 2, "a counter is on a list once");
  g->pass = "elaborate";
  expect_dump(g,
              "# model t after elaborate: 3 tensors, 2 nodes, 0 event tensors\n"
              "t0 W param bf16[2, 16, 4] from \"w.{l}\"\n"
              "t1 x input f32[B, 4]\n"
              "t2 y output f32[B, 16]\n"
              "megakernel f (static)\n"
              "  n0 matvec %2 f32[B, 16] <- x, W+64 bf16[16, 4] notify(done[1], done[0]) "
              "@t.mlk:3[l=1]\n"
              "  n1 relu %3 ->y h f32[B, 16] <- %2 tile(8) wait(done[1]) @t.mlk:3\n");

  /* fold the relu into the matvec, as the fuse pass does, then tile and link them by an event */
  g->nodes[mv].fn = MLK_FN_RELU;
  g->nodes[mv].out[0] = r;
  g->values[r].producer = mv;
  g->nodes[relu].dead = true;
  ir_merge_sync(g, mv, relu);
  expect(g->nodes[mv].nwaits == 1 && g->nodes[mv].waits[0].counter == c1,
         "a node takes the lists of the node folded into it");
  /* a copy of a node shares its lists (split slices, an attention's reduce): changing one list
   * leaves the other's */
  IrNode copy = g->nodes[mv];
  ir_drop_sync(g, mv, c0, true);
  expect(g->nodes[mv].nnotifies == 1 && g->nodes[mv].notifies[0].counter == c1,
         "ir_drop_sync removes a counter");
  expect(copy.nnotifies == 2 && copy.notifies[1].counter == c0, "a shared list is left as it was");
  ir_drop_sync(g, mv, c1, false);
  expect(g->nodes[mv].nwaits == 0 && copy.nwaits == 1, "a shared wait list is left as it was");
  ir_add_sync(g, mv, (IrSync){.counter = c1, .loc = loc}, false);
  expect(ir_uses(g, h) == 0, "a dead node's operands are not uses");
  g->nodes[mv].n = 16, g->nodes[mv].k = 4, g->nodes[mv].tile = 8, g->nodes[mv].ntasks = 2;
  g->nodes[mv].batched = 1;
  int ev = ir_add_event(g, (IrEvent){.producer = mv, .consumer = mv, .value = r, .counter = -1,
                                     .map = MLK_MAP_TILE,
                                     .n = 16, .ptile = 8, .ctile = 4, .size = 4, .base = 1});
  expect(ev == 0, "the first event is event 0");
  ir_add_event(g, (IrEvent){.producer = -1, .consumer = -1, .value = -1, .counter = c1,
                            .map = MLK_MAP_ALL, .count = 2, .size = 1, .base = 5});
  ir_replace_uses(g, vx, r);
  expect(g->nodes[mv].in[0] == r, "ir_replace_uses rewrites a live node's operand");
  g->pass = "tile";
  expect_dump(g,
              "# model t after tile: 3 tensors, 1 nodes, 2 event tensors\n"
              "t0 W param bf16[2, 16, 4] from \"w.{l}\"\n"
              "t1 x input f32[B, 4]\n"
              "t2 y output f32[B, 16]\n"
              "megakernel f (static)\n"
              "  n0 matvec.relu %3 ->y h f32[B, 16] <- %3, W+64 bf16[16, 4] wait(done[1]) "
              "notify(done[1]) grid n=16 k=4 tile=8 tasks=2 batched @t.mlk:3[l=1]\n"
              "e0 n0 -> n0 %3 tile n=16 ptile=8 ctile=4 counters 1..4\n"
              "e1 done[1] all count=2 counters 5..5\n");
  arena_free(a);
  if (failures)
    return 1;
  printf("ok: graph IR dump and uses\n");
  return 0;
}
