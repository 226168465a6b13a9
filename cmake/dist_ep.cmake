# dist_ep.cmake: test_dist_ep drives `mpirun ... frugal train --ep N` and reads the runs'
# checkpoints, so it links fg_ckpt too and building it builds frugal first.
if(TARGET test_dist_ep)
  target_link_libraries(test_dist_ep PRIVATE fg_ckpt)
  if(TARGET frugal)
    add_dependencies(test_dist_ep frugal)
  endif()
endif()
# test_dist_ep_route tests the MoE block's node-limited routing (no MPI): it needs fg_model.
if(TARGET test_dist_ep_route)
  target_link_libraries(test_dist_ep_route PRIVATE fg_model)
endif()
# test_dist_ep_place tests the placement rule of moe_ep.c (no MPI).
if(TARGET test_dist_ep_place)
  target_link_libraries(test_dist_ep_place PRIVATE fg_model)
endif()
