# dist.cmake: test_dist_train drives `mpirun ... frugal train --dp N` and reads the runs'
# checkpoints, so it links fg_ckpt too and building it builds frugal first.
if(TARGET test_dist_train)
  target_link_libraries(test_dist_train PRIVATE fg_ckpt)
  if(TARGET frugal)
    add_dependencies(test_dist_train frugal)
  endif()
endif()
