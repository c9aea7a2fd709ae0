#!/usr/bin/env bash
# The TLS port of fedsim-server scanned by testssl.sh (docs/security.md,
# "TLS scan"): the server in tls and in mtls mode on a loopback port with a
# throw-away CA, scanned with the fast checks only (protocols, cipher
# categories, forward secrecy, every cipher per protocol; under tls also the
# server's defaults and preferences, certificate chain checked against the
# throw-away CA). Asserted from testssl's JSON: only TLS 1.2 and 1.3 offered
# (no SSLv2, SSLv3, TLS 1.0, TLS 1.1); no NULL, aNULL, EXPORT, LOW (DES,
# RC2, RC4), 3DES/IDEA or CBC cipher; forward secrecy offered and every
# accepted cipher has an (EC)DHE key exchange; no other HIGH or CRITICAL
# finding but the accepted ones (no server cipher order; the throw-away
# certificate's lifetime and missing CRL/OCSP). The checker is first shown
# a doctored scan (TLS 1.0, an RC4 and a static-RSA cipher, no forward
# secrecy, a HIGH finding) and must refuse it. One summary line per mode.
#
# testssl.sh is Debian's package testssl.sh (scripts/setup.sh installs it;
# the command is `testssl`, upstream's is `testssl.sh`).
set -u
bin=${1:?usage: tls_scan_test.sh BIN_DIR SOURCE_DIR}
src=${2:?}
testssl=$(command -v testssl || command -v testssl.sh) ||
  { echo "FAIL: testssl.sh missing (scripts/setup.sh installs Debian's package testssl.sh)"; exit 1; }
for tool in openssl python3 timeout; do
  command -v "$tool" > /dev/null || { echo "FAIL: $tool missing (scripts/setup.sh installs it)"; exit 1; }
done
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2> /dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
t0=$SECONDS

# --- a throw-away CA and a coordinator certificate (docs/security.md)
(
  cd "$work" || exit 1
  ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  openssl req -x509 -new $ec -days 2 -subj "/CN=fedsim scan CA" -keyout ca.key -out ca.pem &&
  openssl req -new $ec -subj "/CN=coordinator" -keyout coordinator.key -out coordinator.csr &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext &&
  openssl x509 -req -in coordinator.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -out coordinator.pem -extfile server.ext
) > "$work/openssl.log" 2>&1 || { cat "$work/openssl.log"; echo "FAIL: making certificates"; exit 1; }

# A coordinator that waits for a worker that never comes: only its TLS port
# matters. start_timeout_s keeps it up well beyond the scans.
cat > "$work/idle.yaml" <<'YAML'
seed: 1
rounds: 1
data: {source: synthetic_least_squares}
clients: {count: 2}
distributed: {min_workers: 1, start_timeout_s: 300}
YAML

# --- the checker: testssl's flat JSON (--jsonfile) -> one summary line, or
# the list of violations and exit 1.
cat > "$work/check.py" <<'PY'
import json, re, sys

mode, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    findings = json.load(f)
by_id = {}
for e in findings:
    by_id.setdefault(e["id"], []).append(e["finding"])
problems = []

def first(key):
    values = by_id.get(key)
    if not values:
        problems.append(f"{key}: not in the scan")
        return ""
    return values[0]

for e in findings:
    if e["severity"] == "FATAL" or e["id"].startswith("scanProblem"):
        problems.append(f"scan problem: {e['id']}: {e['finding']}")
if "scanTime" not in by_id:
    problems.append("scanTime: missing (the scan did not finish)")

protocols = {"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLS1": "TLS 1.0",
             "TLS1_1": "TLS 1.1", "TLS1_2": "TLS 1.2", "TLS1_3": "TLS 1.3"}
offered = []
for key, name in protocols.items():
    finding = first(key)
    if finding.startswith("offered"):
        offered.append(name)
    elif not finding.startswith("not offered"):
        problems.append(f"{name}: unclear finding '{finding}'")
if offered != ["TLS 1.2", "TLS 1.3"]:
    problems.append(f"protocols offered: {offered or 'none'}; want exactly TLS 1.2 and TLS 1.3")

# Cipher categories of --std: NULL, anonymous, export, LOW (64 bit, DES,
# RC2, RC4), 3DES/IDEA, obsolete CBC ("AVERAGE") must not be offered.
for key in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
            "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"):
    finding = first(key)
    if not finding.startswith("not offered"):
        problems.append(f"{key}: {finding}")

