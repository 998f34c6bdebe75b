# tests/run: mlk-run end to end on the CPU simulator, against examples/llama/llama_ref.c, over tiny
# checkpoints that the test writes (tests/ckpt/st_write.h). Included from tests/CMakeLists.txt.
add_executable(test_mlk_run ${CMAKE_CURRENT_LIST_DIR}/test_mlk_run.c
               ${PROJECT_SOURCE_DIR}/examples/llama/llama_ref.c)
target_include_directories(test_mlk_run PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../runtime
                           ${CMAKE_CURRENT_LIST_DIR}/../ckpt ${PROJECT_SOURCE_DIR}/examples/llama
                           ${PROJECT_SOURCE_DIR}/stdlib/ref)
target_link_libraries(test_mlk_run PRIVATE mlkrt m)
add_dependencies(test_mlk_run mlk-run)
add_test(NAME run_mlk_run COMMAND test_mlk_run $<TARGET_FILE:mlk-run> ${MLK_TEST_SEED})
set_tests_properties(run_mlk_run PROPERTIES TIMEOUT 600)
# The greedy runs on the GPU (Llama and Qwen2 checkpoints against the same reference); exit 77,
# skipped, without one.
add_test(NAME gpu_mlk_run COMMAND test_mlk_run $<TARGET_FILE:mlk-run> ${MLK_TEST_SEED} gpu)
set_tests_properties(gpu_mlk_run PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 600)
