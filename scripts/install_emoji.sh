#!/usr/bin/env bash
# Installs the emoji images that the colour probe sets, reference encoders and demo assets are built
# from (scripts/assets/colour_data.py): npm's emoji-datasource-{apple,google,twitter,facebook},
# pinned, into tools/node_modules. Idempotent: nothing is fetched when the pinned version is there.
# Licences of the images (they differ by style): scripts/assets/README.md.
# Usage: scripts/install_emoji.sh [TOOLS_DIR]   (default: tools/ of this checkout)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${1:-$ROOT/tools}"
EMOJI_VERSION=16.0.0

missing=()
for style in apple google twitter facebook; do
  pkg="$TOOLS/node_modules/emoji-datasource-$style"
  if ! grep -q "\"version\": \"$EMOJI_VERSION\"" "$pkg/package.json" 2>/dev/null ||
     [[ ! -d "$pkg/img/$style/64" ]]; then
    missing+=("emoji-datasource-$style@$EMOJI_VERSION")
  fi
done
if ((${#missing[@]})); then
  echo "install_emoji: installing ${missing[*]} from the npm registry into $TOOLS"
  mkdir -p "$TOOLS"
  (cd "$TOOLS" && npm install --silent --no-audit --no-fund "${missing[@]}" >/dev/null)
fi
