# SPDX-License-Identifier: Apache-2.0
"""slstack.py - the whole Sluice stack on loopback, for end-to-end and fault tests.

    import slstack
    with slstack.Stack(24100, edges=2) as s:      # ports base .. base+49
        s.start()                                 # PostgreSQL, Mosquitto, persister, notifier, edges
        d = s.device("dev-1", edge=0)             # raw-frame Python device, already past hello
        d.data(1, {"x": 1}); d.expect("ack")
        s.sql("select count(*) from telemetry")
        s.procs["persister"].kill9(); s.procs["persister"].start()
        s.pg_stop(); s.pg_start(); s.mqtt_restart()
        r = s.devsim(devices=10, messages=50)      # runs sluice-devsim, returns its JSON summary

Ports (base + ...): 0 PostgreSQL, 1 Mosquitto, 2/3/4 persister pull/router/metrics,
5/6/7 notifier pull/router/metrics, 10+2i / 11+2i edge i listen/metrics; with
notifiers=N > 1, notifier i >= 1 on 40+3(i-1) .. 42+3(i-1) (at most 4 notifiers), with
brokers=2 the second Mosquitto on 49. Several notifiers get --id ntf-<i>; every edge is
given every notifier's endpoints, every notifier every broker (first preferred).
Every process is a proc.Proc logging to a file in the stack's temp dir; on a failed test
the tail of each log is printed. Teardown (also at exit and on failure) terminates what it
started, kills -9 leftovers and removes the temp dir (kept if SL_KEEP=1).
PostgreSQL and Mosquitto come from pgtest.py / mqtttest.py; a missing service or
binary is a failure, never a skip.
"""
import atexit
import json
import os
import signal
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtttest  # noqa: E402
import pgtest  # noqa: E402
import proc  # noqa: E402
import wire  # noqa: E402
from mqtttest import publish  # noqa: E402,F401  (the scenarios import it from here)
from proc import TestFailure, check, wait_for  # noqa: E402,F401

SECRET = "sluice-system-test-secret"
PREFIX = "devices"


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def token(dev, secret=SECRET):
    return wire.token(dev, secret)


def retained_status(port, devs, timeout=10.0):
    """A fresh subscription's view of the retained status of each dev in devs."""
    m = mqtttest.Subscriber(port, [PREFIX + "/+/status"])
    try:
        wait_for(lambda: len(m.status(PREFIX).keys() & set(devs)) == len(set(devs)),
                 "retained status of %d devices" % len(set(devs)), timeout=timeout)
        return m.status(PREFIX)
    finally:
        m.close()


# ---------------------------------------------------------------- the stack

def _same_netns(pid):
    try:
        return os.readlink("/proc/%d/ns/net" % pid) == os.readlink("/proc/self/ns/net")
    except OSError:
        return False  # gone (nothing to stop), or not ours to judge


def _reap_stale(name, port):
    """A run killed by a timeout (SIGKILL, no teardown) may leave its PostgreSQL holding the port:
    stop any postmaster of an earlier run of this scenario on this port."""
    import glob
    for pidf in glob.glob(os.path.join(tempfile.gettempdir(), "sl-sys-%s-*" % name, "pg", "data", "postmaster.pid")):
        try:
            lines = open(pidf).read().splitlines()
            # Only one in this network namespace can hold our port: a run in
            # another namespace (a parallel suite on the same machine) is alive.
            if len(lines) > 3 and int(lines[3]) == port and _same_netns(int(lines[0])):
                log("stopping a stale PostgreSQL of an earlier run: %s" % pidf)
                pgtest._as_postgres([os.path.join(pgtest.PG_BIN, "pg_ctl"), "-D", os.path.dirname(pidf),
                                     "-m", "immediate", "-w", "stop"])
        except Exception as e:
            log("could not stop stale PostgreSQL %s: %s" % (pidf, e))


def _on_term(signum, frame):
    raise SystemExit("killed by signal %d" % signum)  # runs finally blocks and atexit teardown


signal.signal(signal.SIGTERM, _on_term)


