# A stand-in for the official postgres:15 image where no registry is reachable (deploy/compose-test.sh):
# Debian's PostgreSQL 15 with the part of the official entrypoint docker-compose.yml uses
# (POSTGRES_USER, POSTGRES_PASSWORD_FILE, POSTGRES_DB, data in /var/lib/postgresql/data, pg_isready).
FROM debian:bookworm-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/run/postgresql /var/lib/postgresql/data && chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
