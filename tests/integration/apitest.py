# SPDX-License-Identifier: Apache-2.0
"""apitest.py - sluice-api for the integration tests: the process (beside a
slstack.Stack), a small HTTP client, and a checker of every reply against
docs/api.yaml (OpenAPI 3: the subset of JSON Schema the document uses:
$ref, allOf, nullable, type, required, properties, items, enum, pattern,
minimum, maximum).

    api = apitest.Api(stack, port, tokens={"ops": ("rw", TOKEN_RW), "view": ("ro", TOKEN_RO)})
    api.start()
    st, body, hdrs = api.req("GET", "/v1/devices", token=TOKEN_RO)   # checked against the spec
"""
import http.client
import json
import os
import re
import ssl

import yaml

import proc
from proc import check

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC_PATH = os.path.join(HERE, "../../docs/api.yaml")
RO = "view-token-0123456789abcdef"
RW = "ops-token-fedcba9876543210"


class Spec:
    def __init__(self, path=SPEC_PATH):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.paths = []
        for tmpl, item in self.doc["paths"].items():
            rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", tmpl) + "$"
            self.paths.append((re.compile(rx), tmpl, item))
        self.checked = set()  # (method, template, status) seen

    def ref(self, node):
        while isinstance(node, dict) and "$ref" in node:
            cur = self.doc
            for part in node["$ref"].lstrip("#/").split("/"):
                cur = cur[part]
            node = cur
        return node

    def response_schema(self, method, path, status, ctype):
        path = path.split("?", 1)[0]
        for rx, tmpl, item in self.paths:
            if rx.match(path):
                op = item.get(method.lower())
                if op is None:  # a method the path does not take: 405 and an Error
                    check(status == 405, "spec: %s %s is not in docs/api.yaml (status %d)" % (method, tmpl, status))
                    self.checked.add((method, tmpl, status))
                    return self.doc["components"]["schemas"]["Error"]
                resp = op["responses"].get(str(status))
                check(resp is not None, "spec: %s %s has no response %d" % (method, tmpl, status))
                resp = self.ref(resp)
                self.checked.add((method, tmpl, status))
                content = resp.get("content", {})
                base = ctype.split(";")[0].strip()
                check(base in content, "spec: %s %s %d: content type %s not in %s" %
                      (method, tmpl, status, ctype, list(content)))
                return content[base].get("schema")
        # paths not in the spec (404 for unknown paths) must be errors
        check(status == 404 or status == 405 or status == 400, "spec: %s is not in docs/api.yaml" % path)
        return self.doc["components"]["schemas"]["Error"]

    def validate(self, value, schema, where="$"):
        schema = self.ref(schema)
        if schema is None:
            return
        if value is None:
            check(schema.get("nullable", False) or not schema, "%s: null where %s" % (where, schema))
            return
        if "allOf" in schema:
            for sub in schema["allOf"]:
                self.validate(value, sub, where)
        t = schema.get("type")
        types = {"object": dict, "array": list, "string": str, "boolean": bool}
        if t == "integer":
            check(isinstance(value, int) and not isinstance(value, bool), "%s: %r is not an integer" % (where, value))
        elif t == "number":
            check(isinstance(value, (int, float)) and not isinstance(value, bool), "%s: %r not a number" % (where, value))
        elif t:
            check(isinstance(value, types[t]), "%s: %r is not %s" % (where, value, t))
        if "enum" in schema:
            check(value in schema["enum"], "%s: %r not in %s" % (where, value, schema["enum"]))
        if "pattern" in schema and isinstance(value, str):
            check(re.search(schema["pattern"], value), "%s: %r !~ %s" % (where, value, schema["pattern"]))
        if schema.get("format") == "date-time" and isinstance(value, str):
            check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value),
                  "%s: %r is not RFC 3339" % (where, value))
        if "minimum" in schema and isinstance(value, (int, float)):
            check(value >= schema["minimum"], "%s: %r < minimum" % (where, value))
        if "maximum" in schema and isinstance(value, (int, float)):
            check(value <= schema["maximum"], "%s: %r > maximum" % (where, value))
        if isinstance(value, dict):
            for k in schema.get("required", []):
                check(k in value, "%s: required %r missing in %r" % (where, k, value))
            for k, sub in schema.get("properties", {}).items():
                if k in value:
                    self.validate(value[k], sub, "%s.%s" % (where, k))
        if isinstance(value, list) and "items" in schema:
            for i, v in enumerate(value):
                self.validate(v, schema["items"], "%s[%d]" % (where, i))


class Api:
    """sluice-api on 127.0.0.1:port against the stack's PostgreSQL."""

    def __init__(self, stack, port, extra=(), name="api", tokens=None, tls=None):
        """tls: (cert, key, ca) files: HTTPS, the client verifying the server against ca."""
        self.stack, self.port, self.tls = stack, port, tls
        self.spec = Spec()
        self.tokens_path = os.path.join(stack.dir, name + ".tokens")
        tokens = tokens or {"view": ("ro", RO), "ops": ("rw", RW)}
        with open(self.tokens_path, "w") as f:
            f.write("# NAME SCOPE TOKEN\n")
            for n, (scope, tok) in tokens.items():
                f.write("%s %s %s\n" % (n, scope, tok))
        os.chmod(self.tokens_path, 0o600)
        self.proc = proc.Proc(name, [proc.binary("sluice-api"), "--listen", "127.0.0.1:%d" % port,
                                     "--db", stack.pg.dsn, "--tokens-file", self.tokens_path,
                                     "--threads", "2"] + list(extra) +
                              (["--tls-cert", tls[0], "--tls-key", tls[1]] if tls else []),
                              os.path.join(stack.dir, name + ".log"), http="127.0.0.1:%d" % port,
                              ready=proc.port_open(port) if tls else proc.http_ok())
        stack.procs[name] = self.proc

    def start(self):
        self.proc.start()
        return self

    def req(self, method, path, token=None, body=None, raw=None, headers=None, validate=True):
        """(status, parsed JSON or text, headers dict). Every reply is checked against the spec."""
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[2])
            c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=ctx)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read().decode()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()
        ctype = hdrs.get("content-type", "")
        out = json.loads(text) if ctype.startswith("application/json") else text
        if validate:
            schema = self.spec.response_schema(method, path, r.status, ctype)
            if ctype.startswith("application/json"):
                self.spec.validate(out, schema)
        return r.status, out, hdrs

    def err(self, method, path, status, code, **kw):
        """A request that must fail with status and error code; returns the headers."""
        st, out, hdrs = self.req(method, path, **kw)
        check(st == status and isinstance(out, dict) and out.get("error") == code,
              "%s %s: want %d %s, got %d %r" % (method, path, status, code, st, out))
        return hdrs
