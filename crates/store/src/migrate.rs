//! Embedded schema migrations, one list per backend.
//!
//! Each backend's runner (in `sqlite.rs` and `postgres.rs`) keeps a
//! `schema_migrations (version, name, applied_at_ms)` table, applies every migration
//! of its list that is not recorded there, in version order, each in its own
//! transaction together with its `schema_migrations` row, and refuses a database
//! that records a version it does not know ([`StoreError::SchemaTooNew`]).
//!
//! **Never edit a released migration; add a new one.** A database that already
//! applied a migration will not run it again, so an edit would leave old and new
//! databases with different schemas. To change the schema, add
//! `migrations/<backend>/NNNN_<what>.sql` for *both* backends and append it to both
//! lists below with the next version number.
//!
//! [`StoreError::SchemaTooNew`]: crate::StoreError::SchemaTooNew

use std::time::{SystemTime, UNIX_EPOCH};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Version, strictly increasing along the list.
    pub(crate) version: i64,
    /// Short name, recorded in `schema_migrations`.
    pub(crate) name: &'static str,
    /// The SQL; may hold several statements.
    pub(crate) sql: &'static str,
}

/// SQLite migrations, oldest first.
pub(crate) const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/sqlite/0001_init.sql") },
    Migration { version: 2, name: "cdr_quality", sql: include_str!("../migrations/sqlite/0002_cdr_quality.sql") },
    Migration { version: 3, name: "cdr_recording", sql: include_str!("../migrations/sqlite/0003_cdr_recording.sql") },
    Migration { version: 4, name: "media_security", sql: include_str!("../migrations/sqlite/0004_media_security.sql") },
];

/// PostgreSQL migrations, oldest first.
pub(crate) const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/postgres/0001_init.sql") },
    Migration { version: 2, name: "cdr_quality", sql: include_str!("../migrations/postgres/0002_cdr_quality.sql") },
    Migration { version: 3, name: "cdr_recording", sql: include_str!("../migrations/postgres/0003_cdr_recording.sql") },
    Migration {
        version: 4,
        name: "media_security",
        sql: include_str!("../migrations/postgres/0004_media_security.sql"),
    },
];

/// The highest version of a list (0 for an empty list).
pub(crate) fn latest(migrations: &[Migration]) -> i64 {
    migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Wall-clock time for `schema_migrations.applied_at_ms` (informational only).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_strictly_increasing_and_parallel() {
        for list in [SQLITE, POSTGRES] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
            assert_eq!(list.first().map(|m| m.version), Some(1));
        }
        let names = |l: &[Migration]| l.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(names(SQLITE), names(POSTGRES), "both backends must have the same migrations");
    }
}
