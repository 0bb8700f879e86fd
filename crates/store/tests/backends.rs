//! One test suite, run against both backends.
//!
//! Every test exists twice, `sqlite::<name>` and `postgres::<name>`. SQLite tests
//! use a fresh file in a fresh temporary directory, removed afterwards. PostgreSQL
//! tests use a fresh schema (put first in `search_path`) on the server at
//! `SWITCHBOARD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! dropped afterwards, so runs can overlap. If that server cannot be reached the
//! PostgreSQL tests fail, unless `SWITCHBOARD_SKIP_POSTGRES=1`.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use store::{
    BindingChange, BindingRecord, CdrFilter, CdrRecord, Cdrs, Directory, LegQuality, PostgresStore, Registrations,
    Store, StoreError, TenantRecord, UserUpsert,
};

// ---------------------------------------------------------------------------
// Backends under test
// ---------------------------------------------------------------------------

/// A database that tests can open (several times) and poke at directly.
trait Backend: Send + Sync + 'static {
    /// Opens the store on this database (running migrations).
    fn open(&self) -> impl Future<Output = Result<Store, StoreError>> + Send;
    /// Runs raw SQL on the database, bypassing the store.
    fn execute(&self, sql: &'static str) -> impl Future<Output = ()> + Send;
    /// This backend's first migration, as released.
    fn first_migration(&self) -> &'static str;
}

fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A database file in its own temporary directory, removed on drop.
struct SqliteBackend {
    dir: PathBuf,
}

impl SqliteBackend {
    fn new() -> Self {
        SqliteBackend { dir: std::env::temp_dir().join(unique_name("sb_store_test")) }
    }

    /// In a subdirectory that does not exist yet: opening must create it.
    fn path(&self) -> PathBuf {
        self.dir.join("nested").join("switchboard.db")
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Backend for SqliteBackend {
    async fn open(&self) -> Result<Store, StoreError> {
        Store::open_sqlite(&self.path()).await
    }

    fn first_migration(&self) -> &'static str {
        include_str!("../migrations/sqlite/0001_init.sql")
    }

    async fn execute(&self, sql: &'static str) {
        if let Some(dir) = self.path().parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let mut conn =
            SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(self.path()).create_if_missing(true))
                .await
                .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

/// A schema of its own on the test PostgreSQL server.
struct PgBackend {
    admin: PgConnectOptions,
    schema: String,
}

impl PgBackend {
    /// Creates the schema, or returns `None` when PostgreSQL tests are skipped.
    async fn new() -> Option<Self> {
        if std::env::var("SWITCHBOARD_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("SWITCHBOARD_SKIP_POSTGRES=1: PostgreSQL test skipped");
            return None;
        }
        let url = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let admin = PgConnectOptions::from_str(&url).unwrap();
        let mut conn = PgConnection::connect_with(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {url}: {e}\n\
                 Start it (or set SWITCHBOARD_TEST_POSTGRES_URL), or set SWITCHBOARD_SKIP_POSTGRES=1 to skip these tests."
            )
        });
        let schema = unique_name("sb_test");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        Some(PgBackend { admin, schema })
    }

    fn options(&self) -> PgConnectOptions {
        self.admin.clone().options([("search_path", &self.schema)])
    }

