//! Load test of the media relay: N G.711-like calls (172-byte RTP every 20 ms, both
//! directions) through an in-process [`Relay`] on loopback, for a bounded time.
//!
//! ```text
//! relay_load [SESSIONS=500] [SECONDS=20] [--workers N] [--gens G] [--shared] [--coalesce-us U] [--nice N]
//! relay_load --churn CPS [--seconds S] [--workers N] [--hold-ms H] [--answer-ms A] [--reuse-after-ms R] [--max-idle M]
//! ```
//!
//! `--churn CPS` measures call set-up and tear-down instead of packets (see [`churn`]):
//! first 1000 allocate + 2 × set_peer + drop in a tight loop, then CPS calls per second
//! for S seconds (20) without media, like the SIPp call benchmark: allocate and set A's
//! peer, set B's peer `--answer-ms` (5) later, drop `--hold-ms` (1000) after the start.
//! `--reuse-after-ms` and `--max-idle` set [`RelayConfig::reuse_after`] and
//! [`RelayConfig::max_idle_sockets`] (defaults otherwise; `--max-idle 0` never reuses).
//!
//! By default every session has its own two peer sockets (A peer, B peer), each
//! `connect`ed to its relay port, so the relay sees 4 distinct flows per call, like real
//! phones. `--shared` makes the peers of all sessions of a generator thread share one A
//! and one B socket, so the generators can batch with `sendmmsg`/`recvmmsg` and cost
//! little (the relay's work is the same: one socket per side per call).
//!
//! `--nice -10` raises the relay workers' scheduling priority (root), for a machine where
//! other work competes for the CPU.
//!
//! Reports packets sent and received, loss, one-way latency through the relay, the relay
//! workers' CPU time (utime + stime from `/proc/self/task/<tid>/stat`, cross-checked with
//! `schedstat`), the generators' CPU time separately, and the RSS growth per call.
//!
//! Relay ports are 40000..=41999 on 127.0.1.x (side A) and 127.0.2.x (side B): one
//! address per 900 sessions on each side, since one address has 1000 pairs.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use media::{MediaSession, PeerMedia, Relay, RelayConfig, Side};

const PACKET: usize = 172;
const PTIME: Duration = Duration::from_millis(20);
/// Sub-slots per packet time: sends are spread over the 20 ms like independent calls.
const SLOTS: usize = 20;
/// Time the generators keep receiving after the last send, so that a relay that fell
/// behind (CPU shared with other work) is not counted as loss.
const DRAIN_AFTER: Duration = Duration::from_millis(1500);
/// Latency histogram: 50 µs buckets up to 100 ms.
const BUCKET_US: u64 = 50;
const BUCKETS: usize = 2000;
const DIR_B: u32 = 0x8000_0000;
const SESSIONS_PER_IP: usize = 900;

struct Args {
    sessions: usize,
    seconds: u64,
    workers: usize,
    gens: usize,
    shared: bool,
    coalesce: Duration,
    nice: i32,
    churn: Option<u64>,
    hold: Duration,
    answer: Duration,
    reuse_after: Duration,
    max_idle: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        sessions: 500,
        seconds: 20,
        workers: RelayConfig::default().workers,
        gens: 2,
        shared: false,
        coalesce: RelayConfig::default().coalesce,
        nice: 0,
        churn: None,
        hold: Duration::from_secs(1),
        answer: Duration::from_millis(5),
        reuse_after: RelayConfig::default().reuse_after,
        max_idle: RelayConfig::default().max_idle_sockets,
    };
    let mut positional = 0;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |what: &str| -> u64 {
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match arg.as_str() {
            "--workers" => a.workers = num("--workers") as usize,
            "--gens" => a.gens = (num("--gens") as usize).max(1),
            "--coalesce-us" => a.coalesce = Duration::from_micros(num("--coalesce-us")),
            "--shared" => a.shared = true,
            "--churn" => a.churn = Some(num("--churn").clamp(1, 5000)),
            "--hold-ms" => a.hold = Duration::from_millis(num("--hold-ms").clamp(1, 60_000)),
            "--answer-ms" => a.answer = Duration::from_millis(num("--answer-ms").min(1000)),
            "--seconds" => a.seconds = num("--seconds"),
            "--reuse-after-ms" => a.reuse_after = Duration::from_millis(num("--reuse-after-ms")),
            "--max-idle" => a.max_idle = num("--max-idle") as usize,
            "--nice" => a.nice = it.next().and_then(|v| v.parse().ok()).expect("--nice needs a number"),
            v => {
                let n: u64 = v.parse().unwrap_or_else(|_| panic!("unexpected argument {v}"));
                match positional {
                    0 => a.sessions = n as usize,
                    1 => a.seconds = n,
                    _ => panic!("too many arguments"),
                }
                positional += 1;
            }
        }
    }
    // Bounded: at most 10 minutes, at most what the port range holds.
    a.seconds = a.seconds.clamp(1, 600);
    a.sessions = a.sessions.clamp(1, 4000);
    a
}

