# int8.cmake: the int8 GEMM test again without the int8 unit (the reference route while
# AVX-512 and the bf16 unit stay on), and without AVX-512 at all.
if(TARGET test_kernels_int8)
  add_test(NAME test_kernels_int8_novnni COMMAND test_kernels_int8)
  set_tests_properties(test_kernels_int8_novnni PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512vnni" TIMEOUT 600 LABELS kernels)
  add_test(NAME test_kernels_int8_noavx512 COMMAND test_kernels_int8)
  set_tests_properties(test_kernels_int8_noavx512 PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512" TIMEOUT 600 LABELS kernels)
endif()
# int8 decoding (test_model_qat's round trip) on the reference GEMM, as on a CPU without VNNI.
if(TARGET test_model_qat)
  add_test(NAME test_model_qat_novnni COMMAND test_model_qat)
  set_tests_properties(test_model_qat_novnni PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512vnni" TIMEOUT 600 LABELS model)
endif()
