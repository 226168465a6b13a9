# data_classify_tf.cmake: test_data_classify_tf also runs `frugal clean` and `frugal clean
# train-classifier --kind transformer`, so building that test builds the frugal binary first.
if(TARGET test_data_classify_tf AND TARGET frugal)
  add_dependencies(test_data_classify_tf frugal)
endif()
