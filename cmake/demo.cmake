# demo.cmake: test_demo runs scripts/demo.sh (what `make demo` runs) on the Debian
# corpus with a cut step budget and checks that validation loss falls (tests/test_demo.sh).
# Not under FG_SANITIZE: at -O0 with the sanitizers the demo model's ~115 steps take
# minutes, and the code it drives (fg_train_run, keep_best, max_epochs, sample) runs
# under the sanitizers in test_train; this test is about the demo learning.
if(TARGET frugal AND NOT FG_SANITIZE)
  add_test(NAME test_demo
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_demo.sh $<TARGET_FILE:frugal> ${CMAKE_SOURCE_DIR}
                   ${CMAKE_BINARY_DIR}/test_demo_work)
  set_tests_properties(test_demo PROPERTIES ENVIRONMENT "${FG_TEST_ENV}" TIMEOUT 300 SKIP_RETURN_CODE 77
                       LABELS demo)
endif()
