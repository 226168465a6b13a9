# model.cmake: the bf16 model test again without the bf16 units (conversion + sgemm
# route of fg_bgemm); without AVX-512 at all it runs as the `masked` variant of every
# numeric test (CMakeLists.txt).
if(TARGET test_model_bf16)
  add_test(NAME test_model_bf16_nobf16 COMMAND test_model_bf16)
  set_tests_properties(test_model_bf16_nobf16 PROPERTIES ENVIRONMENT "${FG_TEST_ENV};FG_HW_DISABLE=avx512bf16" TIMEOUT 600 LABELS model)
endif()
