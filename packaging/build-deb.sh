#!/bin/sh
# Builds the Debian package: the release binary, the files it generates
# (man page, completions), then `cargo deb`. Needs cargo-deb (`cargo install
# cargo-deb`) and dpkg-dev (dpkg-shlibdeps, for the dependencies). Extra
# arguments go to cargo deb (e.g. --deb-revision 2). Prints the .deb's path.
set -eu
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked --bin tjfwd >&2
packaging/build-assets.sh "$target/release/tjfwd" target/packaging
cargo deb --no-build --locked "$@"
