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
