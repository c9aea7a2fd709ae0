#!/usr/bin/env bash
# deploy/docker-compose.yml on Docker Swarm: `docker stack deploy` of the
# same file on a single-node swarm runs compose_quickstart.yaml with three
# worker replicas to the end, and every model_hash and model.bin equal the
# embedded run's. The swarm is made for the test (docker swarm init) and
# left afterwards; an engine that is already part of a swarm is used as it
# is and left in it.
# Skips (exit 0, "SKIP: ...") only when docker is not installed, or when the
# engine refuses `docker swarm init`.
# usage: swarm_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1
src=$(cd "$2" && pwd)
# shellcheck source=tests/e2e/docker_lib.sh
. "$src/tests/e2e/docker_lib.sh"
require_docker

work=$(mktemp -d /tmp/fedsim-swarm.XXXXXX)
stack=fedsimtest$$
made_swarm=0
had_gwbridge=0
docker network inspect docker_gwbridge > /dev/null 2>&1 && had_gwbridge=1
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    docker stack ps --no-trunc "$stack" 2> /dev/null | head -20 || true
    docker service logs --tail 20 "${stack}_coordinator" 2>&1 || true
    docker service logs --tail 20 "${stack}_client" 2>&1 || true
  fi
  docker stack rm "$stack" > /dev/null 2>&1 || true
  # The workers' row cache volume goes once its containers are gone.
  wait_for 60 docker volume rm "${stack}_rows" > /dev/null 2>&1 || true
  if [ "$made_swarm" = 1 ]; then
    # The stack's network goes once its tasks are gone.
    wait_for 60 sh -c "! docker network inspect ${stack}_default > /dev/null 2>&1" || true
    docker swarm leave --force > /dev/null 2>&1 || true
    [ "$had_gwbridge" = 1 ] || docker network rm docker_gwbridge > /dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

compose_env "$src"
export FEDSIM_CONFIGS=$work/configs FEDSIM_RUN_NAME=swarm FEDSIM_WORKERS=3
mkdir -p "$work/configs"
cp "$src/configs/compose_quickstart.yaml" "$work/configs/"

build_images "$src" "$bin" || fail "image build"
(cd "$src" && "$bin/fedsim" run configs/compose_quickstart.yaml --out "$work/embedded" --quiet > /dev/null)

if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
  docker swarm init --advertise-addr 127.0.0.1 > "$work/swarm.log" 2>&1 ||
    skip "the engine refuses 'docker swarm init': $(tail -1 "$work/swarm.log")"
  made_swarm=1
fi
docker stack deploy -c "$src/deploy/docker-compose.yml" "$stack" > "$work/deploy.log" 2>&1 ||
  { cat "$work/deploy.log"; fail "docker stack deploy"; }

task_state() { docker service ps -q --filter desired-state=shutdown "${stack}_coordinator" |
  head -1 | xargs -r docker inspect -f '{{.Status.State}}'; }
done_() { [ -n "$(task_state)" ] && [ "$(task_state)" != running ]; }
wait_for 600 done_ || fail "the coordinator task did not finish within 600 s"
[ "$(task_state)" = complete ] || fail "coordinator task state $(task_state)"
run=$work/runs/swarm
rows=$(csv_rows "$run/metrics.csv")
[ "$rows" = 20 ] || fail "$rows metrics rows, expected 20"
diff <(column "$run/metrics.csv" model_hash) <(column "$work/embedded/metrics.csv" model_hash) > /dev/null ||
  fail "model_hash columns differ from the embedded run"
cmp -s "$run/model.bin" "$work/embedded/model.bin" || fail "model.bin differs from the embedded run"
joined=$(grep -c '"event":"worker_joined"' "$run/events.jsonl" || true)
[ "$joined" -ge 3 ] || fail "$joined workers joined, expected 3"
echo "swarm stack: 20 rows, model_hash $(column "$run/metrics.csv" model_hash | tail -1) = embedded"
echo "PASS"
