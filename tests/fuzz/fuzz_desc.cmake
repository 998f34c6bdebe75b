# tests/fuzz/fuzz_desc.cmake: a libFuzzer harness of the runtime's model-description validation
# (fuzz_desc.c: descriptions built from the input, created and run on the simulator), built by
# clang with -fsanitize=fuzzer,address,undefined together with its own copy of the runtime, and
# the CTest fuzz_desc_smoke that runs it for 20 seconds on a copy of tests/fuzz/desc_corpus.
# Without clang's libFuzzer runtime (Debian: libclang-rt-19-dev) nothing is built and the test
# reports itself skipped. Included from tests/CMakeLists.txt.
set(_fd_dir ${CMAKE_CURRENT_LIST_DIR})
set(_fd_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz_desc)
set(_fd_exe "")

# Can clang link a fuzzer here? (The same probe as fuzz.cmake's, in this directory's scope.)
if(MLK_CLANG)
  file(MAKE_DIRECTORY ${_fd_bin})
  file(WRITE ${_fd_bin}/probe.c
    "#include <stddef.h>\n#include <stdint.h>\n"
    "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
  execute_process(COMMAND ${MLK_CLANG} -fsanitize=fuzzer,address,undefined ${_fd_bin}/probe.c
                          -o ${_fd_bin}/probe
                  RESULT_VARIABLE _fd_rc OUTPUT_QUIET ERROR_QUIET)
  if(_fd_rc EQUAL 0)
    set(_fd_exe ${_fd_bin}/fuzz_desc)
  else()
    message(STATUS "libFuzzer not available to ${MLK_CLANG} (install libclang-rt-19-dev): fuzz_desc_smoke will be skipped")
  endif()
endif()

if(_fd_exe)
  set(_rt ${PROJECT_SOURCE_DIR}/runtime)
  set(_fd_flags -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
      -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Wall -Wextra
      -I${_rt} -I${_rt}/include -I${PROJECT_SOURCE_DIR}/stdlib/ref -I${PROJECT_SOURCE_DIR}/stdlib
      -I${PROJECT_SOURCE_DIR}/tests/runtime -I${MLK_JANSSON_INCLUDE})
  file(GLOB _fd_headers ${_rt}/*.h ${_rt}/include/*.h ${PROJECT_SOURCE_DIR}/stdlib/ref/*.h
       ${PROJECT_SOURCE_DIR}/stdlib/*.h ${PROJECT_SOURCE_DIR}/tests/runtime/rt_*.h)
  # libmlkrt's own sources (its target's list, so that a new runtime file comes along), without CUDA
  get_target_property(_fd_rt_sources mlkrt_objects SOURCES)
  set(_fd_sources)
  foreach(_src ${_fd_rt_sources})
    if(NOT IS_ABSOLUTE ${_src})
      set(_src ${_rt}/${_src})
    endif()
    list(APPEND _fd_sources ${_src})
  endforeach()
  set(_fd_objs)
  foreach(_src ${_fd_sources} ${_fd_dir}/fuzz_desc.c)
    get_filename_component(_name ${_src} NAME_WE)
    set(_obj ${_fd_bin}/${_name}.o)
    set(_extra)
    if(_name STREQUAL "ref_tiles") # as in libmlkrt: references round like their device twins
      set(_extra -ffp-contract=off)
    endif()
    add_custom_command(OUTPUT ${_obj}
      COMMAND ${MLK_CLANG} ${_fd_flags} ${_extra} -c ${_src} -o ${_obj}
      DEPENDS ${_src} ${_fd_headers}
      COMMENT "clang fuzzer ${_name}.c (fuzz_desc)"
      VERBATIM)
    list(APPEND _fd_objs ${_obj})
  endforeach()
  add_custom_command(OUTPUT ${_fd_exe}
    COMMAND ${MLK_CLANG} -fsanitize=fuzzer,address,undefined ${_fd_objs} ${MLK_JANSSON_LIB} -lpthread -ldl -lm -o ${_fd_exe}
    DEPENDS ${_fd_objs}
    COMMENT "clang fuzzer fuzz_desc"
    VERBATIM)
  add_custom_target(fuzz_desc ALL DEPENDS ${_fd_exe})
endif()

if(NOT _fd_exe)
  set(_fd_exe none) # smoke.sh: skipped
endif()
add_test(NAME fuzz_desc_smoke
  COMMAND sh ${_fd_dir}/smoke.sh ${_fd_exe} ${_fd_dir}/desc_corpus ${_fd_bin}/smoke)
set_tests_properties(fuzz_desc_smoke PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS fuzz)
