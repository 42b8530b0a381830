# SPDX-License-Identifier: Apache-2.0
# persister: scenarios against a real PostgreSQL and sluice-persister instances
# (persister_common.py), one scenario or tight group a file:
# persister_NN_<what>.py, registered as ctest persister_NN_<what>.
# Ports: persister_NN uses PORT = 22000 + 50 * NN (fixed in the file) and the
# 49 after it (PostgreSQL on PORT, persister i on PORT+1+3i..PORT+3+3i).
# 26900-26999 are the benchmarks' (bench/persister_bench.py, persister_e2e.py).
sl_integration_tests(persister TIMEOUT 300 ENVIRONMENT "SLUICE_BIN=$<TARGET_FILE_DIR:sluice-persister>")
