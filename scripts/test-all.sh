#!/usr/bin/env bash
# Runs every Switchboard test on a Debian machine, installing what the tests need first.
#
#   scripts/test-all.sh
#
# Needs: Debian 12 or later, root (or passwordless sudo) to install packages, a Rust toolchain
# (cargo). Installs: sip-tester (SIPp), baresip, linphone-cli, tshark, sox, psmisc, libopus-dev
# (the Opus codec, linked), espeak-ng (generates the spoken prompts), and
# PostgreSQL when no server answers on 127.0.0.1:5432. Everything the tests send stays on
# loopback.
#
# Environment:
#   SWITCHBOARD_TEST_POSTGRES_URL  admin URL of a PostgreSQL server whose role may create
#                                  databases (default postgres://postgres@127.0.0.1:5432/test)
#   SWITCHBOARD_SKIP_POSTGRES=1    run without PostgreSQL (its tests then pass vacuously:
#                                  say so in any report)
#   SWITCHBOARD_SHARED             where ../shared (RFC 4475/5118 test data) is, if elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(sip-tester baresip linphone-cli tshark sox psmisc postgresql-client procps iproute2 libopus-dev pkg-config espeak-ng)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  # tshark asks whether non-root users may capture; the tests run the capture as root.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

export SWITCHBOARD_TEST_POSTGRES_URL="${SWITCHBOARD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
if [ -z "${SWITCHBOARD_SKIP_POSTGRES:-}" ] && ! psql "$SWITCHBOARD_TEST_POSTGRES_URL" -c 'select 1' >/dev/null 2>&1; then
  say "no PostgreSQL at $SWITCHBOARD_TEST_POSTGRES_URL: installing a local one for the tests"
  dpkg -s postgresql >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  cluster=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$cluster/main/pg_hba.conf
  # Loopback-only trust for the test role; nothing else is opened.
  grep -q '^host all postgres 127.0.0.1/32 trust' "$hba" 2>/dev/null ||
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main restart || as_root pg_ctlcluster "$cluster" main start
  for _ in $(seq 1 30); do psql "postgres://postgres@127.0.0.1:5432/postgres" -c 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
  psql "postgres://postgres@127.0.0.1:5432/postgres" -tc "select 1 from pg_database where datname='test'" | grep -q 1 ||
    psql "postgres://postgres@127.0.0.1:5432/postgres" -c 'create database test'
fi

say "cargo test (workspace)"
cargo test --workspace --locked
