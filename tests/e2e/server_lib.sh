# Shared by the end-to-end tests that start fedsim-server on port 0
# (cli_test.sh, faults_test.sh, load_test.sh); sourced, not run. Defines:
#   server_port LOG   waits up to 20 s for fedsim-server's "listening on
#                     ... (port N)" line in LOG and prints N; prints
#                     nothing (and returns 1) if it never comes.
server_port() {
  local port="" _
  for _ in $(seq 400); do
    port=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$1" 2> /dev/null)
    [ -n "$port" ] && { echo "$port"; return 0; }
    sleep 0.05
  done
  return 1
}
