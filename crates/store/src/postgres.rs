//! The PostgreSQL backend.
//!
//! Tables live in the first schema of the connection's `search_path` (`public` by
//! default; tests give each run its own schema through
//! [`PgConnectOptions::options`]). Commits use the server's `synchronous_commit`
//! setting, durable by default.

use std::str::FromStr;

use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::migrate::{self, Migration};
use crate::model::{BindingChange, BindingRecord, CdrFilter, CdrRecord, TenantRecord, UserRecord, UserUpsert};
use crate::{Cdrs, Directory, Registrations, StoreError, rows};

/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 8;
/// Key of the transaction-level advisory lock that serialises migration runners
/// (several Switchboard processes may start at once on one database).
const MIGRATION_LOCK: i64 = 0x5357_4254_4d49_4752; // "SWBTMIGR"

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`,
    /// with the query parameters libpq knows) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("not a valid PostgreSQL URL: {e}")))?;
        Self::open_with(options).await
    }

    /// Connects with explicit options and applies pending migrations.
    pub async fn open_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).connect_with(options).await?;
        let store = PostgresStore { pool };
        if let Err(e) = store.migrate(migrate::POSTGRES).await {
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
    /// transaction (see `src/migrate.rs`). Every transaction first takes an advisory
    /// lock, so concurrent runners apply each migration once.
    async fn migrate(&self, migrations: &[Migration]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let found = self.schema_version().await?;
        let known = migrate::latest(migrations);
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        for migration in migrations {
            let failed = |source| StoreError::Migration { version: migration.version, name: migration.name, source };
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
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

impl Directory for PostgresStore {
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
        let done =
            sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND managed_by_config AND NOT (extension = ANY($2))")
                .bind(tenant_id)
                .bind(keep_extensions)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}

impl Registrations for PostgresStore {
    async fn save_bindings(&self, changes: &[BindingChange]) -> Result<(), StoreError> {
        let plan = crate::plan::plan(changes);
        match plan.statements() {
            0 => {}
            // One statement is atomic on its own: no transaction round trips.
            1 => {
                let mut conn = self.pool.acquire().await?;
                crate::plan::apply_plan!(Postgres, conn, &plan);
            }
            _ => {
                let mut tx = self.pool.begin().await?;
                crate::plan::apply_plan!(Postgres, tx, &plan);
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

impl Cdrs for PostgresStore {
    async fn insert_cdrs(&self, cdrs: &[CdrRecord]) -> Result<u64, StoreError> {
        if cdrs.is_empty() {
            return Ok(0);
        }
        // One statement needs no transaction; several share one so the batch stays atomic.
        if cdrs.len() <= crate::plan::CDR_CHUNK {
            let mut conn = self.pool.acquire().await?;
            return Ok(crate::plan::insert_cdr_rows!(Postgres, conn, cdrs));
        }
        let mut tx = self.pool.begin().await?;
        let inserted = crate::plan::insert_cdr_rows!(Postgres, tx, cdrs);
        tx.commit().await?;
        Ok(inserted)
    }

    async fn list_cdrs(&self, filter: &CdrFilter) -> Result<Vec<CdrRecord>, StoreError> {
        let rows = rows::cdr_query::<Postgres>(filter).build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(rows::cdr).collect::<Result<_, _>>()?)
    }
}
