# CPU simulator numerics: the generated mlp model, run by host threads over the same task queues
# and event counters, against a sequential double reference.
add_executable(test_mlp_sim ${CMAKE_CURRENT_SOURCE_DIR}/sim/test_mlp_sim.c)
target_link_libraries(test_mlp_sim PRIVATE mlp_model)
add_test(NAME sim_mlp COMMAND test_mlp_sim)
