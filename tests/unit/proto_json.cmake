# SPDX-License-Identifier: Apache-2.0
# Unit tests of proto/tojson.c, proto/token.c and tools/sluice-token.
sl_unit_test(test_tojson SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_tojson.c LIBS sl::proto PkgConfig::JSONC m)
sl_unit_test(test_token SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_token.c LIBS sl::token)

# sluice-token's command line: secret sources, newline stripping, exit codes.
add_test(NAME test_sluice_token_cli
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/test_sluice_token_cli.sh $<TARGET_FILE:sluice-token>)
set_tests_properties(test_sluice_token_cli PROPERTIES LABELS unit TIMEOUT 60)
