#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""deploy/check-pss.py - does every pod in these manifests pass the Pod Security "restricted" level?

Reads Kubernetes YAML (files, or stdin with -), finds each pod spec (Pod, and the template of Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) and checks it against the controls of the Pod Security
Standards (kubernetes.io/docs/concepts/security/pod-security-standards, as of v1.32): the baseline ones and
the restricted ones. No cluster and nothing beyond PyYAML; what the API server's admission would refuse under
`pod-security.kubernetes.io/enforce: restricted`, one line each:
  FAIL Deployment/sluice-edge: container edge: seccompProfile.type must be RuntimeDefault or Localhost
Exit 0 if every pod passes, 1 otherwise. deploy/check-k8s.sh runs it on the rendered kustomizations.

    deploy/check-pss.py FILE.yaml... | -
"""
import sys

import yaml

POD_KINDS = {"Pod": (), "Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"),
             "DaemonSet": ("spec", "template"), "ReplicaSet": ("spec", "template"), "Job": ("spec", "template"),
             "CronJob": ("spec", "jobTemplate", "spec", "template")}
# restricted: only these volume types
VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def containers(spec):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield c


def check_pod(meta, spec):
    """The violations of one pod (metadata, spec), as strings."""
    bad = []
    psc = spec.get("securityContext") or {}
    # -- baseline
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(k):
            bad.append("%s must be unset or false" % k)
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("windowsOptions.hostProcess must not be true")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            bad.append("sysctl %s is not in the safe set" % s.get("name"))
    for v in spec.get("volumes") or []:
        kinds = [k for k in v if k != "name"]
        if any(k not in VOLUME_TYPES for k in kinds):
            bad.append("volume %s: type %s is not allowed (only %s)" %
                       (v.get("name"), ",".join(kinds), ", ".join(sorted(VOLUME_TYPES))))
    for k, val in ((meta.get("annotations") or {}).items()):
        if k.startswith("container.apparmor.security.beta.kubernetes.io/") and \
                val != "runtime/default" and not val.startswith("localhost/"):
            bad.append("annotation %s=%s: AppArmor must be runtime/default or localhost/*" % (k, val))
    if (psc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        bad.append("appArmorProfile.type must not be Unconfined")
    sel = psc.get("seLinuxOptions") or {}
    if sel.get("type") not in SELINUX_TYPES or sel.get("user") or sel.get("role"):
        bad.append("seLinuxOptions: type must be a container type, user and role unset")
    # -- restricted, pod level
    if psc.get("runAsUser") == 0:
        bad.append("runAsUser must not be 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad.append("seccompProfile.type must be RuntimeDefault or Localhost (is %s)" % pod_seccomp)
    pod_nonroot = psc.get("runAsNonRoot")
    if pod_nonroot is False:
        bad.append("runAsNonRoot must not be false")
    for c in containers(spec):
        who = "container %s: " % c.get("name")
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(who + "privileged must be unset or false")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad.append(who + "hostPort must be unset or 0")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(who + "windowsOptions.hostProcess must not be true")
        if sc.get("procMount") not in (None, "Default"):
            bad.append(who + "procMount must be Default")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad.append(who + "appArmorProfile.type must not be Unconfined")
        csel = sc.get("seLinuxOptions") or {}
        if csel.get("type") not in SELINUX_TYPES or csel.get("user") or csel.get("role"):
            bad.append(who + "seLinuxOptions: type must be a container type, user and role unset")
        # restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(who + "allowPrivilegeEscalation must be false")
        nonroot = sc.get("runAsNonRoot")
        if nonroot is False or (nonroot is None and pod_nonroot is not True):
            bad.append(who + "runAsNonRoot must be true (here or in the pod's securityContext)")
        if sc.get("runAsUser") == 0:
            bad.append(who + "runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp not in (None, "RuntimeDefault", "Localhost") or (seccomp is None and pod_seccomp is None):
            bad.append(who + "seccompProfile.type must be RuntimeDefault or Localhost (here or in the pod's)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(who + "capabilities.drop must contain ALL")
        extra = [a for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            bad.append(who + "capabilities.add may hold only NET_BIND_SERVICE (has %s)" % ",".join(extra))
    return bad


def pod_of(obj):
    """(metadata, spec) of the pod an object runs, or None."""
    path = POD_KINDS.get(obj.get("kind"))
    if path is None:
        return None
    node = obj
    for k in path:
        node = (node or {}).get(k)
    node = node or {}
    return node.get("metadata") or {}, node.get("spec") or {}


def check_docs(docs):
    """[(name, [violations])] for every pod-running object in docs."""
    out = []
    for obj in docs:
        if not isinstance(obj, dict):
            continue
        pod = pod_of(obj)
        if pod is not None:
            out.append(("%s/%s" % (obj["kind"], (obj.get("metadata") or {}).get("name")), check_pod(*pod)))
    return out


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        sys.exit(__doc__)
    docs = []
    for f in argv:
        with (sys.stdin if f == "-" else open(f)) as fh:
            docs.extend(yaml.safe_load_all(fh))
    results = check_docs(docs)
    failed = 0
    for name, bad in results:
        for b in bad:
            print("FAIL %s: %s" % (name, b))
        if bad:
            failed += 1
        else:
            print("ok   %s: restricted" % name)
    if not results:
        print("check-pss: no pod in the input", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
