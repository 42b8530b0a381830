#!/usr/bin/python3
"""deploy/check-config.py - do docker-compose.yml and deploy/k8s still match the binaries?

Validates the compose file (`docker-compose config -q`) and renders deploy/k8s
(`kubectl kustomize`), then compares every SLUICE_* variable each container is
given with the names the binary it runs lists in `--help` (the cfg table's env
names, plus SLUICE_FLEET_SECRET which the edge reads directly and names there).
A variable set on one container must be known to that binary; one that comes
from a ConfigMap or Secret shared through envFrom must be known to at least one
binary that loads it. Also: each command is a Sluice binary, and each
secretKeyRef / configMapKeyRef names a key that exists.
Needs a build (binaries in --bin), docker-compose and kubectl; no engine or cluster.

    deploy/check-config.py [--bin DIR]     (default: build/release/bin, else build/bin)
"""
import argparse
import os
import re
import subprocess
import sys

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    r = subprocess.run(cmd, cwd=TOP, capture_output=True, text=True)
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
