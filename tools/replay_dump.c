/* SPDX-License-Identifier: Apache-2.0 */
/* replay_dump.c - sluice-replay --dump: one line per record.
 *
 *   <time> <worker>.<slot>.<gen> <kind> <details>
 *
 * Inbound bytes are cut into frames again per connection (the edge's own
 * decoder, fed the recorded reads in order), and every frame a read
 * completes is printed as JSON (proto's tojson), or as hex if it is not
 * msgpack; a frame header the edge refused is shown with the bytes after
 * it. Outbound records are whole frames. Records appear in file order:
 * each connection's records are in time order, but the writer interleaves
 * workers in batches, so lines of different workers may step back in time.
 * Totals and any problem with the file go to stderr. */
#include "replay.h"
#include <stdlib.h>
#include <string.h>
#include "sl/tojson.h"
#include <arpa/inet.h>

#define HEX_MAX 96u /* bytes shown as hex before "..." */

struct dstate {
    struct replay_dec d;
    bool init;
};

struct dump {
    const struct replay_file *f;
    FILE *out;
    char *json;
    size_t json_cap;
};

static void hex(FILE *out, const uint8_t *p, size_t n)
{
    fputs("hex:", out);
    for (size_t i = 0; i < n && i < HEX_MAX; i++)
        fprintf(out, "%02x", p[i]);
    if (n > HEX_MAX)
        fprintf(out, "...(%zu bytes)", n);
}

/* One payload: JSON if it is msgpack, hex otherwise. */
static void payload(struct dump *d, const uint8_t *p, size_t n)
{
    size_t need = tojson_bound(n);
    if (need > d->json_cap) {
        char *j = realloc(d->json, need);
        if (j) {
            d->json = j;
            d->json_cap = need;
        }
    }
    struct tojson_buf b;
    tojson_buf_init(&b, d->json, d->json_cap);
    if (d->json && tojson_encode(&b, p, n) == SL_OK)
        fwrite(b.p, 1, b.len, d->out);
    else
        hex(d->out, p, n);
}

static void in_frames(struct dump *d, struct dstate *s, const uint8_t *p, size_t n)
{
    if (!s->init) {
        replay_dec_init(&s->d, d->f->hdr.max_frame ? d->f->hdr.max_frame : SL_MAX_FRAME_DEFAULT);
        s->init = true;
    }
    if (s->d.dead) { /* the edge stopped reading at a bad frame */
        fputc(' ', d->out);
        hex(d->out, p, n);
        return;
    }
    struct sl_slice pl;
    enum frame_rc rc;
    while ((rc = replay_dec_next(&s->d, &p, &n, &pl)) == FRAME_READY) {
        fputc(' ', d->out);
        payload(d, pl.p, pl.n);
    }
    if (rc == FRAME_ERR_EMPTY || rc == FRAME_ERR_TOOBIG) {
        fprintf(d->out, " bad-frame(%s)", rc == FRAME_ERR_EMPTY ? "len=0" : "len>max");
        if (n) {
            fputs(" rest=", d->out);
            hex(d->out, p, n);
        }
    } else if (rc == FRAME_NEED_BUF) {
        fputs(" (out of memory)", d->out);
    } else if (!frame_dec_idle(&s->d.dec)) {
        fputs(" +partial", d->out);
    }
}

static void peer_str(const struct recfile_peer *p, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    inet_ntop(p->v6 ? AF_INET6 : AF_INET, p->ip, ip, sizeof ip);
    snprintf(out, cap, p->v6 ? "[%s]:%u" : "%s:%u", ip, p->port);
}

int replay_dump(const struct replay_file *f, const char *device, FILE *out)
{
    struct dump d = {.f = f, .out = out};
    struct dstate *st = calloc(f->nconns ? f->nconns : 1, sizeof *st);
    if (!st) {
        fprintf(stderr, "sluice-replay: out of memory\n");
        return 1;
    }
    size_t off = 0;
    struct recfile_rec r;
    uint64_t lines = 0;
    while (replay_next(f, &off, &r)) {
        struct replay_conn *c = replay_conn_of(f, &r);
        if (c ? !replay_selected(c, device) : r.kind != RECFILE_GAP && r.kind != RECFILE_END)
            continue;
        char ts[48];
        replay_time_str(f, r.t_ns, ts, sizeof ts);
        if (c)
            fprintf(out, "%s %u.%u.%u %s", ts, r.worker, r.slot, r.gen, recfile_kind_name(r.kind));
        else if (r.kind == RECFILE_GAP)
            fprintf(out, "%s %u.-.- gap", ts, r.worker);
        else
            fprintf(out, "%s -.-.- %s", ts, recfile_kind_name(r.kind));
        switch (r.kind) {
        case RECFILE_OPEN: {
            char peer[64];
            peer_str(&c->peer, peer, sizeof peer);
            fprintf(out, " peer=%s dev=%s", peer, c->dev[0] ? c->dev : "-");
            break;
        }
        case RECFILE_IN:
            fprintf(out, " n=%u", r.len);
            in_frames(&d, &st[c - f->conns], r.payload, r.len);
            break;
        case RECFILE_OUT:
            fprintf(out, " n=%u ", r.len);
            if (r.len > SL_FRAME_HDR)
                payload(&d, r.payload + SL_FRAME_HDR, r.len - SL_FRAME_HDR);
            else
                hex(out, r.payload, r.len);
            break;
        case RECFILE_CLOSE: {
            uint8_t code;
            struct sl_slice name;
            if (recfile_close_decode(&r, &code, &name) == SL_OK)
                fprintf(out, " reason=%.*s", (int)name.n, (const char *)name.p);
            break;
        }
        case RECFILE_GAP: {
            uint64_t recs = 0, bytes = 0;
            (void)recfile_gap_decode(&r, &recs, &bytes);
            fprintf(out, " dropped_records=%llu dropped_bytes=%llu", (unsigned long long)recs,
                    (unsigned long long)bytes);
            break;
        }
        case RECFILE_END: fprintf(out, " reason=%.*s", (int)r.len, (const char *)r.payload); break;
        }
        fputc('\n', out);
        lines++;
    }
    for (uint32_t i = 0; i < f->nconns; i++)
        replay_dec_fini(&st[i].d);
    free(st);
    free(d.json);
    fflush(out); /* the totals below follow the records, also on a terminal */
    fprintf(stderr,
            "sluice-replay: %llu records, %u connections, %llu shown; %llu gaps (%llu records dropped)%s%s\n",
            (unsigned long long)f->nrecs, f->nconns, (unsigned long long)lines, (unsigned long long)f->ngaps,
            (unsigned long long)f->gap_recs, f->problem ? "; " : "", f->problem ? f->problem : "");
    return 0;
}
