#!/usr/bin/env bash
# Creates a Kamailio 5.6 SQLite database with the subscriber table for N bench users
# (extensions 2000..2000+N-1, domain bench.test, password pw-<ext>-bench, ha1 = MD5(user:realm:password))
# and an empty location table (used by usrloc in write-through mode).
#
#   gen-subscribers.sh N DBFILE
#
# The table layouts and versions are those of Kamailio 5.6 (db_sqlite/standard, auth_db, usrloc
# create scripts); Kamailio refuses to start if the version rows do not match.
# Needs python3 (standard library only). The database is opened in WAL journal mode, which SQLite
# keeps in the file.
set -euo pipefail
n=${1:?usage: gen-subscribers.sh N DBFILE}
db=${2:?usage: gen-subscribers.sh N DBFILE}
rm -f "$db" "$db-wal" "$db-shm"
python3 - "$n" "$db" <<'PY'
import hashlib, sqlite3, sys

n, path = int(sys.argv[1]), sys.argv[2]
realm = "bench.test"
db = sqlite3.connect(path)
db.executescript("""
PRAGMA journal_mode=WAL;
CREATE TABLE version (
    id INTEGER PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);
INSERT INTO version (table_name, table_version) VALUES ('version', 1);
CREATE TABLE subscriber (
    id INTEGER PRIMARY KEY NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    password VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain)
);
CREATE INDEX subscriber_username_idx ON subscriber (username);
INSERT INTO version (table_name, table_version) VALUES ('subscriber', 7);
CREATE TABLE location (
    id INTEGER PRIMARY KEY NOT NULL,
    ruid VARCHAR(64) DEFAULT '' NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT NULL,
    contact VARCHAR(512) DEFAULT '' NOT NULL,
    received VARCHAR(128) DEFAULT NULL,
    path VARCHAR(512) DEFAULT NULL,
    expires TIMESTAMP WITHOUT TIME ZONE DEFAULT '2030-05-28 21:32:15' NOT NULL,
    q REAL DEFAULT 1.0 NOT NULL,
    callid VARCHAR(255) DEFAULT 'Default-Call-ID' NOT NULL,
    cseq INTEGER DEFAULT 1 NOT NULL,
    last_modified TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:01' NOT NULL,
    flags INTEGER DEFAULT 0 NOT NULL,
    cflags INTEGER DEFAULT 0 NOT NULL,
    user_agent VARCHAR(255) DEFAULT '' NOT NULL,
    socket VARCHAR(64) DEFAULT NULL,
    methods INTEGER DEFAULT NULL,
    instance VARCHAR(255) DEFAULT NULL,
    reg_id INTEGER DEFAULT 0 NOT NULL,
    server_id INTEGER DEFAULT 0 NOT NULL,
    connection_id INTEGER DEFAULT 0 NOT NULL,
    keepalive INTEGER DEFAULT 0 NOT NULL,
    partition INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT location_ruid_idx UNIQUE (ruid)
);
CREATE INDEX location_account_contact_idx ON location (username, domain, contact);
CREATE INDEX location_expires_idx ON location (expires);
CREATE INDEX location_tcpcon_idx ON location (connection_id);
CREATE INDEX location_connection_idx ON location (server_id, connection_id);
INSERT INTO version (table_name, table_version) VALUES ('location', 9);
CREATE TABLE location_attrs (
    id INTEGER PRIMARY KEY NOT NULL,
    ruid VARCHAR(64) DEFAULT '' NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT NULL,
    aname VARCHAR(64) DEFAULT '' NOT NULL,
    atype INTEGER DEFAULT 0 NOT NULL,
    avalue VARCHAR(512) DEFAULT '' NOT NULL,
    last_modified TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:01' NOT NULL
);
CREATE INDEX location_attrs_account_record_idx ON location_attrs (username, domain, ruid);
CREATE INDEX location_attrs_last_modified_idx ON location_attrs (last_modified);
INSERT INTO version (table_name, table_version) VALUES ('location_attrs', 1);
""")


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


rows = []
for ext in range(2000, 2000 + n):
    user, pw = str(ext), f"pw-{ext}-bench"
    # The plain password column stays empty: Kamailio runs with calculate_ha1=0 and reads ha1.
    rows.append((user, realm, "", md5(f"{user}:{realm}:{pw}"), md5(f"{user}@{realm}:{realm}:{pw}")))
db.executemany("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?,?,?,?,?)", rows)
db.commit()
db.close()
PY
