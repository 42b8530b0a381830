#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""notifier_05_tls's scenario again with --data-qos 0, so the publisher children run paho's
synchronous client (notifier/mqttsync.c) over TLS with a password: both children get in over
TLS as user ntf (with TCP_CORK on their socket), data of devices of both reaches a TLS subscriber,
and the refused connections (wrong CA, wrong password, certificate for another host) are logged
once per child, naming the cause, exactly as the MQTTAsync clients log them (the shared
brokers.c); the configurations refused at start are refused by the children too."""
import re
import sys

from ntftest import check
import notifier_05_tls

BASE = 23400  # notifier_NN: the 20 ports from 23000 + 20 * NN (notifier.cmake)


def sync_children(env):
    out = env.ntf.output()
    for k in ("ntf-test-1", "ntf-test-2"):
        check("event=publisher_client index=%s client=%s qos=0 api=sync" % (k[-1], k) in out,
              "%s is not on the sync client:\n%s" % (k, out))
        check(re.search(r"event=mqtt_connected client=%s broker=ssl://\S+ failures=0 api=sync cork=1" % k, out),
              "%s: no TLS connection with cork" % k)
    print("both publisher children on MQTTClient over TLS, corked")


if __name__ == "__main__":
    sys.exit(notifier_05_tls.main(BASE, ["--data-qos", "0"], sync_children))
