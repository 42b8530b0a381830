/* test_replay.c - sluice-replay's reading of a recording (tools/replay_load.c,
 * replay_dump.c) where a file is corrupt or hostile: record times that
 * overflow, and a header claiming a max_frame the dump would size buffers
 * from. The fuzz target fuzz_recfile found both. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "replay.h"
#include "sl/limits.h"
#include "sl/recfile.h"

static void test_time_str(void **state)
{
    (void)state;
    struct replay_file f = {.hdr = {.start_real_ns = 1764358200000000000ull, .start_mono_ns = 1000000000ull}};
    char out[64];
    replay_time_str(&f, 1000000000ull + 123456789ull, out, sizeof out);
    assert_string_equal(out, "2025-11-28T19:30:00.123456Z");
    /* Before 1970 the fraction counts forward from the second before. */
    f.hdr.start_real_ns = 0;
    f.hdr.start_mono_ns = 1500;
    replay_time_str(&f, 0, out, sizeof out);
    assert_string_equal(out, "1969-12-31T23:59:59.999998Z");
    /* Times a corrupt file makes up: this sum overflowed int64 (UBSan,
     * fuzz_recfile regress-time-overflow); it now wraps, defined. */
    f.hdr.start_real_ns = 1764358200000000000ull;
    f.hdr.start_mono_ns = 0;
    replay_time_str(&f, 7540433150101778842ull, out, sizeof out);
    assert_true(strlen(out) > 20 && out[strlen(out) - 1] == 'Z');
    f.hdr.start_mono_ns = UINT64_MAX;
    replay_time_str(&f, 0, out, sizeof out);
    assert_string_equal(out, "2025-11-28T19:30:00.000000Z");
}

/* A header claiming max_frame = 4 GiB - 1: replay_load clamps it to what an
 * edge can use, so the dump of a frame that spans reads never asks for 4 GiB
 * (fuzz_recfile regress-max-frame-4gib); a frame above the clamp is shown
 * as the edge would have refused it. */
static void test_max_frame_clamped(void **state)
{
    (void)state;
    char path[] = "/tmp/test_replay_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint8_t buf[256];
    struct recfile_header h = {.version = RECFILE_VERSION, .workers = 1, .max_frame = UINT32_MAX};
    recfile_header_encode(&h, buf);
    size_t n = RECFILE_HDR_SIZE;
    /* Two reads of one connection: a frame of 1 MiB announced, 2 bytes of it... */
    static const uint8_t in1[] = {0x00, 0x10, 0x00, 0x00, 0x81, 0xa1};
    struct recfile_rec r = {.kind = RECFILE_IN, .slot = 1, .gen = 1, .len = sizeof in1};
    recfile_rec_encode(&r, buf + n);
    memcpy(buf + n + RECFILE_REC_HDR, in1, sizeof in1);
    n += RECFILE_REC_HDR + sizeof in1;
    /* ...and on another connection, a frame announcing 2 GiB. */
    static const uint8_t in2[] = {0x80, 0x00, 0x00, 0x00, 0x81};
    r.slot = 2;
    r.len = sizeof in2;
    recfile_rec_encode(&r, buf + n);
    memcpy(buf + n + RECFILE_REC_HDR, in2, sizeof in2);
    n += RECFILE_REC_HDR + sizeof in2;
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    close(fd);

    struct replay_file f;
    assert_int_equal(replay_load(path, &f), 0);
    unlink(path);
    assert_int_equal(f.hdr.max_frame, SL_MAX_FRAME_LIMIT);
    assert_int_equal(f.nrecs, 2);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(replay_dump(&f, "", out), 0);
    fclose(out);
    assert_non_null(strstr(text, " +partial\n"));         /* the 1 MiB frame: pending */
    assert_non_null(strstr(text, " bad-frame(len>max)")); /* the 2 GiB one: refused */
    free(text);
    replay_unload(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_str),
        cmocka_unit_test(test_max_frame_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
