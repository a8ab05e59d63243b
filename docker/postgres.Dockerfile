# PostgreSQL 15 for docker/compose.yaml, from Debian's own package on the same debian:bookworm base
# as the modeldock image (no image registry needed). Context = docker/:
#   docker build -f docker/postgres.Dockerfile -t modeldock-postgres docker
# First start: initdb with the password in POSTGRES_PASSWORD (scram-sha-256 for every host
# connection), a database and role named by POSTGRES_DB / POSTGRES_USER. Data in /var/lib/postgresql/data.
FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
# postgresql-15 (the server only: no postgresql-common cluster is created or started here).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=5 \
    CMD ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
