# tests/kv: the managed paged KV cache (runtime/kv.c) over the llama_tiny megakernel of
# tests/sim/llama_sim.cmake (included before this file). Included from tests/CMakeLists.txt.
add_executable(test_kv ${CMAKE_CURRENT_LIST_DIR}/test_kv.c)
target_include_directories(test_kv PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/runtime
                           ${PROJECT_SOURCE_DIR}/runtime)
target_link_libraries(test_kv PRIVATE llama_tiny_model)
add_test(NAME sim_kv_pages COMMAND test_kv)
set_tests_properties(sim_kv_pages PROPERTIES TIMEOUT 180)
add_test(NAME gpu_kv_pages COMMAND test_kv gpu)
set_tests_properties(gpu_kv_pages PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 180)
