# SPDX-License-Identifier: Apache-2.0
"""proc.py - the one way the integration tests run a process and wait.

    import proc
    p = proc.Proc("notifier", argv, "/tmp/x/notifier.log", http="127.0.0.1:23042", ready=proc.http_ok())
    p.start()                # output appended to the log; waits until ready, fails with the log's tail
    p.metric('sluice_notifier_lost_total{what="publisher_died"}')
    p.stop(expect=0)         # SIGTERM, SIGKILL after the grace period; the exit code must be 0
    proc.wait_for(lambda: p.metric("x_total") == 3, "x_total at 3", timeout=20)

A Proc starts a program with stdout and stderr appended to a log file (a
marker line per start), waits with a deadline until it is ready (a port
accepting, an HTTP path answering 200, or a line in what it logged since
this start), stops it with its stop signal and SIGKILL after a grace period,
and reports its exit code. Every Proc made by the test process is kept:
dump_logs() prints the tail of each log (finish() does when a test failed,
and keeps the test's workdir()), and whatever still runs when the test
process exits is killed, so a failed test leaves nothing running.

wait_for() polls a condition until a deadline. Proc.metric() reads one
Prometheus series from a service's /metrics. frozen_thread() stops one
thread of a process (by its name) with ptrace while the block runs: a stuck
worker, without stopping the rest (root or CAP_SYS_PTRACE).

Deliberately not here: Sluice's wire formats (wire.py), MQTT (mqtttest.py),
PostgreSQL (pgtest.py) or any one service.
"""
import atexit
import contextlib
import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

DEADLINE = float(os.environ.get("SL_DEADLINE", "60"))


class TestFailure(AssertionError):
    """The scenario's verdict: what the test saw is wrong."""


class ProcDied(TestFailure):
    """A process exited while the test relied on it; wait_for never retries it."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_for(pred, what, timeout=DEADLINE, pump=None, interval=None):
    """Poll pred() until it returns something truthy, and return that.

    pump(), if given, runs before each try. An exception from pred is taken
    as "not yet" (a service may be restarting) and quoted if the deadline
    passes; ProcDied is raised at once. Polls start 5 ms apart and back off
    to 50 ms, so a quick condition costs little and a slow one little CPU;
    `interval` fixes the period instead (for a pred with side effects)."""
    end = time.monotonic() + timeout
    step = interval or 0.005
    last = None
    while True:
        if pump:
            pump()
        try:
            v = pred()
            if v:
                return v
        except ProcDied:
            raise
        except Exception as e:
            last = e
        if time.monotonic() > end:
            raise TestFailure("timed out after %.0fs waiting for %s%s" %
                              (timeout, what, (" (last error: %r)" % last) if last else ""))
        time.sleep(step)
        if interval is None:
            step = min(step * 2, 0.05)


def bin_dir():
    d = os.environ.get("SLUICE_BIN")
    if not d:
        d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin")
    return os.path.abspath(d)


def is_old(name, instance=None):
    """True if $SLUICE_OLD asks for the previous version of `name` (scripts/compat: programs of two
    versions side by side, as in a rolling upgrade). $SLUICE_OLD is comma-separated program names,
    each for every instance, or `name#N` for instance N only (e.g. `sluice-edge#0`)."""
    old = os.environ.get("SLUICE_OLD", "").split(",")
    return name in old or (instance is not None and "%s#%d" % (name, instance) in old)


def binary(name, instance=None):
    """Path of a Sluice executable in $SLUICE_BIN (default: <repo>/build/bin), or in $SLUICE_OLD_BIN
    for the programs (or instances) $SLUICE_OLD names."""
    p = os.path.join(os.environ["SLUICE_OLD_BIN"] if is_old(name, instance) else bin_dir(), name)
    if not os.access(p, os.X_OK):
        raise TestFailure("binary %s not found (set SLUICE_BIN to the build's bin dir)" % p)
    return p


def port_open(port, host="127.0.0.1"):
    """Ready when host:port accepts a TCP connection."""
    def ready(p):
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            return False
    ready.what = "port %s:%d open" % (host, port)
    return ready


def http_ok(path="/readyz"):
    """Ready when the Proc's HTTP endpoint answers 200 on path."""
    def ready(p):
        return p.http(path)[0] == 200
    ready.what = "%s answering 200" % path
    return ready


