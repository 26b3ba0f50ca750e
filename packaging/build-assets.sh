#!/bin/sh
# Generates the files of the Debian package that the tjfwd binary writes
# itself: the man page (`tjfwd man`) and the shell completions (`tjfwd
# completions SHELL`). Usage: packaging/build-assets.sh TJFWD_BINARY OUTDIR
# (packaging/build-deb.sh calls it with target/release/tjfwd and
# target/packaging, the paths [package.metadata.deb] assets name).
set -eu

bin="$1"
out="$2"
mkdir -p "$out/completions"
"$bin" man | gzip -9n > "$out/tjfwd.1.gz"
"$bin" completions bash > "$out/completions/tjfwd.bash"
"$bin" completions zsh > "$out/completions/_tjfwd"
"$bin" completions fish > "$out/completions/tjfwd.fish"
for f in "$out/tjfwd.1.gz" "$out/completions/tjfwd.bash" "$out/completions/_tjfwd" \
    "$out/completions/tjfwd.fish"; do
    [ -s "$f" ] || { echo "build-assets.sh: $f is empty" >&2; exit 1; }
done
