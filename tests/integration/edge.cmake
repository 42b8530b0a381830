# SPDX-License-Identifier: Apache-2.0
# edge: black-box scenarios of sluice-edge over real TCP and ZeroMQ, with a
# Python peer playing persister and notifier (edgetest.py). One scenario a
# file, edge_NN_<what>.py, registered as ctest edge_NN_<what>.
# Ports: edge_NN uses PORT = 21000 + 20 * NN (fixed in the file) and the 19
# after it: an edge takes PORT..PORT+9, the recording scenarios start a
# second one at PORT+10. 21800-21999 are the benchmarks' (bench/).
sl_integration_tests(edge ARGS $<TARGET_FILE:sluice-edge> TIMEOUT 180
                     ENVIRONMENT "REPLAY_BIN=$<TARGET_FILE:sluice-replay>")
