# SL_SANITIZE="address;undefined" builds everything (and so the tests) under ASan+UBSan;
# SL_SANITIZE=thread under ThreadSanitizer (scripts/tsan, suppressions in tests/tsan.supp).
# TSan cannot share a process with ASan, so thread must stand alone.
# SL_FUZZ=ON (clang only; scripts/fuzz) adds libFuzzer's coverage instrumentation to
# everything, so the targets of tests/fuzz/ link libFuzzer instead of their file driver.
option(SL_FUZZ "Build tests/fuzz/ as libFuzzer targets (clang; scripts/fuzz sets it)" OFF)
if(SL_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "SL_FUZZ needs clang (libFuzzer): CC=clang-14 cmake ...")
  endif()
  list(APPEND SL_SANITIZE fuzzer-no-link)
endif()
if(SL_SANITIZE)
  if("thread" IN_LIST SL_SANITIZE AND NOT SL_SANITIZE STREQUAL "thread")
    message(FATAL_ERROR "SL_SANITIZE: thread cannot be combined with other sanitizers")
  endif()
  foreach(san IN LISTS SL_SANITIZE)
    add_compile_options(-fsanitize=${san})
    add_link_options(-fsanitize=${san})
  endforeach()
  add_compile_options(-fno-omit-frame-pointer -fno-sanitize-recover=all)
endif()
