# SPDX-License-Identifier: Apache-2.0
# What `cmake --install` puts where, and the Debian package (CPack) made of it.
# Every program is listed here, in one place, so a packager sees the whole set;
# the device library installs itself (client/CMakeLists.txt).
#   bin/                         the services and tools
#   lib/                         libsluice-client.so.0 (+ .so, .a), pkgconfig/sluice-client.pc
#   include/sluice/sl/           the device library's headers
#   share/doc/sluice/            README, CHANGELOG, LICENSE, docs/*.md, examples/
#   share/sluice/                deploy files an operator starts from (monitoring, broker)
#   lib/wireshark/plugins/       the Wireshark dissector (deploy/wireshark/sluice.lua)
install(TARGETS sluice-edge sluice-persister sluice-notifier sluice-api
                sluice-devsim sluice-replay sluice-token sluice-keys
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES README.md CHANGELOG.md LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
file(GLOB SL_DOCS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${SL_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(FILES deploy/mosquitto.conf deploy/mosquitto.acl DESTINATION ${CMAKE_INSTALL_DATADIR}/sluice/broker)
# Wireshark's global Lua plugins folder for prefix /usr (tshark -G folders); elsewhere copy it to
# ~/.local/lib/wireshark/plugins/.
install(FILES deploy/wireshark/sluice.lua DESTINATION ${CMAKE_INSTALL_LIBDIR}/wireshark/plugins)
install(FILES deploy/monitoring/alerts.yml deploy/monitoring/dashboard.json deploy/monitoring/prometheus.yml
        DESTINATION ${CMAKE_INSTALL_DATADIR}/sluice/monitoring)

# cpack -G DEB (deploy/deb.sh): one package, sluice_<version>_<arch>.deb, with the
# programs, the device library and its headers. Dependencies come from the
# binaries (dpkg-shlibdeps), so they match the libraries this build linked.
set(CPACK_PACKAGE_NAME sluice)
set(CPACK_PACKAGE_VENDOR "Sluice")
set(CPACK_PACKAGE_CONTACT "Sluice maintainers <sluice@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "IoT device gateway: edge, persister, notifier, tools, device library")
set(CPACK_PACKAGE_DESCRIPTION "Sluice keeps long-lived TCP connections to field devices, makes every message
durable in PostgreSQL and visible over MQTT, and acks a message only once committed.
Includes sluice-edge, sluice-persister, sluice-notifier, sluice-devsim, sluice-replay,
sluice-token, sluice-keys and the device library libsluice-client (pkg-config sluice-client).")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_GENERATOR DEB)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
# Building against the device library needs msgpack-c's and OpenSSL's headers
# (sluice-client.pc requires msgpack, and libssl for static linking).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "pkg-config, libmsgpack-dev, libssl-dev")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql, mosquitto, wireshark | tshark")
include(CPack)
