#!/usr/bin/env bash
# The image and the compose deployment (issue 26, item 3), end to end on a Docker engine:
#  1. the base image (docker/base_image.sh, when no registry gives debian:bookworm), the seccomp
#     profile (docker/seccomp_profile.py), the modeldock image (docker/Dockerfile, BuildKit) and
#     the PostgreSQL image (docker/postgres.Dockerfile), each build timed;
#  2. the image: under 1.2 GB, runs as `modeldock`, holds no compiler or -dev package,
#     `dpkg -L modeldock` lists the binaries, assets, unit and config;
#  3. `compose up` of docker/compose.yaml (PostgreSQL + two replicas on a shared blob volume)
#     until all three are healthy; register on replica 1, list and recommend on replica 2;
#  4. the sandbox in the container: tests/docker_hostile_check.sh on replica 1 (namespaces from
#     /proc, the crafted hostile models contained), and a container under Docker's default
#     seccomp profile, whose workers must lack the namespaces (so the profile is what gives them);
#  5. `apt-get purge --autoremove modeldock` in a throwaway container of the image: no file or
#     user left, the base image's packages only;
#  6. `compose down -v`.
# Not in CI (a cold image build takes tens of minutes on 2 cores). Needs root or the docker
# group, a Docker engine (dockerd running), `docker compose` or Debian's docker-compose, and
# Debian's /usr/bin/python3 with python3-torch (crafted models). Images stay for the next run
# (the build cache makes it minutes); MODELDOCK_DOCKER_TEST_NO_BUILD=1 uses them as they are.
# MODELDOCK_DOCKER_DEB=dist/modeldock_VERSION_amd64.deb (scripts/package.sh's) builds the runtime
# stage from that package (--build-arg DEB_FROM=prebuilt) instead of compiling in the build stage.
# Usage: tests/docker_test.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT="modeldock-test"
TMP="$(mktemp -d /tmp/modeldock-docker-test.XXXXXX)"
START=$SECONDS
phase() { echo "docker_test: [$((SECONDS - START)) s] $*"; }
fail() { echo "docker_test: FAIL: $*"; exit 1; }

docker info >/dev/null 2>&1 || fail "no Docker engine (start dockerd)"
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose);
elif command -v docker-compose >/dev/null; then COMPOSE=(docker-compose);
else fail "neither 'docker compose' nor docker-compose (Debian: apt-get install docker-compose)"; fi
# BuildKit (the ccache cache mount): `docker buildx`, or a client with it built in (Debian 12's
# docker.io 20.10 with DOCKER_BUILDKIT=1).
if docker buildx version >/dev/null 2>&1; then BUILD=(docker buildx build --load);
elif [[ -x /usr/bin/docker ]] && /usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | grep -q '^20\.'; then
  BUILD=(env DOCKER_BUILDKIT=1 /usr/bin/docker build);
else fail "no BuildKit: install docker-buildx"; fi

# From docker/: compose v1 reads the seccomp profile's relative path from the working directory.
compose() {
  (cd "$ROOT/docker" && "${COMPOSE[@]}" -p "$PROJECT" -f compose.yaml "$@")
}
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export MODELDOCK_PG_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
export MODELDOCK_GRPC_PORT_1="$(free_port)" MODELDOCK_HTTP_PORT_1="$(free_port)"
export MODELDOCK_GRPC_PORT_2="$(free_port)" MODELDOCK_HTTP_PORT_2="$(free_port)"
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    compose logs --no-color --tail 30 >"$TMP/compose.log" 2>&1 || true
    echo "docker_test: the last compose logs:"; tail -60 "$TMP/compose.log" || true
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  docker rm -f -v "$PROJECT-default-seccomp" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# 1. Images.
"$ROOT/docker/base_image.sh"
/usr/bin/python3 "$ROOT/docker/seccomp_profile.py" >/dev/null
if [[ "${MODELDOCK_DOCKER_TEST_NO_BUILD:-0}" != 1 ]]; then
  t0=$SECONDS
  if [[ -n "${MODELDOCK_DOCKER_DEB:-}" ]]; then
    # The context: a directory holding only that package.
    [[ -f "$MODELDOCK_DOCKER_DEB" ]] || fail "no package $MODELDOCK_DOCKER_DEB"
    mkdir "$TMP/context" && cp "$MODELDOCK_DOCKER_DEB" "$TMP/context/"
    FROM=(--build-arg DEB_FROM=prebuilt "$TMP/context")
    how="from $(basename "$MODELDOCK_DOCKER_DEB")"
  else
    FROM=("$ROOT"); how="from source (build stage)"
  fi
  "${BUILD[@]}" --network host -f "$ROOT/docker/Dockerfile" -t modeldock:latest "${FROM[@]}" \
    >"$TMP/build.log" 2>&1 || { tail -40 "$TMP/build.log"; fail "docker build (modeldock)"; }
  phase "built modeldock:latest $how in $((SECONDS - t0)) s"
  t0=$SECONDS
  "${BUILD[@]}" --network host -f "$ROOT/docker/postgres.Dockerfile" -t modeldock-postgres:latest "$ROOT/docker" \
    >"$TMP/build-pg.log" 2>&1 || { tail -40 "$TMP/build-pg.log"; fail "docker build (postgres)"; }
  phase "built modeldock-postgres:latest in $((SECONDS - t0)) s"
