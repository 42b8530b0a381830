# SPDX-License-Identifier: Apache-2.0
# notifier unit tests: pure mappers, presence fencing, the command state
# machine (core driven through recording stubs; no broker, no sockets).
sl_unit_test(test_notifier_topics SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_topics.c LIBS notifier_core)
sl_unit_test(test_notifier_presence SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_presence.c LIBS notifier_core)
sl_unit_test(test_notifier_core SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_core.c LIBS notifier_core)
# mqtt.c over a paho substituted at link time: the test plays paho's threads.
sl_unit_test(test_notifier_mqtt SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_mqtt.c LIBS notifier_core
  -Wl,--wrap=MQTTAsync_createWithOptions,--wrap=MQTTAsync_setCallbacks,--wrap=MQTTAsync_connect,--wrap=MQTTAsync_sendMessage,--wrap=MQTTAsync_subscribeMany,--wrap=MQTTAsync_disconnect,--wrap=MQTTAsync_isConnected,--wrap=MQTTAsync_destroy,--wrap=MQTTAsync_freeMessage,--wrap=MQTTAsync_free)
# mqttsync.c (the --data-qos 0 publishers' MQTTClient) over a paho substituted at link time.
sl_unit_test(test_notifier_mqttsync SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_mqttsync.c LIBS notifier_core
  -Wl,--wrap=MQTTClient_create,--wrap=MQTTClient_connect,--wrap=MQTTClient_publish,--wrap=MQTTClient_receive,--wrap=MQTTClient_isConnected,--wrap=MQTTClient_disconnect,--wrap=MQTTClient_destroy)
# what --pool 0 means (pure)
sl_unit_test(test_notifier_pool SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_notifier_pool.c LIBS notifier_core)
