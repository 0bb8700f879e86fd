//! The records the store reads and writes. They are plain data owned by this crate;
//! other crates map their own types to and from them. Times are unix milliseconds.

use std::fmt;

/// A tenant: one customer of the hosted PBX, reached through its SIP domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// Database identity.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Unique SIP domain, lower-case.
    pub domain: String,
}

/// A user (an extension) of a tenant.
///
/// Passwords are never stored: only the digest HA1 hashes, computed by the caller
/// for the tenant's realm. `Debug` does not print them.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Database identity.
    pub id: i64,
    /// The tenant the user belongs to.
    pub tenant_id: i64,
    /// The extension, unique within the tenant.
    pub extension: String,
    /// Name shown to other parties.
    pub display_name: String,
    /// HA1 for the MD5 digest algorithm, hex.
    pub ha1_md5: String,
    /// HA1 for the SHA-256 digest algorithm, hex.
    pub ha1_sha256: String,
    /// True when the user comes from the configuration file (and is deleted when the
    /// file no longer lists it), false when it was created at run time.
    pub managed_by_config: bool,
    /// SRTP policy: `off`, `optional` or `required`.
    pub srtp: String,
    /// DTMF method: `auto`, `rfc4733`, `info` or `inband`.
    pub dtmf: String,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("extension", &self.extension)
            .field("display_name", &self.display_name)
            .field("ha1_md5", &"<redacted>")
            .field("ha1_sha256", &"<redacted>")
            .field("managed_by_config", &self.managed_by_config)
            .field("srtp", &self.srtp)
            .field("dtmf", &self.dtmf)
            .finish()
    }
}

/// What [`Directory::upsert_user`](crate::Directory::upsert_user) writes: a user
/// keyed by `(tenant_id, extension)`, created or replaced.
#[derive(Clone, PartialEq, Eq)]
pub struct UserUpsert {
    /// The tenant the user belongs to.
    pub tenant_id: i64,
    /// The extension, unique within the tenant.
    pub extension: String,
    /// Name shown to other parties.
    pub display_name: String,
    /// HA1 for the MD5 digest algorithm, hex.
    pub ha1_md5: String,
    /// HA1 for the SHA-256 digest algorithm, hex.
    pub ha1_sha256: String,
    /// See [`UserRecord::managed_by_config`].
    pub managed_by_config: bool,
    /// See [`UserRecord::srtp`].
    pub srtp: String,
    /// See [`UserRecord::dtmf`].
    pub dtmf: String,
}

impl fmt::Debug for UserUpsert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserUpsert")
            .field("tenant_id", &self.tenant_id)
            .field("extension", &self.extension)
            .field("display_name", &self.display_name)
            .field("ha1_md5", &"<redacted>")
            .field("ha1_sha256", &"<redacted>")
            .field("managed_by_config", &self.managed_by_config)
            .field("srtp", &self.srtp)
            .field("dtmf", &self.dtmf)
            .finish()
    }
}

/// One registration contact of a user, keyed by `(tenant_id, extension, contact)`.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRecord {
    /// The tenant of the registered user.
    pub tenant_id: i64,
    /// The registered user's extension.
    pub extension: String,
    /// The Contact URI as written in the REGISTER.
    pub contact: String,
    /// When the binding expires.
    pub expires_at_ms: i64,
    /// Call-ID of the REGISTER that last refreshed the binding.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: i64,
    /// The Contact's q parameter (0.0 to 1.0), if any.
    pub q: Option<f64>,
    /// The `+sip.instance` parameter (RFC 5626), if any.
    pub instance_id: Option<String>,
    /// The `reg-id` parameter (RFC 5626), if any.
    pub reg_id: Option<i64>,
    /// Transport the REGISTER came over: "udp", "tcp", "tls", "ws", ...
    pub transport: String,
    /// Address the REGISTER came from, `ip:port` (IPv6 as `[addr]:port`).
    pub source: String,
    /// Our socket address the REGISTER arrived on.
    pub local: String,
    /// Identifier of the connection it arrived on, for connection-oriented transports.
    pub connection_id: Option<i64>,
    /// The User-Agent header, if any.
    pub user_agent: Option<String>,
    /// When the binding was first registered.
    pub registered_at_ms: i64,
}

