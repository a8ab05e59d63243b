#!/usr/bin/env bash
# Issue 26, item 2 without Docker: the Debian package installed by apt into a clean Debian 12 root
# (debootstrap --variant=minbase, chroot). Checks that apt pulls the runtime dependencies and no
# build tools, that the postinst made the `modeldock` user, that the installed server (as that
# user, the package's config file, its assets found without flags) serves a register + recommend
# from the installed CLI, `dpkg -L`, and that `apt-get purge --autoremove` leaves exactly the
# packages of the clean root and no file, user or data directory behind.
# Needs root, debootstrap and the Debian mirror. The minbase root and the downloaded packages are
# cached in $MODELDOCK_CHROOT_CACHE (default ~/.cache/modeldock), so a second run downloads
# nothing. Inside a chroot the workers cannot make a user namespace (the kernel refuses
# unshare(CLONE_NEWUSER) in a chroot), so they run with their seccomp filter and limits only;
# docker_test.sh checks the namespaces in the container.
# scripts/test.sh runs it in the background while ctest runs, when `deb_chroot_test.sh --check`
# (root, debootstrap, the mirror answers) says it can.
# Usage: deb_chroot_test.sh BUILD_DIR|DEB   or   deb_chroot_test.sh --check
set -euo pipefail
ROOT_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARG="${1:?usage: deb_chroot_test.sh BUILD_DIR|path/to/modeldock_VERSION_amd64.deb|--check}"
CACHE="${MODELDOCK_CHROOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldock}"
MIRROR="${MODELDOCK_DEBIAN_MIRROR:-$(sed -n 's#^URIs: *\(http[^ ]*/debian\)/*$#\1#p; s#^deb  *\(http[^ ]*/debian\)/*  *bookworm .*#\1#p' \
  /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1 || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
[[ $(id -u) -eq 0 ]] || { echo "deb_chroot_test: needs root (chroot, mounts)"; exit 1; }
command -v debootstrap >/dev/null || { echo "deb_chroot_test: needs debootstrap (apt-get install debootstrap)"; exit 1; }
# debootstrap depends on wget.
wget -q -T 15 -t 2 -O /dev/null "$MIRROR/dists/bookworm/InRelease" \
  || { echo "deb_chroot_test: the Debian mirror $MIRROR does not answer"; exit 1; }
# Root inside a container may still be refused mounts (no CAP_SYS_ADMIN): try one first, so
# that such a host skips the test instead of failing it halfway.
PROBE_DIR="$(mktemp -d /tmp/modeldock-mount-check.XXXXXX)"
if mount -t tmpfs -o size=1m tmpfs "$PROBE_DIR" 2>/dev/null; then
  umount "$PROBE_DIR"
  rmdir "$PROBE_DIR"
else
  rmdir "$PROBE_DIR"
  echo "deb_chroot_test: this host refuses mounts (a container without CAP_SYS_ADMIN?)"
  exit 1
fi
if [[ "$ARG" == --check ]]; then echo "deb_chroot_test: can run (root, debootstrap, mounts, $MIRROR)"; exit 0; fi
TMP="$(mktemp -d /tmp/modeldock-chroot-test.XXXXXX)"
ROOT="$TMP/root"
SERVER_PID=""
START=$SECONDS
phase() { echo "deb_chroot_test: [$((SECONDS - START)) s] $*"; }

mounted_under_root() { awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r; }
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  # Workers die with the server (PR_SET_PDEATHSIG); unmount before anything is removed, and
  # remove nothing while a mount remains (a bound /dev must never be deleted through).
  for m in $(mounted_under_root); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  if [[ -z "$(mounted_under_root)" ]]; then rm -rf "$TMP"; else echo "deb_chroot_test: left $TMP (still mounted)"; fi
}
trap cleanup EXIT
# scripts/test.sh stops a run with SIGTERM when ctest fails: exit through the cleanup above.
trap 'exit 143' TERM INT
fail() {
  echo "deb_chroot_test: FAIL: $*"
  [[ -f "$TMP/server.log" ]] && tail -20 "$TMP/server.log"
  exit 1
}
in_root() { chroot "$ROOT" "$@"; }

