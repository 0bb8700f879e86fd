//! The SQLite backend, the embedded default.
//!
//! Durability: the database runs in WAL mode with `synchronous = NORMAL`. A
//! transaction that has committed (a [`Registrations::save_bindings`] call that
//! returned `Ok`) survives a crash of the process; only a crash of the operating
//! system or a power loss can lose the last few committed transactions (never
//! corrupt the file). `synchronous = FULL` would close that gap at the cost of an
//! fsync per commit.
//!
//! Writes that read before they write run in `BEGIN IMMEDIATE` transactions, so
//! that concurrent writers wait on `busy_timeout` instead of failing to upgrade
//! their lock. SQL placeholders are written `$1`, `$2`, ... as for PostgreSQL;
//! sqlx accepts that form for SQLite too.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::migrate::{self, Migration};
use crate::model::{BindingChange, BindingRecord, CdrFilter, CdrRecord, TenantRecord, UserRecord, UserUpsert};
use crate::{Cdrs, Directory, Registrations, StoreError, rows};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in the pool; WAL lets readers run beside the one writer.
const MAX_CONNECTIONS: u32 = 4;

/// A store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it and its parent directories if
    /// needed, and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_migrations(path, migrate::SQLITE).await
    }

    async fn open_with_migrations(path: &Path, migrations: &[Migration]) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        create_private_file(path).map_err(|source| StoreError::CreateFile { path: path.to_owned(), source })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // No ping before each use: a SQLite connection is a file handle that does not go stale,
        // and the ping is a round trip to the connection's thread on every write.
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let store = SqliteStore { pool };
        if let Err(e) = store.migrate(migrations).await {
            store.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// Closes every connection, waiting for running queries to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The highest migration version applied to the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&self.pool).await?;
        Ok(version.unwrap_or(0))
    }

    /// Applies the migrations of `migrations` not yet recorded, each in its own
    /// transaction (see [`crate::migrate`]).
    async fn migrate(&self, migrations: &[Migration]) -> Result<(), StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        let found = self.schema_version().await?;
        let known = migrate::latest(migrations);
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        for migration in migrations {
            let failed = |source| StoreError::Migration { version: migration.version, name: migration.name, source };
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(&mut *tx)
                .await?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(migration.sql).execute(&mut *tx).await.map_err(failed)?;
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)")
                .bind(migration.version)
                .bind(migration.name)
                .bind(migrate::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
        }
        Ok(())
    }
}

