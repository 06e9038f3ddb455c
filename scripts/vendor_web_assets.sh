#!/usr/bin/env bash
# Re-fetches the web console's vendored front-end packages from npm at exactly the pinned
# versions and writes their built files under web/static/vendor/PACKAGE@VERSION/ with their
# LICENSE, then the checksum manifest (web/static/vendor/MANIFEST.sha256) that
# tests/web/test_replay_units.py checks the committed files against.
#
# The files are committed: nothing is fetched at run time or by setup.sh. Run this only to
# move a pin (edit PACKAGES), then review the diff and commit it.
#
# Why xterm.js and not asciinema-player: asciinema-player 3.x runs its terminal emulator as
# WebAssembly, which Chromium refuses under the console's `script-src 'self'` (it would need
# 'wasm-unsafe-eval'); xterm.js is plain JavaScript (see web/static/js/term.js for its styles).
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=web/static/vendor

# package@version  file-in-package...  (copied flat into VENDOR/package@version/)
PACKAGES=(
  "@xterm/xterm@6.0.0 lib/xterm.js css/xterm.css LICENSE"
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for entry in "${PACKAGES[@]}"; do
  read -r spec files <<<"$entry"
  dest="$VENDOR/$spec"
  rm -rf "$dest"
  mkdir -p "$dest" "$work/$spec"
  tarball=$(cd "$work/$spec" && npm pack --silent "$spec")
  tar xzf "$work/$spec/$tarball" -C "$work/$spec"
  for f in $files; do
    cp "$work/$spec/package/$f" "$dest/$(basename "$f")"
  done
done
(cd "$VENDOR" && find . -type f ! -name MANIFEST.sha256 | LC_ALL=C sort | xargs sha256sum) > "$VENDOR/MANIFEST.sha256"
echo "vendored: $(wc -l < "$VENDOR/MANIFEST.sha256") files; manifest $VENDOR/MANIFEST.sha256"
