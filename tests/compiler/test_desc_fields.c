/* test_desc_fields.c: prints the descriptor that a generated model.c holds, field by field, in the
 * format of mlkc --emit=graph (desc_dump_json); its CTest compares the two for the same model. A
 * field that the compiler sets and the C emitter leaves out (or writes differently) makes them
 * differ, rather than reaching the runtime as 0. MLK_DESC names the model's descriptor
 * (llama_tiny_desc, ...).
 */
#include <stdio.h>

#include "mlkc.h"

extern const MlkModelDesc MLK_DESC;

int main(void) {
  desc_dump_json(stdout, &MLK_DESC);
  return ferror(stdout) ? 1 : 0;
}
