# edge: the session state machine against stubbed conn/bus (defined in the
# test itself; the linker then leaves conn.o/bus.o of edge_core out).
sl_unit_test(test_edge_session SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_session.c LIBS edge_core)
# edge: commands forwarded between workers (cmdfwd.c) against stubbed
# conn_find/session_cmd/bus_emit, with real loops and device map.
sl_unit_test(test_edge_cmdfwd SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_cmdfwd.c LIBS edge_core)
# edge: which worker the acceptor picks, and the connection ring it fills
# (--accept handoff), against the real edge_core.
sl_unit_test(test_edge_acceptor SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_acceptor.c LIBS edge_core)
