/* fuzz_msg.c - libFuzzer target for the device-facing decoders.
 *
 * The input is treated as a TCP byte stream: the first byte picks a chunk
 * size, the rest goes through frame_dec_feed() in chunks of that size (with
 * a lent buffer on FRAME_NEED_BUF), and every frame payload through
 * msg_decode(). Properties checked beyond "no crash, no sanitizer report":
 * a decoded message re-encodes to a payload that decodes to the same type,
 * and a decoded body is one well-formed object within the depth cap. The
 * raw input also goes through mp_check() and the envelope reader.
 *
 * Built only with clang (tests/unit/proto.cmake):
 *   fuzz_msg -max_total_time=60 corpus_dir */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sl/envelope.h"
#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/msg.h"

#define FUZZ_MAX_FRAME 4096u

static uint8_t lend[FUZZ_MAX_FRAME];
static uint8_t out[FUZZ_MAX_FRAME + 64];

static void check(int cond)
{
    if (!cond)
        abort();
}

static void one_payload(const uint8_t *p, size_t n)
{
    struct msg m, again;
    if (msg_decode(p, n, &m) != MSG_OK)
        return;
    check(mp_check(p, n, SL_MP_MAX_DEPTH) == 0);
    if (m.t == MSG_DATA)
        check(mp_check(m.u.data.body.p, m.u.data.body.n, SL_MP_MAX_DEPTH - 1) == 0);
    size_t len = 0;
    enum sl_err e = msg_encode(&m, out, sizeof out, &len);
    check(e == SL_OK || e == SL_TOOBIG);
    if (e == SL_OK) {
        check(msg_decode(out, len, &again) == MSG_OK);
        check(again.t == m.t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = (size_t)(data[0] % 64) + 1;
    data++;
    size--;

    (void)mp_check(data, size, SL_MP_MAX_DEPTH);
    one_payload(data, size);

    struct envelope_reader r;
    struct envelope e;
    if (envelope_reader_begin(&r, data, size) == SL_OK)
        while (envelope_reader_next(&r, &e) == SL_OK)
            ;

    struct frame_dec d;
    frame_dec_init(&d, FUZZ_MAX_FRAME);
    for (size_t off = 0; off < size;) {
        size_t chunk = size - off < step ? size - off : step;
        const uint8_t *c = data + off;
        size_t left = chunk;
        for (;;) {
            size_t used = 0;
            struct sl_slice pl;
            enum frame_rc rc = frame_dec_feed(&d, c, left, &used, &pl);
            check(used <= left);
            c += used;
            left -= used;
            if (rc == FRAME_NEED_MORE) {
                check(left == 0);
                break;
            }
            if (rc == FRAME_NEED_BUF) {
                d.buf = lend;
                continue;
            }
            if (rc != FRAME_READY)
                return 0; /* the edge closes the connection here */
            check(pl.n >= 1 && pl.n <= FUZZ_MAX_FRAME);
            one_payload(pl.p, pl.n);
            if (frame_dec_idle(&d))
                d.buf = NULL;
        }
        off += chunk;
    }
    return 0;
}
