# Shared by the Docker end-to-end tests (compose_test.sh, swarm_test.sh);
# sourced, not run. Defines:
#   skip MESSAGE             prints "SKIP: MESSAGE" and exits 0
#   require_docker           skips unless the engine and a compose tool work;
#                            sets COMPOSE (array): docker compose | docker-compose
#   build_images SRC         base images (scripts/docker_base_images.sh) and
#                            fedsim:latest through compose, timed
#   wait_for SECONDS CMD...  polls CMD until it succeeds; 1 on timeout
#   csv_rows FILE            data rows of a CSV file (0 if missing)
#   column FILE NAME         one column of a CSV file, by header name

skip() {
  echo "SKIP: $*"
  exit 0
}

require_docker() {
  command -v docker > /dev/null || skip "docker is not installed"
  docker info > /dev/null 2>&1 || skip "the Docker engine is not reachable (docker info)"
  if docker compose version > /dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose > /dev/null && docker-compose version > /dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    skip "neither 'docker compose' nor 'docker-compose' works"
  fi
}

# The image build compiles fedsim inside the container: minutes when cold,
# seconds when only tests or deploy files changed (.dockerignore).
build_images() {
  local src=$1 t0 args=()
  t0=$(date +%s)
  "$src/scripts/docker_base_images.sh" || return 1
  echo "base images: $(( $(date +%s) - t0 )) s"
  t0=$(date +%s)
  [ -n "${FEDSIM_DOCKER_JOBS:-}" ] && args+=(--build-arg "JOBS=$FEDSIM_DOCKER_JOBS")
  "${COMPOSE[@]}" -f "$src/deploy/docker-compose.yml" build "${args[@]}" coordinator \
    > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; return 1; }
  echo "fedsim image: $(( $(date +%s) - t0 )) s"
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
