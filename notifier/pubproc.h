/* SPDX-License-Identifier: Apache-2.0 */
/* pubproc.h - the notifier's data publishers as child processes.
 *
 * paho.mqtt.c serialises every MQTTAsync client of a process behind one
 * global mutex and one send thread (~30-40k QoS 1 msgs/s per process here,
 * whatever the number of clients). So data publishes go to `n` child
 * processes (the same executable re-exec'd), each owning one paho client
 * (mqtt.h); the main process keeps its loop for the edges and the control
 * traffic, and a publisher that crashes or wedges takes only the live view
 * of its devices with it.
 * The parent hands a child its records through a pipe, many per write;
 * the child reports cumulative counters back (fixed-size, atomic pipe
 * writes). Children die with the parent (PR_SET_PDEATHSIG); a dead child
 * is logged, counted, its in-flight records counted lost, and respawned.
 *
 * Direction: pubproc is the process pool and uses mqtt.h (QoS 1) or
 * mqttsync.h (--data-qos 0: paho's synchronous client, no paho thread) as
 * its client library (a child runs one client); neither knows of processes.
 * In the parent, main.c hands data to pubproc_publish and control to its own
 * mqtt client.
 *
 * All parent functions run on the main thread. */
#ifndef NTF_PUBPROC_H
#define NTF_PUBPROC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct mqtt_cfg;
struct pubproc;

/* Env var naming a child's role: "<index>:<data fd>:<report fd>". */
#define PUBPROC_ENV "SLUICE_NTF_CHILD"

struct pubproc_totals {
    uint64_t published, failed, lost, reconnects, respawns; /* children's, dead ones included */
    uint64_t refused;   /* records pubproc_publish refused (child dead or backed up, too large) */
    uint64_t died_lost; /* records held by children that died */
    int64_t inflight;
    int connected;
};

/* How many children --pool 0 means. At QoS 0 one: its synchronous client
 * takes ~170k msgs/s, and each further child only adds wake-ups. At QoS 1
 * half the CPUs this process may use (sysres_cpus), 1 to 4: one process's
 * MQTTAsync tops out at ~30-45k msgs/s, so a large box wants several, but
 * every child brings two paho threads whose wake-ups cost CPU at any rate:
 * on 2 CPUs one child spends 32-45 % less per message than four
 * (docs/performance.md). At most four, the default before. Pure. */
int pubproc_default_pool(int data_qos, unsigned cpus);

/* Parent: spawn n children re-running argv (exec of /proc/self/exe with
 * PUBPROC_ENV set). bound = records a child may hold unreported before
 * pubproc_ready() says no; room(ud), if not NULL, is called when a child's
 * report may have made room (the caller pulls again). NULL on failure
 * (logged). */
struct pubproc *pubproc_new(int n, char *const *argv, int64_t bound, struct loop *l, void (*room)(void *ud),
                            void *ud);
/* Shutdown, in three steps that never block: pubproc_stop writes what the
 * pipes take now and closes them (each child publishes what it read, waits
 * for the PUBACKs within its flush bound and exits; none is respawned);
 * pubproc_stopped says when every child has exited (pubproc_tick and the
 * report fds notice); pubproc_unflushed counts the records not published
 * (held by children still running, or left when they exited);
 * pubproc_destroy kills what still runs and frees. */
void pubproc_stop(struct pubproc *p);
bool pubproc_stopped(struct pubproc *p);
int64_t pubproc_unflushed(struct pubproc *p);
void pubproc_destroy(struct pubproc **pp);

/* Queue one data record for the child of device dev (always the same one:
 * fnv1a(dev) % n, so a device's data keeps its order). Copies. 0, or -1 if
 * refused (child dead or its buffer full, topic longer than MQTT_TOPIC_MAX,
 * record over 1 MiB): counted in pubproc_totals.refused. Sent by
 * pubproc_flush. Never blocks. */
int pubproc_publish(struct pubproc *p, const char *dev, size_t dev_len, const char *topic, size_t topic_len,
                    const void *payload, size_t len, bool retained);
/* Write queued records to the children (non-blocking). */
void pubproc_flush(struct pubproc *p);
/* The same for the children holding more than bytes. */
void pubproc_flush_over(struct pubproc *p, size_t bytes);
/* Every child alive, connected, below its bound and not backed up. */
bool pubproc_ready(struct pubproc *p);
/* Read reports, flush, reap and respawn. Call every ~50 ms. */
void pubproc_tick(struct pubproc *p, uint64_t now_ms);
int64_t pubproc_outstanding(struct pubproc *p);
void pubproc_totals(struct pubproc *p, struct pubproc_totals *out);

/* Child: when PUBPROC_ENV is set, run as publisher child with cfg (one
 * client named <client_prefix>-<index>, no subscriptions: mqtt.c, or
 * mqttsync.c when cfg->qos is 0) until the parent closes the pipe; then
 * flush for up to flush_ms (no connect started that would end later).
 * Closes every descriptor it inherited but its pipes. Returns the exit
 * code. */
bool pubproc_is_child(void);
int pubproc_child_main(const struct mqtt_cfg *cfg, const char *client_prefix, int flush_ms);

#endif
