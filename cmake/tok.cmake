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

# ---- libFuzzer targets ----
# fuzz_tok: decode(encode(x)) == x, scanner == PCRE2, specials, on any bytes.
# fuzz_tok_json: any bytes as a tokenizer.json load cleanly or fail with a message.
# The project may be compiled by gcc, so each fuzzer binary is built by a direct clang
# command from the tokenizer and core sources (with ASan + UBSan). Skipped without clang.
option(FG_TOK_FUZZ "Build the tokenizer's libFuzzer targets and their bounded ctest runs when clang is found" ON)
find_program(FG_TOK_CLANG NAMES clang clang-14)
if(FG_TOK_FUZZ AND FG_TOK_CLANG)
  file(GLOB fg_tok_fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/tok/*.c)
  file(GLOB fg_tok_fuzz_core_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/core/*.c)
  # name: target; seconds: bounded run; max_len: largest input
  function(fg_tok_fuzzer name seconds max_len)
    set(bin ${CMAKE_BINARY_DIR}/${name})
    add_custom_command(
      OUTPUT ${bin}
      COMMAND ${FG_TOK_CLANG} -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
              -fopenmp -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_SOURCE_DIR}/src/tok ${PCRE2_CFLAGS} ${UTF8PROC_CFLAGS}
              ${JANSSON_CFLAGS} ${CMAKE_SOURCE_DIR}/fuzz/${name}.c ${fg_tok_fuzz_srcs} ${fg_tok_fuzz_core_srcs}
              ${PCRE2_LDFLAGS} ${UTF8PROC_LDFLAGS} ${JANSSON_LDFLAGS} -lm -o ${bin}
      DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/${name}.c ${fg_tok_fuzz_srcs} ${fg_tok_fuzz_core_srcs}
      COMMENT "clang libFuzzer target ${name}"
      VERBATIM)
    add_custom_target(${name} ALL DEPENDS ${bin})
    # Bounded run on a copy of the seed corpus (libFuzzer adds to its first directory);
    # any crash, leak or failed check fails the test.
    set(corpus ${CMAKE_SOURCE_DIR}/fuzz/corpus/${name})
    string(REPLACE "fuzz_" "" corpus ${corpus})
    add_test(NAME test_${name}
             COMMAND sh -c "rm -rf ${name}_corpus && mkdir -p ${name}_corpus && cp ${corpus}/* ${name}_corpus/ && ${bin} -max_total_time=${seconds} -timeout=10 -rss_limit_mb=2048 -max_len=${max_len} -print_final_stats=1 ${name}_corpus"
             WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(test_${name} PROPERTIES ENVIRONMENT "${FG_TEST_ENV}" TIMEOUT 120 LABELS tok)
  endfunction()
  fg_tok_fuzzer(fuzz_tok 20 4096)
  fg_tok_fuzzer(fuzz_tok_json 10 16384)
else()
  message(STATUS "frugal: clang not found (or FG_TOK_FUZZ=OFF), tokenizer fuzz targets not built")
endif()