# The package: given, or made from the build by scripts/package.sh.
if [[ -f "$ARG" ]]; then
  DEB="$ARG"
else
  "$ROOT_SRC/scripts/package.sh" "$ARG" "$TMP/dist" >"$TMP/package.log" 2>&1 || fail "package.sh: $(tail -5 "$TMP/package.log")"
  DEB="$(ls "$TMP"/dist/modeldock_*_amd64.deb)"
fi
VERSION="$(dpkg-deb -f "$DEB" Version)"
phase "package $(basename "$DEB")"

# A clean minbase root (cached as a tarball), with bookworm-updates and -security as on a host.
mkdir -p "$CACHE/apt-archives/partial" "$ROOT"
BASE_TAR="$CACHE/bookworm-minbase.tar"
if [[ ! -f "$BASE_TAR" ]]; then
  debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 \
    || fail "debootstrap: $(tail -5 "$TMP/debootstrap.log")"
  rm -f "$ROOT"/var/cache/apt/archives/*.deb
  tar -C "$ROOT" -cf "$BASE_TAR.part" . && mv "$BASE_TAR.part" "$BASE_TAR"
  phase "debootstrap --variant=minbase bookworm (cached in $BASE_TAR)"
else
  tar -C "$ROOT" -xf "$BASE_TAR"
  phase "clean root unpacked from $BASE_TAR"
fi
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"
in_root dpkg-query -W -f '${Package}\n' | sort >"$TMP/packages.before"

# apt installs it with its dependencies (Recommends left out, as the image does).
cp "$DEB" "$ROOT/tmp/"
in_root apt-get update -qq >"$TMP/apt.log" 2>&1 || fail "apt-get update: $(tail -5 "$TMP/apt.log")"
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -qq --no-install-recommends \
  "/tmp/$(basename "$DEB")" >>"$TMP/apt.log" 2>&1 || fail "apt-get install: $(tail -10 "$TMP/apt.log")"
in_root dpkg-query -W -f '${Package}\n' | sort >"$TMP/packages.installed"
ADDED="$(comm -13 "$TMP/packages.before" "$TMP/packages.installed" | wc -l)"
phase "apt-get install ./$(basename "$DEB"): $ADDED packages added, /usr now $(du -sh "$ROOT/usr" | cut -f1)"
if comm -13 "$TMP/packages.before" "$TMP/packages.installed" | grep -E -- '-dev$|^(gcc|g\+\+|cpp|cmake|ninja-build|clang)(-[0-9]+)?$'; then
  fail "apt pulled build tools or headers (above)"
fi
[[ "$(in_root dpkg-query -W -f '${Status} ${Version}' modeldock)" == "install ok installed $VERSION" ]] \
  || fail "modeldock is not installed: $(in_root dpkg-query -W -f '${Status}' modeldock)"
in_root getent passwd modeldock >/dev/null || fail "the postinst did not create the modeldock user"
in_root dpkg -L modeldock >"$TMP/dpkg-L"
for f in /usr/bin/modeldock /usr/bin/modeldock-server /usr/bin/modeldock-worker \
         /usr/share/modeldock/assets/MANIFEST.json /usr/lib/systemd/system/modeldock.service \
         /etc/modeldock/server.json /etc/modeldock/modeldock.env /usr/share/doc/modeldock/README.md; do
  grep -qx "$f" "$TMP/dpkg-L" || fail "dpkg -L modeldock lacks $f"
done
for b in modeldock modeldock-server modeldock-worker; do
  [[ "$(in_root "/usr/bin/$b" --version)" == "$b $VERSION" ]] || fail "$b --version: $(in_root "/usr/bin/$b" --version 2>&1 | tail -1)"
done

# The installed server as the service would run it: the modeldock user, the package's config
# file, its state directory (systemd's StateDirectory= makes it; here we do), assets by default.
in_root install -d -o modeldock -g modeldock -m 0750 /var/lib/modeldock
USER_ID="$(in_root id -u modeldock):$(in_root id -g modeldock)"
chroot --userspec="$USER_ID" "$ROOT" env HOME=/var/lib/modeldock OMP_WAIT_POLICY=PASSIVE \
  /usr/bin/modeldock-server --config /etc/modeldock/server.json \
  --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --workers 1 \
  >"$TMP/server.out" 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 1 1200); do
  grep -q "listening on" "$TMP/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "the installed server did not start"
  sleep 0.1
done
grep -q "listening on" "$TMP/server.out" || fail "the installed server did not listen within 120 s"
grep -q "asset_dir=/usr/share/modeldock/assets " "$TMP/server.log" || fail "the server did not default to the packaged assets"
grep -q "data_dir=/var/lib/modeldock " "$TMP/server.log" || fail "the server did not take the data directory from /etc/modeldock/server.json"
ADDR="$(sed -n 's/.*listening on //p' "$TMP/server.out" | head -1)"
phase "installed server up on $ADDR ($(grep -o 'confinement: .*' "$TMP/server.log" | head -1))"
CLI=(chroot "$ROOT" /usr/bin/modeldock --server "$ADDR")
DEMO=/usr/share/modeldock/assets/demo
"${CLI[@]}" register "$DEMO/fmnist-tops-cnn.pt" --metadata "$DEMO/fmnist-tops-cnn.json" >"$TMP/register.out" 2>&1 \
  || fail "register: $(tail -3 "$TMP/register.out")"
grep -q READY "$TMP/register.out" || fail "not READY: $(tail -3 "$TMP/register.out")"
"${CLI[@]}" --json recommend "$DEMO/query_tops/query-images-idx3-ubyte" \
  --labels "$DEMO/query_tops/query-labels-idx1-ubyte" --top 1 >"$TMP/recommend.json" || fail "recommend"
/usr/bin/python3 -c "
import json, sys
r = json.load(open('$TMP/recommend.json'))
names = [x['model']['name'] if 'model' in x else x.get('name') for x in r['results']]
sys.exit(0 if names == ['fmnist-tops-cnn'] else 1)" || fail "unexpected answer: $(head -c 400 "$TMP/recommend.json")"
[[ -n "$(find "$ROOT/var/lib/modeldock" -name modeldock.db -user "${USER_ID%%:*}")" ]] \
  || fail "no SQLite store owned by modeldock in /var/lib/modeldock"
phase "register + recommend with the installed CLI"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

# Purge: the package, its configuration, its user and its data go; autoremove takes the
# dependencies, so the root holds the clean root's packages again.
DEBIAN_FRONTEND=noninteractive in_root apt-get purge -y -qq --autoremove modeldock >>"$TMP/apt.log" 2>&1 \
  || fail "apt-get purge: $(tail -5 "$TMP/apt.log")"
in_root dpkg-query -W -f '${Package}\n' | sort >"$TMP/packages.after"
diff "$TMP/packages.before" "$TMP/packages.after" >"$TMP/packages.diff" \
  || fail "purge --autoremove left the root different from the clean one: $(head -20 "$TMP/packages.diff")"
for f in /usr/bin/modeldock /usr/bin/modeldock-server /usr/share/modeldock /etc/modeldock /var/lib/modeldock \
         /usr/lib/systemd/system/modeldock.service; do
  [[ ! -e "$ROOT$f" ]] || fail "left after purge: $f"
done
! in_root getent passwd modeldock >/dev/null || fail "the modeldock user is left after purge"
phase "apt-get purge --autoremove modeldock: the clean root's $(wc -l <"$TMP/packages.after") packages, no user, no files"
echo "deb_chroot_test: OK ($(basename "$DEB"), $ADDED packages, $((SECONDS - START)) s)"
