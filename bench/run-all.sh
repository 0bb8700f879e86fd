#!/usr/bin/env bash
# The whole benchmark run: Kamailio baselines (and Switchboard when SWITCHBOARD_CMD is set) measured
# with the same SIPp scenarios, on loopback, in one run.
#
#   bench/run-all.sh                 # Kamailio baselines only
#   SWITCHBOARD_CMD='target/release/switchboard --config bench/switchboard.toml' bench/run-all.sh
#
# Order: Kamailio registrar (usrloc in memory), Kamailio registrar (usrloc write-through to SQLite),
# Kamailio proxy, each with every shared-memory manager of KAMAILIO_MMS; then Switchboard. Each server
# is started here, pinned to SERVER_CPUS, bounded by SERVER_TIMEOUT, measured by run-register.sh /
# run-calls.sh (SIPp pinned to SIPP_CPUS) and stopped before the next one starts.
# Results: OUT (default bench/results/<date>-<time>/): env.txt (machine, versions, settings), per
# server and benchmark a table (.txt, .tsv) and SIPp's raw statistics, the servers' logs, and
# SUMMARY.txt with all tables.
#
# Environment (optional):
#   OUT                 result directory
#   RUN_KAMAILIO        1 (0: skip the Kamailio baselines)
#   KAMAILIO            /usr/sbin/kamailio
#   KAMAILIO_MMS        "qm tlsf": Kamailio memory managers (-x/-X) to measure; qm is the default
#   KAMAILIO_REG_MODES  "mem wt": registrar usrloc modes (db_mode 0 / db_mode 1 write-through)
#   KAMAILIO_CHILDREN   2 (UDP worker processes; the .cfg files say 2, -n overrides)
#   KAMAILIO_WT_RATES, KAMAILIO_WT_COUNT, KAMAILIO_WT_WARMUP_RATE  "150 300 450 600 900 1200",
#                       10000, 200:
#                       REGISTER rates, count per step and warm-up rate for the write-through
#                       registrar, which is disk-bound
#   SWITCHBOARD_CMD     command line starting Switchboard in the foreground (see run_switchboard)
#   SWITCHBOARD_ADDR    127.0.0.1:15080
#   BENCHES             "register calls"
#   SERVER_TIMEOUT      3600 (seconds a server may live)
#   QUIET_WAIT, QUIET_PCT  300, 10: before each server, wait up to QUIET_WAIT s for the machine to
#                       be quiet (others below QUIET_PCT % of one CPU)
# and those of lib.sh, run-register.sh and run-calls.sh (rates, counts, CPUs, users).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=${OUT:-$bench_dir/results/$(date +%Y%m%d-%H%M%S)}
RUN_KAMAILIO=${RUN_KAMAILIO:-1}
KAMAILIO=${KAMAILIO:-/usr/sbin/kamailio}
KAMAILIO_MMS=${KAMAILIO_MMS:-"qm tlsf"}
KAMAILIO_REG_MODES=${KAMAILIO_REG_MODES:-"mem wt"}
KAMAILIO_CHILDREN=${KAMAILIO_CHILDREN:-2}
KAMAILIO_WT_RATES=${KAMAILIO_WT_RATES:-"150 300 450 600 900 1200"}
KAMAILIO_WT_COUNT=${KAMAILIO_WT_COUNT:-10000}
KAMAILIO_WT_WARMUP_RATE=${KAMAILIO_WT_WARMUP_RATE:-200}
KAMAILIO_REG_PORT=15060
KAMAILIO_PROXY_PORT=15070
SWITCHBOARD_ADDR=${SWITCHBOARD_ADDR:-127.0.0.1:15080}
BENCHES=${BENCHES:-"register calls"}
SERVER_TIMEOUT=${SERVER_TIMEOUT:-3600}
QUIET_WAIT=${QUIET_WAIT:-300}
QUIET_PCT=${QUIET_PCT:-10}
export OUT

mkdir -p "$OUT/csv"
run_dir=$(mktemp -d /tmp/switchboard-bench.XXXXXX)
server_pid=""
server_log=""

# start_server NAME PORT CMD...: starts CMD pinned to SERVER_CPUS and bounded by SERVER_TIMEOUT,
# its output in OUT/NAME.server.log; sets server_pid (our timeout process: the server and its
# children are its descendants) once something listens on UDP PORT.
start_server() {
  local name=$1 port=$2
  shift 2
  local -a taskset_cmd
  mapfile -t taskset_cmd < <(pin "$SERVER_CPUS")
  if ss -Hlun "sport = :$port" | grep -q .; then
    die "UDP port $port is already in use"
  fi
  log "starting $name: $*"
  "${taskset_cmd[@]}" timeout -k 10 "$SERVER_TIMEOUT" "$@" >"$OUT/$name.server.log" 2>&1 &
  server_pid=$!
  server_log="$OUT/$name.server.log"
  if ! wait_udp_port "$port" 20 || ! alive "$server_pid"; then
    tail -n 20 "$OUT/$name.server.log" >&2
    stop_server
    die "$name did not start listening on UDP port $port"
  fi
  sleep 1
}


