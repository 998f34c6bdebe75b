# llama_tiny (tests/sim/llama_tiny.mlk, std.nn's Llama block) against the sequential C reference of
# examples/llama/llama_ref.c: on the CPU simulator (sim_llama) and on the GPU (gpu_llama, which
# also compares with the simulator; exit 77, skipped, without a GPU). Included from
# tests/CMakeLists.txt, so paths are relative to tests/.

set(LLAMA_TINY_MLK ${CMAKE_CURRENT_SOURCE_DIR}/sim/llama_tiny.mlk)
set(LLAMA_TINY_OUT ${CMAKE_CURRENT_BINARY_DIR}/llama_tiny)
add_custom_command(
  OUTPUT ${LLAMA_TINY_OUT}.h ${LLAMA_TINY_OUT}.c
  COMMAND $<TARGET_FILE:mlkc> ${LLAMA_TINY_MLK} -o ${LLAMA_TINY_OUT}
  DEPENDS mlkc ${LLAMA_TINY_MLK} ${PROJECT_SOURCE_DIR}/stdlib/nn.mlk
  COMMENT "mlkc llama_tiny.mlk"
  VERBATIM)

# The generated model plus the reference, shared by both tests.
add_library(llama_tiny_model STATIC ${LLAMA_TINY_OUT}.c
            ${PROJECT_SOURCE_DIR}/examples/llama/llama_ref.c)
target_include_directories(llama_tiny_model PUBLIC ${CMAKE_CURRENT_BINARY_DIR}
                           ${PROJECT_SOURCE_DIR}/examples/llama)
target_link_libraries(llama_tiny_model PUBLIC mlkrt m)

add_executable(test_llama_sim ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_llama_sim.c)
target_link_libraries(test_llama_sim PRIVATE llama_tiny_model)
add_test(NAME sim_llama COMMAND test_llama_sim)
set_tests_properties(sim_llama PROPERTIES TIMEOUT 120)

# The GPU test reuses the simulator test's harness (it includes test_llama_sim.c).
add_executable(test_llama_gpu ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_llama_gpu.c)
target_include_directories(test_llama_gpu PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/sim)
target_link_libraries(test_llama_gpu PRIVATE llama_tiny_model)
add_test(NAME gpu_llama COMMAND test_llama_gpu)
set_tests_properties(gpu_llama PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 120)
