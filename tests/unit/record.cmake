# SPDX-License-Identifier: Apache-2.0
# Traffic recording: the file format (proto/recfile.c) and the edge's
# recorder (edge/record.c: rings, writer thread, --record-devices staging).
sl_unit_test(test_recfile SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_recfile.c LIBS sl::proto)
sl_unit_test(test_edge_record SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_record.c LIBS edge_core)
