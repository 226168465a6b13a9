# kernels_compile_fail.cmake: ctest script (cmake -P) showing that a kernel variant of the
# wrong type does not compile. It compiles src/kernels/dispatch.c as it is (must pass),
# then a copy with fg_matmul_forward_ref registered in sgemm's slot (must FAIL, with the
# registration's static assertion in the diagnostics, and with no -Werror: the check
# does not depend on warning flags). Inputs: -DCC -DSRC_DIR -DOUT_DIR.
foreach(v CC SRC_DIR OUT_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "kernels_compile_fail.cmake: -D${v}=... missing")
  endif()
endforeach()
set(flags -std=gnu11 -fopenmp -fsyntax-only -I${SRC_DIR}/include -I${SRC_DIR}/src/kernels)
file(READ ${SRC_DIR}/src/kernels/dispatch.c text)
set(good_row "V(sgemm, FG_LVL_REF, fg_sgemm_ref)")
set(bad_row "V(sgemm, FG_LVL_REF, fg_matmul_forward_ref)")
string(FIND "${text}" "${good_row}" at)
if(at LESS 0)
  message(FATAL_ERROR "dispatch.c no longer registers '${good_row}': update this test")
endif()
file(MAKE_DIRECTORY ${OUT_DIR})

file(WRITE ${OUT_DIR}/dispatch_ok.c "${text}")
execute_process(COMMAND ${CC} ${flags} ${OUT_DIR}/dispatch_ok.c RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "control: the unmodified dispatch.c does not compile here:\n${out}")
endif()

string(REPLACE "${good_row}" "${bad_row}" bad "${text}")
file(WRITE ${OUT_DIR}/dispatch_wrong_type.c "${bad}")
execute_process(COMMAND ${CC} ${flags} ${OUT_DIR}/dispatch_wrong_type.c RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "a variant of the wrong type COMPILED: ${bad_row}")
endif()
set(want "kernel variant fg_matmul_forward_ref is registered for op sgemm but does not have its type")
string(FIND "${out}" "${want}" at)
if(at LESS 0)
  message(FATAL_ERROR "compilation failed, but not with the registration check ('${want}'):\n${out}")
endif()
message(STATUS "ok: '${bad_row}' is refused at compile time:\n${out}")
