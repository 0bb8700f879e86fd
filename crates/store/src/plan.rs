//! Turning a batch of registration changes into few set-based statements.
//!
//! The writer hands over every change queued since its last commit; applied one statement
//! each, a busy registrar pays a round trip per REGISTER. The batch is collapsed to its net
//! effect instead (later changes of a key win, `RemoveAll` clears what came before it for
//! that address-of-record), then written as: whole-AOR deletes, a multi-row delete, and one
//! multi-row upsert per chunk. A batch that is one statement needs no explicit transaction.

use std::collections::HashMap;

use crate::model::{BindingChange, BindingRecord};

/// Rows per multi-row statement (15 parameters each: well under SQLite's 32766 and
/// PostgreSQL's 65535 bind parameters).
pub(crate) const CHUNK: usize = 500;

type Key<'a> = (i64, &'a str, &'a str);

/// The net effect of a batch.
#[derive(Debug, Default)]
pub(crate) struct BindingPlan<'a> {
    /// AORs whose bindings are all deleted first.
    pub(crate) remove_all: Vec<(i64, &'a str)>,
    /// Single bindings deleted.
    pub(crate) removes: Vec<Key<'a>>,
    /// Bindings written last, one per key.
    pub(crate) upserts: Vec<&'a BindingRecord>,
}

impl BindingPlan<'_> {
    /// How many statements applying the plan takes.
    pub(crate) fn statements(&self) -> usize {
        self.remove_all.len() + self.removes.len().div_ceil(CHUNK) + self.upserts.len().div_ceil(CHUNK)
    }
}

/// Collapses `changes`, applied in order, to their net effect.
pub(crate) fn plan(changes: &[BindingChange]) -> BindingPlan<'_> {
    // Per key, the last word: Some(upsert) or None (removed).
    let mut last: HashMap<Key<'_>, Option<&BindingRecord>> = HashMap::new();
    let mut order: Vec<Key<'_>> = Vec::new();
    let mut remove_all: Vec<(i64, &str)> = Vec::new();
    for change in changes {
        match change {
            BindingChange::Upsert(b) => {
                let key = (b.tenant_id, b.extension.as_str(), b.contact.as_str());
                if last.insert(key, Some(b)).is_none() {
                    order.push(key);
                }
            }
            BindingChange::Remove { tenant_id, extension, contact } => {
                let key = (*tenant_id, extension.as_str(), contact.as_str());
                if last.insert(key, None).is_none() {
                    order.push(key);
                }
            }
            BindingChange::RemoveAll { tenant_id, extension } => {
                // Everything earlier for this AOR is moot: the AOR is emptied first.
                last.retain(|k, _| !(k.0 == *tenant_id && k.1 == extension.as_str()));
                order.retain(|k| !(k.0 == *tenant_id && k.1 == extension.as_str()));
                if !remove_all.contains(&(*tenant_id, extension.as_str())) {
                    remove_all.push((*tenant_id, extension.as_str()));
                }
            }
        }
    }
    let mut plan = BindingPlan { remove_all, ..BindingPlan::default() };
    for key in order {
        match last.get(&key).copied().flatten() {
            Some(b) => plan.upserts.push(b),
            // A removal inside an emptied AOR is already done by the RemoveAll.
            None if !plan.remove_all.contains(&(key.0, key.1)) => plan.removes.push(key),
            None => {}
        }
    }
    plan
}

/// Column list of the bindings table, in the order the upsert binds them.
pub(crate) const BINDING_COLUMNS: &str = "INSERT INTO bindings (tenant_id, extension, contact, expires_at_ms, call_id, cseq, q, \
     instance_id, reg_id, transport, source_addr, local_addr, connection_id, user_agent, registered_at_ms) ";

/// What an upsert does on an existing key (same SQL for SQLite and PostgreSQL).
pub(crate) const BINDING_ON_CONFLICT: &str = " ON CONFLICT (tenant_id, extension, contact) DO UPDATE SET \
     expires_at_ms = excluded.expires_at_ms, call_id = excluded.call_id, cseq = excluded.cseq, q = excluded.q, \
     instance_id = excluded.instance_id, reg_id = excluded.reg_id, transport = excluded.transport, \
     source_addr = excluded.source_addr, local_addr = excluded.local_addr, connection_id = excluded.connection_id, \
     user_agent = excluded.user_agent, registered_at_ms = excluded.registered_at_ms";

/// Applies a plan with a connection or transaction of one backend. A macro rather than a
/// generic function: the two backends' argument types differ, the SQL does not.
macro_rules! apply_plan {
    ($db:ty, $conn:expr, $plan:expr) => {{
        let plan = $plan;
        for (tenant_id, extension) in &plan.remove_all {
            sqlx::query("DELETE FROM bindings WHERE tenant_id = $1 AND extension = $2")
                .bind(*tenant_id)
                .bind(*extension)
                .execute(&mut *$conn)
                .await?;
        }
        for chunk in plan.removes.chunks($crate::plan::CHUNK) {
            let mut qb =
                sqlx::QueryBuilder::<$db>::new("DELETE FROM bindings WHERE (tenant_id, extension, contact) IN (");
            let mut sep = qb.separated(", ");
            for (t, e, c) in chunk {
                sep.push("(");
                sep.push_bind_unseparated(*t);
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(e.to_string());
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(c.to_string());
                sep.push_unseparated(")");
            }
            qb.push(")");
            qb.build().execute(&mut *$conn).await?;
        }
        for chunk in plan.upserts.chunks($crate::plan::CHUNK) {
            let mut qb = sqlx::QueryBuilder::<$db>::new($crate::plan::BINDING_COLUMNS);
            qb.push_values(chunk.iter(), |mut row, b| {
                row.push_bind(b.tenant_id)
                    .push_bind(b.extension.clone())
                    .push_bind(b.contact.clone())
                    .push_bind(b.expires_at_ms)
                    .push_bind(b.call_id.clone())
                    .push_bind(b.cseq)
                    .push_bind(b.q)
                    .push_bind(b.instance_id.clone())
                    .push_bind(b.reg_id)
                    .push_bind(b.transport.clone())
                    .push_bind(b.source.clone())
                    .push_bind(b.local.clone())
                    .push_bind(b.connection_id)
                    .push_bind(b.user_agent.clone())
                    .push_bind(b.registered_at_ms);
            });
            qb.push($crate::plan::BINDING_ON_CONFLICT);
            qb.build().execute(&mut *$conn).await?;
        }
    }};
}

