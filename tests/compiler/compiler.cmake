# tests/compiler: unit tests of the compiler's internals, linked with its passes (mlkc_core).
add_executable(test_graph_ir ${CMAKE_CURRENT_LIST_DIR}/test_graph_ir.c)
target_link_libraries(test_graph_ir PRIVATE mlkc_core ${MLK_LLVM_LIB})
add_test(NAME compiler_graph_ir COMMAND test_graph_ir)
set_tests_properties(compiler_graph_ir PROPERTIES LABELS compiler)

# The descriptor in a generated model.c against mlkc --emit=graph of the same model: every field
# the compiler sets must reach the C the runtime reads. For the Llama model (caches, rope, split
# attention and its reduce, gated products), the sampling one (sample's attributes), the mlp
# (checkpoint bindings) and event_war (an explicit event).
# mlk_desc_fields(MODEL MLK_FILE GENERATED): GENERATED is the generated model.c, or a library
# target that holds it.
function(mlk_desc_fields model mlk generated)
  add_executable(test_desc_${model} ${CMAKE_CURRENT_LIST_DIR}/test_desc_fields.c)
  if(TARGET ${generated})
    target_link_libraries(test_desc_${model} PRIVATE ${generated})
  else()
    target_sources(test_desc_${model} PRIVATE ${generated})
  endif()
  target_compile_definitions(test_desc_${model} PRIVATE MLK_DESC=${model}_desc)
  target_link_libraries(test_desc_${model} PRIVATE mlkc_core ${MLK_LLVM_LIB} mlkrt m)
  add_test(NAME compiler_desc_fields_${model}
    COMMAND sh -c "\"$1\" --emit=graph \"$2\" > \"$4/${model}.graph.json\" && \"$3\" > \"$4/${model}.desc.json\" && diff -u \"$4/${model}.graph.json\" \"$4/${model}.desc.json\""
            -- $<TARGET_FILE:mlkc> ${mlk} $<TARGET_FILE:test_desc_${model}> ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(compiler_desc_fields_${model} PROPERTIES LABELS compiler)
endfunction()
mlk_desc_fields(llama_tiny ${PROJECT_SOURCE_DIR}/tests/sim/llama_tiny.mlk
                ${CMAKE_CURRENT_BINARY_DIR}/llama_tiny.c)
mlk_desc_fields(sample_tiny ${PROJECT_SOURCE_DIR}/tests/sim/sample_tiny.mlk
                ${CMAKE_CURRENT_BINARY_DIR}/sample_tiny.c)
mlk_desc_fields(mlp ${PROJECT_SOURCE_DIR}/examples/mlp/mlp.mlk mlp_model)
mlk_desc_fields(event_war ${PROJECT_SOURCE_DIR}/tests/sim/event_war.mlk
                ${CMAKE_CURRENT_BINARY_DIR}/event_war.c)

# rope's linear scaling, as the compiler encodes it, against the runtime's reference frequencies.
add_executable(test_rope_linear ${CMAKE_CURRENT_LIST_DIR}/test_rope_linear.c)
target_include_directories(test_rope_linear PRIVATE ${PROJECT_SOURCE_DIR}/stdlib/ref)
target_link_libraries(test_rope_linear PRIVATE mlkc_core ${MLK_LLVM_LIB} mlkrt m)
add_test(NAME compiler_rope_linear
  COMMAND test_rope_linear ${CMAKE_CURRENT_LIST_DIR}/rope_linear.mlk ${PROJECT_SOURCE_DIR}/stdlib)
set_tests_properties(compiler_rope_linear PROPERTIES LABELS compiler)
