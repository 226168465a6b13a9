# demo.cmake: test_demo runs scripts/demo.sh (what `make demo` runs) on the Debian
# corpus with a cut step budget and checks that validation loss falls (tests/test_demo.sh).
# Not under FG_SANITIZE: at -O0 with the sanitizers the demo model's 114 steps took
# 108 CPU-s (4 min 22 s wall on the loaded 2-core machine; it passed, with no report)
# against 26 CPU-s in RelWithDebInfo, and the library code it drives (fg_train_run with
# keep_best and max_epochs, sampling) runs under the sanitizers in test_train; this
# test is about the demo learning. Run it by hand there:
#   bash tests/test_demo.sh build-asan/frugal $PWD /tmp/test_demo_asan
if(TARGET frugal AND NOT FG_SANITIZE)
  add_test(NAME test_demo
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_demo.sh $<TARGET_FILE:frugal> ${CMAKE_SOURCE_DIR}
                   ${CMAKE_BINARY_DIR}/test_demo_work)
  set_tests_properties(test_demo PROPERTIES ENVIRONMENT "${FG_TEST_ENV}" TIMEOUT 300 SKIP_RETURN_CODE 77
                       LABELS demo)
endif()
