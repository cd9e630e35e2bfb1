#!/usr/bin/env bash
# Makes sure every third-party image the compose file names is present. An image that
# is neither present nor pullable (this CI machine reaches no registry) is stood in for
# by one built locally under the same name from Debian's package of the same program,
# with the same entrypoint as the upstream image:
#   nats:2.9.10              <- /usr/sbin/nats-server (Debian nats-server 2.9.10)
#   prom/prometheus:v2.42.0  <- /usr/bin/prometheus   (Debian prometheus 2.42.0)
# grafana/grafana has no Debian package and no local material: it is reported, and the
# end-to-end test runs every other service.
set -euo pipefail

build_scratch() { # name binary path-in-image
    local name=$1 bin=$2 dest=$3 ctx
    ctx=$(mktemp -d)
    mkdir -p "$ctx/root$(dirname "$dest")" "$ctx/root/tmp" "$ctx/root/etc"
    cp -L "$bin" "$ctx/root$dest"
    ldd "$bin" | awk '/=>/ {print $3} /^\t\// {print $1}' | while read -r lib; do
        [[ -f "$lib" ]] || continue
        mkdir -p "$ctx/root$(dirname "$lib")"
        cp -L "$lib" "$ctx/root$lib"
    done
    echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >"$ctx/root/etc/passwd"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY root/ /
LABEL org.herald.stand-in="built locally from Debian's package: $bin"
ENTRYPOINT ["$dest"]
DOCKERFILE
    docker build -q -t "$name" "$ctx" >/dev/null 2>"$ctx/err" || { cat "$ctx/err" >&2; return 1; }
    rm -rf "$ctx"
    echo "    $name: stand-in built from $bin"
}

need() { # name binary path-in-image
    local name=$1
    if docker image inspect "$name" >/dev/null 2>&1; then
        echo "    $name: present"
    elif timeout 60 docker pull -q "$name" >/dev/null 2>&1; then
        echo "    $name: pulled"
    elif [[ -n "${2:-}" ]]; then
        [[ -x "$2" ]] || { echo "error: $name cannot be pulled and $2 is missing" >&2; return 1; }
        build_scratch "$@"
    else
        echo "    $name: NOT AVAILABLE (cannot be pulled, no local material)"
        return 2
    fi
}

echo "==> third-party images"
need nats:2.9.10 "$(command -v nats-server || echo /usr/sbin/nats-server)" /nats-server
need prom/prometheus:v2.42.0 "$(command -v prometheus || echo /usr/bin/prometheus)" /bin/prometheus
need grafana/grafana:10.4.2 || true
