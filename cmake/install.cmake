# install.cmake: what `cmake --install` (and `make install PREFIX=...`) puts under the prefix.
#
#   bin/mlkc, bin/mlk-run                      the compiler and the generation tool
#   LIBDIR/libmlkrt.a, libmlkrt.so.0.1         the runtime: archive (with Jansson) and shared
#   include/mlkc/mlk.h, mlk_desc.h             the headers generated code and applications include
#   share/mlkc/stdlib/*.mlk                    `import std.X` (mlkc finds it from bin/), and
#   share/mlkc/stdlib/models/*.mlk             the model families mlk-run compiles
#   LIBDIR/cmake/mlkc/                         find_package(mlkc): mlkc::mlkc, mlkc::mlkrt,
#                                              mlkc::mlkrt_shared
#   LIBDIR/pkgconfig/mlkrt.pc                  pkg-config --cflags --libs mlkrt
#
# Included at the end of the top-level CMakeLists.txt, once every target exists.
include(CMakePackageConfigHelpers)

# The programs installed into bin/ and exported as mlkc::NAME.
set(MLK_INSTALL_PROGRAMS mlkc mlk-run)
# They keep their run path to libraries outside the system's directories (libLLVM-19).
set_target_properties(${MLK_INSTALL_PROGRAMS} PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS ${MLK_INSTALL_PROGRAMS} EXPORT mlkcTargets RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(_libs mlkrt)
if(TARGET mlkrt_shared)
  list(APPEND _libs mlkrt_shared)
endif()
install(TARGETS ${_libs} EXPORT mlkcTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/runtime/include/mlk.h ${PROJECT_SOURCE_DIR}/runtime/include/mlk_desc.h
  DESTINATION ${MLK_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/stdlib/ DESTINATION ${MLK_INSTALL_STDLIBDIR}
  FILES_MATCHING PATTERN "*.mlk" PATTERN "ref" EXCLUDE PATTERN "tiles" EXCLUDE)

# The CMake package: relocatable, like the targets file.
set(_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/mlkc)
install(EXPORT mlkcTargets NAMESPACE mlkc:: DESTINATION ${_cmakedir})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/mlkcConfig.cmake.in
  ${PROJECT_BINARY_DIR}/mlkcConfig.cmake INSTALL_DESTINATION ${_cmakedir}
  PATH_VARS MLK_INSTALL_INCLUDEDIR MLK_INSTALL_STDLIBDIR)
# 0.x: a minor release may break compatibility, so find_package(mlkc 0.1) accepts 0.1.* only.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mlkcConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mlkcConfig.cmake ${PROJECT_BINARY_DIR}/mlkcConfigVersion.cmake
  DESTINATION ${_cmakedir})

# mlkrt.pc. Its prefix is the one of the install itself (`cmake --install --prefix` may differ from
# CMAKE_INSTALL_PREFIX at configure time), so the file is configured twice: here everything else,
# at install time the prefix.
set(MLK_PC_PREFIX "@CMAKE_INSTALL_PREFIX@")
foreach(d LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
    set(MLK_PC_${d} "${CMAKE_INSTALL_${d}}")
  else()
    set(MLK_PC_${d} "\${prefix}/${CMAKE_INSTALL_${d}}")
  endif()
endforeach()
# What a static link needs besides the archive; Jansson only when it is not folded into it.
set(MLK_PC_LIBS_PRIVATE "-lpthread -ldl -lm")
if(NOT MLK_JANSSON_IS_STATIC)
  string(APPEND MLK_PC_LIBS_PRIVATE " -ljansson")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/mlkrt.pc.in ${PROJECT_BINARY_DIR}/mlkrt.pc.in @ONLY)
install(CODE "configure_file(\"${PROJECT_BINARY_DIR}/mlkrt.pc.in\" \"${PROJECT_BINARY_DIR}/mlkrt.pc\" @ONLY)")
install(FILES ${PROJECT_BINARY_DIR}/mlkrt.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
