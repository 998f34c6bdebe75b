# GPU tests: run on a machine with an NVIDIA GPU (the lent H100); elsewhere they print
# "SKIP: no GPU: <reason>" and exit 77, which CTest reports as skipped.
add_executable(test_mlp_gpu ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_mlp_gpu.c)
target_link_libraries(test_mlp_gpu PRIVATE mlp_model)
add_test(NAME gpu_mlp COMMAND test_mlp_gpu)
set_tests_properties(gpu_mlp PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)

# A world's NCCL communicator on one GPU: a one-rank communicator and the all-reduce a collective
# runs, over two tensors of a model on the GPU (SKIP without a GPU or without NCCL).
add_executable(test_nccl ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_nccl.c)
target_include_directories(test_nccl PRIVATE ${PROJECT_SOURCE_DIR}/runtime
                           ${CMAKE_CURRENT_SOURCE_DIR}/runtime)
target_link_libraries(test_nccl PRIVATE mlp_model m)
add_test(NAME gpu_nccl COMMAND test_nccl)
set_tests_properties(gpu_nccl PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 120)

# The wait watchdog: a description whose counters can never complete must be reported (task, op,
# event, counts) within the deadline, and the backend must stay usable. On the CPU simulator in
# every run, on the GPU where there is one.
add_executable(test_watchdog ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_watchdog.c)
target_link_libraries(test_watchdog PRIVATE mlp_model)
add_test(NAME sim_watchdog COMMAND test_watchdog cpu)
add_test(NAME gpu_watchdog COMMAND test_watchdog gpu)
set_tests_properties(sim_watchdog gpu_watchdog PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 60)
set_tests_properties(gpu_watchdog PROPERTIES LABELS gpu)

# Every op kind at odd sizes (tests/gpu/odd_ops.mlk): the GPU against the simulator, generic over
# the model's outputs.
mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/odd_ops gpu/odd_ops.mlk --attn-min-chunk=1)
add_executable(test_diff_gpu ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_diff_gpu.c
               ${CMAKE_CURRENT_BINARY_DIR}/odd_ops.c)
target_include_directories(test_diff_gpu PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(test_diff_gpu PRIVATE mlkrt m)
add_test(NAME gpu_diff_odd_ops COMMAND test_diff_gpu 0)
set_tests_properties(gpu_diff_odd_ops PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 120)
# the same harness on any machine: the simulator's dynamic schedule against its static one
add_test(NAME sim_diff_odd_ops COMMAND test_diff_gpu ${MLK_TEST_SEED} sim)
set_tests_properties(sim_diff_odd_ops PROPERTIES TIMEOUT 300)

# Matvecs at batches up to 64 (tests/gpu/batch_ops.mlk: the tensor-core path above 8 rows), the
# same harness; batches 9, 16, 33, 64 and 1 (from the model's range).
mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/batch_ops gpu/batch_ops.mlk)
add_executable(test_diff_batch ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_diff_gpu.c
               ${CMAKE_CURRENT_BINARY_DIR}/batch_ops.c)
target_compile_definitions(test_diff_batch PRIVATE MLK_DIFF_MODEL=batch_ops)
target_include_directories(test_diff_batch PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(test_diff_batch PRIVATE mlkrt m)
add_test(NAME gpu_diff_batch_ops COMMAND test_diff_batch 0)
set_tests_properties(gpu_diff_batch_ops PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 120)
add_test(NAME sim_diff_batch_ops COMMAND test_diff_batch ${MLK_TEST_SEED} sim)
set_tests_properties(sim_diff_batch_ops PROPERTIES TIMEOUT 300)
# The same model compiled for batches up to 160 (mlkc --batch-max, as mlk-run --batch): runs
# wider than the tensor-core path's 64 rows per pass over the weights (65, 100, 160).
mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/wide/batch_ops gpu/batch_ops.mlk --batch-max=160)
add_executable(test_diff_batch_wide ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_diff_gpu.c
               ${CMAKE_CURRENT_BINARY_DIR}/wide/batch_ops.c)
target_compile_definitions(test_diff_batch_wide PRIVATE MLK_DIFF_MODEL=batch_ops)
target_include_directories(test_diff_batch_wide PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/wide)
target_link_libraries(test_diff_batch_wide PRIVATE mlkrt m)
add_test(NAME gpu_diff_batch_wide COMMAND test_diff_batch_wide 0 65,100,160)
set_tests_properties(gpu_diff_batch_wide PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 120)
add_test(NAME sim_diff_batch_wide COMMAND test_diff_batch_wide ${MLK_TEST_SEED} sim 65,160)
set_tests_properties(sim_diff_batch_wide PROPERTIES TIMEOUT 600)

# The same differential test with odd_ops compiled for the dynamic schedule (blocks take tasks from
# a ticket counter): on the GPU against the simulator (its own dynamic ready queue).
mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/dyn/odd_ops gpu/odd_ops.mlk --schedule=dynamic --attn-min-chunk=1)
add_executable(test_diff_gpu_dyn ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_diff_gpu.c
               ${CMAKE_CURRENT_BINARY_DIR}/dyn/odd_ops.c)
target_include_directories(test_diff_gpu_dyn PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/dyn)
target_link_libraries(test_diff_gpu_dyn PRIVATE mlkrt m)
add_test(NAME gpu_diff_odd_ops_dynamic COMMAND test_diff_gpu_dyn 0)
set_tests_properties(gpu_diff_odd_ops_dynamic PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 120)

# Explicit events and megakernels that read each other's outputs (tests/gpu/event_ops.mlk): the
# same harness, which runs every megakernel of a step in order.
mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/event_ops gpu/event_ops.mlk)
add_executable(test_diff_events ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_diff_gpu.c
               ${CMAKE_CURRENT_BINARY_DIR}/event_ops.c)
target_compile_definitions(test_diff_events PRIVATE MLK_DIFF_MODEL=event_ops)
target_include_directories(test_diff_events PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(test_diff_events PRIVATE mlkrt m)
add_test(NAME gpu_diff_event_ops COMMAND test_diff_events 0)
set_tests_properties(gpu_diff_event_ops PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 120)
add_test(NAME sim_diff_event_ops COMMAND test_diff_events ${MLK_TEST_SEED} sim)
set_tests_properties(sim_diff_event_ops PROPERTIES TIMEOUT 300)

# Timeline traces: records against the task graph, the Chrome trace JSON, the summary, MLK_TRACE.
add_executable(test_trace ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_trace.c)
target_link_libraries(test_trace PRIVATE mlp_model)
add_test(NAME sim_trace COMMAND test_trace cpu ${CMAKE_CURRENT_BINARY_DIR})
add_test(NAME gpu_trace COMMAND test_trace gpu ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(sim_trace gpu_trace PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)
set_tests_properties(gpu_trace PROPERTIES LABELS gpu)
# The simulator's differential test also exports a trace of every op kind when its models are freed.
set_tests_properties(sim_diff_odd_ops PROPERTIES
  ENVIRONMENT "MLK_TRACE=${CMAKE_CURRENT_BINARY_DIR}/odd_ops_trace.json")

