# data.cmake: test_data_pipeline also runs the `frugal clean` CLI (messages, exit codes,
# train-classifier), so building that test builds the frugal binary first.
if(TARGET test_data_pipeline AND TARGET frugal)
  add_dependencies(test_data_pipeline frugal)
endif()
