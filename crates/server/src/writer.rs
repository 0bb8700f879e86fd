//! The store writer: one task that batches registration changes and CDRs into as few
//! statements as possible, and acknowledges each registration only once it is committed.
//!
//! Two rhythms. Registrations wait for their commit before the phone gets its 200 OK, so
//! they are committed after a short group-commit window. CDRs acknowledge nothing to
//! anyone and arrive one per finished call, so they are gathered longer and written in
//! multi-row statements; SIGTERM flushes them.

use std::sync::{Arc, Weak};
use std::time::Duration;

use store::{BindingChange, CdrRecord, Cdrs, Registrations, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{error, warn};

use crate::core::Core;

/// Who waits for a write.
#[derive(Debug)]
pub enum Reply {
    /// A door shard (by index) waiting to answer a REGISTER.
    Door(usize, u64),
    /// Nobody (housekeeping).
    None,
}

/// A write request.
#[derive(Debug)]
pub enum WriteOp {
    /// Registration changes, applied atomically.
    Bindings(Vec<BindingChange>, Reply),
    /// A finished call.
    Cdr(Box<CdrRecord>),
    /// Answer once everything queued before is committed.
    Flush(oneshot::Sender<()>),
}

/// Registration changes taken in one commit, at most.
const MAX_BINDING_BATCH: usize = 512;

/// How long the first registration change of a batch waits for others (group commit): each
/// commit is a round trip to the database's thread. A REGISTER's 200 OK waits at most this.
const GROUP_COMMIT: Duration = Duration::from_millis(3);

/// CDRs are written when this many are waiting, or this long after the first one.
const CDR_BATCH: usize = 400;
const CDR_DELAY: Duration = Duration::from_millis(200);

/// Runs the writer until every sender is gone (then flushes what is left).
pub async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<WriteOp>, core: Weak<Core>) {
    let mut bindings: Vec<(Vec<BindingChange>, Reply)> = Vec::new();
    let mut cdrs: Vec<CdrRecord> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut binding_deadline: Option<Instant> = None;
    let mut cdr_deadline: Option<Instant> = None;
    loop {
        let deadline = match (binding_deadline, cdr_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let op = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(op) => op,
                Err(_) => {
                    let now = Instant::now();
                    if binding_deadline.is_some_and(|d| d <= now) {
                        write_bindings(&store, std::mem::take(&mut bindings), &core).await;
                        binding_deadline = None;
                    }
                    if cdr_deadline.is_some_and(|d| d <= now) {
                        write_cdrs(&store, std::mem::take(&mut cdrs)).await;
                        cdr_deadline = None;
                    }
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(op) = op else { break };
        match op {
            WriteOp::Bindings(changes, reply) => {
                bindings.push((changes, reply));
                binding_deadline.get_or_insert_with(|| Instant::now() + GROUP_COMMIT);
                if bindings.len() >= MAX_BINDING_BATCH {
                    write_bindings(&store, std::mem::take(&mut bindings), &core).await;
                    binding_deadline = None;
                }
            }
            WriteOp::Cdr(c) => {
                cdrs.push(*c);
                cdr_deadline.get_or_insert_with(|| Instant::now() + CDR_DELAY);
                if cdrs.len() >= CDR_BATCH {
                    write_cdrs(&store, std::mem::take(&mut cdrs)).await;
                    cdr_deadline = None;
                }
            }
            WriteOp::Flush(f) => {
                flushes.push(f);
                write_bindings(&store, std::mem::take(&mut bindings), &core).await;
                write_cdrs(&store, std::mem::take(&mut cdrs)).await;
                binding_deadline = None;
                cdr_deadline = None;
                for f in flushes.drain(..) {
                    let _ = f.send(());
                }
            }
        }
    }
    write_bindings(&store, bindings, &core).await;
    write_cdrs(&store, cdrs).await;
}

async fn write_bindings(store: &Store, batch: Vec<(Vec<BindingChange>, Reply)>, core: &Weak<Core>) {
    if batch.is_empty() {
        return;
    }
    let core = core.upgrade();
    let mut changes = Vec::new();
    let mut replies = Vec::new();
    for (c, r) in batch {
        replies.push((changes.len(), c.len(), r));
        changes.extend(c);
    }
    match store.save_bindings(&changes).await {
        Ok(()) => {
            for (_, _, r) in replies {
                acknowledge(core.as_ref(), r, true);
            }
        }
        Err(e) => {
            // One bad change (a user deleted meanwhile) must not fail the others: retry each
            // request's changes on their own.
            warn!(error = %e, "batched registration write failed; retrying one by one");
            for (start, len, r) in replies {
                let ok = store.save_bindings(&changes[start..start + len]).await.is_ok();
                acknowledge(core.as_ref(), r, ok);
            }
        }
    }
}

async fn write_cdrs(store: &Store, cdrs: Vec<CdrRecord>) {
    if cdrs.is_empty() {
        return;
    }
    let mut attempt = 0;
    while let Err(e) = store.insert_cdrs(&cdrs).await {
        attempt += 1;
        error!(error = %e, attempt, count = cdrs.len(), "writing CDRs failed");
        if attempt >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    }
}

/// Answers the REGISTER waiting for this write, from the writer's task.
fn acknowledge(core: Option<&Arc<Core>>, r: Reply, ok: bool) {
    if let (Reply::Door(shard, token), Some(core)) = (r, core) {
        core.run_door(shard, |_, door| door.persisted(token, ok, crate::tasks::now()));
    }
}
