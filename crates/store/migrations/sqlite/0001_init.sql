-- Switchboard schema 0001 (SQLite).
--
-- NEVER edit a migration once it has been released: databases in the field have
-- already applied it and will not run it again. Change the schema by adding a new
-- file (0002_<what>.sql) and listing it in src/migrate.rs, for both backends.
--
-- Times are INTEGER unix milliseconds. Booleans are INTEGER 0/1.

CREATE TABLE tenants (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    name   TEXT NOT NULL UNIQUE CHECK (name <> ''),
    -- Stored lower-case (the store lower-cases on write and on lookup).
    domain TEXT NOT NULL UNIQUE CHECK (domain <> '')
);

CREATE TABLE users (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id         INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    extension         TEXT NOT NULL CHECK (extension <> ''),
    display_name      TEXT NOT NULL,
    -- Digest HA1 hashes only; passwords are never stored.
    ha1_md5           TEXT NOT NULL,
    ha1_sha256        TEXT NOT NULL,
    managed_by_config INTEGER NOT NULL DEFAULT 0 CHECK (managed_by_config IN (0, 1)),
    UNIQUE (tenant_id, extension)
);

-- Registration contacts. Deleting a user deletes its bindings.
CREATE TABLE bindings (
    tenant_id        INTEGER NOT NULL,
    extension        TEXT NOT NULL,
    contact          TEXT NOT NULL CHECK (contact <> ''),
    expires_at_ms    INTEGER NOT NULL,
    call_id          TEXT NOT NULL,
    cseq             INTEGER NOT NULL CHECK (cseq >= 0),
    q                REAL CHECK (q IS NULL OR (q >= 0.0 AND q <= 1.0)),
    instance_id      TEXT,
    reg_id           INTEGER,
    transport        TEXT NOT NULL CHECK (transport <> ''),
    source_addr      TEXT NOT NULL,
    local_addr       TEXT NOT NULL,
    connection_id    INTEGER,
    user_agent       TEXT,
    registered_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, extension, contact),
    FOREIGN KEY (tenant_id, extension) REFERENCES users (tenant_id, extension) ON DELETE CASCADE
);

CREATE INDEX bindings_expires_at ON bindings (expires_at_ms);

-- Call detail records: an append-only log. No foreign key on tenant_id on purpose:
-- billing history outlives the tenant row.
CREATE TABLE cdrs (
    id             TEXT NOT NULL PRIMARY KEY,
    tenant_id      INTEGER NOT NULL,
    call_id        TEXT NOT NULL,
    caller         TEXT NOT NULL,
    callee         TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    answered_at_ms INTEGER,
    ended_at_ms    INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    billable_ms    INTEGER NOT NULL,
    disposition    TEXT NOT NULL,
    hangup_cause   TEXT NOT NULL,
    hangup_status  INTEGER,
    initiator      TEXT NOT NULL,
    packets_a_to_b INTEGER NOT NULL,
    packets_b_to_a INTEGER NOT NULL,
    bytes_a_to_b   INTEGER NOT NULL,
    bytes_b_to_a   INTEGER NOT NULL
);

CREATE INDEX cdrs_tenant_started_at ON cdrs (tenant_id, started_at_ms);
CREATE INDEX cdrs_started_at ON cdrs (started_at_ms);
