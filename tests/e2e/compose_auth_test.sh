#!/usr/bin/env bash
# deploy/docker-compose.yml with its authentication overrides, for real, on
# the local Docker engine (docs/security.md, "Compose"; docs/deploy.md):
#   token  docker-compose.yml + docker-compose.token.yml: a shared secret
#          made with `openssl rand`; a worker without the token and one
#          with a wrong token are refused (UNAUTHENTICATED in their logs,
#          auth_rejected events), then three workers run the experiment to
#          the end with the embedded run's model_hash column and model.bin;
#   mtls   docker-compose.yml + docker-compose.mtls.yml: CA, coordinator and
#          worker certificates made with the openssl CLI as docs/security.md
#          shows; the coordinator's health check (mTLS, its own certificate)
#          turns healthy; a worker whose certificate comes from another CA
#          is refused (the coordinator closes the connection in the TLS
#          handshake: the worker never joins and exits 1 naming the client
#          certificate); then the run ends equal to the embedded run.
# The secrets live in a temporary folder (FEDSIM_SECRETS), never in deploy/.
# Shares the image with compose_test.sh (docker_lib.sh). Skips (exit 0,
# "SKIP: ...") only when docker is not installed.
# usage: compose_auth_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1
src=$(cd "$2" && pwd)
# shellcheck source=tests/e2e/docker_lib.sh
. "$src/tests/e2e/docker_lib.sh"
require_docker
command -v openssl > /dev/null || { echo "FAIL: openssl missing"; exit 1; }

work=$(mktemp -d /tmp/fedsim-compose-auth.XXXXXX)
project=fedsimauth$$
overrides=()
dc() {
  local files=(-f "$src/deploy/docker-compose.yml") o
  for o in "${overrides[@]}"; do files+=(-f "$src/deploy/$o"); done
  "${COMPOSE[@]}" -p "$project" "${files[@]}" "$@"
}
compose_trap
t_start=$(date +%s)

compose_env "$src"
export FEDSIM_CONFIGS=$work/configs FEDSIM_SECRETS=$work/secrets
export FEDSIM_WORKERS=3 FEDSIM_CONFIG_FILE=auth.yaml
mkdir -p "$work/configs" "$work/secrets" "$work/rogue"
# The compose quickstart, shortened: 6 rounds are enough to compare.
sed -e 's/^rounds: .*/rounds: 6/' "$src/configs/compose_quickstart.yaml" > "$work/configs/auth.yaml"

build_images "$src" "$bin" || fail "image build"
(cd "$src" && "$bin/fedsim" run "$work/configs/auth.yaml" --out "$work/embedded" --quiet > /dev/null)

# --- secrets: the commands of docs/security.md
cd "$work/secrets"
openssl rand -hex 32 > token
openssl rand -hex 32 > "$work/rogue/token"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 -new "${ec[@]}" -days 2 -subj "/CN=fedsim CA" -keyout ca.key -out ca.pem 2> /dev/null
openssl req -new "${ec[@]}" -subj "/CN=coordinator" -keyout coordinator.key -out coordinator.csr 2> /dev/null
openssl x509 -req -in coordinator.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -out coordinator.pem -extfile <(printf \
  "subjectAltName=DNS:coordinator,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n") 2> /dev/null
openssl req -new "${ec[@]}" -subj "/CN=worker" -keyout worker.key -out worker.csr 2> /dev/null
openssl x509 -req -in worker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -out worker.pem -extfile <(printf "subjectAltName=DNS:worker\nextendedKeyUsage=clientAuth\n") 2> /dev/null
openssl verify -CAfile ca.pem coordinator.pem worker.pem > /dev/null || fail "openssl verify"
# Another CA and a worker certificate it signed (CN rogue).
cd "$work/rogue"
openssl req -x509 -new "${ec[@]}" -days 2 -subj "/CN=other CA" -keyout ca.key -out ca.pem 2> /dev/null
openssl req -new "${ec[@]}" -subj "/CN=rogue" -keyout worker.key -out worker.csr 2> /dev/null
openssl x509 -req -in worker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -out worker.pem -extfile <(printf "subjectAltName=DNS:rogue\nextendedKeyUsage=clientAuth\n") 2> /dev/null
cd - > /dev/null
rm -f "$work/secrets/ca.key" "$work/rogue/ca.key"
# Readable by the containers' user (FEDSIM_UID).
chmod 644 "$work/secrets/"* "$work/rogue/"*

state() { docker inspect -f "$1" "$2"; }

