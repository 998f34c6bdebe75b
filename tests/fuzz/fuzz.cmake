# tests/fuzz: a libFuzzer harness of the front end (lexer, parser, AST dump, expression printer,
# semantic checks, the passes to the runtime descriptor and its checkpoint bindings),
# built by clang with -fsanitize=fuzzer,address,undefined whatever compiler builds the rest, and
# the CTest fuzz_frontend_smoke that runs it for 20 seconds on a copy of the seed corpus
# (tests/fuzz/corpus). Without clang's libFuzzer runtime (Debian: libclang-rt-19-dev) nothing is
# built and the test reports itself skipped. Included from compiler/CMakeLists.txt, where GEN is
# the directory of the generated lexer and parser.
set(_fuzz_dir ${CMAKE_CURRENT_LIST_DIR})
set(_fuzz_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz)
set(_fuzz_exe "")

# Can clang link a fuzzer here? (A probe at configure time: quick, and never breaks the build.)
if(MLK_CLANG)
  file(MAKE_DIRECTORY ${_fuzz_bin})
  file(WRITE ${_fuzz_bin}/probe.c
    "#include <stddef.h>\n#include <stdint.h>\n"
    "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
  execute_process(COMMAND ${MLK_CLANG} -fsanitize=fuzzer,address,undefined ${_fuzz_bin}/probe.c
                          -o ${_fuzz_bin}/probe
                  RESULT_VARIABLE _fuzz_rc OUTPUT_QUIET ERROR_QUIET)
  if(_fuzz_rc EQUAL 0)
    set(_fuzz_exe ${_fuzz_bin}/fuzz_frontend)
  else()
    message(STATUS "libFuzzer not available to ${MLK_CLANG} (install libclang-rt-19-dev): fuzz_frontend_smoke will be skipped")
  endif()
endif()

if(_fuzz_exe)
  set(_fuzz_flags -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
      -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Wall -Wextra
      -I${CMAKE_CURRENT_SOURCE_DIR} -I${GEN} -I${PROJECT_SOURCE_DIR}/runtime/include)
  set(_fuzz_headers ${CMAKE_CURRENT_SOURCE_DIR}/mlkc.h ${CMAKE_CURRENT_SOURCE_DIR}/builtins.def
      ${PROJECT_SOURCE_DIR}/runtime/include/mlk_desc.h
      ${GEN}/parse.h)
  set(_fuzz_objs)
  foreach(_src ${CMAKE_CURRENT_SOURCE_DIR}/diag.c ${CMAKE_CURRENT_SOURCE_DIR}/ast.c
               ${CMAKE_CURRENT_SOURCE_DIR}/sema.c ${CMAKE_CURRENT_SOURCE_DIR}/builtins.c
               ${CMAKE_CURRENT_SOURCE_DIR}/graph.c ${CMAKE_CURRENT_SOURCE_DIR}/elaborate.c
               ${CMAKE_CURRENT_SOURCE_DIR}/fuse.c ${CMAKE_CURRENT_SOURCE_DIR}/tile.c
               ${CMAKE_CURRENT_SOURCE_DIR}/schedule.c ${CMAKE_CURRENT_SOURCE_DIR}/events.c
               ${CMAKE_CURRENT_SOURCE_DIR}/serialize.c ${CMAKE_CURRENT_SOURCE_DIR}/bind.c ${GEN}/lex.c
               ${GEN}/parse.c ${_fuzz_dir}/fuzz_frontend.c)
    get_filename_component(_name ${_src} NAME_WE)
    set(_obj ${_fuzz_bin}/${_name}.o)
    set(_extra)
    if(_name STREQUAL "parse") # Lemon's generated code, as for mlkc
      set(_extra -Wno-unused-parameter -Wno-unused-variable -Wno-unused-but-set-variable)
    endif()
    add_custom_command(OUTPUT ${_obj}
      COMMAND ${MLK_CLANG} ${_fuzz_flags} ${_extra} -c ${_src} -o ${_obj}
      DEPENDS ${_src} ${_fuzz_headers}
      COMMENT "clang fuzzer ${_name}.c"
      VERBATIM)
    list(APPEND _fuzz_objs ${_obj})
  endforeach()
  add_custom_command(OUTPUT ${_fuzz_exe}
    COMMAND ${MLK_CLANG} -fsanitize=fuzzer,address,undefined ${_fuzz_objs} -lm -o ${_fuzz_exe}
    DEPENDS ${_fuzz_objs}
    COMMENT "clang fuzzer fuzz_frontend"
    VERBATIM)
  add_custom_target(fuzz_frontend ALL DEPENDS ${_fuzz_exe})
endif()

if(NOT _fuzz_exe)
  set(_fuzz_exe none) # smoke.sh: skipped
endif()
add_test(NAME fuzz_frontend_smoke
  COMMAND sh ${_fuzz_dir}/smoke.sh ${_fuzz_exe} ${_fuzz_dir}/corpus ${_fuzz_bin}/smoke
          ${_fuzz_dir}/mlk.dict)
set_tests_properties(fuzz_frontend_smoke PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS fuzz)