    async fn drop_schema(&self) {
        let mut conn = PgConnection::connect_with(&self.admin).await.unwrap();
        let sql = format!("DROP SCHEMA {} CASCADE", self.schema);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

impl Backend for PgBackend {
    async fn open(&self) -> Result<Store, StoreError> {
        Ok(Store::Postgres(PostgresStore::open_with(self.options()).await?))
    }

    fn first_migration(&self) -> &'static str {
        include_str!("../migrations/postgres/0001_init.sql")
    }

    async fn execute(&self, sql: &'static str) {
        let mut conn = PgConnection::connect_with(&self.options()).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

/// Declares every test once per backend. `store:` tests get an open store;
/// `backend:` tests get the backend and open (and reopen) stores themselves.
macro_rules! backend_tests {
    (store: [$($store_test:ident),* $(,)?], backend: [$($backend_test:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $store_test() {
                    let backend = super::SqliteBackend::new();
                    let store = super::Backend::open(&backend).await.unwrap();
                    super::$store_test(&store).await;
                    store.close().await;
                }
            )*
            $(
                #[tokio::test]
                async fn $backend_test() {
                    super::$backend_test(&super::SqliteBackend::new()).await;
                }
            )*
        }

        mod postgres {
            use std::sync::Arc;

            /// Runs `test` on a fresh schema and drops the schema afterwards, even
            /// when the test panics.
            async fn run<F, Fut>(test: F)
            where
                F: FnOnce(Arc<super::PgBackend>) -> Fut,
                Fut: std::future::Future<Output = ()> + Send + 'static,
            {
                let Some(backend) = super::PgBackend::new().await else { return };
                let backend = Arc::new(backend);
                let outcome = tokio::spawn(test(backend.clone())).await;
                backend.drop_schema().await;
                if let Err(e) = outcome {
                    std::panic::resume_unwind(e.into_panic());
                }
            }

            $(
                #[tokio::test]
                async fn $store_test() {
                    run(|backend| async move {
                        let store = super::Backend::open(&*backend).await.unwrap();
                        super::$store_test(&store).await;
                        store.close().await;
                    })
                    .await;
                }
            )*
            $(
                #[tokio::test]
                async fn $backend_test() {
                    run(|backend| async move { super::$backend_test(&*backend).await }).await;
                }
            )*
        }
    };
}

backend_tests! {
    store: [
        tenants_upsert_list_and_lookup,
        tenant_domain_is_unique,
        users_are_isolated_per_tenant,
        user_requires_existing_tenant,
        delete_config_users_keeps_listed_and_runtime_users,
        bindings_round_trip_every_field,
        bindings_upsert_replaces_same_key,
        bindings_remove_and_remove_all,
        bindings_batch_with_invalid_change_applies_nothing,
        bindings_load_skips_expired_and_purge_deletes_them,
        cdrs_insert_is_idempotent_on_id,
        cdrs_list_filters_orders_and_limits,
    ],
    backend: [
        migrations_are_idempotent_on_reopen,
        data_persists_across_close_and_reopen,
        newer_schema_is_refused,
        version_1_database_is_upgraded_keeping_its_cdrs,
    ],
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn user(tenant_id: i64, extension: &str, managed_by_config: bool) -> UserUpsert {
    UserUpsert {
        tenant_id,
        extension: extension.to_owned(),
        display_name: format!("User {extension}"),
        ha1_md5: format!("md5-{tenant_id}-{extension}"),
        ha1_sha256: format!("sha256-{tenant_id}-{extension}"),
        managed_by_config,
        srtp: if extension.ends_with('1') { "required" } else { "optional" }.to_owned(),
        dtmf: if extension.ends_with('1') { "inband" } else { "auto" }.to_owned(),
    }
}

fn binding(tenant_id: i64, extension: &str, contact: &str, expires_at_ms: i64) -> BindingRecord {
    BindingRecord {
        tenant_id,
        extension: extension.to_owned(),
        contact: contact.to_owned(),
        expires_at_ms,
        call_id: format!("call-{contact}"),
        cseq: 1,
        q: None,
        instance_id: None,
        reg_id: None,
        transport: "udp".to_owned(),
        source: "192.0.2.10:5060".to_owned(),
        local: "192.0.2.1:5060".to_owned(),
        connection_id: None,
        user_agent: None,
        registered_at_ms: 1_000,
    }
}

fn cdr(id: &str, tenant_id: i64, started_at_ms: i64) -> CdrRecord {
    CdrRecord {
        id: id.to_owned(),
        tenant_id,
        call_id: format!("call-{id}"),
        caller: "100".to_owned(),
        callee: "101".to_owned(),
        started_at_ms,
        answered_at_ms: Some(started_at_ms + 2_000),
        ended_at_ms: started_at_ms + 62_000,
        duration_ms: 62_000,
        billable_ms: 60_000,
        disposition: "answered".to_owned(),
        hangup_cause: "BYE".to_owned(),
        hangup_status: None,
        initiator: "caller".to_owned(),
        packets_a_to_b: 3_000,
        packets_b_to_a: 2_990,
        bytes_a_to_b: 516_000,
        bytes_b_to_a: 514_280,
        quality_a: LegQuality { loss_pct: Some(0.25), jitter_ms: Some(3.125), rtt_ms: Some(41.5), mos: Some(4.3) },
        quality_b: LegQuality::default(),
        recording: Some(format!("/var/lib/switchboard/recordings/{id}.wav")),
        a_srtp: Some("AES_CM_128_HMAC_SHA1_80".to_owned()),
        b_srtp: None,
        a_srtp_rejected: 2,
        b_srtp_rejected: 0,
    }
}

fn upsert(b: &BindingRecord) -> BindingChange {
    BindingChange::Upsert(b.clone())
}

/// A tenant with users "100" and "101".
async fn tenant_with_users<S: Directory>(s: &S, name: &str) -> TenantRecord {
    let tenant = s.upsert_tenant(name, &format!("{name}.example")).await.unwrap();
    for extension in ["100", "101"] {
        s.upsert_user(&user(tenant.id, extension, true)).await.unwrap();
    }
    tenant
}

fn ids(cdrs: &[CdrRecord]) -> Vec<&str> {
    cdrs.iter().map(|c| c.id.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Directory
// ---------------------------------------------------------------------------

async fn tenants_upsert_list_and_lookup<S: Directory + Registrations + Cdrs>(s: &S) {
    assert!(s.list_tenants().await.unwrap().is_empty());

    let acme = s.upsert_tenant("acme", "PBX.Acme.Example").await.unwrap();
    assert_eq!(acme.name, "acme");
    assert_eq!(acme.domain, "pbx.acme.example", "domain is stored lower-case");
    let globex = s.upsert_tenant("globex", "globex.example").await.unwrap();
    assert_ne!(acme.id, globex.id);

    // Upserting an existing name keeps the id and changes the domain.
    let moved = s.upsert_tenant("acme", "voice.acme.example").await.unwrap();
    assert_eq!(moved.id, acme.id);
    assert_eq!(moved.domain, "voice.acme.example");

    assert_eq!(s.list_tenants().await.unwrap(), vec![moved.clone(), globex.clone()]);
    assert_eq!(s.tenant_by_domain("VOICE.acme.example").await.unwrap(), Some(moved));
    assert_eq!(s.tenant_by_domain("globex.example").await.unwrap(), Some(globex));
    assert_eq!(s.tenant_by_domain("pbx.acme.example").await.unwrap(), None, "old domain is gone");
    assert_eq!(s.tenant_by_domain("nowhere.example").await.unwrap(), None);
}

async fn tenant_domain_is_unique<S: Directory + Registrations + Cdrs>(s: &S) {
    s.upsert_tenant("acme", "acme.example").await.unwrap();
    let err = s.upsert_tenant("other", "ACME.example").await.unwrap_err();
    assert!(err.is_constraint_violation(), "{err}");
    assert_eq!(s.list_tenants().await.unwrap().len(), 1);
}

async fn users_are_isolated_per_tenant<S: Directory + Registrations + Cdrs>(s: &S) {
    let acme = s.upsert_tenant("acme", "acme.example").await.unwrap();
    let globex = s.upsert_tenant("globex", "globex.example").await.unwrap();

    let a100 = s.upsert_user(&user(acme.id, "100", true)).await.unwrap();
    let g100 = s.upsert_user(&user(globex.id, "100", false)).await.unwrap();
    let a101 = s.upsert_user(&user(acme.id, "101", true)).await.unwrap();
    assert_ne!(a100.id, g100.id, "same extension in two tenants is two users");
    assert_eq!(a100.ha1_md5, format!("md5-{}-100", acme.id));
    assert_eq!(g100.ha1_sha256, format!("sha256-{}-100", globex.id));
    assert!(a100.managed_by_config);
    assert!(!g100.managed_by_config);

    assert_eq!(s.user(acme.id, "100").await.unwrap(), Some(a100.clone()));
    assert_eq!(s.user(globex.id, "100").await.unwrap(), Some(g100.clone()));
    assert_eq!(s.user(globex.id, "101").await.unwrap(), None);
    assert_eq!(s.list_users(acme.id).await.unwrap(), vec![a100.clone(), a101]);
    assert_eq!(s.list_users(globex.id).await.unwrap(), vec![g100.clone()]);

    // Upsert replaces the other fields in place.
    let changed = UserUpsert {
        display_name: "Reception".to_owned(),
        ha1_md5: "new-md5".to_owned(),
        ha1_sha256: "new-sha".to_owned(),
        managed_by_config: false,
        ..user(acme.id, "100", true)
    };
    let a100b = s.upsert_user(&changed).await.unwrap();
    assert_eq!(a100b.id, a100.id);
    assert_eq!(
        (a100b.display_name.as_str(), a100b.ha1_md5.as_str(), a100b.ha1_sha256.as_str(), a100b.managed_by_config),
        ("Reception", "new-md5", "new-sha", false)
    );
    assert_eq!(s.user(acme.id, "100").await.unwrap(), Some(a100b));
    assert_eq!(s.user(globex.id, "100").await.unwrap(), Some(g100), "the other tenant's 100 is untouched");
}

async fn user_requires_existing_tenant<S: Directory + Registrations + Cdrs>(s: &S) {
    let err = s.upsert_user(&user(4242, "100", true)).await.unwrap_err();
    assert!(err.is_constraint_violation(), "{err}");
}

async fn delete_config_users_keeps_listed_and_runtime_users<S: Directory + Registrations + Cdrs>(s: &S) {
    let acme = s.upsert_tenant("acme", "acme.example").await.unwrap();
    let globex = s.upsert_tenant("globex", "globex.example").await.unwrap();
    for extension in ["100", "101", "102"] {
        s.upsert_user(&user(acme.id, extension, true)).await.unwrap();
        s.upsert_user(&user(globex.id, extension, true)).await.unwrap();
    }
    s.upsert_user(&user(acme.id, "200", false)).await.unwrap();
    s.save_bindings(&[upsert(&binding(acme.id, "101", "sip:101@192.0.2.10", 10_000))]).await.unwrap();

    let deleted = s.delete_config_users_except(acme.id, &["100".to_owned(), "999".to_owned()]).await.unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<String> = s.list_users(acme.id).await.unwrap().into_iter().map(|u| u.extension).collect();
    assert_eq!(left, ["100", "200"], "listed and run-time users stay");
    assert_eq!(s.list_users(globex.id).await.unwrap().len(), 3, "other tenant untouched");
    assert!(s.load_bindings(0).await.unwrap().is_empty(), "a deleted user's bindings go with it");

    assert_eq!(s.delete_config_users_except(acme.id, &[]).await.unwrap(), 1);
    let left: Vec<String> = s.list_users(acme.id).await.unwrap().into_iter().map(|u| u.extension).collect();
    assert_eq!(left, ["200"]);
}

// ---------------------------------------------------------------------------
// Registrations
// ---------------------------------------------------------------------------

async fn bindings_round_trip_every_field<S: Directory + Registrations + Cdrs>(s: &S) {
    let t = tenant_with_users(s, "acme").await;
    let full = BindingRecord {
        tenant_id: t.id,
        extension: "100".to_owned(),
        contact: "<sip:100@[2001:db8::10]:5061;transport=tls>;+sip.instance=\"<urn:uuid:1>\"".to_owned(),
        expires_at_ms: 1_700_000_360_000,
        call_id: "a84b4c76e66710@pc33".to_owned(),
        cseq: 314_159,
        q: Some(0.7),
        instance_id: Some("<urn:uuid:00000000-0000-1000-8000-000a95a0e128>".to_owned()),
        reg_id: Some(1),
        transport: "tls".to_owned(),
        source: "[2001:db8::10]:50123".to_owned(),
        local: "[2001:db8::1]:5061".to_owned(),
        connection_id: Some(9_007_199_254_740_993),
        user_agent: Some("Öffice Phone/1.0 \"beta\"".to_owned()),
        registered_at_ms: 1_700_000_000_000,
    };
    let bare = binding(t.id, "101", "sip:101@192.0.2.11:5060", 1_700_000_360_000);
    s.save_bindings(&[upsert(&full), upsert(&bare)]).await.unwrap();
    assert_eq!(s.load_bindings(1_700_000_000_000).await.unwrap(), vec![full, bare]);
}

async fn bindings_upsert_replaces_same_key<S: Directory + Registrations + Cdrs>(s: &S) {
    let t = tenant_with_users(s, "acme").await;
    let first = binding(t.id, "100", "sip:100@192.0.2.10", 10_000);
    s.save_bindings(&[upsert(&first)]).await.unwrap();

    let refreshed = BindingRecord { expires_at_ms: 20_000, cseq: 2, q: Some(0.5), ..first.clone() };
    let second_device = binding(t.id, "100", "sip:100@192.0.2.20", 15_000);
    s.save_bindings(&[upsert(&refreshed), upsert(&second_device)]).await.unwrap();
    assert_eq!(s.load_bindings(0).await.unwrap(), vec![refreshed.clone(), second_device.clone()]);

    // Within one batch, later changes win.
    let again = BindingRecord { cseq: 3, ..refreshed.clone() };
    let last = BindingRecord { cseq: 4, ..refreshed };
    s.save_bindings(&[upsert(&again), upsert(&last)]).await.unwrap();
    assert_eq!(s.load_bindings(0).await.unwrap(), vec![last, second_device]);
}

async fn bindings_remove_and_remove_all<S: Directory + Registrations + Cdrs>(s: &S) {
    let acme = tenant_with_users(s, "acme").await;
    let globex = tenant_with_users(s, "globex").await;
    let a1 = binding(acme.id, "100", "sip:100@192.0.2.10", 10_000);
    let a2 = binding(acme.id, "100", "sip:100@192.0.2.20", 10_000);
    let a3 = binding(acme.id, "101", "sip:101@192.0.2.30", 10_000);
    let g1 = binding(globex.id, "100", "sip:100@192.0.2.10", 10_000);
    s.save_bindings(&[upsert(&a1), upsert(&a2), upsert(&a3), upsert(&g1)]).await.unwrap();

    s.save_bindings(&[BindingChange::Remove {
        tenant_id: acme.id,
        extension: "100".to_owned(),
        contact: a1.contact.clone(),
    }])
    .await
    .unwrap();
    assert_eq!(s.load_bindings(0).await.unwrap(), vec![a2.clone(), a3.clone(), g1.clone()]);

    // Removing what is not there is not an error.
    s.save_bindings(&[BindingChange::Remove {
        tenant_id: acme.id,
        extension: "100".to_owned(),
        contact: "sip:nobody@192.0.2.99".to_owned(),
    }])
    .await
    .unwrap();

    s.save_bindings(&[BindingChange::RemoveAll { tenant_id: acme.id, extension: "100".to_owned() }]).await.unwrap();
    assert_eq!(s.load_bindings(0).await.unwrap(), vec![a3, g1], "only acme/100 is cleared, not globex/100");

    // RemoveAll then Upsert in one batch: the user ends with just the new contact.
    let fresh = binding(acme.id, "100", "sip:100@192.0.2.40", 10_000);
    s.save_bindings(&[BindingChange::RemoveAll { tenant_id: acme.id, extension: "100".to_owned() }, upsert(&fresh)])
        .await
        .unwrap();
    assert!(s.load_bindings(0).await.unwrap().contains(&fresh));
}

async fn bindings_batch_with_invalid_change_applies_nothing<S: Directory + Registrations + Cdrs>(s: &S) {
    let t = tenant_with_users(s, "acme").await;
    let kept = binding(t.id, "101", "sip:101@192.0.2.11", 10_000);
    s.save_bindings(&[upsert(&kept)]).await.unwrap();
    let good = binding(t.id, "100", "sip:100@192.0.2.10", 10_000);

    let bad_batches = [
        // q outside 0..=1 (check constraint), after a valid upsert and a removal.
        vec![
            upsert(&good),
            BindingChange::RemoveAll { tenant_id: t.id, extension: "101".to_owned() },
            upsert(&BindingRecord { q: Some(1.5), ..binding(t.id, "100", "sip:100@192.0.2.20", 10_000) }),
        ],
        // A user that does not exist (foreign key).
        vec![upsert(&good), upsert(&binding(t.id, "999", "sip:999@192.0.2.99", 10_000))],
        // An empty contact.
        vec![upsert(&good), upsert(&binding(t.id, "100", "", 10_000))],
    ];
    for batch in bad_batches {
        let err = s.save_bindings(&batch).await.unwrap_err();
        assert!(err.is_constraint_violation(), "{err}");
        assert_eq!(s.load_bindings(0).await.unwrap(), vec![kept.clone()], "nothing of the failed batch applied");
    }

    // The store is still usable afterwards.
    s.save_bindings(&[upsert(&good)]).await.unwrap();
    assert_eq!(s.load_bindings(0).await.unwrap(), vec![good, kept]);
}

async fn bindings_load_skips_expired_and_purge_deletes_them<S: Directory + Registrations + Cdrs>(s: &S) {
    let t = tenant_with_users(s, "acme").await;
    let b1 = binding(t.id, "100", "sip:100@192.0.2.1", 1_000);
    let b2 = binding(t.id, "100", "sip:100@192.0.2.2", 2_000);
    let b3 = binding(t.id, "101", "sip:101@192.0.2.3", 3_000);
    s.save_bindings(&[upsert(&b1), upsert(&b2), upsert(&b3)]).await.unwrap();

    assert_eq!(s.load_bindings(999).await.unwrap().len(), 3);
    assert_eq!(s.load_bindings(2_000).await.unwrap(), vec![b3.clone()], "expiring exactly now counts as expired");
    assert!(s.load_bindings(3_000).await.unwrap().is_empty());

    // Load does not delete anything; purge does.
    assert_eq!(s.purge_expired(2_000).await.unwrap(), 2);
    assert_eq!(s.load_bindings(0).await.unwrap(), vec![b3]);
    assert_eq!(s.purge_expired(2_000).await.unwrap(), 0);
    assert_eq!(s.purge_expired(i64::MAX).await.unwrap(), 1);
    assert!(s.load_bindings(i64::MIN).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// CDRs
// ---------------------------------------------------------------------------

async fn cdrs_insert_is_idempotent_on_id<S: Directory + Registrations + Cdrs>(s: &S) {
    let a = CdrRecord {
        answered_at_ms: None,
        billable_ms: 0,
        disposition: "busy".to_owned(),
        hangup_cause: "486 Busy Here".to_owned(),
        hangup_status: Some(486),
        initiator: "callee".to_owned(),
        ..cdr("a", 1, 1_000)
    };
    let b = cdr("b", 1, 2_000);
    assert_eq!(s.insert_cdrs(&[a.clone(), b.clone()]).await.unwrap(), 2);

    // A retried batch with a changed copy of "a" keeps the stored one.
    let a_again = CdrRecord { caller: "changed".to_owned(), ..a.clone() };
    let c = cdr("c", 1, 3_000);
    assert_eq!(s.insert_cdrs(&[a_again, c.clone(), b.clone()]).await.unwrap(), 1);
    assert_eq!(s.insert_cdrs(&[]).await.unwrap(), 0);

    assert_eq!(s.list_cdrs(&CdrFilter::default()).await.unwrap(), vec![c, b, a]);
}

async fn cdrs_list_filters_orders_and_limits<S: Directory + Registrations + Cdrs>(s: &S) {
    let cdrs = [
        cdr("t1-old", 1, 1_000),
        cdr("t2-mid", 2, 2_000),
        cdr("t1-mid-a", 1, 2_000),
        cdr("t1-mid-b", 1, 2_000),
        cdr("t1-new", 1, 3_000),
        cdr("t2-new", 2, 4_000),
    ];
    s.insert_cdrs(&cdrs).await.unwrap();
    let list = |tenant_id, since_ms, limit| async move {
        s.list_cdrs(&CdrFilter { tenant_id, since_ms, limit }).await.unwrap()
    };

    assert_eq!(ids(&list(None, None, None).await), ["t2-new", "t1-new", "t2-mid", "t1-mid-b", "t1-mid-a", "t1-old"]);
    assert_eq!(ids(&list(Some(1), None, None).await), ["t1-new", "t1-mid-b", "t1-mid-a", "t1-old"]);
    assert_eq!(ids(&list(Some(2), None, None).await), ["t2-new", "t2-mid"]);
    assert_eq!(ids(&list(Some(3), None, None).await), Vec::<&str>::new());
    assert_eq!(ids(&list(None, Some(2_000), None).await), ["t2-new", "t1-new", "t2-mid", "t1-mid-b", "t1-mid-a"]);
    assert_eq!(ids(&list(Some(1), Some(2_001), None).await), ["t1-new"]);
    assert_eq!(ids(&list(None, None, Some(2)).await), ["t2-new", "t1-new"]);
    assert_eq!(ids(&list(Some(1), Some(1_500), Some(2)).await), ["t1-new", "t1-mid-b"]);
    assert!(list(None, None, Some(0)).await.is_empty());
    assert_eq!(list(Some(1), None, Some(1)).await, vec![cdrs[4].clone()], "whole record comes back");
}

// ---------------------------------------------------------------------------
// Opening, migrations, persistence
// ---------------------------------------------------------------------------

async fn migrations_are_idempotent_on_reopen(b: &impl Backend) {
    let s = b.open().await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), 4);
    let t = s.upsert_tenant("acme", "acme.example").await.unwrap();
    s.close().await;

    for _ in 0..2 {
        let s = b.open().await.unwrap();
        assert_eq!(s.schema_version().await.unwrap(), 4);
        assert_eq!(s.list_tenants().await.unwrap(), vec![t.clone()], "reopening does not re-run migrations");
        s.close().await;
    }
}

async fn data_persists_across_close_and_reopen(b: &impl Backend) {
    let s = b.open().await.unwrap();
    let t = tenant_with_users(&s, "acme").await;
    let live = binding(t.id, "100", "sip:100@192.0.2.10", 10_000);
    let gone = binding(t.id, "101", "sip:101@192.0.2.11", 10_000);
    s.save_bindings(&[upsert(&live), upsert(&gone)]).await.unwrap();
    s.save_bindings(&[BindingChange::Remove { tenant_id: t.id, extension: "101".to_owned(), contact: gone.contact }])
        .await
        .unwrap();
    s.insert_cdrs(&[cdr("x", t.id, 5_000)]).await.unwrap();
    let users = s.list_users(t.id).await.unwrap();
    s.close().await;

    let s = b.open().await.unwrap();
    assert_eq!(s.list_tenants().await.unwrap(), vec![t.clone()]);
    assert_eq!(s.list_users(t.id).await.unwrap(), users);
    assert_eq!(s.load_bindings(0).await.unwrap(), vec![live]);
    assert_eq!(s.list_cdrs(&CdrFilter::default()).await.unwrap(), vec![cdr("x", t.id, 5_000)]);
    s.close().await;
}

async fn version_1_database_is_upgraded_keeping_its_cdrs(b: &impl Backend) {
    // A database as the first release left it: schema 1, one tenant, one CDR.
    b.execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)")
        .await;
    b.execute(b.first_migration()).await;
    b.execute("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (1, 'init', 0)").await;
    let s = b.open().await.unwrap();
    let t = tenant_with_users(&s, "acme").await;
    s.close().await;
    // Written by the old code: the columns of schema 1 only.
    let insert = format!(
        "INSERT INTO cdrs (id, tenant_id, call_id, caller, callee, started_at_ms, answered_at_ms, ended_at_ms, \
         duration_ms, billable_ms, disposition, hangup_cause, hangup_status, initiator, packets_a_to_b, packets_b_to_a, \
         bytes_a_to_b, bytes_b_to_a) VALUES ('old', {}, 'c', '100', '101', 1000, 2000, 5000, 4000, 3000, 'answered', \
         'BYE', NULL, 'caller', 10, 20, 30, 40)",
        t.id
    );
    b.execute(Box::leak(insert.into_boxed_str())).await;
    let s = b.open().await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), 4);
    let cdrs = s.list_cdrs(&CdrFilter::default()).await.unwrap();
    assert_eq!(cdrs.len(), 1);
    assert_eq!((cdrs[0].id.as_str(), cdrs[0].packets_b_to_a, cdrs[0].billable_ms), ("old", 20, 3000));
    assert_eq!((cdrs[0].quality_a, cdrs[0].recording.clone()), (LegQuality::default(), None));
    assert_eq!((cdrs[0].a_srtp.clone(), cdrs[0].b_srtp_rejected), (None, 0));
    s.close().await;
}

async fn newer_schema_is_refused(b: &impl Backend) {
    b.open().await.unwrap().close().await;
    b.execute("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (9999, 'from the future', 0)").await;
    match b.open().await {
        Err(StoreError::SchemaTooNew { found: 9999, known: 4 }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// SQLite only
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_open_dispatches_on_location_and_uses_wal() {
    let backend = SqliteBackend::new();
    let path = backend.path();
    let location = format!("sqlite:{}", path.display());
    let s = Store::open(&location).await.unwrap();
    assert!(matches!(s, Store::Sqlite(_)));
    assert!(path.exists(), "file and parent directories are created");
    s.upsert_tenant("acme", "acme.example").await.unwrap();
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    assert!(PathBuf::from(wal).exists(), "journal_mode is WAL");
    s.close().await;

    // A plain path opens the same file.
    let s = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(s.list_tenants().await.unwrap().len(), 1);
    s.close().await;
}

#[tokio::test]
async fn open_rejects_unknown_scheme() {
    let err = Store::open("mysql://root@127.0.0.1/db").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err}");
}
