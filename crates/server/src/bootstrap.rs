//! Start-up: open the store, make it match the configuration (configuration as code),
//! create the demo tenant on first start, and read back what call control needs.

use std::fmt;

use pbx::directory::{Directory, Tenant, User};
use sip::auth::Algorithm;
use store::{Directory as _, Store, StoreError, UserUpsert};

use crate::config::{Config, DtmfSetting, SrtpSetting};

/// Name and domain of the demo tenant of the embedded default.
pub const DEMO_TENANT: &str = "demo";
/// Domain of the demo tenant (phones may also use the server's IP address).
pub const DEMO_DOMAIN: &str = "demo.switchboard.test";

/// Credentials generated for the demo tenant on first start.
pub struct DemoCredentials {
    /// (extension, password) pairs.
    pub users: Vec<(String, String)>,
}

impl fmt::Debug for DemoCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoCredentials")
            .field("extensions", &self.users.iter().map(|u| &u.0).collect::<Vec<_>>())
            .finish()
    }
}

/// Opens the configured store: PostgreSQL when `[storage] url` says so, SQLite in
/// `data_dir` otherwise.
pub async fn open_store(cfg: &Config) -> Result<Store, StoreError> {
    match &cfg.storage.url {
        Some(url) => Store::open(url).await,
        None => Store::open_sqlite(&cfg.data_dir.join("switchboard.db")).await,
    }
}

fn upsert(
    tenant_id: i64,
    realm: &str,
    extension: &str,
    password: &str,
    display_name: &str,
    managed: bool,
    (srtp, dtmf): (SrtpSetting, DtmfSetting),
) -> UserUpsert {
    UserUpsert {
        tenant_id,
        extension: extension.to_owned(),
        display_name: display_name.to_owned(),
        ha1_md5: Algorithm::Md5.ha1(extension, realm, password),
        ha1_sha256: Algorithm::Sha256.ha1(extension, realm, password),
        managed_by_config: managed,
        srtp: srtp.as_str().to_owned(),
        dtmf: dtmf.as_str().to_owned(),
    }
}

/// Writes the configured tenants and users to the store (passwords become per-realm
/// digest hashes). Users the file no longer lists are removed.
pub async fn sync_config(store: &Store, cfg: &Config) -> Result<(), StoreError> {
    for t in &cfg.tenants {
        let domain = t.domain.to_ascii_lowercase();
        let rec = store.upsert_tenant(&t.name, &domain).await?;
        let mut keep = Vec::new();
        for u in &t.users {
            let user = upsert(rec.id, &domain, &u.extension, &u.password, &u.display_name, true, (u.srtp, u.dtmf));
            store.upsert_user(&user).await?;
            keep.push(u.extension.clone());
        }
        store.delete_config_users_except(rec.id, &keep).await?;
    }
    Ok(())
}

/// Creates the demo tenant and its extensions 1001–1003 with generated passwords, once.
/// Returns the passwords when they were just created (they are shown once, never stored).
pub async fn ensure_demo(store: &Store) -> Result<Option<DemoCredentials>, StoreError> {
    let tenant = store.upsert_tenant(DEMO_TENANT, DEMO_DOMAIN).await?;
    if !store.list_users(tenant.id).await?.is_empty() {
        return Ok(None);
    }
    let mut users = Vec::new();
    for (ext, name) in [("1001", "Demo 1001"), ("1002", "Demo 1002"), ("1003", "Demo 1003")] {
        let password = generate_password();
        store.upsert_user(&upsert(tenant.id, DEMO_DOMAIN, ext, &password, name, false, Default::default())).await?;
        users.push((ext.to_owned(), password));
    }
    Ok(Some(DemoCredentials { users }))
}

/// A 16-character password from the OS generator (no look-alike characters).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness is not something to run a PBX on.
        panic!("the operating system's random generator is unavailable");
    }
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Reads tenants and users into the directory call control uses.
pub async fn load_directory(store: &Store) -> Result<Directory, StoreError> {
    let mut tenants = Vec::new();
    for t in store.list_tenants().await? {
        let users = store
            .list_users(t.id)
            .await?
            .into_iter()
            .map(|u| User {
                id: u.id,
                tenant_id: u.tenant_id,
                extension: u.extension,
                display_name: u.display_name,
                ha1_md5: u.ha1_md5,
                ha1_sha256: u.ha1_sha256,
                // An unknown value (written by a newer release) is read as the default.
                srtp: u.srtp.parse().unwrap_or_default(),
                dtmf: u.dtmf.parse().unwrap_or_default(),
            })
            .collect();
        tenants.push(Tenant::new(t.id, t.name, t.domain, users));
    }
    Ok(Directory::new(tenants))
}
