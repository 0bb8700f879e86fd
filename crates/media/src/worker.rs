//! One relay worker thread: a `mio::Poll` over the sockets of the sessions it owns, and a
//! command channel woken through a `mio::Waker`.
//!
//! Each session lives on exactly one worker, which alone reads its sockets, runs its
//! [`Router`] and writes its counters, so the packet path takes no lock and shares no
//! mutable state between threads.

use std::collections::HashMap;
use std::io;
use std::net::UdpSocket as StdUdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::pool::PortLease;
use crate::router::{Action, DropReason, Kind, Router, side_index};
use crate::stats::{RxTally, SharedStats};
use crate::sys::{BATCH, RecvBatch, SendBatch};
use crate::{PeerMedia, Side};

const WAKER: Token = Token(usize::MAX);

/// Receive batches taken from one socket before the other ready sockets get their turn.
const MAX_BATCHES_PER_TURN: usize = 8;

/// Events taken per poll.
const EVENTS: usize = 1024;

/// Sockets of a session, by [`socket_index`].
const SOCKETS: usize = 4;

/// Index of a side's socket in a session's socket array (A RTP, A RTCP, B RTP, B RTCP).
pub(crate) fn socket_index(side: Side, kind: Kind) -> usize {
    side_index(side) * 2 + kind.index()
}

/// A session's sockets and counters, handed to its worker.
#[derive(Debug)]
pub(crate) struct NewSession {
    pub(crate) id: u64,
    /// By [`socket_index`]. Declared before `leases` so they are closed first.
    pub(crate) sockets: [StdUdpSocket; SOCKETS],
    pub(crate) stats: Arc<SharedStats>,
    /// Port pairs of side A and B, given back when dropped.
    pub(crate) leases: [PortLease; 2],
}

/// What call control asks of a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start relaying a new session.
    Add(Box<NewSession>),
    /// Close a session's sockets and return its ports.
    Remove(u64),
    /// A side's peer media address from SDP.
    SetPeer(u64, Side, PeerMedia),
    /// Turn forwarding toward a side on or off.
    SetForwarding(u64, Side, bool),
    /// Close everything and end the thread.
    Shutdown,
}

/// The sending end of a worker's command channel.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    tx: Sender<Command>,
    waker: Waker,
}

impl WorkerHandle {
    /// Queues `cmd` and wakes the worker; gives the command back if the worker is gone.
    pub(crate) fn send(&self, cmd: Command) -> Result<(), Command> {
        self.tx.send(cmd).map_err(|e| e.0)?;
        // A failed wake means the poll is gone too; the command is then dropped with the
        // channel, which releases what it holds.
        let _ = self.waker.wake();
        Ok(())
    }
}

/// Settings a worker needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkerConfig {
    pub(crate) relatch_after: Duration,
    pub(crate) coalesce: Duration,
}

/// Starts worker thread `index`.
pub(crate) fn spawn(index: usize, cfg: WorkerConfig) -> io::Result<(WorkerHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (tx, rx) = channel();
    let thread = std::thread::Builder::new()
        .name(format!("media-worker-{index}"))
        .spawn(move || Worker::new(poll, rx, cfg).run())?;
    Ok((WorkerHandle { tx, waker }, thread))
}

/// A session as its worker holds it.
struct Session {
    id: u64,
    sockets: [UdpSocket; SOCKETS],
    router: Router,
    stats: Arc<SharedStats>,
    /// Dropped after `sockets`: ports go back to the pool once closed.
    _leases: [PortLease; 2],
}

/// A vector of sessions with reusable slots (the slot is in the sockets' tokens).
#[derive(Default)]
struct Slab {
    slots: Vec<Option<Session>>,
    free: Vec<usize>,
}

impl Slab {
    fn insert(&mut self, s: Session) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(s);
                i
            }
            None => {
                self.slots.push(Some(s));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) -> Option<Session> {
        let s = self.slots.get_mut(i)?.take();
        if s.is_some() {
            self.free.push(i);
        }
        s
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Session> {
        self.slots.get_mut(i)?.as_mut()
    }
}

struct Worker {
    poll: Poll,
    rx: Receiver<Command>,
    cfg: WorkerConfig,
    sessions: Slab,
    by_id: HashMap<u64, usize>,
    io: BatchIo,
    /// Sockets whose turn ended before they were drained, to be read again at once.
    pending: Vec<Token>,
}

/// The per-worker buffers.
struct BatchIo {
    recv: RecvBatch,
    send: SendBatch,
}

impl Worker {
    fn new(poll: Poll, rx: Receiver<Command>, cfg: WorkerConfig) -> Worker {
        Worker {
            poll,
            rx,
            cfg,
            sessions: Slab::default(),
            by_id: HashMap::new(),
            io: BatchIo { recv: RecvBatch::new(), send: SendBatch::new() },
            pending: Vec::with_capacity(EVENTS),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        let mut retry: Vec<Token> = Vec::with_capacity(EVENTS);
        loop {
            let timeout = if self.pending.is_empty() { None } else { Some(Duration::ZERO) };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The epoll instance itself failed: nothing can be relayed any more.
                break;
            }
            // Commands first, so that a datagram arriving with a new peer address (or
            // right after a session was added) is routed with it.
            if events.iter().any(|e| e.token() == WAKER) && !self.commands() {
                break;
            }
            let now = Instant::now();
            std::mem::swap(&mut retry, &mut self.pending);
            for token in retry.drain(..) {
                self.service(token, now);
            }
            let mut ready = 0;
            for event in events.iter() {
                ready += 1;
                if event.token() != WAKER {
                    self.service(event.token(), now);
                }
            }
            // Let datagrams accumulate so that the next poll returns many sockets at once:
            // fewer wake-ups per packet, at the price of up to `coalesce` of latency. Only
            // after a light wake-up: when there is more work than that, never sleep.
            let busy = now.elapsed();
            if busy < self.cfg.coalesce && self.pending.is_empty() && ready > 0 && ready < EVENTS {
                std::thread::sleep(self.cfg.coalesce - busy);
            }
        }
    }

