# Sourced by the scripts: build artefacts live outside the clone, under $HOME/.cache, so that
# repeated runs (and CI on fresh clones at the same path) reuse them. One directory per checkout
# path: two clones sharing one target directory would see each other's stale artefacts, because
# cargo's fingerprints record absolute source paths.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="$HOME/.cache/weft-target/$(pwd -P | sha256sum | cut -c1-12)"
fi
export CARGO_TARGET_DIR
