# SPDX-License-Identifier: Apache-2.0
# client: the device library (client/) and sluice-devsim's pure parts (tools/).
sl_unit_test(test_client SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_client.c ${CMAKE_CURRENT_SOURCE_DIR}/unit/fake_edge.c LIBS sl::client sl::proto)
sl_unit_test(test_devsim SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_devsim.c LIBS sl_devsim_util)
sl_unit_test(test_client_tls SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_client_tls.c ${CMAKE_CURRENT_SOURCE_DIR}/unit/fake_edge.c LIBS sl::client sl::proto OpenSSL::SSL OpenSSL::Crypto)
