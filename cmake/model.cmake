# model.cmake: the bf16 model test again without the bf16 units (conversion + sgemm
# route of fg_bgemm) and without AVX-512 at all (issue 11's must-show 4).
if(TARGET test_model_bf16)
  add_test(NAME test_model_bf16_nobf16 COMMAND test_model_bf16)
  set_tests_properties(test_model_bf16_nobf16 PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512bf16" TIMEOUT 600 LABELS model)
  add_test(NAME test_model_bf16_noavx512 COMMAND test_model_bf16)
  set_tests_properties(test_model_bf16_noavx512 PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512bf16,avx512" TIMEOUT 600 LABELS model)
endif()
