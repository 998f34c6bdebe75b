# tests/fuzz: a libFuzzer harness of the checkpoint parsers (safetensors header, shard index) in
# runtime/ckpt.c, built by clang with -fsanitize=fuzzer,address,undefined like the front-end
# fuzzer (fuzz.cmake), and the CTest fuzz_ckpt_smoke that runs it for 20 seconds on a copy of
# tests/fuzz/ckpt_corpus. Without clang's libFuzzer runtime nothing is built and the test reports
# itself skipped. Included from tests/ckpt/ckpt.cmake.
set(_fzc_dir ${CMAKE_CURRENT_LIST_DIR})
set(_fzc_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz_ckpt)
set(_fzc_exe none)

if(MLK_CLANG)
  file(MAKE_DIRECTORY ${_fzc_bin})
  file(WRITE ${_fzc_bin}/probe.c
    "#include <stddef.h>\n#include <stdint.h>\n"
    "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
  execute_process(COMMAND ${MLK_CLANG} -fsanitize=fuzzer,address,undefined ${_fzc_bin}/probe.c
                          -o ${_fzc_bin}/probe
                  RESULT_VARIABLE _fzc_rc OUTPUT_QUIET ERROR_QUIET)
  if(_fzc_rc EQUAL 0)
    set(_fzc_exe ${_fzc_bin}/fuzz_ckpt)
  endif()
endif()

if(NOT _fzc_exe STREQUAL "none")
  set(_fzc_flags -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
      -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Wall -Wextra
      -I${PROJECT_SOURCE_DIR}/runtime -I${PROJECT_SOURCE_DIR}/runtime/include -I${MLK_JANSSON_INCLUDE})
  set(_fzc_headers ${PROJECT_SOURCE_DIR}/runtime/internal.h ${PROJECT_SOURCE_DIR}/runtime/include/mlk.h
      ${PROJECT_SOURCE_DIR}/runtime/include/mlk_desc.h)
  set(_fzc_objs)
  foreach(_src ${PROJECT_SOURCE_DIR}/runtime/ckpt.c ${PROJECT_SOURCE_DIR}/runtime/status.c
               ${_fzc_dir}/fuzz_ckpt.c)
    get_filename_component(_name ${_src} NAME_WE)
    set(_obj ${_fzc_bin}/${_name}.o)
    add_custom_command(OUTPUT ${_obj}
      COMMAND ${MLK_CLANG} ${_fzc_flags} -c ${_src} -o ${_obj}
      DEPENDS ${_src} ${_fzc_headers}
      COMMENT "clang fuzzer ${_name}.c"
      VERBATIM)
    list(APPEND _fzc_objs ${_obj})
  endforeach()
  add_custom_command(OUTPUT ${_fzc_exe}
    COMMAND ${MLK_CLANG} -fsanitize=fuzzer,address,undefined ${_fzc_objs} ${MLK_JANSSON_LIB}
            -lpthread -lm -o ${_fzc_exe}
    DEPENDS ${_fzc_objs}
    COMMENT "clang fuzzer fuzz_ckpt"
    VERBATIM)
  add_custom_target(fuzz_ckpt ALL DEPENDS ${_fzc_exe})
endif()

add_test(NAME fuzz_ckpt_smoke
  COMMAND sh ${_fzc_dir}/smoke.sh ${_fzc_exe} ${_fzc_dir}/ckpt_corpus ${_fzc_bin}/smoke
          ${_fzc_dir}/ckpt.dict)
set_tests_properties(fuzz_ckpt_smoke PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS fuzz)
