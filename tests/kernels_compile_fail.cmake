# kernels_compile_fail.cmake: ctest script (cmake -P) showing that a kernel variant of the
# wrong type does not compile. It compiles a copy of src/kernels/dispatch.c (with a copy
# of x86/x86_impl.h beside it) as it is: must pass (the control). Then, once per list
# of rows, a copy with one row changed to register a function of another op's type:
# each must FAIL, with the registration's static assertion in the diagnostics, and
# with no -Werror (the check does not depend on warning flags).
# Inputs: -DCC -DSRC_DIR -DOUT_DIR.
foreach(v CC SRC_DIR OUT_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "kernels_compile_fail.cmake: -D${v}=... missing")
  endif()
endforeach()
set(flags -std=gnu11 -fopenmp -fsyntax-only -I${SRC_DIR}/include -I${SRC_DIR}/src/kernels)
file(READ ${SRC_DIR}/src/kernels/dispatch.c dispatch)
file(READ ${SRC_DIR}/src/kernels/x86/x86_impl.h x86)

# compile(<dispatch.c text> <x86_impl.h text> <result var> <output var>)
function(compile dispatch_text x86_text rc_var out_var)
  file(REMOVE_RECURSE ${OUT_DIR})
  file(WRITE ${OUT_DIR}/dispatch.c "${dispatch_text}")
  file(WRITE ${OUT_DIR}/x86/x86_impl.h "${x86_text}") # found first: beside the .c
  execute_process(COMMAND ${CC} ${flags} ${OUT_DIR}/dispatch.c RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  set(${rc_var} ${rc} PARENT_SCOPE)
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

compile("${dispatch}" "${x86}" rc out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "control: the unmodified dispatch.c does not compile here:\n${out}")
endif()

# <file> <row as written> <row with a function of another type> <that function> <op>
set(cases
  "dispatch.c|V(sgemm, FG_LVL_BLAS, fg_sgemm_blas)|V(sgemm, FG_LVL_BLAS, fg_matmul_forward_blas)|fg_matmul_forward_blas|sgemm"
  "x86_impl.h|V(add, FG_LVL_AVX2, fg_add_avx2)|V(add, FG_LVL_AVX2, fg_scale_avx2)|fg_scale_avx2|add")
foreach(c ${cases})
  string(REPLACE "|" ";" c "${c}")
  list(GET c 0 file)
  list(GET c 1 good_row)
  list(GET c 2 bad_row)
  list(GET c 3 fn)
  list(GET c 4 op)
  set(d "${dispatch}")
  set(x "${x86}")
  if(file STREQUAL "dispatch.c")
    set(text "${d}")
  else()
    set(text "${x}")
  endif()
  string(FIND "${text}" "${good_row}" at)
  if(at LESS 0)
    message(FATAL_ERROR "${file} no longer registers '${good_row}': update this test")
  endif()
  string(REPLACE "${good_row}" "${bad_row}" text "${text}")
  if(file STREQUAL "dispatch.c")
    set(d "${text}")
  else()
    set(x "${text}")
  endif()
  compile("${d}" "${x}" rc out)
  if(rc EQUAL 0)
    message(FATAL_ERROR "a variant of the wrong type COMPILED: ${bad_row} in ${file}")
  endif()
  set(want "kernel variant ${fn} is registered for op ${op} but does not have its type")
  string(FIND "${out}" "${want}" at)
  if(at LESS 0)
    message(FATAL_ERROR "${file}: compilation failed, but not with the registration check ('${want}'):\n${out}")
  endif()
  message(STATUS "ok: '${bad_row}' in ${file} is refused at compile time")
endforeach()
