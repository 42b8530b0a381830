#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of scripts/check-layering on the small trees in fixtures/ (ctest
layering_fixtures, label lint).

Each fixture is a source tree (one directory per component) with its own
layering.conf. The test compiles every .c of it with cc into a scratch build
laid out as CMake lays one out (<comp>/CMakeFiles/<comp>.dir/<file>.c.o) and
writes the compile_commands.json the checker reads, then runs the checker and
asserts its exit code and the lines that name each broken rule.

    test_check_layering.py [-v]        CC picks the compiler (default cc)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKER = os.path.join(HERE, "..", "..", "scripts", "check-layering")
FIXTURES = os.path.join(HERE, "fixtures")


def build(case, build_dir):
    """Compile fixtures/<case> into build_dir; returns the build dir."""
    src = os.path.join(FIXTURES, case)
    comps = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    incs = ["-I" + os.path.join(src, c, "include") for c in comps if os.path.isdir(os.path.join(src, c, "include"))]
    cc = os.environ.get("CC", "cc")
    db = []
    for comp in comps:
        cwd = os.path.join(build_dir, comp)
        os.makedirs(os.path.join(cwd, "CMakeFiles", comp + ".dir"), exist_ok=True)
        for fn in sorted(os.listdir(os.path.join(src, comp))):
            if not fn.endswith(".c"):
                continue
            path = os.path.join(src, comp, fn)
            obj = "CMakeFiles/%s.dir/%s.o" % (comp, fn)
            argv = [cc] + incs + ["-Wall", "-Werror", "-o", obj, "-c", path]
            subprocess.run(argv, cwd=cwd, check=True)
            db.append({"directory": cwd, "command": " ".join(argv), "file": path})
    with open(os.path.join(build_dir, "compile_commands.json"), "w") as f:
        json.dump(db, f, indent=1)
    return src


def check(case, build_dir, *extra):
    """Run the checker on fixture `case` built in build_dir: (exit code, stdout + stderr)."""
    src = os.path.join(FIXTURES, case)
    p = subprocess.run([sys.executable, CHECKER, "--src", src, "--conf", os.path.join(src, "layering.conf")]
                       + list(extra) + [build_dir], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


class CheckLayering(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sl-layering-")
        self.addCleanup(shutil.rmtree, self.tmp)

    def run_case(self, case, *extra):
        build(case, self.tmp)
        rc, out = check(case, self.tmp, *extra)
        sys.stderr.write("--- %s: exit %d\n%s" % (case, rc, out) if "-v" in sys.argv else "")
        return rc, out.splitlines()

    def assertLines(self, lines, expected):
        for line in expected:
            self.assertIn(line, lines, "missing line %r in:\n%s" % (line, "\n".join(lines)))

    def test_clean(self):
        # Calls and includes strictly downward, a callback upward through a
        # pointer, another component's header, a .c including its own .h.
        rc, lines = self.run_case("clean")
        self.assertEqual(rc, 0, "\n".join(lines))
        self.assertRegex(lines[-1], r"^check-layering: ok: 2 components, 6 modules, 4 call and 6 include edges$")

    def test_cycle(self):
        rc, lines = self.run_case("cycle")
        self.assertEqual(rc, 1, "\n".join(lines))
        self.assertLines(lines, [
            "lib: calls: cycle among a, b, c",
            "    a -> b -> c -> a",
            "    a -> b: b_run",
            "    c -> a: a_run",
            "lib: includes: cycle among a, b, c",
            '    c -> a: lib/c.c:2 #include "a.h"',
            "check-layering: FAIL: 2 problems (lib 2)",
        ])
        self.assertFalse([x for x in lines if "d ->" in x or " d," in x], "d is in no cycle")

    def test_upward_include(self):
        # Only the include graph sees it: low calls top through a pointer.
        rc, lines = self.run_case("upward_include")
        self.assertEqual(rc, 1, "\n".join(lines))
        self.assertLines(lines, [
            'app: includes: upward low (rank 2) -> top (rank 1): app/low.h:3 #include "top.h"',
            "app: includes: cycle among low, top",  # top includes low.h, as it should
            "check-layering: FAIL: 2 problems (app 2)",
        ])
        self.assertFalse([x for x in lines if x.startswith("app: calls:")], "\n".join(lines))

    def test_upward_call(self):
        # Only nm sees the upward call (low declares top_poke itself); the
        # sideways dependency shows in both graphs.
        rc, lines = self.run_case("upward_call")
        self.assertEqual(rc, 1, "\n".join(lines))
        self.assertLines(lines, [
            "app: calls: upward low (rank 3) -> top (rank 1): top_poke",
            "app: calls: sideways mid_a (rank 2) -> mid_b (rank 2): mid_b_run",
            'app: includes: sideways mid_a (rank 2) -> mid_b (rank 2): app/mid_a.c:2 #include "mid_b.h"',
            "check-layering: FAIL: 3 problems (app 3)",
        ])

    def test_unplaced(self):
        rc, lines = self.run_case("unplaced")
        self.assertEqual(rc, 1, "\n".join(lines))
        self.assertLines(lines, [
            "app: module extra (app/extra.c) is not in the rank table [app]: give it a rank",
            "note: app: ranked but not in the tree: ghost",
        ])
        self.assertTrue([x for x in lines if x.startswith("misc/ is compiled but in neither components nor "
                                                          "unchecked of ")], "\n".join(lines))

    def test_component_filter(self):
        # --component narrows the check: misc/ and app's problems go with it.
        build("cycle", self.tmp)
        rc, out = check("cycle", self.tmp, "--component", "lib")
        self.assertEqual(rc, 1, out)
        rc, out = check("cycle", self.tmp, "--component", "nosuch")
        self.assertEqual(rc, 2, out)
        self.assertIn("--component nosuch: not in components", out)

    def test_not_built(self):
        # An object missing or older than its source: cannot check (2), not a pass.
        build("clean", self.tmp)
        os.remove(os.path.join(self.tmp, "app", "CMakeFiles", "app.dir", "mid.c.o"))
        rc, out = check("clean", self.tmp)
        self.assertEqual(rc, 2, out)
        self.assertIn("cannot check: not built or out of date", out)
        build("clean", self.tmp)
        obj = os.path.join(self.tmp, "app", "CMakeFiles", "app.dir", "top.c.o")
        os.utime(obj, (1, 1))  # older than top.c: the source changed since the build
        rc, out = check("clean", self.tmp)
        self.assertEqual(rc, 2, out)
        self.assertIn("top.c.o", out)
        rc, out = check("clean", os.path.join(self.tmp, "nosuch"))
        self.assertEqual(rc, 2, out)
        self.assertIn("compile_commands.json: configure the build first", out)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + [a for a in sys.argv[1:] if a != "-v"], verbosity=2)
