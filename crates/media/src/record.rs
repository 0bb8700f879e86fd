//! Call recording: the relay taps both sides' audio and a writer thread streams it to a
//! two-channel WAV file (caller left, callee right, 8 kHz, 16-bit) while the call runs.
//!
//! The worker decodes each RTP packet of a recorded session (G.711 µ-law and A-law, G.722
//! brought down to 8 kHz) and hands the samples over a bounded channel, never waiting: if the
//! writer falls behind, audio is dropped and counted rather than the relay slowed down. The
//! writer places each frame on the channel's timeline by arrival time (continuing the previous
//! frame when it arrives on time, so network jitter does not chop the audio), writes what is
//! older than a short settling delay, and updates the WAV header every second: after a crash
//! the file holds everything up to the last second and is readable as it is.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use audio::g711::Law;
use audio::g722::G722Decoder;
use audio::resample::Downsampler;

use crate::Side;
use crate::router::side_index;
use crate::rtp::payload_range;

/// Sample rate of recordings.
pub const RECORDING_RATE: u32 = 8000;
/// How long the writer waits for late frames before writing a stretch of the timeline.
const SETTLE: Duration = Duration::from_millis(300);
/// Frames queued between the relay and the writer.
const QUEUE: usize = 512;

struct Frame {
    side: Side,
    at: Instant,
    samples: Vec<i16>,
}

/// Per-side decoder of a recorded session.
#[derive(Default)]
struct SideDecoder {
    g722: Option<Box<G722Decoder>>,
    down: Downsampler,
    wide: Vec<i16>,
}

/// The worker's end of a recording.
pub(crate) struct RecordTap {
    tx: SyncSender<Frame>,
    decoders: [SideDecoder; 2],
    dropped: Arc<AtomicU64>,
}

impl RecordTap {
    /// An RTP packet from `side`, arrived at `now`: its audio goes to the writer.
    pub(crate) fn on_rtp(&mut self, side: Side, packet: &[u8], now: Instant) {
        let Some(range) = payload_range(packet) else { return };
        let pt = packet[1] & 0x7F;
        if !matches!(pt, 0 | 8 | 9) {
            return; // events, comfort noise, codecs not decoded here
        }
        let payload = &packet[range];
        let mut samples = Vec::with_capacity(payload.len());
        match pt {
            0 => Law::Ulaw.decode(payload, &mut samples),
            8 => Law::Alaw.decode(payload, &mut samples),
            _ => {
                let d = &mut self.decoders[side_index(side)];
                let decoder = d.g722.get_or_insert_with(|| Box::new(G722Decoder::new()));
                d.wide.clear();
                decoder.decode(payload, &mut d.wide);
                d.down.process(&d.wide, &mut samples);
            }
        }
        match self.tx.try_send(Frame { side, at: now, samples }) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A recording in progress; the file is complete once the session stops recording (or ends)
/// and the writer has drained, which [`Recording::wait`] waits for.
#[derive(Debug)]
pub struct Recording {
    path: PathBuf,
    dropped: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<io::Result<u64>>>,
}

impl Recording {
    /// Where it is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames the writer could not take in time (dropped, never blocking the relay).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits for the writer to finish (after the recording stopped) and gives the number of
    /// sample frames written.
    pub fn wait(mut self) -> io::Result<u64> {
        match self.writer.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("recording writer panicked")),
            None => Ok(0),
        }
    }
}

/// What a recording holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordMode {
    /// Both legs, each in its channel (caller left, callee right).
    #[default]
    Stereo,
    /// Both legs mixed into one channel.
    Mixed,
    /// The caller's leg only (what side A sends), mono.
    Caller,
    /// The callee's leg only (what side B sends), mono.
    Callee,
}

/// Starts the writer of a new recording at `path` (directories created); the tap goes to the
/// session's worker.
pub(crate) fn start(path: &Path, now: Instant, mode: RecordMode) -> io::Result<(RecordTap, Recording)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let spec = hound::WavSpec {
        channels: if mode == RecordMode::Stereo { 2 } else { 1 },
        sample_rate: RECORDING_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let writer = hound::WavWriter::create(path, spec).map_err(io::Error::other)?;
    let (tx, rx) = sync_channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let thread =
        std::thread::Builder::new().name("recording".to_owned()).spawn(move || write(writer, rx, now, mode))?;
    let tap = RecordTap { tx, decoders: Default::default(), dropped: Arc::clone(&dropped) };
    Ok((tap, Recording { path: path.to_owned(), dropped, writer: Some(thread) }))
}

/// One channel's timeline: samples from `written` on, and where the next frame should go.
#[derive(Default)]
struct Channel {
    pending: VecDeque<i16>,
    next: Option<u64>,
}