fi

# 2. The image itself.
SIZE="$(docker image inspect -f '{{.Size}}' modeldock:latest)"
phase "modeldock:latest is $((SIZE / 1000000)) MB"
MAX_MB="${MODELDOCK_IMAGE_MAX_MB:-1200}"  # issue 26: under 1.2 GB
((SIZE < MAX_MB * 1000000)) || fail "the image is $((SIZE / 1000000)) MB, over $MAX_MB MB"
[[ "$(docker run --rm --entrypoint id modeldock:latest -un)" == modeldock ]] || fail "the image does not run as modeldock"
docker run --rm --entrypoint sh modeldock:latest -c '
  dpkg-query -W -f "\${Package}\n" | grep -E -- "-dev\$|^(gcc|g\+\+|cpp|cmake|ninja-build|clang|nodejs|python3)(-[0-9.]+)?\$" && exit 1
  dpkg -L modeldock' >"$TMP/dpkg-L" || fail "the image holds build tools or -dev packages: $(tail -5 "$TMP/dpkg-L")"
for f in /usr/bin/modeldock /usr/bin/modeldock-server /usr/bin/modeldock-worker /usr/share/modeldock/assets/MANIFEST.json \
         /usr/lib/systemd/system/modeldock.service /etc/modeldock/server.json; do
  grep -qx "$f" "$TMP/dpkg-L" || fail "dpkg -L modeldock lacks $f"
done
phase "image: user modeldock, no build tools, dpkg -L lists $(wc -l <"$TMP/dpkg-L") paths"

# 3. PostgreSQL + two replicas.
t0=$SECONDS
compose up -d --no-build >"$TMP/up.log" 2>&1 || fail "compose up: $(tail -10 "$TMP/up.log")"
C1="$(compose ps -q modeldock-1)"; C2="$(compose ps -q modeldock-2)"; PG="$(compose ps -q postgres)"
for _ in $(seq 1 120); do
  s="$(docker inspect -f '{{.State.Health.Status}}' "$PG" "$C1" "$C2" | tr '\n' ' ')"
  [[ "$s" == "healthy healthy healthy " ]] && break
  [[ "$s" == *unhealthy* ]] && fail "unhealthy: $s"
  sleep 5
done
[[ "$s" == "healthy healthy healthy " ]] || fail "not healthy after 10 min: $s"
phase "compose up: postgres and both replicas healthy in $((SECONDS - t0)) s"
for c in "$C1" "$C2"; do
  docker logs "$c" >"$TMP/$c.log" 2>&1
  grep -q "metadata=postgresql://modeldock@postgres:5432/modeldock" "$TMP/$c.log" || fail "$c is not on PostgreSQL"
done
KEY="$(docker exec "$C1" cat /var/lib/modeldock/admin.key)"
[[ -n "$KEY" ]] || fail "no admin key on replica 1"
docker exec "$C2" test ! -e /var/lib/modeldock/admin.key || fail "replica 2 made a second admin key"
cli() { local c="$1"; shift; docker exec -e MODELDOCK_API_KEY="$KEY" "$c" modeldock "$@"; }
DEMO=/usr/share/modeldock/assets/demo
t0=$SECONDS
cli "$C1" register "$DEMO/fmnist-tops-cnn.pt" --metadata "$DEMO/fmnist-tops-cnn.json" >"$TMP/register.out" 2>&1 \
  || fail "register on replica 1: $(tail -3 "$TMP/register.out")"