class Stack:
    def __init__(self, base, edges=2, workers=1, name=None, edge_extra=(), persister_extra=(),
                 notifier_extra=(), notifiers=1, brokers=1):
        """edge_extra: flags for every edge, or a function of the edge's index
        returning its own (a listener port of its own, say)."""
        check(24000 <= base and base + 49 <= 25999, "system tests use ports 24000-25899, benchmarks 25900-25999")
        self.base = base
        self.name = name or os.path.basename(sys.argv[0]).rsplit(".", 1)[0]
        _reap_stale(self.name, base)
        self.dir = proc.workdir("sl-sys-%s-" % self.name)
        self.pg = pgtest.Postgres(base, os.path.join(self.dir, "pg"))
        check(1 <= notifiers <= 4 and 1 <= brokers <= 2, "1-4 notifiers, 1-2 brokers")
        self.mqtt_port = base + 1
        self.mqtt_ports = [base + 1, base + 49][:brokers]
        self.brokers = []
        self.broker = None
        self.n_notifiers = notifiers
        self.notifier_ids = ["ntf-%d" % i for i in range(notifiers)] if notifiers > 1 else []
        self.procs = {}
        self.ok = False
        self._dsn = None
        self.n_edges = edges
        self.edge_ids = ["edge-%c" % (ord("a") + i) for i in range(edges)]
        env = {"SLUICE_FLEET_SECRET": SECRET}
        self.procs["persister"] = self._service("persister", [
            proc.binary("sluice-persister"), "--pull", "tcp://127.0.0.1:%d" % (base + 2),
            "--router", "tcp://127.0.0.1:%d" % (base + 3), "--metrics", "127.0.0.1:%d" % (base + 4),
            "--db", self.pg.dsn] + list(persister_extra), base + 4)
        brokers_uri = ",".join("tcp://127.0.0.1:%d" % p for p in self.mqtt_ports)
        for i in range(notifiers):
            nb = self.notifier_base(i)
            key = "notifier" if i == 0 else "notifier%d" % i
            ident = ["--id", self.notifier_ids[i], "--client-id", "sys-%d-%d" % (base, i)] if notifiers > 1 \
                else ["--client-id", "sys-%d" % base]
            self.procs[key] = self._service(key, [
                proc.binary("sluice-notifier"), "--pull", "tcp://127.0.0.1:%d" % nb,
                "--router", "tcp://127.0.0.1:%d" % (nb + 1), "--metrics", "127.0.0.1:%d" % (nb + 2),
                "--broker", brokers_uri, "--prefix", PREFIX, "--pool", "2"] + ident + list(notifier_extra), nb + 2)
        for i in range(edges):
            self.procs["edge%d" % i] = self._service("edge%d" % i, [
                proc.binary("sluice-edge", i), "--listen", "127.0.0.1:%d" % self.edge_port(i)] + (
                [] if proc.is_old("sluice-edge", i) else  # 0.1 had no per-address limits
                ["--allow-cidrs", "127.0.0.0/8"]) + [  # the simulated devices all come from loopback
                "--edge-id", self.edge_ids[i], "--workers", str(workers),
                "--metrics", "127.0.0.1:%d" % (base + 11 + 2 * i),
                "--persister-push", "tcp://127.0.0.1:%d" % (base + 2),
                "--persister-router", "tcp://127.0.0.1:%d" % (base + 3),
                "--notifier-push", ",".join("tcp://127.0.0.1:%d" % self.notifier_base(k) for k in range(notifiers)),
                "--notifier-router", ",".join("tcp://127.0.0.1:%d" % (self.notifier_base(k) + 1)
                                              for k in range(notifiers)),
                "--drain-timeout-ms", "3000"] + list(edge_extra(i) if callable(edge_extra) else edge_extra),
                base + 11 + 2 * i, env=env)
        atexit.register(self.teardown)

    def _service(self, name, argv, metrics_port, env=None):
        """A service process, ready when its /readyz answers 200."""
        return proc.Proc(name, argv, os.path.join(self.dir, name + ".log"), env=env,
                         http="127.0.0.1:%d" % metrics_port, ready=proc.http_ok())

    def edge_port(self, i):
        return self.base + 10 + 2 * i

    def notifier_base(self, i):
        """Ports of notifier i: pull, router (+1), metrics (+2)."""
        return self.base + 5 if i == 0 else self.base + 40 + 3 * (i - 1)

    def ntf(self, i):
        return self.procs["notifier" if i == 0 else "notifier%d" % i]

    def edge(self, i):
        return self.procs["edge%d" % i]

    @property
    def persister(self):
        return self.procs["persister"]

    @property
    def notifier(self):
        return self.procs["notifier"]

    # -- lifecycle
    def start(self):
        t0 = time.monotonic()
        self._dsn = self.pg.start()
        self.brokers = [mqtttest.Broker(p, os.path.join(self.dir, "mqtt" if i == 0 else "mqtt%d" % i)).start()
                        for i, p in enumerate(self.mqtt_ports)]
        self.broker = self.brokers[0]
        self.persister.start()
        for i in range(self.n_notifiers):
            self.ntf(i).start()
        for i in range(self.n_edges):
            self.edge(i).start()
        log("stack up in %.1fs: pg :%d, mqtt :%d, edges %s (dir %s)" %
            (time.monotonic() - t0, self.base, self.mqtt_port,
             ",".join("%s=:%d" % (self.edge_ids[i], self.edge_port(i)) for i in range(self.n_edges)), self.dir))
        return self

    def pg_stop(self):
        self.pg.stop()

    def pg_start(self):
        self.pg.start()

    def mqtt_restart(self, down_s=0.0):
        self.broker.restart(down_s)

    def teardown(self):
        if self.dir is None:
            return
        for name in reversed(list(self.procs)):
            try:
                self.procs[name].stop(grace=10)
            except Exception:
                pass
        for b in self.brokers:
            try:
                b.stop()
            except Exception:
                pass
        try:
            self.pg.stop(mode="immediate")
        except Exception:
            pass
        proc.finish(self.dir, self.ok)
        self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.ok = True
        else:
            traceback.print_exception(et, ev, tb)
        self.teardown()
        return False

    # -- helpers
    def sql(self, q, args=()):
        return self.pg.sql(q, args)

    def rows(self, dev):
        return self.sql("select device_id, seq, device_ts, received_at, edge_id, body from telemetry "
                        "where device_id = %s order by seq", (dev,))

    def device(self, dev, edge=0, login=True):
        d = wire.Device(self.edge_port(edge), dev, SECRET)
        if login:
            d.login()
        return d

    def mqtt(self, topics=(PREFIX + "/#",), broker=0, **kw):
        return mqtttest.Subscriber(self.mqtt_ports[broker], topics, **kw)

    def devsim(self, devices, messages=0, duration=0, prefix="sim", edges=None, rate=0, window=16,
               state=True, extra=(), background=False, timeout=600, name="devsim"):
        """Run sluice-devsim against the edges (all by default). Blocking: returns the JSON summary
        (dict, plus "_rc"). background=True: returns a DevsimRun to .result() on."""
        edges = edges if edges is not None else list(range(self.n_edges))
        argv = [proc.binary("sluice-devsim"), "--edges", ",".join("127.0.0.1:%d" % self.edge_port(i) for i in edges),
                "--devices", str(devices), "--rate", str(rate), "--window", str(window), "--prefix", prefix,
                "--verify", self.pg.dsn, "--json", os.path.join(self.dir, name + ".json")]
        if messages:
            argv += ["--messages", str(messages)]
        if duration:
            argv += ["--duration", str(duration)]
        if state:
            argv += ["--state-dir", os.path.join(self.dir, "devsim-state")]
        argv += list(extra)
        run = DevsimRun(argv, os.path.join(self.dir, name + ".log"), os.path.join(self.dir, name + ".json"), timeout)
        return run if background else run.result()

    def count_check(self, prefix, expect_devices, expect_total=None):
        """Every device <prefix>-* has rows with contiguous seqs (no gap), no duplicate
        (primary key, but counted anyway across both tables); returns (devices, rows)."""
        r = self.sql(
            "select device_id, count(*), count(distinct seq), min(seq), max(seq) from "
            "(select device_id, seq from telemetry union all select device_id, seq from telemetry_rejected) u "
            "where device_id like %s group by device_id", (prefix + "-%",))
        total = sum(x[1] for x in r)
        gaps = [x for x in r if x[2] != x[4] - x[3] + 1]
        dups = [x for x in r if x[1] != x[2]]
        check(not dups, "duplicate rows for %d devices, e.g. %r" % (len(dups), dups[:3]))
        check(not gaps, "gaps in seqs for %d devices, e.g. %r" % (len(gaps), gaps[:3]))
        check(len(r) == expect_devices, "rows for %d devices, expected %d" % (len(r), expect_devices))
        if expect_total is not None:
            check(total == expect_total, "%d rows, expected %d" % (total, expect_total))
        return len(r), total


