# kernels.cmake: extra ctest runs of the kernel tests with CPU features masked off
# (FG_HW_DISABLE), so the AVX2 and scalar fallbacks of auto dispatch are exercised on
# a machine that has AVX-512.
if(TARGET test_kernels)
  add_test(NAME test_kernels_noavx512 COMMAND test_kernels)
  set_tests_properties(test_kernels_noavx512 PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512" TIMEOUT 600 LABELS kernels)
  add_test(NAME test_kernels_noavx COMMAND test_kernels)
  set_tests_properties(test_kernels_noavx PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512,avx2" TIMEOUT 600 LABELS kernels)
endif()
# The bf16 GEMM without the bf16 units (conversion + sgemm route, AVX-512 elsewhere);
# without AVX-512 and the bf16 units together, every numeric test runs as its `masked`
# variant (CMakeLists.txt), so no separate run here.
if(TARGET test_kernels_bf16)
  add_test(NAME test_kernels_bf16_nobf16 COMMAND test_kernels_bf16)
  set_tests_properties(test_kernels_bf16_nobf16 PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512bf16" TIMEOUT 600 LABELS kernels)
endif()
if(TARGET test_kernels_grad)
  add_test(NAME test_kernels_grad_noavx512 COMMAND test_kernels_grad)
  set_tests_properties(test_kernels_grad_noavx512 PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512" TIMEOUT 600 LABELS kernels)
endif()
# A kernel variant registered under an op of another type must not compile
# (tests/kernels_compile_fail.cmake; docs/KERNELS.md).
add_test(NAME test_kernels_wrong_type
         COMMAND ${CMAKE_COMMAND} -DCC=${CMAKE_C_COMPILER} -DSRC_DIR=${CMAKE_SOURCE_DIR}
                 -DOUT_DIR=${CMAKE_BINARY_DIR}/compile_fail -P ${CMAKE_SOURCE_DIR}/tests/kernels_compile_fail.cmake)
set_tests_properties(test_kernels_wrong_type PROPERTIES TIMEOUT 120 LABELS kernels)