grep -q READY "$TMP/register.out" || fail "not READY: $(tail -3 "$TMP/register.out")"
phase "registered fmnist-tops-cnn on replica 1 in $((SECONDS - t0)) s"
# Replica 2 follows through the change feed (milliseconds; the catch-up within 10 s at worst).
for _ in $(seq 1 30); do
  cli "$C2" list --state ready 2>/dev/null | grep -q fmnist-tops-cnn && break
  sleep 1
done
cli "$C2" list --state ready | grep -q fmnist-tops-cnn || fail "replica 2 does not list the model"
# The model file is in the shared blob volume, so replica 2 can run it (stage 2).
cli "$C2" --json recommend "$DEMO/query_tops/query-images-idx3-ubyte" \
  --labels "$DEMO/query_tops/query-labels-idx1-ubyte" --top 1 --brute-force >"$TMP/recommend.json" \
  || fail "recommend on replica 2"
/usr/bin/python3 - "$TMP/recommend.json" <<'PY' || fail "unexpected answer on replica 2: $(head -c 600 "$TMP/recommend.json")"
import json, sys
r = json.load(open(sys.argv[1]))
top = r["results"][0]
name = top["model"]["name"] if "model" in top else top.get("name")
# Scored in stage 2: replica 2 ran the model from the shared blob directory.
sys.exit(0 if name == "fmnist-tops-cnn" and top.get("stage2_score") is not None else 1)
PY
phase "recommended on replica 2: fmnist-tops-cnn first (run by replica 2's own workers)"

# 4. The sandbox in the container.
t0=$SECONDS
MODELDOCK_API_KEY="$KEY" "$ROOT/tests/docker_hostile_check.sh" "$C1"
phase "hostile checks on replica 1 in $((SECONDS - t0)) s"
# The same image under Docker's default seccomp profile: no namespaces for the workers.
docker run -d --name "$PROJECT-default-seccomp" --cap-drop ALL --security-opt no-new-privileges:true \
  modeldock:latest --config /etc/modeldock/server.json --listen 127.0.0.1:50051 --workers 1 >/dev/null
for _ in $(seq 1 60); do
  docker logs "$PROJECT-default-seccomp" >"$TMP/default-seccomp.log" 2>&1
  grep -q "confinement:" "$TMP/default-seccomp.log" && break
  sleep 2
done
conf="$(grep -o 'confinement: .*' "$TMP/default-seccomp.log" | head -1 || true)"
[[ "$conf" == *"network namespace unavailable"* && "$conf" == *"filesystem visible"* ]] \
  || fail "under Docker's default profile the workers should lack namespaces: $conf"
docker rm -f -v "$PROJECT-default-seccomp" >/dev/null
phase "under Docker's default seccomp profile: $conf"

# 5. Purge in a throwaway container of the image.
docker run --rm debian:bookworm dpkg-query -W -f '${Package}\n' | sort >"$TMP/base.packages"
docker run --rm -u root --entrypoint sh modeldock:latest -c '
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --autoremove modeldock >/dev/null 2>&1 || exit 1
  for f in /usr/bin/modeldock-server /usr/bin/modeldock-worker /usr/share/modeldock /etc/modeldock; do
    [ ! -e "$f" ] || { echo "left: $f"; exit 1; }
  done
  ! getent passwd modeldock || { echo "user left"; exit 1; }
  dpkg-query -W -f "\${Package}\n" | sort' >"$TMP/purged.packages" || fail "purge: $(tail -3 "$TMP/purged.packages")"
diff "$TMP/base.packages" "$TMP/purged.packages" >"$TMP/purge.diff" \
  || fail "after purge --autoremove the packages differ from debian:bookworm's: $(head -10 "$TMP/purge.diff")"
phase "apt-get purge --autoremove modeldock: the base image's $(wc -l <"$TMP/base.packages") packages, no files, no user"

compose down -v --remove-orphans >/dev/null 2>&1
echo "docker_test: OK ($((SIZE / 1000000)) MB image, $((SECONDS - START)) s)"
