# Shared helpers of the benchmark scripts (sourced, not run). Bash only.
#
# Conventions: every process is started bounded (timeout) and only PIDs this harness started are
# ever signalled. Environment knobs (all optional):
#   SIPP_CPUS     CPU list SIPp is pinned to with taskset (default 1; empty: no pinning)
#   SERVER_CPUS   CPU list the server is pinned to by run-all.sh (default 0; empty: no pinning)
#   BENCH_NICE    nice value for server and SIPp (default: unset, not changed); on a machine
#                 shared with other work, e.g. -10 keeps the benchmark's share of its CPUs
#   SIPP          sipp binary (default: sipp from PATH)
#   BENCH_USERS   number of bench users, extensions 2000.. (default 10000)
#   BENCH_CALLEES how many of the last extensions are callees (default 100)

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SIPP=${SIPP:-sipp}
SIPP_CPUS=${SIPP_CPUS-1}
SERVER_CPUS=${SERVER_CPUS-0}
BENCH_USERS=${BENCH_USERS:-10000}
BENCH_CALLEES=${BENCH_CALLEES:-100}
clk_tck=$(getconf CLK_TCK)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pin CPUS: the command prefix, one word a line: `nice -n BENCH_NICE` when BENCH_NICE is set, then
# `taskset -c CPUS` when CPUS is not empty.
pin() {
  [ -n "${BENCH_NICE:-}" ] && printf 'nice\n-n\n%s\n' "$BENCH_NICE"
  [ -n "$1" ] && printf 'taskset\n-c\n%s\n' "$1"
  return 0
}

now() { date +%s.%N; }

# tree_pids PID: PID and all its descendants (Kamailio forks its workers; Switchboard is one
# process whose threads /proc/PID/stat already sums).
tree_pids() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END {
      want[root] = 1; print root; changed = 1
      while (changed) {
        changed = 0
        for (p in parent) if (!(p in want) && (parent[p] in want)) { want[p] = 1; print p; changed = 1 }
      }
    }'
}

