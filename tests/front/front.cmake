# tests/front: golden tests of the lexer and the parser. A case is x.mlk with exactly one
# expected file next to it: x.tokens (the output of --emit=tokens) or x.ast (of --emit=ast).
# Each case is one CTest, front_x, run by tests/golden.sh; MLK_GOLDEN_UPDATE=1 rewrites the
# expected files from mlkc's output.
file(GLOB _mlk_front_cases CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.mlk)
foreach(_src ${_mlk_front_cases})
  get_filename_component(_case ${_src} NAME_WLE)
  set(_base ${CMAKE_CURRENT_LIST_DIR}/${_case})
  set(_modes "")
  foreach(_m tokens ast)
    if(EXISTS ${_base}.${_m})
      list(APPEND _modes ${_m})
    endif()
  endforeach()
  list(LENGTH _modes _n)
  if(NOT _n EQUAL 1)
    message(SEND_ERROR "tests/front/${_case}.mlk needs exactly one of ${_case}.tokens, ${_case}.ast")
    continue()
  endif()
  add_test(NAME front_${_case}
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/../golden.sh $<TARGET_FILE:mlkc> ${_modes} ${_src}
            ${_base}.${_modes})
  set_tests_properties(front_${_case} PROPERTIES LABELS front)
endforeach()
