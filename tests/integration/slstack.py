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
5/6/7 notifier pull/router/metrics, 10+2i / 11+2i edge i listen/metrics.
Every process logs to a file in the stack's temp dir; on a failed test the tail of
each log is printed. Teardown (also at exit and on failure) terminates what it
started, kills -9 leftovers and removes the temp dir (kept if SL_KEEP=1).
PostgreSQL and Mosquitto come from pgtest.py / mqtttest.py; a missing service or
binary is a failure, never a skip.
"""
import atexit
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

import msgpack
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtttest  # noqa: E402
import pgtest  # noqa: E402

SECRET = "sluice-system-test-secret"
PREFIX = "devices"
DEADLINE = float(os.environ.get("SL_DEADLINE", "60"))


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_for(pred, what, timeout=DEADLINE, interval=0.05):
    """Poll pred() until it returns a truthy value; fail with `what` at the deadline."""
    end = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # a query may fail while a service restarts
            last_exc = e
        if time.monotonic() > end:
            raise TestFailure("timed out after %.0fs waiting for %s%s" %
                              (timeout, what, (" (last error: %r)" % last_exc) if last_exc else ""))
        time.sleep(interval)


def token(dev, secret=SECRET):
    return hmac.new(secret.encode(), dev.encode(), hashlib.sha256).hexdigest()


def bin_dir():
    b = os.environ.get("SLUICE_BIN")
    if not b:
        b = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../build-system/bin")
    return os.path.abspath(b)


def binary(name):
    p = os.path.join(bin_dir(), name)
    if not os.access(p, os.X_OK):
        raise TestFailure("binary %s not found (set SLUICE_BIN to the build's bin dir)" % p)
    return p


# ---------------------------------------------------------------- processes

_live_procs = set()
_live_groups = set()  # process groups of sluice-devsim runs (parent + forked workers)


def _kill_leftovers():
    for g in list(_live_groups):
        try:
            os.killpg(g, signal.SIGKILL)
        except OSError:
            pass
    for p in list(_live_procs):
        try:
            p.kill(signal.SIGKILL)
            p.wait(5)
        except Exception:
            pass


atexit.register(_kill_leftovers)


class Proc:
    """One service process: argv fixed at construction, log appended to a file."""

    def __init__(self, name, argv, log_path, env=None, metrics=None):
        self.name, self.argv, self.log_path, self.env, self.metrics = name, argv, log_path, env, metrics
        self.p = None
        self.starts = 0

    def start(self, wait_ready=True):
        check(self.p is None or self.p.poll() is not None, "%s already running" % self.name)
        env = dict(os.environ)
        env.update(self.env or {})
        lf = open(self.log_path, "ab")
        lf.write(("---- start #%d: %s\n" % (self.starts + 1, " ".join(self.argv))).encode())
        lf.flush()
        self.p = subprocess.Popen(self.argv, stdout=lf, stderr=lf, stdin=subprocess.DEVNULL, env=env)
        lf.close()
        _live_procs.add(self.p)
        self.starts += 1
        if wait_ready:
            self.wait_ready()
        return self

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def http(self, path, timeout=2):
        with urllib.request.urlopen("http://%s%s" % (self.metrics, path), timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")

    def ready(self):
        try:
            st, _ = self.http("/readyz")
            return st == 200
        except Exception:
            return False

    def wait_ready(self, timeout=DEADLINE):
        def pred():
            if not self.alive():
                raise TestFailure("%s exited with %s while starting (log %s)" %
                                  (self.name, self.p.returncode, self.log_path))
            return self.ready()
        end = time.monotonic() + timeout
        while True:
            try:
                if pred():
                    return
            except TestFailure:
                raise
            if time.monotonic() > end:
                raise TestFailure("%s not ready (/readyz on %s) within %.0fs" % (self.name, self.metrics, timeout))
            time.sleep(0.05)

    def metric(self, name):
        """Sum of every sample of metric `name` (with or without labels)."""
        _, text = self.http("/metrics")
        total, seen = 0.0, False
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            k, _, v = line.rpartition(" ")
            if k == name or k.startswith(name + "{"):
                total += float(v)
                seen = True
        return total if seen else None

    def kill9(self):
        if self.alive():
            self.p.kill()
        if self.p is not None:
            self.p.wait(10)
            _live_procs.discard(self.p)

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL after timeout. Returns the exit code."""
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        _live_procs.discard(self.p)
        return self.p.returncode

    def restart(self):
        self.stop()
        return self.start()

    def tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - n))
                return f.read().decode(errors="replace")
        except OSError as e:
            return "(no log: %s)" % e


# ---------------------------------------------------------------- raw device

class Closed(Exception):
    pass


