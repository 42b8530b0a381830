"""mqtttest.py - start, stop and restart a real Mosquitto for a test.

Usage:
    import mqtttest
    b = mqtttest.start(23001, "/tmp/some-dir")   # returns a Broker, already accepting
    b.restart()                                  # stop (state saved) + start on the same port
    b.stop()

Mosquitto started as root drops to user `mosquitto`, so its config, log and
persistence live in a directory that user can read and write, and it runs
in the foreground (`&`-style, kept as a child) with its log on stderr
captured to <dir>/mosquitto.log. Persistence is on by default so that
persistent client sessions (clean_session false) and retained messages
survive restart(), as a real deployment's would.
"""
import os
import pwd
import shutil
import socket
import subprocess
import time

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _wait_port(port, up, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return True
        except OSError:
            if not up:
                return True
        time.sleep(0.02)
    return False


class Broker:
    def __init__(self, port, dir, persistence=True):
        self.port = port
        self.dir = os.path.abspath(dir)
        self.persistence = persistence
        self.proc = None
        self.uri = "tcp://127.0.0.1:%d" % port
        os.makedirs(self.dir, exist_ok=True)
        try:
            pw = pwd.getpwnam("mosquitto")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass
        os.chmod(self.dir, 0o777)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\n" % port)
            f.write("allow_anonymous true\n")
            f.write("log_dest stderr\n")
            f.write("log_type error\nlog_type warning\nlog_type notice\n")
            f.write("max_queued_messages 0\n")       # never drop for a slow/offline test subscriber
            f.write("max_inflight_messages 1000\n")
            f.write("set_tcp_nodelay true\n")
            if persistence:
                f.write("persistence true\n")
                f.write("persistence_location %s/\n" % self.dir)
                f.write("autosave_interval 1\n")
            else:
                f.write("persistence false\n")
        os.chmod(self.conf, 0o644)

    def start(self):
        if self.proc is not None:
            raise RuntimeError("mosquitto already running")
        log = open(os.path.join(self.dir, "mosquitto.log"), "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        if not _wait_port(self.port, True):
            self.stop()
            raise RuntimeError("mosquitto did not start on port %d (see %s/mosquitto.log)"
                               % (self.port, self.dir))
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()           # SIGTERM: mosquitto saves its state
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        _wait_port(self.port, False, 5.0)

    def restart(self, down_s=0.0):
        self.stop()
        if down_s:
            time.sleep(down_s)
        return self.start()


def start(port, dir, persistence=True):
    """Start a broker on 127.0.0.1:port with its files in dir; returns the Broker."""
    return Broker(port, dir, persistence).start()


_default = None


def stop():
    """Stop the broker most recently started with start_default()."""
    if _default:
        _default.stop()


def restart():
    if _default:
        _default.restart()


def start_default(port, dir, persistence=True):
    global _default
    _default = start(port, dir, persistence)
    return _default
