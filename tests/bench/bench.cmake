# tests/bench: bench/decode without a GPU. decode_bench built over the llama_tiny model of
# tests/sim/llama_sim.cmake (included before this file) runs two small points on the CPU simulator
# (bench_decode_tiny), and again through bench/decode/run.sh, the one command of the GPU machine,
# with the floor and the peer left out (bench_decode_sim); bench/decode/report.py is checked on
# canned inputs for every result a point can get (bench_decode_report), trace_layer.py on a
# trace of it (bench_trace_layer), bench/decode/layer.sh, the GPU machine's command for a
# layer's tables, over it (bench_layer), bench/decode/compare.sh, two builds interleaved in one
# run, with it as both (bench_compare), bench/decode/knobs.sh, its launch-time knob settings
# each against the defaults (bench_knobs), bench/decode/ncu_table.py, the table of a profile
# (bench/decode/profile.sh), on a hand-written export (bench_ncu_table), and bench/decode/variants.sh's
# refusals of patches it cannot build (bench_variants), and bench/decode/call.sh, a session's device
# call in stages, with the tiny build as its baseline and candidate (bench_call). Included from
# tests/CMakeLists.txt.
add_executable(decode_bench_tiny ${PROJECT_SOURCE_DIR}/bench/decode/decode_bench.c)
target_compile_definitions(decode_bench_tiny PRIVATE BENCH_DESC=llama_tiny_desc)
target_link_libraries(decode_bench_tiny PRIVATE llama_tiny_model)
# The KV context of the longest point + 1, weights set, both points timed (every step's outputs
# checked); any message of decode_bench is a failure.
set(_bd_point "median [0-9.]+ ms, p10 [0-9.]+, p90 [0-9.]+, min [0-9.]+ over 6 steps")
add_test(NAME bench_decode_tiny COMMAND decode_bench_tiny --points=1:8,4:20 --steps=6)
set_tests_properties(bench_decode_tiny PROPERTIES ENVIRONMENT "MLK_BACKEND=cpu" TIMEOUT 120
  PASS_REGULAR_EXPRESSION "KV context 21.*\nweights: .*\nbatch  1, context     8: ${_bd_point}.*\nbatch  4, context    20: ${_bd_point}"
  FAIL_REGULAR_EXPRESSION "decode_bench: ")

find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME bench_decode_report
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_report.py ${PROJECT_SOURCE_DIR})
  # bench_X runs tests/bench/X.sh DECODE_BENCH_TINY PYTHON SOURCE_DIR
  foreach(t decode_sim trace_layer layer compare knobs ncu_table variants call)
    add_test(NAME bench_${t}
             COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/${t}.sh $<TARGET_FILE:decode_bench_tiny>
                     ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR})
  endforeach()
  set_tests_properties(bench_decode_report bench_decode_sim bench_trace_layer bench_layer
                       bench_compare bench_knobs bench_ncu_table bench_variants bench_call PROPERTIES TIMEOUT 120)
  set_tests_properties(bench_variants PROPERTIES SKIP_RETURN_CODE 77)
else()
  message(WARNING "python3 not found: the bench/decode report tests are left out")
endif()