# shrink_log FILE: keeps a large server log readable: its first 40 lines and a count of its
# distinct lines (first 160 characters).
shrink_log() {
  local f=$1
  [ -f "$f" ] && [ "$(wc -c <"$f")" -gt 200000 ] || return 0
  {
    echo "(log of $(wc -l <"$f") lines shrunk by run-all.sh: first 40 lines, then distinct lines by count)"
    head -n 40 "$f"
    echo "..."
    cut -c1-160 "$f" | sed -E 's/^ *[0-9]+\([0-9]+\)/ N(PID)/' | sort | uniq -c | sort -rn | head -n 40
  } >"$f.tmp" && mv "$f.tmp" "$f"
}

# stop_server: SIGTERM to our timeout (passed on to the server), SIGKILL to what is left of our
# tree after 10 s.
stop_server() {
  [ -n "$server_pid" ] || return 0
  local pids t
  pids=$(tree_pids "$server_pid")
  kill -TERM "$server_pid" 2>/dev/null
  for _ in $(seq 1 50); do
    alive "$server_pid" || break
    sleep 0.2
  done
  for t in $pids; do kill -KILL "$t" 2>/dev/null; done
  wait "$server_pid" 2>/dev/null
  server_pid=""
  shrink_log "$server_log"
}

cleanup() {
  stop_server
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bench_server LABEL HOST:PORT: the chosen benchmarks against the running server.
bench_server() {
  local label=$1 addr=$2
  case " $BENCHES " in *" register "*)
    bash "$bench_dir/run-register.sh" "$label" "$addr" "$server_pid" || log "$label: register benchmark failed"
  esac
  case " $BENCHES " in *" calls "*)
    bash "$bench_dir/run-calls.sh" "$label" "$addr" "$server_pid" || log "$label: call benchmark failed"
  esac
}

# kamailio_db: a fresh SQLite database (subscriber table for BENCH_USERS users, empty location).
kamailio_db() {
  local db="$run_dir/kamailio.sqlite"
  rm -f "$db" "$db-wal" "$db-shm"
  if [ ! -s "$run_dir/kamailio.template.sqlite" ]; then
    bash "$bench_dir/kamailio/gen-subscribers.sh" "$BENCH_USERS" "$run_dir/kamailio.template.sqlite"
  fi
  cp "$run_dir/kamailio.template.sqlite" "$db"
  echo "$db"
}

# kamailio_cmd CFG MM PORT CHILDREN [DEFINE...]: the Kamailio command line (foreground, log to
# stderr) with a fresh database.
kamailio_cmd() {
  local cfg=$1 mm=$2 port=$3 children=$4 db
  shift 4
  db=$(kamailio_db)
  mkdir -p "$run_dir/kamailio"
  local -a cmd=("$KAMAILIO" -f "$bench_dir/kamailio/$cfg" -DD -E -n "$children"
    -l "udp:127.0.0.1:$port" -m 256 -M 16 -x "$mm" -X "$mm" -Y "$run_dir/kamailio"
    -A "DBURL=\"sqlite://$db\"")
  local d
  for d in "$@"; do cmd+=(-A "$d"); done
  printf '%s\n' "${cmd[@]}"
}

run_kamailio() {
  local mm mode label
  local -a cmd
  for mm in $KAMAILIO_MMS; do
    case " $BENCHES " in *" register "*)
      for mode in $KAMAILIO_REG_MODES; do
        label="kamailio-registrar-$mode-$mm"
        if [ "$mode" = wt ]; then
          # one worker: Kamailio 5.6's db_sqlite sets no busy timeout, so two processes writing the
          # location table fail with "database is locked"
          mapfile -t cmd < <(kamailio_cmd registrar.cfg "$mm" "$KAMAILIO_REG_PORT" 1 WITH_WRITETHROUGH)
        else
          mapfile -t cmd < <(kamailio_cmd registrar.cfg "$mm" "$KAMAILIO_REG_PORT" "$KAMAILIO_CHILDREN")
        fi
        wait_quiet
        start_server "$label" "$KAMAILIO_REG_PORT" "${cmd[@]}"
        if [ "$mode" = wt ]; then
          # disk-bound (a commit per REGISTER): lower rates, or SIPp's backlog and retransmissions
          # measure the overload instead of the server
          REG_RATES=$KAMAILIO_WT_RATES REG_COUNT=$KAMAILIO_WT_COUNT WARMUP_RATE=$KAMAILIO_WT_WARMUP_RATE \
            BENCHES=register bench_server "$label" "127.0.0.1:$KAMAILIO_REG_PORT"
        else
          BENCHES=register bench_server "$label" "127.0.0.1:$KAMAILIO_REG_PORT"
        fi
        [ "$mode" = wt ] && echo "location rows after $label: $(sqlite3 "$run_dir/kamailio.sqlite" \
          'select count(*) from location' 2>/dev/null || echo '?')" >>"$OUT/$label-register.txt"
        stop_server
      done
    esac
    case " $BENCHES " in *" calls "*)
      label="kamailio-proxy-$mm"
      mapfile -t cmd < <(kamailio_cmd proxy.cfg "$mm" "$KAMAILIO_PROXY_PORT" "$KAMAILIO_CHILDREN")
      wait_quiet
      start_server "$label" "$KAMAILIO_PROXY_PORT" "${cmd[@]}"
      BENCHES=calls bench_server "$label" "127.0.0.1:$KAMAILIO_PROXY_PORT"
      stop_server
    esac
  done
}

