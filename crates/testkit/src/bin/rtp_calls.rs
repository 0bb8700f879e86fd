//! `rtp-calls`: load generator for Switchboard's media relay under real calls.
//!
//! An independent SIP user agent over UDP (its own SIP text, its own minimal parsing and its own
//! MD5 digest code: nothing of Switchboard's `sip` crate), so that what it measures is the server
//! as any phone sees it:
//!
//! 1. registers the callees of a CSV file (`SEQUENTIAL` line, then `ext;password` lines, as
//!    `bench/sipp/gen-csv.sh` writes) with digest authentication (REGISTER → 401 → REGISTER with
//!    credentials → 200) from a few SIP sockets; every registered callee answers the INVITEs the
//!    server sends it (200 with SDP: a fresh local RTP socket, PCMU/8000; 2xx retransmitted until
//!    the ACK), and BYEs (200);
//! 2. places N calls from one caller, paced (`--rate`), over a few caller sockets
//!    (INVITE with SDP → 407 → ACK → INVITE with Proxy-Authorization → 100/180 → 200 → ACK),
//!    spread over the callees, with RFC 3261 retransmissions (T1 = 500 ms) and 32 s timeouts;
//! 3. once all calls are up, sends one 172-byte RTP packet (12-byte header with its own SSRC,
//!    sequence number and timestamp, 160 bytes of PCMU payload) every 20 ms from each side of
//!    every call: the caller side to the relay port of the 200's SDP, the callee side to the
//!    relay port of the INVITE's SDP. Each side has its own socket (`--rtp-sockets per-call`,
//!    like real phones: four distinct flows per call through the relay) or the sides of all calls
//!    of one generator thread share one socket each (`shared`, so that `sendmmsg` batches many
//!    packets per system call). Every socket is read with `recvmmsg` (kernel receive timestamps)
//!    once per 20 ms, in the same time slot as its sends, so the generator needs no wake-ups;
//! 4. counts packets per direction. The relay sends toward a side's SDP address until it latches
//!    that side's first packet, and both may take a few milliseconds to settle, so **loss is
//!    measured over the steady state**: packets sent after the warm-up (`--warmup`, 2 s) and
//!    received before the end of the drain (1 s after the last send). The payload carries the
//!    sending endpoint, its 20 ms period number and its send time, which gives one-way latency
//!    through the relay and catches cross-talk (a side receiving another call's media);
//! 5. samples the server (`--server-pid`) from `/proc`: CPU time (utime + stime; relay threads
//!    `media-worker-*` apart) and RSS before the calls, with all calls up and idle, over the
//!    steady RTP window, and after hang-up; and the generator's own CPU time;
//! 6. hangs up every call (BYE from the caller side, 200 expected; the callee side gets the
//!    server's BYE and answers 200).
//!
//! Prints a report and one machine-readable line `SUMMARY {json}`. Exit status: 0 when every call
//! was set up, every BYE answered and the steady-state loss of both directions is at most
//! `--max-loss` percent with no cross-talk; 1 otherwise; 2 on a usage or start-up error.
//! Every phase is bounded in time; only loopback addresses are meant.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use md5::{Digest, Md5};

/// RFC 3261 T1: first retransmission interval.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: longest retransmission interval of non-INVITE requests and 2xx responses.
const T2: Duration = Duration::from_secs(4);
/// 64·T1: Timer B / F / H.
const TXN_TIMEOUT: Duration = Duration::from_secs(32);
/// Packet time of G.711 at 20 ms.
const PTIME: Duration = Duration::from_millis(20);
/// RTP header (12) + 160 PCMU samples.
const RTP_PACKET: usize = 172;
/// RTP timestamp increment per packet (8 kHz · 20 ms).
const TS_STEP: u32 = 160;
/// Time slots per packet time: a generator thread sends a twentieth of its streams every 1 ms,
/// like independent phones, rather than all at once.
const SLOTS: usize = 20;
/// Marks our RTP payloads (first payload bytes).
const MAGIC: [u8; 4] = *b"RTPc";
/// How long the generators keep receiving after the last send.
const DRAIN: Duration = Duration::from_secs(1);
/// Latency histogram: 10 µs buckets up to 200 ms (the last bucket holds everything above).
const LAT_BUCKET_US: u64 = 10;
const LAT_BUCKETS: usize = 20_000;
/// A slot served this late (behind its due time) counts as a late slot of the generator.
const LATE: Duration = Duration::from_millis(5);
/// Longest RTP phase.
const MAX_DURATION_S: u64 = 600;

// ==== command line ================================================================================

/// How RTP sockets are laid out on the generator side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RtpSockets {
    /// One socket per call per side (four distinct flows per call, like real phones); one
    /// `sendmmsg` and one `recvmmsg` per packet.
    PerCall,
    /// One socket per side per generator thread, shared by its calls (batched `sendmmsg`);
    /// the relay does the same work, the generator much less.
    Shared,
}

/// An inclusive port range written `FIRST-LAST`.
#[derive(Clone, Debug)]
struct PortRange(RangeInclusive<u16>);

fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("`{s}`: expected FIRST-LAST"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("`{a}`: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("`{b}`: {e}"))?;
    if a == 0 || a > b {
        return Err(format!("`{s}`: need 1 <= FIRST <= LAST"));
    }
    Ok(PortRange(a..=b))
}

/// Calls with G.711 RTP through Switchboard's relay: loss, latency, and the server's CPU time
/// and memory per call.
#[derive(Parser, Debug)]
#[command(name = "rtp-calls", version)]
struct Args {
    /// The server's SIP address (UDP).
    #[arg(long, default_value = "127.0.0.1:15080")]
    server: SocketAddr,
    /// SIP domain of the users (the tenant).
    #[arg(long, default_value = "bench.test")]
    domain: String,
    /// Caller extension.
    #[arg(long, default_value = "2000")]
    caller: String,
    /// Caller password (default: pw-<caller>-bench, as bench/sipp/gen-csv.sh writes).
    #[arg(long)]
    caller_password: Option<String>,
    /// CSV of callees: a SEQUENTIAL first line, then `ext;password` lines.
    #[arg(long)]
    callees: PathBuf,
    /// Use at most this many callees of the file (0: all).
    #[arg(long, default_value_t = 0)]
    max_callees: usize,
    /// Number of concurrent calls.
    #[arg(long, short = 'n', default_value_t = 500)]
    calls: usize,
    /// Seconds of RTP once all calls are up (at most 600).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds at the start of the RTP phase left out of the loss and CPU figures.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds with all calls up and no RTP, to measure the server's idle cost of the calls.
    #[arg(long, default_value_t = 2)]
    idle: u64,
    /// Local IPv4 address for SIP and RTP.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: Ipv4Addr,
    /// Local SIP ports (caller and callee sockets).
    #[arg(long, default_value = "46000-46999", value_parser = parse_port_range)]
    sip_ports: PortRange,
    /// Local RTP ports (per-call mode: one per call per side).
    #[arg(long, default_value = "47000-64999", value_parser = parse_port_range)]
    rtp_ports: PortRange,
    /// RTP socket layout.
    #[arg(long, value_enum, default_value_t = RtpSockets::PerCall)]
    rtp_sockets: RtpSockets,
    /// RTP generator threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// SIP sockets placing calls.
    #[arg(long, default_value_t = 4)]
    caller_sockets: usize,
    /// SIP sockets the callees register from and receive INVITEs on.
    #[arg(long, default_value_t = 2)]
    callee_sockets: usize,
    /// Call setups (and registrations, and BYEs) per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds to wait after the hang-up before the last memory sample (calls linger for their
    /// retransmission timers after BYE).
    #[arg(long, default_value_t = 0)]
    settle_after: u64,
    /// Server process to measure (CPU time and RSS from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Highest steady-state loss (percent, each direction) for a passing run.
    #[arg(long, default_value_t = 0.01)]
    max_loss: f64,
    /// Also append the JSON summary line to this file.
    #[arg(long)]
    summary_file: Option<PathBuf>,
    /// Free text copied into the summary (e.g. a run label).
    #[arg(long, default_value = "")]
    label: String,
}

// ==== errors ======================================================================================

/// What stops the tool before it can measure.
#[derive(Debug)]
enum Error {
    /// Bad options or input file.
    Usage(String),
    /// A system call failed.
    Io(&'static str, io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => f.write_str(m),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

// ==== system calls ================================================================================

#[allow(unsafe_code)]
mod sys {
    //! Thin wrappers over `recvmmsg`, `sendmmsg`, `poll`, socket options and resource limits.

    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::os::fd::RawFd;
    use std::time::Duration;

    /// Datagrams per `recvmmsg` / `sendmmsg`.
    pub(crate) const BATCH: usize = 64;
    /// Room per datagram (our RTP is 172 bytes; longer ones are truncated and rejected).
    const BUF: usize = 256;

    fn zeroed_vec<T>(n: usize) -> Vec<T> {
        // SAFETY: only used for plain C structs (iovec, mmsghdr, sockaddr_in), for which all-zero
        // bytes are a valid value (null pointers, zero lengths).
        (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
    }

    /// A `recvmmsg` batch with source addresses and kernel receive timestamps.
    pub(crate) struct RxBatch {
        bufs: Vec<[u8; BUF]>,
        iovs: Vec<libc::iovec>,
        hdrs: Vec<libc::mmsghdr>,
        names: Vec<libc::sockaddr_in>,
        /// Control buffers for SCM_TIMESTAMPNS (u64 for cmsghdr alignment).
        ctrl: Vec<[u64; 8]>,
    }

    impl RxBatch {
        pub(crate) fn new() -> RxBatch {
            let mut b = RxBatch {
                bufs: vec![[0u8; BUF]; BATCH],
                iovs: zeroed_vec(BATCH),
                hdrs: zeroed_vec(BATCH),
                names: zeroed_vec(BATCH),
                ctrl: vec![[0u64; 8]; BATCH],
            };
            // The vectors are never resized, so these pointers into their heap buffers stay
            // valid for the life of the batch, wherever the struct itself moves.
            for i in 0..BATCH {
                b.iovs[i] = libc::iovec { iov_base: b.bufs[i].as_mut_ptr().cast(), iov_len: BUF };
                b.hdrs[i].msg_hdr.msg_iov = &mut b.iovs[i];
                b.hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            b
        }

        /// Receives up to BATCH datagrams from `fd` without blocking; 0 if none (or an error).
        pub(crate) fn recv(&mut self, fd: RawFd) -> usize {
            for i in 0..BATCH {
                let h = &mut self.hdrs[i].msg_hdr;
                h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as _;
                h.msg_control = self.ctrl[i].as_mut_ptr().cast();
                h.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
                h.msg_flags = 0;
                self.iovs[i].iov_len = BUF;
            }
            // SAFETY: BATCH headers, each pointing at its own live iovec (over a BUF-byte buffer),
            // sockaddr_in and control buffer of the declared sizes, all owned by self; the kernel
            // writes only within them. An invalid fd only yields EBADF.
            let n = unsafe {
                libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), BATCH as _, libc::MSG_DONTWAIT as _, std::ptr::null_mut())
            };
            n.max(0) as usize
        }

        /// Datagram `i` of the last `recv` (None if it was truncated).
        pub(crate) fn packet(&self, i: usize) -> Option<&[u8]> {
            let h = &self.hdrs[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return None;
            }
            Some(&self.bufs[i][..(h.msg_len as usize).min(BUF)])
        }

        /// Source address of datagram `i` (IPv4 only).
        pub(crate) fn source(&self, i: usize) -> Option<SocketAddrV4> {
            let a = &self.names[i];
            if a.sin_family as i32 != libc::AF_INET {
                return None;
            }
            Some(SocketAddrV4::new(Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()), u16::from_be(a.sin_port)))
        }

        /// Kernel receive time of datagram `i` (ns since the Unix epoch, CLOCK_REALTIME).
        pub(crate) fn rx_time_ns(&self, i: usize) -> Option<u64> {
            let msg = &self.hdrs[i].msg_hdr;
            // SAFETY: the kernel filled msg_control / msg_controllen of this header, which point
            // into self.ctrl[i]; the CMSG_* helpers stay within msg_controllen, and the data of an
            // SCM_TIMESTAMPNS message is a timespec (read unaligned).
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
    }

    /// A `sendmmsg` batch to IPv4 destinations.
    pub(crate) struct TxBatch {
        bufs: Vec<[u8; BUF]>,
        iovs: Vec<libc::iovec>,
        hdrs: Vec<libc::mmsghdr>,
        names: Vec<libc::sockaddr_in>,
        len: usize,
    }

    impl TxBatch {
        pub(crate) fn new() -> TxBatch {
            let mut b = TxBatch {
                bufs: vec![[0u8; BUF]; BATCH],
                iovs: zeroed_vec(BATCH),
                hdrs: zeroed_vec(BATCH),
                names: zeroed_vec(BATCH),
                len: 0,
            };
            // Stable heap pointers, as in RxBatch::new.
            for i in 0..BATCH {
                b.iovs[i] = libc::iovec { iov_base: b.bufs[i].as_mut_ptr().cast(), iov_len: 0 };
                let h = &mut b.hdrs[i].msg_hdr;
                h.msg_iov = &mut b.iovs[i];
                h.msg_iovlen = 1;
                h.msg_name = (&mut b.names[i] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as _;
            }
            b
        }

        pub(crate) fn len(&self) -> usize {
            self.len
        }

        pub(crate) fn is_full(&self) -> bool {
            self.len == BATCH
        }

        /// Queues a datagram of `len` bytes for `to`, written by `fill` (the caller checks
        /// `is_full` first).
        pub(crate) fn push(&mut self, to: SocketAddrV4, len: usize, fill: impl FnOnce(&mut [u8])) {
            let i = self.len;
            fill(&mut self.bufs[i][..len]);
            self.iovs[i].iov_len = len;
            self.names[i] = libc::sockaddr_in {
                sin_family: libc::AF_INET as _,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.ip().octets()) },
                sin_zero: [0; 8],
            };
            self.len += 1;
        }

        /// Sends the queued datagrams from `fd` and empties the batch; returns how many the
        /// kernel took (the rest failed: EAGAIN on a full send buffer, or an error).
        pub(crate) fn send(&mut self, fd: RawFd) -> usize {
            let n = self.len;
            let mut done = 0;
            while done < n {
                // SAFETY: headers done..n were filled by `push` and point at live buffers, iovecs
                // and addresses owned by self. An invalid fd only yields EBADF.
                let r = unsafe {
                    libc::sendmmsg(fd, self.hdrs[done..n].as_mut_ptr(), (n - done) as _, libc::MSG_DONTWAIT as _)
                };
                if r <= 0 {
                    break;
                }
                done += r as usize;
            }
            self.len = 0;
            done
        }
    }

    fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
        // SAFETY: a valid pointer to a c_int of the declared size; an invalid fd only yields EBADF.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as _,
            ) == 0
        }
    }

    /// Asks the kernel to timestamp received datagrams (SO_TIMESTAMPNS).
    pub(crate) fn enable_rx_timestamps(fd: RawFd) {
        set_int_opt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    }

    /// Sets the receive buffer (SO_RCVBUFFORCE when allowed, else SO_RCVBUF up to rmem_max).
    pub(crate) fn set_rcvbuf(fd: RawFd, bytes: i32) {
        if !set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes) {
            set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes);
        }
    }

    /// Raises the open-file soft limit to the hard limit; returns the new soft limit.
    pub(crate) fn raise_nofile() -> u64 {
        // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
        unsafe {
            let mut r: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
                return 1024;
            }
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
            r.rlim_cur as u64
        }
    }

    /// CPUs online (not only those this process may run on).
    pub(crate) fn online_cpus() -> u64 {
        // SAFETY: sysconf has no memory preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        n.max(1) as u64
    }

    /// Clock ticks per second of /proc times.
    pub(crate) fn clock_ticks() -> u64 {
        // SAFETY: sysconf has no memory preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as u64 } else { 100 }
    }

    /// Waits until one of `fds` is readable or `timeout` passes; sets `ready[i]` per fd.
    pub(crate) fn poll_readable(fds: &[RawFd], timeout: Duration, ready: &mut Vec<bool>) {
        let mut p: Vec<libc::pollfd> =
            fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
        let ms = timeout.as_micros().div_ceil(1000).min(60_000) as libc::c_int;
        // SAFETY: `p` is a live array of p.len() pollfd structs.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
        ready.clear();
        ready.extend(p.iter().map(|x| n > 0 && x.revents & (libc::POLLIN | libc::POLLERR) != 0));
    }
}

