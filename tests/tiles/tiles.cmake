# The device tiles on the host: stdlib/tiles compiled for x86 by the same clang and run in a block
# emulator (block_emu.c) against stdlib/ref, so that a tile's indexing, barriers and weight stream
# are checked on machines without a GPU. One clang command builds the whole program (the tiles
# need clang's vector types); a sanitizer build instruments it too.
set(TILES_DIR ${CMAKE_CURRENT_SOURCE_DIR}/tiles)
# runtime/status.c: the runtime's bf16 conversions (and its error state), which the test uses
set(TILES_SRC ${TILES_DIR}/block_emu.c ${TILES_DIR}/test_tiles.c
    ${PROJECT_SOURCE_DIR}/stdlib/ref/ref_tiles.c ${PROJECT_SOURCE_DIR}/runtime/status.c)
foreach(t matvec eltwise norm rope attention sample stream tune)
  list(APPEND TILES_SRC ${PROJECT_SOURCE_DIR}/stdlib/tiles/${t}.c)
endforeach()
set(TILES_FLAGS -O1 -g -std=c11 -D_GNU_SOURCE -DMLK_SM=90 -Wall -Wextra -Werror
    -I${PROJECT_SOURCE_DIR}/stdlib/tiles -I${PROJECT_SOURCE_DIR}/stdlib
    -I${PROJECT_SOURCE_DIR}/stdlib/ref -I${PROJECT_SOURCE_DIR}/runtime/include
    -I${PROJECT_SOURCE_DIR}/runtime -I${PROJECT_SOURCE_DIR}/tests/runtime)
if(MLK_SANITIZE)
  list(APPEND TILES_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
       -fno-sanitize-recover=undefined)
endif()
set(TILES_EXE ${CMAKE_CURRENT_BINARY_DIR}/test_tiles)
add_custom_command(OUTPUT ${TILES_EXE}
  COMMAND ${MLK_CLANG} ${TILES_FLAGS} ${TILES_SRC} -o ${TILES_EXE} -lm -pthread
  DEPENDS ${TILES_SRC} ${TILES_DIR}/block_emu.h ${PROJECT_SOURCE_DIR}/stdlib/tiles/mlk_tiles.h
          ${PROJECT_SOURCE_DIR}/stdlib/ref/mlk_ref.h ${PROJECT_SOURCE_DIR}/runtime/include/mlk_desc.h
          ${PROJECT_SOURCE_DIR}/runtime/include/mlk.h ${PROJECT_SOURCE_DIR}/tests/runtime/rt_test.h
  COMMENT "clang (host) test_tiles: the device tiles in the block emulator"
  VERBATIM)
add_custom_target(tiles_emu_exe ALL DEPENDS ${TILES_EXE})
add_test(NAME tiles_emu COMMAND ${TILES_EXE})
set_tests_properties(tiles_emu PROPERTIES TIMEOUT 900 ENVIRONMENT "RT_SEED=${MLK_TEST_SEED}")
