#!/usr/bin/env bash
# Calls (INVITE with SDP ... BYE, with proxy authentication) at increasing rates, against a server
# already running.
#
#   run-calls.sh LABEL HOST:PORT SERVER_PID
#
# First a UAS SIPp registers the BENCH_CALLEES callee extensions through the server from its own
# port (sipp/reg_auth.xml, callees.csv), so the server can route to them. Then each step runs
#   - the UAS (sipp/uas_answer.xml) on that same port: 180, 200 with SDP, ACK, BYE, 200, and
#   - the UAC (sipp/uac_call.xml, calls.csv): INVITE with SDP -> 407 -> ACK -> INVITE with
#     credentials -> 100/180 -> 200 -> ACK -> CALL_HOLD_MS pause -> BYE -> 200,
# CALL_COUNT calls at one target rate, and measures completed / failed calls (failed = attempted -
# completed on the caller side; the callee side's failures are logged beside), the server's CPU time
# (SERVER_PID and its descendants) during the step and per 1,000 completed calls, and the CPU time
# of both SIPp processes. No RTP is sent.
# Prints the table, writes it to OUT/LABEL-calls.tsv with SIPp's raw files beside it, and the
# highest achieved call rate with < 0.1 % failures. Stops climbing after a step with more than
# STOP_FAIL_PCT % failures or an achieved rate below SATURATION_PCT % of the target (lib.sh).
#
# Environment (optional): CALL_RATES ("100 200 400 800 1200 1600"), CALL_COUNT (10000),
# CALL_HOLD_MS (1000), WARMUP_CALLS (1000), WARMUP_RATE (100), STOP_FAIL_PCT (5), SATURATION_PCT
# (80), OUT (bench/results/manual), UAC_LOCAL_PORT (15210), UAS_LOCAL_PORT (15211), SIPP_CPUS,
# BENCH_USERS, BENCH_CALLEES (lib.sh).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

label=${1:?usage: run-calls.sh LABEL HOST:PORT SERVER_PID}
target=${2:?usage: run-calls.sh LABEL HOST:PORT SERVER_PID}
server_pid=${3:?usage: run-calls.sh LABEL HOST:PORT SERVER_PID}
CALL_RATES=${CALL_RATES:-"100 200 400 800 1200 1600"}
CALL_COUNT=${CALL_COUNT:-10000}
CALL_HOLD_MS=${CALL_HOLD_MS:-1000}
WARMUP_CALLS=${WARMUP_CALLS:-1000}
WARMUP_RATE=${WARMUP_RATE:-100}
OUT=${OUT:-$bench_dir/results/manual}
UAC_LOCAL_PORT=${UAC_LOCAL_PORT:-15210}
UAS_LOCAL_PORT=${UAS_LOCAL_PORT:-15211}

alive "$server_pid" || die "server PID $server_pid is not running"
mkdir -p "$OUT/csv" "$OUT/$label-calls"
ensure_csv "$OUT/csv"
tsv="$OUT/$label-calls.tsv"
raw="$OUT/$label-calls"
uas_pid=""

stop_uas() {
  [ -n "$uas_pid" ] || return 0
  # run_sipp's subshells -> timeout -> sipp: SIGTERM to our timeout is passed on to SIPp, and
  # run_sipp still records SIPp's CPU time
  local t
  for t in $(tree_pids "$uas_pid"); do
    [ "$(ps -o comm= -p "$t" 2>/dev/null)" = timeout ] && kill -TERM "$t" 2>/dev/null
  done
  wait "$uas_pid" 2>/dev/null
  uas_pid=""
}
trap stop_uas EXIT
trap 'exit 130' INT TERM

# register_callees: the UAS port's contacts for every callee, through the server.
register_callees() {
  local base="$raw/uas-register" rc ok
  run_sipp "$base" 60 "$target" -sf "$bench_dir/sipp/reg_auth.xml" -inf "$OUT/csv/callees.csv" \
    -i 127.0.0.1 -p "$UAS_LOCAL_PORT" -auth_uri bench.test -r 200 -m "$BENCH_CALLEES" \
    -timeout 50s -timeout_error
  rc=$?
  ok=$(stat_field "$base.stat.csv" 'SuccessfulCall(C)')
  [ "$rc" -eq 0 ] && [ "$ok" -eq "$BENCH_CALLEES" ] ||
    die "registering the $BENCH_CALLEES callees failed (sipp rc $rc, $ok registered): see $base.*"
}

