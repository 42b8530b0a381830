# SPDX-License-Identifier: Apache-2.0
# api unit tests: routing and parameters (route.c), tokens (auth.c), command
# submissions (cmdreq.c) and
# rate limits (ratelim.c): the pure parts of sluice-api. server.c and
# store.c are covered by tests/integration/system_19_api.py.
sl_unit_test(test_api_route SOURCES unit/test_api_route.c LIBS api_core)
sl_unit_test(test_api_auth SOURCES unit/test_api_auth.c LIBS api_core)
sl_unit_test(test_api_cmdreq SOURCES unit/test_api_cmdreq.c LIBS api_core)
