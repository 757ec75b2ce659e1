#!/usr/bin/env bash
# `make compose-check`: runs docker-compose.yml as containers on this machine and checks it
# (tests/test_compose_stack.py), from a clean machine. What it sets up when missing, in order:
#   - Debian's docker.io and debootstrap (apt-get, as root);
#   - a Docker engine: `dockerd --iptables=false` in the background, logging to .stack/dockerd.log
#     (containers talk on their bridge network; the host's firewall is left alone);
#   - Docker Compose v2, built from its Go module into ~/.docker/cli-plugins (a few minutes, once);
#   - the images: official ones already on the machine are used as they are; those that are not,
#     and cannot be pulled here, are built from one Debian bookworm base made with debootstrap
#     (see docs/docker-compose.md for exactly which and how); then our image from the Dockerfile.
# Every build step reaches only the package registries, through the host's network.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/.stack/compose
COMPOSE_VERSION=v2.40.3
BASE_IMAGE=restaurant-sales-base:bookworm
APP_IMAGE=restaurant-sales-pipeline:local
STAND_IN_LABEL=org.restaurant-sales.stand-in
export DOCKER_BUILDKIT=0  # the engine's own builder: Debian's docker.io comes without buildx
mkdir -p "$WORK"

say() { printf 'compose-check: %s\n' "$*"; }

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]} with apt-get"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

start_engine() {
    docker info >/dev/null 2>&1 && return
    say "no Docker engine answers: starting dockerd --iptables=false (log: .stack/dockerd.log)"
    setsid nohup dockerd --iptables=false >"$ROOT/.stack/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    say "dockerd did not answer within 60 s; the end of its log:"
    tail -20 "$ROOT/.stack/dockerd.log"
    exit 1
}

install_compose() {
    docker compose version >/dev/null 2>&1 && return
    say "building Docker Compose $COMPOSE_VERSION from its Go module (a few minutes, once)"
    local source
    source=$(cd "$WORK" && go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
             | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$HOME/.docker/cli-plugins"
    (cd "$source" && nice -n 10 go build -o "$HOME/.docker/cli-plugins/docker-compose" \
        -ldflags "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd)
    docker compose version
}

build_base() {
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
    say "making $BASE_IMAGE with debootstrap --variant=minbase bookworm"
    local rootfs=$WORK/rootfs
    rm -rf "$rootfs"
    nice -n 10 debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    printf 'deb http://deb.debian.org/debian %s main\n' bookworm bookworm-updates >"$rootfs/etc/apt/sources.list"
    echo "deb http://deb.debian.org/debian-security bookworm-security main" >>"$rootfs/etc/apt/sources.list"
    # The certificate authorities this machine adds to Debian's (a TLS-inspecting proxy on the
    # way to the package registries, say): images built on the base trust them too.
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

build() {  # build TAG CONTEXT [docker build options...]
    local tag=$1 context=$2
    shift 2
    say "building $tag"
    nice -n 10 docker build --quiet --network host --tag "$tag" "$@" "$context" >/dev/null
}

is_official() {  # an image of that name is on the machine and is not one of our stand-ins
    [ "$(docker image inspect --format "{{index .Config.Labels \"$STAND_IN_LABEL\"}}" "$1" 2>/dev/null || echo absent)" = "" ]
}

# Kafka and PostgreSQL are used by name in docker-compose.yml: their stand-ins take that name.
stand_in_same_tag() {  # stand_in_same_tag IMAGE CONTEXT
    if is_official "$1"; then
        say "using $1 as found on this machine"
    else
        build "$1" "$2" --label "$STAND_IN_LABEL=true"
    fi
}

# Python and Node.js are our Dockerfile's bases: their stand-ins go in by build argument.
BUILD_ARGUMENTS=()
base_argument() {  # base_argument ARG OFFICIAL STAND_IN CONTEXT
    if is_official "$2"; then
        say "using $2 as found on this machine"
    else
        build "$3" "$4"
        BUILD_ARGUMENTS+=(--build-arg "$1=$3")
    fi
}

kafka_context() {  # the Kafka stand-in's folder with the jars its pom names, in libs/
    local context=$WORK/kafka
    rm -rf "$context"
    cp -r compose/stand-ins/kafka "$context"
    mvn --quiet --batch-mode -f "$context/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$context/libs" -DincludeScope=runtime >"$WORK/kafka-jars.log"
    echo "$context"
}

build_images() {
    local started=$SECONDS context
    context=$(kafka_context)
    stand_in_same_tag apache/kafka:4.1.1 "$context"
    stand_in_same_tag postgres:17.7-bookworm compose/stand-ins/postgres
    base_argument PYTHON_IMAGE python:3.11.14-slim-bookworm \
        restaurant-sales-stand-in/python:3.11-bookworm compose/stand-ins/python
    base_argument NODE_IMAGE node:20.20.2-bookworm-slim \
        restaurant-sales-stand-in/node:18-bookworm compose/stand-ins/node
    build "$APP_IMAGE" . "${BUILD_ARGUMENTS[@]}"
    say "images ready in $((SECONDS - started)) s"
}

main() {
    local started=$SECONDS compose_build
    install_packages
    start_engine
    # Compose is needed only by the tests: it builds (once) while the images do.
    install_compose >"$WORK/compose-build.log" 2>&1 &
    compose_build=$!
    build_base
    build_images
    wait "$compose_build" || { say "building Docker Compose failed:"; tail -20 "$WORK/compose-build.log"; exit 1; }
    say "engine, Compose and images ready in $((SECONDS - started)) s"
    say "running the compose checks (tests/test_compose_stack.py)"
    "$ROOT/.venv/bin/python" -m pytest -m compose -p no:cacheprovider tests/test_compose_stack.py "$@"
    say "done in $((SECONDS - started)) s"
}

main "$@"
