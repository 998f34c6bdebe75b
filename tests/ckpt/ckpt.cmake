# tests/ckpt: checkpoint bindings and the loader. Included from tests/CMakeLists.txt.
set(_ck_dir ${CMAKE_CURRENT_LIST_DIR})

# runtime_ckpt: the hand-built model of ckpt_test.h (no compiler involved).
add_executable(runtime_ckpt ${_ck_dir}/test_ckpt.c)
target_include_directories(runtime_ckpt PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/runtime)
target_link_libraries(runtime_ckpt PRIVATE mlkrt m)
add_test(NAME runtime_ckpt COMMAND runtime_ckpt)
set_tests_properties(runtime_ckpt PROPERTIES TIMEOUT 120)
# The same loads through gpu.c, against the fake libcuda.so.1 of tests/runtime.
if(TARGET runtime_fake_cuda)
  add_dependencies(runtime_ckpt runtime_fake_cuda)
  add_test(NAME runtime_ckpt_gpu_fake COMMAND runtime_ckpt gpu)
  set_tests_properties(runtime_ckpt_gpu_fake PROPERTIES
                       ENVIRONMENT "LD_LIBRARY_PATH=${CMAKE_CURRENT_BINARY_DIR}/fake_cuda;MLK_CACHE_DIR=off"
                       SKIP_RETURN_CODE 77 TIMEOUT 120)
endif()

# ckpt_llama: tests/ckpt/llama_ckpt.mlk compiled by mlkc, loaded from a sharded Hugging Face style
# checkpoint written by the test.
set(_ck_gen ${CMAKE_CURRENT_BINARY_DIR}/ckpt)
add_custom_command(
  OUTPUT ${_ck_gen}/llama_ckpt.h ${_ck_gen}/llama_ckpt.c
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_ck_gen}
  COMMAND $<TARGET_FILE:mlkc> ${_ck_dir}/llama_ckpt.mlk -o ${_ck_gen}/llama_ckpt
  DEPENDS mlkc ${_ck_dir}/llama_ckpt.mlk ${PROJECT_SOURCE_DIR}/stdlib/nn.mlk
  COMMENT "mlkc llama_ckpt.mlk"
  VERBATIM)
add_executable(test_ckpt_llama ${_ck_dir}/test_ckpt_llama.c ${_ck_gen}/llama_ckpt.c)
target_include_directories(test_ckpt_llama PRIVATE ${_ck_gen} ${CMAKE_CURRENT_SOURCE_DIR}/runtime)
target_link_libraries(test_ckpt_llama PRIVATE mlkrt m)
add_test(NAME ckpt_llama COMMAND test_ckpt_llama)
set_tests_properties(ckpt_llama PROPERTIES TIMEOUT 120)
add_test(NAME gpu_ckpt_llama COMMAND test_ckpt_llama gpu)
set_tests_properties(gpu_ckpt_llama PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 120)
include(${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_ckpt.cmake)

# Programs run on GPU machines without libjansson.so: with MLK_JANSSON_STATIC (the default, when
# libjansson.a exists) a program that loads checkpoints must not need it.
if(MLK_JANSSON_IS_STATIC)
  add_test(NAME runtime_jansson_static
    COMMAND sh -c "d=$(readelf -d \"$1\") || exit 1; echo \"$d\" | grep -q NEEDED || exit 1; if echo \"$d\" | grep -q 'NEEDED.*jansson'; then echo \"$1 needs libjansson.so\"; exit 1; fi"
            -- $<TARGET_FILE:test_ckpt_llama>)
endif()

# ckpt_shard: tests/ckpt/shard.mlk (sharded params over 2 ranks) loads each rank's slice of
# whole checkpoint tensors, and runs with it, on the simulator.
mlk_model_c(${_ck_gen}/sharded ckpt/shard.mlk)
add_executable(test_ckpt_shard ${_ck_dir}/test_ckpt_shard.c ${_ck_gen}/sharded.c)
target_include_directories(test_ckpt_shard PRIVATE ${_ck_gen} ${CMAKE_CURRENT_SOURCE_DIR}/runtime)
target_link_libraries(test_ckpt_shard PRIVATE mlkrt m)
add_test(NAME ckpt_shard COMMAND test_ckpt_shard)
set_tests_properties(ckpt_shard PROPERTIES TIMEOUT 120)
