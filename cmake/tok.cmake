# tok.cmake: extras for the tokenizer module: utf8proc for the pre-tokenizer's
# Unicode classes, and the libFuzzer round-trip target (clang only) with its ctest.
if(TARGET fg_tok)
  target_link_libraries(fg_tok PUBLIC PkgConfig::UTF8PROC)
endif()
if(TARGET test_tok)
  target_link_libraries(test_tok PRIVATE PkgConfig::ZLIB)
endif()
if(TARGET test_tok_files AND TARGET fg_shard)
  target_link_libraries(test_tok_files PRIVATE fg_shard)
  # it also runs the frugal command, skipping those checks when the binary is absent
endif()

# ---- libFuzzer target: decode(encode(x)) == x and scanner == PCRE2 on any bytes ----
# The project may be compiled by gcc, so the fuzzer binary is built by a direct clang
# command from the tokenizer and core sources (with ASan + UBSan). Skipped without clang.
option(FG_TOK_FUZZ "Build the tokenizer's libFuzzer target and its bounded ctest run when clang is found" ON)
find_program(FG_TOK_CLANG NAMES clang clang-14)
if(FG_TOK_FUZZ AND FG_TOK_CLANG)
  file(GLOB fg_tok_fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/tok/*.c)
  set(fg_tok_fuzz_bin ${CMAKE_BINARY_DIR}/fuzz_tok)
  add_custom_command(
    OUTPUT ${fg_tok_fuzz_bin}
    COMMAND ${FG_TOK_CLANG} -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -fopenmp -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_SOURCE_DIR}/src/tok ${PCRE2_CFLAGS} ${UTF8PROC_CFLAGS}
            ${JANSSON_CFLAGS} ${CMAKE_SOURCE_DIR}/fuzz/fuzz_tok.c ${fg_tok_fuzz_srcs} ${CMAKE_SOURCE_DIR}/src/core/core.c
            ${PCRE2_LDFLAGS} ${UTF8PROC_LDFLAGS} ${JANSSON_LDFLAGS} -lm -o ${fg_tok_fuzz_bin}
    DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_tok.c ${fg_tok_fuzz_srcs} ${CMAKE_SOURCE_DIR}/src/core/core.c
    COMMENT "clang libFuzzer target fuzz_tok"
    VERBATIM)
  add_custom_target(fuzz_tok ALL DEPENDS ${fg_tok_fuzz_bin})
  # Bounded run on a copy of the seed corpus (libFuzzer adds to its first directory);
  # any crash, leak or round-trip mismatch fails the test.
  add_test(NAME test_tok_fuzz
           COMMAND sh -c "rm -rf fuzz_tok_corpus && mkdir -p fuzz_tok_corpus && cp ${CMAKE_SOURCE_DIR}/fuzz/corpus/tok/* fuzz_tok_corpus/ && ${fg_tok_fuzz_bin} -max_total_time=20 -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 fuzz_tok_corpus"
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(test_tok_fuzz PROPERTIES ENVIRONMENT "${FG_TEST_ENV}" TIMEOUT 120 LABELS tok)
else()
  message(STATUS "frugal: clang not found, fuzz_tok not built")
endif()