    /// Applies queued commands; `false` when the worker must stop.
    fn commands(&mut self) -> bool {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Add(new) => self.add(*new),
                Command::Remove(id) => self.remove(id),
                Command::SetPeer(id, side, peer) => {
                    if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                        s.router.set_peer(side, &peer);
                        s.stats.record_latch(side, Kind::Rtp, None);
                        s.stats.record_latch(side, Kind::Rtcp, None);
                    }
                }
                Command::SetForwarding(id, side, on) => {
                    if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                        s.router.set_forwarding(side, on);
                    }
                }
                Command::Shutdown => return false,
            }
        }
        true
    }

    fn add(&mut self, new: NewSession) {
        let NewSession { id, sockets, stats, leases } = new;
        let sockets = sockets.map(UdpSocket::from_std);
        let session = Session { id, sockets, router: Router::new(self.cfg.relatch_after), stats, _leases: leases };
        let slot = self.sessions.insert(session);
        let registry = self.poll.registry();
        let mut ok = true;
        if let Some(s) = self.sessions.get_mut(slot) {
            for (i, socket) in s.sockets.iter_mut().enumerate() {
                ok &= registry.register(socket, Token(slot * SOCKETS + i), Interest::READABLE).is_ok();
            }
        }
        if ok {
            self.by_id.insert(id, slot);
        } else if let Some(mut s) = self.sessions.remove(slot) {
            // Out of epoll resources: the session cannot be relayed; close it at once so
            // its ports are not lost. Its handle sees no traffic.
            deregister(&self.poll, &mut s);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(mut s) = self.by_id.remove(&id).and_then(|slot| self.sessions.remove(slot)) {
            debug_assert_eq!(s.id, id);
            deregister(&self.poll, &mut s);
        }
    }

    /// Reads one ready socket until drained (or its turn ends) and forwards what came.
    fn service(&mut self, token: Token, now: Instant) {
        let (slot, index) = (token.0 / SOCKETS, token.0 % SOCKETS);
        let Some(session) = self.sessions.get_mut(slot) else { return };
        let side = if index < 2 { Side::A } else { Side::B };
        let kind = if index % 2 == 0 { Kind::Rtp } else { Kind::Rtcp };
        for _ in 0..MAX_BATCHES_PER_TURN {
            match self.io.recv.recv(session.sockets[index].as_raw_fd()) {
                Ok(n) => {
                    relay_batch(session, &mut self.io, side, kind, n, now);
                    if n < BATCH {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pending socket error (reported once, then cleared): read again soon.
                Err(_) => break,
            }
        }
        self.pending.push(token);
    }
}

fn deregister(poll: &Poll, s: &mut Session) {
    for socket in &mut s.sockets {
        let _ = poll.registry().deregister(socket);
    }
}

/// Routes the `n` datagrams just received on `side`'s `kind` socket of `session`.
fn relay_batch(session: &mut Session, io: &mut BatchIo, side: Side, kind: Kind, n: usize, now: Instant) {
    let mut tally = RxTally::default();
    let mut via_current = Kind::Rtp;
    let to_side = side.other();
    for i in 0..n {
        let (data, src, truncated) = io.recv.get(i);
        let len = data.len();
        let Some(src) = src else {
            tally.dropped_invalid += 1;
            continue;
        };
        let decision = session.router.on_datagram(side, kind, src, data, truncated, now);
        if decision.relatched {
            session.stats.record_latch(side, kind, Some(src));
        }
        if !matches!(decision.action, Action::Drop(DropReason::Foreign)) {
            tally.received_packets += 1;
            tally.received_bytes += len as u64;
        }
        match decision.action {
            Action::Forward { via, to } => {
                if via != via_current && !io.send.is_empty() {
                    flush(session, io, to_side, via_current);
                }
                via_current = via;
                io.send.push(i, len, to);
            }
            Action::Drop(DropReason::Foreign) => tally.dropped_foreign += 1,
            Action::Drop(DropReason::NoDestination) => tally.dropped_no_destination += 1,
            Action::Drop(DropReason::Invalid) => tally.dropped_invalid += 1,
        }
    }
    if !io.send.is_empty() {
        flush(session, io, to_side, via_current);
    }
    session.stats.record_rx(side, &tally, now);
}

fn flush(session: &Session, io: &mut BatchIo, to_side: Side, via: Kind) {
    let fd = session.sockets[socket_index(to_side, via)].as_raw_fd();
    let sent = io.send.flush(fd, &mut io.recv);
    session.stats.record_tx(to_side, sent.packets, sent.bytes, sent.errors);
}
