# SPDX-License-Identifier: Apache-2.0
# system: end-to-end and fault scenarios against the whole real stack
# (PostgreSQL, Mosquitto, sluice-persister, sluice-notifier, two sluice-edge,
# sluice-devsim), started by slstack.py on loopback. One scenario a file:
# system_NN_<what>.py, registered as ctest system_NN_<what>.
# Ports: system_NN uses PORT = 24000 + 50 * NN (fixed in the file) and the 49
# after it (slstack.py), up to 25899; 25900-25999 are the benchmarks' (bench/system_100k.sh,
# edge_abuse.py, notifier_cmd_kill.py).
sl_integration_tests(system TIMEOUT 300 ENVIRONMENT "SLUICE_BIN=${CMAKE_BINARY_DIR}/bin")
set_tests_properties(${system_TESTS} PROPERTIES REQUIRED_FILES
  "${CMAKE_BINARY_DIR}/bin/sluice-edge;${CMAKE_BINARY_DIR}/bin/sluice-persister;${CMAKE_BINARY_DIR}/bin/sluice-notifier;${CMAKE_BINARY_DIR}/bin/sluice-devsim")
set_tests_properties(system_07_volume PROPERTIES TIMEOUT 600)
# system_18_package installs this build into a DESTDIR and builds client/example.c
# against it with pkg-config, with this build's compiler and sanitizers.
string(REPLACE ";" "," _sl_san "${SL_SANITIZE}")
set_property(TEST system_18_package APPEND PROPERTY ENVIRONMENT
  "SL_BUILD_DIR=${CMAKE_BINARY_DIR}" "SL_CC=${CMAKE_C_COMPILER}" "SL_SANITIZE=${_sl_san}")
