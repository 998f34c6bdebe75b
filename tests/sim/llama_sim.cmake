# llama_tiny (tests/sim/llama_tiny.mlk, std.nn's Llama block) against the sequential C reference of
# examples/llama/llama_ref.c: on the CPU simulator (sim_llama) and on the GPU (gpu_llama, which
# also compares with the simulator; exit 77, skipped, without a GPU). Included from
# tests/CMakeLists.txt, so paths are relative to tests/.
#
# Three compilations of the same model: as mlkc compiles it by default (attention split over the
# context into 32 chunks per kv head, with 2 kv heads: partials and a reduce op per layer; chunks
# of at least 32 positions, so these short contexts fill the first chunk only), with
# --attn-split=1 (a task per kv head, no reduce; suffix _nosplit) and --attn-split=3
# --attn-min-chunk=1 (chunks of several positions that cross KV pages; suffix _split3); and the
# same model with plain RoPE over theta 10000, tests/sim/llama_tiny_plain.mlk (suffix _plain). Each
# goes into a directory of its own, as the generated API has the model's name.

set(LLAMA_TINY_MLK ${CMAKE_CURRENT_SOURCE_DIR}/sim/llama_tiny.mlk)

# llama_tiny_variant(SUFFIX DIR MLK DEFINES MLKC_OPTIONS...): the model MLK (a llama_tiny) generated
# with MLKC_OPTIONS, plus the reference, as library llama_tiny_model${SUFFIX}, and the tests
# sim_llama${SUFFIX} and gpu_llama${SUFFIX}, built with the preprocessor DEFINES ("" for none).
function(llama_tiny_variant suffix dir mlk defines)
  set(out ${dir}/llama_tiny)
  add_custom_command(
    OUTPUT ${out}.h ${out}.c
    COMMAND ${CMAKE_COMMAND} -E make_directory ${dir}
    COMMAND $<TARGET_FILE:mlkc> ${ARGN} ${mlk} -o ${out}
    DEPENDS mlkc ${mlk} ${PROJECT_SOURCE_DIR}/stdlib/nn.mlk
    COMMENT "mlkc ${ARGN} ${mlk}"
    VERBATIM)
  # The generated model plus the reference, shared by both tests.
  add_library(llama_tiny_model${suffix} STATIC ${out}.c ${PROJECT_SOURCE_DIR}/examples/llama/llama_ref.c)
  target_include_directories(llama_tiny_model${suffix} PUBLIC ${dir} ${PROJECT_SOURCE_DIR}/examples/llama)
  target_link_libraries(llama_tiny_model${suffix} PUBLIC mlkrt m)

  add_executable(test_llama_sim${suffix} ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_llama_sim.c)
  target_link_libraries(test_llama_sim${suffix} PRIVATE llama_tiny_model${suffix})
  target_compile_definitions(test_llama_sim${suffix} PRIVATE ${defines})
  add_test(NAME sim_llama${suffix} COMMAND test_llama_sim${suffix} ${MLK_TEST_SEED})
  # 3-30 s as a rule; 115 s was seen under ASan with both cores loaded by builds and another
  # suite. The limit detects a hang, so it stays well above the slowest run seen.
  set_tests_properties(sim_llama${suffix} PROPERTIES TIMEOUT 600)

  # The GPU test reuses the simulator test's harness (it includes test_llama_sim.c).
  add_executable(test_llama_gpu${suffix} ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_llama_gpu.c)
  target_include_directories(test_llama_gpu${suffix} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/sim)
  target_link_libraries(test_llama_gpu${suffix} PRIVATE llama_tiny_model${suffix})
  target_compile_definitions(test_llama_gpu${suffix} PRIVATE ${defines})
  add_test(NAME gpu_llama${suffix} COMMAND test_llama_gpu${suffix})
  set_tests_properties(gpu_llama${suffix} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 120)
endfunction()

llama_tiny_variant("" ${CMAKE_CURRENT_BINARY_DIR} ${LLAMA_TINY_MLK} "")
llama_tiny_variant(_nosplit ${CMAKE_CURRENT_BINARY_DIR}/llama_nosplit ${LLAMA_TINY_MLK} ""
                   --attn-split=1)
llama_tiny_variant(_split3 ${CMAKE_CURRENT_BINARY_DIR}/llama_split3 ${LLAMA_TINY_MLK} ""
                   --attn-split=3 --attn-min-chunk=1)
# Plain RoPE over theta 10000 (std.nn's llama2_block), against the reference configured so.
llama_tiny_variant(_plain ${CMAKE_CURRENT_BINARY_DIR}/llama_plain
                   ${CMAKE_CURRENT_SOURCE_DIR}/sim/llama_tiny_plain.mlk LT_ROPE_PLAIN)
