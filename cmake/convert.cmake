# convert.cmake: test_convert also reads runs (fg_train_load_run) and drives the frugal
# command for the import -> fine-tune -> export test of the transformers fixtures.
if(TARGET test_convert)
  target_link_libraries(test_convert PRIVATE fg_train)
  add_dependencies(test_convert frugal)
endif()