# ==== Switchboard =================================================================================
# run_switchboard CMD...: starts Switchboard with CMD (in the foreground, one process), pinned to
# SERVER_CPUS and bounded like Kamailio, waits until it listens on SWITCHBOARD_ADDR, runs the same
# benchmarks under the label "switchboard" and stops it (SIGTERM, SIGKILL after 10 s).
# CMD must make Switchboard, with nothing else to set up by hand:
#   - listen for SIP over UDP on $SWITCHBOARD_ADDR (127.0.0.1:15080 by default);
#   - serve domain bench.test with users 2000 .. 2000+BENCH_USERS-1, password pw-<ext>
#     (BENCH_USERS_CSV lists them as "ext;password" after a "SEQUENTIAL" line);
#   - challenge REGISTER with 401 and initial INVITEs with 407 (MD5; SIPp 3.6.1 sends qop=auth
#     answers and its digest uri is "sip:bench.test", not the Request-URI), route INVITEs to the
#     registered contacts, anchor the media (no RTP is sent), pass BYE from either side;
#   - log at warning level or below, keep its data under BENCH_RUN_DIR.
# Exported to CMD: SWITCHBOARD_ADDR, BENCH_USERS, BENCH_USERS_CSV, BENCH_RUN_DIR. CMD is run by
# `bash -c`: setup steps may come first ("setup && exec switchboard ..."); end with `exec` so that
# SIGTERM reaches Switchboard itself (its CPU is counted either way: the whole process tree is).
run_switchboard() {
  local port=${SWITCHBOARD_ADDR##*:}
  export SWITCHBOARD_ADDR BENCH_USERS
  export BENCH_USERS_CSV="$OUT/csv/users.csv"
  export BENCH_RUN_DIR="$run_dir/switchboard"
  mkdir -p "$BENCH_RUN_DIR"
  ensure_csv "$OUT/csv"
  wait_quiet
  start_server switchboard "$port" "$@"
  bench_server switchboard "$SWITCHBOARD_ADDR"
  stop_server
}
# ==================================================================================================

write_env() {
  {
    echo "date: $(date -Is)"
    echo "host: $(uname -srm)"
    echo "cpu: $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2 }'), $(nproc) CPUs"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "kamailio: $("$KAMAILIO" -v 2>/dev/null | head -n 1)"
    echo "sipp: $("$SIPP" -v 2>/dev/null | grep -m1 -o 'SIPp v[^ ]*')"
    echo "pinning: server on CPUs '${SERVER_CPUS}', SIPp on CPUs '${SIPP_CPUS}' (empty: not pinned), nice '${BENCH_NICE:-}'"
    echo "users: $BENCH_USERS (callees: $BENCH_CALLEES), kamailio children: $KAMAILIO_CHILDREN, memory managers: $KAMAILIO_MMS"
    echo "REGISTER: rates ${REG_RATES:-default} count ${REG_COUNT:-default} (write-through: $KAMAILIO_WT_RATES, $KAMAILIO_WT_COUNT); calls: rates ${CALL_RATES:-default} count ${CALL_COUNT:-default} hold ${CALL_HOLD_MS:-default} ms"
    echo "defaults: $(grep -ho '^\(REG\|CALL\)_\(RATES\|COUNT\|HOLD_MS\)=.*' "$bench_dir/run-register.sh" "$bench_dir/run-calls.sh" | paste -sd' ')"
    echo "udp buffers: rmem_default $(cat /proc/sys/net/core/rmem_default) rmem_max $(cat /proc/sys/net/core/rmem_max)"
    echo "switchboard: ${SWITCHBOARD_CMD:-not run}"
  } >"$OUT/env.txt"
}

write_env
log "results in $OUT"
[ "$RUN_KAMAILIO" = 1 ] && run_kamailio
if [ -n "${SWITCHBOARD_CMD:-}" ]; then
  run_switchboard bash -c "$SWITCHBOARD_CMD"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
cat "$OUT/env.txt" "$OUT"/*-register.txt "$OUT"/*-calls.txt 2>/dev/null >"$OUT/SUMMARY.txt"
rm -rf "$OUT/csv"
log "done: $OUT/SUMMARY.txt"
