#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_18_package: what `cmake --install` ships works as deploy/README.md and client/README.md say.

Installs this build into a DESTDIR (prefix /usr) and checks the set: every program (each answers --version
with this build's version), the device library shared (soname libsluice-client.so.0, only the public API
exported) and static, its headers and sluice-client.pc, the docs and the example. Then builds
client/example.c as a user would, with `pkg-config sluice-client` against that DESTDIR, linked to the
shared library and to the static one, and runs each against an edge of the real stack until messages are
acked, committed in PostgreSQL (the seq file carries on from one binary to the other).

Environment (tests/integration/system.cmake): SL_BUILD_DIR, the build to install; SL_CC, its C compiler;
SL_SANITIZE, its sanitizers ("address,undefined"), which the example must link too."""
import os
import re
import subprocess

import proc
from slstack import Stack, check, log, main, token, wait_for

PORT = 24900  # system_NN: 24000 + 50 * NN (system.cmake)
PROGRAMS = ("sluice-edge", "sluice-persister", "sluice-notifier", "sluice-api", "sluice-devsim",
            "sluice-replay", "sluice-token", "sluice-keys")
DEV = "pump-0001"  # the example's device id


def run(argv, env=None, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, **kw)
    check(r.returncode == 0, "%s: exit %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r.stdout


def install(build, dest):
    env = dict(os.environ, DESTDIR=dest)
    run(["cmake", "--install", build, "--prefix", "/usr"], env=env)
    usr = os.path.join(dest, "usr")
    version = re.search(r"CMAKE_PROJECT_VERSION:STATIC=(\S+)", open(os.path.join(build, "CMakeCache.txt")).read())
    version = version.group(1)
    for p in PROGRAMS:
        exe = os.path.join(usr, "bin", p)
        check(os.access(exe, os.X_OK), "%s not installed" % exe)
        out = run([exe, "--version"])
        check(out.startswith("%s %s" % (p, version)), "%s --version: %r, expected %s %s ..." % (p, out, p, version))
    libdir = os.path.dirname(run(["find", usr, "-name", "libsluice-client.so.0", "-print", "-quit"]).strip() or
                             "/missing/x")
    check(os.path.isdir(libdir), "libsluice-client.so.0 not installed")
    for f in ("libsluice-client.so", "libsluice-client.a", "pkgconfig/sluice-client.pc"):
        check(os.path.exists(os.path.join(libdir, f)), "%s not installed in %s" % (f, libdir))
    dyn = run(["readelf", "-d", os.path.join(libdir, "libsluice-client.so")])
    check("Library soname: [libsluice-client.so.0]" in dyn, "soname:\n" + dyn)
    syms = run(["nm", "-D", "--defined-only", os.path.join(libdir, "libsluice-client.so")]).split()
    exported = {s.split("@")[0] for s in syms if "@" in s}
    check("sl_client_new" in exported and "sl_tls_new" in exported and "mp_buf_write" in exported,
          "public API not exported: %r" % sorted(exported))
    check(not any(s.startswith(("frame_", "msg_")) for s in exported),
          "codec internals exported: %r" % sorted(s for s in exported if s.startswith(("frame_", "msg_"))))
    for f in ("include/sluice/sl/client.h", "include/sluice/sl/err.h", "include/sluice/sl/mp.h",
              "share/doc/sluice/README.md", "share/doc/sluice/LICENSE", "share/doc/sluice/CHANGELOG.md",
              "share/doc/sluice/docs/protocol.md", "share/doc/sluice/examples/example.c",
              "share/sluice/monitoring/alerts.yml", "share/sluice/monitoring/dashboard.json",
              os.path.relpath(os.path.join(libdir, "wireshark/plugins/sluice.lua"), usr)):
        check(os.path.isfile(os.path.join(usr, f)), "%s not installed" % f)
    log("installed into %s: %d programs (version %s), %s" % (dest, len(PROGRAMS), version, libdir))
    return usr, libdir


def build_example(usr, libdir, work):
    """The example, built from the installed copy with pkg-config: shared, then static."""
    # the sysroot maps the .pc's /usr/... paths into the DESTDIR; msgpack.pc comes from the system
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=os.path.dirname(usr), PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
    pc = lambda *a: run(["pkg-config"] + list(a) + ["sluice-client"], env=env).split()
    cc = os.environ.get("SL_CC", "cc")
    san = ["-fsanitize=" + os.environ["SL_SANITIZE"]] if os.environ.get("SL_SANITIZE") else []
    src = os.path.join(usr, "share/doc/sluice/examples/example.c")
    shared, static = os.path.join(work, "example-shared"), os.path.join(work, "example-static")
    run([cc, "-std=c99", "-Wall", "-Werror", "-o", shared, src] + san + pc("--cflags", "--libs"))
    needed = run(["readelf", "-d", shared])
    check("Shared library: [libsluice-client.so.0]" in needed, "example-shared does not link the .so:\n" + needed)
    deps = [a for a in pc("--static", "--libs-only-l") if a != "-lsluice-client"]
    run([cc, "-std=c99", "-Wall", "-Werror", "-o", static, src] + san + pc("--cflags") +
        ["-L" + libdir, "-l:libsluice-client.a"] + deps)
    needed = run(["readelf", "-d", static])
    check("libsluice-client" not in needed, "example-static needs the .so:\n" + needed)
    log("built the example against %s with pkg-config: shared and static" % libdir)
    return shared, static


def scenario():
    build = os.environ.get("SL_BUILD_DIR") or os.path.dirname(proc.bin_dir())
    with Stack(PORT, edges=1) as s:
        dest = os.path.join(s.dir, "dest")
        usr, libdir = install(build, dest)
        shared, static = build_example(usr, libdir, s.dir)
        s.start()
        tok = token(DEV)
        edge = "127.0.0.1:%d" % s.edge_port(0)
        acked = 0
        for i, exe in enumerate((shared, static)):
            # cd: the example keeps pump-0001.seq and its journal in its working directory
            p = proc.Proc("example%d" % i, ["sh", "-c", 'cd "$1" && exec "$2" "$3" "$4"', "sh", s.dir, exe, edge, tok],
                          os.path.join(s.dir, "example%d.log" % i), env={"LD_LIBRARY_PATH": libdir})
            p.start(wait=False)
            wait_for(lambda: p.check_alive() or len(re.findall(r"^acked \d+$", p.output(), re.M)) >= 3,
                     "three acks to %s" % os.path.basename(exe), timeout=60)
            p.stop()
            seqs = [int(x) for x in re.findall(r"^acked (\d+)$", p.output(), re.M)]
            log("%s: acked %r" % (os.path.basename(exe), seqs))
            acked += len(seqs)
        rows = s.pg.sql("select count(*), count(distinct seq) from telemetry where device_id = %s", (DEV,))[0]
        check(rows[0] >= acked and rows[0] == rows[1], "telemetry rows for %s: %r, %d acked" % (DEV, rows, acked))
        log("PostgreSQL holds %d rows of %s, every seq once" % (rows[0], DEV))


if __name__ == "__main__":
    main(scenario)