if not first("PFS").startswith("offered"):
    problems.append(f"forward secrecy: {first('PFS')}")

# Every cipher accepted (--cipher-per-proto): "TLS 1.2 xc02b NAME KX BITS ..."
weak = re.compile(r"NULL|anon|ADH|AECDH|EXP|RC4|RC2|DES|IDEA|MD5|CBC")
ciphers = []
for e in findings:
    if not e["id"].startswith("cipher-"):
        continue
    # "TLS 1.2 xc02b NAME KX [KX_BITS] ENC BITS IANA_NAME" ("SSLv3 x0a ..." in one field)
    fields = e["finding"].split()
    n = 1 if fields[0].startswith("SSL") else 2
    proto, name, kx, iana = " ".join(fields[:n]), fields[n + 1], fields[n + 2], fields[-1]
    ciphers.append(f"{name}({proto.split()[-1]})")
    if weak.search(name) or weak.search(iana):
        problems.append(f"weak cipher accepted: {name} / {iana} ({proto})")
    if not (kx.startswith("ECDH") or kx.startswith("DH")):
        problems.append(f"cipher without forward secrecy: {name} (key exchange {kx}, {proto})")
if not ciphers:
    problems.append("no accepted cipher listed (--cipher-per-proto)")

if "cert_chain_of_trust" in by_id and not first("cert_chain_of_trust").startswith("passed"):
    problems.append(f"certificate chain: {first('cert_chain_of_trust')}")

# Whatever else testssl rates HIGH or CRITICAL (as OpenFL's testssl test),
# except the missing server cipher order (gRPC 1.51 cannot set it; see
# docs/security.md) and what belongs to the throw-away certificate: no
# CRL/OCSP (private CA, no revocation) and its 2-day lifetime.
accepted = {"cipher_order", "cert_revocation", "cert_expirationStatus", "cert_notAfter"}
for e in findings:
    if e["severity"] in ("HIGH", "CRITICAL") and e["id"] not in accepted:
        problems.append(f"{e['severity']}: {e['id']}: {e['finding']}")

if problems:
    for p in problems:
        print(f"{mode}: {p}")
    sys.exit(1)
extra = []
if "cipher_order" in by_id:
    extra.append("server cipher order: " + ("yes" if "NOT" not in first("cipher_order") else "no"))
if "cert_chain_of_trust" in by_id:
    extra.append("chain " + first("cert_chain_of_trust").rstrip("."))
print(f"{mode}: {' + '.join(offered)} only; {len(ciphers)} ciphers, all AEAD with (EC)DHE: "
      f"{' '.join(ciphers)}; no NULL/aNULL/EXPORT/LOW/3DES/CBC; forward secrecy offered"
      + ("; " + ", ".join(extra) if extra else "") + f"; scan {first('scanTime')} s")
PY

# --- the checker refuses a doctored scan (TLS 1.0, RC4, static RSA, no FS)
python3 - "$work/doctored.json" <<'PY'
import json, sys
doc = [{"id": i, "severity": "OK", "finding": f} for i, f in [
    ("SSLv2", "not offered"), ("SSLv3", "not offered"), ("TLS1", "offered"),
    ("TLS1_1", "not offered"), ("TLS1_2", "offered"), ("TLS1_3", "offered with final"),
    ("cipherlist_NULL", "not offered"), ("cipherlist_aNULL", "not offered"),
    ("cipherlist_EXPORT", "not offered"), ("cipherlist_LOW", "offered (NOT ok)"),
    ("cipherlist_3DES_IDEA", "not offered"), ("cipherlist_AVERAGE", "not offered"),
    ("PFS", "not offered"), ("scanTime", "1"), ("secure_client_renego", "VULNERABLE"),
    ("cipher-tls1_2_x05", "TLS 1.2 x05 RC4-SHA RSA RC4 128 TLS_RSA_WITH_RC4_128_SHA"),
    ("cipher-tls1_2_x9d", "TLS 1.2 x9d AES256-GCM-SHA384 RSA AESGCM 256 TLS_RSA_WITH_AES_256_GCM_SHA384")]]
for e in doc:
    if e["id"] == "secure_client_renego":
        e["severity"] = "HIGH"
