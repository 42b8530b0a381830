# system: end-to-end and fault scenarios against the whole real stack
# (PostgreSQL, Mosquitto, sluice-persister, sluice-notifier, two sluice-edge,
# sluice-devsim), started by tests/integration/slstack.py on loopback ports
# 24000-24999 (a block of 50 per scenario, fixed in each file).
file(GLOB _sys_scenarios RELATIVE ${CMAKE_CURRENT_LIST_DIR}/system ${CMAKE_CURRENT_LIST_DIR}/system/[0-9]*.py)
list(SORT _sys_scenarios)
foreach(f IN LISTS _sys_scenarios)
  string(REGEX REPLACE "\\.py$" "" n ${f})
  add_test(NAME sys_${n} COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/system/${f})
  if(n MATCHES "^05-")
    set(_t 600)
  else()
    set(_t 300)
  endif()
  set_tests_properties(sys_${n} PROPERTIES LABELS integration TIMEOUT ${_t}
    ENVIRONMENT "SLUICE_BIN=${CMAKE_BINARY_DIR}/bin"
    REQUIRED_FILES "${CMAKE_BINARY_DIR}/bin/sluice-edge;${CMAKE_BINARY_DIR}/bin/sluice-persister;${CMAKE_BINARY_DIR}/bin/sluice-notifier;${CMAKE_BINARY_DIR}/bin/sluice-devsim")
endforeach()
