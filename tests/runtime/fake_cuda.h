/* fake_cuda.h: the counters and knobs of the fake libcuda.so.1 (fake_cuda.c), which tests reach
 * with dlsym(dlopen("libcuda.so.1", RTLD_NOLOAD), "fake_cuda_stats") once the GPU backend has
 * loaded the fake. */
#ifndef FAKE_CUDA_H
#define FAKE_CUDA_H

#include "mlk_desc.h"

struct FakeCudaStats {
  int link_create, link_add, link_complete, link_destroy; /* calls */
  int link_live;                                          /* link states not destroyed */
  int load_data, load_data_ex, unload;                    /* calls of cuModuleLoadData(Ex), Unload */
  int driver_version;  /* what cuDriverGetVersion reports */
  int reject_cubins;   /* the next n cuModuleLoadData calls fail with CUDA_ERROR_INVALID_IMAGE */
  int fail_link;       /* cuLinkCreate fails with CUDA_ERROR_NOT_SUPPORTED (no log) */
  int tune_lookups;    /* cuModuleGetGlobal calls for MLK_DEV_TUNE_SYMBOL */
  MlkDevTune tune;     /* the "device" storage of every module's knobs: a fake PTX with the line
                          "const mlk_dev_tune;" has it (as the tiles' PTX does), others do not */
};

#endif