class DevsimRun(proc.Proc):
    """One sluice-devsim run, started at once. In its own session: a failing test kills its
    process group, forked workers included."""

    def __init__(self, argv, log_path, json_path, timeout):
        super().__init__("devsim", argv, log_path, env={"SLUICE_FLEET_SECRET": SECRET}, new_session=True)
        self.json_path, self.timeout = json_path, timeout
        if os.path.exists(json_path):
            os.remove(json_path)
        self.t0 = time.monotonic()
        self.start(wait=False)

    def result(self):
        """Wait for the run to end; its JSON summary (--json file) plus "_rc" and "_wall_s"."""
        rc = self.wait(self.timeout)
        try:
            with open(self.json_path) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            raise TestFailure("sluice-devsim (%s) wrote no JSON summary (%s)\n%s" %
                              (proc.describe_rc(rc), e, self.tail_block(3000)))
        r["_rc"] = rc
        r["_wall_s"] = round(time.monotonic() - self.t0, 1)
        return r


def check_devsim(r, expect_sent=None):
    """A devsim summary with every message acked and verified stored exactly once."""
    log("devsim: sent=%s acked=%s unacked=%s resent=%s reconnects=%s errors=%s p50=%sms p99=%sms verify=%s rc=%s (%.1fs)"
        % (r["sent"], r["acked"], r["unacked"], r["resent"], r["reconnects"], r["errors"],
           r["latency_ms"]["p50"], r["latency_ms"]["p99"], json.dumps(r["verify"]), r["_rc"], r["_wall_s"]))
    if expect_sent is not None:
        check(r["sent"] == expect_sent, "devsim sent %d, expected %d" % (r["sent"], expect_sent))
    check(r["acked"] == r["sent"] and r["unacked"] == 0, "not every message acked: %d of %d" % (r["acked"], r["sent"]))
    lat = [r[k]["acks"] for k in ("latency_ms", "latency_ms_ramp", "latency_ms_after_ramp")]
    check(lat[0] == r["acked"] and lat[1] + lat[2] == lat[0],
          "latency samples (all, ramp, after) %r for %d acks" % (lat, r["acked"]))
    v = r["verify"]
    check(v is not None and v["ok"] and v["missing"] == 0 and v["duplicates"] == 0,
          "devsim --verify failed: %r" % v)
    check(v["found"] == r["acked"], "verify found %d rows for %d acks" % (v["found"], r["acked"]))
    check(r["ok"] and r["_rc"] == 0, "devsim reported failure (ok=%s rc=%s)" % (r["ok"], r["_rc"]))