// ==== /proc sampling ==============================================================================

/// CPU time and memory of one process at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    /// utime + stime of the whole process (live and exited threads), from /proc/PID/stat.
    cpu: Duration,
    /// utime + stime of the threads whose name starts with the sampled prefix.
    group_cpu: Duration,
    /// On-CPU time summed over live threads (/proc/PID/task/*/schedstat, ns precision).
    sched: Duration,
    /// The same for the prefixed threads.
    group_sched: Duration,
    /// VmRSS in KiB.
    rss_kib: u64,
    /// RssAnon in KiB (heap and stacks; not the binary's pages).
    anon_kib: u64,
    /// Number of threads.
    threads: u64,
    /// Open file descriptors (sockets: each relayed call holds four).
    fds: u64,
}

fn stat_cpu(text: &str, hz: u64) -> Duration {
    // Fields after the command name's closing paren: field 3 first; utime is 14, stime 15.
    let rest = text.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    if f.len() > 12 { Duration::from_micros((f[11] + f[12]) * 1_000_000 / hz) } else { Duration::ZERO }
}

fn sample_proc(pid: &str, group_prefix: &str) -> ProcSample {
    let hz = sys::clock_ticks();
    let mut s = ProcSample {
        cpu: fs::read_to_string(format!("/proc/{pid}/stat")).map_or(Duration::ZERO, |t| stat_cpu(&t, hz)),
        ..ProcSample::default()
    };
    if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
        for l in status.lines() {
            let num = |v: &str| v.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
            if let Some(v) = l.strip_prefix("VmRSS:") {
                s.rss_kib = num(v);
            } else if let Some(v) = l.strip_prefix("RssAnon:") {
                s.anon_kib = num(v);
            } else if let Some(v) = l.strip_prefix("Threads:") {
                s.threads = num(v);
            }
        }
    }
    s.fds = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    for task in fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let p = task.path();
        let in_group = fs::read_to_string(p.join("comm")).is_ok_and(|c| c.starts_with(group_prefix));
        let sched = fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|x| x.parse().ok()))
            .map_or(Duration::ZERO, Duration::from_nanos);
        s.sched += sched;
        if in_group {
            s.group_sched += sched;
            s.group_cpu += fs::read_to_string(p.join("stat")).map_or(Duration::ZERO, |t| stat_cpu(&t, hz));
        }
    }
    s
}

/// Machine-wide counters: busy CPU time, CPU pressure, UDP errors.
#[derive(Clone, Copy, Debug, Default)]
struct HostSample {
    /// user + nice + system + irq + softirq + steal of all CPUs.
    busy: Duration,
    /// Time some runnable task waited for a CPU (PSI "some").
    cpu_wait: Duration,
    /// UDP InErrors, RcvbufErrors, SndbufErrors.
    udp: [u64; 3],
}

fn sample_host() -> HostSample {
    let hz = sys::clock_ticks();
    let mut h = HostSample::default();
    if let Ok(stat) = fs::read_to_string("/proc/stat")
        && let Some(l) = stat.lines().find(|l| l.starts_with("cpu "))
    {
        let f: Vec<u64> = l.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
        if f.len() >= 8 {
            h.busy = Duration::from_micros((f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * 1_000_000 / hz);
        }
    }
    if let Ok(p) = fs::read_to_string("/proc/pressure/cpu") {
        h.cpu_wait = p
            .lines()
            .find(|l| l.starts_with("some"))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
            .and_then(|v| v.parse().ok())
            .map_or(Duration::ZERO, Duration::from_micros);
    }
    if let Ok(snmp) = fs::read_to_string("/proc/net/snmp") {
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        if let (Some(names), Some(values)) = (lines.next(), lines.next()) {
            let get = |key: &str| {
                names
                    .split_whitespace()
                    .position(|n| n == key)
                    .and_then(|i| values.split_whitespace().nth(i))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            h.udp = [get("InErrors"), get("RcvbufErrors"), get("SndbufErrors")];
        }
    }
    h
}

// ==== SIP text ====================================================================================

mod sip {
    //! Just enough SIP: a header lookup over the raw text, a few value helpers, SDP's audio
    //! address, and the MD5 digest answer to a challenge.

    use super::{Digest, Md5};
    use std::net::{Ipv4Addr, SocketAddrV4};

    /// One parsed message: the start line, header (name, value) pairs, the body.
    pub(crate) struct Msg<'a> {
        pub(crate) start: &'a str,
        heads: Vec<(&'a str, &'a str)>,
        pub(crate) body: &'a [u8],
    }

    fn full_name(n: &str) -> &str {
        match n {
            "v" | "V" => "via",
            "f" | "F" => "from",
            "t" | "T" => "to",
            "i" | "I" => "call-id",
            "m" | "M" => "contact",
            "l" | "L" => "content-length",
            "c" | "C" => "content-type",
            _ => n,
        }
    }

    impl<'a> Msg<'a> {
        /// Parses a datagram; None if it is not a SIP message with a complete body.
        pub(crate) fn parse(buf: &'a [u8]) -> Option<Msg<'a>> {
            let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
            let head = std::str::from_utf8(&buf[..split]).ok()?;
            let rest = &buf[split + 4..];
            let mut lines = head.split("\r\n");
            let start = lines.next()?.trim();
            let mut heads: Vec<(&str, &str)> = Vec::with_capacity(16);
            for line in lines {
                if let Some((n, v)) = line.split_once(':') {
                    heads.push((n.trim(), v.trim()));
                }
            }
            let mut m = Msg { start, heads, body: rest };
            let len = match m.header("content-length") {
                Some(v) => v.parse::<usize>().ok()?,
                None => rest.len(),
            };
            m.body = rest.get(..len)?;
            Some(m)
        }

        /// The status code of a response.
        pub(crate) fn status(&self) -> Option<u16> {
            self.start.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
        }

        /// The method of a request.
        pub(crate) fn method(&self) -> Option<&'a str> {
            if self.start.starts_with("SIP/") { None } else { self.start.split(' ').next() }
        }

        /// The Request-URI of a request.
        pub(crate) fn request_uri(&self) -> Option<&'a str> {
            self.start.split(' ').nth(1)
        }

        /// Every value of a header (`name` in lower case; compact forms understood).
        pub(crate) fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
            self.heads.iter().filter(move |(n, _)| full_name(n).eq_ignore_ascii_case(name)).map(|(_, v)| *v)
        }

        /// The first value of a header.
        pub(crate) fn header(&self, name: &str) -> Option<&'a str> {
            self.all(name).next()
        }

        /// The branch of the top Via.
        pub(crate) fn top_branch(&self) -> Option<&'a str> {
            let via = self.header("via")?;
            param(via.split(',').next()?, "branch")
        }

        /// CSeq number and method.
        pub(crate) fn cseq(&self) -> Option<(u32, &'a str)> {
            let (n, m) = self.header("cseq")?.split_once(' ')?;
            Some((n.trim().parse().ok()?, m.trim()))
        }
    }

    /// A header parameter (`;name=value`) after the URI part of a name-addr value.
    pub(crate) fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
        let tail = match value.rfind('>') {
            Some(i) => &value[i + 1..],
            None => value,
        };
        tail.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().trim_matches('"'))
        })
    }

    /// The URI of a name-addr (`<...>`) or addr-spec value (up to its parameters).
    pub(crate) fn uri(value: &str) -> &str {
        match (value.find('<'), value.find('>')) {
            (Some(a), Some(b)) if a < b => &value[a + 1..b],
            _ => value.split(';').next().unwrap_or(value).trim(),
        }
    }

    /// Splits a header value at commas outside `<>` and quotes.
    pub(crate) fn split_list(value: &str) -> Vec<&str> {
        let (mut out, mut start, mut angle, mut quote) = (Vec::new(), 0, false, false);
        for (i, c) in value.char_indices() {
            match c {
                '"' => quote = !quote,
                '<' if !quote => angle = true,
                '>' if !quote => angle = false,
                ',' if !quote && !angle => {
                    out.push(value[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(value[start..].trim());
        out.retain(|s| !s.is_empty());
        out
    }

    /// The user part of a SIP URI.
    pub(crate) fn user_of(uri: &str) -> Option<&str> {
        let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:"))?;
        rest.split_once('@').map(|x| x.0)
    }

    /// The audio destination of an SDP body: `c=` (media level, else session level) and the port
    /// of the first `m=audio` line.
    pub(crate) fn sdp_audio(body: &[u8]) -> Option<SocketAddrV4> {
        let text = std::str::from_utf8(body).ok()?;
        let (mut session_c, mut audio_c, mut port, mut section) = (None, None, None, 0u8);
        for l in text.lines().map(str::trim_end) {
            if let Some(m) = l.strip_prefix("m=") {
                section = if m.starts_with("audio ") && port.is_none() { 1 } else { 2 };
                if section == 1 {
                    port = m.split(' ').nth(1).and_then(|p| p.parse::<u16>().ok());
                }
            } else if let Some(c) = l.strip_prefix("c=IN IP4 ") {
                let ip = c.split('/').next().and_then(|a| a.trim().parse::<Ipv4Addr>().ok());
                match section {
                    0 => session_c = ip,
                    1 => audio_c = ip,
                    _ => {}
                }
            }
        }
        Some(SocketAddrV4::new(audio_c.or(session_c)?, port.filter(|&p| p != 0)?))
    }

    /// A digest challenge (`WWW-Authenticate` / `Proxy-Authenticate`).
    #[derive(Clone, Debug, Default)]
    pub(crate) struct Challenge {
        pub(crate) realm: String,
        pub(crate) nonce: String,
        pub(crate) opaque: Option<String>,
        pub(crate) qop_auth: bool,
        pub(crate) algorithm: Option<String>,
    }

    /// The MD5 challenge among header values, if any.
    pub(crate) fn md5_challenge<'a>(values: impl Iterator<Item = &'a str>) -> Option<Challenge> {
        values
            .filter_map(parse_challenge)
            .find(|c| c.algorithm.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("MD5")))
    }

    fn parse_challenge(value: &str) -> Option<Challenge> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Challenge::default();
        for p in split_list(rest) {
            let Some((k, v)) = p.split_once('=') else { continue };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => c.realm = v.to_string(),
                "nonce" => c.nonce = v.to_string(),
                "opaque" => c.opaque = Some(v.to_string()),
                "qop" => c.qop_auth = v.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")),
                "algorithm" => c.algorithm = Some(v.to_string()),
                _ => {}
            }
        }
        (!c.nonce.is_empty()).then_some(c)
    }

    /// Lower-case hex MD5 of `parts` joined by ':'.
    pub(crate) fn md5_hex(parts: &[&str]) -> String {
        let mut h = Md5::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                h.update(b":");
            }
            h.update(p.as_bytes());
        }
        let mut s = String::with_capacity(32);
        for b in h.finalize().iter() {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }

    impl Challenge {
        /// The digest response (RFC 2617: with qop=auth when offered, nc 1).
        pub(crate) fn response(&self, user: &str, password: &str, method: &str, uri: &str, cnonce: &str) -> String {
            let ha1 = md5_hex(&[user, &self.realm, password]);
            let ha2 = md5_hex(&[method, uri]);
            if self.qop_auth {
                md5_hex(&[&ha1, &self.nonce, "00000001", cnonce, "auth", &ha2])
            } else {
                md5_hex(&[&ha1, &self.nonce, &ha2])
            }
        }

        /// The `Authorization` / `Proxy-Authorization` header value answering this challenge.
        pub(crate) fn answer(&self, user: &str, password: &str, method: &str, uri: &str, cnonce: &str) -> String {
            let response = self.response(user, password, method, uri, cnonce);
            let mut s = format!(
                "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5",
                self.realm, self.nonce
            );
            if self.qop_auth {
                s.push_str(&format!(", cnonce=\"{cnonce}\", qop=auth, nc=00000001"));
            }
            if let Some(o) = &self.opaque {
                s.push_str(&format!(", opaque=\"{o}\""));
            }
            s
        }
    }
}

