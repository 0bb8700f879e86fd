//! Persistence for Switchboard: tenants and users (the directory), registration
//! bindings and call detail records.
//!
//! The rest of the system sees three repository traits, [`Directory`],
//! [`Registrations`] and [`Cdrs`], implemented by two backends: [`SqliteStore`]
//! (one embedded file, the default) and [`PostgresStore`]. [`Store`] holds either
//! and is what the server keeps in its state. Both backends pass the same test
//! suite (`tests/backends.rs`).
//!
//! Each backend embeds its own SQL migrations (`migrations/<backend>/`) and applies
//! them when it opens; `src/migrate.rs` lists them and states the rule: never edit a
//! released migration; add a new one.
//!
//! Records are plain data; times are `i64` unix milliseconds supplied by the caller
//! (the store does not read the clock for data, only for the informational
//! `schema_migrations.applied_at_ms`).

use std::future::Future;
use std::path::Path;

mod error;
mod migrate;
mod model;
mod plan;
mod postgres;
mod rows;
mod sqlite;

pub use error::StoreError;
pub use model::{BindingChange, BindingRecord, CdrFilter, CdrRecord, LegQuality, TenantRecord, UserRecord, UserUpsert};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Tenants and their users.
pub trait Directory {
    /// Creates the tenant `name`, or changes the domain of the existing one.
    /// The domain is stored lower-case. Fails with a constraint violation if another
    /// tenant has the domain.
    fn upsert_tenant(&self, name: &str, domain: &str) -> impl Future<Output = Result<TenantRecord, StoreError>> + Send;

    /// Every tenant, in creation order.
    fn list_tenants(&self) -> impl Future<Output = Result<Vec<TenantRecord>, StoreError>> + Send;

    /// The tenant serving `domain` (compared case-insensitively).
    fn tenant_by_domain(&self, domain: &str) -> impl Future<Output = Result<Option<TenantRecord>, StoreError>> + Send;

    /// Creates the user `(tenant_id, extension)` or replaces its other fields.
    /// Fails with a constraint violation if the tenant does not exist.
    fn upsert_user(&self, user: &UserUpsert) -> impl Future<Output = Result<UserRecord, StoreError>> + Send;

    /// The users of one tenant, by extension.
    fn list_users(&self, tenant_id: i64) -> impl Future<Output = Result<Vec<UserRecord>, StoreError>> + Send;

