# ckpt.cmake: test_ckpt_resume drives the frugal binary (train --resume, ckpt info |
# verify | diff), so building that test builds frugal first; without the binary the
# test skips with a message.
if(TARGET test_ckpt_resume AND TARGET frugal)
  add_dependencies(test_ckpt_resume frugal)
endif()
