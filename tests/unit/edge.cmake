# edge: the session state machine against a stub struct session_ops.
sl_unit_test(test_edge_session SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_session.c LIBS edge_core)
# edge: commands forwarded between workers (cmdfwd.c) against a stub
# struct cmdfwd_ops, with real mailboxes, loops and device map.
sl_unit_test(test_edge_cmdfwd SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_cmdfwd.c LIBS edge_core)
# edge: which worker the acceptor picks, and what a worker's mailbox tells
# it (--accept handoff).
sl_unit_test(test_edge_acceptor SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_acceptor.c LIBS edge_core)
# edge: a worker's mailbox (shares per kind, bytes, FIFO, wake-ups).
sl_unit_test(test_edge_mailbox SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_mailbox.c LIBS edge_core)
# edge: the ring of notifiers one worker sends device entries to (ntfring.c).
sl_unit_test(test_edge_ntfring SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_ntfring.c LIBS edge_core)