fn write(
    mut writer: hound::WavWriter<io::BufWriter<std::fs::File>>,
    rx: Receiver<Frame>,
    start: Instant,
    mode: RecordMode,
) -> io::Result<u64> {
    let rate = u64::from(RECORDING_RATE);
    let index_of = |at: Instant| (at.saturating_duration_since(start).as_micros() as u64) * rate / 1_000_000;
    let mut channels: [Channel; 2] = Default::default();
    let mut written: u64 = 0;
    let mut last_header = Instant::now();
    let mut done = false;
    while !done {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(frame) => {
                let len = frame.samples.len() as u64;
                let ends = index_of(frame.at);
                let by_time = ends.saturating_sub(len);
                let c = &mut channels[side_index(frame.side)];
                // On time (within a frame of where the last one ended): continue it seamlessly.
                let at = match c.next {
                    Some(next) if next.abs_diff(by_time) <= len.max(160) => next,
                    _ => by_time,
                };
                c.next = Some(at + len);
                let skip = written.saturating_sub(at) as usize; // too late for what is written
                let offset = at.saturating_sub(written) as usize;
                if c.pending.len() < offset {
                    c.pending.resize(offset, 0);
                }
                for (i, &s) in frame.samples.iter().enumerate().skip(skip) {
                    let pos = offset + i - skip;
                    if pos < c.pending.len() {
                        c.pending[pos] = s;
                    } else {
                        c.pending.push_back(s);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => done = true,
        }
        // Write what has settled (everything once the recording is over).
        let horizon = if done { u64::MAX } else { index_of(Instant::now().checked_sub(SETTLE).unwrap_or(start)) };
        let available = channels.iter().map(|c| written + c.pending.len() as u64).max().unwrap_or(written);
        let upto = horizon.min(available);
        while written < upto {
            let [a, b] = channels.each_mut().map(|c| c.pending.pop_front().unwrap_or(0));
            let mixed = (i32::from(a) + i32::from(b)).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            let out: &[i16] = match mode {
                RecordMode::Stereo => &[a, b],
                RecordMode::Mixed => &[mixed],
                RecordMode::Caller => &[a],
                RecordMode::Callee => &[b],
            };
            for &s in out {
                writer.write_sample(s).map_err(io::Error::other)?;
            }
            written += 1;
        }
        if last_header.elapsed() >= Duration::from_secs(1) {
            writer.flush().map_err(io::Error::other)?;
            last_header = Instant::now();
        }
    }
    writer.finalize().map_err(io::Error::other)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio::analysis::{dominant_frequency, goertzel_power};
    use audio::tone::{ToneGenerator, ToneSpec};

    fn rtp(pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn both_sides_land_in_their_channel() {
        let dir = std::env::temp_dir().join(format!("sb-record-{}", std::process::id()));
        let path = dir.join("call.wav");
        let samples = record(&path, RecordMode::Stereo);
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
        assert!((dominant_frequency(&left[800..7000], 8000) - 1000.0).abs() < 5.0);
        assert!((dominant_frequency(&right[800..7000], 8000) - 2000.0).abs() < 5.0);
        // One leg, or both mixed, in one channel.
        let caller = record(&path, RecordMode::Caller);
        assert!((dominant_frequency(&caller[800..7000], 8000) - 1000.0).abs() < 5.0);
        let callee = record(&path, RecordMode::Callee);
        assert!((dominant_frequency(&callee[800..7000], 8000) - 2000.0).abs() < 5.0);
        let mixed = record(&path, RecordMode::Mixed);
        let f: Vec<f32> = mixed[800..7000].iter().map(|&s| f32::from(s)).collect();
        let (p1, p2) = (goertzel_power(&f, 1000.0, 8000), goertzel_power(&f, 2000.0, 8000));
        assert!(p1 > 0.5 * p2 && p2 > 0.5 * p1, "both tones in the mix: {p1} {p2}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Records one second of a 1 kHz caller (A-law) and a 2 kHz callee (G.722) in `mode`; the
    /// samples read back (8 kHz; interleaved when stereo).
    fn record(path: &Path, mode: RecordMode) -> Vec<i16> {
        let start = Instant::now();
        let (mut tap, recording) = super::start(path, start, mode).unwrap();
        let tone = |freq: f64, rate: u32| {
            let mut s = vec![0i16; rate as usize];
            let spec = ToneSpec { components: vec![(freq, -10.0)], cadence_ms: vec![], repeat: true };
            ToneGenerator::new(&spec, rate).fill(&mut s);
            s
        };
        let (a, b) = (tone(1000.0, 8000), tone(2000.0, 16000));
        let mut encoder = audio::g722::G722Encoder::new();
        let mut payload = Vec::new();
        for i in 0..50 {
            let at = start + Duration::from_millis(20 * (i as u64 + 1));
            Law::Alaw.encode(&a[i * 160..(i + 1) * 160], &mut payload);
            tap.on_rtp(Side::A, &rtp(8, &payload), at);
            payload.clear();
            encoder.encode(&b[i * 320..(i + 1) * 320], &mut payload);
            // Side B's frames arrive with 5 ms of jitter: they still continue each other.
            tap.on_rtp(Side::B, &rtp(9, &payload), at + Duration::from_millis(if i % 2 == 0 { 0 } else { 5 }));
            payload.clear();
        }
        tap.on_rtp(Side::A, &rtp(101, &[1, 0, 0, 160]), start);
        drop(tap);
        let frames = recording.wait().unwrap();
        assert!((7900..=8100).contains(&frames), "{frames} frames for 1 s");
        let mut reader = hound::WavReader::open(path).unwrap();
        let channels = if mode == RecordMode::Stereo { 2 } else { 1 };
        assert_eq!((reader.spec().channels, reader.spec().sample_rate), (channels, 8000));
        reader.samples::<i16>().map(Result::unwrap).collect()
    }
}
