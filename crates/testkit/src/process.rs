//! Shared plumbing of the drivers: capturing a child's output into a log file while parsing it
//! into events, and waiting for those events with a timeout.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How many log lines an error message carries.
pub(crate) const LOG_TAIL_LINES: usize = 60;

/// Collects the output lines of a peer and the events parsed from them (or pushed by other
/// channels, such as a control socket), and lets callers wait for events.
pub(crate) struct Monitor<E> {
    state: Mutex<State<E>>,
    cond: Condvar,
    log: Mutex<Option<File>>,
}

struct State<E> {
    events: Vec<E>,
    lines: Vec<String>,
    open_streams: usize,
    cursors: HashMap<&'static str, usize>,
}

/// The outcome of [`Monitor::wait`].
pub(crate) enum Waited<T> {
    /// The closure found what it was looking for.
    Found(T),
    /// The timeout passed first.
    Timeout,
    /// All output streams closed first (the process exited).
    Closed,
}

impl<T> Waited<T> {
    /// Maps the found value.
    pub(crate) fn map_found<U>(self, f: impl FnOnce(T) -> U) -> Waited<U> {
        match self {
            Waited::Found(t) => Waited::Found(f(t)),
            Waited::Timeout => Waited::Timeout,
            Waited::Closed => Waited::Closed,
        }
    }
}

/// A view of the events for a waiting closure, with one cursor per named stream of events.
pub(crate) struct Journal<'a, E> {
    events: &'a [E],
    cursors: &'a mut HashMap<&'static str, usize>,
}

