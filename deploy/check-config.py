#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""deploy/check-config.py - do docker-compose.yml and deploy/k8s still match the binaries?

Validates the compose file (`docker-compose config -q`) and renders deploy/k8s
(`kubectl kustomize`), then compares every SLUICE_* variable each container is
given with the names the binary it runs lists in `--help` (the cfg table's env
names, plus SLUICE_FLEET_SECRET which the edge reads directly and names there).
A variable set on one container must be known to that binary; one that comes
from a ConfigMap or Secret shared through envFrom must be known to at least one
binary that loads it. Also: each command is a Sluice binary, and each
secretKeyRef / configMapKeyRef names a key that exists.
Secrets are made at deploy time (deploy/make-secrets.sh), so it runs that
script into a temporary directory and checks each compose secret file, and
each Secret a Kubernetes volume mounts and each file a SLUICE_* variable
names under such a mount, against what the script makes. deploy/k8s/broker
must render, with its ACL equal to deploy/mosquitto.acl.
Needs a build (binaries in --bin), docker-compose, kubectl and mosquitto_passwd;
no engine or cluster.

    deploy/check-config.py [--bin DIR]     (default: build/release/bin, else build/bin)
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env=None):
    r = subprocess.run(cmd, cwd=TOP, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"check-config: {' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def known_env(bindir, prog, cache={}):
    """SLUICE_* names PROG's --help mentions, or None if there is no such binary."""
    if prog not in cache:
        path = os.path.join(bindir, prog)
        cache[prog] = set(re.findall(r"SLUICE_[A-Z0-9_]+", run([path, "--help"]))) if os.access(path, os.X_OK) else None
    return cache[prog]


def sluice(names):
    return {n for n in names if n.startswith("SLUICE_")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", help="directory holding sluice-* (default build/release/bin, else build/bin)")
    a = ap.parse_args()
    bindir = a.bin or next((d for d in ("build/release/bin", "build/bin") if os.path.isdir(os.path.join(TOP, d))), None)
    if not bindir:
        sys.exit("check-config: no build found; pass --bin DIR")
    bindir = os.path.join(TOP, bindir)
    errors, checked = [], 0

    def check(where, prog, given, shared=None):
        """given: names set on this container; shared: {name: source} from envFrom."""
        nonlocal checked
        env = known_env(bindir, prog)
        if env is None:
            errors.append(f"{where}: runs {prog}, which is not a Sluice binary")
            return
        for name in sorted(sluice(given)):
            checked += 1
            if name not in env:
                errors.append(f"{where}: {name} is not an option of {prog}")
        for name, src in (shared or {}).items():
            users.setdefault((src, name), []).append(name in env)

    # docker-compose.yml, anchors merged by docker-compose itself.
    run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"])
    compose = yaml.safe_load(run(["docker-compose", "-f", "docker-compose.yml", "config"]))
    users = {}
    for svc, s in compose["services"].items():
        if not str(s.get("image", "")).startswith("sluice"):
            continue
        env = s.get("environment") or {}
        check(f"compose {svc}", s["command"][0], env.keys() if isinstance(env, dict) else
              [e.split("=", 1)[0] for e in env])

    # The secrets deploy/make-secrets.sh makes, for compose (files) and Kubernetes (Secrets).
    tmp = tempfile.TemporaryDirectory(prefix="check-config-")
    menv = dict(os.environ, SLUICE_KEYS=os.path.join(bindir, "sluice-keys"), SECRETS_DIR=os.path.join(tmp.name, "k"),
                SLUICE_DB="postgresql://check:config@db/sluice")
    run(["deploy/make-secrets.sh", "compose", os.path.join(tmp.name, "c"), "--no-chown"], env=menv)
    made = set()
    for root, _, files in os.walk(os.path.join(tmp.name, "c")):
        made |= {os.path.relpath(os.path.join(root, f), os.path.join(tmp.name, "c")) for f in files}
    for name, sec in (compose.get("secrets") or {}).items():
        rel = os.path.relpath(sec.get("file", ""), os.path.join(TOP, "deploy", "secrets"))
        if rel not in made:
            errors.append(f"compose secret {name}: {sec.get('file')} is not made by deploy/make-secrets.sh compose")
    for svc, s in compose["services"].items():
        for v in s.get("volumes") or []:
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            rel = os.path.relpath(src, os.path.join(TOP, "deploy", "secrets"))
            if not rel.startswith("..") and not any(m == rel or m.startswith(rel + "/") for m in made):
                errors.append(f"compose {svc}: volume {src} is not made by deploy/make-secrets.sh compose")
    secrets = {}
    for d in yaml.safe_load_all(run(["deploy/make-secrets.sh", "k8s"], env=menv)):
        if d and d["kind"] == "Secret":
            secrets[d["metadata"]["name"]] = set(d.get("data") or {})

    # deploy/k8s/broker renders, its ACL is deploy/mosquitto.acl.
    run(["kubectl", "kustomize", "deploy/k8s/broker"])
    with open(os.path.join(TOP, "deploy/mosquitto.acl")) as a, open(os.path.join(TOP, "deploy/k8s/broker/mosquitto.acl")) as b:
        if a.read() != b.read():
            errors.append("deploy/k8s/broker/mosquitto.acl differs from deploy/mosquitto.acl: copy it")

    # Every shipped broker caps payloads at the notifier's largest (a longer result would be dropped unseen).
    with open(os.path.join(TOP, "notifier/ntf.h")) as f:
        m = re.search(r"#define NTF_PAYLOAD_MAX \((\d+)u \* (\d+)u\)", f.read())
    want = int(m.group(1)) * int(m.group(2)) if m else None
    for conf, pat in (("deploy/mosquitto.conf", r"^message_size_limit (\d+)$"),
                      ("deploy/k8s/broker/mosquitto.conf", r"^message_size_limit (\d+)$"),
                      ("scripts/stack.sh", r"^message_size_limit (\d+)$"),
                      ("tests/integration/mqtttest.py", r"^MESSAGE_SIZE_LIMIT = (\d+)$")):
        with open(os.path.join(TOP, conf)) as f:
            got = re.findall(pat, f.read(), re.M)
        if want is None or got != [str(want)]:
            errors.append(f"{conf}: message_size_limit {got} is not NTF_PAYLOAD_MAX ({want}, notifier/ntf.h)")

    # deploy/k8s as kustomize renders it.
    docs = [d for d in yaml.safe_load_all(run(["kubectl", "kustomize", "deploy/k8s"])) if d]
    data = {}
    for d in docs:
        if d["kind"] in ("ConfigMap", "Secret"):
            data[(d["kind"], d["metadata"]["name"])] = set((d.get("data") or {}).keys()) | set(
                (d.get("stringData") or {}).keys())
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            shared = {}
            for ef in c.get("envFrom") or []:
                kind, ref = ("ConfigMap", ef["configMapRef"]) if "configMapRef" in ef else ("Secret", ef["secretRef"])
                for name in sluice(data.get((kind, ref["name"]), set())):
                    shared[name] = f"{kind} {ref['name']}"
            where = f"k8s {d['metadata']['name']}/{c['name']}"
            # Secret volumes: made by make-secrets.sh; a SLUICE_* path under one names a key it has.
            vols = {v["name"]: v["secret"]["secretName"] for v in d["spec"]["template"]["spec"].get("volumes") or []
                    if "secret" in v}
            mounts = {}
            for vm in c.get("volumeMounts") or []:
                if vm["name"] in vols:
                    sn = vols[vm["name"]]
                    if sn not in secrets:
                        errors.append(f"{where}: mounts Secret {sn}, which deploy/make-secrets.sh k8s does not make")
                    mounts[vm["mountPath"].rstrip("/")] = sn
            for e in c.get("env") or []:
                val = str(e.get("value") or "")
                for path, sn in mounts.items():
                    if val.startswith(path + "/") and val[len(path) + 1:] not in secrets.get(sn, set()):
                        errors.append(f"{where}: {e['name']}={val}: Secret {sn} has no key {val[len(path) + 1:]}")
            for e in c.get("env") or []:
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = (e.get("valueFrom") or {}).get(key)
                    if ref and ref["key"] not in data.get((kind, ref["name"]), set()):
                        errors.append(f"{where}: {e['name']} refers to {kind} {ref['name']} key {ref['key']}, "
                                      "which is not there")
            check(where, c["command"][0], [e["name"] for e in c.get("env") or []], shared)
    for (src, name), used in sorted(users.items()):
        checked += 1
        if not any(used):
            errors.append(f"k8s {src}: {name} is an option of none of the containers that load it")

    for e in errors:
        print(f"check-config: {e}")
    print(f"check-config: {checked} SLUICE_* settings checked against {bindir}: "
          f"{'OK' if not errors else f'{len(errors)} mismatches'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
