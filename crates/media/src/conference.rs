//! Conferences in the relay: the legs of several sessions mixed by one worker. Each member
//! is one side of a session (the phone on that side); what it sends is decoded into a short
//! queue instead of being forwarded, and every 20 ms the worker mixes ([`audio::mixer`]) and
//! sends each member what it must hear, in its own codec, with its own SSRC (a [`Player`]
//! builds the packets). Members are added and removed on live calls, without a re-INVITE.
//!
//! A conference lives in one worker; its members' sessions must be allocated there
//! ([`Relay::allocate_for`](crate::Relay::allocate_for)).

use std::time::{Duration, Instant};

use audio::g711::Law;
use audio::g722::G722Decoder;
use audio::mixer::{Mixer, ParticipantId, Settings};
use audio::resample::Downsampler;

use crate::Side;
use crate::jitter::{Frame, JitterBuffer, JitterConfig};
use crate::player::{PlayCodec, Player};
use crate::rtp::payload_range;

/// The mixer's rate: narrowband, what every member's codec can carry.
pub(crate) const RATE: u32 = 8000;
/// Samples per 20 ms at [`RATE`].
pub(crate) const FRAME: usize = 160;
/// The most audio a member's queue holds (60 ms): more means it sends faster than the mixer
/// takes, and the oldest goes, bounding the delay.
const MAX_QUEUED: usize = 3 * FRAME;
/// Mixing period.
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// What a member sends, through a jitter buffer (reordering, adaptive depth) and decoded to
/// [`RATE`] one tick at a time, with a fading repeat of the last frame for what was lost.
#[derive(Debug)]
pub(crate) struct MemberInput {
    jitter: JitterBuffer,
    /// Decoded audio not mixed yet (a packet longer than 20 ms leaves some).
    queue: Vec<i16>,
    /// The last frame received, and how many were concealed since.
    last: [i16; FRAME],
    concealed: u32,
    scratch: Vec<u8>,
    decoded: Vec<i16>,
    wide: Vec<i16>,
    g722: Option<(Box<G722Decoder>, Downsampler)>,
}

impl MemberInput {
    pub(crate) fn new() -> MemberInput {
        MemberInput {
            jitter: JitterBuffer::new(JitterConfig::for_clock(RATE)),
            queue: Vec::with_capacity(MAX_QUEUED + FRAME),
            last: [0; FRAME],
            concealed: 0,
            scratch: Vec::with_capacity(256),
            decoded: Vec::new(),
            wide: Vec::new(),
            g722: None,
        }
    }

    /// An RTP packet from the member's phone, arrived at `now`: G.711 or G.722 audio goes into
    /// the jitter buffer; anything else (telephone-events, comfort noise, codecs the mixer
    /// cannot decode) is ignored.
    pub(crate) fn on_rtp(&mut self, packet: &[u8], now: Instant) {
        let pt = packet[1] & 0x7F;
        if !matches!(pt, 0 | 8 | 9) {
            return;
        }
        let Some(range) = payload_range(packet) else { return };
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        // The payload type travels with the payload.
        self.scratch.clear();
        self.scratch.push(pt);
        self.scratch.extend_from_slice(&packet[range]);
        self.jitter.push(timestamp, &self.scratch, now);
    }

    fn decode(&mut self, pt: u8, body: &[u8]) {
        self.decoded.clear();
        match pt {
            0 => Law::Ulaw.decode(body, &mut self.decoded),
            8 => Law::Alaw.decode(body, &mut self.decoded),
            _ => {
                let (decoder, down) =
                    self.g722.get_or_insert_with(|| (Box::new(G722Decoder::new()), Downsampler::new()));
                self.wide.clear();
                decoder.decode(body, &mut self.wide);
                down.process(&self.wide, &mut self.decoded);
            }
        }
        self.queue.extend_from_slice(&self.decoded);
        if self.queue.len() > MAX_QUEUED {
            let excess = self.queue.len() - MAX_QUEUED;
            self.queue.drain(..excess);
        }
    }

    /// The next 20 ms at `now`: from the jitter buffer, concealed when lost, silence before
    /// the member's audio starts.
    pub(crate) fn take_frame(&mut self, frame: &mut [i16; FRAME], now: Instant) {
        if self.queue.len() < FRAME {
            match self.jitter.pop(now) {
                Frame::Packet { payload, .. } if !payload.is_empty() => {
                    self.concealed = 0;
                    self.decode(payload[0], &payload[1..]);
                    if let Some(received) = self.queue.get(..FRAME) {
                        self.last.copy_from_slice(received);
                    }
                }
                Frame::Missing { .. } => {
                    // Repeat the last frame, 6 dB quieter each time; silence after 60 ms.
                    self.concealed += 1;
                    let shift = self.concealed.min(15);
                    let silent = self.concealed > 3;
                    self.queue.extend(self.last.iter().map(|&s| if silent { 0 } else { s >> shift }));
                }
                Frame::Packet { .. } | Frame::Waiting => {}
            }
        }
        let n = self.queue.len().min(FRAME);
        frame[..n].copy_from_slice(&self.queue[..n]);
        frame[n..].fill(0);
        self.queue.drain(..n);
    }
}