use sip::Msg;

// ==== SIP user agents =============================================================================

/// Who a client transaction belongs to.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Register(usize),
    Invite(usize),
    Bye(usize),
}

/// A client transaction waiting for its final response (retransmitted over UDP).
struct Txn {
    sock: usize,
    data: Vec<u8>,
    next: Instant,
    interval: Duration,
    deadline: Instant,
    invite: bool,
    provisional: bool,
    owner: Owner,
}

#[derive(Clone, Debug, PartialEq)]
enum RegState {
    Idle,
    Pending,
    Registered,
    Failed(String),
}

struct Callee {
    ext: String,
    password: String,
    sock: usize,
    call_id: String,
    tag: String,
    cseq: u32,
    authed: bool,
    state: RegState,
}

#[derive(Clone, Debug, PartialEq)]
enum CallState {
    Inviting,
    Up,
    Failed(String),
    ByeSent,
    ByeFailed(String),
    Ended,
    /// The server sent BYE to the caller (not expected before our hang-up).
    EndedByServer,
}

/// The caller side of one call.
struct Call {
    callee: usize,
    sock: usize,
    call_id: String,
    from_tag: String,
    to_tag: String,
    cseq: u32,
    authed: bool,
    rtp_fd: RawFd,
    rtp_port: u16,
    relay: Option<SocketAddrV4>,
    target: String,
    routes: Vec<String>,
    /// ACK of the 2xx, resent when the 2xx is retransmitted.
    ack_2xx: Option<Vec<u8>>,
    /// ACK of the last non-2xx final response (CSeq), resent on retransmissions.
    ack_err: Option<(u32, Vec<u8>)>,
    started: Instant,
    setup_time: Option<Duration>,
    state: CallState,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum LegState {
    /// 200 sent, waiting for the ACK.
    Answered,
    Acked,
    /// No ACK within 64·T1.
    NoAck,
    /// BYE received and answered.
    Ended,
}

/// The callee side of one call (a B leg the server created).
struct Leg {
    sock: usize,
    src: SocketAddr,
    cseq: u32,
    ok: Vec<u8>,
    next: Instant,
    interval: Duration,
    deadline: Instant,
    rtp_fd: RawFd,
    relay: Option<SocketAddrV4>,
    state: LegState,
}

/// Counters of the SIP side.
#[derive(Debug, Default)]
struct SipStats {
    retransmissions: u64,
    absorbed_responses: u64,
    unmatched: u64,
    unparsable: u64,
    reinvites: u64,
    byes_to_unknown: u64,
    send_errors: u64,
    invites_without_sdp: u64,
    rtp_alloc_errors: u64,
}

/// Local RTP ports: bound one by one from the range (per-call mode), or the generator threads'
/// shared sockets.
struct RtpPorts {
    ip: Ipv4Addr,
    next: u32,
    last: u32,
    owned: Vec<UdpSocket>,
    /// Per generator thread: (fd, port) of its caller-side and callee-side sockets.
    shared: Vec<[(RawFd, u16); 2]>,
}

impl RtpPorts {
    fn bind_next(&mut self) -> io::Result<(RawFd, u16)> {
        while self.next <= self.last {
            let port = self.next as u16;
            self.next += 1;
            match UdpSocket::bind((self.ip, port)) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    sys::enable_rx_timestamps(s.as_raw_fd());
                    let fd = s.as_raw_fd();
                    self.owned.push(s);
                    return Ok((fd, port));
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AddrNotAvailable, "local RTP port range exhausted"))
    }

    /// The socket for side `side` (0: caller, 1: callee) of stream `i` (call or leg index).
    fn alloc(&mut self, side: usize, i: usize) -> io::Result<(RawFd, u16)> {
        if self.shared.is_empty() { self.bind_next() } else { Ok(self.shared[i % self.shared.len()][side]) }
    }
}

/// Both user agents (caller and callees) over a handful of UDP sockets, driven by `pump`.
struct Sip {
    server: SocketAddr,
    domain: String,
    ip: Ipv4Addr,
    caller: String,
    caller_password: String,
    run: String,
    ids: u64,
    socks: Vec<UdpSocket>,
    fds: Vec<RawFd>,
    ports: Vec<u16>,
    caller_socks: usize,
    txns: HashMap<String, Txn>,
    callees: Vec<Callee>,
    targets: Vec<usize>,
    calls: Vec<Call>,
    call_by_id: HashMap<String, usize>,
    legs: Vec<Leg>,
    leg_by_id: HashMap<String, usize>,
    unacked: Vec<usize>,
    rtp: RtpPorts,
    stats: SipStats,
    buf: Vec<u8>,
    ready: Vec<bool>,
    next_timers: Instant,
}

fn send_to(sock: &UdpSocket, data: &[u8], to: SocketAddr, errors: &mut u64) {
    if sock.send_to(data, to).is_err() {
        *errors += 1;
    }
}

impl Sip {
    fn new(args: &Args, users: Vec<(String, String)>) -> Result<Sip, Error> {
        let n_socks = args.caller_sockets.max(1) + args.callee_sockets.max(1);
        let mut socks = Vec::new();
        for port in args.sip_ports.0.clone() {
            if socks.len() == n_socks {
                break;
            }
            match UdpSocket::bind((args.local_ip, port)) {
                Ok(s) => socks.push(s),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(Error::Io("binding a SIP socket", e)),
            }
        }
        if socks.len() < n_socks {
            return Err(Error::Usage(format!("only {} free SIP ports in {:?}", socks.len(), args.sip_ports.0)));
        }
        let mut ports = Vec::new();
        for s in &socks {
            s.set_nonblocking(true).map_err(|e| Error::Io("SIP socket", e))?;
            sys::set_rcvbuf(s.as_raw_fd(), 4 << 20);
            ports.push(s.local_addr().map_err(|e| Error::Io("SIP socket", e))?.port());
        }
        let caller_socks = args.caller_sockets.max(1);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let run = format!("{:x}{:x}", now.as_secs() & 0xfffff, now.subsec_nanos() ^ std::process::id());
        let callees = users
            .into_iter()
            .enumerate()
            .map(|(k, (ext, password))| Callee {
                ext,
                password,
                sock: caller_socks + k % args.callee_sockets.max(1),
                call_id: format!("reg-{k}-{run}@{}", args.local_ip),
                tag: format!("r{k}-{run}"),
                cseq: 0,
                authed: false,
                state: RegState::Idle,
            })
            .collect();
        let (first, last) = (*args.rtp_ports.0.start(), *args.rtp_ports.0.end());
        let mut rtp = RtpPorts {
            ip: args.local_ip,
            next: first.into(),
            last: last.into(),
            owned: Vec::new(),
            shared: Vec::new(),
        };
        if args.rtp_sockets == RtpSockets::Shared {
            for _ in 0..args.threads {
                let a = rtp.bind_next().map_err(|e| Error::Io("binding a shared RTP socket", e))?;
                let b = rtp.bind_next().map_err(|e| Error::Io("binding a shared RTP socket", e))?;
                sys::set_rcvbuf(a.0, 16 << 20);
                sys::set_rcvbuf(b.0, 16 << 20);
                rtp.shared.push([a, b]);
            }
        }
        Ok(Sip {
            server: args.server,
            domain: args.domain.clone(),
            ip: args.local_ip,
            caller: args.caller.clone(),
            caller_password: args.caller_password.clone().unwrap_or_else(|| format!("pw-{}-bench", args.caller)),
            run,
            ids: 0,
            fds: socks.iter().map(AsRawFd::as_raw_fd).collect(),
            socks,
            ports,
            caller_socks,
            txns: HashMap::new(),
            callees,
            targets: Vec::new(),
            calls: Vec::new(),
            call_by_id: HashMap::new(),
            legs: Vec::new(),
            leg_by_id: HashMap::new(),
            unacked: Vec::new(),
            rtp,
            stats: SipStats::default(),
            buf: vec![0u8; 65536],
            ready: Vec::new(),
            next_timers: Instant::now(),
        })
    }

