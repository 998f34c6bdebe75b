# tests/ckpt: checkpoint bindings and the loader. Included from tests/CMakeLists.txt.
set(_ck_dir ${CMAKE_CURRENT_LIST_DIR})

# runtime_ckpt: the hand-built model of ckpt_test.h (no compiler involved).
add_executable(runtime_ckpt ${_ck_dir}/test_ckpt.c)
target_include_directories(runtime_ckpt PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/runtime)
target_link_libraries(runtime_ckpt PRIVATE mlkrt m)
add_test(NAME runtime_ckpt COMMAND runtime_ckpt)
set_tests_properties(runtime_ckpt PROPERTIES TIMEOUT 120)
