//! Audio the relay plays into a leg itself (music on hold, later prompts and tones): a source
//! of 8 kHz samples, cut into 20 ms RTP packets in the codec the leg uses, with the player's own
//! SSRC, sequence numbers and timestamps. Sans-IO: [`Player::frame`] builds the packet due at a
//! given time; the worker sends it.

use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audio::g711::Law;
use audio::g722::G722Encoder;
use audio::resample::Upsampler;
use audio::telephone_event::{EventPacket, event_for_digit, plan_event};
use audio::tone::{ToneGenerator, ToneSpec};

/// Samples per 20 ms frame at 8 kHz.
const FRAME: usize = 160;
/// Packet interval.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// What a player plays.
#[derive(Clone, Debug)]
pub enum Source {
    /// The built-in music on hold: a slow arpeggio of soft tones, looped.
    BuiltinMusic,
    /// 8 kHz samples, looped (from a file, converted by the caller).
    Samples(Arc<Vec<i16>>),
    /// 8 kHz samples played once (a prompt, or several joined); the player then finishes.
    Once(Arc<Vec<i16>>),
    /// A tone with its cadence ([`audio::tone::TonePlan::spec`] gives ringback, busy,
    /// congestion and call waiting for each plan); a non-repeating one finishes.
    Tone(ToneSpec),
    /// One DTMF digit as RFC 4733 telephone-events of this payload type and clock rate (an
    /// update every 20 ms, the end three times); then the player finishes.
    Event {
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// How long the digit is held.
        duration_ms: u32,
        /// The telephone-event payload type the leg declared.
        payload_type: u8,
        /// Its clock rate.
        clock_rate: u32,
    },
}

/// The codec a player encodes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayCodec {
    /// G.711 µ-law (payload type 0).
    Pcmu,
    /// G.711 A-law (8).
    Pcma,
    /// G.722 (9).
    G722,
}

impl PlayCodec {
    /// The codec of a static payload type, if the player can produce it.
    pub fn from_payload_type(pt: u8) -> Option<PlayCodec> {
        match pt {
            0 => Some(PlayCodec::Pcmu),
            8 => Some(PlayCodec::Pcma),
            9 => Some(PlayCodec::G722),
            _ => None,
        }
    }

    fn payload_type(self) -> u8 {
        match self {
            PlayCodec::Pcmu => 0,
            PlayCodec::Pcma => 8,
            PlayCodec::G722 => 9,
        }
    }
}

/// Notes of the built-in music (C5 E5 G5 E5), 400 ms each.
const NOTES: [f64; 4] = [523.25, 659.25, 783.99, 659.25];
const NOTE_SAMPLES: usize = 3200;

/// One leg's player.
#[derive(Debug)]
pub struct Player {
    source: Source,
    position: usize,
    phase: f64,
    codec: PlayCodec,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    next_due: Instant,
    first: bool,
    g722: Option<(Box<G722Encoder>, Upsampler)>,
    tone: Option<Box<ToneGenerator>>,
    /// The packets of an event source, the next to send, and when the event started.
    event: Option<(Vec<EventPacket>, usize, Instant)>,
    finished: bool,
    samples: [i16; FRAME],
    wide: Vec<i16>,
    payload: Vec<u8>,
}

impl Player {
    /// A player of `source` in `codec`, its first packet due at `now`.
    pub fn new(source: Source, codec: PlayCodec, ssrc: u32, now: Instant) -> Self {
        let tone = match &source {
            Source::Tone(spec) => Some(Box::new(ToneGenerator::new(spec, 8000))),
            _ => None,
        };
        let event = match &source {
            Source::Event { digit, duration_ms, clock_rate, .. } => {
                let code = event_for_digit(*digit).unwrap_or(0);
                Some((plan_event(code, 10, *duration_ms, *clock_rate, 20), 0, now))
            }
            _ => None,
        };
        Player {
            event,
            source,
            position: 0,
            phase: 0.0,
            codec,
            ssrc,
            seq: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(7),
            next_due: now,
            first: true,
            g722: (codec == PlayCodec::G722).then(|| (Box::new(G722Encoder::new()), Upsampler::new())),
            tone,
            finished: false,
            samples: [0; FRAME],
            wide: Vec::with_capacity(2 * FRAME),
            payload: Vec::with_capacity(2 * FRAME),
        }
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// The RTP timestamp of the next packet, and the SSRC (for sender reports).
    pub(crate) fn position(&self) -> (u32, u32) {
        (self.timestamp, self.ssrc)
    }

    /// Whether a source played once (samples or a non-repeating tone) has been sent whole.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Writes the packet due now into `out` (cleared first) if one is due; the schedule then
    /// moves on 20 ms. A player that fell far behind (the worker was busy) skips ahead rather
    /// than bursting.
    pub fn frame(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if now < self.next_due || self.finished {
            return false;
        }
        if let Source::Event { payload_type, .. } = self.source {
            return self.event_frame(now, payload_type, out);
        }
        self.fill();
        self.packetize(out);
        self.next_due += PACKET_INTERVAL;
        if now.saturating_duration_since(self.next_due) > 5 * PACKET_INTERVAL {
            self.next_due = now + PACKET_INTERVAL;
        }
        true
    }

    /// The next telephone-event packet due by `now`: all share the event's timestamp; the next
    /// is due at its planned time (the three end packets at once).
    fn event_frame(&mut self, now: Instant, payload_type: u8, out: &mut Vec<u8>) -> bool {
        let Some((plan, next, started)) = &mut self.event else { return false };
        let Some(packet) = plan.get(*next) else {
            self.finished = true;
            return false;
        };
        let due = *started + Duration::from_millis(u64::from(packet.send_at_ms));
        if now < due {
            self.next_due = due;
            return false;
        }
        *next += 1;
        out.clear();
        out.push(0x80);
        out.push(if packet.marker { 0x80 } else { 0 } | payload_type);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.wrapping_add(packet.timestamp_offset).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&packet.payload.to_bytes());
        self.seq = self.seq.wrapping_add(1);
        match plan.get(*next) {
            Some(following) => self.next_due = *started + Duration::from_millis(u64::from(following.send_at_ms)),
            None => self.finished = true,
        }
        true
    }