    fn next_id(&mut self) -> u64 {
        self.ids += 1;
        self.ids
    }

    fn branch(&mut self) -> String {
        let id = self.next_id();
        format!("z9hG4bK{}-{id}", self.run)
    }

    fn via(&self, sock: usize, branch: &str) -> String {
        format!("Via: SIP/2.0/UDP {}:{};branch={branch};rport\r\n", self.ip, self.ports[sock])
    }

    fn start_txn(&mut self, sock: usize, branch: String, data: Vec<u8>, invite: bool, owner: Owner) {
        let now = Instant::now();
        send_to(&self.socks[sock], &data, self.server, &mut self.stats.send_errors);
        self.txns.insert(
            branch,
            Txn {
                sock,
                data,
                next: now + T1,
                interval: T1,
                deadline: now + TXN_TIMEOUT,
                invite,
                provisional: false,
                owner,
            },
        );
    }

    // ---- registrations ----

    fn register(&mut self, k: usize, challenge: Option<&sip::Challenge>) {
        let branch = self.branch();
        let cnonce = format!("c{}", self.next_id());
        let via = self.via(self.callees[k].sock, &branch);
        let c = &mut self.callees[k];
        c.cseq += 1;
        c.state = RegState::Pending;
        let uri = format!("sip:{}", self.domain);
        let auth = challenge.map_or(String::new(), |ch| {
            format!("Authorization: {}\r\n", ch.answer(&c.ext, &c.password, "REGISTER", &uri, &cnonce))
        });
        let (sock, ext) = (c.sock, c.ext.clone());
        let msg = format!(
            "REGISTER {uri} SIP/2.0\r\n{via}Max-Forwards: 70\r\nFrom: <sip:{ext}@{d}>;tag={tag}\r\n\
             To: <sip:{ext}@{d}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{ext}@{ip}:{port};transport=udp>\r\nExpires: 3600\r\n{auth}\
             User-Agent: rtp-calls\r\nContent-Length: 0\r\n\r\n",
            d = self.domain,
            tag = c.tag,
            cid = c.call_id,
            cseq = c.cseq,
            ip = self.ip,
            port = self.ports[sock],
        );
        self.start_txn(sock, branch, msg.into_bytes(), false, Owner::Register(k));
    }

    fn registrations_done(&self) -> bool {
        self.callees.iter().all(|c| matches!(c.state, RegState::Registered | RegState::Failed(_)))
    }

    // ---- calls, caller side ----

    fn sdp(&self, port: u16, id: u64) -> String {
        format!(
            "v=0\r\no=rtp-calls {id} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
            ip = self.ip
        )
    }

    /// Places call `i` (the next index) toward the next callee.
    fn place_call(&mut self) {
        let i = self.calls.len();
        let callee = self.targets[i % self.targets.len()];
        let sock = i % self.caller_socks;
        let call_id = format!("call-{i}-{}@{}", self.run, self.ip);
        let mut call = Call {
            callee,
            sock,
            call_id: call_id.clone(),
            from_tag: format!("a{i}-{}", self.run),
            to_tag: String::new(),
            cseq: 0,
            authed: false,
            rtp_fd: -1,
            rtp_port: 0,
            relay: None,
            target: String::new(),
            routes: Vec::new(),
            ack_2xx: None,
            ack_err: None,
            started: Instant::now(),
            setup_time: None,
            state: CallState::Inviting,
        };
        match self.rtp.alloc(0, i) {
            Ok((fd, port)) => (call.rtp_fd, call.rtp_port) = (fd, port),
            Err(e) => {
                self.stats.rtp_alloc_errors += 1;
                call.state = CallState::Failed(format!("no local RTP socket: {e}"));
            }
        }
        let ok = call.state == CallState::Inviting;
        self.calls.push(call);
        self.call_by_id.insert(call_id, i);
        if ok {
            self.invite(i, None);
        }
    }

    fn invite(&mut self, i: usize, challenge: Option<&sip::Challenge>) {
        let branch = self.branch();
        let cnonce = format!("c{}", self.next_id());
        let sdp = self.sdp(self.calls[i].rtp_port, i as u64 + 1);
        let via = self.via(self.calls[i].sock, &branch);
        let c = &mut self.calls[i];
        c.cseq += 1;
        let callee = &self.callees[c.callee].ext;
        let ruri = format!("sip:{callee}@{}", self.domain);
        let auth = challenge.map_or(String::new(), |ch| {
            format!(
                "Proxy-Authorization: {}\r\n",
                ch.answer(&self.caller, &self.caller_password, "INVITE", &ruri, &cnonce)
            )
        });
        let msg = format!(
            "INVITE {ruri} SIP/2.0\r\n{via}Max-Forwards: 70\r\nFrom: <sip:{me}@{d}>;tag={tag}\r\n\
             To: <sip:{callee}@{d}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:{me}@{ip}:{port};transport=udp>\r\n{auth}User-Agent: rtp-calls\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            me = self.caller,
            d = self.domain,
            tag = c.from_tag,
            cid = c.call_id,
            cseq = c.cseq,
            ip = self.ip,
            port = self.ports[c.sock],
            len = sdp.len(),
        );
        let sock = c.sock;
        self.start_txn(sock, branch, msg.into_bytes(), true, Owner::Invite(i));
    }

    /// ACK of a non-2xx final response: same branch as the INVITE, To of the response.
    fn ack_non_2xx(&self, i: usize, branch: &str, to: &str) -> Vec<u8> {
        let c = &self.calls[i];
        format!(
            "ACK sip:{callee}@{d} SIP/2.0\r\n{via}Max-Forwards: 70\r\nFrom: <sip:{me}@{d}>;tag={tag}\r\n\
             To: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            callee = self.callees[c.callee].ext,
            d = self.domain,
            via = self.via(c.sock, branch),
            me = self.caller,
            tag = c.from_tag,
            cid = c.call_id,
            cseq = c.cseq,
        )
        .into_bytes()
    }

    /// An in-dialog request of call `i` (ACK of the 2xx, BYE).
    fn in_dialog(&self, i: usize, method: &str, cseq: u32, branch: &str) -> Vec<u8> {
        let c = &self.calls[i];
        let routes: String = c.routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
        format!(
            "{method} {target} SIP/2.0\r\n{via}{routes}Max-Forwards: 70\r\nFrom: <sip:{me}@{d}>;tag={tag}\r\n\
             To: <sip:{callee}@{d}>;tag={to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            target = c.target,
            via = self.via(c.sock, branch),
            me = self.caller,
            d = self.domain,
            tag = c.from_tag,
            callee = self.callees[c.callee].ext,
            to_tag = c.to_tag,
            cid = c.call_id,
        )
        .into_bytes()
    }

    fn bye(&mut self, i: usize) {
        let branch = self.branch();
        self.calls[i].cseq += 1;
        let msg = self.in_dialog(i, "BYE", self.calls[i].cseq, &branch);
        self.calls[i].state = CallState::ByeSent;
        let sock = self.calls[i].sock;
        self.start_txn(sock, branch, msg, false, Owner::Bye(i));
    }

    fn calls_settled(&self) -> bool {
        self.calls.iter().all(|c| c.state != CallState::Inviting)
    }

    // ---- the event loop ----

    /// Waits for datagrams up to `timeout`, handles them, and runs the retransmission timers.
    fn pump(&mut self, timeout: Duration) {
        let mut ready = std::mem::take(&mut self.ready);
        sys::poll_readable(&self.fds, timeout.min(Duration::from_millis(20)), &mut ready);
        let mut buf = std::mem::take(&mut self.buf);
        for (s, &r) in ready.iter().enumerate() {
            if !r {
                continue;
            }
            for _ in 0..256 {
                match self.socks[s].recv_from(&mut buf) {
                    Ok((n, src)) => self.handle(s, &buf[..n], src),
                    Err(_) => break,
                }
            }
        }
        self.buf = buf;
        self.ready = ready;
        let now = Instant::now();
        if now >= self.next_timers {
            self.timers(now);
            self.next_timers = now + Duration::from_millis(20);
        }
    }

