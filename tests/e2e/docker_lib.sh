# Shared by the Docker end-to-end tests (compose_test.sh,
# compose_auth_test.sh, swarm_test.sh);
# sourced, not run. Defines:
#   skip MESSAGE             prints "SKIP: MESSAGE" and exits 0
#   require_docker           skips if docker is not installed; fails if the
#                            engine or a compose tool does not work;
#                            sets COMPOSE (array): docker compose | docker-compose
#   build_images SRC BIN     base images (scripts/docker_base_images.sh) and
#                            $FEDSIM_IMAGE, timed
#   wait_for SECONDS CMD...  polls CMD until it succeeds; 1 on timeout
#   csv_rows FILE            data rows of a CSV file (0 if missing)
#   column FILE NAME         one column of a CSV file, by header name
#   fail MESSAGE             prints "FAIL: MESSAGE" and exits 1
#   compose_trap             on exit: the containers' last log lines if the
#                            test failed, `dc down`, rm -rf $work (REQUIRES
#                            the caller's dc function and $work)
#   compose_env SRC          uid/gid of the containers (the host user where
#                            that is not root, else 1000, the image's user),
#                            exported with FEDSIM_IMAGE, FEDSIM_DATA and
#                            FEDSIM_RUNS=$work/runs (created, owned by uid)
#   process_uid CONTAINER NAME  the uid a process of the container runs as

skip() {
  echo "SKIP: $*"
  exit 0
}

fail() {
  echo "FAIL: $*"
  exit 1
}

compose_cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$(dc ps -q 2> /dev/null)" ]; then
    echo "--- container logs"
    dc logs --no-color --tail 30 2>&1 || true
  fi
  dc down --volumes --remove-orphans --timeout 5 > /dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
compose_trap() { trap compose_cleanup EXIT; }

compose_env() {
  local src=$1
  uid=$(id -u)
  gid=$(id -g)
  if [ "$uid" -eq 0 ]; then uid=1000; gid=1000; fi
  export FEDSIM_IMAGE=fedsim-test:latest FEDSIM_UID=$uid FEDSIM_GID=$gid
  export FEDSIM_DATA=$src/third_party/data FEDSIM_RUNS=$work/runs
  mkdir -p "$work/runs"
  chown "$uid:$gid" "$work/runs"
  chmod 755 "$work"
}

require_docker() {
  command -v docker > /dev/null || skip "docker is not installed"
  # Installed but not usable is a failure, not a skip: CI has an engine.
  if ! docker info > /dev/null 2> /tmp/fedsim-docker-info.$$; then
    echo "FAIL: docker is installed but the engine is not reachable: $(grep -v '^$' /tmp/fedsim-docker-info.$$ | tail -1)"
    rm -f /tmp/fedsim-docker-info.$$
    exit 1
  fi
  rm -f /tmp/fedsim-docker-info.$$
  if docker compose version > /dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose > /dev/null && docker-compose version > /dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    echo "FAIL: docker is installed but neither 'docker compose' nor 'docker-compose' works"
    exit 1
  fi
}

# build_images SRC BIN: the base images, then $FEDSIM_IMAGE from
# docker/Dockerfile. By default the image takes the binaries of BIN (this
# host's build, Debian 12 like the image) through the Dockerfile's
# FEDSIM_PREBUILT path: the runtime stage is built as always, but nothing
# is compiled twice. FEDSIM_DOCKER_BUILD=source builds through
# `compose build` from source instead (minutes when cold). Uses $work.
build_images() {
  local src=$1 bin=$2 t0 args=() b
  t0=$(date +%s)
  "$src/scripts/docker_base_images.sh" || return 1
  echo "base images: $(( $(date +%s) - t0 )) s"
  t0=$(date +%s)
  if [ "${FEDSIM_DOCKER_BUILD:-prebuilt}" = source ]; then
    [ -n "${FEDSIM_DOCKER_JOBS:-}" ] && args+=(--build-arg "JOBS=$FEDSIM_DOCKER_JOBS")
    "${COMPOSE[@]}" -f "$src/deploy/docker-compose.yml" build "${args[@]}" coordinator \
      > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; return 1; }
    echo "fedsim image (compiled from source): $(( $(date +%s) - t0 )) s"
  else
    # The users' path (scripts/compose.sh image): the image from BIN's
    # binaries; it removes the image it replaced and its build stages.
    FEDSIM_BIN_DIR=$bin "$src/scripts/compose.sh" image > "$work/build.log" 2>&1 ||
      { tail -40 "$work/build.log"; return 1; }
    echo "fedsim image (binaries of $bin): $(( $(date +%s) - t0 )) s"
  fi
}

process_uid() {
  docker top "$1" -eo pid,uid,comm | awk -v name="$2" '$3 == name { print $2; exit }'
}

wait_for() {
  local limit=$1 t0
  shift
  t0=$(date +%s)
  until "$@"; do
    [ $(( $(date +%s) - t0 )) -ge "$limit" ] && return 1
    sleep 0.5
  done
}

csv_rows() {
  if [ -f "$1" ]; then echo $(( $(wc -l < "$1") - 1 )); else echo 0; fi
}

column() {
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
                        c { print $c }' "$1"
}