    /// One user.
    fn user(
        &self,
        tenant_id: i64,
        extension: &str,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;

    /// Deletes the users of `tenant_id` that are managed by the configuration file
    /// and whose extension is not in `keep_extensions` (the file no longer lists
    /// them), with their bindings. Users created at run time are kept. Returns how
    /// many were deleted.
    fn delete_config_users_except(
        &self,
        tenant_id: i64,
        keep_extensions: &[String],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Registration bindings (the location table), written through from the
/// registrar's memory.
pub trait Registrations {
    /// Applies `changes` in order, in one transaction: all of them or, on error,
    /// none. When this returns `Ok` the changes are durable (see [`SqliteStore`] for
    /// what SQLite guarantees), so a REGISTER may be answered.
    ///
    /// An `Upsert` for a user that does not exist, or with invalid data (a q outside
    /// 0.0..=1.0, an empty contact or transport, a negative CSeq) fails the whole
    /// batch with [`StoreError::is_constraint_violation`] true; a batching writer
    /// can then retry the changes one by one to isolate the bad one.
    fn save_bindings(&self, changes: &[BindingChange]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every binding with `expires_at_ms > now_ms`, by tenant, extension, contact.
    fn load_bindings(&self, now_ms: i64) -> impl Future<Output = Result<Vec<BindingRecord>, StoreError>> + Send;

    /// Deletes the bindings with `expires_at_ms <= now_ms`; returns how many.
    fn purge_expired(&self, now_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Call detail records.
pub trait Cdrs {
    /// Inserts `cdrs` in one transaction. A record whose id is already stored is
    /// skipped (the stored one is kept), so a retried batch is harmless. Returns how
    /// many were new.
    fn insert_cdrs(&self, cdrs: &[CdrRecord]) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The CDRs matching `filter`, newest (`started_at_ms`) first, ties by id
    /// descending.
    fn list_cdrs(&self, filter: &CdrFilter) -> impl Future<Output = Result<Vec<CdrRecord>, StoreError>> + Send;
}

/// The store the server uses: one of the two backends.
#[derive(Debug, Clone)]
pub enum Store {
    /// An embedded SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    Postgres(PostgresStore),
}

/// Where a database location string points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

impl<'a> Location<'a> {
    fn parse(location: &'a str) -> Result<Self, StoreError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return Ok(Location::Postgres(location));
        }
        let path = location.strip_prefix("sqlite://").or_else(|| location.strip_prefix("sqlite:")).unwrap_or(location);
        if let Some((scheme, _)) = path.split_once("://") {
            return Err(StoreError::InvalidUrl(format!(
                "unsupported scheme {scheme:?}: use postgres://, postgresql://, sqlite: or a file path"
            )));
        }
        if path.is_empty() {
            return Err(StoreError::InvalidUrl("empty SQLite path".to_owned()));
        }
        Ok(Location::Sqlite(Path::new(path)))
    }
}

impl Store {
    /// Opens the database at `location`: a `postgres://` or `postgresql://` URL, or
    /// an SQLite file given as `sqlite:PATH`, `sqlite://PATH` or a plain path.
    pub async fn open(location: &str) -> Result<Self, StoreError> {
        match Location::parse(location)? {
            Location::Sqlite(path) => Self::open_sqlite(path).await,
            Location::Postgres(url) => Self::open_postgres(url).await,
        }
    }

    /// Opens (creating if needed) the SQLite database file at `path`; see
    /// [`SqliteStore::open`].
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(Store::Sqlite(SqliteStore::open(path).await?))
    }

    /// Connects to the PostgreSQL database at `url`; see [`PostgresStore::open`].
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        Ok(Store::Postgres(PostgresStore::open(url).await?))
    }

    /// Closes every connection, waiting for running queries to finish.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }

    /// The highest migration version applied to the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.schema_version().await,
            Store::Postgres(s) => s.schema_version().await,
        }
    }
}

/// Forwards a trait method of [`Store`] to the backend it holds.
macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Directory for Store {
    async fn upsert_tenant(&self, name: &str, domain: &str) -> Result<TenantRecord, StoreError> {
        delegate!(self.upsert_tenant(name, domain))
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        delegate!(self.list_tenants())
    }

    async fn tenant_by_domain(&self, domain: &str) -> Result<Option<TenantRecord>, StoreError> {
        delegate!(self.tenant_by_domain(domain))
    }

    async fn upsert_user(&self, user: &UserUpsert) -> Result<UserRecord, StoreError> {
        delegate!(self.upsert_user(user))
    }

    async fn list_users(&self, tenant_id: i64) -> Result<Vec<UserRecord>, StoreError> {
        delegate!(self.list_users(tenant_id))
    }

    async fn user(&self, tenant_id: i64, extension: &str) -> Result<Option<UserRecord>, StoreError> {
        delegate!(self.user(tenant_id, extension))
    }

    async fn delete_config_users_except(&self, tenant_id: i64, keep_extensions: &[String]) -> Result<u64, StoreError> {
        delegate!(self.delete_config_users_except(tenant_id, keep_extensions))
    }
}

impl Registrations for Store {
    async fn save_bindings(&self, changes: &[BindingChange]) -> Result<(), StoreError> {
        delegate!(self.save_bindings(changes))
    }

    async fn load_bindings(&self, now_ms: i64) -> Result<Vec<BindingRecord>, StoreError> {
        delegate!(self.load_bindings(now_ms))
    }

    async fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        delegate!(self.purge_expired(now_ms))
    }
}

impl Cdrs for Store {
    async fn insert_cdrs(&self, cdrs: &[CdrRecord]) -> Result<u64, StoreError> {
        delegate!(self.insert_cdrs(cdrs))
    }

    async fn list_cdrs(&self, filter: &CdrFilter) -> Result<Vec<CdrRecord>, StoreError> {
        delegate!(self.list_cdrs(filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_postgres_urls() {
        assert_eq!(Location::parse("postgres://u@h/db").unwrap(), Location::Postgres("postgres://u@h/db"));
        assert_eq!(Location::parse("postgresql://h/db").unwrap(), Location::Postgres("postgresql://h/db"));
    }

    #[test]
    fn location_sqlite_forms() {
        assert_eq!(Location::parse("sqlite:/var/lib/sb.db").unwrap(), Location::Sqlite(Path::new("/var/lib/sb.db")));
        assert_eq!(Location::parse("sqlite:///var/lib/sb.db").unwrap(), Location::Sqlite(Path::new("/var/lib/sb.db")));
        assert_eq!(Location::parse("sqlite:data/sb.db").unwrap(), Location::Sqlite(Path::new("data/sb.db")));
        assert_eq!(Location::parse("data/sb.db").unwrap(), Location::Sqlite(Path::new("data/sb.db")));
    }

    #[test]
    fn location_rejects_unknown_scheme_and_empty_path() {
        for bad in ["mysql://h/db", "", "sqlite:", "sqlite://"] {
            assert!(matches!(Location::parse(bad), Err(StoreError::InvalidUrl(_))), "{bad:?}");
        }
    }

    #[test]
    fn invalid_url_message_hides_the_location() {
        let err = Location::parse("mysql://user:secret@h/db").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