mod sys {
    //! Thin `recvmmsg`/`sendmmsg`/`setrlimit`/`sysconf` wrappers for the generators.
    #![allow(unsafe_code)]

    use std::net::SocketAddr;
    use std::os::fd::RawFd;

    pub(crate) const BATCH: usize = 64;

    pub(crate) struct Batch {
        bufs: Vec<[u8; 256]>,
        iovs: Vec<libc::iovec>,
        hdrs: Vec<libc::mmsghdr>,
        addrs: Vec<libc::sockaddr_in>,
        /// Control buffers for SO_TIMESTAMPNS (u64 for cmsghdr alignment).
        controls: Vec<[u64; 8]>,
    }

    impl Batch {
        pub(crate) fn new() -> Batch {
            let mut b = Batch {
                bufs: vec![[0u8; 256]; BATCH],
                // SAFETY: plain C structs, all-zero is valid.
                iovs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
                hdrs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
                addrs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
                controls: vec![[0u64; 8]; BATCH],
            };
            for i in 0..BATCH {
                b.iovs[i] = libc::iovec { iov_base: b.bufs[i].as_mut_ptr().cast(), iov_len: 256 };
                b.hdrs[i].msg_hdr.msg_iov = &mut b.iovs[i];
                b.hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            b
        }

        /// Receives up to BATCH datagrams without blocking; 0 if none.
        pub(crate) fn recv(&mut self, fd: RawFd) -> usize {
            for ((h, iov), c) in self.hdrs.iter_mut().zip(&mut self.iovs).zip(&mut self.controls) {
                h.msg_hdr.msg_name = std::ptr::null_mut();
                h.msg_hdr.msg_namelen = 0;
                iov.iov_len = 256;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = std::mem::size_of_val(c) as _;
            }
            // SAFETY: headers point at live iovecs/buffers owned by self.
            let n = unsafe {
                libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), BATCH as _, libc::MSG_DONTWAIT as _, std::ptr::null_mut())
            };
            n.max(0) as usize
        }

        pub(crate) fn packet(&self, i: usize) -> &[u8] {
            &self.bufs[i][..(self.hdrs[i].msg_len as usize).min(256)]
        }

        /// The kernel's receive time of datagram `i` (ns since the Unix epoch), if the
        /// socket has SO_TIMESTAMPNS.
        pub(crate) fn rx_time_ns(&self, i: usize) -> Option<u64> {
            let msg = &self.hdrs[i].msg_hdr;
            // SAFETY: the kernel filled msg_control/msg_controllen of this header; the
            // CMSG_* helpers stay within them.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                        let ts = libc::CMSG_DATA(c).cast::<libc::timespec>().read_unaligned();
                        return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                    }
                    c = libc::CMSG_NXTHDR(msg, c);
                }
            }
            None
        }

        /// Queues `data` for `to` (IPv4) at position `i`.
        pub(crate) fn set(&mut self, i: usize, data: &[u8], to: SocketAddr) {
            self.bufs[i][..data.len()].copy_from_slice(data);
            self.iovs[i].iov_len = data.len();
            if let SocketAddr::V4(a) = to {
                self.addrs[i] = libc::sockaddr_in {
                    sin_family: libc::AF_INET as _,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                    sin_zero: [0; 8],
                };
            }
            self.hdrs[i].msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            self.hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as _;
            self.hdrs[i].msg_hdr.msg_iov = &mut self.iovs[i];
            self.hdrs[i].msg_hdr.msg_control = std::ptr::null_mut();
            self.hdrs[i].msg_hdr.msg_controllen = 0;
        }

        /// Sends the first `n` queued datagrams; returns how many went.
        pub(crate) fn send(&mut self, fd: RawFd, n: usize) -> usize {
            let mut done = 0;
            while done < n {
                // SAFETY: headers done..n were set by `set` and point at live data.
                let r = unsafe {
                    libc::sendmmsg(fd, self.hdrs[done..n].as_mut_ptr(), (n - done) as _, libc::MSG_DONTWAIT as _)
                };
                if r <= 0 {
                    break;
                }
                done += r as usize;
            }
            done
        }
    }

    /// Asks the kernel to timestamp received datagrams.
    pub(crate) fn enable_rx_timestamps(fd: RawFd) {
        let on: libc::c_int = 1;
        // SAFETY: valid fd and option value of the declared size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as _,
            );
        }
    }

    /// Raises the open-file limit to its hard limit.
    pub(crate) fn raise_nofile() {
        // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
        unsafe {
            let mut r: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
                r.rlim_cur = r.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            }
        }
    }

    /// Sets the nice value of thread `tid` (negative values need CAP_SYS_NICE).
    pub(crate) fn set_nice(tid: u32, nice: i32) -> bool {
        // SAFETY: setpriority has no memory preconditions.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as _, nice) == 0 }
    }

    /// User + system CPU time of the whole process.
    pub(crate) fn process_cpu() -> std::time::Duration {
        // SAFETY: getrusage fills the zeroed struct it is given.
        let r = unsafe {
            let mut r: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut r);
            r
        };
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        std::time::Duration::from_micros(us(r.ru_utime) + us(r.ru_stime))
    }

    /// CPU time of the calling thread.
    pub(crate) fn thread_cpu() -> std::time::Duration {
        // SAFETY: clock_gettime fills the zeroed timespec it is given.
        let ts = unsafe {
            let mut ts: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
            ts
        };
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    pub(crate) fn clock_ticks() -> u64 {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as u64 } else { 100 }
    }
}

