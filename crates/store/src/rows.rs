//! Row decoding and query building shared by both backends (the column names are
//! the same in both schemas; only the SQL types differ).

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use crate::model::{BindingRecord, CdrFilter, CdrRecord, LegQuality, TenantRecord, UserRecord};

pub(crate) fn tenant<R>(row: &R) -> Result<TenantRecord, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(TenantRecord { id: row.try_get("id")?, name: row.try_get("name")?, domain: row.try_get("domain")? })
}

pub(crate) fn user<R>(row: &R) -> Result<UserRecord, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(UserRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        extension: row.try_get("extension")?,
        display_name: row.try_get("display_name")?,
        ha1_md5: row.try_get("ha1_md5")?,
        ha1_sha256: row.try_get("ha1_sha256")?,
        managed_by_config: row.try_get("managed_by_config")?,
        srtp: row.try_get("srtp")?,
        dtmf: row.try_get("dtmf")?,
    })
}

pub(crate) fn binding<R>(row: &R) -> Result<BindingRecord, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(BindingRecord {
        tenant_id: row.try_get("tenant_id")?,
        extension: row.try_get("extension")?,
        contact: row.try_get("contact")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        call_id: row.try_get("call_id")?,
        cseq: row.try_get("cseq")?,
        q: row.try_get("q")?,
        instance_id: row.try_get("instance_id")?,
        reg_id: row.try_get("reg_id")?,
        transport: row.try_get("transport")?,
        source: row.try_get("source_addr")?,
        local: row.try_get("local_addr")?,
        connection_id: row.try_get("connection_id")?,
        user_agent: row.try_get("user_agent")?,
        registered_at_ms: row.try_get("registered_at_ms")?,
    })
}

pub(crate) fn cdr<R>(row: &R) -> Result<CdrRecord, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let leg = |side: &str| -> Result<LegQuality, sqlx::Error> {
        Ok(LegQuality {
            loss_pct: row.try_get(format!("{side}_loss_pct").as_str())?,
            jitter_ms: row.try_get(format!("{side}_jitter_ms").as_str())?,
            rtt_ms: row.try_get(format!("{side}_rtt_ms").as_str())?,
            mos: row.try_get(format!("{side}_mos").as_str())?,
        })
    };
    Ok(CdrRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        call_id: row.try_get("call_id")?,
        caller: row.try_get("caller")?,
        callee: row.try_get("callee")?,
        started_at_ms: row.try_get("started_at_ms")?,
        answered_at_ms: row.try_get("answered_at_ms")?,
        ended_at_ms: row.try_get("ended_at_ms")?,
        duration_ms: row.try_get("duration_ms")?,
        billable_ms: row.try_get("billable_ms")?,
        disposition: row.try_get("disposition")?,
        hangup_cause: row.try_get("hangup_cause")?,
        hangup_status: row.try_get("hangup_status")?,
        initiator: row.try_get("initiator")?,
        packets_a_to_b: row.try_get("packets_a_to_b")?,
        packets_b_to_a: row.try_get("packets_b_to_a")?,
        bytes_a_to_b: row.try_get("bytes_a_to_b")?,
        bytes_b_to_a: row.try_get("bytes_b_to_a")?,
        quality_a: leg("a")?,
        quality_b: leg("b")?,
        recording: row.try_get("recording")?,
        a_srtp: row.try_get("a_srtp")?,
        b_srtp: row.try_get("b_srtp")?,
        a_srtp_rejected: row.try_get("a_srtp_rejected")?,
        b_srtp_rejected: row.try_get("b_srtp_rejected")?,
    })
}

/// Builds the `list_cdrs` query: the same SQL for both backends, only the
/// placeholders differ, which `QueryBuilder` writes per backend.
pub(crate) fn cdr_query<DB>(filter: &CdrFilter) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT * FROM cdrs WHERE TRUE");
    if let Some(tenant_id) = filter.tenant_id {
        query.push(" AND tenant_id = ").push_bind(tenant_id);
    }
    if let Some(since_ms) = filter.since_ms {
        query.push(" AND started_at_ms >= ").push_bind(since_ms);
    }
    query.push(" ORDER BY started_at_ms DESC, id DESC");
    if let Some(limit) = filter.limit {
        query.push(" LIMIT ").push_bind(i64::from(limit));
    }
    query
}