# step NAME RATE COUNT: one bounded UAS + UAC pair; appends a table row.
step() {
  local name=$1 rate=$2 count=$3
  local uac="$raw/$name-r$rate-uac" uas="$raw/$name-r$rate-uas"
  local limit rc ok retrans uas_ok uas_failed waited
  # sending time + call length + 32 s for the last transactions to time out + slack
  limit=$(( count / rate + CALL_HOLD_MS / 1000 + 45 ))
  # the UAS answers exactly COUNT calls, then leaves after their 4 s time-wait
  run_sipp "$uas" $(( limit + 30 )) "$target" -sf "$bench_dir/sipp/uas_answer.xml" \
    -i 127.0.0.1 -p "$UAS_LOCAL_PORT" -mp 16100 -default_behaviors all,-abortunexp \
    -m "$count" -timeout "$(( limit + 20 ))s" &
  uas_pid=$!
  sleep 1
  measure_begin "$server_pid"
  # -abortunexp off (both sides): a 180 overtaken by the 200 (two server workers, UDP) arrives
  # during the pause; RFC 3261 has the UAC ignore it, SIPp would abort the call. Real failures still
  # fail the call (the expected message times out).
  run_sipp "$uac" "$limit" "$target" -sf "$bench_dir/sipp/uac_call.xml" -inf "$OUT/csv/calls.csv" \
    -i 127.0.0.1 -p "$UAC_LOCAL_PORT" -mp 16000 -auth_uri bench.test -d "$CALL_HOLD_MS" \
    -default_behaviors all,-abortunexp \
    -r "$rate" -rp 1000 -m "$count" \
    -l $(( rate * (CALL_HOLD_MS / 1000 + 4) < 15000 ? rate * (CALL_HOLD_MS / 1000 + 4) : 15000 )) \
    -timeout "$(( limit - 5 ))s" -timeout_error
  rc=$?
  measure_end "$server_pid"
  # the UAS ends by itself once every call is over (4 s time-wait); bounded wait, then stop it
  waited=0
  while alive "$uas_pid" && [ "$waited" -lt 15 ]; do sleep 1; waited=$((waited + 1)); done
  stop_uas
  ok=$(stat_field "$uac.stat.csv" 'SuccessfulCall(C)')
  retrans=$(( $(stat_field "$uac.stat.csv" 'Retransmissions(C)') + $(stat_field "$uas.stat.csv" 'Retransmissions(C)') ))
  uas_ok=$(stat_field "$uas.stat.csv" 'SuccessfulCall(C)')
  uas_failed=$(stat_field "$uas.stat.csv" 'FailedCall(C)')
  echo "$name r$rate: $uas_ok completed, $uas_failed failed" >>"$raw/uas-summary.txt"
  table_row "$name" "$rate" "$count" "$ok" "$retrans" \
    "$(cat "$uac.cpu" "$uas.cpu" 2>/dev/null | awk '{ s += $1 + $2 } END { printf "%.2f", s }')" "$rc" \
    "$(awk -v h="$CALL_HOLD_MS" 'BEGIN { print h / 1000 }')" >>"$tsv"
  alive "$server_pid" || die "server PID $server_pid died during step $name"
}

log "$label: call benchmark against $target (server PID $server_pid), $BENCH_CALLEES callees, hold ${CALL_HOLD_MS} ms"
: >"$raw/uas-summary.txt"
register_callees
idle=$(idle_cpu_ms_per_s "$server_pid" 3)
log "$label: server idle CPU: $idle ms/s"
table_header call >"$tsv"
step warmup "$WARMUP_RATE" "$WARMUP_CALLS"
for rate in $CALL_RATES; do
  step measured "$rate" "$CALL_COUNT"
  climb_further "$label" "$tsv" || break
done

{
  echo "== $label: calls INVITE/407/INVITE..BYE with SDP, $CALL_COUNT per step, hold $CALL_HOLD_MS ms, server idle CPU $idle ms/s"
  echo "   (achieved/s = completed calls / (step wall time - hold); sipp CPU is caller + callee)"
  column -t -s $'\t' "$tsv"
  sed 's/^/   callee side: /' "$raw/uas-summary.txt"
  echo "highest rate with < 0.1 % failures ($label, calls): $(best_rate "$tsv")/s"
} | tee "$OUT/$label-calls.txt"