/// CPU time of this process's threads whose name starts with `prefix`: (utime+stime
/// from stat, on-CPU time from schedstat).
fn thread_cpu(prefix: &str) -> (Duration, Duration) {
    let ticks = sys::clock_ticks();
    let (mut stat, mut sched) = (Duration::ZERO, Duration::ZERO);
    for task in fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let p = task.path();
        let comm = fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        if let Ok(s) = fs::read_to_string(p.join("stat")) {
            let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
            let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
            // Fields 14 and 15 of stat; `rest` starts at field 3.
            if f.len() > 12 {
                stat += Duration::from_micros((f[11] + f[12]) * 1_000_000 / ticks);
            }
        }
        if let Ok(s) = fs::read_to_string(p.join("schedstat")) {
            let ns: u64 = s.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
            sched += Duration::from_nanos(ns);
        }
    }
    (stat, sched)
}

/// Kernel UDP counters (InErrors, RcvbufErrors, SndbufErrors) of this network namespace.
fn udp_errors() -> [u64; 3] {
    let snmp = fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return [0; 3] };
    let get = |key: &str| {
        let i = names.split_whitespace().position(|n| n == key);
        i.and_then(|i| values.split_whitespace().nth(i)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    [get("InErrors"), get("RcvbufErrors"), get("SndbufErrors")]
}

/// Cost on this machine of the two system calls a relayed packet needs at least, in a hot
/// loop on one socket pair: `sendto` (on loopback this includes delivery into the peer's
/// socket) plus a `recvmmsg` that returns one datagram.
fn calibrate() -> Duration {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = b.local_addr().unwrap();
    let mut batch = sys::Batch::new();
    let buf = [0u8; PACKET];
    let rounds = 20_000;
    let t = Instant::now();
    for _ in 0..rounds {
        a.send_to(&buf, to).unwrap();
        let _ = batch.recv(b.as_raw_fd());
    }
    t.elapsed() / rounds
}

/// Voluntary context switches (wake-ups after blocking) of threads named `prefix*`.
fn voluntary_switches(prefix: &str) -> u64 {
    thread_ids(prefix)
        .iter()
        .filter_map(|tid| fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Thread ids of this process's threads whose name starts with `prefix`.
fn thread_ids(prefix: &str) -> Vec<u32> {
    fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| fs::read_to_string(t.path().join("comm")).unwrap_or_default().starts_with(prefix))
        .filter_map(|t| t.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

fn vm_rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// Counters of one generator thread.
#[derive(Default)]
struct GenCounts {
    sent: AtomicU64,
    received: AtomicU64,
    misrouted: AtomicU64,
    late_slots: AtomicU64,
}

/// One generator thread's result.
struct GenResult {
    hist: Vec<u64>,
    lat_sum_us: u64,
    lat_max_us: u64,
}

/// A session as a generator drives it.
/// Peer sockets of side A and side B.
type SocketPair = (UdpSocket, UdpSocket);

struct Flow {
    idx: u32,
    relay_a: SocketAddr,
    relay_b: SocketAddr,
    /// Per-session peer sockets (`None` in shared mode).
    peers: Option<SocketPair>,
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn packet(buf: &mut [u8; PACKET], ssrc: u32, seq: u16) {
    buf[0] = 0x80;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buf[12..20].copy_from_slice(&unix_ns().to_le_bytes());
}

struct Rx<'a> {
    counts: &'a GenCounts,
    res: GenResult,
}

impl Rx<'_> {
    /// Accounts one received datagram, expected to carry `ssrc`-matching `ok`.
    fn take(&mut self, data: &[u8], rx_ns: Option<u64>, ok: impl Fn(u32) -> bool) {
        if data.len() != PACKET {
            self.counts.misrouted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ssrc = u32::from_be_bytes(data[8..12].try_into().unwrap());
        if !ok(ssrc) {
            self.counts.misrouted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counts.received.fetch_add(1, Ordering::Relaxed);
        let sent = u64::from_le_bytes(data[12..20].try_into().unwrap());
        let us = rx_ns.unwrap_or_else(unix_ns).saturating_sub(sent) / 1000;
        self.res.hist[((us / BUCKET_US) as usize).min(BUCKETS - 1)] += 1;
        self.res.lat_sum_us += us;
        self.res.lat_max_us = self.res.lat_max_us.max(us);
    }

    fn drain(&mut self, batch: &mut sys::Batch, fd: RawFd, ok: impl Fn(u32) -> bool + Copy) {
        // Bounded: a socket cannot hold more than its buffer, but stay safe.
        for _ in 0..64 {
            let n = batch.recv(fd);
            for i in 0..n {
                self.take(batch.packet(i), batch.rx_time_ns(i), ok);
            }
            if n < sys::BATCH {
                break;
            }
        }
    }
}

/// Drives `flows` until `stop_at`, then drains for DRAIN_AFTER.
fn generate(
    flows: Vec<Flow>,
    shared: Option<SocketPair>,
    counts: &GenCounts,
    start: Instant,
    stop_at: Instant,
) -> GenResult {
    let mut rx = Rx { counts, res: GenResult { hist: vec![0; BUCKETS], lat_sum_us: 0, lat_max_us: 0 } };
    let mut batch = sys::Batch::new();
    let mut out_a = sys::Batch::new();
    let mut out_b = sys::Batch::new();
    let mut buf = [0u8; PACKET];
    let slot_len = PTIME / SLOTS as u32;
    let end = stop_at + DRAIN_AFTER;
    let mut seq: u16 = 0;
    let mut tick: u64 = 0;
    let from_b = |idx: u32| move |ssrc: u32| ssrc == idx | DIR_B;
    let from_a = |idx: u32| move |ssrc: u32| ssrc == idx;
    loop {
        let slot_at = start + slot_len * tick as u32;
        let now = Instant::now();
        if slot_at > now {
            std::thread::sleep(slot_at - now);
        } else if now - slot_at > slot_len {
            counts.late_slots.fetch_add(1, Ordering::Relaxed);
        }
        if slot_at >= end {
            break;
        }
        let sending = slot_at < stop_at;
        let slot = (tick % SLOTS as u64) as usize;
        if slot == 0 && tick > 0 {
            seq = seq.wrapping_add(1);
        }
        let mine = flows.iter().filter(|f| f.idx as usize % SLOTS == slot);
        match &shared {
            None => {
                for f in mine {
                    let Some((pa, pb)) = &f.peers else { continue };
                    rx.drain(&mut batch, pa.as_raw_fd(), from_b(f.idx));
                    rx.drain(&mut batch, pb.as_raw_fd(), from_a(f.idx));
                    if sending {
                        packet(&mut buf, f.idx, seq);
                        if pa.send(&buf).is_ok() {
                            counts.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        packet(&mut buf, f.idx | DIR_B, seq);
                        if pb.send(&buf).is_ok() {
                            counts.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Some((sa, sb)) => {
                // Any session of this thread may be in the shared sockets' queues.
                let any_b = |ssrc: u32| ssrc & DIR_B != 0;
                let any_a = |ssrc: u32| ssrc & DIR_B == 0;
                rx.drain(&mut batch, sa.as_raw_fd(), any_b);
                rx.drain(&mut batch, sb.as_raw_fd(), any_a);
                if sending {
                    let mut n = 0;
                    let flush = |n: &mut usize, out_a: &mut sys::Batch, out_b: &mut sys::Batch| {
                        let sent = out_a.send(sa.as_raw_fd(), *n) + out_b.send(sb.as_raw_fd(), *n);
                        counts.sent.fetch_add(sent as u64, Ordering::Relaxed);
                        *n = 0;
                    };
                    for f in mine {
                        packet(&mut buf, f.idx, seq);
                        out_a.set(n, &buf, f.relay_a);
                        packet(&mut buf, f.idx | DIR_B, seq);
                        out_b.set(n, &buf, f.relay_b);
                        n += 1;
                        if n == sys::BATCH {
                            flush(&mut n, &mut out_a, &mut out_b);
                        }
                    }
                    flush(&mut n, &mut out_a, &mut out_b);
                }
            }
        }
        tick += 1;
    }
    // Last drain of every socket.
    for f in &flows {
        if let Some((pa, pb)) = &f.peers {
            rx.drain(&mut batch, pa.as_raw_fd(), from_b(f.idx));
            rx.drain(&mut batch, pb.as_raw_fd(), from_a(f.idx));
        }
    }
    if let Some((sa, sb)) = &shared {
        rx.drain(&mut batch, sa.as_raw_fd(), |s| s & DIR_B != 0);
        rx.drain(&mut batch, sb.as_raw_fd(), |s| s & DIR_B == 0);
    }
    rx.res
}

fn ip(third: u8, fourth: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, third, (fourth + 1) as u8))
}

/// Gives a shared generator socket large buffers and receive timestamps.
fn big_buffers(s: UdpSocket) -> UdpSocket {
    sys::enable_rx_timestamps(s.as_raw_fd());
    let s = socket2::Socket::from(s);
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.into()
}

fn main() {
    let args = parse_args();
    sys::raise_nofile();
    if let Some(cps) = args.churn {
        std::thread::scope(|s| {
            std::thread::Builder::new().name("churn".into()).spawn_scoped(s, || churn(cps, &args)).unwrap();
        });
        return;
    }
    let n = args.sessions;
    println!("cpu: {} ({} cores online)", cpu_model(), std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!(
        "sessions {n}, {} s, relay workers {}, generator threads {}, peers {}, coalesce {:?}",
        args.seconds,
        args.workers,
        args.gens,
        if args.shared { "shared per generator" } else { "one A + one B socket per session" },
        args.coalesce
    );

    println!(
        "kernel floor per relayed packet (sendto + recvmmsg, hot loop): {:.2} µs",
        calibrate().as_secs_f64() * 1e6
    );
    let relay = Relay::start(RelayConfig {
        port_min: 40000,
        port_max: 41999,
        workers: args.workers,
        dscp: Some(46),
        relatch_after: Duration::from_secs(2),
        coalesce: args.coalesce,
        ..RelayConfig::default()
    })
    .unwrap();

    if args.nice != 0 {
        // Emulates a media host where the relay is not starved by unrelated work. The
        // threads name themselves once running: wait (bounded) until all have.
        let mut tids = thread_ids("media-worker");
        for _ in 0..100 {
            if tids.len() >= args.workers {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            tids = thread_ids("media-worker");
        }
        let ok = tids.iter().all(|&t| sys::set_nice(t, args.nice));
        println!("relay worker threads {tids:?} at nice {}: {}", args.nice, if ok { "ok" } else { "FAILED" });
    }
    let ips = n.div_ceil(SESSIONS_PER_IP);
    let rss0 = vm_rss_kib();
    let alloc_start = Instant::now();
    let sessions: Vec<MediaSession> = (0..n).map(|i| relay.allocate(ip(1, i % ips), ip(2, i % ips)).unwrap()).collect();
    let alloc_time = alloc_start.elapsed();
    let rss1 = vm_rss_kib();
    println!(
        "allocated {n} sessions in {:.1} ms ({:.1} µs each); RSS {} → {} KiB: {:.2} KiB per call",
        alloc_time.as_secs_f64() * 1e3,
        alloc_time.as_secs_f64() * 1e6 / n as f64,
        rss0,
        rss1,
        rss1.saturating_sub(rss0) as f64 / n as f64
    );

    // Peers: generator g drives sessions g, g+G, ...
    let gen_ip_a = IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1));
    let gen_ip_b = IpAddr::V4(Ipv4Addr::new(127, 0, 4, 1));
    let mut per_gen: Vec<(Vec<Flow>, Option<SocketPair>)> = (0..args.gens)
        .map(|_| {
            let shared = args.shared.then(|| {
                let a = big_buffers(UdpSocket::bind(SocketAddr::new(gen_ip_a, 0)).unwrap());
                let b = big_buffers(UdpSocket::bind(SocketAddr::new(gen_ip_b, 0)).unwrap());
                (a, b)
            });
            (Vec::new(), shared)
        })
        .collect();
    for (i, m) in sessions.iter().enumerate() {
        let (la, lb) = (m.local(Side::A), m.local(Side::B));
        let relay_a = SocketAddr::new(la.ip, la.rtp);
        let relay_b = SocketAddr::new(lb.ip, lb.rtp);
        let (flows, shared) = &mut per_gen[i % args.gens];
        let peers = match shared {
            Some((sa, sb)) => {
                m.set_peer(Side::A, PeerMedia::new(sa.local_addr().unwrap())).unwrap();
                m.set_peer(Side::B, PeerMedia::new(sb.local_addr().unwrap())).unwrap();
                None
            }
            None => {
                let pa = UdpSocket::bind(SocketAddr::new(gen_ip_a, 0)).unwrap();
                let pb = UdpSocket::bind(SocketAddr::new(gen_ip_b, 0)).unwrap();
                pa.connect(relay_a).unwrap();
                pb.connect(relay_b).unwrap();
                sys::enable_rx_timestamps(pa.as_raw_fd());
                sys::enable_rx_timestamps(pb.as_raw_fd());
                m.set_peer(Side::A, PeerMedia::new(pa.local_addr().unwrap())).unwrap();
                m.set_peer(Side::B, PeerMedia::new(pb.local_addr().unwrap())).unwrap();
                Some((pa, pb))
            }
        };
        flows.push(Flow { idx: i as u32, relay_a, relay_b, peers });
    }

    let counts: Arc<Vec<GenCounts>> = Arc::new((0..args.gens).map(|_| GenCounts::default()).collect());
    let epoch = Instant::now();
    let start = epoch + Duration::from_millis(200);
    let stop_at = start + Duration::from_secs(args.seconds);
    let threads: Vec<_> = per_gen
        .into_iter()
        .enumerate()
        .map(|(g, (flows, shared))| {
            let counts = Arc::clone(&counts);
            std::thread::Builder::new()
                .name(format!("gen-{g}"))
                .spawn(move || generate(flows, shared, &counts[g], start, stop_at))
                .unwrap()
        })
        .collect();

    // CPU is measured over the steady state: from 1 s after the start to the stop.
    let warm = start + Duration::from_secs(1).min(Duration::from_secs(args.seconds) / 2);
    std::thread::sleep(warm.saturating_duration_since(Instant::now()));
    let (relay0, relay0s) = thread_cpu("media-worker");
    let (gen0, gen0s) = thread_cpu("gen-");
    let udp0 = udp_errors();
    let switches0 = voluntary_switches("media-worker");
    let t0 = Instant::now();
    std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
    let (relay1, relay1s) = thread_cpu("media-worker");
    let (gen1, gen1s) = thread_cpu("gen-");
    let switches1 = voluntary_switches("media-worker");
    let wall = t0.elapsed();
    let rss2 = vm_rss_kib();

    let results: Vec<GenResult> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let udp1 = udp_errors();
    let sum = |f: fn(&GenCounts) -> &AtomicU64| counts.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>();
    let (sent, received) = (sum(|c| &c.sent), sum(|c| &c.received));
    let (misrouted, late) = (sum(|c| &c.misrouted), sum(|c| &c.late_slots));
    let mut hist = vec![0u64; BUCKETS];
    let (mut lat_sum, mut lat_max) = (0u64, 0u64);
    for r in &results {
        for (h, x) in hist.iter_mut().zip(&r.hist) {
            *h += x;
        }
        lat_sum += r.lat_sum_us;
        lat_max = lat_max.max(r.lat_max_us);
    }
    let pct = |q: f64| {
        let target = (received as f64 * q).ceil() as u64;
        let mut acc = 0;
        for (i, h) in hist.iter().enumerate() {
            acc += h;
            if acc >= target {
                return (i as u64 + 1) * BUCKET_US;
            }
        }
        BUCKETS as u64 * BUCKET_US
    };

    let mut relay_tx = 0;
    let mut relay_rx = 0;
    let mut relay_drop = 0;
    let mut relay_err = 0;
    for m in &sessions {
        let s = m.stats();
        for side in [s.a, s.b] {
            relay_tx += side.sent_packets;
            relay_rx += side.received_packets;
            relay_drop += side.dropped();
            relay_err += side.send_errors;
        }
    }

    let wall_s = wall.as_secs_f64();
    let relay_cpu = (relay1 - relay0).as_secs_f64();
    let relay_cpu_sched = (relay1s - relay0s).as_secs_f64();
    let gen_cpu = (gen1 - gen0).as_secs_f64();
    let gen_cpu_sched = (gen1s - gen0s).as_secs_f64();
    let loss = if sent == 0 { 0.0 } else { 100.0 * (sent.saturating_sub(received)) as f64 / sent as f64 };
    println!(
        "packets: sent {sent}, received {received}, loss {loss:.4} %, misrouted {misrouted}, late generator slots {late}"
    );
    println!("relay counters: received {relay_rx}, sent {relay_tx}, dropped {relay_drop}, send errors {relay_err}");
    println!(
        "kernel UDP counters during the run (whole machine): InErrors +{}, RcvbufErrors +{}, SndbufErrors +{}",
        udp1[0] - udp0[0],
        udp1[1] - udp0[1],
        udp1[2] - udp0[2]
    );
    println!(
        "one-way latency, generator send to kernel receive at the peer socket: mean {:.0} µs, p50 ≤{} µs, p99 ≤{} µs, p99.9 ≤{} µs, max {} µs",
        lat_sum as f64 / received.max(1) as f64,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        lat_max
    );
    println!(
        "relay CPU over {wall_s:.1} s: {relay_cpu:.2} s utime+stime ({relay_cpu_sched:.2} s schedstat) = {:.1} % of one core; {:.4} % of one core per call; {:.2} µs per relayed packet",
        100.0 * relay_cpu / wall_s,
        100.0 * relay_cpu / wall_s / n as f64,
        relay_cpu_sched * 1e6 / (2.0 * n as f64 * 50.0 * wall_s),
    );
    println!(
        "relay wake-ups: {:.0} per second (all workers), {:.1} packets per wake-up",
        (switches1 - switches0) as f64 / wall_s,
        2.0 * n as f64 * 50.0 * wall_s / (switches1 - switches0).max(1) as f64
    );
    println!(
        "generator CPU: {gen_cpu:.2} s utime+stime ({gen_cpu_sched:.2} s schedstat) = {:.1} % of one core",
        100.0 * gen_cpu / wall_s
    );
    println!(
        "RSS: {rss0} KiB before allocation, {rss1} after ({:.2} KiB per call), {rss2} during traffic ({:.2} KiB per call incl. generators)",
        rss1.saturating_sub(rss0) as f64 / n as f64,
        rss2.saturating_sub(rss0) as f64 / n as f64
    );
    drop(sessions);
    relay.shutdown();
}

/// Relay settings of the churn mode: the example's port range, up to 4 addresses per side.
fn churn_config(args: &Args) -> RelayConfig {
    RelayConfig {
        port_min: 40000,
        port_max: 41999,
        workers: args.workers,
        dscp: Some(46),
        relatch_after: Duration::from_secs(2),
        coalesce: args.coalesce,
        reuse_after: args.reuse_after,
        max_idle_sockets: args.max_idle,
        inband_dtmf: true,
    }
}

/// CPU and wake-up counters at one moment of the churn run.
#[derive(Clone, Copy)]
struct ChurnMark {
    at: Instant,
    calls: u64,
    process: Duration,
    workers: Duration,
    switches: u64,
}

fn churn_mark(calls: u64) -> ChurnMark {
    ChurnMark {
        at: Instant::now(),
        calls,
        process: sys::process_cpu(),
        workers: thread_cpu("media-worker").1,
        switches: voluntary_switches("media-worker"),
    }
}

/// Wall and CPU time of the calling thread spent in relay API calls.
#[derive(Clone, Copy, Default)]
struct ApiTime {
    wall: Duration,
    cpu: Duration,
}

impl ApiTime {
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let (w, c) = (Instant::now(), sys::thread_cpu());
        let r = f();
        self.cpu += sys::thread_cpu().saturating_sub(c);
        self.wall += w.elapsed();
        r
    }
}

fn churn_report(what: &str, a: ChurnMark, b: ChurnMark, api: ApiTime) {
    let calls = (b.calls - a.calls).max(1) as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / calls;
    println!(
        "{what}: {} calls in {:.2} s; per call: API calls {:.1} µs wall / {:.1} µs CPU of the calling \
         thread, relay workers {:.1} µs CPU, whole process {:.1} µs CPU, worker wake-ups {:.2}",
        b.calls - a.calls,
        (b.at - a.at).as_secs_f64(),
        us(api.wall),
        us(api.cpu),
        us(b.workers - a.workers),
        us(b.process - a.process),
        (b.switches - a.switches) as f64 / calls,
    );
}

/// Call set-up and tear-down cost: what one call costs the relay without any media.
///
/// Each call is `allocate` (side A on 127.0.1.x, side B on 127.0.2.x, 4 addresses each)
/// with `set_peer(A)`, `set_peer(B)` a little later (the answer), and the drop of the
/// session. Reported per call: time spent in these API calls on the calling thread (wall
/// and thread CPU), CPU of the relay workers and of the whole process (which includes the
/// driving thread's own sleeps), and voluntary context switches of the workers (their
/// wake-ups).
fn churn(cps: u64, args: &Args) {
    const LOOP: u64 = 1000;
    const IPS: usize = 4;
    let cfg = churn_config(args);
    println!("churn: {cfg:?}");
    let relay = Relay::start(cfg).unwrap();
    let peer =
        |third: u8, i: u64| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, third, 1)), 20000 + (i % 1000) as u16 * 2);
    let allocate = |i: u64| -> Option<MediaSession> {
        let idx = i as usize % IPS;
        let m = relay.allocate(ip(1, idx), ip(2, idx)).ok()?;
        m.set_peer(Side::A, PeerMedia::new(peer(3, i))).unwrap();
        Some(m)
    };
    let answer = |m: &MediaSession, i: u64| m.set_peer(Side::B, PeerMedia::new(peer(4, i))).unwrap();
    let settle = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while relay.active_sessions() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    settle();

    // Tight loop: allocate, set both peers, drop.
    let mut api = ApiTime::default();
    let m0 = churn_mark(0);
    for i in 0..LOOP {
        api.time(|| {
            let m = allocate(i).expect("allocate");
            answer(&m, i);
            drop(m);
        });
    }
    settle();
    churn_report("tight loop (allocate + 2 set_peer + drop)", m0, churn_mark(LOOP), api);

    // Paced: `cps` calls per second; measured after a warm-up that covers the hold time
    // plus the default quarantine plus one second.
    let total = cps * args.seconds;
    let period = Duration::from_secs_f64(1.0 / cps as f64);
    let warm_calls = ((cps as f64 * (args.hold + Duration::from_secs(3)).as_secs_f64()) as u64).min(total / 2);
    let (mut api, mut failed) = (ApiTime::default(), 0u64);
    // Calls waiting for their answer, then for their end; both in start order.
    let mut ringing: std::collections::VecDeque<(Instant, u64, MediaSession)> = Default::default();
    let mut live: std::collections::VecDeque<(Instant, MediaSession)> = Default::default();
    let start = Instant::now();
    let mut mark = None;
    let mut i = 0;
    let end_at = start + period * total as u32;
    loop {
        let now = Instant::now();
        while ringing.front().is_some_and(|(due, _, _)| *due <= now) {
            let Some((_, idx, m)) = ringing.pop_front() else { break };
            api.time(|| answer(&m, idx));
            live.push_back((start + period * idx as u32 + args.hold, m));
        }
        while live.front().is_some_and(|(due, _)| *due <= now) {
            let done = live.pop_front();
            api.time(|| drop(done));
        }
        if i < total && start + period * i as u32 <= now {
            if i == warm_calls {
                api = ApiTime::default();
                mark = Some(churn_mark(i));
            }
            match api.time(|| allocate(i)) {
                Some(m) => ringing.push_back((start + period * i as u32 + args.answer, i, m)),
                None => failed += 1,
            }
            i += 1;
        }
        if i >= total && now >= end_at {
            break;
        }
        let next =
            [(i < total).then(|| start + period * i as u32), ringing.front().map(|r| r.0), live.front().map(|l| l.0)];
        if let Some(next) = next.into_iter().flatten().min() {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
    let end = churn_mark(total);
    println!(
        "paced: {cps} calls/s for {} s, answered after {:?}, held {:?}, {failed} allocations failed",
        args.seconds, args.answer, args.hold
    );
    if let Some(m) = mark {
        churn_report("paced, steady state", m, end, api);
    }
    drop((ringing, live));
    settle();
    relay.shutdown();
}