    /// Pumps until `done` or `deadline`; true if `done`.
    fn run_until(&mut self, deadline: Instant, done: impl Fn(&Sip) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.pump(deadline - now);
        }
    }

    fn timers(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (branch, t) in &mut self.txns {
            if now >= t.deadline {
                expired.push(branch.clone());
            } else if now >= t.next && !(t.invite && t.provisional) {
                send_to(&self.socks[t.sock], &t.data, self.server, &mut self.stats.send_errors);
                self.stats.retransmissions += 1;
                t.interval = if t.invite { t.interval * 2 } else { (t.interval * 2).min(T2) };
                t.next = now + t.interval;
            }
        }
        for b in expired {
            if let Some(t) = self.txns.remove(&b) {
                match t.owner {
                    Owner::Register(k) => self.callees[k].state = RegState::Failed("timeout".into()),
                    Owner::Invite(i) => self.calls[i].state = CallState::Failed("timeout".into()),
                    Owner::Bye(i) => self.calls[i].state = CallState::ByeFailed("timeout".into()),
                }
            }
        }
        let legs = &mut self.legs;
        let socks = &self.socks;
        let stats = &mut self.stats;
        self.unacked.retain(|&j| {
            let l = &mut legs[j];
            if l.state != LegState::Answered {
                return false;
            }
            if now >= l.deadline {
                l.state = LegState::NoAck;
                return false;
            }
            if now >= l.next {
                send_to(&socks[l.sock], &l.ok, l.src, &mut stats.send_errors);
                stats.retransmissions += 1;
                l.interval = (l.interval * 2).min(T2);
                l.next = now + l.interval;
            }
            true
        });
    }

    fn handle(&mut self, sock: usize, data: &[u8], src: SocketAddr) {
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keep-alive
        }
        let Some(m) = Msg::parse(data) else {
            self.stats.unparsable += 1;
            return;
        };
        if let Some(code) = m.status() {
            self.on_response(sock, &m, code);
        } else if let Some(method) = m.method() {
            self.on_request(sock, &m, method, src);
        }
    }

    fn on_response(&mut self, sock: usize, m: &Msg<'_>, code: u16) {
        let Some(branch) = m.top_branch() else {
            self.stats.unmatched += 1;
            return;
        };
        if code < 200 {
            if let Some(t) = self.txns.get_mut(branch) {
                t.provisional = true;
                if !t.invite {
                    t.interval = T2;
                }
            }
            return;
        }
        let Some(t) = self.txns.remove(branch) else {
            self.on_retransmitted_response(sock, m, code);
            return;
        };
        match t.owner {
            Owner::Register(k) => match code {
                401 | 407 if !self.callees[k].authed => {
                    let name = if code == 401 { "www-authenticate" } else { "proxy-authenticate" };
                    match sip::md5_challenge(m.all(name)) {
                        Some(ch) => {
                            self.callees[k].authed = true;
                            self.register(k, Some(&ch));
                        }
                        None => self.callees[k].state = RegState::Failed(format!("{code} without an MD5 challenge")),
                    }
                }
                200..=299 => self.callees[k].state = RegState::Registered,
                _ => self.callees[k].state = RegState::Failed(m.start.to_string()),
            },
            Owner::Invite(i) => {
                if code >= 300 {
                    let ack = self.ack_non_2xx(i, branch, m.header("to").unwrap_or(""));
                    send_to(&self.socks[t.sock], &ack, self.server, &mut self.stats.send_errors);
                    self.calls[i].ack_err = Some((self.calls[i].cseq, ack));
                    let challenge = (code == 401 || code == 407) && !self.calls[i].authed;
                    let name = if code == 401 { "www-authenticate" } else { "proxy-authenticate" };
                    match challenge.then(|| sip::md5_challenge(m.all(name))).flatten() {
                        Some(ch) => {
                            self.calls[i].authed = true;
                            self.invite(i, Some(&ch));
                        }
                        None => self.calls[i].state = CallState::Failed(m.start.to_string()),
                    }
                } else {
                    self.answered(i, m);
                }
            }
            Owner::Bye(i) => {
                self.calls[i].state =
                    if code < 300 { CallState::Ended } else { CallState::ByeFailed(m.start.to_string()) };
            }
        }
    }

    /// The 2xx of call `i`'s INVITE: dialog, relay address, ACK.
    fn answered(&mut self, i: usize, m: &Msg<'_>) {
        let c = &mut self.calls[i];
        c.to_tag = m.header("to").and_then(|t| sip::param(t, "tag")).unwrap_or("").to_string();
        c.target =
            m.header("contact").map(|v| sip::uri(v).to_string()).unwrap_or_else(|| format!("sip:{}", self.server));
        let mut rr: Vec<String> = m.all("record-route").flat_map(sip::split_list).map(str::to_string).collect();
        rr.reverse();
        c.routes = rr;
        c.relay = sip::sdp_audio(m.body);
        c.setup_time = Some(c.started.elapsed());
        c.state = match c.relay {
            Some(_) => CallState::Up,
            None => CallState::Failed("200 without a usable SDP audio address".into()),
        };
        let branch = self.branch();
        let ack = self.in_dialog(i, "ACK", self.calls[i].cseq, &branch);
        send_to(&self.socks[self.calls[i].sock], &ack, self.server, &mut self.stats.send_errors);
        self.calls[i].ack_2xx = Some(ack);
    }

    /// A final response whose transaction is over: a retransmission (our ACK was late or lost).
    fn on_retransmitted_response(&mut self, sock: usize, m: &Msg<'_>, code: u16) {
        let call = m.header("call-id").and_then(|cid| self.call_by_id.get(cid)).copied();
        let Some(i) = call else {
            self.stats.unmatched += 1;
            return;
        };
        self.stats.absorbed_responses += 1;
        let cseq = m.cseq();
        let c = &self.calls[i];
        let ack = match cseq {
            Some((_, "INVITE")) if code < 300 => c.ack_2xx.as_ref(),
            Some((n, "INVITE")) => c.ack_err.as_ref().filter(|(k, _)| *k == n).map(|(_, a)| a),
            _ => None,
        };
        if let Some(a) = ack {
            send_to(&self.socks[sock], a, self.server, &mut self.stats.send_errors);
        }
    }

    /// A response to request `m`: its Via, Record-Route (200 to INVITE), From, To (with
    /// `to_tag` added when it has none), Call-ID and CSeq, then `extra` headers and `body`.
    fn response(m: &Msg<'_>, status: &str, to_tag: Option<&str>, extra: &str, body: &str) -> Vec<u8> {
        let mut r = format!("SIP/2.0 {status}\r\n");
        for v in m.all("via") {
            let _ = write!(r, "Via: {v}\r\n");
        }
        if to_tag.is_some() {
            for v in m.all("record-route") {
                let _ = write!(r, "Record-Route: {v}\r\n");
            }
        }
        let to = m.header("to").unwrap_or("");
        let _ = write!(r, "From: {}\r\n", m.header("from").unwrap_or(""));
        match to_tag {
            Some(t) if sip::param(to, "tag").is_none() => {
                let _ = write!(r, "To: {to};tag={t}\r\n");
            }
            _ => {
                let _ = write!(r, "To: {to}\r\n");
            }
        }
        let _ = write!(
            r,
            "Call-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            m.header("call-id").unwrap_or(""),
            m.header("cseq").unwrap_or(""),
            body.len()
        );
        r.into_bytes()
    }

    fn reply(&mut self, sock: usize, src: SocketAddr, m: &Msg<'_>, status: &str) {
        let r = Sip::response(m, status, None, "", "");
        send_to(&self.socks[sock], &r, src, &mut self.stats.send_errors);
    }

    fn on_request(&mut self, sock: usize, m: &Msg<'_>, method: &str, src: SocketAddr) {
        let cid = m.header("call-id").unwrap_or("");
        match method {
            "INVITE" => self.on_invite(sock, m, src),
            "ACK" => {
                if let Some(&j) = self.leg_by_id.get(cid)
                    && self.legs[j].state == LegState::Answered
                {
                    self.legs[j].state = LegState::Acked;
                }
            }
            "BYE" => {
                if let Some(&j) = self.leg_by_id.get(cid) {
                    self.legs[j].state = LegState::Ended;
                    self.reply(sock, src, m, "200 OK");
                } else if let Some(&i) = self.call_by_id.get(cid) {
                    if !matches!(self.calls[i].state, CallState::Ended | CallState::ByeSent) {
                        self.calls[i].state = CallState::EndedByServer;
                    }
                    self.reply(sock, src, m, "200 OK");
                } else {
                    self.stats.byes_to_unknown += 1;
                    self.reply(sock, src, m, "481 Call/Transaction Does Not Exist");
                }
            }
            "CANCEL" | "OPTIONS" | "INFO" | "UPDATE" | "NOTIFY" => self.reply(sock, src, m, "200 OK"),
            _ => self.reply(sock, src, m, "501 Not Implemented"),
        }
    }

    fn on_invite(&mut self, sock: usize, m: &Msg<'_>, src: SocketAddr) {
        let cid = m.header("call-id").unwrap_or("").to_string();
        let cseq = m.cseq().map_or(0, |c| c.0);
        if let Some(&j) = self.leg_by_id.get(&cid) {
            let l = &mut self.legs[j];
            if cseq > l.cseq {
                // a re-INVITE: new relay address, same answer
                self.stats.reinvites += 1;
                l.cseq = cseq;
                if let Some(a) = sip::sdp_audio(m.body) {
                    l.relay = Some(a);
                }
                let to_tag = m.header("to").and_then(|t| sip::param(t, "tag")).map(str::to_string);
                let extra = format!("Contact: <sip:rtp-calls@{}:{}>\r\n", self.ip, self.ports[sock]);
                let ok = Sip::response(m, "200 OK", to_tag.as_deref(), &extra, "");
                send_to(&self.socks[sock], &ok, src, &mut self.stats.send_errors);
            } else {
                // a retransmission of the INVITE we answered
                send_to(&self.socks[sock], &l.ok, src, &mut self.stats.send_errors);
            }
            return;
        }
        let j = self.legs.len();
        let user = m.request_uri().and_then(sip::user_of).unwrap_or("callee").to_string();
        let (rtp_fd, rtp_port) = match self.rtp.alloc(1, j) {
            Ok(x) => x,
            Err(_) => {
                self.stats.rtp_alloc_errors += 1;
                self.reply(sock, src, m, "503 No Local RTP Port");
                return;
            }
        };
        let relay = sip::sdp_audio(m.body);
        if relay.is_none() {
            self.stats.invites_without_sdp += 1;
        }
        let tag = format!("b{j}-{}", self.run);
        let body = self.sdp(rtp_port, 1_000_000 + j as u64);
        let extra = format!(
            "Contact: <sip:{user}@{}:{};transport=udp>\r\nUser-Agent: rtp-calls\r\nContent-Type: application/sdp\r\n",
            self.ip, self.ports[sock]
        );
        let ok = Sip::response(m, "200 OK", Some(&tag), &extra, &body);
        send_to(&self.socks[sock], &ok, src, &mut self.stats.send_errors);
        let now = Instant::now();
        self.legs.push(Leg {
            sock,
            src,
            cseq,
            ok,
            next: now + T1,
            interval: T1,
            deadline: now + TXN_TIMEOUT,
            rtp_fd,
            relay,
            state: LegState::Answered,
        });
        self.leg_by_id.insert(cid, j);
        self.unacked.push(j);
    }
}

// ==== RTP generators ==============================================================================

/// One side of one call, as a generator thread drives it.
#[derive(Clone, Copy, Debug)]
struct Endpoint {
    fd: RawFd,
    /// The relay's port for this side: where we send, and where its packets come from.
    relay: SocketAddrV4,
    /// Global id: call index for caller sides, N + leg index for callee sides.
    id: u32,
    callee_side: bool,
    ssrc: u32,
}

/// What one generator thread does.
struct Plan {
    endpoints: Vec<Endpoint>,
    /// Shared mode: the thread's two sockets, read every slot.
    shared_fds: Vec<RawFd>,
    t0: Instant,
    periods: u32,
    warm: u32,
    /// The server's measurement window in CLOCK_REALTIME ns (t0 + warm-up .. t0 + duration).
    wall_window: (u64, u64),
}

/// Per direction: 0 = caller → callee (A→B), 1 = callee → caller (B→A).
#[derive(Clone, Debug, Default)]
struct DirCounts {
    sent: u64,
    sent_window: u64,
    send_failed: u64,
    received: u64,
    received_window: u64,
    /// Received with a kernel timestamp inside the server's measurement window (wall clock).
    received_wall: u64,
    reordered: u64,
    misrouted: u64,
    latency: Vec<u64>,
}

/// What a generator thread reports.
#[derive(Debug, Default)]
struct GenOut {
    dir: [DirCounts; 2],
    stray: u64,
    late_slots: u64,
    slots: u64,
    max_late: Duration,
    /// Per endpoint: (id, first sender heard, packets received in the window).
    endpoints: Vec<(u32, Option<u32>, u64)>,
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Receiving-side state of one endpoint.
#[derive(Clone, Copy, Default)]
struct RxState {
    first_sender: Option<u32>,
    last_seq: Option<u16>,
    window: u64,
}

struct Gen<'a> {
    plan: &'a Plan,
    out: GenOut,
    rx: sys::RxBatch,
    state: Vec<RxState>,
    /// Relay source port → endpoint (shared mode demultiplexing).
    by_port: Vec<u32>,
}

impl Gen<'_> {
    /// Reads `fd` until drained; `owner` is the endpoint a per-call socket belongs to.
    fn drain(&mut self, fd: RawFd, owner: Option<usize>) {
        loop {
            let n = self.rx.recv(fd);
            for i in 0..n {
                self.packet(i, owner);
            }
            if n < sys::BATCH {
                break;
            }
        }
    }

    fn packet(&mut self, i: usize, owner: Option<usize>) {
        let (Some(p), Some(src)) = (self.rx.packet(i), self.rx.source(i)) else {
            self.out.stray += 1;
            return;
        };
        let e = match owner {
            Some(e) => e,
            None => match self.by_port[usize::from(src.port())] {
                u32::MAX => {
                    self.out.stray += 1;
                    return;
                }
                e => e as usize,
            },
        };
        let ep = self.plan.endpoints[e];
        if p.len() != RTP_PACKET || p[12..16] != MAGIC || src != ep.relay {
            self.out.stray += 1;
            return;
        }
        let word = |at: usize| u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        let (sender, period) = (word(16), word(20));
        let sent_ns = u64::from(word(24)) << 32 | u64::from(word(28));
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let d = &mut self.out.dir[usize::from(!ep.callee_side)];
        let st = &mut self.state[e];
        match st.first_sender {
            None => st.first_sender = Some(sender),
            Some(s) if s != sender => {
                d.misrouted += 1;
                return;
            }
            Some(_) => {}
        }
        if let Some(last) = st.last_seq
            && seq.wrapping_sub(last) as i16 <= 0
        {
            d.reordered += 1;
        }
        st.last_seq = Some(seq);
        d.received += 1;
        let rx_ns = self.rx.rx_time_ns(i);
        if rx_ns.is_some_and(|t| t >= self.plan.wall_window.0 && t < self.plan.wall_window.1) {
            d.received_wall += 1;
        }
        if period >= self.plan.warm && period < self.plan.periods {
            d.received_window += 1;
            st.window += 1;
            if let Some(rx_ns) = rx_ns {
                let us = rx_ns.saturating_sub(sent_ns) / 1000;
                d.latency[((us / LAT_BUCKET_US) as usize).min(LAT_BUCKETS - 1)] += 1;
            }
        }
    }
}

