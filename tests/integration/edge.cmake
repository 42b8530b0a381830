# edge: black-box scenarios of sluice-edge over real TCP and ZeroMQ, with a
# Python peer playing persister and notifier (edgetest.py). One scenario a
# file, edge_NN_<what>.py, registered as ctest edge_NN_<what>.
# Ports: edge_NN uses PORT = 21000 + 20 * NN (fixed in the file) and the 19
# after it: an edge takes PORT..PORT+9, the recording scenarios start a
# second one at PORT+10. 21800-21999 are the benchmarks' (bench/).
file(GLOB _edge_tests RELATIVE ${CMAKE_CURRENT_LIST_DIR} CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/edge_[0-9][0-9]_*.py)
list(SORT _edge_tests)
foreach(f IN LISTS _edge_tests)
  string(REGEX REPLACE "\\.py$" "" t ${f})
  add_test(NAME ${t} COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/${f} $<TARGET_FILE:sluice-edge>)
  set_tests_properties(${t} PROPERTIES LABELS integration TIMEOUT 180
                       ENVIRONMENT "REPLAY_BIN=$<TARGET_FILE:sluice-replay>")
endforeach()
