//! The one error type of the store.

use std::fmt;
use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error (connection lost, constraint violated, ...).
    Database(sqlx::Error),
    /// A schema migration failed; it was rolled back and later ones were not tried.
    Migration {
        /// Version of the failing migration.
        version: i64,
        /// Name of the failing migration.
        name: &'static str,
        /// What the database said.
        source: sqlx::Error,
    },
    /// The database has a migration applied that this build does not know: it was
    /// written by a newer Switchboard. Refusing to run on it is safer than guessing.
    SchemaTooNew {
        /// Highest version found in the database.
        found: i64,
        /// Highest version this build knows.
        known: i64,
    },
    /// The database location could not be understood. The text says why; it never
    /// contains the location itself, which may hold a password.
    InvalidUrl(String),
    /// The SQLite database file could not be created.
    CreateFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The directory for an SQLite file could not be created.
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when the database rejected the data itself (unique, foreign key, not-null
    /// or check constraint), as opposed to a failure of the database or the
    /// connection. Retrying the same operation will fail again.
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => !matches!(e.kind(), sqlx::error::ErrorKind::Other),
            _ => false,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Database(e) => write!(f, "database error: {e}"),
            StoreError::Migration { version, name, source } => {
                write!(f, "migration {version:04} ({name}) failed: {source}")
            }
            StoreError::SchemaTooNew { found, known } => write!(
                f,
                "database schema version {found} is newer than this build supports ({known}); upgrade Switchboard"
            ),
            StoreError::InvalidUrl(why) => write!(f, "invalid database location: {why}"),
            StoreError::CreateFile { path, source } => {
                write!(f, "cannot create database file {}: {source}", path.display())
            }
            StoreError::CreateDir { path, source } => {
                write!(f, "cannot create database directory {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Database(e) | StoreError::Migration { source: e, .. } => Some(e),
            StoreError::CreateDir { source, .. } | StoreError::CreateFile { source, .. } => Some(source),
            StoreError::SchemaTooNew { .. } | StoreError::InvalidUrl(_) => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}
