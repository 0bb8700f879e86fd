//! Tenants and users as call control sees them: an immutable in-memory snapshot, replaced
//! as a whole when the configuration or the database changes.

use std::collections::HashMap;
use std::sync::Arc;

/// A user (an extension of one tenant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Database id.
    pub id: i64,
    /// Tenant id.
    pub tenant_id: i64,
    /// Extension, also the digest user name.
    pub extension: String,
    /// Display name presented to callees.
    pub display_name: String,
    /// `MD5(extension:realm:password)`.
    pub ha1_md5: String,
    /// `SHA-256(extension:realm:password)`.
    pub ha1_sha256: String,
    /// Whether the user's phones may, or must, encrypt their media.
    pub srtp: SrtpPolicy,
    /// How the user's phones want DTMF digits from the other party.
    pub dtmf: DtmfMode,
}

/// How a user's phones want to receive DTMF digits; digits arriving by another method from
/// the other party are converted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DtmfMode {
    /// RFC 4733 events when the phone's SDP declares telephone-event, SIP INFO otherwise.
    #[default]
    Auto,
    /// RFC 4733 events (SIP INFO when the phone declared no telephone-event).
    Rfc4733,
    /// SIP INFO (`application/dtmf-relay`).
    Info,
    /// Tones in the audio.
    InBand,
}

impl std::str::FromStr for DtmfMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DtmfMode::Auto),
            "rfc4733" => Ok(DtmfMode::Rfc4733),
            "info" => Ok(DtmfMode::Info),
            "inband" => Ok(DtmfMode::InBand),
            other => Err(format!("unknown DTMF mode {other:?} (expected auto, rfc4733, info or inband)")),
        }
    }
}

/// A user's SRTP policy (SDES-keyed SRTP, RFC 4568).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SrtpPolicy {
    /// Plain RTP only: an encrypted offer from the user's phone is refused (488).
    Off,
    /// The phone may encrypt; calls to it are offered plain RTP.
    #[default]
    Optional,
    /// Encrypted media only: a plain offer from the phone is refused (488), calls to it are
    /// offered SRTP.
    Required,
}

impl std::str::FromStr for SrtpPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(SrtpPolicy::Off),
            "optional" => Ok(SrtpPolicy::Optional),
            "required" => Ok(SrtpPolicy::Required),
            other => Err(format!("unknown SRTP policy {other:?} (expected off, optional or required)")),
        }
    }
}

/// A tenant: one company, one SIP domain, its users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// Database id.
    pub id: i64,
    /// Short name.
    pub name: String,
    /// SIP domain (lower-case), also the digest realm.
    pub domain: String,
    users: HashMap<String, Arc<User>>,
}

impl Tenant {
    /// A tenant with these users.
    pub fn new(id: i64, name: impl Into<String>, domain: impl Into<String>, users: Vec<User>) -> Tenant {
        let users = users.into_iter().map(|u| (u.extension.clone(), Arc::new(u))).collect();
        Tenant { id, name: name.into(), domain: domain.into().to_ascii_lowercase(), users }
    }

    /// The user with this extension.
    pub fn user(&self, extension: &str) -> Option<&Arc<User>> {
        self.users.get(extension)
    }

    /// All users.
    pub fn users(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }
}

/// Every tenant, by domain and by id.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    by_domain: HashMap<String, Arc<Tenant>>,
    by_id: HashMap<i64, Arc<Tenant>>,
}

impl Directory {
    /// A directory of these tenants.
    pub fn new(tenants: Vec<Tenant>) -> Directory {
        let mut d = Directory::default();
        for t in tenants {
            let t = Arc::new(t);
            d.by_domain.insert(t.domain.clone(), t.clone());
            d.by_id.insert(t.id, t);
        }
        d
    }

    /// The tenant serving a domain (case-insensitive; IPv6 without brackets).
    pub fn by_domain(&self, domain: &str) -> Option<&Arc<Tenant>> {
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_domain.get(&domain.to_ascii_lowercase());
        }
        self.by_domain.get(domain)
    }

    /// The tenant with this name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_id.values().find(|t| t.name == name)
    }

    /// The tenant with this id.
    pub fn by_id(&self, id: i64) -> Option<&Arc<Tenant>> {
        self.by_id.get(&id)
    }

    /// All tenants.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_id.values()
    }
}
