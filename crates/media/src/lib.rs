//! The RTP/RTCP relay that anchors Switchboard's call media.
//!
//! Every call is a B2BUA with a caller side ([`Side::A`]) and a callee side ([`Side::B`]).
//! Call control [allocates](Relay::allocate) a [`MediaSession`] per call, writes the
//! session's [local ports](MediaSession::local) into the SDP it sends to each side, and
//! tells the session where each peer receives media ([`MediaSession::set_peer`]) from
//! the SDP it gets back. From then on a datagram arriving on side A's RTP socket leaves
//! side B's RTP socket toward B's peer, and the other way round; RTCP likewise on the
//! RTCP sockets.
//!
//! # Shape
//!
//! ```text
//!  call control ──allocate/set_peer/drop──▶ Relay ──Command (+ Waker if parked)──▶ worker 0..N
//!        ▲                                    inbox + idle sockets, one lock     (mio::Poll each)
//!        └──── stats(), idle_for(): Relaxed atomics in an Arc ◀──────────────────────┘
//! ```
//!
//! * **Typed commands, own threads.** The API is a handful of methods that become
//!   commands in the inbox of the session's worker. Nothing of call control runs on the
//!   packet path, and the boundary is narrow enough to become a wire protocol if the
//!   relay moves to its own process or machine.
//! * **Few wake-ups per command.** A worker applies every queued command whenever it
//!   wakes, before it reads any socket, and every datagram on its sockets wakes it. So
//!   commands that only change how later datagrams are handled need no wake-up of their
//!   own: a session built from idle sockets and a dropped session are queued only. A peer
//!   address, forwarding on or off, new sockets and sockets to close wake the worker
//!   through its `mio::Waker` only if it is parked (blocked in `epoll_wait` with nothing
//!   to do); a worker that is not parked applies them before it next blocks. A worker
//!   that keeps receiving commands (call set-ups come in streams) lingers 4 ms with a poll
//!   timeout instead of parking, so a stream of commands costs one wake-up per 4 ms, not
//!   one each, and no command waits longer than that (or than
//!   [`RelayConfig::coalesce`] plus one batch of work, for a busy worker).
//! * **One owner per session.** Sessions are spread round-robin over N worker threads
//!   (default: one per core), each with its own `mio::Poll`. A session's four sockets, its
//!   latches and its counters are only ever touched by its worker: the packet path has no
//!   lock. Counters are atomics with a single writer (plain load + store, `Relaxed`) that
//!   the [`MediaSession`] handle reads.
//! * **Few system calls per packet.** A ready socket is read with one `recvmmsg`
//!   (`MSG_DONTWAIT`, batch of 32): a short batch means the socket is drained, so no
//!   read ends in a wasted `EAGAIN`. What it yields is forwarded straight from the
//!   receive buffers with one `sendto` (one datagram, the usual case) or `sendmmsg`
//!   (several). Buffers are allocated once per worker (2048 bytes per datagram; longer
//!   ones are truncated, dropped and counted), so nothing allocates per packet.
//! * **Bounded wake-ups.** After a light wake-up with datagrams a worker pauses up to
//!   [`RelayConfig::coalesce`] (1 ms by default) so that the next `epoll_wait` returns many
//!   ready sockets: wake-ups stay at most about 1000 per second per worker however the
//!   packets of thousands of calls interleave, for at most that much added delay, which
//!   jitter buffers of tens of milliseconds absorb. A busy worker never pauses.
//! * **Sans-IO decisions.** Whether a source is accepted (a latch state per
//!   socket) and where a datagram goes (rtcp-mux classification and routing) are plain
//!   structs fed with addresses, bytes and an `Instant`, unit-tested without sockets.
//!
//! Two system calls per relayed packet are the floor of this design (the sockets of
//! different calls cannot share a `recvmmsg`); the `relay_load` example measures that
//! floor on the machine beside the relay's own cost.
//!
//! # Latching
//!
//! Phones behind NAT advertise their private address in SDP but send from the NAT's
//! public one, and only packets sent back to that public address reach them. Each socket
//! of each side therefore has a latch: a packet from the SDP address always (re)latches;
//! otherwise the first packet latches; a packet from another source while latched is
//! dropped and counted, unless the latched source has been silent for
//! [`RelayConfig::relatch_after`] (the NAT binding changed), in which case it relatches.
//! A side's destination is its latched source, else its SDP address; with neither, packets
//! toward it are dropped and counted. [`MediaSession::set_peer`] (a new offer or answer)
//! clears that side's latches.
//!
//! Latching to the first packet lets whoever sends first to a fresh port take the stream
//! (the "RTP bleed" class of attack); packets from the SDP address always win back the
//! latch, so only peers behind NAT (whose SDP address never sends) stay exposed, as in
//! every latching relay.
//!
//! # rtcp-mux
//!
//! With `a=rtcp-mux` (RFC 5761) a side's RTCP shares its RTP port. On a muxed side's RTP
//! socket a datagram whose second byte is in 192..=223 is RTCP. RTCP goes to the other
//! side's RTCP socket and destination, or to its RTP socket and destination if that side
//! is muxed too, so mixed calls (one side muxed, the other not) work.
//!
//! # Ports
//!
//! A free list of even ports per local IP address, starting at a random offset in the
//! configured range; ports held by other processes are skipped. RTCP uses the odd port
//! above. IPv6 sockets are `IPV6_V6ONLY`; all sockets can be DSCP-marked.
//!
//! Setting sockets up and tearing them down (`socket`, options, `bind`, `epoll_ctl` add
//! and delete, `close`: some 40 system calls per call) would cost more than everything
//! else a call asks of the relay, so sockets are reused. Dropping a [`MediaSession`]
//! leaves its four sockets open and registered with their worker, which reads and
//! discards (and counts, [`Relay::idle_discarded`]) whatever still arrives on them. They
//! wait in their worker's idle set, per local address, oldest first. [`Relay::allocate`]
//! takes idle sockets bound to the requested addresses that have been idle for
//! [`RelayConfig::reuse_after`] (a quarantine, so that late media of the old call does
//! not reach the new one, whose latches and counters start fresh anyway), and binds new
//! ones only when there are none. Ports of idle sockets are not free for binding; when no
//! port is free, the oldest idle sockets on the address are taken even before their
//! quarantine ends, so [`RelayError::PortsExhausted`] still means that every pair is used
//! by a live session (or another process), as without reuse. Beyond
//! [`RelayConfig::max_idle_sockets`] the oldest idle sockets are closed and their ports go
//! back to the free list. [`Relay::shutdown`] (or dropping the last [`Relay`]) closes
//! everything.

#![cfg(unix)]

mod conference;
pub mod emodel;
mod idle;
pub mod jitter;
mod latch;
pub mod player;
mod pool;
pub mod quality;
pub mod record;
mod relay;
mod router;
pub mod rtcp;
pub mod rtp;
mod stats;
mod sys;
pub mod transcode;
mod worker;

pub use relay::{
    Conference, EventSink, LocalPorts, MediaEvent, MediaSession, MemberSettings, PeerMedia, Relay, RelayConfig,
    RelayError, Side, SrtpKeys, TelephoneEventType, TranscodePlan,
};
pub use stats::{SessionStats, SideStats};
