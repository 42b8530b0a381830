# SL_SANITIZE="address;undefined" builds everything (and so the tests) under ASan+UBSan.
if(SL_SANITIZE)
  foreach(san IN LISTS SL_SANITIZE)
    add_compile_options(-fsanitize=${san})
    add_link_options(-fsanitize=${san})
  endforeach()
  add_compile_options(-fno-omit-frame-pointer -fno-sanitize-recover=all)
endif()