# up_coordinator NAME: the coordinator alone, healthy (its own health check,
# in the deployment's auth mode).
up_coordinator() {
  export FEDSIM_RUN_NAME=$1
  dc up -d --no-build coordinator > "$work/up.log" 2>&1 || { cat "$work/up.log"; fail "$1: compose up coordinator"; }
  coord=$(dc ps -q coordinator)
  healthy() { [ "$(state '{{.State.Health.Status}}' "$coord")" = healthy ]; }
  wait_for 90 healthy || fail "$1: compose health status $(state '{{.State.Health.Status}}' "$coord")"
}

# rogue NAME LOG ARGS...: a one-off worker container (not counted: refused).
rogue() {
  local name=$1 log=$2
  shift 2
  local t0 code=0
  t0=$(date +%s)
  dc run --rm --no-deps -T -v "$work/rogue:/rogue:ro" "$@" client \
    fedsim-client --name "$name" --max_unreachable_s 4 > "$log" 2>&1 || code=$?
  [ "$code" = 1 ] || { cat "$log"; fail "$name: exit code $code, expected 1"; }
  echo "$name refused in $(( $(date +%s) - t0 )) s: $(grep -m1 'fedsim-client:' "$log" | cut -c1-160)"
}

# finish NAME: three workers run it to the end, equal to the embedded run.
finish() {
  local run=$work/runs/$1 code c rows joined
  dc up -d --no-build --scale client=3 client > "$work/up.log" 2>&1 || { cat "$work/up.log"; fail "$1: compose up client"; }
  code=$(timeout 300 docker wait "$coord") || fail "$1: the coordinator did not exit within 300 s"
  [ "$code" = 0 ] || fail "$1: coordinator exit code $code"
  for c in $(dc ps -q client); do
    code=$(timeout 60 docker wait "$c") || fail "$1: worker $c did not exit"
    [ "$code" = 0 ] || fail "$1: worker $c exit code $code"
  done
  rows=$(csv_rows "$run/metrics.csv")
  [ "$rows" = 6 ] || fail "$1: $rows metrics rows, expected 6"
  joined=$(grep -c '"event":"worker_joined"' "$run/events.jsonl" || true)
  [ "$joined" = 3 ] || fail "$1: $joined workers joined, expected 3"
  if ! diff <(column "$run/metrics.csv" model_hash) <(column "$work/embedded/metrics.csv" model_hash) > /dev/null; then
    fail "$1: model_hash columns differ from the embedded run"
  fi
  cmp -s "$run/model.bin" "$work/embedded/model.bin" || fail "$1: model.bin differs from the embedded run"
  echo "$1: 6 rounds, 3 workers joined, model_hash $(column "$run/metrics.csv" model_hash | tail -1) = embedded"
  dc down --timeout 5 > /dev/null 2>&1
}

# --- token
overrides=(docker-compose.token.yml)
up_coordinator token
[ "$(docker exec "$coord" printenv FEDSIM_AUTH)" = token ] || fail "token: the coordinator's FEDSIM_AUTH is not token"
rogue no-token "$work/no-token.log" -e FEDSIM_AUTH=none -e FEDSIM_AUTH_TOKEN_FILE=
grep -q UNAUTHENTICATED "$work/no-token.log" || fail "no-token: no UNAUTHENTICATED in its log"
rogue wrong-token "$work/wrong-token.log" -e FEDSIM_AUTH_TOKEN_FILE=/rogue/token
grep -q UNAUTHENTICATED "$work/wrong-token.log" || fail "wrong-token: no UNAUTHENTICATED in its log"
rejected=$(grep '"event":"auth_rejected"' "$work/runs/token/events.jsonl" | grep -c '"code":"UNAUTHENTICATED"' || true)
[ "$rejected" = 2 ] || fail "token: $rejected auth_rejected UNAUTHENTICATED events, expected 2"
finish token

# --- mtls
overrides=(docker-compose.mtls.yml)
up_coordinator mtls
echo "mtls: coordinator healthy (fedsim-health over mTLS with its own certificate)"
rogue rogue-ca "$work/rogue-ca.log" -e FEDSIM_TLS_CERT=/rogue/worker.pem -e FEDSIM_TLS_KEY=/rogue/worker.key
grep -q "client certificate" "$work/rogue-ca.log" || fail "rogue-ca: its log does not name the client certificate"
if grep -q '"event":"worker_joined"' "$work/runs/mtls/events.jsonl"; then
  fail "mtls: a worker with another CA's certificate joined"
fi
grep -q "certificate verify failed" <<< "$(dc logs --no-color coordinator 2>&1)" ||
  fail "mtls: the coordinator logged no failed certificate verification"
finish mtls
grep -q '"name":"worker"' "$work/runs/mtls/events.jsonl" || fail "mtls: the workers did not join as their certificate's CN (worker)"

echo "PASS ($(( $(date +%s) - t_start )) s)"
