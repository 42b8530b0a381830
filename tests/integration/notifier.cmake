# notifier integration tests: a real Mosquitto (started by each test on a
# port in 23000-23999), sluice-notifier and Python test edges/subscribers.
foreach(t notifier_01_basic notifier_02_restart notifier_03_broker_restart notifier_04_child_death notifier_05_tls
          notifier_06_msg_cap)
  add_test(NAME ${t} COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/${t}.py)
  set_tests_properties(${t} PROPERTIES LABELS integration TIMEOUT 240
    ENVIRONMENT "SLUICE_BIN=${CMAKE_BINARY_DIR}/bin")
endforeach()
