# client: the device library (client/) and sluice-devsim's pure parts (tools/).
sl_unit_test(test_client SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_client.c LIBS sl::client sl::proto)
sl_unit_test(test_devsim SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_devsim.c LIBS sl_devsim_util)
sl_unit_test(test_client_tls SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_client_tls.c LIBS sl::client sl::proto OpenSSL::SSL OpenSSL::Crypto)