/// One member as the conference holds it.
#[derive(Debug)]
pub(crate) struct Member {
    /// The member's session (worker slot) and side.
    pub(crate) slot: usize,
    pub(crate) session: u64,
    pub(crate) side: Side,
    pub(crate) id: ParticipantId,
    /// Builds the packets the member hears.
    pub(crate) packets: Box<Player>,
    /// Packets and payload octets sent to it, for its sender reports.
    pub(crate) sent: (u32, u32),
    /// When its next RTCP report is due.
    pub(crate) next_report: Instant,
}

/// How often a member gets an RTCP sender report (RFC 3550's 5 s minimum interval; the first
/// comes after half of it, as §6.2 allows).
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The NTP timestamp (RFC 3550 §4) of the wall clock now.
pub(crate) fn ntp_now() -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    ((since.as_secs() + UNIX_TO_NTP) << 32) | ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000)
}

/// A conference in its worker.
#[derive(Debug)]
pub(crate) struct ConferenceState {
    pub(crate) mixer: Mixer,
    pub(crate) members: Vec<Member>,
    pub(crate) next_tick: Instant,
    pub(crate) frame: [i16; FRAME],
}

impl ConferenceState {
    pub(crate) fn new(now: Instant) -> ConferenceState {
        ConferenceState {
            // RATE is one the mixer takes.
            mixer: Mixer::new(RATE).unwrap_or_else(|_| unreachable!("8 kHz is a mixer rate")),
            members: Vec::new(),
            next_tick: now + TICK,
            frame: [0; FRAME],
        }
    }

    /// Adds a member in `codec`, with `settings`; false when the conference is full.
    pub(crate) fn add(
        &mut self,
        slot: usize,
        session: u64,
        side: Side,
        codec: PlayCodec,
        settings: Settings,
        now: Instant,
    ) -> bool {
        let Ok(id) = self.mixer.add(settings) else { return false };
        let ssrc = (session as u32).wrapping_mul(0x9E37_79B9) ^ 0x00C0_FFEE ^ crate::router::side_index(side) as u32;
        let packets = Box::new(Player::new(crate::player::Source::BuiltinMusic, codec, ssrc, now));
        self.members.push(Member {
            slot,
            session,
            side,
            id,
            packets,
            sent: (0, 0),
            next_report: now + REPORT_INTERVAL / 2,
        });
        true
    }

    /// Removes the member on `session`'s `side`.
    pub(crate) fn remove(&mut self, session: u64, side: Side) {
        if let Some(i) = self.members.iter().position(|m| m.session == session && m.side == side) {
            let m = self.members.swap_remove(i);
            let _ = self.mixer.remove(m.id);
        }
    }

    /// Changes a member's settings.
    pub(crate) fn set(&mut self, session: u64, side: Side, settings: Settings) {
        if let Some(m) = self.members.iter().find(|m| m.session == session && m.side == side) {
            let id = m.id;
            let _ = self.mixer.set_muted(id, settings.muted);
            let _ = self.mixer.set_role(id, settings.role);
            let _ = self.mixer.set_input_gain_db(id, settings.input_gain_db);
            let _ = self.mixer.set_output_gain_db(id, settings.output_gain_db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_reordered_and_losses_concealed() {
        let start = Instant::now();
        let mut input = MemberInput::new();
        let mut frame = [1i16; FRAME];
        input.take_frame(&mut frame, start);
        assert_eq!(frame, [0; FRAME], "nothing came: silence");
        let level = |seq: u16| 1000 + 100 * i16::try_from(seq).unwrap();
        let packet_of = |seq: u16| {
            let mut payload = Vec::new();
            Law::Ulaw.encode(&[level(seq); FRAME], &mut payload);
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&[1, 2, 3, 4]);
            p.extend_from_slice(&payload);
            p
        };
        // 0, 1, then 3 before 2, 4 lost, 5: each 20 ms; events ignored.
        let tick = Duration::from_millis(20);
        let arrivals: [(u16, u32); 5] = [(0, 0), (1, 1), (3, 2), (2, 3), (5, 5)];
        let mut heard = Vec::new();
        for t in 0..12u32 {
            let now = start + tick * t;
            for &(seq, at) in &arrivals {
                if at == t {
                    input.on_rtp(&packet_of(seq), now);
                }
            }
            input.on_rtp(&[0x80, 101, 0, 9, 0, 0, 0, 0, 1, 2, 3, 4, 1, 0, 0, 160], now);
            input.take_frame(&mut frame, now);
            heard.push(frame[80]);
        }
        // The frames received play in order (3 came before 2), each once; 4, lost, is
        // concealed by a quieter copy of 3 (the buffer may also conceal a frame when it grows
        // because 2 came late).
        let which = |s: i16| (0..6).find(|&k| (s - level(k)).abs() < 40);
        let real: Vec<u16> = heard.iter().filter_map(|&s| which(s)).collect();
        assert_eq!(real, vec![0, 1, 2, 3, 5], "{heard:?}");
        let at = |k: u16| heard.iter().position(|&s| which(s) == Some(k)).unwrap();
        let between = &heard[at(3) + 1..at(5)];
        assert!(!between.is_empty() && between.iter().all(|&s| s > 0 && s < level(3)), "{heard:?}");
    }
}
