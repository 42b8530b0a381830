# sluice-replay's reading of corrupt or hostile recordings (tools/replay_*.c).
sl_unit_test(test_replay SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_replay.c LIBS sl_replay)
