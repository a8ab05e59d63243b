#!/usr/bin/env bash
# Makes the debian:bookworm image that docker/Dockerfile and docker/postgres.Dockerfile start
# from, where no image registry is reachable: a minimal Debian 12 root (debootstrap --variant=
# minbase) from the Debian mirror that apt on this machine uses, with the usual bookworm,
# bookworm-updates and bookworm-security sources and the docker-clean apt settings, imported
# with `docker import`. Does nothing when the image exists (unless --force). Needs root and
# debootstrap. Usage: docker/base_image.sh [--force] [MIRROR]   (TAG: $MODELDOCK_BASE_TAG, default
# debian:bookworm)
set -euo pipefail
TAG="${MODELDOCK_BASE_TAG:-debian:bookworm}"
force=0
if [[ "${1:-}" == --force ]]; then force=1; shift; fi
if [[ $force == 0 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base_image: $TAG exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "base_image: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
# The mirror of this machine's own apt sources (deb822 or one-line form).
MIRROR="${1:-$(sed -n 's#^URIs: *\(http[^ ]*/debian\)/*$#\1#p; s#^deb  *\(http[^ ]*/debian\)/*  *bookworm .*#\1#p' \
  /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1 || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY="${MIRROR%/debian}/debian-security"
ROOT="$(mktemp -d /tmp/modeldock-base.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
echo "base_image: debootstrap --variant=minbase bookworm from $MIRROR"
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 \
  || { tail -20 "$ROOT.log" >&2; exit 1; }
rm -f "$ROOT.log" "$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
# As Debian's official images do: no package caches or translations kept in image layers.
cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CLEAN
echo 'Acquire::Languages "none";' >"$ROOT/etc/apt/apt.conf.d/docker-no-languages"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
tar -C "$ROOT" -c . | docker import -c 'CMD ["bash"]' - "$TAG" >/dev/null
echo "base_image: imported $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
