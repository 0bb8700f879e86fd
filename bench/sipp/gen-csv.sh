#!/usr/bin/env bash
# Writes the SIPp injection files for N bench users (extensions 2000..2000+N-1, domain bench.test,
# password pw-<ext>-bench).
#
#   gen-csv.sh N CALLEES OUTDIR
#
# The last CALLEES extensions are the callees (registered by the UAS SIPp, answered by it); the
# others are callers. Files written (SEQUENTIAL: SIPp takes one line per call, wrapping around):
#   users.csv    ext;password                 every user   (reg_auth.xml: REGISTER benchmark)
#   callees.csv  ext;password                 the callees  (reg_auth.xml run from the UAS port)
#   calls.csv    caller;password;callee       one line per caller, callees taken in turn
set -euo pipefail
n=${1:?usage: gen-csv.sh N CALLEES OUTDIR}
callees=${2:?usage: gen-csv.sh N CALLEES OUTDIR}
out=${3:?usage: gen-csv.sh N CALLEES OUTDIR}
first=2000
if (( callees < 1 || callees >= n )); then
  echo "gen-csv.sh: need 1 <= CALLEES < N" >&2
  exit 2
fi
mkdir -p "$out"
callers=$((n - callees))
awk -v first="$first" -v n="$n" -v callers="$callers" -v callees="$callees" -v out="$out" 'BEGIN {
  u = out "/users.csv"; c = out "/callees.csv"; k = out "/calls.csv"
  print "SEQUENTIAL" > u; print "SEQUENTIAL" > c; print "SEQUENTIAL" > k
  for (i = 0; i < n; i++) printf "%d;pw-%d-bench\n", first + i, first + i > u
  for (i = 0; i < callees; i++) printf "%d;pw-%d-bench\n", first + callers + i, first + callers + i > c
  for (i = 0; i < callers; i++)
    printf "%d;pw-%d-bench;%d\n", first + i, first + i, first + callers + (i % callees) > k
}'
