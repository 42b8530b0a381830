# SPDX-License-Identifier: Apache-2.0
# persister unit tests: the mapper (rows.c) and partition periods (part.c),
# the writer's bisect and missing-partition logic (writer.c) with the db_*
# steps substituted at link time (-Wl,--wrap), db.c's pure parts (SQLSTATE
# classification), and the metrics the core's counters become (stats.c).
sl_unit_test(test_persister_rows SOURCES unit/test_persister_rows.c LIBS persister_core)
sl_unit_test(test_persister_db SOURCES unit/test_persister_db.c LIBS persister_core)
sl_unit_test(test_persister_stats SOURCES unit/test_persister_stats.c LIBS persister_core)
sl_unit_test(test_persister_writer SOURCES unit/test_persister_writer.c LIBS persister_core)
target_link_options(test_persister_writer PRIVATE
  -Wl,--wrap=db_begin,--wrap=db_commit,--wrap=db_rollback,--wrap=db_rows,--wrap=db_sessions,--wrap=db_reject,--wrap=db_last_error,--wrap=db_last_sqlstate,--wrap=db_partition,--wrap=db_rows_commit,--wrap=db_conflicts)
# The service threads' start/stop/wait helper (svcthread.c); pthread_create
# substituted at link time to fail on demand.
sl_unit_test(test_persister_svcthread SOURCES unit/test_persister_svcthread.c LIBS persister_core)
target_link_options(test_persister_svcthread PRIVATE -Wl,--wrap=pthread_create)