def log_line(text):
    """Ready when the Proc has logged text since this start."""
    def ready(p):
        return text in p.output()
    ready.what = "%r in its log" % text
    return ready


def parse_metrics(text):
    """Prometheus text -> {series: value}, series as written (name{labels})."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def describe_rc(rc):
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exit code %d" % rc


_all = []      # every Proc of this test process, for dump_logs()
_running = set()  # Procs that may still run, killed at exit


class Proc:
    """One process: argv fixed at construction (the list may be extended
    before start), output appended to log_path (None: inherited, for the
    benchmarks), optional HTTP endpoint host:port for ready/metrics."""

    def __init__(self, name, argv, log_path, env=None, http=None, ready=None, stop_signal=signal.SIGTERM,
                 grace=30.0, user=None, group=None, new_session=False):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.env, self.http_addr, self._ready = env, http, ready
        self.stop_signal, self.grace = stop_signal, grace
        self.user, self.group, self.new_session = user, group, new_session
        self.popen = None
        self.should_run = False  # started by the test and not stopped by it since
        self.starts = 0
        self._mark = 0  # log offset where this start's output begins
        _all.append(self)

    # -- lifecycle
    def start(self, wait=True, timeout=DEADLINE):
        check(not self.alive(), "%s already running" % self.name)
        env = dict(os.environ)
        env.update(self.env or {})
        self.starts += 1
        out = None
        if self.log_path:
            out = open(self.log_path, "ab")
            out.write(("---- start #%d: %s\n" % (self.starts, " ".join(self.argv))).encode())
            out.flush()
            self._mark = out.tell()
        try:
            kw = {}
            if self.user is not None:
                kw = dict(user=self.user, group=self.group, extra_groups=[])
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
                                          start_new_session=self.new_session, **kw)
        finally:
            if out is not None:
                out.close()
        _running.add(self)
        self.should_run = True
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self):
        if not self.alive():
            raise ProcDied("%s is not running (%s)\n%s" % (self.name, "never started" if self.popen is None else
                                                           describe_rc(self.popen.returncode), self.tail_block()))

    def ready(self):
        """True once the readiness condition holds; ProcDied if the process is gone."""
        self.check_alive()
        return self._ready is None or bool(self._ready(self))

    def wait_ready(self, timeout=DEADLINE):
        what = getattr(self._ready, "what", "ready")
        try:
            wait_for(self.ready, "%s: %s" % (self.name, what), timeout)
        except ProcDied:
            raise
        except TestFailure as e:
            raise TestFailure("%s\n%s" % (e, self.tail_block()))

    def signal(self, sig):
        """Send sig to the process; with its own session, to its whole process
        group (children it forked too, even once it has exited)."""
        try:
            if self.new_session and self.popen is not None:
                os.killpg(self.popen.pid, sig)
            elif self.alive():
                self.popen.send_signal(sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout=DEADLINE):
        """Wait for the process to exit and return its exit code; past the
        deadline, kill it and fail."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise TestFailure("%s did not exit within %.0fs\n%s" % (self.name, timeout, self.tail_block()))
        self.should_run = False
        _running.discard(self)
        return rc

    def stop(self, grace=None, expect=None, sig=None):
        """Send the stop signal (or sig); after grace seconds, SIGKILL. Returns
        the exit code (negative: killed by that signal). With expect, any other
        exit code fails the test, unless the test had already stopped the
        process itself. A Proc not running returns its last code."""
        if self.popen is None:
            return None
        judge = self.should_run  # an exit the test itself caused (kill9, wait) is not judged
        self.should_run = False
        grace = self.grace if grace is None else grace
        forced = False
        if self.alive():
            self.signal(sig or self.stop_signal)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                forced = True
                self.kill9()
        _running.discard(self)
        rc = self.popen.returncode
        if expect is not None and judge and rc != expect:
            raise TestFailure("%s: %s%s, expected exit code %d\n%s" % (
                self.name, describe_rc(rc), " (SIGKILL after %.0fs: did not stop)" % grace if forced else "",
                expect, self.tail_block()))
        return rc

    def kill9(self):
        """SIGKILL and reap; returns the exit code."""
        if self.popen is None:
            return None
        self.should_run = False
        self.signal(signal.SIGKILL)
        self.popen.wait(10)
        _running.discard(self)
        return self.popen.returncode

    def restart(self):
        self.stop()
        return self.start()

    # -- HTTP endpoint
    def http(self, path, timeout=2):
        """(status, body) of GET path; (0, "") when nothing answers."""
        try:
            with urllib.request.urlopen("http://%s%s" % (self.http_addr, path), timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError:
            return 0, ""

    def metrics(self):
        st, text = self.http("/metrics")
        if st != 200:
            raise RuntimeError("%s /metrics on %s answered %s" % (self.name, self.http_addr, st or "nothing"))
        return parse_metrics(text)

    def metric(self, series, default=None):
        """Value of one series: `name{labels}` exactly, or for a bare `name`
        the sum of its samples with or without labels. default if absent;
        raises if /metrics does not answer."""
        m = self.metrics()
        if "{" in series:
            return m.get(series, default)
        vals = [v for k, v in m.items() if k == series or k.startswith(series + "{")]
        return sum(vals) if vals else default

    # -- log
    def _read_log(self, start):
        """The log from byte start (negative: that many bytes before its end)."""
        if not self.log_path:
            return "(output not captured)"
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(start if start >= 0 else max(0, f.tell() + start))
                return f.read().decode(errors="replace")
        except OSError as e:
            return "(no log: %s)" % e

    def output(self):
        """What the process logged since this start."""
        return self._read_log(self._mark)

    def tail(self, n=4000):
        return self._read_log(-n)

    def tail_block(self, n=4000):
        return "---- %s log tail (%s)\n%s" % (self.name, self.log_path, self.tail(n))


def workdir(prefix):
    """A fresh directory for one test's files; the services' own users
    (mosquitto, postgres) can reach into it."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def finish(dir, ok):
    """End of a test environment: on failure print every log's tail and keep
    dir; on success remove it (unless SL_KEEP=1)."""
    if not ok:
        dump_logs()
    if ok and not os.environ.get("SL_KEEP"):
        shutil.rmtree(dir, ignore_errors=True)
    else:
        sys.stdout.write("(test files kept in %s)\n" % dir)
        sys.stdout.flush()


def dump_logs(out=None):
    """Print the tail of every Proc's log (call when a test failed)."""
    out = out or sys.stdout
    for p in _all:
        if p.log_path and p.starts:
            out.write("\n%s\n" % p.tail_block())
    out.flush()


def kill_all():
    """SIGKILL every Proc still running (teardown of a failed test)."""
    for p in list(_running):
        try:
            p.kill9()
        except Exception:
            pass


atexit.register(kill_all)


# ------------------------------------------------ freezing one thread
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 17, 0x4206, 0x4207, 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def _ptrace(req, tid):
    if _libc.ptrace(req, tid, None, None) != 0:
        raise OSError(ctypes.get_errno(), "ptrace %#x on %d" % (req, tid))


def thread_id(pid, name):
    """The tid of pid's thread called name (pthread_setname_np)."""
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
            if f.read().strip() == name:
                return int(t)
    raise AssertionError("no thread " + name)


# x86_64's epoll_wait, epoll_pwait, epoll_pwait2: where an event loop's thread rests.
_EPOLL_WAITS = {"232", "281", "441"}


def _stopped_in(pid, tid):
    """The number of the system call a stopped thread is in ("-1": none, in user code)."""
    with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
        return f.read().split(" ", 1)[0]


@contextlib.contextmanager
def frozen_thread(pid, name, attempts=2000):
    """Stop thread `name` of pid for the block (only that thread: the
    others run on), and let it go at the end, whatever happens.

    It is stopped only while it waits in epoll (its loop at rest), never in
    the middle of its work: stopped there it could hold a lock its process
    shares (a mailbox's mutex), and every thread that takes that lock would
    stop with it, which no real stuck worker does. A stop elsewhere is let
    go and tried again, 1 ms later, up to `attempts` times."""
    tid = thread_id(pid, name)
    for _ in range(attempts):
        _ptrace(PTRACE_SEIZE, tid)
        try:
            _ptrace(PTRACE_INTERRUPT, tid)
            os.waitpid(tid, WALL)
        except BaseException:
            _ptrace(PTRACE_DETACH, tid)
            raise
        if platform.machine() != "x86_64" or _stopped_in(pid, tid) in _EPOLL_WAITS:
            break
        _ptrace(PTRACE_DETACH, tid)
        time.sleep(0.001)
    else:
        raise AssertionError("thread %s never stopped in epoll_wait in %d tries" % (name, attempts))
    try:
        yield tid
    finally:
        _ptrace(PTRACE_DETACH, tid)
