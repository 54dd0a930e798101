#!/usr/bin/env bash
# Regenerates the bundled demo song (assets/demo/*.flac) and the click tracks
# (assets/click/*.flac) from examples/make_demo.rs. Deterministic: the same
# bytes on every run with the same `flac` version (Debian 12: flac 1.4.2).
#   apt-get install flac && assets/make-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo run --quiet --release --example make_demo -- "$tmp"
for dir in demo click; do
  mkdir -p "assets/$dir"
  for wav in "$tmp/$dir"/*.wav; do
    name=$(basename "$wav" .wav)
    flac --silent --force --best --no-seektable -o "assets/$dir/$name.flac" "$wav"
  done
done
du -ch assets/demo/*.flac assets/click/*.flac
