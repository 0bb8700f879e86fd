#!/usr/bin/env bash
# Media relay benchmark: N concurrent calls through Switchboard with G.711 RTP (172-byte packets
# every 20 ms, both directions) flowing through its relay; CPU and memory per call, packet loss.
#
#   bench/run-media.sh                          # 500 and 2,000 calls, 30 s of RTP each
#   MEDIA_CALLS="2000" MEDIA_DURATION=60 bench/run-media.sh
#
# For each N of MEDIA_CALLS: waits for a quiet machine, starts a fresh Switchboard (the benchmark
# configuration of switchboard-config.sh: domain bench.test, BENCH_USERS users, relay ports
# 20000-44999, media timeout off, log level warn) pinned to SERVER_CPUS (default CPU 0), runs
# `rtp-calls` (crates/testkit/src/bin/rtp_calls.rs) pinned to GEN_CPUS (default CPU 1): it registers
# the BENCH_CALLEES callees, sets N calls up from extension 2000 (407 digest, MEDIA_RATE per second),
# measures the server idle with the calls up, sends RTP for MEDIA_DURATION seconds on both sides of
# every call, hangs up, and reports loss (steady state, after MEDIA_WARMUP seconds), latency, the
# server's CPU time over the steady window and RSS per call. Then stops the server (SIGTERM) and
# reads its CDRs (`switchboard cdr list --json`) to compare the relay's own packet counters with
# what the generator sent and received.
#
# Results: OUT (default bench/results/<date>-<time>-media/): env.txt (machine, versions, load,
# settings), nN.txt (rtp-calls' report), nN.server.log, nN.cdrs.txt (CDR cross-check),
# summary.jsonl (rtp-calls' SUMMARY lines), SUMMARY.txt (the table and everything above).
#
# Environment (optional; and those of lib.sh: SERVER_CPUS, BENCH_NICE, BENCH_USERS, BENCH_CALLEES):
#   MEDIA_CALLS        "500 2000"    concurrent calls per step
#   MEDIA_DURATION     30            seconds of RTP per step (rtp-calls caps it at 600)
#   MEDIA_WARMUP       2             seconds of RTP left out of loss and CPU figures
#   MEDIA_RATE         200           call setups (and BYEs) per second
#   MEDIA_SETTLE       35            seconds after the hang-up before the last memory sample (calls
#                                    linger 32 s for retransmissions after BYE)
#   MEDIA_THREADS      2             rtp-calls generator threads
#   MEDIA_RTP_SOCKETS  per-call      per-call (one socket per call side, like phones) or shared
#   MEDIA_MAX_LOSS     0.01          highest steady-state loss (%) per direction for a pass
#   MEDIA_LOG_LEVEL    warn          Switchboard's [log] level
#   MEDIA_RELAY_PORTS  "20000 44999" Switchboard's [media] rtp_ports
#   GEN_CPUS           1             CPUs rtp-calls is pinned to (empty: not pinned)
#   SWITCHBOARD_ADDR   127.0.0.1:15080
#   BUILD              1             cargo build --release both binaries first (0: use them as they are)
#   CARGO_TARGET_DIR   <repo>/target where the binaries are (SWITCHBOARD_BIN, RTP_CALLS_BIN override)
#   QUIET_WAIT, QUIET_PCT  300, 10   wait up to QUIET_WAIT s for others to use < QUIET_PCT % of a CPU
#   SERVER_TIMEOUT     1800          seconds a server may live
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo=$(cd "$bench_dir/.." && pwd)
OUT=${OUT:-$bench_dir/results/$(date +%Y%m%d-%H%M%S)-media}
MEDIA_CALLS=${MEDIA_CALLS:-"500 2000"}
MEDIA_DURATION=${MEDIA_DURATION:-30}
MEDIA_WARMUP=${MEDIA_WARMUP:-2}
MEDIA_RATE=${MEDIA_RATE:-200}
MEDIA_SETTLE=${MEDIA_SETTLE:-35}
MEDIA_THREADS=${MEDIA_THREADS:-2}
MEDIA_RTP_SOCKETS=${MEDIA_RTP_SOCKETS:-per-call}
MEDIA_MAX_LOSS=${MEDIA_MAX_LOSS:-0.01}
MEDIA_LOG_LEVEL=${MEDIA_LOG_LEVEL:-warn}
MEDIA_RELAY_PORTS=${MEDIA_RELAY_PORTS:-"20000 44999"}
GEN_CPUS=${GEN_CPUS-1}
SWITCHBOARD_ADDR=${SWITCHBOARD_ADDR:-127.0.0.1:15080}
BUILD=${BUILD:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$CARGO_TARGET_DIR/release/switchboard}
RTP_CALLS_BIN=${RTP_CALLS_BIN:-$CARGO_TARGET_DIR/release/rtp-calls}
QUIET_WAIT=${QUIET_WAIT:-300}
QUIET_PCT=${QUIET_PCT:-10}
SERVER_TIMEOUT=${SERVER_TIMEOUT:-1800}
port=${SWITCHBOARD_ADDR##*:}

mkdir -p "$OUT"
run_dir=$(mktemp -d /tmp/switchboard-media.XXXXXX)
server_tpid=""   # our `timeout` process (Switchboard is its child)
server_pid=""    # Switchboard itself


# start_server NAME CONFIG: Switchboard pinned to SERVER_CPUS, bounded by SERVER_TIMEOUT, its log in
# OUT/NAME.server.log; sets server_tpid and server_pid once it listens on UDP $port.
start_server() {
  local name=$1 cfg=$2 t
  local -a pin_cmd
  mapfile -t pin_cmd < <(pin "$SERVER_CPUS")
  if ss -Hlun "sport = :$port" | grep -q .; then
    die "UDP port $port is already in use"
  fi
  log "starting switchboard ($name)"
  "${pin_cmd[@]}" timeout -k 10 "$SERVER_TIMEOUT" "$SWITCHBOARD_BIN" serve --config "$cfg" \
    >"$OUT/$name.server.log" 2>&1 &
  server_tpid=$!
  if ! wait_udp_port "$port" 30 || ! alive "$server_tpid"; then
    tail -n 20 "$OUT/$name.server.log" >&2
    stop_server
    die "switchboard did not start listening on UDP port $port"
  fi
  server_pid=""
  for t in $(tree_pids "$server_tpid"); do
    [ "$(ps -o comm= -p "$t" 2>/dev/null)" = switchboard ] && server_pid=$t
  done
  [ -n "$server_pid" ] || { stop_server; die "no switchboard process under PID $server_tpid"; }
  sleep 1
}

# stop_server: SIGTERM to our timeout (passed on to Switchboard), SIGKILL to what is left of our
# tree after 10 s.
stop_server() {
  [ -n "$server_tpid" ] || return 0
  local pids t
  pids=$(tree_pids "$server_tpid")
  kill -TERM "$server_tpid" 2>/dev/null
  for _ in $(seq 1 50); do
    alive "$server_tpid" || break
    sleep 0.2
  done
  for t in $pids; do kill -KILL "$t" 2>/dev/null; done
  wait "$server_tpid" 2>/dev/null
  server_tpid=""
  server_pid=""
}

cleanup() {
  stop_server
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# config DIR: the benchmark configuration with MEDIA_LOG_LEVEL and MEDIA_RELAY_PORTS.
config() {
  local dir=$1 lo hi
  read -r lo hi <<<"$MEDIA_RELAY_PORTS"
  SWITCHBOARD_ADDR=$SWITCHBOARD_ADDR BENCH_RUN_DIR=$dir BENCH_USERS_CSV=$run_dir/csv/users.csv \
    bash "$bench_dir/switchboard-config.sh" |
    sed -e "s/^rtp_ports = .*/rtp_ports = [$lo, $hi]/" -e "s/^level = .*/level = \"$MEDIA_LOG_LEVEL\"/" \
    >"$dir/switchboard.toml"
}

# cdr_check NAME CONFIG: the server's CDRs (written at each call's end, read after it stopped) beside
# what rtp-calls counted: the relay's packets received from each side vs the generator's sends.
cdr_check() {
  local name=$1 cfg=$2
  timeout 60 "$SWITCHBOARD_BIN" cdr list --config "$cfg" --json --limit 1000000 >"$run_dir/$name.cdrs.json" 2>"$run_dir/$name.cdrs.err" ||
    { echo "cdr list failed: $(head -c 300 "$run_dir/$name.cdrs.err")"; return 0; }
  local summary
  summary=$(grep "\"label\":\"switchboard-$name\"" "$OUT/summary.jsonl" 2>/dev/null | tail -n 1)
  [ -n "$summary" ] || summary='{}'
  jq -r --argjson s "$summary" '
    "CDRs: \(length) (" + ([group_by(.disposition)[] | "\(.[0].disposition) \(length)"] | join(", ")) + "); hang-up initiators: "
      + ([group_by(.initiator)[] | "\(.[0].initiator) \(length)"] | join(", ")),
    "relay received from callers (A→B) \(map(.packets_a_to_b) | add // 0), generator sent \($s.a2b_sent_total // "?"), callees received \($s.a2b_received_total // "?")",
    "relay received from callees (B→A) \(map(.packets_b_to_a) | add // 0), generator sent \($s.b2a_sent_total // "?"), callers received \($s.b2a_received_total // "?")",
    "calls with no packet relayed in some direction: \(map(select(.disposition == "answered" and (.packets_a_to_b == 0 or .packets_b_to_a == 0))) | length)"
  ' "$run_dir/$name.cdrs.json"
}

write_env() {
  {
    echo "date: $(date -Is)"
    echo "host: $(uname -srm)"
    echo "cpu: $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2 }'), $(nproc --all) CPUs; $(lscpu | awk -F: '/^(CPU family|Model):/ { gsub(/^ +/, "", $2); printf "%s %s; ", $1, $2 }')"
    echo "uptime at start: $(uptime)"
    echo "switchboard: $SWITCHBOARD_BIN ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null) + uncommitted changes in: $(git -C "$repo" status --short -- crates 2>/dev/null | awk '{ print $2 }' | cut -d/ -f1-2 | sort -u | paste -sd' '))"
    echo "pinning: server on CPUs '${SERVER_CPUS}', rtp-calls on CPUs '${GEN_CPUS}' (empty: not pinned), nice '${BENCH_NICE:-}'"
    echo "users: $BENCH_USERS (callees: $BENCH_CALLEES); calls: $MEDIA_CALLS; RTP $MEDIA_DURATION s (warm-up $MEDIA_WARMUP s); setup rate $MEDIA_RATE/s; generator threads $MEDIA_THREADS, RTP sockets $MEDIA_RTP_SOCKETS; loss threshold $MEDIA_MAX_LOSS %"
    echo "server config: log level $MEDIA_LOG_LEVEL, relay ports $MEDIA_RELAY_PORTS, media timeout off"
    echo "udp buffers: rmem_default $(cat /proc/sys/net/core/rmem_default) rmem_max $(cat /proc/sys/net/core/rmem_max) wmem_default $(cat /proc/sys/net/core/wmem_default)"
  } >"$OUT/env.txt"
}

# ---- build ----
if [ "$BUILD" = 1 ]; then
  log "building switchboard and rtp-calls (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$repo" && timeout 3600 cargo build --release -p switchboard -p switchboard-testkit --bin switchboard --bin rtp-calls) ||
    die "build failed"
fi
[ -x "$SWITCHBOARD_BIN" ] || die "no $SWITCHBOARD_BIN"
[ -x "$RTP_CALLS_BIN" ] || die "no $RTP_CALLS_BIN"

write_env
log "results in $OUT"
mkdir -p "$run_dir/csv"
ensure_csv "$run_dir/csv"
caller=$(sed -n 2p "$run_dir/csv/users.csv" | cut -d';' -f1)
caller_pw=$(sed -n 2p "$run_dir/csv/users.csv" | cut -d';' -f2)
rc_all=0
mapfile -t gen_pin < <(pin "$GEN_CPUS")

for n in $MEDIA_CALLS; do
  name="n$n"
  dir="$run_dir/$name"
  mkdir -p "$dir"
  config "$dir"
  wait_quiet "the $name step"
  echo "load before $name: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
  start_server "$name" "$dir/switchboard.toml"
  # setup at MEDIA_RATE + idle + RTP + drain + three 32 s transaction timeouts at most + slack
  limit=$(( n / MEDIA_RATE * 2 + MEDIA_DURATION + MEDIA_SETTLE + 3 * 32 + 60 ))
  log "$name: $n calls, $MEDIA_DURATION s of RTP (server PID $server_pid; at most $limit s)"
  "${gen_pin[@]}" timeout -k 5 "$limit" "$RTP_CALLS_BIN" \
    --server "$SWITCHBOARD_ADDR" --domain bench.test --caller "$caller" --caller-password "$caller_pw" \
    --callees "$run_dir/csv/callees.csv" --calls "$n" --duration "$MEDIA_DURATION" --warmup "$MEDIA_WARMUP" \
    --rate "$MEDIA_RATE" --settle-after "$MEDIA_SETTLE" --threads "$MEDIA_THREADS" --rtp-sockets "$MEDIA_RTP_SOCKETS" \
    --max-loss "$MEDIA_MAX_LOSS" --server-pid "$server_pid" --label "switchboard-$name" \
    --summary-file "$OUT/summary.jsonl" >"$OUT/$name.txt" 2>&1
  rc=$?
  echo "rtp-calls exit status: $rc" >>"$OUT/$name.txt"
  [ "$rc" -eq 0 ] || rc_all=1
  grep -E '^ +(A→B|B→A)|per call:|RSS:|verdict' "$OUT/$name.txt" >&2
  stop_server
  cdr_check "$name" "$dir/switchboard.toml" >"$OUT/$name.cdrs.txt"
  cat "$OUT/$name.cdrs.txt" >&2
done

echo "uptime at end: $(uptime)" >>"$OUT/env.txt"
{
  cat "$OUT/env.txt"
  echo
  echo "Per step (server CPU over the steady RTP window; loss per direction over the steady state):"
  jq -r '[.label, .calls, .calls_up, .a2b_loss_pct, .b2a_loss_pct, .server_core_pct, .cpu_pct_per_call,
          .relay_cpu_pct_per_call, .us_per_packet, .cpu_pct_per_call_nominal, .mem_per_call_kib, .mem_per_call_rtp_kib, .anon_per_call_kib, .rss_before_kib, .rss_settled_kib, .fds_before, .fds_calls_up, .fds_settled, .idle_calls_core_pct,
          .lat_p50_us, .lat_p99_us, .lat_max_us, .achieved_pct, .gen_cpu_pct, .other_cpu_s, .cpu_wait_s, .pass]
         | map(if type == "number" then (. * 10000 | round / 10000) else . end) | @tsv' "$OUT/summary.jsonl" |
    { printf 'label\tcalls\tup\tloss_a2b%%\tloss_b2a%%\tserver_core%%\tcpu%%_per_call\trelay%%_per_call\tus_per_pkt\tcpu%%_per_call_at_100pps\tKiB_per_call_idle\tKiB_per_call_rtp\tanon_KiB_per_call\tRSS_before_KiB\tRSS_settled_KiB\tfds_before\tfds_up\tfds_settled\tidle_calls_core%%\tlat_p50_us\tlat_p99_us\tlat_max_us\trelayed%%_nominal\tgen_core%%\tother_cpu_s\tcpu_wait_s\tpass\n'; cat; } |
    column -t -s $'\t'
  for n in $MEDIA_CALLS; do
    echo
    echo "==== n$n ===="
    grep -v '^SUMMARY' "$OUT/n$n.txt"
    cat "$OUT/n$n.cdrs.txt"
  done
} >"$OUT/SUMMARY.txt"
log "done: $OUT/SUMMARY.txt"
exit "$rc_all"
