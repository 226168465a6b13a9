# dist_pp.cmake: test_dist_pp* drive `mpirun ... frugal train --pp P` and read the runs'
# checkpoints, so they link fg_ckpt too and building them builds frugal first.
foreach(t test_dist_pp test_dist_pp_il test_dist_pp_balance test_dist_tp test_dist_tp_sp)
  if(TARGET ${t})
    target_link_libraries(${t} PRIVATE fg_ckpt)
    if(TARGET frugal)
      add_dependencies(${t} frugal)
    endif()
  endif()
endforeach()