# cpu_ticks PID: utime+stime, in clock ticks, summed over PID and its descendants now alive.
cpu_ticks() {
  local total=0 p line rest
  local -a f
  for p in $(tree_pids "$1"); do
    line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${line##*) }          # the command name may hold spaces: cut after its closing paren
    read -r -a f <<<"$rest"    # f[0] is field 3 (state): utime is field 14, stime field 15
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

alive() { kill -0 "$1" 2>/dev/null; }

# wait_udp_port PORT SECONDS: wait until something listens on UDP PORT.
wait_udp_port() {
  local port=$1 deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    ss -Hlun "sport = :$port" 2>/dev/null | grep -q . && return 0
    sleep 0.2
  done
  return 1
}

# ensure_csv DIR: the SIPp injection files for BENCH_USERS / BENCH_CALLEES in DIR.
ensure_csv() {
  local dir=$1
  if [ ! -s "$dir/users.csv" ] || [ "$(wc -l <"$dir/users.csv")" -ne $((BENCH_USERS + 1)) ] ||
     [ "$(wc -l <"$dir/callees.csv")" -ne $((BENCH_CALLEES + 1)) ]; then
    bash "$bench_dir/sipp/gen-csv.sh" "$BENCH_USERS" "$BENCH_CALLEES" "$dir"
  fi
}

# run_sipp OUTBASE LIMIT_S ARGS...: runs SIPp pinned to SIPP_CPUS, bounded by LIMIT_S seconds
# (SIGTERM, SIGKILL 5 s later), with its statistics dumped every second to OUTBASE.stat.csv (the last
# line holds the cumulative counters), unexpected messages to OUTBASE.errors.log (1 MB at most), the
# final screen to OUTBASE.screen.log and its CPU time (user sys, seconds) to OUTBASE.cpu.
# Returns SIPp's exit code (0 all calls succeeded, 1 some failed, 124 killed by the time limit).
run_sipp() {
  local base=$1 limit=$2
  shift 2
  local -a taskset_cmd
  mapfile -t taskset_cmd < <(pin "$SIPP_CPUS")
  (
    "${taskset_cmd[@]}" timeout -k 5 "$limit" "$SIPP" "$@" -nostdin \
      -buff_size 4194304 -trace_stat -stf "$base.stat.csv" -fd 1 \
      -trace_err -error_file "$base.errors.log" -max_log_size 1000000 \
      -trace_screen -screen_file "$base.screen.log" >"$base.stdout" 2>&1
    rc=$?
    # children's user and system time: timeout and SIPp, which it waited for. `times` must run in
    # this shell, not in a pipeline (a forked pipeline member has no waited-for children).
    times >"$base.times"
    awk 'NR == 2 {
      split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.3f %.3f\n", u[1] * 60 + u[2], s[1] * 60 + s[2]
    }' "$base.times" >"$base.cpu"
    rm -f "$base.times"
    # keep the tail of the screen output only (SIPp redraws its screen every second)
    tail -n 60 "$base.stdout" >"$base.stdout.tmp" && mv "$base.stdout.tmp" "$base.stdout"
    exit $rc
  )
}

# udp_rcvbuf_errors: the kernel's count of UDP datagrams dropped for a full receive buffer (all
# sockets of the machine; on a quiet loopback bench, the server's and SIPp's).
udp_rcvbuf_errors() {
  awk '$1 == "Udp:" { if (!n) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") col = i; n = 1 } else print $col }' /proc/net/snmp
}

# stat_field STATCSV NAME: the named column of the last line of a SIPp -trace_stat file (0 if none).
stat_field() {
  [ -s "$1" ] || { echo 0; return; }
  awk -F';' -v name="$2" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
    { last = $col }
    END { print (col && last != "" ? last + 0 : 0) }' "$1"
}

# sipp_cpu OUTBASE: user+sys seconds of one run_sipp.
sipp_cpu() { awk '{ printf "%.2f", $1 + $2 }' "$1.cpu" 2>/dev/null || echo 0; }

# host_busy_ticks: busy clock ticks of the whole machine (all CPUs) from /proc/stat: user, nice,
# system, irq, softirq, steal. Tick-sampled: processes that wake and sleep between ticks (SIPp,
# Kamailio at moderate rates) are under-counted, so it is only a rough figure.
host_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# wait_quiet [WHAT]: before measuring WHAT (default: a server start), wait QUIET_WAIT seconds at
# most (default 300) until the machine is quiet: less than QUIET_PCT % (default 10) of one CPU
# busy over 5 s. The bench machine may be shared; a warning goes to OUT/env.txt if it never is.
wait_quiet() {
  local what=${1:-a server start} limit=${QUIET_WAIT:-300} pct=${QUIET_PCT:-10}
  local deadline=$(( $(date +%s) + limit )) a b busy
  while :; do
    a=$(host_busy_ticks); sleep 5; b=$(host_busy_ticks)
    busy=$(( 100 * (b - a) / clk_tck / 5 ))
    [ "$busy" -lt "$pct" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "machine still busy ($busy % of a CPU used by others) after ${limit} s: measuring anyway"
      echo "warning: $busy % of a CPU busy before $what at $(date +%T)" >>"$OUT/env.txt"
      return 0
    fi
    log "machine busy ($busy % of a CPU), waiting"
  done
}

# cpu_wait_us: microseconds during which some runnable task waited for a CPU (pressure stall
# information, /proc/pressure/cpu "some total"); 0 where the kernel has no PSI.
cpu_wait_us() {
  awk '$1 == "some" { sub("total=", "", $5); print $5; f = 1 } END { if (!f) print 0 }' \
    /proc/pressure/cpu 2>/dev/null || echo 0
}

# measure_begin PID / measure_end PID: counters around one step, kept in m_* globals: wall clock,
# the server's CPU ticks, the machine's busy ticks, CPU pressure, the kernel's UDP receive-buffer
# drops.
# measure_end first waits 0.5 s for the server to finish the last messages of its queue.
measure_begin() {
  m_d0=$(udp_rcvbuf_errors); m_p0=$(cpu_wait_us); m_h0=$(host_busy_ticks)
  m_c0=$(cpu_ticks "$1"); m_t0=$(now)
}
measure_end() {
  m_t1=$(now)
  sleep 0.5
  m_c1=$(cpu_ticks "$1"); m_h1=$(host_busy_ticks); m_p1=$(cpu_wait_us); m_d1=$(udp_rcvbuf_errors)
}

# table_header / table_row: the step table shared by run-register.sh and run-calls.sh (tab
# separated, aligned with column -t when printed). OPS is "REG" or "call".
table_header() {
  printf 'step\ttarget/s\tachieved/s\tattempted\tok\tfailed\tfail%%\tretrans\tudp_drops\t'
  printf 'server_cpu_s\tserver_util%%\tcpu_ms_per_1k_%s\tsipp_cpu_s\tsipp_util%%\tother_cpu_s\tcpu_wait_s\tsipp_rc\n' "$1"
}

# table_row STEP TARGET COUNT OK RETRANS SIPP_CPU_S RC [HOLD_S], after measure_begin/measure_end.
#   achieved/s = OK / (wall - HOLD_S): the call benchmark leaves the call hold out;
#   failed = COUNT - OK: anything not completed (SIPp failures, calls never placed or cut by the
#   time limit) is a failure;
#   server_util% and sipp_util% are percentages of one CPU over the step's wall time;
#   other_cpu_s = machine busy time - server - SIPp: kernel softirq work and any other process; the
#   machine's busy time is tick-sampled, so this is rough and can be negative: only a large positive
#   value (a busy neighbour) means something;
#   cpu_wait_s = time some runnable task waited for a CPU (PSI): the server's own workers queueing
#   on their CPU, or a neighbour taking it.
table_row() {
  awk -v step="$1" -v target="$2" -v count="$3" -v ok="$4" -v retrans="$5" -v scpu="$6" -v rc="$7" \
      -v hold="${8:-0}" -v t0="$m_t0" -v t1="$m_t1" -v c0="$m_c0" -v c1="$m_c1" -v h0="$m_h0" \
      -v h1="$m_h1" -v d0="$m_d0" -v d1="$m_d1" -v p0="$m_p0" -v p1="$m_p1" -v hz="$clk_tck" 'BEGIN {
    wall = t1 - t0; failed = count - ok; cpu = (c1 - c0) / hz; other = (h1 - h0) / hz - cpu - scpu
    printf "%s\t%s\t%.0f\t%d\t%d\t%d\t%.3f\t%d\t%d\t%.2f\t%.0f\t%s\t%.2f\t%.0f\t%.2f\t%.2f\t%s\n",
      step, target, (wall - hold > 0 ? ok / (wall - hold) : 0), count, ok, failed, 100 * failed / count,
      retrans, d1 - d0, cpu, 100 * cpu / wall, (ok > 0 ? sprintf("%.1f", 1e6 * cpu / ok) : "-"),
      scpu, 100 * scpu / wall, other, (p1 - p0) / 1e6, rc
  }'
}

# climb_further LABEL TSV: whether the next, higher rate is worth a step after the last row of TSV:
# not when more than STOP_FAIL_PCT % failed (default 5) or when the achieved rate fell below
# SATURATION_PCT % of the target (default 80: the server, or SIPp, is saturated).
climb_further() {
  local row verdict
  row=$(tail -n 1 "$2")
  verdict=$(awk -F'\t' -v f="${STOP_FAIL_PCT:-5}" -v s="${SATURATION_PCT:-80}" '{
    if ($7 + 0 > f) print "more than " f " % failures"
    else if ($3 + 0 < $2 * s / 100) print "achieved rate below " s " % of the target: saturated"
  }' <<<"$row")
  log "$1: target $(cut -f2 <<<"$row")/s: achieved $(cut -f3 <<<"$row")/s, $(cut -f7 <<<"$row") % failed"
  [ -z "$verdict" ] && return 0
  log "$1: $verdict, not climbing further"
  return 1
}

# best_rate TSV: the highest achieved rate among measured steps (not warm-up) with < 0.1 % failures.
best_rate() {
  awk -F'\t' 'NR > 1 && $1 != "warmup" && $7 + 0 < 0.1 && $3 + 0 > best { best = $3 + 0; row = $0 }
    END { if (row == "") print "none"; else print best }' "$1"
}

# idle_cpu_ms_per_s PID SECONDS: the server's CPU use while idle (timers), in ms per second.
idle_cpu_ms_per_s() {
  local a b
  a=$(cpu_ticks "$1"); sleep "$2"; b=$(cpu_ticks "$1")
  awk -v a="$a" -v b="$b" -v s="$2" -v hz="$clk_tck" 'BEGIN { printf "%.1f", 1000 * (b - a) / hz / s }'
}
