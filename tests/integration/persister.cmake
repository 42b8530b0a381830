# persister integration scenarios: each starts its own PostgreSQL (ports
# 22100-22499, one block of 100 per scenario) and sluice-persister instances.
foreach(t core pgrestart two msgcap)
  add_test(NAME persister_${t}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/persister_${t}_test.py)
  set_tests_properties(persister_${t} PROPERTIES LABELS integration TIMEOUT 300
                       ENVIRONMENT "SLUICE_BIN=$<TARGET_FILE_DIR:sluice-persister>")
endforeach()
