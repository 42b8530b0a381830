# edge: black-box scenarios of sluice-edge over real TCP and ZeroMQ, with a
# Python peer playing persister and notifier. Ports 21000-21999, 10 each.
set(_edge_scenarios errors busy timeouts bytewise coalesced ackroute cmd takeover outcap backpressure drain
    cmdhop readyz reuseport)
set(_port 21000)
foreach(s IN LISTS _edge_scenarios)
  add_test(NAME edge_it_${s}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/edge_it.py $<TARGET_FILE:sluice-edge> ${s} ${_port})
  set_tests_properties(edge_it_${s} PROPERTIES LABELS integration TIMEOUT 180)
  math(EXPR _port "${_port} + 10")
endforeach()

# Recording and replay (docs/recording.md): each starts two edges, 20 ports.
set(_port 21500)
foreach(s IN ITEMS record record_filter)
  add_test(NAME edge_it_${s}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/edge_it.py $<TARGET_FILE:sluice-edge> ${s} ${_port})
  set_tests_properties(edge_it_${s} PROPERTIES LABELS integration TIMEOUT 180
                       ENVIRONMENT "REPLAY_BIN=$<TARGET_FILE:sluice-replay>")
  math(EXPR _port "${_port} + 20")
endforeach()
