# A stand-in for the official haproxy:2.6 image where no registry is reachable (deploy/compose-test.sh):
# Debian's HAProxy 2.6, configuration in /usr/local/etc/haproxy/haproxy.cfg, run in the foreground as haproxy.
FROM debian:bookworm-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy \
 && apt-get clean && rm -rf /var/lib/apt/lists/* && mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
