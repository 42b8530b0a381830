# notifier unit tests: pure mappers, presence fencing, the command state
# machine (core driven through recording stubs; no broker, no sockets).
sl_unit_test(test_notifier_topics SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_topics.c LIBS notifier_core)
sl_unit_test(test_notifier_presence SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_presence.c LIBS notifier_core)
sl_unit_test(test_notifier_core SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_core.c LIBS notifier_core)
