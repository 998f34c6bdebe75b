# tests/compiler: unit tests of the compiler's internals, linked with its passes (mlkc_core).
add_executable(test_graph_ir ${CMAKE_CURRENT_LIST_DIR}/test_graph_ir.c)
target_link_libraries(test_graph_ir PRIVATE mlkc_core)
add_test(NAME compiler_graph_ir COMMAND test_graph_ir)
set_tests_properties(compiler_graph_ir PROPERTIES LABELS compiler)
