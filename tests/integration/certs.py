"""certs.py - throwaway certificates for the TLS tests: a CA, and server or
client certificates it signs, as EC P-256 keys made by the openssl command in
a few ms, valid two days.

    ca = certs.make_ca(dir, "test-ca")                              # dir/test-ca.pem, .key
    cert, key = certs.make_cert(dir, "broker", ca, ["IP:127.0.0.1"])  # a server certificate
    cert, key = certs.make_cert(dir, "pump-1", ca, ["DNS:pump-1"], usage="clientAuth")
"""
import os
import subprocess

import proc


def _openssl_req(dir, name, ext, ca=None):
    """One self-signed (ca None) or CA-signed certificate: dir/<name>.pem and .key."""
    cnf, cert, key = (os.path.join(dir, name + x) for x in (".cnf", ".pem", ".key"))
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n[ext]\n%s\n" % (name, "\n".join(ext)))
    argv = ["openssl", "req", "-x509", "-config", cnf, "-extensions", "ext", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", "2"]
    if ca:
        argv += ["-CA", ca, "-CAkey", ca[:-len(".pem")] + ".key"]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.check(r.returncode == 0, "openssl req for %s: %s" % (name, r.stdout.decode(errors="replace")))
    for p in (cert, key):
        os.chmod(p, 0o644)  # throwaway keys; the broker runs as user mosquitto
    return cert, key


def make_ca(dir, name):
    """A throwaway CA: dir/<name>.pem (returned) and dir/<name>.key."""
    return _openssl_req(dir, name, ["basicConstraints = critical,CA:TRUE", "keyUsage = critical,keyCertSign,cRLSign",
                                    "subjectKeyIdentifier = hash"])[0]


def make_cert(dir, name, ca, sans, usage="serverAuth"):
    """A certificate (CN = name) signed by the CA make_ca returned, for sans
    (e.g. ["IP:127.0.0.1", "DNS:localhost"]) and usage serverAuth or
    clientAuth; returns (cert, key) paths."""
    ext = ["basicConstraints = critical,CA:FALSE", "keyUsage = critical,digitalSignature",
           "extendedKeyUsage = " + usage, "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid"]
    if sans:
        ext.append("subjectAltName = " + ",".join(sans))
    return _openssl_req(dir, name, ext, ca)
