/* example.c - the client/README.md example, built so it keeps compiling.
 *
 * A device that sends its temperature every second to whichever of two
 * edges answers, and answers every command with ok. Seqs live in
 * ./pump-0001.seq, unacked messages in ./pump-0001.journal.
 *
 *   sl-client-example [EDGES [TOKEN [CA.pem [CERT.pem KEY.pem]]]]
 *
 * With a CA file it speaks TLS (the edges' --listen-tls port), and with a
 * certificate and key it presents them to edges with mutual TLS. */
#include <msgpack.h>
#include <stdio.h>
#include <time.h>
#include "sl/client.h"
#include "sl/mp.h"

static void on_ack(void *ud, uint64_t seq, uint64_t queued_ms)
{
    (void)ud;
    (void)queued_ms;
    printf("acked %llu\n", (unsigned long long)seq);
}
static void on_cmd(void *ud, const char *id, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    sl_client_answer(*(struct sl_client **)ud, id, true, NULL, 0);
}
static void on_state(void *ud, enum sl_client_state st, enum sl_err err)
{
    if (st == SL_CLIENT_IDLE) /* e.g. "TLS failed 10.0.0.1:7443: TLS: certificate verify failed: ..." */
        fprintf(stderr, "disconnected: %s %s\n", sl_strerror(err),
                sl_client_last_error(*(struct sl_client **)ud));
}

int main(int argc, char **argv)
{
    static struct sl_client *c;
    struct sl_client_config cfg = {0};
    cfg.edges = argc > 1 ? argv[1] : "127.0.0.1:7000,127.0.0.1:7100";
    cfg.dev = "pump-0001";
    cfg.tok = argc > 2 ? argv[2] : "2f69869769f64c9cf3b504339d23b608d44ca12a5faa67cc106781be780b0abc";
    cfg.seq_mode = SL_SEQ_FILE;
    cfg.seq_path = "pump-0001.seq";
    cfg.journal_path = "pump-0001.journal";
    cfg.cb = (struct sl_client_callbacks){.on_ack = on_ack, .on_cmd = on_cmd, .on_state = on_state, .ud = &c};
    enum sl_err err;
    if (argc > 3) { /* TLS: the edges' certificates must chain to this CA and name their host */
        struct sl_tls_config tc = {0};
        tc.ca_file = argv[3];
        tc.cert_file = argc > 5 ? argv[4] : NULL; /* mutual TLS: CN or a SAN = "pump-0001" */
        tc.key_file = argc > 5 ? argv[5] : NULL;
        char why[256];
        if ((cfg.tls = sl_tls_new(&tc, &err, why, sizeof why)) == NULL) {
            fprintf(stderr, "TLS: %s\n", why);
            return 1;
        }
    }
    if ((c = sl_client_new(&cfg, &err)) == NULL) {
        fprintf(stderr, "sl_client_new: %s\n", sl_strerror(err));
        return 1;
    }
    for (time_t last = 0;;) {
        sl_client_run_once(c, 100);
        if (time(NULL) == last)
            continue;
        last = time(NULL);
        uint8_t buf[64]; /* body: {"temp": 21.5}, packed into a fixed buffer */
        struct mp_buf b;
        msgpack_packer pk;
        mp_buf_init(&b, buf, sizeof buf);
        msgpack_packer_init(&pk, &b, mp_buf_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "temp", 4);
        msgpack_pack_double(&pk, 21.5);
        if (sl_client_send(c, buf, b.len, (int64_t)last * 1000, NULL) == SL_AGAIN)
            fprintf(stderr, "queue full: %u unacked\n", sl_client_unacked(c));
    }
}