class Device:
    """A device speaking raw frames (docs/protocol.md section 1-2) over one TCP connection."""

    def __init__(self, port, dev=None, host="127.0.0.1", timeout=DEADLINE):
        self.dev = dev
        self.port = port
        self.timeout = timeout
        self.s = socket.create_connection((host, port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.welcome = None

    # -- sending
    def raw(self, b):
        self.s.sendall(b)

    def frame(self, payload):
        self.raw(struct.pack(">I", len(payload)) + payload)

    def send(self, obj):
        self.frame(msgpack.packb(obj, use_bin_type=True))

    def hello(self, dev=None, tok=None, v=1):
        dev = dev if dev is not None else self.dev
        self.send({"t": "hello", "v": v, "dev": dev, "tok": tok if tok is not None else token(dev)})

    def login(self):
        self.hello()
        m = self.recv()
        check(m.get("t") == "welcome", "%s: expected welcome, got %r" % (self.dev, m))
        self.welcome = m
        return m

    def data(self, seq, body, ts=None):
        m = {"t": "data", "seq": seq, "body": body}
        if ts is not None:
            m["ts"] = ts
        self.send(m)

    # -- receiving
    def recv(self, timeout=None):
        """Next payload as a dict; raises Closed on EOF, socket.timeout on no frame in time."""
        end = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return msgpack.unpackb(payload, raw=False, strict_map_key=False)
            left = end - time.monotonic()
            if left <= 0:
                raise socket.timeout("no frame within deadline")
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed("connection closed by edge")
            self.buf += chunk

    def expect(self, t, timeout=None, skip=("pong",)):
        """Next frame of type t, skipping frames of the types in skip."""
        while True:
            m = self.recv(timeout)
            if m.get("t") == t:
                return m
            if m.get("t") in skip:
                continue
            raise TestFailure("%s: expected %s, got %r" % (self.dev, t, m))

    def expect_err(self, code, timeout=None):
        """The edge must send err{code, msg} and then close the connection."""
        m = self.recv(timeout)
        check(m.get("t") == "err" and m.get("code") == code,
              "%s: expected err{code:%s}, got %r" % (self.dev, code, m))
        check(isinstance(m.get("msg"), str) and m["msg"], "err without a msg: %r" % m)
        self.expect_closed()
        return m

    def expect_closed(self, timeout=None):
        try:
            m = self.recv(timeout)
        except Closed:
            return
        raise TestFailure("%s: expected close, got %r" % (self.dev, m))

    def acks(self, seqs, timeout=None):
        """Wait until every seq in seqs was acked; returns the acks seen in order."""
        want, seen = set(seqs), []
        while want:
            m = self.expect("ack", timeout)
            seen.append(m["seq"])
            want.discard(m["seq"])
        return seen

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---------------------------------------------------------------- MQTT watcher

class Mqtt:
    """A paho subscriber that records every message; status is kept per device."""

    def __init__(self, port, topics=(PREFIX + "/#",), client_id=None):
        import paho.mqtt.client as mqtt
        self.lock = threading.Lock()
        self.msgs = []
        self.connected = threading.Event()
        self.topics = list(topics)
        self.c = mqtt.Client(client_id=client_id or "sys-test-%d-%d" % (os.getpid(), id(self)), clean_session=True)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_msg
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        wait_for(self.connected.is_set, "MQTT subscriber connected on %d" % port)
        self.subscribed = threading.Event()

    def _on_connect(self, c, ud, flags, rc):
        if rc == 0:
            for t in self.topics:
                c.subscribe(t, qos=1)
            self.connected.set()

    def _on_msg(self, c, ud, m):
        try:
            payload = json.loads(m.payload.decode()) if m.payload else None
        except ValueError:
            payload = m.payload
        with self.lock:
            self.msgs.append((time.monotonic(), m.topic, payload, bool(m.retain)))

    def on(self, topic):
        with self.lock:
            return [p for (_, t, p, _) in self.msgs if t == topic]

    def last(self, topic):
        v = self.on(topic)
        return v[-1] if v else None

    def matching(self, pred):
        with self.lock:
            return [(t, p) for (_, t, p, _) in self.msgs if pred(t)]

    def status(self):
        """Latest status payload per device id."""
        out = {}
        with self.lock:
            for (_, t, p, _) in self.msgs:
                parts = t.split("/")
                if len(parts) == 3 and parts[0] == PREFIX and parts[2] == "status":
                    out[parts[1]] = p
        return out

    def close(self):
        try:
            self.c.loop_stop()
            self.c.disconnect()
        except Exception:
            pass


def publish(port, topic, payload, qos=1, retain=False):
    import paho.mqtt.publish as pub
    pub.single(topic, payload if isinstance(payload, (str, bytes)) else json.dumps(payload),
               qos=qos, retain=retain, hostname="127.0.0.1", port=port)


def retained_status(port, devs, timeout=10.0):
    """A fresh subscription's view of the retained status of each dev in devs."""
    m = Mqtt(port, topics=[PREFIX + "/+/status"])
    try:
        wait_for(lambda: len(m.status().keys() & set(devs)) == len(set(devs)),
                 "retained status of %d devices" % len(set(devs)), timeout=timeout)
        return m.status()
    finally:
        m.close()


# ---------------------------------------------------------------- the stack

def _reap_stale(name, port):
    """A run killed by a timeout (SIGKILL) leaves its PostgreSQL (daemonized by pg_ctl) holding the
    port: stop any postmaster of an earlier run of this scenario on this port."""
    import glob
    for pidf in glob.glob(os.path.join(tempfile.gettempdir(), "sl-sys-%s-*" % name, "pg", "data", "postmaster.pid")):
        try:
            lines = open(pidf).read().splitlines()
            if len(lines) > 3 and int(lines[3]) == port:
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
                 notifier_extra=()):
        check(24000 <= base and base + 49 <= 24999, "system tests use ports 24000-24999")
        self.base = base
        self.name = name or os.path.basename(sys.argv[0]).rsplit(".", 1)[0]
        _reap_stale(self.name, base)
        self.dir = tempfile.mkdtemp(prefix="sl-sys-%s-" % self.name)
        os.chmod(self.dir, 0o755)
        self.pg = pgtest.Postgres(base, os.path.join(self.dir, "pg"))
        self.mqtt_port = base + 1
        self.broker = None
        self.procs = {}
        self.ok = False
        self._dsn = None
        self.n_edges = edges
        self.edge_ids = ["edge-%c" % (ord("a") + i) for i in range(edges)]
        env = {"SLUICE_FLEET_SECRET": SECRET}
        self.procs["persister"] = Proc("persister", [
            binary("sluice-persister"), "--pull", "tcp://127.0.0.1:%d" % (base + 2),
            "--router", "tcp://127.0.0.1:%d" % (base + 3), "--metrics", "127.0.0.1:%d" % (base + 4),
            "--db", self.pg.dsn] + list(persister_extra),
            os.path.join(self.dir, "persister.log"), metrics="127.0.0.1:%d" % (base + 4))
        self.procs["notifier"] = Proc("notifier", [
            binary("sluice-notifier"), "--pull", "tcp://127.0.0.1:%d" % (base + 5),
            "--router", "tcp://127.0.0.1:%d" % (base + 6), "--metrics", "127.0.0.1:%d" % (base + 7),
            "--broker", "tcp://127.0.0.1:%d" % self.mqtt_port, "--client-id", "sys-%d" % base,
            "--prefix", PREFIX, "--pool", "2"] + list(notifier_extra),
            os.path.join(self.dir, "notifier.log"), metrics="127.0.0.1:%d" % (base + 7))
        for i in range(edges):
            self.procs["edge%d" % i] = Proc("edge%d" % i, [
                binary("sluice-edge"), "--listen", "127.0.0.1:%d" % self.edge_port(i),
                "--edge-id", self.edge_ids[i], "--workers", str(workers),
                "--metrics", "127.0.0.1:%d" % (base + 11 + 2 * i),
                "--persister-push", "tcp://127.0.0.1:%d" % (base + 2),
                "--persister-router", "tcp://127.0.0.1:%d" % (base + 3),
                "--notifier-push", "tcp://127.0.0.1:%d" % (base + 5),
                "--notifier-router", "tcp://127.0.0.1:%d" % (base + 6),
                "--drain-timeout-ms", "3000"] + list(edge_extra),
                os.path.join(self.dir, "edge%d.log" % i), env=env, metrics="127.0.0.1:%d" % (base + 11 + 2 * i))
        atexit.register(self.teardown)

    def edge_port(self, i):
        return self.base + 10 + 2 * i

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
        self.broker = mqtttest.Broker(self.mqtt_port, os.path.join(self.dir, "mqtt")).start()
        self.persister.start()
        self.notifier.start()
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
        if not self.ok:
            self.dump_logs()
        for name in reversed(list(self.procs)):
            try:
                self.procs[name].stop(timeout=10)
            except Exception:
                pass
        if self.broker:
            try:
                self.broker.stop()
            except Exception:
                pass
        try:
            self.pg.stop(mode="immediate")
        except Exception:
            pass
        if os.environ.get("SL_KEEP") or not self.ok:
            sys.stdout.write("stack files kept in %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def dump_logs(self):
        for name, p in self.procs.items():
            sys.stdout.write("\n---- %s log tail (%s)\n%s\n" % (name, p.log_path, p.tail()))
        for path in (os.path.join(self.dir, "mqtt", "mosquitto.log"), self.pg.log):
            try:
                sys.stdout.write("\n---- %s tail\n%s\n" % (path, open(path, errors="replace").read()[-2000:]))
            except OSError:
                pass
        sys.stdout.flush()

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
        c = psycopg2.connect(self.pg.dsn, connect_timeout=5)
        c.autocommit = True
        try:
            cur = c.cursor()
            cur.execute(q, args)
            return cur.fetchall() if cur.description else None
        finally:
            c.close()

    def rows(self, dev):
        return self.sql("select device_id, seq, device_ts, received_at, edge_id, body from telemetry "
                        "where device_id = %s order by seq", (dev,))

    def device(self, dev, edge=0, login=True):
        d = Device(self.edge_port(edge), dev)
        if login:
            d.login()
        return d

    def mqtt(self, topics=(PREFIX + "/#",)):
        return Mqtt(self.mqtt_port, topics)

    def devsim(self, devices, messages=0, duration=0, prefix="sim", edges=None, rate=0, window=16,
               state=True, extra=(), background=False, timeout=600, name="devsim"):
        """Run sluice-devsim against the edges (all by default). Blocking: returns the JSON summary
        (dict, plus "_rc"). background=True: returns a DevsimRun to .wait() on."""
        edges = edges if edges is not None else list(range(self.n_edges))
        argv = [binary("sluice-devsim"), "--edges", ",".join("127.0.0.1:%d" % self.edge_port(i) for i in edges),
                "--devices", str(devices), "--rate", str(rate), "--window", str(window), "--prefix", prefix,
                "--verify", self.pg.dsn, "--json", os.path.join(self.dir, name + ".json")]
        if messages:
            argv += ["--messages", str(messages)]
        if duration:
            argv += ["--duration", str(duration)]
        if state:
            argv += ["--state-dir", os.path.join(self.dir, "devsim-state")]
        argv += list(extra)
        env = dict(os.environ, SLUICE_FLEET_SECRET=SECRET)
        run = DevsimRun(argv, env, os.path.join(self.dir, name + ".log"), timeout)
        return run if background else run.wait()

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


class DevsimRun:
    def __init__(self, argv, env, log_path, timeout):
        self.log_path, self.timeout = log_path, timeout
        self.lf = open(log_path, "ab")
        # own process group: its forked workers go with it when a failing test kills it
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.lf, stdin=subprocess.DEVNULL, env=env,
                                  start_new_session=True)
        _live_procs.add(self.p)
        _live_groups.add(self.p.pid)
        self.t0 = time.monotonic()

    def wait(self):
        try:
            out, _ = self.p.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, _ = self.p.communicate()
            raise TestFailure("sluice-devsim did not finish within %ds; log tail:\n%s" % (self.timeout, self.tail()))
        finally:
            _live_procs.discard(self.p)
            _live_groups.discard(self.p.pid)
            self.lf.close()
        lines = [l for l in out.decode(errors="replace").splitlines() if l.startswith("{")]
        if not lines:
            raise TestFailure("sluice-devsim (rc %s) printed no JSON summary; log tail:\n%s" %
                              (self.p.returncode, self.tail()))
        r = json.loads(lines[-1])
        r["_rc"] = self.p.returncode
        r["_wall_s"] = round(time.monotonic() - self.t0, 1)
        return r

    def kill(self):
        """Stop a run abandoned by a failing test (SIGKILL to its process group: it forks workers)."""
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except OSError:
            pass
        self.p.wait(10)
        _live_procs.discard(self.p)
        _live_groups.discard(self.p.pid)

    def tail(self, n=3000):
        try:
            return open(self.log_path, errors="replace").read()[-n:]
        except OSError:
            return ""


def check_devsim(r, expect_sent=None):
    """A devsim summary with every message acked and verified stored exactly once."""
    log("devsim: sent=%s acked=%s unacked=%s resent=%s reconnects=%s errors=%s p50=%sms p99=%sms verify=%s rc=%s (%.1fs)"
        % (r["sent"], r["acked"], r["unacked"], r["resent"], r["reconnects"], r["errors"],
           r["latency_ms"]["p50"], r["latency_ms"]["p99"], json.dumps(r["verify"]), r["_rc"], r["_wall_s"]))
    if expect_sent is not None:
        check(r["sent"] == expect_sent, "devsim sent %d, expected %d" % (r["sent"], expect_sent))
    check(r["acked"] == r["sent"] and r["unacked"] == 0, "not every message acked: %d of %d" % (r["acked"], r["sent"]))
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
        _kill_leftovers()
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
        check(run.p.poll() is None, "devsim ended before the fault could be injected")
        log("stream running (%d rows stored so far); injecting the fault" % before)
        t0 = time.monotonic()
        fault()
        log("fault done in %.1fs" % (time.monotonic() - t0))
        if during:
            during(run)
    except BaseException:
        run.kill()
        raise
    r = run.wait()
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
