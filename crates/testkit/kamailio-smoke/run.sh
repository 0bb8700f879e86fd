#!/usr/bin/env bash
# Runs the smoke Kamailio in the foreground on 127.0.0.1:PORT (default 25060), MD5 digest,
# or SHA-256 digest when the second argument is `sha256`. Ctrl-C stops it.
#   ./run.sh            # MD5 on 25060
#   ./run.sh 25061 sha256
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:-25060}
extra=()
if [ "${2:-}" = sha256 ]; then extra=(-A DIGEST_SHA256); fi
rundir=$(mktemp -d)
exec kamailio -f "$here/kamailio.cfg" -DD -E -m 64 -M 8 -Y "$rundir" -P "$rundir/kamailio.pid" \
    -A "SIP_PORT=$port" -A "DBURL=\"text://$here/db\"" "${extra[@]}"
