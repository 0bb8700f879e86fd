//! The location service: where each user's phones can be reached (RFC 3261 §10).
//!
//! Kept in memory, sharded by address-of-record, and written through to the store by the
//! driver (a REGISTER is answered only once its changes are durable).

use std::sync::Mutex;

use sip::Uri;

use crate::flow::Flow;

/// An address-of-record: a user of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Aor {
    /// Tenant id.
    pub tenant_id: i64,
    /// Extension.
    pub extension: String,
}

/// One registered contact.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The contact URI, where requests are addressed.
    pub uri: Uri,
    /// When it expires (Unix ms).
    pub expires_at_ms: i64,
    /// Preference (`q`), when given.
    pub q: Option<f32>,
    /// Call-ID of the REGISTER that made it.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// The flow the REGISTER came on: calls to this contact are sent there, which is what
    /// gets them through NAT.
    pub flow: Flow,
    /// RFC 5626 `+sip.instance`, when given.
    pub instance: Option<String>,
    /// RFC 5626 `reg-id`, when given.
    pub reg_id: Option<u32>,
    /// User-Agent of the registering phone.
    pub user_agent: Option<String>,
    /// When it was first registered (Unix ms).
    pub registered_at_ms: i64,
}

impl Binding {
    /// Seconds left before expiry.
    pub fn remaining_secs(&self, now_ms: i64) -> u32 {
        ((self.expires_at_ms - now_ms).max(0) / 1000) as u32
    }

    /// Whether a contact in a REGISTER designates this binding: the same instance and reg-id
    /// when the phone gives them (RFC 5626), otherwise the same URI (host compared without
    /// case). Allocates nothing: it runs for every contact of every REGISTER.
    pub fn matches(&self, uri: &Uri, instance: Option<&str>, reg_id: Option<u32>) -> bool {
        if instance.is_some() || self.instance.is_some() {
            return self.instance.as_deref() == instance && self.reg_id == reg_id;
        }
        match (&self.uri, uri) {
            (Uri::Sip(a), Uri::Sip(b)) => {
                a.secure == b.secure
                    && a.user == b.user
                    && a.password == b.password
                    && a.host.eq_ignore_case(&b.host)
                    && a.port == b.port
                    && a.params == b.params
                    && a.headers == b.headers
            }
            (a, b) => a == b,
        }
    }
}

/// A change to persist.
#[derive(Clone, Debug, PartialEq)]
pub enum BindingChange {
    /// Insert or replace the binding with this identity.
    Upsert(Aor, Binding),
    /// Remove one binding.
    Remove(Aor, Binding),
    /// Remove all bindings of the AOR.
    RemoveAll(Aor),
}

const SHARDS: usize = 32;

/// In-memory bindings of every AOR.
#[derive(Debug)]
pub struct Location {
    shards: Vec<Mutex<crate::FastMap<Aor, Vec<Binding>>>>,
}

impl Default for Location {
    fn default() -> Location {
        Location { shards: (0..SHARDS).map(|_| Mutex::new(crate::FastMap::default())).collect() }
    }
}

fn shard(aor: &Aor) -> usize {
    let h = aor.extension.bytes().fold(aor.tenant_id as u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
    (h % SHARDS as u64) as usize
}

impl Location {
    /// Runs `f` on the bindings of `aor` under its lock (the registrar's critical section).
    pub fn with_aor<R>(&self, aor: &Aor, f: impl FnOnce(&mut Vec<Binding>) -> R) -> R {
        let mut map = match self.shards[shard(aor)].lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let list = map.entry(aor.clone()).or_default();
        let r = f(list);
        if list.is_empty() {
            map.remove(aor);
        }
        r
    }

    /// The unexpired bindings of `aor`, best `q` first, then most recent.
    pub fn lookup(&self, aor: &Aor, now_ms: i64) -> Vec<Binding> {
        let map = match self.shards[shard(aor)].lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut v: Vec<Binding> =
            map.get(aor).map(|l| l.iter().filter(|b| b.expires_at_ms > now_ms).cloned().collect()).unwrap_or_default();
        v.sort_by(|a, b| {
            b.q.unwrap_or(1.0).total_cmp(&a.q.unwrap_or(1.0)).then(b.registered_at_ms.cmp(&a.registered_at_ms))
        });
        v
    }

    /// Adds bindings loaded from the store at start-up.
    pub fn load(&self, bindings: impl IntoIterator<Item = (Aor, Binding)>) {
        for (aor, b) in bindings {
            self.with_aor(&aor, |list| {
                list.retain(|x| !x.matches(&b.uri, b.instance.as_deref(), b.reg_id));
                list.push(b);
            });
        }
    }

    /// Drops expired bindings; returns them so the store can forget them too.
    pub fn purge_expired(&self, now_ms: i64) -> Vec<(Aor, Binding)> {
        let mut gone = Vec::new();
        for s in &self.shards {
            let mut map = match s.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.retain(|aor, list| {
                list.retain(|b| {
                    let keep = b.expires_at_ms > now_ms;
                    if !keep {
                        gone.push((aor.clone(), b.clone()));
                    }
                    keep
                });
                !list.is_empty()
            });
        }
        gone
    }

    /// Number of bindings (all AORs).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.values().map(Vec::len).sum()).unwrap_or(0)).sum()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
