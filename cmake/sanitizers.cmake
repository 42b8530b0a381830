# SL_SANITIZE="address;undefined" builds everything (and so the tests) under ASan+UBSan;
# SL_SANITIZE=thread under ThreadSanitizer (scripts/tsan, suppressions in tests/tsan.supp).
# TSan cannot share a process with ASan, so thread must stand alone.
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
