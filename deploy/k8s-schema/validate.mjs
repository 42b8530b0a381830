// SPDX-License-Identifier: Apache-2.0
// deploy/k8s-schema/validate.mjs - validate Kubernetes objects (YAML on stdin) offline against the
// API's OpenAPI schemas, as bundled by the npm package kubernetes-models (deploy/check-k8s.sh runs it).
//   kubectl kustomize deploy/k8s | node deploy/k8s-schema/validate.mjs
// Two checks per object: the schema (types, required fields, enums) through the model's validate(), and
// unknown fields, which the schemas allow but the API server drops or refuses (a misspelt
// "seccompProfil" would otherwise pass): the object is wrapped in proxies that note every key the
// validator reads; a key it never read, in an object whose keys it never listed (maps such as labels
// are listed), is unknown. One line per object; exit 1 if any is invalid.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

function track(value, path, seen) {
  if (value === null || typeof value !== "object") return value;
  const rec = { path, keys: Object.keys(value), read: new Set(), listed: false, array: Array.isArray(value) };
  seen.push(rec);
  const inner = rec.array ? value.map((v, i) => track(v, `${path}/${i}`, seen))
    : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, track(v, `${path}/${k}`, seen)]));
  return new Proxy(inner, {
    get(t, k, r) { if (typeof k === "string") rec.read.add(k); return Reflect.get(t, k, r); },
    has(t, k) { if (typeof k === "string") rec.read.add(k); return Reflect.has(t, k); },
    ownKeys(t) { rec.listed = true; return Reflect.ownKeys(t); },
  });
}

function unknownFields(seen) {
  const out = [];
  for (const r of seen) {
    if (r.array || r.listed) continue;
    for (const k of r.keys) {
      const p = `${r.path}/${k}`;
      if (!r.read.has(k) && !out.some((u) => p.startsWith(u + "/"))) out.push(p);
    }
  }
  return out;
}

let objects = 0, invalid = 0;
for (const doc of parseAllDocuments(readFileSync(0, "utf8"))) {
  if (doc.errors.length) { console.log(`FAIL YAML: ${doc.errors[0].message}`); invalid++; continue; }
  const obj = doc.toJSON();
  if (!obj) continue;
  objects++;
  const name = `${obj.kind}/${obj.metadata?.name}`;
  const [group, version] = String(obj.apiVersion).includes("/") ? obj.apiVersion.split("/") : [null, obj.apiVersion];
  let Kind;
  try {
    Kind = (await import(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`))[obj.kind];
  } catch { /* no such group/version */ }
  if (!Kind) { console.log(`FAIL ${name}: no schema for ${obj.apiVersion} ${obj.kind}`); invalid++; continue; }
  const seen = [];
  try {
    Kind.prototype.validate.call(track(obj, "", seen));
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`); invalid++; continue;
  }
  const unknown = unknownFields(seen);
  if (unknown.length) { console.log(`FAIL ${name}: unknown field ${unknown.join(", ")}`); invalid++; continue; }
  console.log(`ok   ${name}: ${obj.apiVersion}`);
}
if (objects === 0) { console.log("FAIL no object in the input"); invalid++; }
process.exit(invalid ? 1 : 0);
