/* ptxas.h: the mlkc driver's calls of the CUDA toolkit's PTX assembler (ptxas.c). */
#ifndef MLKC_PTXAS_H
#define MLKC_PTXAS_H

#include <stdbool.h>
#include <stddef.h>

/* -v: ptxas's resource report of `ptx` for `arch` on stderr (a note when ptxas is missing). */
void ptxas_report(const char *ptx, const char *arch);

/* --cubin: compiles `ptx` for `arch` into a cubin as the driver's JIT does (ptxas -c, then
 * nvlink; *cubin malloc'ed, *bytes long). False, with the reason and the tool's messages on
 * stderr, when ptxas or nvlink is missing or fails. */
bool ptxas_cubin(const char *ptx, const char *arch, unsigned char **cubin, size_t *bytes);

#endif
