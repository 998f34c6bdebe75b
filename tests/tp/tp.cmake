# tests/tp: tensor parallelism on the simulator: the Llama family's model compiled in-process for
# 1, 2 and 4 ranks from one checkpoint, run as worlds. Included from tests/CMakeLists.txt.
add_executable(test_tp ${CMAKE_CURRENT_LIST_DIR}/test_tp.c)
target_include_directories(test_tp PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../runtime
                           ${CMAKE_CURRENT_LIST_DIR}/../ckpt)
target_link_libraries(test_tp PRIVATE mlkc_core mlkrt ${MLK_LLVM_TOOL_LIBS} m)
add_test(NAME tp_world COMMAND test_tp)
set_tests_properties(tp_world PROPERTIES TIMEOUT 600)

# A world of processes, a rank each (mlk-run under MLK_WORLD_SIZE/MLK_RANK, and mpirun where Open
# MPI is installed): the same bits as one process, a stopping rank named, a missing one found.
add_test(NAME tp_processes
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/test_procs.sh $<TARGET_FILE:mlk-run>
                 ${CMAKE_CURRENT_LIST_DIR}/../hf/fixtures/llama-gqa7)
set_tests_properties(tp_processes PROPERTIES TIMEOUT 300)
