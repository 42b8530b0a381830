#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""deploy/check-monitoring.py - are the alert rules, their tests and the Grafana dashboard of deploy/monitoring sound?

  - `promtool check config prometheus.yml` (which checks alerts.yml too) and `promtool test rules alerts.test.yml`;
    every alert of alerts.yml has a case in alerts.test.yml;
  - dashboard.json: valid JSON, unique panel ids, every query parses as PromQL (promtool checks them as
    recording rules, with Grafana's $__rate_interval as 5m);
  - every sluice_* series the rules and the dashboard name is one the programs export: a name (less
    _bucket/_sum/_count) that appears as a string in the sources of edge/, persister/, notifier/, common/.
One line per check; exit 1 on a failure. ctest monitoring_check (label lint) runs it; promtool comes from the Debian
package prometheus (scripts/deps).

    deploy/check-monitoring.py
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MON = os.path.join(TOP, "deploy", "monitoring")
failed = 0


def report(ok, what, detail=""):
    global failed
    print("%s %s%s" % ("ok  " if ok else "FAIL", what, ("\n" + detail.rstrip()) if detail and not ok else ""))
    failed += 0 if ok else 1


def promtool(*args):
    r = subprocess.run(["promtool"] + list(args), cwd=MON, capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


def exported_names():
    names = set()
    for d in ("edge", "persister", "notifier", "common"):
        for f in glob.glob(os.path.join(TOP, d, "*.c")):
            names.update(re.findall(r'"(sluice_[a-z0-9_]+|process_[a-z0-9_]+)"', open(f).read()))
    return names


def series_in(expr):
    return set(re.findall(r"\b((?:sluice|process)_[a-z0-9_]+)", expr))


def main():
    if not shutil.which("promtool"):
        sys.exit("check-monitoring: promtool not found (Debian package prometheus; scripts/deps installs it)")
    ok, out = promtool("check", "config", "prometheus.yml")
    report(ok, "promtool check config prometheus.yml (rules: alerts.yml)", out)
    ok, out = promtool("test", "rules", "alerts.test.yml")
    report(ok, "promtool test rules alerts.test.yml", out)

    rules = yaml.safe_load(open(os.path.join(MON, "alerts.yml")))
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load(open(os.path.join(MON, "alerts.test.yml")))
    tested = {c["alertname"] for t in tests["tests"] for c in t.get("alert_rule_test", [])}
    report(set(alerts) <= tested, "every alert has a test case (%d alerts)" % len(alerts),
           "untested: %s" % ", ".join(sorted(set(alerts) - tested)))

    dash = json.load(open(os.path.join(MON, "dashboard.json")))
    panels = [p for p in dash["panels"] if p.get("type") != "row"]
    ids = [p["id"] for p in dash["panels"]]
    report(len(ids) == len(set(ids)), "dashboard.json: %d panels, unique ids" % len(panels))
    exprs = {"%s/%s" % (p["title"], t["refId"]): t["expr"] for p in panels for t in p.get("targets", [])}
    report(all(p.get("targets") for p in panels), "dashboard.json: every panel has a query")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=None, delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
            {"record": "dashboard:q%d" % i, "expr": e.replace("$__rate_interval", "5m")}
            for i, e in enumerate(exprs.values())]}]}, f)
    ok, out = promtool("check", "rules", f.name)
    os.unlink(f.name)
    report(ok, "dashboard.json: %d queries parse as PromQL" % len(exprs), out)

    known = exported_names()
    for what, named in (("alerts.yml", alerts), ("dashboard.json", exprs)):
        missing = set()
        for expr in named.values():
            for s in series_in(expr):
                if s not in known and re.sub(r"_(bucket|sum|count)$", "", s) not in known:
                    missing.add(s)
        report(not missing, "%s: every series is exported by the programs" % what,
               "not in edge/, persister/, notifier/, common/: %s" % ", ".join(sorted(missing)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
