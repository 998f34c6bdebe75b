# tests/tp: tensor parallelism on the simulator: the Llama family's model compiled in-process for
# 1, 2 and 4 ranks from one checkpoint, run as worlds. Included from tests/CMakeLists.txt.
add_executable(test_tp ${CMAKE_CURRENT_LIST_DIR}/test_tp.c)
target_include_directories(test_tp PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../runtime
                           ${CMAKE_CURRENT_LIST_DIR}/../ckpt)
target_link_libraries(test_tp PRIVATE mlkc_core mlkrt ${MLK_LLVM_TOOL_LIBS} m)
add_test(NAME tp_world COMMAND test_tp)
set_tests_properties(tp_world PROPERTIES TIMEOUT 600)
