# cli.cmake: the frugal command's data files and its own tests. The default rules are
# found from the binary, never the working directory (src/cli/cli_args.c): beside a build
# tree (../configs), installed (../share/frugal/configs, or the prefix compiled in here),
# or the source tree it was built from. tests/cli_*.sh drive the binary; each runs in a
# fresh temporary working directory outside the checkout.
include(GNUInstallDirs)
target_compile_definitions(frugal PRIVATE
  FG_INSTALL_CONFIGDIR="${CMAKE_INSTALL_FULL_DATADIR}/frugal/configs"
  FG_BUILD_CONFIGDIR="${CMAKE_SOURCE_DIR}/configs")
install(TARGETS frugal RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/configs/clean_rules.conf ${CMAKE_SOURCE_DIR}/configs/clean_rules_extract.conf
              ${CMAKE_SOURCE_DIR}/configs/clean_rules_datatrove.conf
        DESTINATION ${CMAKE_INSTALL_DATADIR}/frugal/configs)

file(GLOB fg_cli_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cli_*.sh)
foreach(t ${fg_cli_tests})
  get_filename_component(tname ${t} NAME_WE)
  set(wd ${CMAKE_BINARY_DIR}/${tname}.wd)
  file(MAKE_DIRECTORY ${wd})
  add_test(NAME test_${tname} COMMAND sh ${t} $<TARGET_FILE:frugal> WORKING_DIRECTORY ${wd})
  set_tests_properties(test_${tname} PROPERTIES ENVIRONMENT "${FG_TEST_ENV}" TIMEOUT 300 LABELS cli SKIP_RETURN_CODE 77)
endforeach()
