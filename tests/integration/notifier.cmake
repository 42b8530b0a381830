# SPDX-License-Identifier: Apache-2.0
# notifier: scenarios against a real Mosquitto (mqtttest.py), sluice-notifier
# and Python test edges and subscribers (ntftest.py). One scenario a file:
# notifier_NN_<what>.py, registered as ctest notifier_NN_<what>.
# Ports: notifier_NN uses the 20 ports from 23000 + 20 * NN (fixed in the file:
# brokers, then notifiers at 3 ports each). 23900-23999 are the benchmarks'
# (bench/notifier_bench).
sl_integration_tests(notifier TIMEOUT 240 ENVIRONMENT "SLUICE_BIN=${CMAKE_BINARY_DIR}/bin")