json.dump(doc, open(sys.argv[1], "w"))
PY
python3 "$work/check.py" doctored "$work/doctored.json" > "$work/doctored.out" 2>&1
code=$?
if [ "$code" -eq 1 ] && grep -q "protocols offered: \['TLS 1.0'" "$work/doctored.out" &&
   grep -q "weak cipher accepted: RC4-SHA" "$work/doctored.out" &&
   grep -q "cipherlist_LOW" "$work/doctored.out" && grep -q "forward secrecy: not offered" "$work/doctored.out" &&
   grep -q "without forward secrecy: AES256-GCM-SHA384" "$work/doctored.out" &&
   grep -q "HIGH: secure_client_renego" "$work/doctored.out"; then
  ok "the checker refuses a doctored scan ($(wc -l < "$work/doctored.out") violations)"
else
  bad "the checker passed a doctored scan: exit $code"; cat "$work/doctored.out"
fi

# scan MODE TESTSSL_CHECKS...: fedsim-server in MODE on a free loopback
# port (--listen 127.0.0.1:0; it prints the port it bound), scanned.
scan() {
  local mode=$1 p=; shift
  local flags=(--auth "$mode" --tls_cert "$work/coordinator.pem" --tls_key "$work/coordinator.key")
  [ "$mode" = mtls ] && flags+=(--tls_ca "$work/ca.pem")
  GRPC_VERBOSITY=NONE "$bin/fedsim-server" --config "$work/idle.yaml" --out "$work/run-$mode" \
    --quiet --listen "127.0.0.1:0" "${flags[@]}" > "$work/$mode.stdout" 2> "$work/$mode.stderr" &
  server=$!
  for _ in $(seq 100); do
    p=$(sed -n 's/^fedsim-server: listening on .* (port \([0-9]*\)).*/\1/p' "$work/$mode.stderr")
    [ -n "$p" ] && break
    sleep 0.1
  done
  # Up when fedsim-health gets SERVING over TLS (with the coordinator's own
  # certificate as client certificate under mtls, as compose's health check).
  local up=0
  for _ in $(seq 100); do
    [ -n "$p" ] || break
    GRPC_VERBOSITY=NONE "$bin/fedsim-health" --addr "127.0.0.1:$p" --auth "$mode" \
      --tls_ca "$work/ca.pem" --tls_server_name localhost --timeout_s 1 \
      $([ "$mode" = mtls ] && echo --tls_cert "$work/coordinator.pem" --tls_key "$work/coordinator.key") \
      2> /dev/null && { up=1; break; }
    kill -0 "$server" 2> /dev/null || break
    sleep 0.1
  done
  if [ "$up" -ne 1 ]; then
    bad "$mode: fedsim-server not serving on 127.0.0.1:$p"; cat "$work/$mode.stderr"
    kill "$server" 2> /dev/null; wait "$server" 2> /dev/null; server=
    return
  fi
  local t=$SECONDS
  # testssl.sh: no banner, no colours, stop instead of asking on a warning,
  # no DNS, openssl calls bounded; the throw-away CA as an extra trust anchor.
  timeout 120 "$testssl" "$@" --warnings batch --color 0 --quiet --nodns none \
    --openssl-timeout 10 --add-ca "$work/ca.pem" --jsonfile "$work/$mode.json" \
    "127.0.0.1:$p" > "$work/$mode.scan" 2>&1
  local code=$?
  if [ "$code" -eq 124 ] || [ ! -s "$work/$mode.json" ]; then
    bad "$mode: testssl.sh did not finish (exit $code)"; tail -20 "$work/$mode.scan"
  elif python3 "$work/check.py" "$mode" "$work/$mode.json" > "$work/$mode.check" 2>&1; then
    ok "$(cat "$work/$mode.check") (wall $((SECONDS - t)) s)"
  else
    bad "$mode: the scan shows a weakness:"; cat "$work/$mode.check"; sed -n '/Testing/,$p' "$work/$mode.scan"
  fi
  if ! kill -0 "$server" 2> /dev/null; then
    bad "$mode: fedsim-server died during the scan"; tail -5 "$work/$mode.stderr"
  fi
  kill "$server" 2> /dev/null; wait "$server" 2> /dev/null; server=
}

# tls: protocols, cipher categories, forward secrecy, server preferences,
# server defaults (certificate), every cipher per protocol.
scan tls --protocols --std --fs --server-preference --server-defaults --cipher-per-proto
# mtls: the same handshake up to the client certificate the scanner lacks
# (testssl.sh 3.0 cannot present one): protocols and ciphers only.
scan mtls --protocols --std --fs --cipher-per-proto

echo "tls_scan: $([ "$fail" -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - t0)) s"
exit $fail