pub(crate) use apply_plan;

/// CDRs per multi-row insert (27 parameters each: within SQLite's and PostgreSQL's limits).
pub(crate) const CDR_CHUNK: usize = 400;

/// Inserts CDRs with multi-row statements, skipping ids already stored; evaluates to the
/// number of new rows. One chunk is one statement, atomic on its own.
macro_rules! insert_cdr_rows {
    ($db:ty, $conn:expr, $cdrs:expr) => {{
        let mut inserted: u64 = 0;
        for chunk in $cdrs.chunks($crate::plan::CDR_CHUNK) {
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO cdrs (id, tenant_id, call_id, caller, callee, started_at_ms, answered_at_ms, ended_at_ms, \
                 duration_ms, billable_ms, disposition, hangup_cause, hangup_status, initiator, \
                 packets_a_to_b, packets_b_to_a, bytes_a_to_b, bytes_b_to_a, \
                 a_loss_pct, a_jitter_ms, a_rtt_ms, a_mos, b_loss_pct, b_jitter_ms, b_rtt_ms, b_mos, recording, \
                 a_srtp, b_srtp, a_srtp_rejected, b_srtp_rejected) ",
            );
            qb.push_values(chunk.iter(), |mut row, c| {
                row.push_bind(c.id.clone())
                    .push_bind(c.tenant_id)
                    .push_bind(c.call_id.clone())
                    .push_bind(c.caller.clone())
                    .push_bind(c.callee.clone())
                    .push_bind(c.started_at_ms)
                    .push_bind(c.answered_at_ms)
                    .push_bind(c.ended_at_ms)
                    .push_bind(c.duration_ms)
                    .push_bind(c.billable_ms)
                    .push_bind(c.disposition.clone())
                    .push_bind(c.hangup_cause.clone())
                    .push_bind(c.hangup_status)
                    .push_bind(c.initiator.clone())
                    .push_bind(c.packets_a_to_b)
                    .push_bind(c.packets_b_to_a)
                    .push_bind(c.bytes_a_to_b)
                    .push_bind(c.bytes_b_to_a)
                    .push_bind(c.quality_a.loss_pct)
                    .push_bind(c.quality_a.jitter_ms)
                    .push_bind(c.quality_a.rtt_ms)
                    .push_bind(c.quality_a.mos)
                    .push_bind(c.quality_b.loss_pct)
                    .push_bind(c.quality_b.jitter_ms)
                    .push_bind(c.quality_b.rtt_ms)
                    .push_bind(c.quality_b.mos)
                    .push_bind(c.recording.clone())
                    .push_bind(c.a_srtp.clone())
                    .push_bind(c.b_srtp.clone())
                    .push_bind(c.a_srtp_rejected)
                    .push_bind(c.b_srtp_rejected);
            });
            qb.push(" ON CONFLICT (id) DO NOTHING");
            inserted += qb.build().execute(&mut *$conn).await?.rows_affected();
        }
        inserted
    }};
}

pub(crate) use insert_cdr_rows;

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ext: &str, contact: &str, exp: i64) -> BindingRecord {
        BindingRecord {
            tenant_id: 1,
            extension: ext.into(),
            contact: contact.into(),
            expires_at_ms: exp,
            call_id: "c".into(),
            cseq: 1,
            q: None,
            instance_id: None,
            reg_id: None,
            transport: "udp".into(),
            source: "127.0.0.1:1".into(),
            local: "127.0.0.1:2".into(),
            connection_id: None,
            user_agent: None,
            registered_at_ms: 0,
        }
    }

    #[test]
    fn later_changes_win_and_remove_all_clears_earlier_ones() {
        let changes = vec![
            BindingChange::Upsert(rec("a", "x", 1)),
            BindingChange::Upsert(rec("a", "x", 2)),
            BindingChange::Upsert(rec("b", "y", 1)),
            BindingChange::Remove { tenant_id: 1, extension: "b".into(), contact: "y".into() },
            BindingChange::Upsert(rec("c", "z", 1)),
            BindingChange::RemoveAll { tenant_id: 1, extension: "c".into() },
            BindingChange::Upsert(rec("c", "w", 5)),
            BindingChange::Remove { tenant_id: 1, extension: "c".into(), contact: "q".into() },
        ];
        let p = plan(&changes);
        assert_eq!(p.remove_all, [(1, "c")]);
        assert_eq!(p.removes, [(1, "b", "y")]);
        let ups: Vec<(&str, &str, i64)> =
            p.upserts.iter().map(|b| (b.extension.as_str(), b.contact.as_str(), b.expires_at_ms)).collect();
        assert_eq!(ups, [("a", "x", 2), ("c", "w", 5)]);
        assert_eq!(p.statements(), 3);
    }

    #[test]
    fn a_batch_of_registrations_is_one_statement() {
        let changes: Vec<_> = (0..300).map(|i| BindingChange::Upsert(rec(&i.to_string(), "x", 1))).collect();
        assert_eq!(plan(&changes).statements(), 1);
    }
}
