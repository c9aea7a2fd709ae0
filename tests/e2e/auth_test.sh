#!/usr/bin/env bash
# Authentication with the real binaries (docs/security.md): certificates
# made with the openssl commands of docs/security.md; fedsim-server in mtls
# mode configured by environment variables as in compose, probed by
# fedsim-health with no arguments, two fedsim-client workers finishing the
# run with the embedded run's model_hash; token mode with per-worker
# secrets; and the one-line exit-2 errors of the flags.
set -u
bin=${1:?usage: auth_test.sh BIN_DIR SOURCE_DIR}
src=${2:?}
command -v openssl > /dev/null || { echo "FAIL: openssl missing (scripts/setup.sh installs it)"; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

cat > "$work/tiny.yaml" <<'YAML'
seed: 3
rounds: 3
data: {source: synthetic_least_squares}
clients: {count: 6}
participation: {client_fraction: 0.5}
distributed: {min_workers: 2}
YAML
"$bin/fedsim" run "$work/tiny.yaml" --out "$work/embedded" --quiet > /dev/null 2>&1 || bad "embedded run"
want=$(tail -1 "$work/embedded/metrics.csv" | cut -d, -f11)

# --- certificates, as docs/security.md makes them
cd "$work"
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 -new $ec -days 2 -subj "/CN=fedsim CA" -keyout ca.key -out ca.pem 2> /dev/null
openssl req -new $ec -subj "/CN=coordinator" -keyout coordinator.key -out coordinator.csr 2> /dev/null
printf 'subjectAltName=DNS:coordinator,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
openssl x509 -req -in coordinator.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -out coordinator.pem -extfile server.ext 2> /dev/null
for w in alice bob; do
  openssl req -new $ec -subj "/CN=$w" -keyout $w.key -out $w.csr 2> /dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=clientAuth\n' $w > $w.ext
  openssl x509 -req -in $w.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -out $w.pem -extfile $w.ext 2> /dev/null
done
openssl verify -CAfile ca.pem coordinator.pem alice.pem bob.pem > /dev/null || bad "openssl verify"
cd - > /dev/null

port=$((20000 + RANDOM % 20000))
wait_healthy() {  # ENV... : probe until SERVING (10 s)
  for _ in $(seq 100); do
    env "$@" "$bin/fedsim-health" --timeout_s 1 2> /dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- mTLS, configured by the environment like compose
FEDSIM_AUTH=mtls FEDSIM_TLS_CA="$work/ca.pem" FEDSIM_TLS_CERT="$work/coordinator.pem" \
  FEDSIM_TLS_KEY="$work/coordinator.key" FEDSIM_LISTEN="127.0.0.1:$port" \
  "$bin/fedsim-server" --config "$work/tiny.yaml" --out "$work/mtls" --quiet \
  > "$work/mtls.stdout" 2> "$work/mtls.stderr" &
server=$!; pids+=($server)
mtls_env=(FEDSIM_AUTH=mtls FEDSIM_TLS_CA="$work/ca.pem" FEDSIM_TLS_CERT="$work/coordinator.pem"
          FEDSIM_TLS_KEY="$work/coordinator.key" FEDSIM_LISTEN="127.0.0.1:$port")
if wait_healthy "${mtls_env[@]}"; then ok "fedsim-health, mtls from the environment"; else bad "health mtls"; fi
# Without a client certificate the probe fails (exit 1, one line).
"$bin/fedsim-health" --addr "127.0.0.1:$port" --auth tls --tls_ca "$work/ca.pem" --timeout_s 2 2> "$work/h.err"
code=$?
if [ "$code" -eq 1 ] && [ "$(wc -l < "$work/h.err")" -eq 1 ]; then ok "health without client cert: $(cat "$work/h.err")"; else bad "health no cert: $code"; cat "$work/h.err"; fi
"$bin/fedsim-health" --addr "127.0.0.1:$port" --auth mtls --tls_ca "$work/nope.pem" 2> "$work/h2.err"
code=$?
if [ "$code" -eq 2 ] && grep -qF -- "--tls_ca = $work/nope.pem: cannot read" "$work/h2.err"; then ok "health missing file: exit 2"; else bad "health missing file: $code"; fi
for w in alice bob; do
  "$bin/fedsim-client" --server "localhost:$port" --auth mtls --tls_ca "$work/ca.pem" \
    --tls_cert "$work/$w.pem" --tls_key "$work/$w.key" > "$work/$w.log" 2>&1 &
  pids+=($!)
done
wait "$server"; code=$?
got=$(tail -1 "$work/mtls/metrics.csv" | cut -d, -f11)
if [ "$code" -eq 0 ] && [ "$got" = "$want" ] && grep -q '"name":"alice"' "$work/mtls/events.jsonl" &&
   ! grep -q auth_rejected "$work/mtls/events.jsonl"; then
  ok "mtls run: model_hash $got = embedded"
else
  bad "mtls run: exit $code, hash $got vs $want"; cat "$work/mtls.stderr" "$work/alice.log"
fi
if grep -rq "BEGIN" "$work/mtls/config.json"; then bad "a secret in config.json"; fi

# --- token with per-worker secrets, by flags
printf '# name secret\nalice alice-secret-0123456789\nbob bob-secret-0123456789ab\n' > "$work/tokens"
echo alice-secret-0123456789 > "$work/alice.token"
echo bob-secret-0123456789ab > "$work/bob.token"
port=$((port + 1))
"$bin/fedsim-server" --config "$work/tiny.yaml" --out "$work/token" --quiet \
  --listen "127.0.0.1:$port" --auth token --token_file "$work/tokens" \
  > /dev/null 2> "$work/token.stderr" &
server=$!; pids+=($server)
if wait_healthy FEDSIM_AUTH=token FEDSIM_HEALTH_ADDR="127.0.0.1:$port"; then ok "fedsim-health, token mode"; else bad "health token"; fi
# Bob's secret under alice's name is refused at once.
"$bin/fedsim-client" --server "127.0.0.1:$port" --name alice --auth token \
  --token_file "$work/bob.token" > "$work/impostor.log" 2>&1
code=$?
if [ "$code" -eq 1 ] && [ "$(wc -l < "$work/impostor.log")" -eq 1 ] &&
   grep -q "UNAUTHENTICATED\|auth: bad token" "$work/impostor.log"; then
  ok "impostor refused: $(cat "$work/impostor.log")"
else
  bad "impostor: exit $code"; cat "$work/impostor.log"
fi
for w in alice bob; do
  "$bin/fedsim-client" --server "127.0.0.1:$port" --name $w --auth token \
    --token_file "$work/$w.token" > "$work/$w-token.log" 2>&1 &
  pids+=($!)
done
wait "$server"; code=$?
got=$(tail -1 "$work/token/metrics.csv" | cut -d, -f11)
if [ "$code" -eq 0 ] && [ "$got" = "$want" ] &&
   [ "$(grep -c auth_rejected "$work/token/events.jsonl")" -eq 1 ]; then
  ok "token run: model_hash $got = embedded, one auth_rejected"
else
  bad "token run: exit $code, hash $got vs $want"; cat "$work/token.stderr"
fi

# --- one-line errors, exit 2
expect2() {  # NAME WANT CMD...
  local name=$1 want=$2; shift 2
  "$@" > /dev/null 2> "$work/$name.err"
  local code=$?
  if [ "$code" -eq 2 ] && [ "$(wc -l < "$work/$name.err")" -eq 1 ] && grep -qF -- "$want" "$work/$name.err"; then
    ok "$name: $(cat "$work/$name.err")"
  else
    bad "$name: exit $code"; cat "$work/$name.err"
  fi
}
expect2 server_no_token "fedsim-server: --token_file is required with --auth = token" \
  "$bin/fedsim-server" --config "$work/tiny.yaml" --out "$work/x1" --auth token
expect2 server_bad_mode "--auth = ssl; must be one of none, token, tls, mtls" \
  "$bin/fedsim-server" --config "$work/tiny.yaml" --out "$work/x2" --auth ssl
expect2 server_missing_key "--tls_key = $work/none.key: cannot read the file" \
  "$bin/fedsim-server" --config "$work/tiny.yaml" --out "$work/x3" --auth tls \
  --tls_cert "$work/coordinator.pem" --tls_key "$work/none.key"
expect2 server_unused_token "--token_file = $work/tokens is not used with --auth = none" \
  "$bin/fedsim-server" --config "$work/tiny.yaml" --out "$work/x4" --token_file "$work/tokens"
expect2 client_short_secret "the secret has 5 characters; it must have at least 16" \
  "$bin/fedsim-client" --server 127.0.0.1:1 --auth token --token_file <(echo short)
expect2 launch_bad_mode "--auth = tlss; must be one of none, token, tls, mtls" \
  "$bin/fedsim" launch "$work/tiny.yaml" --out "$work/x5" --auth tlss
exit $fail
