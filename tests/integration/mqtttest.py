"""mqtttest.py - a real Mosquitto for a test, and MQTT clients that watch it.

Usage:
    import mqtttest
    b = mqtttest.start(23001, "/tmp/some-dir")   # returns a Broker, already accepting
    b.restart(down_s=1.0)                        # stop (state saved) + start on the same port
    b.stop()
    s = mqtttest.Subscriber(23001, ["devices/#"], client_id="sub", clean=False)
    s.on("devices/d-1/status")                   # payloads received on that topic, JSON decoded
    mqtttest.publish(23001, "devices/d-1/cmd", {"id": "c1", "body": 1})

    # TLS and passwords: a throwaway CA, a server certificate, a TLS listener
    ca = mqtttest.make_ca(dir, "ca")                       # dir/ca.pem (+ ca.key)
    cert, key = mqtttest.make_cert(dir, "srv", ca, ["IP:127.0.0.1", "DNS:localhost"])
    b = mqtttest.start(23001, dir, tls=(ca, cert, key), users={"ntf": "pw"})   # b.uri is ssl://...
    s = mqtttest.Subscriber(23001, ["devices/#"], tls_ca=ca, auth=("ntf", "pw"))
    mqtttest.publish(23001, "t", "x", tls_ca=ca, auth=("ntf", "pw"))

Mosquitto started as root drops to user `mosquitto`, so its config, log and
persistence live in a directory that user can read and write, and it runs
in the foreground as a proc.Proc with its log on stderr captured to
<dir>/mosquitto.log. Persistence is on by default so that persistent client
sessions (clean_session false) and retained messages survive restart(), as
a real deployment's would.

With tls=(cafile, certfile, keyfile) the broker's only listener speaks TLS;
with users={name: password} it has a password file (made with
mosquitto_passwd) and refuses anonymous clients. The certificates come
from make_ca / make_cert: EC keys made by the openssl command in a few ms,
valid two days, readable by the broker's user.
"""
import json
import os
import pwd
import shutil
import subprocess
import threading
import time

import paho.mqtt.client as mqtt

import proc

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


from certs import make_ca, make_cert  # noqa: E402,F401  (the scenarios import them from here)


class Broker:
    def __init__(self, port, dir, persistence=True, tls=None, users=None):
        self.port = port
        self.dir = os.path.abspath(dir)
        self.uri = "%s://127.0.0.1:%d" % ("ssl" if tls else "tcp", port)
        os.makedirs(self.dir, exist_ok=True)
        try:
            pw = pwd.getpwnam("mosquitto")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass
        os.chmod(self.dir, 0o777)
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\n" % port)
            if tls:
                f.write("cafile %s\ncertfile %s\nkeyfile %s\n" % tuple(os.path.abspath(p) for p in tls))
            if users:
                pw = os.path.join(self.dir, "passwd")
                for i, (name, secret) in enumerate(sorted(users.items())):
                    subprocess.run([MOSQUITTO_PASSWD] + (["-c"] if i == 0 else []) + ["-b", pw, name, secret],
                                   check=True)
                os.chmod(pw, 0o644)
                f.write("password_file %s\nallow_anonymous false\n" % pw)
            else:
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
        os.chmod(conf, 0o644)
        # SIGTERM: mosquitto saves its state and exits
        self.proc = proc.Proc("mosquitto", [MOSQUITTO, "-c", conf], os.path.join(self.dir, "mosquitto.log"),
                              ready=proc.port_open(port), grace=10)

    def start(self):
        self.proc.start(timeout=10)
        return self

    def stop(self):
        self.proc.stop()

    def restart(self, down_s=0.0):
        self.stop()
        if down_s:
            time.sleep(down_s)
        return self.start()


def start(port, dir, persistence=True, tls=None, users=None):
    """Start a broker on 127.0.0.1:port with its files in dir; returns the Broker."""
    return Broker(port, dir, persistence, tls, users).start()


def _secure(c, tls_ca, auth):
    """TLS (verifying the broker against tls_ca) and a user name/password on a paho client."""
    if tls_ca:
        c.tls_set(ca_certs=tls_ca)
    if auth:
        c.username_pw_set(*auth)


class Subscriber:
    """A paho client subscribed (QoS 1) to topics, recording every message as
    (monotonic time, topic, payload, retained) with the payload JSON-decoded
    when it is JSON (else bytes). It resubscribes after a reconnect; with
    clean=False (and a client_id) its session survives its own and the
    broker's restarts. tls_ca: connect with TLS, verifying the broker with
    that CA file; auth: (user, password)."""

    def __init__(self, port, topics, client_id=None, clean=True, tls_ca=None, auth=None):
        self.lock = threading.Lock()
        self.msgs = []
        self.topics = list(topics)
        self.connected = threading.Event()
        self.subacks = threading.Semaphore(0)
        self.c = mqtt.Client(client_id=client_id or "", clean_session=clean)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda c, ud, mid, qos: self.subacks.release()
        self.c.on_message = self._on_msg
        self.c.reconnect_delay_set(0.2, 1)
        _secure(self.c, tls_ca, auth)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        proc.wait_for(self.connected.is_set, "MQTT subscriber connected on %d" % port)
        for t in self.topics:
            proc.check(self.subacks.acquire(timeout=proc.DEADLINE), "no SUBACK for %s" % t)

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
        """Payloads received on topic, in order."""
        with self.lock:
            return [p for (_, t, p, _) in self.msgs if t == topic]

    def received(self, topic):
        """(payload, retained) of each message received on topic, in order."""
        with self.lock:
            return [(p, r) for (_, t, p, r) in self.msgs if t == topic]

    def last(self, topic):
        v = self.on(topic)
        return v[-1] if v else None

    def all(self):
        """(topic, payload, retained) of every message, in order."""
        with self.lock:
            return [(t, p, r) for (_, t, p, r) in self.msgs]

    def count(self):
        with self.lock:
            return len(self.msgs)

    def status(self, prefix="devices"):
        """Latest status payload per device id (topics <prefix>/<dev>/status)."""
        out = {}
        with self.lock:
            for (_, t, p, _) in self.msgs:
                parts = t.split("/")
                if len(parts) == 3 and parts[0] == prefix and parts[2] == "status":
                    out[parts[1]] = p
        return out

    def close(self):
        try:
            self.c.loop_stop()
            self.c.disconnect()
        except Exception:
            pass


def publish(port, topic, payload, qos=1, retain=False, tls_ca=None, auth=None):
    """Publish one message (a dict or list is sent as JSON) and wait for its PUBACK."""
    import paho.mqtt.publish as pub
    if not isinstance(payload, (str, bytes)):
        payload = json.dumps(payload)
    pub.single(topic, payload, qos=qos, retain=retain, hostname="127.0.0.1", port=port,
               tls={"ca_certs": tls_ca} if tls_ca else None,
               auth={"username": auth[0], "password": auth[1]} if auth else None)