impl<E> Journal<'_, E> {
    /// The next event at or after the cursor `key` that matches `pred`, consuming it (the cursor
    /// moves past it). When none matches, the cursor moves to the end: events never change, so
    /// those skipped will never match.
    pub(crate) fn take(&mut self, key: &'static str, pred: impl Fn(&E) -> bool) -> Option<&E> {
        let cursor = self.cursors.entry(key).or_insert(0);
        let events: &[E] = self.events;
        match events.iter().enumerate().skip(*cursor).find(|(_, e)| pred(e)) {
            Some((i, e)) => {
                *cursor = i + 1;
                Some(e)
            }
            None => {
                *cursor = events.len();
                None
            }
        }
    }

    /// All events, oldest first.
    pub(crate) fn all(&self) -> &[E] {
        self.events
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<E: Send + 'static> Monitor<E> {
    /// A monitor writing the lines it sees to `log_path`.
    pub(crate) fn new(log_path: &Path) -> io::Result<Arc<Self>> {
        let log = File::create(log_path)?;
        Ok(Arc::new(Self {
            state: Mutex::new(State {
                events: Vec::new(),
                lines: Vec::new(),
                open_streams: 0,
                cursors: HashMap::new(),
            }),
            cond: Condvar::new(),
            log: Mutex::new(Some(log)),
        }))
    }

    /// Reads `reader` line by line on a thread: each line (ANSI colours stripped, `\r` treated as
    /// a line break) goes to the log and to `parse`, whose events are recorded.
    pub(crate) fn attach<R, P>(self: &Arc<Self>, reader: R, prefix: &'static str, parse: P)
    where
        R: Read + Send + 'static,
        P: Fn(&str) -> Option<E> + Send + 'static,
    {
        lock(&self.state).open_streams += 1;
        let me = Arc::clone(self);
        thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        for piece in text.split(['\n', '\r']) {
                            let line = strip_ansi(piece);
                            if line.trim().is_empty() {
                                continue;
                            }
                            let event = parse(&line);
                            me.record_line(prefix, line, event);
                        }
                    }
                }
            }
            let mut st = lock(&me.state);
            st.open_streams -= 1;
            drop(st);
            me.cond.notify_all();
        });
    }

    /// Records one line (and maybe an event) without a reader thread.
    pub(crate) fn record_line(&self, prefix: &str, line: String, event: Option<E>) {
        if let Some(log) = lock(&self.log).as_mut() {
            // A failed log write must not take the driver down; the line stays in memory.
            let _ = writeln!(log, "{prefix}{line}");
        }
        let mut st = lock(&self.state);
        st.lines.push(line);
        if let Some(e) = event {
            st.events.push(e);
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Calls `f` on the journal now and after every new event until it returns `Some`, the
    /// timeout passes, or all output streams are closed.
    pub(crate) fn wait<T>(&self, timeout: Duration, mut f: impl FnMut(&mut Journal<'_, E>) -> Option<T>) -> Waited<T> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.state);
        loop {
            let State { events, cursors, open_streams, .. } = &mut *st;
            let mut journal = Journal { events, cursors };
            if let Some(t) = f(&mut journal) {
                return Waited::Found(t);
            }
            if *open_streams == 0 {
                return Waited::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Waited::Timeout;
            }
            st = self.cond.wait_timeout(st, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// The last `n` output lines, joined.
    pub(crate) fn tail(&self, n: usize) -> String {
        let st = lock(&self.state);
        let start = st.lines.len().saturating_sub(n);
        st.lines[start..].join("\n")
    }

    /// All output lines so far, joined.
    pub(crate) fn text(&self) -> String {
        lock(&self.state).lines.join("\n")
    }

    /// A copy of all events so far.
    pub(crate) fn events(&self) -> Vec<E>
    where
        E: Clone,
    {
        lock(&self.state).events.clone()
    }

    /// Flushes the log file.
    pub(crate) fn flush(&self) {
        if let Some(log) = lock(&self.log).as_mut() {
            let _ = log.flush();
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`) and other control characters but tabs.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c.is_control() && c != '\t' {
            continue;
        }
        out.push(c);
    }
    out
}

/// A child process that is killed (and reaped) when dropped.
pub(crate) struct ChildGuard {
    child: Option<Child>,
    /// Whether the child leads its own process group, which is then signalled as a whole.
    group: bool,
}

impl ChildGuard {
    pub(crate) fn new(child: Child, group: bool) -> Self {
        Self { child: Some(child), group }
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub(crate) fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// The exit status if the child has exited.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (to the group if it has one), waits up to `grace`, then SIGKILLs.
    pub(crate) fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let target = if self.group { format!("-{}", child.id()) } else { child.id().to_string() };
        let _ = signal("-TERM", &target);
        if let Some(status) = self.wait_timeout(grace) {
            if self.group {
                // Stragglers of the group (children that ignored the TERM).
                let _ = signal("-KILL", &target);
            }
            return Some(status);
        }
        self.kill()
    }

    /// SIGKILLs the child (and its group) and reaps it.
    pub(crate) fn kill(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if self.group {
            let _ = signal("-KILL", &format!("-{}", child.id()));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

/// Runs `kill <signal> -- <target>` quietly (`target` is a pid, or `-pgid` for a group).
fn signal(signal: &str, target: &str) -> io::Result<ExitStatus> {
    Command::new("kill").args([signal, "--", target]).stdout(Stdio::null()).stderr(Stdio::null()).status()
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.kill();
        }
    }
}

/// Whether an executable called `name` is on the `PATH` (or `name` is a path to a file).
pub(crate) fn available(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// Whether `TESTKIT_KEEP_DIRS` asks to keep the drivers' temporary directories.
pub(crate) fn keep_dirs() -> bool {
    std::env::var_os("TESTKIT_KEEP_DIRS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A temporary directory for one peer, kept on disk when `TESTKIT_KEEP_DIRS` is set.
pub(crate) fn peer_dir(prefix: &str) -> io::Result<tempfile::TempDir> {
    let mut dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    if keep_dirs() {
        dir.disable_cleanup(true);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_ansi_removes_colour_codes() {
        assert_eq!(strip_ansi("\u{1b}[31mreg: failed\u{1b}[;m"), "reg: failed");
        assert_eq!(strip_ansi("plain\ttext"), "plain\ttext");
    }

    #[test]
    fn journal_take_consumes_in_order_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let m: Arc<Monitor<u32>> = Monitor::new(&dir.path().join("log")).unwrap();
        m.record_line("", "x".into(), Some(1));
        m.record_line("", "y".into(), Some(2));
        m.record_line("", "z".into(), Some(1));
        lock(&m.state).open_streams = 1;
        let mut got = Vec::new();
        for _ in 0..2 {
            match m.wait(Duration::from_millis(10), |j| j.take("ones", |e| *e == 1).copied()) {
                Waited::Found(v) => got.push(v),
                _ => panic!("expected an event"),
            }
        }
        assert_eq!(got, vec![1, 1]);
        assert!(matches!(m.wait(Duration::from_millis(10), |j| j.take("ones", |e| *e == 1).copied()), Waited::Timeout));
        // Another key has its own cursor.
        assert!(matches!(
            m.wait(Duration::from_millis(10), |j| j.take("twos", |e| *e == 2).copied()),
            Waited::Found(2)
        ));
    }
}