def main(fn):
    """Run one scenario fn(stack-less); exit 0/1 with a clear message."""
    t0 = time.monotonic()
    try:
        fn()
    except Exception as e:
        sys.stdout.write("FAIL: %s\n" % e)
        if not isinstance(e, TestFailure):
            traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        proc.kill_all()
        os._exit(1)
    log("PASS (%.1fs)" % (time.monotonic() - t0))


def stream_with_fault(s, prefix, devices, rate, duration, fault, edges=None, extra=(), window=16,
                      during=None, timeout=300):
    """Run sluice-devsim (devices x rate msg/s for duration s) in the background; once rows are
    flowing, call fault(); optionally during(run) while devsim still runs; then wait for devsim and
    check: every message acked, stored exactly once, contiguous seqs per device. Returns the summary."""
    run = s.devsim(devices, duration=duration, rate=rate, prefix=prefix, edges=edges, window=window,
                   extra=("--ack-timeout-ms", "2000", "--drain-s", "60") + tuple(extra), background=True,
                   timeout=timeout, name="devsim-" + prefix)
    before = wait_for(lambda: s.sql("select count(*) from telemetry where device_id like %s",
                                    (prefix + "-%",))[0][0] >= devices * max(1, int(rate)) and
                      s.sql("select count(*) from telemetry where device_id like %s", (prefix + "-%",))[0][0],
                      "rows flowing before the fault")
    try:
        check(run.alive(), "devsim ended before the fault could be injected")
        log("stream running (%d rows stored so far); injecting the fault" % before)
        t0 = time.monotonic()
        fault()
        log("fault done in %.1fs" % (time.monotonic() - t0))
        if during:
            during(run)
    except BaseException:
        run.kill9()
        raise
    r = run.result()
    check_devsim(r)
    devs, rows = s.count_check(prefix, devices, r["sent"])
    log("PostgreSQL: %d devices, %d rows = %d sent, each exactly once, no gap" % (devs, rows, r["sent"]))
    return r


def check_final_status(s, prefix, devices, edge=None, timeout=60):
    """After the devices left: a fresh subscriber sees every device offline (on edge, if given)."""
    devs = ["%s-%d" % (prefix, i) for i in range(devices)]

    def pred():
        st = retained_status(s.mqtt_port, devs, timeout=timeout)
        bad = {d: st[d] for d in devs if st[d]["online"] is not False or (edge and st[d]["edge"] != edge)}
        return (not bad, bad)
    end = time.monotonic() + timeout
    while True:
        ok, bad = pred()
        if ok:
            log("status: all %d devices offline%s" % (devices, (" on " + edge) if edge else ""))
            return
        if time.monotonic() > end:
            raise TestFailure("%d devices with a wrong final status, e.g. %r" % (len(bad), list(bad.items())[:3]))
        time.sleep(0.5)
