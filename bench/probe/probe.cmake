# bench/probe/probe.cmake: sync_probe, the timing of an op boundary's synchronization steps on the
# GPU (sync_probe.c's kernels, built on the tiles' instructions of stdlib/tiles/mlk_tiles.h,
# compiled to PTX for sm_90a by clang; probe.c launches them through
# the CUDA driver API, linked against the toolkit's driver stub). Built where clang, cuda.h and the
# stub are found; bench/probe/run.sh runs it on the GPU machine. The tests assemble its PTX
# (probe_ptx_assembles, with ptxas) and, labelled gpu, run it briefly where there is a GPU
# (gpu_sync_probe; skipped elsewhere). Included from the top CMakeLists.txt.
find_library(MLK_CUDA_DRIVER_STUB cuda HINTS ${MLK_CUDA_HOME}/lib64/stubs NO_DEFAULT_PATH)
if(MLK_CLANG AND MLK_CUDA_INCLUDE AND MLK_CUDA_DRIVER_STUB)
  set(_probe_ptx ${PROJECT_BINARY_DIR}/bench/sync_probe.sm_90a.ptx)
  add_custom_command(OUTPUT ${_probe_ptx}
    COMMAND ${MLK_CLANG} --target=nvptx64-nvidia-cuda -march=sm_90a -DMLK_SM=90 -O2 -ffreestanding -Wall
            -Wextra -Werror -I${PROJECT_SOURCE_DIR}/stdlib/tiles -I${PROJECT_SOURCE_DIR}/runtime/include
            -S ${PROJECT_SOURCE_DIR}/bench/probe/sync_probe.c -o ${_probe_ptx}
    DEPENDS ${PROJECT_SOURCE_DIR}/bench/probe/sync_probe.c ${PROJECT_SOURCE_DIR}/stdlib/tiles/mlk_tiles.h
            ${PROJECT_SOURCE_DIR}/runtime/include/mlk_desc.h
    COMMENT "clang (nvptx64, sm_90a) sync_probe.c"
    VERBATIM)
  add_custom_target(sync_probe_ptx ALL DEPENDS ${_probe_ptx})
  add_executable(sync_probe bench/probe/probe.c)
  set_target_properties(sync_probe PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
  target_include_directories(sync_probe PRIVATE ${MLK_CUDA_INCLUDE})
  target_link_libraries(sync_probe PRIVATE ${MLK_CUDA_DRIVER_STUB})
  add_dependencies(sync_probe sync_probe_ptx)
  # on a GPU machine, the probe itself (QUICK: fewer iterations); elsewhere run.sh skips (77)
  add_test(NAME gpu_sync_probe COMMAND sh ${PROJECT_SOURCE_DIR}/bench/probe/run.sh
                                       ${PROJECT_BINARY_DIR}/bench/probe-out)
  set_tests_properties(gpu_sync_probe PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 180
                       ENVIRONMENT "BUILD=${PROJECT_BINARY_DIR};QUICK=1")
  if(MLK_PTXAS)
    add_test(NAME probe_ptx_assembles
      COMMAND ${MLK_PTXAS} -arch=sm_90a ${_probe_ptx} -o ${PROJECT_BINARY_DIR}/bench/sync_probe.cubin)
    set_tests_properties(probe_ptx_assembles PROPERTIES LABELS compiler)
  endif()
endif()
