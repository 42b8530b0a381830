#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""test_check_pss: deploy/check-pss.py passes the shipped edge Deployment and refuses each thing Pod Security
"restricted" forbids, one mutation at a time (so the checker cannot pass everything). ctest pss_fixtures."""
import copy
import importlib.util
import os
import sys

import yaml

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
spec = importlib.util.spec_from_file_location("check_pss", os.path.join(TOP, "deploy", "check-pss.py"))
pss = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pss)


def edge():
    with open(os.path.join(TOP, "deploy", "k8s", "edge.yaml")) as f:
        return next(d for d in yaml.safe_load_all(f) if d["kind"] == "Deployment")


def pod(d):
    return d["spec"]["template"]["spec"]


def ctr(d):
    return pod(d)["containers"][0]


MUTATIONS = {  # what to break -> a word the violation must contain
    "no seccomp anywhere": (lambda d: pod(d)["securityContext"].pop("seccompProfile"), "seccompProfile"),
    "seccomp Unconfined": (lambda d: pod(d)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
                           "seccompProfile"),
    "container seccomp Unconfined": (lambda d: ctr(d)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}), "seccompProfile"),
    "privilege escalation": (lambda d: ctr(d)["securityContext"].pop("allowPrivilegeEscalation"),
                             "allowPrivilegeEscalation"),
    "capabilities kept": (lambda d: ctr(d)["securityContext"].pop("capabilities"), "drop must contain ALL"),
    "capability added": (lambda d: ctr(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
                         "NET_ADMIN"),
    "root allowed": (lambda d: (ctr(d)["securityContext"].pop("runAsNonRoot"),
                                pod(d)["securityContext"].pop("runAsNonRoot")), "runAsNonRoot"),
    "uid 0": (lambda d: ctr(d)["securityContext"].update(runAsUser=0), "runAsUser"),
    "privileged": (lambda d: ctr(d)["securityContext"].update(privileged=True), "privileged"),
    "hostPath": (lambda d: pod(d)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
    "hostNetwork": (lambda d: pod(d).update(hostNetwork=True), "hostNetwork"),
    "hostPort": (lambda d: ctr(d)["ports"][0].update(hostPort=7000), "hostPort"),
    "unsafe sysctl": (lambda d: pod(d)["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
                      "kernel.msgmax"),
    "init container unconfined": (lambda d: pod(d).update(initContainers=[{"name": "init", "image": "x"}]),
                                  "container init"),
}


def main():
    failures = []
    ok = pss.check_docs([edge()])
    if ok != [("Deployment/sluice-edge", [])]:
        failures.append("shipped edge Deployment refused: %r" % ok)
    for what, (mutate, word) in MUTATIONS.items():
        d = copy.deepcopy(edge())
        mutate(d)
        bad = pss.check_docs([d])[0][1]
        if not any(word in b for b in bad):
            failures.append("%s: not refused (violations %r, expected one naming %r)" % (what, bad, word))
    for f in failures:
        print("FAIL " + f)
    print("%d passed, %d failed" % (len(MUTATIONS) + 1 - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
