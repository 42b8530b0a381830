# SPDX-License-Identifier: Apache-2.0
# Unit tests of proto/ (the I/O-free codec library).
sl_unit_test(test_frame SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_frame.c LIBS sl::proto)
sl_unit_test(test_mp SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mp.c LIBS sl::proto m)
sl_unit_test(test_msg SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_msg.c LIBS sl::proto)
sl_unit_test(test_envelope SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_envelope.c LIBS sl::proto)
sl_unit_test(test_ring SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ring.c LIBS sl::proto)

# No heap in the decoder's steady state: this executable alone wraps the
# allocator (see the file's header comment for how it counts).
sl_unit_test(test_proto_noalloc SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_proto_noalloc.c LIBS sl::proto)
target_link_options(test_proto_noalloc PRIVATE -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc)
target_compile_options(test_proto_noalloc PRIVATE -fno-builtin)

# --wrap cannot see calls made inside shared libraries, so also check that
# the codec objects (tojson.c and token.c are another area's) reference no
# allocator and none of msgpack-c's allocating unpacker.
add_test(NAME test_proto_symbols
         COMMAND sh -c "! nm -A \"$@\" | grep -E '/(err|frame|mp|msg|envelope)\\.c\\.o: +U (malloc|calloc|realloc|strdup|msgpack_unpack.*|msgpack_zone.*|msgpack_sbuffer.*)$'"
                 sh $<TARGET_OBJECTS:sl_proto>
         COMMAND_EXPAND_LISTS)
set_tests_properties(test_proto_symbols PROPERTIES LABELS unit TIMEOUT 60)

# The command JSON parser the notifier and sluice-api share (sl::cmdjson).
sl_unit_test(test_cmdjson SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cmdjson.c LIBS sl::cmdjson)
