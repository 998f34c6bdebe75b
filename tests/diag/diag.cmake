# tests/diag: golden tests of the front end's diagnostics. A case is x.mlk with x.err, the exact
# stderr of `mlkc --emit=ast x.mlk`, which must exit with status 1; a few edge inputs that are
# valid (the empty file, a file of comments) have x.ast instead. Each case is one CTest, diag_x,
# run by tests/golden.sh; MLK_GOLDEN_UPDATE=1 rewrites the expected files from mlkc's output.
file(GLOB _mlk_diag_cases CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.mlk)
foreach(_src ${_mlk_diag_cases})
  get_filename_component(_case ${_src} NAME_WLE)
  set(_base ${CMAKE_CURRENT_LIST_DIR}/${_case})
  if(EXISTS ${_base}.err AND NOT EXISTS ${_base}.ast)
    set(_mode err)
  elseif(EXISTS ${_base}.ast AND NOT EXISTS ${_base}.err)
    set(_mode ast)
  else()
    message(SEND_ERROR "tests/diag/${_case}.mlk needs exactly one of ${_case}.err, ${_case}.ast")
    continue()
  endif()
  add_test(NAME diag_${_case}
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/../golden.sh $<TARGET_FILE:mlkc> ${_mode} ${_src}
            ${_base}.${_mode})
  set_tests_properties(diag_${_case} PROPERTIES LABELS diag)
endforeach()