    /// Makes the next packet of `samples` (20 ms at 8 kHz, such as a conference's mix), with
    /// this player's header, whatever its source.
    pub(crate) fn packet_of(&mut self, samples: &[i16; FRAME], out: &mut Vec<u8>) {
        self.samples = *samples;
        self.packetize(out);
    }

    /// Encodes `self.samples` into the next packet.
    fn packetize(&mut self, out: &mut Vec<u8>) {
        self.payload.clear();
        match self.codec {
            PlayCodec::Pcmu => Law::Ulaw.encode(&self.samples, &mut self.payload),
            PlayCodec::Pcma => Law::Alaw.encode(&self.samples, &mut self.payload),
            PlayCodec::G722 => {
                if let Some((encoder, up)) = &mut self.g722 {
                    self.wide.clear();
                    up.process(&self.samples, &mut self.wide);
                    encoder.encode(&self.wide, &mut self.payload);
                }
            }
        }
        out.clear();
        out.push(0x80);
        out.push(if self.first { 0x80 } else { 0 } | self.codec.payload_type());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.payload);
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        // G.722's RTP clock is 8000 too (RFC 3551).
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
    }

    fn fill(&mut self) {
        match &self.source {
            Source::Samples(data) if !data.is_empty() => {
                for s in &mut self.samples {
                    *s = data[self.position % data.len()];
                    self.position = (self.position + 1) % data.len();
                }
            }
            Source::Samples(_) => self.samples = [0; FRAME],
            Source::Once(data) => {
                let from = self.position.min(data.len());
                let to = (from + FRAME).min(data.len());
                self.samples = [0; FRAME];
                self.samples[..to - from].copy_from_slice(&data[from..to]);
                self.position = to;
                self.finished = to == data.len();
            }
            // Events are built whole by `event_frame`.
            Source::Event { .. } => self.samples = [0; FRAME],
            Source::Tone(_) => {
                if let Some(tone) = &mut self.tone {
                    tone.fill(&mut self.samples);
                    self.finished = tone.is_finished();
                }
            }
            Source::BuiltinMusic => {
                let amplitude = audio::tone::amplitude_for_dbm0(-18.0);
                for s in &mut self.samples {
                    let note = (self.position / NOTE_SAMPLES) % NOTES.len();
                    let within = self.position % NOTE_SAMPLES;
                    // Soft attack and release, so the notes do not click.
                    let envelope = (within as f64 / 400.0).min(1.0) * ((NOTE_SAMPLES - within) as f64 / 800.0).min(1.0);
                    *s = (amplitude * envelope * self.phase.sin()) as i16;
                    self.phase = (self.phase + TAU * NOTES[note] / 8000.0) % TAU;
                    self.position = (self.position + 1) % (NOTE_SAMPLES * NOTES.len());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio::analysis::{dominant_frequency, rms};

    #[test]
    fn packets_every_20_ms_with_a_running_header() {
        let start = Instant::now();
        let mut player = Player::new(Source::BuiltinMusic, PlayCodec::Pcma, 0x1234_5678, start);
        let mut out = Vec::new();
        let mut decoded = Vec::new();
        let mut audio = Vec::new();
        let mut headers = Vec::new();
        for i in 0..100u32 {
            let now = start + PACKET_INTERVAL * i;
            assert!(player.frame(now, &mut out), "packet {i} due");
            assert!(!player.frame(now, &mut out), "only one per interval");
            headers.push(out[..12].to_vec());
            Law::Alaw.decode(&out[12..], &mut decoded);
            audio.extend_from_slice(&decoded);
        }
        let out_len = 12 + 160;
        assert_eq!(headers[0][1], 0x80 | 8, "marker on the first packet");
        assert_eq!(headers[1][1], 8);
        let seq = |h: &Vec<u8>| u16::from_be_bytes([h[2], h[3]]);
        let ts = |h: &Vec<u8>| u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        assert_eq!(seq(&headers[1]), seq(&headers[0]).wrapping_add(1));
        assert_eq!(ts(&headers[1]), ts(&headers[0]).wrapping_add(160));
        assert_eq!(&headers[5][8..12], &0x1234_5678u32.to_be_bytes());
        assert_eq!(decoded.len() + 12, out_len);
        // Not silent, and the first note is C5.
        assert!(rms(&audio) > 300.0);
        assert!((dominant_frequency(&audio[400..3000], 8000) - 523.25).abs() < 5.0);
    }

    #[test]
    fn g722_and_looped_samples() {
        let start = Instant::now();
        let data = Arc::new((0..800).map(|i| if i % 16 < 8 { 8000 } else { -8000 }).collect::<Vec<i16>>());
        let mut player = Player::new(Source::Samples(data), PlayCodec::G722, 7, start);
        let mut out = Vec::new();
        assert!(player.frame(start, &mut out));
        assert_eq!((out[1], out.len()), (0x80 | 9, 12 + 160));
        // Far behind: skips ahead instead of bursting.
        let late = start + Duration::from_secs(1);
        assert!(player.frame(late, &mut out));
        assert!(!player.frame(late, &mut out));
        assert!(player.next_due() > late);
    }
}

#[cfg(test)]
mod once_and_tones {
    use super::*;
    use audio::analysis::{dominant_frequency, rms};
    use audio::tone::{ProgressTone, TonePlan};

    fn play(source: Source, packets: u32) -> (Vec<i16>, Player) {
        let start = Instant::now();
        let mut player = Player::new(source, PlayCodec::Pcmu, 9, start);
        let (mut out, mut decoded, mut audio) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..packets {
            if player.frame(start + PACKET_INTERVAL * i, &mut out) {
                Law::Ulaw.decode(&out[12..], &mut decoded);
                audio.extend_from_slice(&decoded);
            }
        }
        (audio, player)
    }

    #[test]
    fn samples_played_once_then_finished() {
        let prompt: Vec<i16> = (0..1000).map(|i| if i % 8 < 4 { 4000 } else { -4000 }).collect();
        let (audio, player) = play(Source::Once(Arc::new(prompt)), 20);
        assert!(player.is_finished());
        // 1000 samples: seven packets, the last padded with silence; nothing after.
        assert_eq!(audio.len(), 7 * FRAME);
        assert!(rms(&audio[..1000]) > 3000.0 && rms(&audio[1000..]) == 0.0);
    }

    #[test]
    fn progress_tones_with_their_cadence() {
        // French ringback: 440 Hz, 1.5 s on, 3.5 s off.
        let spec = TonePlan::France.spec(ProgressTone::Ringback);
        let (audio, player) = play(Source::Tone(spec), 250);
        assert!(!player.is_finished(), "ringback repeats");
        let on = &audio[..12_000];
        assert!((dominant_frequency(on, 8000) - 440.0).abs() < 5.0);
        assert!(rms(&audio[12_800..27_200]) < 1.0, "silent between rings");
        // North American busy: 480 + 620 Hz, 0.5 s on, 0.5 s off.
        let (audio, _) = play(Source::Tone(TonePlan::NorthAmerica.spec(ProgressTone::Busy)), 100);
        assert!(rms(&audio[..4000]) > 500.0 && rms(&audio[4400..7600]) < 1.0);
    }
}

#[cfg(test)]
mod events {
    use super::*;
    use audio::telephone_event::{EventNotice, EventPayload, EventReceiver};

    #[test]
    fn a_digit_as_rfc4733_events() {
        let start = Instant::now();
        let source = Source::Event { digit: '7', duration_ms: 120, payload_type: 101, clock_rate: 8000 };
        let mut player = Player::new(source, PlayCodec::Pcmu, 5, start);
        let mut out = Vec::new();
        let mut packets = Vec::new();
        for ms in (0..400).step_by(5) {
            while player.frame(start + Duration::from_millis(ms), &mut out) {
                packets.push((ms, out.clone()));
            }
        }
        assert!(player.is_finished());
        // Updates every 20 ms, the last one (at 120 ms) the end, sent three times.
        let times: Vec<u64> = packets.iter().map(|p| p.0).collect();
        assert_eq!(times, vec![20, 40, 60, 80, 100, 120, 120, 120]);
        assert_eq!(packets[0].1[1], 0x80 | 101, "marker on the first");
        let ts: Vec<&[u8]> = packets.iter().map(|(_, p)| &p[4..8]).collect();
        assert!(ts.iter().all(|t| *t == ts[0]), "one timestamp for the whole event");
        let mut receiver = EventReceiver::new();
        let mut notices = Vec::new();
        for (_, p) in &packets {
            let timestamp = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            receiver.receive(timestamp, EventPayload::parse(&p[12..]).unwrap(), &mut notices);
        }
        let ended: Vec<_> = notices.iter().filter(|n| matches!(n, EventNotice::Ended { .. })).collect();
        assert_eq!(ended.len(), 1, "{notices:?}");
        if let EventNotice::Ended { event, duration, end_seen, .. } = *ended[0] {
            assert_eq!((event, duration, end_seen), (7, 960, true));
        }
    }
}
