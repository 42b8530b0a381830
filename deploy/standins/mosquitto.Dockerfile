# A stand-in for the official eclipse-mosquitto:2 image where no registry is reachable (deploy/compose-test.sh):
# Debian's Mosquitto 2 as uid 1883, configuration in /mosquitto/config, data in /mosquitto/data, and nc for
# the healthcheck (the official image has busybox's).
FROM debian:bookworm-slim
RUN groupadd -g 1883 mosquitto && useradd -u 1883 -g 1883 -r -M -d /mosquitto -s /usr/sbin/nologin mosquitto \
 && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mosquitto netcat-openbsd \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log && chown -R 1883:1883 /mosquitto
USER 1883:1883
EXPOSE 1883
CMD ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
