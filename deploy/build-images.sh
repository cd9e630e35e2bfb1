#!/usr/bin/env bash
# Builds herald-node:TAG and herald-router:TAG (default TAG=latest) from this checkout:
# release binaries on the host, then deploy/Dockerfile over a context holding them and
# the shared libraries they need. Needs cargo and a Docker engine; pulls nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TAG="${1:-latest}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
CTX="$TARGET_DIR/docker-context"

echo "==> cargo build --release (herald-node, herald-router)"
cargo build --release -q -p herald-node -p herald-router

rm -rf "$CTX"
mkdir -p "$CTX/rootfs/etc" "$CTX/rootfs/tmp"
chmod 1777 "$CTX/rootfs/tmp"
for bin in herald-node herald-router; do
    install -m 0755 "$TARGET_DIR/release/$bin" "$CTX/$bin"
    # Release builds keep line tables for profiling; the image does not need them.
    strip --strip-debug "$CTX/$bin"
    # Every shared library the binary loads, at the same path, and the loader.
    ldd "$TARGET_DIR/release/$bin" | awk '/=>/ {print $3} /^\t\// {print $1}' | while read -r lib; do
        [[ -f "$lib" ]] || continue
        mkdir -p "$CTX/rootfs$(dirname "$lib")"
        cp -L "$lib" "$CTX/rootfs$lib"
    done
done
echo 'herald:x:10001:10001:herald:/nonexistent:/usr/sbin/nologin' >"$CTX/rootfs/etc/passwd"
echo 'herald:x:10001:' >"$CTX/rootfs/etc/group"

for target in node router; do
    echo "==> docker build herald-$target:$TAG"
    # (The legacy builder's deprecation notice is noise here; real errors still fail.)
    if ! out=$(docker build -q -f deploy/Dockerfile --target "$target" -t "herald-$target:$TAG" "$CTX" 2>&1); then
        echo "$out" >&2
        exit 1
    fi
    docker image ls "herald-$target:$TAG" --format '    {{.Repository}}:{{.Tag}}  {{.Size}}'
done
