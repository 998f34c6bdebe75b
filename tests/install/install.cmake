# tests/install: `cmake --install` into a temporary prefix, and the tutorial's program built
# against it from outside the tree (install_test.sh). Included from tests/CMakeLists.txt.
find_program(MLK_PKG_CONFIG NAMES pkg-config pkgconf)
if(MLK_PKG_CONFIG)
  set(_in_pc ${MLK_PKG_CONFIG})
else()
  set(_in_pc pkg-config) # the test then fails, naming scripts/setup.sh
endif()
# In a sanitizer build the installed libraries are instrumented: so must the programs be.
set(_in_flags)
if(MLK_SANITIZE)
  set(_in_flags "-fsanitize=address,undefined -fno-omit-frame-pointer")
endif()
if(MLK_JANSSON_IS_STATIC)
  set(_in_jansson 1)
else()
  set(_in_jansson 0)
endif()
if(TARGET mlkrt_shared)
  set(_in_shared 1)
else()
  set(_in_shared 0)
endif()
add_test(NAME install_tutorial
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/install_test.sh ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR}
          ${CMAKE_CURRENT_BINARY_DIR}/install_test ${CMAKE_INSTALL_LIBDIR} ${MLK_INSTALL_INCLUDEDIR}
          ${MLK_INSTALL_STDLIBDIR} ${CMAKE_COMMAND} ${CMAKE_GENERATOR} ${CMAKE_C_COMPILER} ${_in_pc} ${_in_jansson}
          ${_in_shared} "${_in_flags}" $<TARGET_FILE:test_mlk_run>)
set_tests_properties(install_tutorial PROPERTIES LABELS install TIMEOUT 120
                     PASS_REGULAR_EXPRESSION "install: ok" FAIL_REGULAR_EXPRESSION "FAIL:")