/// Creates an empty database file readable by its owner only, if there is none:
/// it holds HA1 hashes, which are as good as passwords for their realm. SQLite gives
/// its `-wal` and `-shm` files the same permissions.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl Directory for SqliteStore {
    async fn upsert_tenant(&self, name: &str, domain: &str) -> Result<TenantRecord, StoreError> {
        let row = sqlx::query(
            "INSERT INTO tenants (name, domain) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET domain = excluded.domain
             RETURNING id, name, domain",
        )
        .bind(name)
        .bind(domain.to_lowercase())
        .fetch_one(&self.pool)
        .await?;
        Ok(rows::tenant(&row)?)
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY id").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(rows::tenant).collect::<Result<_, _>>()?)
    }

    async fn tenant_by_domain(&self, domain: &str) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM tenants WHERE domain = $1")
            .bind(domain.to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(rows::tenant).transpose()?)
    }

    async fn upsert_user(&self, user: &UserUpsert) -> Result<UserRecord, StoreError> {
        let row = sqlx::query(
            "INSERT INTO users (tenant_id, extension, display_name, ha1_md5, ha1_sha256, managed_by_config, srtp, dtmf)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, extension) DO UPDATE SET
                 display_name = excluded.display_name,
                 ha1_md5 = excluded.ha1_md5,
                 ha1_sha256 = excluded.ha1_sha256,
                 managed_by_config = excluded.managed_by_config,
                 srtp = excluded.srtp,
                 dtmf = excluded.dtmf
             RETURNING id, tenant_id, extension, display_name, ha1_md5, ha1_sha256, managed_by_config, srtp, dtmf",
        )
        .bind(user.tenant_id)
        .bind(user.extension.as_str())
        .bind(user.display_name.as_str())
        .bind(user.ha1_md5.as_str())
        .bind(user.ha1_sha256.as_str())
        .bind(user.managed_by_config)
        .bind(user.srtp.as_str())
        .bind(user.dtmf.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(rows::user(&row)?)
    }

    async fn list_users(&self, tenant_id: i64) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users WHERE tenant_id = $1 ORDER BY extension")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(rows::user).collect::<Result<_, _>>()?)
    }

    async fn user(&self, tenant_id: i64, extension: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE tenant_id = $1 AND extension = $2")
            .bind(tenant_id)
            .bind(extension)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(rows::user).transpose()?)
    }

    async fn delete_config_users_except(&self, tenant_id: i64, keep_extensions: &[String]) -> Result<u64, StoreError> {
        // SQLite has no array parameter: read the candidates, delete the others.
        let keep: HashSet<&str> = keep_extensions.iter().map(String::as_str).collect();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let managed: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, extension FROM users WHERE tenant_id = $1 AND managed_by_config = 1")
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
        let mut deleted = 0;
        for (id, _) in managed.iter().filter(|(_, extension)| !keep.contains(extension.as_str())) {
            deleted += sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

impl Registrations for SqliteStore {
    async fn save_bindings(&self, changes: &[BindingChange]) -> Result<(), StoreError> {
        let plan = crate::plan::plan(changes);
        match plan.statements() {
            0 => {}
            // One statement is atomic on its own: no transaction round trips.
            1 => {
                let mut conn = self.pool.acquire().await?;
                crate::plan::apply_plan!(Sqlite, conn, &plan);
            }
            _ => {
                let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                crate::plan::apply_plan!(Sqlite, tx, &plan);
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn load_bindings(&self, now_ms: i64) -> Result<Vec<BindingRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM bindings WHERE expires_at_ms > $1 ORDER BY tenant_id, extension, contact")
                .bind(now_ms)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(rows::binding).collect::<Result<_, _>>()?)
    }

    async fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM bindings WHERE expires_at_ms <= $1").bind(now_ms).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}

impl Cdrs for SqliteStore {
    async fn insert_cdrs(&self, cdrs: &[CdrRecord]) -> Result<u64, StoreError> {
        if cdrs.is_empty() {
            return Ok(0);
        }
        // One statement needs no transaction; several share one so the batch stays atomic.
        if cdrs.len() <= crate::plan::CDR_CHUNK {
            let mut conn = self.pool.acquire().await?;
            return Ok(crate::plan::insert_cdr_rows!(Sqlite, conn, cdrs));
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = crate::plan::insert_cdr_rows!(Sqlite, tx, cdrs);
        tx.commit().await?;
        Ok(inserted)
    }

    async fn list_cdrs(&self, filter: &CdrFilter) -> Result<Vec<CdrRecord>, StoreError> {
        let rows = rows::cdr_query::<sqlx::Sqlite>(filter).build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(rows::cdr).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            TempDir(std::env::temp_dir().join(format!("sb_store_unit_{name}_{}", std::process::id())))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn migrate_failure_rolls_back_that_migration_only() {
        const ONE: Migration = Migration { version: 1, name: "one", sql: "CREATE TABLE one (x INTEGER);" };
        const TWO: Migration =
            Migration { version: 2, name: "two", sql: "CREATE TABLE two (x INTEGER); THIS IS NOT SQL;" };
        let dir = TempDir::new("migrate_failure");
        let path = dir.0.join("db.sqlite");

        let err = SqliteStore::open_with_migrations(&path, &[ONE, TWO]).await.unwrap_err();
        assert!(matches!(err, StoreError::Migration { version: 2, name: "two", .. }), "{err}");

        let store = SqliteStore::open_with_migrations(&path, &[ONE]).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 1, "migration 1 stays applied");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('one', 'two')")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(tables, ["one"], "the failed migration's first statement was rolled back");
        store.close().await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("private");
        let path = dir.0.join("db.sqlite");
        SqliteStore::open(&path).await.unwrap().close().await;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
