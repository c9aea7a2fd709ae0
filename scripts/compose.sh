#!/usr/bin/env bash
# fedsim under Docker Compose in one command (docs/deploy.md):
#
#   scripts/compose.sh up [ARGS...]   the image, then docker-compose up
#   scripts/compose.sh image          the image only
#   scripts/compose.sh CMD [ARGS...]  any other compose command (down, logs, ps, ...)
#
# on deploy/docker-compose.yml (more files: COMPOSE_FILES="a.yml b.yml",
# relative to the repository root, after it). The image ($FEDSIM_IMAGE,
# default fedsim:latest) is made from
#   - the binaries of build/bin (FEDSIM_BIN_DIR) when all four are there and
#     this host is Debian 12 like the image: nothing is compiled, seconds
#     (after the README's first command);
#   - otherwise the sources, compiled inside the build stage: minutes the
#     first time (FEDSIM_DOCKER_BUILD=source forces this path).
# The base images come from scripts/docker_base_images.sh when the engine
# lacks them (no registry needed). `up` then runs with --no-build, so the
# image just made is the one used (pass --build to compile from source).
set -euo pipefail
cd "$(dirname "$0")/.."
image=${FEDSIM_IMAGE:-fedsim:latest}
bin=${FEDSIM_BIN_DIR:-build/bin}
log() { echo "compose.sh: $*" >&2; }

if docker compose version > /dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose > /dev/null 2>&1; then
  compose=(docker-compose)
else
  log "neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install docker-compose)"
  exit 2
fi
files=(-f deploy/docker-compose.yml)
for f in ${COMPOSE_FILES:-}; do files+=(-f "$f"); done

prebuilt_ok() {
  [ "${FEDSIM_DOCKER_BUILD:-auto}" != source ] || return 1
  grep -qs '^12' /etc/debian_version || return 1
  local b
  for b in fedsim fedsim-server fedsim-client fedsim-health; do
    [ -x "$bin/$b" ] || return 1
  done
}

make_image() {
  scripts/docker_base_images.sh >&2
  local t0 old
  t0=$(date +%s)
  old=$(docker image inspect -f '{{.Id}}' "$image" 2> /dev/null || true)
  if prebuilt_ok; then
    local ctx
    ctx=$(mktemp -d)
    mkdir -p "$ctx/prebuilt" "$ctx/docker"
    cp -r configs "$ctx/configs"
    cp docker/entrypoint.sh "$ctx/docker/entrypoint.sh"
    for b in fedsim fedsim-server fedsim-client fedsim-health; do
      strip -o "$ctx/prebuilt/$b" "$bin/$b"
    done
    docker build -q -f docker/Dockerfile --build-arg FEDSIM_PREBUILT=prebuilt \
      --build-arg FEDSIM_STAGE_LABEL=fedsim-compose -t "$image" "$ctx" > /dev/null ||
      { rm -rf "$ctx"; log "docker build failed"; exit 1; }
    rm -rf "$ctx"
    log "image $image from the binaries of $bin ($(( $(date +%s) - t0 )) s)"
  else
    log "compiling fedsim inside the image (minutes the first time; after scripts/build.sh the binaries of $bin are used instead)"
    docker build -f docker/Dockerfile --build-arg FEDSIM_STAGE_LABEL=fedsim-compose \
      ${FEDSIM_DOCKER_JOBS:+--build-arg JOBS=$FEDSIM_DOCKER_JOBS} -t "$image" . >&2
    log "image $image compiled from source ($(( $(date +%s) - t0 )) s)"
  fi
  # What this script made and no longer needs: the image it replaced and
  # the untagged build-stage images.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
    docker rmi "$old" > /dev/null 2>&1 || true
  fi
  docker image prune -f --filter label=fedsim.build-stage=fedsim-compose > /dev/null || true
}

cmd=${1:-up}
[ $# -gt 0 ] && shift
case $cmd in
  image)
    make_image
    ;;
  up)
    build=0
    for a in "$@"; do [ "$a" = --build ] && build=1; done
    if [ $build = 1 ]; then
      scripts/docker_base_images.sh >&2
      exec "${compose[@]}" "${files[@]}" up "$@"
    fi
    make_image
    FEDSIM_IMAGE=$image exec "${compose[@]}" "${files[@]}" up --no-build "$@"
    ;;
  *)
    exec "${compose[@]}" "${files[@]}" "$cmd" "$@"
    ;;
esac