/// One change to the registration bindings.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "most changes are upserts: boxing would add an allocation and save nothing"
)]
pub enum BindingChange {
    /// Create the binding, or replace the one with the same key.
    Upsert(BindingRecord),
    /// Remove one binding; nothing happens if it does not exist.
    Remove {
        /// The tenant of the user.
        tenant_id: i64,
        /// The user's extension.
        extension: String,
        /// The Contact URI as written.
        contact: String,
    },
    /// Remove every binding of one user.
    RemoveAll {
        /// The tenant of the user.
        tenant_id: i64,
        /// The user's extension.
        extension: String,
    },
}

/// Quality of one leg of a call, as the relay measured it (empty when nothing was measured).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LegQuality {
    /// Loss of the RTP the leg's phone sent, %.
    pub loss_pct: Option<f64>,
    /// Interarrival jitter of that RTP, ms.
    pub jitter_ms: Option<f64>,
    /// Round trip between the relay and the phone, ms.
    pub rtt_ms: Option<f64>,
    /// MOS estimate of the leg (ITU-T G.107 E-model; the worse of its two directions).
    pub mos: Option<f64>,
}

/// A call detail record, written once when a call ends.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrRecord {
    /// Unique identifier generated by the caller; inserting the same id twice keeps
    /// the first record.
    pub id: String,
    /// The tenant the call belongs to.
    pub tenant_id: i64,
    /// SIP Call-ID of the call's first leg.
    pub call_id: String,
    /// Who called.
    pub caller: String,
    /// Who was called.
    pub callee: String,
    /// When the call started.
    pub started_at_ms: i64,
    /// When it was answered, if it was.
    pub answered_at_ms: Option<i64>,
    /// When it ended.
    pub ended_at_ms: i64,
    /// From start to end.
    pub duration_ms: i64,
    /// From answer to end (0 if unanswered).
    pub billable_ms: i64,
    /// "answered", "no-answer", "busy", "failed" or "cancelled".
    pub disposition: String,
    /// Free text such as "BYE" or "486 Busy Here".
    pub hangup_cause: String,
    /// SIP status code of the hang-up, when there was one.
    pub hangup_status: Option<i32>,
    /// Who ended the call: "caller", "callee" or "system".
    pub initiator: String,
    /// RTP packets relayed from the caller's side to the callee's side.
    pub packets_a_to_b: i64,
    /// RTP packets relayed from the callee's side to the caller's side.
    pub packets_b_to_a: i64,
    /// Bytes relayed from the caller's side to the callee's side.
    pub bytes_a_to_b: i64,
    /// Bytes relayed from the callee's side to the caller's side.
    pub bytes_b_to_a: i64,
    /// Quality of the caller's leg.
    pub quality_a: LegQuality,
    /// Quality of the callee's leg.
    pub quality_b: LegQuality,
    /// The call's recording (a file path), if it was recorded.
    pub recording: Option<String>,
    /// SRTP of the caller's leg (the suite, e.g. `AES_CM_128_HMAC_SHA1_80`), `None` for plain RTP.
    pub a_srtp: Option<String>,
    /// SRTP of the callee's leg.
    pub b_srtp: Option<String>,
    /// SRTP packets from the caller refused (failed authentication or replayed).
    pub a_srtp_rejected: i64,
    /// SRTP packets from the callee refused.
    pub b_srtp_rejected: i64,
}

/// Which CDRs [`Cdrs::list_cdrs`](crate::Cdrs::list_cdrs) returns, newest first.
/// All fields `None` means every CDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CdrFilter {
    /// Only this tenant's CDRs.
    pub tenant_id: Option<i64>,
    /// Only CDRs with `started_at_ms >= since_ms`.
    pub since_ms: Option<i64>,
    /// At most this many CDRs.
    pub limit: Option<u32>,
}
