#!/usr/bin/env bash
# REGISTER with digest authentication, at increasing rates, against a server already running.
#
#   run-register.sh LABEL HOST:PORT SERVER_PID
#
# Each step sends REG_COUNT registrations (REGISTER -> 401 -> REGISTER with credentials -> 200,
# sipp/reg_auth.xml) at one target rate, users 2000.. taken in turn from users.csv, and measures:
#   - completed / failed registrations (failed = attempted - completed, from SIPp's statistics),
#   - the server's CPU time (utime+stime of SERVER_PID and all its descendants, /proc) during the
#     step, and per 1,000 completed registrations,
#   - SIPp's own CPU time (to see whether the client, not the server, was the limit).
# A warm-up step registers every user once first (inserts; the measured steps refresh bindings).
# Prints the table, writes it to OUT/LABEL-register.tsv with SIPp's raw files beside it, and prints
# the highest achieved rate with < 0.1 % failures. Stops climbing after a step with more than
# STOP_FAIL_PCT % failures or an achieved rate below SATURATION_PCT % of the target (lib.sh).
#
# Environment (optional): REG_RATES ("1000 2000 3000 4000 5000 6000 8000 10000 12000 16000"),
# REG_COUNT (20000), WARMUP_RATE (1000), STOP_FAIL_PCT (5), SATURATION_PCT (80), OUT
# (bench/results/manual), REG_LOCAL_PORT (15200), SIPP_CPUS, BENCH_USERS, BENCH_CALLEES (lib.sh).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

label=${1:?usage: run-register.sh LABEL HOST:PORT SERVER_PID}
target=${2:?usage: run-register.sh LABEL HOST:PORT SERVER_PID}
server_pid=${3:?usage: run-register.sh LABEL HOST:PORT SERVER_PID}
REG_RATES=${REG_RATES:-"1000 2000 3000 4000 5000 6000 8000 10000 12000 16000"}
REG_COUNT=${REG_COUNT:-20000}
WARMUP_RATE=${WARMUP_RATE:-1000}
OUT=${OUT:-$bench_dir/results/manual}
REG_LOCAL_PORT=${REG_LOCAL_PORT:-15200}

alive "$server_pid" || die "server PID $server_pid is not running"
mkdir -p "$OUT/csv" "$OUT/$label-register"
ensure_csv "$OUT/csv"
tsv="$OUT/$label-register.tsv"
raw="$OUT/$label-register"

# step NAME RATE COUNT: one bounded SIPp run; appends a table row.
step() {
  local name=$1 rate=$2 count=$3
  local base="$raw/$name-r$rate" limit rc
  # time to send everything, plus 32 s for the last transactions to time out, plus slack
  limit=$(( count / rate + 45 ))
  measure_begin "$server_pid"
  run_sipp "$base" "$limit" "$target" -sf "$bench_dir/sipp/reg_auth.xml" -inf "$OUT/csv/users.csv" \
    -i 127.0.0.1 -p "$REG_LOCAL_PORT" -auth_uri bench.test \
    -r "$rate" -rp 1000 -m "$count" -l $(( rate * 4 < 1000 ? 1000 : (rate * 4 > 15000 ? 15000 : rate * 4) )) \
    -timeout "$(( limit - 5 ))s" -timeout_error
  rc=$?
  measure_end "$server_pid"
  table_row "$name" "$rate" "$count" "$(stat_field "$base.stat.csv" 'SuccessfulCall(C)')" \
    "$(stat_field "$base.stat.csv" 'Retransmissions(C)')" "$(sipp_cpu "$base")" "$rc" >>"$tsv"
  alive "$server_pid" || die "server PID $server_pid died during step $name"
}

log "$label: REGISTER benchmark against $target (server PID $server_pid), $BENCH_USERS users"
idle=$(idle_cpu_ms_per_s "$server_pid" 3)
log "$label: server idle CPU: $idle ms/s"
table_header REG >"$tsv"
step warmup "$WARMUP_RATE" "$BENCH_USERS"
for rate in $REG_RATES; do
  step measured "$rate" "$REG_COUNT"
  climb_further "$label" "$tsv" || break
done

{
  echo "== $label: REGISTER with digest auth, $REG_COUNT per step, server idle CPU $idle ms/s"
  column -t -s $'\t' "$tsv"
  echo "highest rate with < 0.1 % failures ($label, REGISTER): $(best_rate "$tsv")/s"
} | tee "$OUT/$label-register.txt"
