# CPU simulator numerics: the generated mlp model, run by host threads over the same task queues
# and event counters, against a sequential double reference.
add_executable(test_mlp_sim ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_mlp_sim.c)
target_link_libraries(test_mlp_sim PRIVATE mlp_model)
add_test(NAME sim_mlp COMMAND test_mlp_sim ${MLK_TEST_SEED})

# A sampled decode step (tests/sim/sample_tiny.mlk) through the generated typed API: each token is
# the reference's for the model's logits and u, and the draws follow the kept probabilities.
mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/sample_tiny sim/sample_tiny.mlk)
add_executable(test_sample_sim ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_sample_sim.c
               ${CMAKE_CURRENT_BINARY_DIR}/sample_tiny.c)
target_include_directories(test_sample_sim PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(test_sample_sim PRIVATE mlkrt m)
add_test(NAME sim_sample COMMAND test_sample_sim)

# Explicit events (tests/sim/test_event_sim.c): event_war.mlk, whose wait/notify clauses order a
# cache append after the attention that reads the entry it rewrites; the same model without them
# (event_war_racy.mlk), which the dependency checker must catch; and tests/codegen/events_fused.mlk,
# whose clauses go through every fusion.
foreach(_mlk sim/event_war.mlk sim/event_war_racy.mlk codegen/events_fused.mlk)
  get_filename_component(_m ${_mlk} NAME_WLE)
  mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/${_m} ${_mlk})
endforeach()
add_executable(test_event_sim ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_event_sim.c
               ${CMAKE_CURRENT_BINARY_DIR}/event_war.c ${CMAKE_CURRENT_BINARY_DIR}/event_war_racy.c
               ${CMAKE_CURRENT_BINARY_DIR}/events_fused.c)
target_include_directories(test_event_sim PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(test_event_sim PRIVATE mlkrt m)
add_test(NAME sim_events COMMAND test_event_sim ${MLK_TEST_SEED})

# Megakernels of one model handing tensors to each other on the device (tests/sim/handoff.mlk,
# tests/sim/test_handoff_sim.c): one reads the outputs another wrote, and the runtime refuses a run
# before the writer's, at a larger batch, or with an out-of-range id.
mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/handoff sim/handoff.mlk)
add_executable(test_handoff_sim ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_handoff_sim.c
               ${CMAKE_CURRENT_BINARY_DIR}/handoff.c)
target_include_directories(test_handoff_sim PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(test_handoff_sim PRIVATE mlkrt m)
add_test(NAME sim_handoff COMMAND test_handoff_sim ${MLK_TEST_SEED})

# Biases (tests/sim/bias_ops.mlk, tests/sim/test_bias_sim.c): a bf16 param vector added to every
# row, folded into matvecs and as eltwise ops, at odd sizes and batches 1..5, against a double
# reference under many schedules of the deterministic simulator, static and dynamic.
mlk_model_c(${CMAKE_CURRENT_BINARY_DIR}/bias_ops sim/bias_ops.mlk)
add_executable(test_bias_sim ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_bias_sim.c
               ${CMAKE_CURRENT_BINARY_DIR}/bias_ops.c)
target_include_directories(test_bias_sim PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(test_bias_sim PRIVATE mlkrt m)
add_test(NAME sim_bias COMMAND test_bias_sim ${MLK_TEST_SEED})
