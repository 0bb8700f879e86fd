#!/usr/bin/env bash
# Writes a Switchboard configuration for the benchmarks to stdout: domain bench.test, the users
# of $BENCH_USERS_CSV (a SEQUENTIAL line, then ext;password lines), SIP on $SWITCHBOARD_ADDR,
# data in $BENCH_RUN_DIR, logging at warn (as Kamailio runs with debug=0).
set -euo pipefail
addr=${SWITCHBOARD_ADDR:-127.0.0.1:15080}
cat <<TOML
data_dir = "${BENCH_RUN_DIR:-/tmp/switchboard-bench}/data"
[sip]
listen = ["udp:${addr}"]
server_name = ""
[media]
rtp_ports = [20000, 44999]
media_timeout_secs = 0
[log]
level = "warn"
[[tenants]]
name = "bench"
domain = "bench.test"
TOML
tail -n +2 "${BENCH_USERS_CSV:?set BENCH_USERS_CSV}" | while IFS=';' read -r ext pw _; do
  printf '[[tenants.users]]\nextension = "%s"\npassword = "%s"\n' "$ext" "$pw"
done
