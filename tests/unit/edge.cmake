# SPDX-License-Identifier: Apache-2.0
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
# edge: control entries sent to a notifier, kept until its heartbeat answer confirms them (ntfsent.c).
sl_unit_test(test_edge_ntfsent SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_ntfsent.c LIBS edge_core)
# edge: who may connect and how often (guard.c), on a hand-driven clock.
sl_unit_test(test_edge_guard SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_guard.c LIBS edge_core)
# edge: fleet secrets (rotation) and the deny list (trust.c), on byte arrays.
sl_unit_test(test_edge_trust SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_trust.c LIBS edge_core)
# edge: PROXY protocol v2 headers (proxy.c), byte by byte.
sl_unit_test(test_edge_proxy SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_edge_proxy.c LIBS edge_core)
