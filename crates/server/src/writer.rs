//! The store writer: one task that batches registration changes and CDRs into as few
//! transactions as possible, and acknowledges each change only once it is committed.

use std::time::Duration;

use store::{BindingChange, CdrRecord, Cdrs, Registrations, Store};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::core::DoorMsg;

/// Who waits for a write.
#[derive(Debug)]
pub enum Reply {
    /// A door shard waiting to answer a REGISTER.
    Door(mpsc::UnboundedSender<DoorMsg>, u64),
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

const MAX_BATCH: usize = 512;

/// Runs the writer until every sender is gone.
pub async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<WriteOp>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(op) = rx.recv().await {
        batch.push(op);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        apply(&store, std::mem::take(&mut batch)).await;
    }
}

async fn apply(store: &Store, batch: Vec<WriteOp>) {
    let mut changes = Vec::new();
    let mut replies = Vec::new();
    let mut cdrs = Vec::new();
    let mut flushes = Vec::new();
    for op in batch {
        match op {
            WriteOp::Bindings(c, r) => {
                replies.push((changes.len(), c.len(), r));
                changes.extend(c);
            }
            WriteOp::Cdr(c) => cdrs.push(*c),
            WriteOp::Flush(f) => flushes.push(f),
        }
    }
    if !changes.is_empty() {
        match store.save_bindings(&changes).await {
            Ok(()) => {
                for (_, _, r) in replies {
                    acknowledge(r, true);
                }
            }
            Err(e) => {
                // One bad change (a user deleted meanwhile) must not fail the others:
                // retry each request's changes on their own.
                warn!(error = %e, "batched registration write failed; retrying one by one");
                for (start, len, r) in replies {
                    let ok = store.save_bindings(&changes[start..start + len]).await.is_ok();
                    acknowledge(r, ok);
                }
            }
        }
    }
    if !cdrs.is_empty() {
        let mut attempt = 0;
        while let Err(e) = store.insert_cdrs(&cdrs).await {
            attempt += 1;
            error!(error = %e, attempt, "writing CDRs failed");
            if attempt >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
    }
    for f in flushes {
        let _ = f.send(());
    }
}

fn acknowledge(r: Reply, ok: bool) {
    if let Reply::Door(tx, token) = r {
        let _ = tx.send(DoorMsg::Persisted(token, ok));
    }
}