fn generate(plan: &Plan) -> GenOut {
    let eps = &plan.endpoints;
    let mut g = Gen {
        plan,
        out: GenOut::default(),
        rx: sys::RxBatch::new(),
        state: vec![RxState::default(); eps.len()],
        by_port: vec![u32::MAX; 65536],
    };
    for d in &mut g.out.dir {
        d.latency = vec![0; LAT_BUCKETS];
    }
    for (e, ep) in eps.iter().enumerate() {
        g.by_port[usize::from(ep.relay.port())] = e as u32;
    }
    // Endpoints by slot, grouped by socket inside a slot so that shared sockets batch.
    let mut order: Vec<usize> = (0..eps.len()).collect();
    order.sort_by_key(|&e| (e % SLOTS, eps[e].fd));
    let mut slot_start = [0usize; SLOTS + 1];
    for &e in &order {
        slot_start[e % SLOTS + 1] += 1;
    }
    for s in 0..SLOTS {
        slot_start[s + 1] += slot_start[s];
    }
    let mut tx = sys::TxBatch::new();
    let mut seq: Vec<u16> = eps.iter().map(|ep| (ep.ssrc >> 16) as u16).collect();
    let mut ts: Vec<u32> = eps.iter().map(|ep| ep.ssrc.rotate_left(7)).collect();
    let slot_len = PTIME / SLOTS as u32;
    for k in 0..plan.periods {
        let in_window = k >= plan.warm;
        for s in 0..SLOTS {
            let due = plan.t0 + PTIME * k + slot_len * s as u32;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            } else {
                let late = now - due;
                g.out.max_late = g.out.max_late.max(late);
                if late > LATE {
                    g.out.late_slots += 1;
                }
            }
            g.out.slots += 1;
            // send this slot's packets, one sendmmsg per run of endpoints on the same socket
            let mut idx = slot_start[s];
            while idx < slot_start[s + 1] {
                let fd = eps[order[idx]].fd;
                let dir = usize::from(eps[order[idx]].callee_side);
                while idx < slot_start[s + 1] && eps[order[idx]].fd == fd && !tx.is_full() {
                    let e = order[idx];
                    let ep = eps[e];
                    let (sq, t) = (seq[e], ts[e]);
                    let now_ns = unix_ns();
                    tx.push(ep.relay, RTP_PACKET, |b| {
                        b[0] = 0x80;
                        b[1] = if k == 0 { 0x80 } else { 0 }; // marker on the first packet, PT 0 (PCMU)
                        b[2..4].copy_from_slice(&sq.to_be_bytes());
                        b[4..8].copy_from_slice(&t.to_be_bytes());
                        b[8..12].copy_from_slice(&ep.ssrc.to_be_bytes());
                        b[12..16].copy_from_slice(&MAGIC);
                        b[16..20].copy_from_slice(&ep.id.to_be_bytes());
                        b[20..24].copy_from_slice(&k.to_be_bytes());
                        b[24..32].copy_from_slice(&now_ns.to_be_bytes());
                        b[32..].fill(0xff); // PCMU silence
                    });
                    seq[e] = sq.wrapping_add(1);
                    ts[e] = t.wrapping_add(TS_STEP);
                    idx += 1;
                }
                let n = tx.len() as u64;
                let ok = tx.send(fd) as u64;
                let d = &mut g.out.dir[dir];
                d.sent += ok;
                d.send_failed += n - ok;
                if in_window {
                    d.sent_window += ok;
                }
            }
            // receive what arrived for this slot's endpoints since their last turn
            if plan.shared_fds.is_empty() {
                for &e in &order[slot_start[s]..slot_start[s + 1]] {
                    g.drain(eps[e].fd, Some(e));
                }
            } else {
                for &fd in &plan.shared_fds {
                    g.drain(fd, None);
                }
            }
        }
    }
    // drain what is still in flight
    let end = Instant::now() + DRAIN;
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(5));
        if plan.shared_fds.is_empty() {
            for (e, ep) in eps.iter().enumerate() {
                g.drain(ep.fd, Some(e));
            }
        } else {
            for &fd in &plan.shared_fds {
                g.drain(fd, None);
            }
        }
    }
    g.out.endpoints = eps.iter().zip(&g.state).map(|(ep, st)| (ep.id, st.first_sender, st.window)).collect();
    g.out
}

// ==== the run =====================================================================================

fn read_users(path: &PathBuf) -> Result<Vec<(String, String)>, Error> {
    let text = fs::read_to_string(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && !line.contains(';')) {
            continue; // the SEQUENTIAL / RANDOM line
        }
        let mut f = line.split(';');
        match (f.next(), f.next()) {
            (Some(e), Some(p)) if !e.is_empty() && !p.is_empty() => users.push((e.to_string(), p.to_string())),
            _ => return Err(Error::Usage(format!("{}:{}: expected ext;password", path.display(), n + 1))),
        }
    }
    if users.is_empty() {
        return Err(Error::Usage(format!("{}: no users", path.display())));
    }
    Ok(users)
}

