-- Switchboard schema 0001 (PostgreSQL).
--
-- NEVER edit a migration once it has been released: databases in the field have
-- already applied it and will not run it again. Change the schema by adding a new
-- file (0002_<what>.sql) and listing it in src/migrate.rs, for both backends.
--
-- Times are BIGINT unix milliseconds. Tables are created in the first schema of
-- the connection's search_path.

CREATE TABLE tenants (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name   TEXT NOT NULL UNIQUE CHECK (name <> ''),
    -- Stored lower-case (the store lower-cases on write and on lookup).
    domain TEXT NOT NULL UNIQUE CHECK (domain <> '')
);

CREATE TABLE users (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    extension         TEXT NOT NULL CHECK (extension <> ''),
    display_name      TEXT NOT NULL,
    -- Digest HA1 hashes only; passwords are never stored.
    ha1_md5           TEXT NOT NULL,
    ha1_sha256        TEXT NOT NULL,
    managed_by_config BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (tenant_id, extension)
);

-- Registration contacts. Deleting a user deletes its bindings.
CREATE TABLE bindings (
    tenant_id        BIGINT NOT NULL,
    extension        TEXT NOT NULL,
    contact          TEXT NOT NULL CHECK (contact <> ''),
    expires_at_ms    BIGINT NOT NULL,
    call_id          TEXT NOT NULL,
    cseq             BIGINT NOT NULL CHECK (cseq >= 0),
    q                DOUBLE PRECISION CHECK (q IS NULL OR (q >= 0.0 AND q <= 1.0)),
    instance_id      TEXT,
    reg_id           BIGINT,
    transport        TEXT NOT NULL CHECK (transport <> ''),
    source_addr      TEXT NOT NULL,
    local_addr       TEXT NOT NULL,
    connection_id    BIGINT,
    user_agent       TEXT,
    registered_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, extension, contact),
    FOREIGN KEY (tenant_id, extension) REFERENCES users (tenant_id, extension) ON DELETE CASCADE
);

CREATE INDEX bindings_expires_at ON bindings (expires_at_ms);

-- Call detail records: an append-only log. No foreign key on tenant_id on purpose:
-- billing history outlives the tenant row.
CREATE TABLE cdrs (
    id             TEXT PRIMARY KEY,
    tenant_id      BIGINT NOT NULL,
    call_id        TEXT NOT NULL,
    caller         TEXT NOT NULL,
    callee         TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    answered_at_ms BIGINT,
    ended_at_ms    BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    billable_ms    BIGINT NOT NULL,
    disposition    TEXT NOT NULL,
    hangup_cause   TEXT NOT NULL,
    hangup_status  INTEGER,
    initiator      TEXT NOT NULL,
    packets_a_to_b BIGINT NOT NULL,
    packets_b_to_a BIGINT NOT NULL,
    bytes_a_to_b   BIGINT NOT NULL,
    bytes_b_to_a   BIGINT NOT NULL
);

CREATE INDEX cdrs_tenant_started_at ON cdrs (tenant_id, started_at_ms);
CREATE INDEX cdrs_started_at ON cdrs (started_at_ms);
