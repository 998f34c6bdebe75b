# tests/sema: golden tests of semantic errors. A case is x.mlk with x.err, the exact stderr of
# `mlkc --emit=graph x.mlk` (all passes up to lowering), which must exit with status 1.
file(GLOB _mlk_sema_cases CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.mlk)
foreach(_src ${_mlk_sema_cases})
  get_filename_component(_case ${_src} NAME_WLE)
  add_test(NAME sema_${_case}
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/../golden.sh $<TARGET_FILE:mlkc> check ${_src}
            ${CMAKE_CURRENT_LIST_DIR}/${_case}.err)
  set_tests_properties(sema_${_case} PROPERTIES LABELS sema)
endforeach()
