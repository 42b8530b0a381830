# SPDX-License-Identifier: Apache-2.0
# common/: log, cfg, metrics, loop, sysres, zmqx, secfile, keys, zap, edgeclock.
sl_unit_test(test_log SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_log.c LIBS sl::common)
sl_unit_test(test_cfg SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cfg.c LIBS sl::common)
sl_unit_test(test_loop SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_loop.c LIBS sl::common)
sl_unit_test(test_metrics SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_metrics.c LIBS sl::common)
sl_unit_test(test_edgeclock SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edgeclock.c LIBS sl::common)
sl_unit_test(test_sysres SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sysres.c LIBS sl::common)
sl_unit_test(test_zmqx SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_zmqx.c LIBS sl::common)
# The resolver over time: getaddrinfo substituted at link time.
sl_unit_test(test_zmqx_resolve SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_zmqx_resolve.c
             LIBS sl::common -Wl,--wrap=getaddrinfo)
# Secret files, CURVE key files and the ZAP handler (loopback, temp dirs).
sl_unit_test(test_secfile SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_secfile.c LIBS sl::common)
sl_unit_test(test_keys SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_keys.c LIBS sl::common)
sl_unit_test(test_zap SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_zap.c LIBS sl::common)
add_test(NAME test_sluice_keys_cli COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/test_sluice_keys_cli.sh $<TARGET_FILE:sluice-keys>)
set_tests_properties(test_sluice_keys_cli PROPERTIES LABELS unit TIMEOUT 60)
