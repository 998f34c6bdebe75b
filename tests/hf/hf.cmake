# tests/hf: mlk-run on the CPU simulator against transformers' logits and greedy tokens for the
# small random-init checkpoints in tests/hf/fixtures, which tests/hf/compare_hf.py wrote with
# transformers (the same script compares the larger configurations on a GPU machine). One test
# per fixture directory. Included from tests/CMakeLists.txt.
add_executable(test_hf_fixtures ${CMAKE_CURRENT_LIST_DIR}/test_hf_fixtures.c)
target_include_directories(test_hf_fixtures PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../runtime
                           ${MLK_JANSSON_INCLUDE})
target_link_libraries(test_hf_fixtures PRIVATE mlkrt ${MLK_JANSSON_LIB} m)
add_dependencies(test_hf_fixtures mlk-run)
file(GLOB MLK_HF_FIXTURES LIST_DIRECTORIES true ${CMAKE_CURRENT_LIST_DIR}/fixtures/*)
foreach(dir ${MLK_HF_FIXTURES})
  if(EXISTS ${dir}/expected.json)
    get_filename_component(name ${dir} NAME)
    add_test(NAME hf_${name} COMMAND test_hf_fixtures $<TARGET_FILE:mlk-run> ${dir})
    set_tests_properties(hf_${name} PROPERTIES TIMEOUT 600)
  endif()
endforeach()
# The same over the ranks of tensor parallelism: each rank loads its shard of the checkpoint (its
# heads' q/k/v and o rows and columns, its part of the MLP), and the sums are all-reduced.
foreach(case llama-tiny:2 llama-gqa7:2 qwen2-tiny:2)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 name)
  list(GET parts 1 tp)
  add_test(NAME hf_${name}_tp${tp}
           COMMAND test_hf_fixtures $<TARGET_FILE:mlk-run> ${CMAKE_CURRENT_LIST_DIR}/fixtures/${name}
                   "--tp ${tp}")
  set_tests_properties(hf_${name}_tp${tp} PROPERTIES TIMEOUT 600)
endforeach()
# ... and with the sums inside the megakernel (each rank reads the others' operands)
add_test(NAME hf_llama-gqa7_tp2_in_kernel
         COMMAND test_hf_fixtures $<TARGET_FILE:mlk-run> ${CMAKE_CURRENT_LIST_DIR}/fixtures/llama-gqa7
                 "--tp 2 --collectives kernel")
set_tests_properties(hf_llama-gqa7_tp2_in_kernel PROPERTIES TIMEOUT 600)
