# Runtime tests: C programs over hand-built MlkModelDesc tables (no compiler involved).
# Included from tests/CMakeLists.txt; sources live next to this file.
set(_rt_dir ${CMAKE_CURRENT_LIST_DIR})

set(_rt_cpu_tests sim ops batch check deadlock errors sched)
foreach(_t ${_rt_cpu_tests} gpu)
  add_executable(runtime_${_t} ${_rt_dir}/test_${_t}.c)
  target_link_libraries(runtime_${_t} PRIVATE mlkrt m)
endforeach()
# test_sched and test_errors check sched.c and the validation directly through the runtime's
# internal header.
target_include_directories(runtime_sched PRIVATE ${PROJECT_SOURCE_DIR}/runtime)
target_include_directories(runtime_errors PRIVATE ${PROJECT_SOURCE_DIR}/runtime)

foreach(_t ${_rt_cpu_tests})
  add_test(NAME runtime_${_t} COMMAND runtime_${_t})
  set_tests_properties(runtime_${_t} PROPERTIES TIMEOUT 180 ENVIRONMENT "RT_SEED=${MLK_TEST_SEED}")
endforeach()

# The GPU test runs two hand-written megakernels, compiled here from C to PTX by clang (PTX ISA 7.0
# so that any driver since CUDA 11 can JIT it). Without clang's NVPTX target it only tests the
# device buffers. Without a GPU it prints "SKIP: no GPU: <reason>" and exits 77.
set(_rt_ptx ${CMAKE_CURRENT_BINARY_DIR}/runtime_gpu_kernels.ptx)
set(_rt_nvptx_rc 1)
if(MLK_CLANG)
  execute_process(COMMAND ${MLK_CLANG} --target=nvptx64-nvidia-cuda -march=sm_80 -S -x c /dev/null -o /dev/null
                  RESULT_VARIABLE _rt_nvptx_rc OUTPUT_QUIET ERROR_QUIET)
endif()
if(_rt_nvptx_rc EQUAL 0)
  add_custom_command(OUTPUT ${_rt_ptx}
    COMMAND ${MLK_CLANG} --target=nvptx64-nvidia-cuda -march=sm_80
            -Xclang -target-feature -Xclang -ptx85 -Xclang -target-feature -Xclang +ptx70
            -O2 -ffreestanding -I${PROJECT_SOURCE_DIR}/runtime/include
            -I${PROJECT_SOURCE_DIR}/stdlib/tiles -S ${_rt_dir}/gpu_kernels.c -o ${_rt_ptx}
    DEPENDS ${_rt_dir}/gpu_kernels.c ${PROJECT_SOURCE_DIR}/runtime/include/mlk_desc.h
            ${PROJECT_SOURCE_DIR}/stdlib/tiles/mlk_tiles.h
    COMMENT "Compiling the runtime GPU test kernels to PTX"
    VERBATIM)
  add_custom_target(runtime_gpu_ptx DEPENDS ${_rt_ptx})
  add_dependencies(runtime_gpu runtime_gpu_ptx)
  add_test(NAME runtime_gpu COMMAND runtime_gpu ${_rt_ptx})
else()
  add_test(NAME runtime_gpu COMMAND runtime_gpu)
endif()
set_tests_properties(runtime_gpu PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180 LABELS gpu)

# A fake libcuda.so.1 (fake_cuda.c) runs gpu.c without a GPU: test_gpu against it covers the
# launch path (queues, kernel parameters, error record), test_gpu_fake the CUDA error messages,
# test_cubin_cache the compiled-cubin cache.
if(MLK_CUDA_INCLUDE)
  add_library(runtime_fake_cuda SHARED ${_rt_dir}/fake_cuda.c)
  target_include_directories(runtime_fake_cuda PRIVATE ${MLK_CUDA_INCLUDE} ${PROJECT_SOURCE_DIR}/runtime/include)
  set_target_properties(runtime_fake_cuda PROPERTIES OUTPUT_NAME cuda SOVERSION 1
                        LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fake_cuda)
  add_executable(runtime_gpu_fake ${_rt_dir}/test_gpu_fake.c)
  target_link_libraries(runtime_gpu_fake PRIVATE mlkrt m)
  # Not linked (the runtime dlopens it): make the test executables depend on it by hand.
  add_dependencies(runtime_gpu_fake runtime_fake_cuda)
  add_dependencies(runtime_gpu runtime_fake_cuda)
  # The cubin cache (cubin_cache.c) against the same fake; it reads the fake's call counters.
  add_executable(runtime_gpu_fake_cache ${_rt_dir}/test_cubin_cache.c)
  target_link_libraries(runtime_gpu_fake_cache PRIVATE mlkrt m)
  target_include_directories(runtime_gpu_fake_cache PRIVATE ${PROJECT_SOURCE_DIR}/runtime)
  add_dependencies(runtime_gpu_fake_cache runtime_fake_cuda)
  add_test(NAME runtime_gpu_fake COMMAND runtime_gpu_fake)
  add_test(NAME runtime_gpu_fake_launch COMMAND runtime_gpu ${_rt_dir}/fake_kernels.ptx)
  add_test(NAME runtime_gpu_fake_cache COMMAND runtime_gpu_fake_cache)
  # The cubins of the fake never go to the user's cache: a directory of the build tree (the cache
  # test makes and removes its own directories).
  set_tests_properties(runtime_gpu_fake runtime_gpu_fake_launch runtime_gpu_fake_cache PROPERTIES
                       ENVIRONMENT "LD_LIBRARY_PATH=${CMAKE_CURRENT_BINARY_DIR}/fake_cuda;MLK_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/fake_cubin_cache;RT_SEED=${MLK_TEST_SEED}"
                       SKIP_RETURN_CODE 77 TIMEOUT 120)
endif()