/// Percentile (0..=1) of a latency histogram, in µs (None if empty).
fn percentile(hist: &[u64], q: f64) -> Option<u64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let want = ((total as f64 * q).ceil() as u64).max(1);
    let mut acc = 0;
    for (i, &c) in hist.iter().enumerate() {
        acc += c;
        if acc >= want {
            return Some((i as u64 + 1) * LAT_BUCKET_US);
        }
    }
    None
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Server samples of one run (when a PID was given).
#[derive(Default)]
struct ServerSamples {
    start: ProcSample,
    before_calls: ProcSample,
    calls_up: ProcSample,
    idle_end: ProcSample,
    window_start: ProcSample,
    window_end: ProcSample,
    after_rtp: ProcSample,
    after_hangup: ProcSample,
    settled: ProcSample,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rtp-calls: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, Error> {
    let n = args.calls;
    if n == 0 || args.threads == 0 || args.rate == 0 {
        return Err(Error::Usage("--calls, --threads and --rate must be at least 1".into()));
    }
    let duration = Duration::from_secs(args.duration.clamp(1, MAX_DURATION_S));
    if args.duration > MAX_DURATION_S {
        eprintln!("rtp-calls: --duration capped at {MAX_DURATION_S} s");
    }
    let warmup = Duration::from_secs(args.warmup.min(duration.as_secs().saturating_sub(1)));
    let nofile = sys::raise_nofile();
    let per_call = args.rtp_sockets == RtpSockets::PerCall;
    let fds_needed = if per_call { 2 * n as u64 } else { 2 * args.threads as u64 } + 64;
    if nofile < fds_needed {
        return Err(Error::Usage(format!("{fds_needed} file descriptors needed, the limit is {nofile}")));
    }
    let rtp_range = u64::from(*args.rtp_ports.0.end() - *args.rtp_ports.0.start()) + 1;
    if per_call && rtp_range < 2 * n as u64 {
        return Err(Error::Usage(format!(
            "--rtp-ports holds {rtp_range} ports, {} needed (one per call per side)",
            2 * n
        )));
    }
    let mut users = read_users(&args.callees)?;
    if args.max_callees > 0 {
        users.truncate(args.max_callees);
    }
    let server_pid = args.server_pid.map(|p| p.to_string());
    if let Some(p) = &server_pid
        && !fs::metadata(format!("/proc/{p}")).is_ok_and(|m| m.is_dir())
    {
        return Err(Error::Usage(format!("--server-pid {p}: no such process")));
    }
    let srv = |s: &mut ProcSample| {
        if let Some(p) = &server_pid {
            *s = sample_proc(p, "media-worker");
        }
    };
    let mut ss = ServerSamples::default();
    srv(&mut ss.start);
    let rate_gap = Duration::from_secs(1) / args.rate;
    let mut sip = Sip::new(args, users)?;
    let t_begin = Instant::now();
    let mut failures: Vec<String> = Vec::new();

    println!(
        "rtp-calls: {n} calls to {} (domain {}), caller {}, {} callees, RTP {} s ({} s warm-up), {} generator threads, RTP sockets {:?}",
        args.server,
        args.domain,
        args.caller,
        sip.callees.len(),
        duration.as_secs(),
        warmup.as_secs(),
        args.threads,
        args.rtp_sockets
    );

    // ---- 1. register the callees ----
    let t = Instant::now();
    for k in 0..sip.callees.len() {
        sip.register(k, None);
        let due = t + rate_gap * (k as u32 + 1);
        while Instant::now() < due {
            sip.pump(due - Instant::now());
        }
    }
    sip.run_until(Instant::now() + TXN_TIMEOUT + Duration::from_secs(5), Sip::registrations_done);
    let registered: Vec<usize> =
        (0..sip.callees.len()).filter(|&k| sip.callees[k].state == RegState::Registered).collect();
    println!(
        "registration: {}/{} callees registered in {:.1} s",
        registered.len(),
        sip.callees.len(),
        secs(t.elapsed())
    );
    for c in sip.callees.iter().filter(|c| c.state != RegState::Registered).take(5) {
        println!("  callee {} not registered: {:?}", c.ext, c.state);
    }
    if registered.is_empty() {
        println!(
            "SUMMARY {}",
            serde_json::json!({"label": args.label, "calls": n, "pass": false, "error": "no callee registered"})
        );
        return Ok(false);
    }
    if registered.len() < sip.callees.len() {
        failures.push(format!("{} callees not registered", sip.callees.len() - registered.len()));
    }
    sip.targets = registered;
    // Let the server settle (registration writes, memory freed after its start) before the
    // baseline: RSS steady within 256 KiB over 1 s, for at most 15 s.
    let settle_end = Instant::now() + Duration::from_secs(15);
    let mut last = ProcSample::default();
    srv(&mut last);
    loop {
        sip.run_until(Instant::now() + Duration::from_secs(1), |_| false);
        srv(&mut ss.before_calls);
        if ss.before_calls.rss_kib.abs_diff(last.rss_kib) < 256 || Instant::now() >= settle_end {
            break;
        }
        last = ss.before_calls;
    }

    // ---- 2. set the calls up ----
    let t_setup = Instant::now();
    for i in 0..n {
        let due = t_setup + rate_gap * i as u32;
        while Instant::now() < due {
            sip.pump(due - Instant::now());
        }
        sip.place_call();
    }
    sip.run_until(Instant::now() + TXN_TIMEOUT + Duration::from_secs(5), Sip::calls_settled);
    let setup_wall = t_setup.elapsed();
    // the callee sides: every ACK in (or given up)
    sip.run_until(Instant::now() + Duration::from_secs(5), |s| s.unacked.is_empty());
    let up: Vec<usize> = (0..n).filter(|&i| sip.calls[i].state == CallState::Up).collect();
    let mut setup_times: Vec<Duration> = up.iter().filter_map(|&i| sip.calls[i].setup_time).collect();
    setup_times.sort();
    let st_pct = |q: f64| {
        setup_times
            .get(((setup_times.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| secs(*d) * 1e3)
    };
    let mut fail_reasons: HashMap<String, usize> = HashMap::new();
    for c in &sip.calls {
        if let CallState::Failed(r) = &c.state {
            *fail_reasons.entry(r.clone()).or_default() += 1;
        }
    }
    let legs_acked = sip.legs.iter().filter(|l| l.state == LegState::Acked).count();
    println!(
        "setup: {}/{n} calls up in {:.1} s ({} failed); setup time (first INVITE to 200) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; callee legs: {} answered, {} ACKed",
        up.len(),
        secs(setup_wall),
        n - up.len(),
        st_pct(0.5),
        st_pct(0.99),
        st_pct(1.0),
        sip.legs.len(),
        legs_acked
    );
    for (r, c) in &fail_reasons {
        println!("  {c} calls failed: {r}");
    }
    if up.len() < n {
        failures.push(format!("{} of {n} calls not set up", n - up.len()));
    }
    if legs_acked < sip.legs.len() {
        failures.push(format!("{} callee legs without ACK", sip.legs.len() - legs_acked));
    }

    // ---- 3. idle calls: memory and timer cost ----
    sip.run_until(Instant::now() + Duration::from_secs(1), |_| false);
    srv(&mut ss.calls_up);
    sip.run_until(Instant::now() + Duration::from_secs(args.idle), |_| false);
    srv(&mut ss.idle_end);
    let idle_wall = Duration::from_secs(args.idle);

    // ---- 4. RTP ----
    let threads = args.threads;
    let t0 = Instant::now() + Duration::from_millis(100);
    let periods = (duration.as_millis() / PTIME.as_millis()) as u32;
    let warm = (warmup.as_millis() / PTIME.as_millis()) as u32;
    let to_unix = |at: Instant| {
        let now = Instant::now();
        let ns = unix_ns();
        ns.saturating_add(at.saturating_duration_since(now).as_nanos() as u64)
            .saturating_sub(now.saturating_duration_since(at).as_nanos() as u64)
    };
    let wall_window = (to_unix(t0 + warmup), to_unix(t0 + duration));
    let mut plans: Vec<Plan> = (0..threads)
        .map(|t| Plan {
            endpoints: Vec::new(),
            shared_fds: sip.rtp.shared.get(t).map_or(Vec::new(), |s| vec![s[0].0, s[1].0]),
            t0,
            periods,
            warm,
            wall_window,
        })
        .collect();
    let ssrc_base = unix_ns() as u32;
    for &i in &up {
        let c = &sip.calls[i];
        if let Some(relay) = c.relay {
            plans[i % threads].endpoints.push(Endpoint {
                fd: c.rtp_fd,
                relay,
                id: i as u32,
                callee_side: false,
                ssrc: ssrc_base.wrapping_add((i as u32).wrapping_mul(2_654_435_761)),
            });
        }
    }
    let mut legs_without_relay = 0;
    for (j, l) in sip.legs.iter().enumerate() {
        if l.state != LegState::Acked {
            continue;
        }
        let Some(relay) = l.relay else {
            legs_without_relay += 1;
            continue;
        };
        let id = (n + j) as u32;
        plans[j % threads].endpoints.push(Endpoint {
            fd: l.rtp_fd,
            relay,
            id,
            callee_side: true,
            ssrc: ssrc_base.wrapping_add(id.wrapping_mul(2_654_435_761)),
        });
    }
    let self_pid = std::process::id().to_string();
    let (mut gen_w0, mut gen_w1, mut host_w0, mut host_w1) =
        (ProcSample::default(), ProcSample::default(), HostSample::default(), HostSample::default());
    let (mut wall_w0, mut wall_w1) = (t0, t0);
    let outs: Vec<GenOut> = thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .enumerate()
            .filter_map(|(t, plan)| {
                thread::Builder::new().name(format!("rtp-gen-{t}")).spawn_scoped(scope, move || generate(plan)).ok()
            })
            .collect();
        sip.run_until(t0 + warmup, |_| false);
        wall_w0 = Instant::now();
        srv(&mut ss.window_start);
        gen_w0 = sample_proc(&self_pid, "rtp-gen");
        host_w0 = sample_host();
        sip.run_until(t0 + duration, |_| false);
        wall_w1 = Instant::now();
        srv(&mut ss.window_end);
        gen_w1 = sample_proc(&self_pid, "rtp-gen");
        host_w1 = sample_host();
        while handles.iter().any(|h| !h.is_finished()) {
            sip.pump(Duration::from_millis(20));
        }
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    if outs.len() < threads {
        failures.push("a generator thread did not start or panicked".into());
    }
    srv(&mut ss.after_rtp);
    let ended_by_server = sip.calls.iter().filter(|c| c.state == CallState::EndedByServer).count();
    if ended_by_server > 0 {
        failures.push(format!("{ended_by_server} calls ended by the server during the run"));
    }

    // ---- 5. hang up ----
    let t_bye = Instant::now();
    let mut byes = 0;
    for &i in &up {
        if sip.calls[i].state != CallState::Up {
            continue;
        }
        let due = t_bye + rate_gap * byes;
        while Instant::now() < due {
            sip.pump(due - Instant::now());
        }
        sip.bye(i);
        byes += 1;
    }
    sip.run_until(Instant::now() + TXN_TIMEOUT + Duration::from_secs(5), |s| {
        s.calls.iter().all(|c| c.state != CallState::ByeSent)
            && s.legs.iter().all(|l| !matches!(l.state, LegState::Acked | LegState::Answered))
    });
    let bye_ok = sip.calls.iter().filter(|c| c.state == CallState::Ended).count();
    let legs_byed = sip.legs.iter().filter(|l| l.state == LegState::Ended).count();
    let mut bye_fail: HashMap<String, usize> = HashMap::new();
    for c in &sip.calls {
        if let CallState::ByeFailed(r) = &c.state {
            *bye_fail.entry(r.clone()).or_default() += 1;
        }
    }
    sip.run_until(Instant::now() + Duration::from_secs(1), |_| false);
    srv(&mut ss.after_hangup);
    sip.run_until(Instant::now() + Duration::from_secs(args.settle_after.min(120)), |_| false);
    srv(&mut ss.settled);
    if bye_ok < byes as usize {
        failures.push(format!("{} of {byes} BYEs not answered with 2xx", byes as usize - bye_ok));
    }
    if legs_byed < sip.legs.len() {
        failures.push(format!("{} callee legs got no BYE from the server", sip.legs.len() - legs_byed));
    }

    // ---- 6. figures ----
    let mut dir = [DirCounts::default(), DirCounts::default()];
    for d in &mut dir {
        d.latency = vec![0; LAT_BUCKETS];
    }
    let (mut stray, mut late_slots, mut slots, mut max_late) = (0, 0, 0, Duration::ZERO);
    let mut first_sender: HashMap<u32, Option<u32>> = HashMap::new();
    let mut silent_endpoints = 0;
    for o in &outs {
        for (acc, d) in dir.iter_mut().zip(&o.dir) {
            acc.sent += d.sent;
            acc.sent_window += d.sent_window;
            acc.send_failed += d.send_failed;
            acc.received += d.received;
            acc.received_window += d.received_window;
            acc.received_wall += d.received_wall;
            acc.reordered += d.reordered;
            acc.misrouted += d.misrouted;
            for (a, b) in acc.latency.iter_mut().zip(&d.latency) {
                *a += b;
            }
        }
        stray += o.stray;
        late_slots += o.late_slots;
        slots += o.slots;
        max_late = max_late.max(o.max_late);
        for &(id, first, window) in &o.endpoints {
            first_sender.insert(id, first);
            if window == 0 {
                silent_endpoints += 1;
            }
        }
    }
    // cross-talk check: the two sides of every call hear each other and nobody else
    let mut unpaired = 0;
    for (&id, &first) in &first_sender {
        match first {
            Some(s) if first_sender.get(&s).copied().flatten() == Some(id) => {}
            _ => unpaired += 1,
        }
    }
    let window = wall_w1.saturating_duration_since(wall_w0);
    let loss = |d: &DirCounts| {
        100.0 * (d.sent_window as f64 - d.received_window as f64).max(0.0) / (d.sent_window.max(1) as f64)
    };
    let (loss_ab, loss_ba) = (loss(&dir[0]), loss(&dir[1]));
    let mut lat_all = dir[0].latency.clone();
    for (a, b) in lat_all.iter_mut().zip(&dir[1].latency) {
        *a += b;
    }
    let lat = |q: f64| percentile(&lat_all, q);
    // Packets the relay delivered while the server was measured, and the nominal rate: 50 per
    // second per sending side.
    let relayed_wall = dir[0].received_wall + dir[1].received_wall;
    let planned_window = duration - warmup;
    let relayed_rate = relayed_wall as f64 / secs(planned_window).max(1e-9);
    let sides = dir_endpoints(&plans, false) + dir_endpoints(&plans, true);
    let nominal_rate = sides as f64 * 1000.0 / PTIME.as_millis() as f64;
    let achieved_pct = 100.0 * relayed_rate / nominal_rate.max(1e-9);
    let calls_measured = up.len().max(1) as f64;

    println!();
    println!(
        "RTP: {} caller sides and {} callee sides sending 172-byte PCMU packets every 20 ms",
        dir_endpoints(&plans, false),
        dir_endpoints(&plans, true)
    );
    println!(
        "  steady state: packets sent from {:.1} s to {:.1} s after the first send ({:.1} s measured by the server samples), received until {:.1} s after the last send",
        warmup.as_secs_f64(),
        duration.as_secs_f64(),
        secs(window),
        secs(DRAIN)
    );
    for (name, d, l) in [("A→B (caller → callee)", &dir[0], loss_ab), ("B→A (callee → caller)", &dir[1], loss_ba)]
    {
        println!(
            "  {name}: steady sent {} received {} lost {} = {:.4} %; whole run sent {} received {} (incl. warm-up); send failures {}, reordered/duplicated {}, cross-talk {}",
            d.sent_window,
            d.received_window,
            d.sent_window.saturating_sub(d.received_window),
            l,
            d.sent,
            d.received,
            d.send_failed,
            d.reordered,
            d.misrouted
        );
    }
    let fmt_lat = |v: Option<u64>| v.map_or("-".to_string(), |us| format!("{:.2} ms", us as f64 / 1000.0));
    println!(
        "  one-way latency through the relay (send call → kernel receive timestamp, both directions): p50 {} p90 {} p99 {} p99.9 {} max {}",
        fmt_lat(lat(0.5)),
        fmt_lat(lat(0.9)),
        fmt_lat(lat(0.99)),
        fmt_lat(lat(0.999)),
        fmt_lat(lat(1.0))
    );
    println!(
        "  relayed while the server was measured (kernel receive time in the window): {relayed_rate:.0} packets/s = {achieved_pct:.2} % of the nominal {nominal_rate:.0}/s"
    );
    println!(
        "  stray datagrams {stray}; endpoints silent in the steady state {silent_endpoints}; endpoints not paired one-to-one with their call's other side {unpaired}; callee legs without a relay address {legs_without_relay}"
    );
    println!(
        "  generator: {} slots, {} served more than {} ms late (max {:.1} ms); CPU {:.2} s over the window = {:.1} % of a core (threads rtp-gen: {:.1} %)",
        slots,
        late_slots,
        LATE.as_millis(),
        secs(max_late) * 1e3,
        secs(gen_w1.cpu.saturating_sub(gen_w0.cpu)),
        100.0 * secs(gen_w1.cpu.saturating_sub(gen_w0.cpu)) / secs(window).max(1e-9),
        100.0 * secs(gen_w1.group_sched.saturating_sub(gen_w0.group_sched)) / secs(window).max(1e-9),
    );
    let host_busy = secs(host_w1.busy.saturating_sub(host_w0.busy));
    let udp = [0, 1, 2].map(|x| host_w1.udp[x].saturating_sub(host_w0.udp[x]));
    println!(
        "  machine over the window: busy {:.2} s of {:.2} s x {} CPUs; CPU pressure (some task waiting) {:.2} s; UDP InErrors {} RcvbufErrors {} SndbufErrors {}",
        host_busy,
        secs(window),
        sys::online_cpus(),
        secs(host_w1.cpu_wait.saturating_sub(host_w0.cpu_wait)),
        udp[0],
        udp[1],
        udp[2]
    );

    let mut summary = serde_json::json!({
        "label": args.label,
        "calls": n,
        "calls_up": up.len(),
        "setup_s": (secs(setup_wall) * 10.0).round() / 10.0,
        "setup_p99_ms": st_pct(0.99),
        "rtp_sockets": format!("{:?}", args.rtp_sockets),
        "duration_s": duration.as_secs(),
        "window_s": secs(window),
        "a2b_sent": dir[0].sent_window,
        "a2b_received": dir[0].received_window,
        "a2b_loss_pct": loss_ab,
        "b2a_sent": dir[1].sent_window,
        "b2a_received": dir[1].received_window,
        "b2a_loss_pct": loss_ba,
        "a2b_sent_total": dir[0].sent,
        "a2b_received_total": dir[0].received,
        "b2a_sent_total": dir[1].sent,
        "b2a_received_total": dir[1].received,
        "cross_talk": dir[0].misrouted + dir[1].misrouted,
        "unpaired_endpoints": unpaired,
        "lat_p50_us": lat(0.5),
        "lat_p99_us": lat(0.99),
        "lat_p999_us": lat(0.999),
        "lat_max_us": lat(1.0),
        "gen_cpu_pct": 100.0 * secs(gen_w1.cpu.saturating_sub(gen_w0.cpu)) / secs(window).max(1e-9),
        "gen_late_slots": late_slots,
        "relayed_pps": relayed_rate,
        "achieved_pct": achieved_pct,
        "udp_rcvbuf_errors": udp[1],
        "cpu_wait_s": secs(host_w1.cpu_wait.saturating_sub(host_w0.cpu_wait)),
        "byes_ok": bye_ok,
    });
    if server_pid.is_some() {
        let cpu = secs(ss.window_end.cpu.saturating_sub(ss.window_start.cpu));
        let sched = secs(ss.window_end.sched.saturating_sub(ss.window_start.sched));
        let relay = secs(ss.window_end.group_sched.saturating_sub(ss.window_start.group_sched));
        let w = secs(window).max(1e-9);
        let core_pct = 100.0 * cpu / w;
        let per_call = core_pct / calls_measured;
        let relay_per_call = 100.0 * relay / w / calls_measured;
        let us_per_packet = if relayed_rate > 0.0 { 1e6 * (cpu / w) / relayed_rate } else { 0.0 };
        // What one call costs at its nominal 100 packets/s (50 each way), at this per-packet cost:
        // the same as `per_call` when the generator kept up.
        let per_call_nominal = us_per_packet * 2.0 * 1000.0 / PTIME.as_millis() as f64 / 1e4;
        let kib = |a: &ProcSample, b: &ProcSample| b.rss_kib as f64 - a.rss_kib as f64;
        let mem_idle = kib(&ss.before_calls, &ss.calls_up) / calls_measured;
        let mem_rtp = kib(&ss.before_calls, &ss.after_rtp) / calls_measured;
        let anon = |a: &ProcSample, b: &ProcSample| b.anon_kib as f64 - a.anon_kib as f64;
        let anon_idle = anon(&ss.before_calls, &ss.calls_up) / calls_measured;
        let anon_rtp = anon(&ss.before_calls, &ss.after_rtp) / calls_measured;
        let idle_cpu = secs(ss.idle_end.cpu.saturating_sub(ss.calls_up.cpu));
        let idle_sched = secs(ss.idle_end.sched.saturating_sub(ss.calls_up.sched));
        println!();
        println!("server (pid {}): {} threads", server_pid.as_deref().unwrap_or(""), ss.window_end.threads);
        println!(
            "  steady RTP window: CPU {cpu:.2} s (utime+stime; live threads' schedstat {sched:.2} s) over {w:.2} s = {core_pct:.1} % of a core; relay threads (media-worker, schedstat) {relay:.2} s = {:.1} % of a core",
            100.0 * relay / w
        );
        println!(
            "  per call: {per_call:.4} % of a core (relay threads alone {relay_per_call:.4} %); per relayed packet {us_per_packet:.2} µs ({relayed_rate:.0} packets/s relayed in the window); at the nominal 100 packets/s per call: {per_call_nominal:.4} % of a core per call"
        );
        println!(
            "  idle calls (all up, no RTP, {} s): CPU {idle_cpu:.2} s (schedstat {idle_sched:.2} s) = {:.2} % of a core",
            idle_wall.as_secs(),
            100.0 * idle_cpu / secs(idle_wall).max(1e-9)
        );
        println!(
            "  RSS: start {} KiB, before calls {} KiB, {} calls up and idle {} KiB ({mem_idle:.1} KiB per call), after RTP {} KiB ({mem_rtp:.1} KiB per call), after hang-up {} KiB",
            ss.start.rss_kib,
            ss.before_calls.rss_kib,
            up.len(),
            ss.calls_up.rss_kib,
            ss.after_rtp.rss_kib,
            ss.after_hangup.rss_kib
        );
        println!(
            "  open fds: before calls {}, calls up {}, 1 s after hang-up {}, {} s after hang-up {}; RSS then {} KiB, RssAnon {} KiB",
            ss.before_calls.fds,
            ss.calls_up.fds,
            ss.after_hangup.fds,
            args.settle_after.min(120) + 1,
            ss.settled.fds,
            ss.settled.rss_kib,
            ss.settled.anon_kib
        );
        println!(
            "  RssAnon (heap, stacks): before calls {} KiB, calls up {} KiB ({anon_idle:.1} KiB per call), after RTP {} KiB ({anon_rtp:.1} KiB per call), after hang-up {} KiB",
            ss.before_calls.anon_kib, ss.calls_up.anon_kib, ss.after_rtp.anon_kib, ss.after_hangup.anon_kib
        );
        println!(
            "  signalling: setup CPU {:.2} s for {} calls ({:.0} µs per call); hang-up CPU {:.2} s",
            secs(ss.calls_up.cpu.saturating_sub(ss.before_calls.cpu)),
            up.len(),
            1e6 * secs(ss.calls_up.cpu.saturating_sub(ss.before_calls.cpu)) / calls_measured,
            secs(ss.after_hangup.cpu.saturating_sub(ss.after_rtp.cpu))
        );
        let other = host_busy - cpu - secs(gen_w1.cpu.saturating_sub(gen_w0.cpu));
        println!("  others on the machine over the window (busy - server - generator, tick-sampled): {other:.2} s");
        if let Some(o) = summary.as_object_mut() {
            o.insert("server_cpu_s".into(), cpu.into());
            o.insert("server_core_pct".into(), core_pct.into());
            o.insert("cpu_pct_per_call".into(), per_call.into());
            o.insert("relay_cpu_pct_per_call".into(), relay_per_call.into());
            o.insert("cpu_pct_per_call_nominal".into(), per_call_nominal.into());
            o.insert("us_per_packet".into(), us_per_packet.into());
            o.insert("idle_calls_core_pct".into(), (100.0 * idle_cpu / secs(idle_wall).max(1e-9)).into());
            o.insert("rss_before_kib".into(), ss.before_calls.rss_kib.into());
            o.insert("rss_calls_up_kib".into(), ss.calls_up.rss_kib.into());
            o.insert("rss_after_rtp_kib".into(), ss.after_rtp.rss_kib.into());
            o.insert("rss_after_hangup_kib".into(), ss.after_hangup.rss_kib.into());
            o.insert("rss_settled_kib".into(), ss.settled.rss_kib.into());
            o.insert("fds_before".into(), ss.before_calls.fds.into());
            o.insert("fds_calls_up".into(), ss.calls_up.fds.into());
            o.insert("fds_settled".into(), ss.settled.fds.into());
            o.insert("mem_per_call_kib".into(), mem_idle.into());
            o.insert("mem_per_call_rtp_kib".into(), mem_rtp.into());
            o.insert("anon_per_call_kib".into(), anon_idle.into());
            o.insert("anon_per_call_rtp_kib".into(), anon_rtp.into());
            o.insert("other_cpu_s".into(), other.into());
        }
    }
    println!();
    println!(
        "SIP: retransmissions sent {}, retransmitted responses absorbed {}, unmatched {}, unparsable {}, re-INVITEs {}, BYEs for unknown calls {}, send errors {}, INVITEs without SDP {}, RTP socket errors {}",
        sip.stats.retransmissions,
        sip.stats.absorbed_responses,
        sip.stats.unmatched,
        sip.stats.unparsable,
        sip.stats.reinvites,
        sip.stats.byes_to_unknown,
        sip.stats.send_errors,
        sip.stats.invites_without_sdp,
        sip.stats.rtp_alloc_errors
    );
    println!(
        "hang-up: {bye_ok}/{byes} BYEs answered 2xx, {legs_byed}/{} callee legs got the server's BYE",
        sip.legs.len()
    );
    for (r, c) in &bye_fail {
        println!("  {c} BYEs failed: {r}");
    }

    // ---- verdict ----
    if let Some(p) = &server_pid
        && !fs::metadata(format!("/proc/{p}")).is_ok_and(|m| m.is_dir())
    {
        failures.push(format!("the server (PID {p}) is gone"));
    }
    for (name, l) in [("A→B", loss_ab), ("B→A", loss_ba)] {
        if l > args.max_loss {
            failures.push(format!("{name} steady-state loss {l:.4} % above {} %", args.max_loss));
        }
    }
    if dir[0].sent_window == 0 || dir[1].sent_window == 0 {
        failures.push("no RTP sent in the steady state".into());
    }
    if dir[0].misrouted + dir[1].misrouted > 0 || unpaired > 0 {
        failures.push(format!(
            "cross-talk: {} packets from another call's endpoint, {unpaired} endpoints not paired with their call",
            dir[0].misrouted + dir[1].misrouted
        ));
    }
    if late_slots > slots / 20 || achieved_pct < 99.0 {
        failures.push(format!(
            "the generator fell behind ({late_slots} of {slots} slots late, {achieved_pct:.1} % of the nominal packet rate relayed): figures not valid"
        ));
    }
    let pass = failures.is_empty();
    println!(
        "verdict: {} (loss threshold {} % per direction, steady state after {} s warm-up){}",
        if pass { "PASS" } else { "FAIL" },
        args.max_loss,
        warmup.as_secs(),
        if pass { String::new() } else { format!(": {}", failures.join("; ")) }
    );
    println!("total time {:.1} s", secs(t_begin.elapsed()));
    if let Some(o) = summary.as_object_mut() {
        o.insert("pass".into(), pass.into());
        o.insert("failures".into(), failures.clone().into());
    }
    let line = summary.to_string();
    println!("SUMMARY {line}");
    if let Some(path) = &args.summary_file {
        let mut old = fs::read_to_string(path).unwrap_or_default();
        old.push_str(&line);
        old.push('\n');
        fs::write(path, old).map_err(|e| Error::Io("writing the summary file", e))?;
    }
    Ok(pass)
}

fn dir_endpoints(plans: &[Plan], callee_side: bool) -> usize {
    plans.iter().flat_map(|p| &p.endpoints).filter(|e| e.callee_side == callee_side).count()
}

#[cfg(test)]
mod tests {
    use super::sip::{self, Msg};

    #[test]
    fn digest_rfc2617_example() {
        let ch = sip::Challenge {
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            qop_auth: true,
            ..Default::default()
        };
        assert_eq!(
            ch.response("Mufasa", "Circle Of Life", "GET", "/dir/index.html", "0a4f113b"),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn challenge_md5_chosen() {
        let v = [
            "Digest realm=\"bench.test\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\"",
            "Digest realm=\"bench.test\", nonce=\"def\", algorithm=MD5, qop=\"auth\"",
        ];
        let ch = sip::md5_challenge(v.into_iter()).unwrap_or_default();
        assert_eq!((ch.realm.as_str(), ch.nonce.as_str(), ch.qop_auth), ("bench.test", "def", true));
    }

    #[test]
    fn response_fields_and_sdp() {
        let text = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:46000;branch=z9hG4bKx;rport=46000, SIP/2.0/UDP 10.0.0.1\r\n\
                    To: <sip:2900@bench.test>;tag=abc\r\nm: <sip:sb@127.0.0.1:15080;transport=udp>\r\n\
                    CSeq: 2 INVITE\r\nContent-Length: 62\r\n\r\n\
                    v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20002 RTP/AVP 0\r\na=sendrecv\r\n";
        let m = Msg::parse(text.as_bytes()).unwrap_or_else(|| panic!("parse"));
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.top_branch(), Some("z9hG4bKx"));
        assert_eq!(m.header("to").and_then(|t| sip::param(t, "tag")), Some("abc"));
        assert_eq!(m.header("contact").map(sip::uri), Some("sip:sb@127.0.0.1:15080;transport=udp"));
        assert_eq!(m.cseq(), Some((2, "INVITE")));
        assert_eq!(sip::sdp_audio(m.body).map(|a| a.to_string()).as_deref(), Some("127.0.0.1:20002"));
    }

    #[test]
    fn truncated_body_rejected() {
        assert!(Msg::parse(b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc").is_none());
    }
}
