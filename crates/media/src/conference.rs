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

/// What a member sent since the last tick, decoded to [`RATE`].
#[derive(Debug)]
pub(crate) struct MemberInput {
    queue: Vec<i16>,
    decoded: Vec<i16>,
    wide: Vec<i16>,
    g722: Option<(Box<G722Decoder>, Downsampler)>,
}

impl MemberInput {
    pub(crate) fn new() -> MemberInput {
        MemberInput { queue: Vec::with_capacity(MAX_QUEUED + FRAME), decoded: Vec::new(), wide: Vec::new(), g722: None }
    }

    /// An RTP packet from the member's phone: G.711 or G.722 audio is queued; anything else
    /// (telephone-events, comfort noise, codecs the mixer cannot decode) is ignored.
    pub(crate) fn on_rtp(&mut self, packet: &[u8]) {
        let Some(range) = payload_range(packet) else { return };
        let body = &packet[range];
        self.decoded.clear();
        match packet[1] & 0x7F {
            0 => Law::Ulaw.decode(body, &mut self.decoded),
            8 => Law::Alaw.decode(body, &mut self.decoded),
            9 => {
                let (decoder, down) =
                    self.g722.get_or_insert_with(|| (Box::new(G722Decoder::new()), Downsampler::new()));
                self.wide.clear();
                decoder.decode(body, &mut self.wide);
                down.process(&self.wide, &mut self.decoded);
            }
            _ => return,
        }
        self.queue.extend_from_slice(&self.decoded);
        if self.queue.len() > MAX_QUEUED {
            let excess = self.queue.len() - MAX_QUEUED;
            self.queue.drain(..excess);
        }
    }

    /// The next 20 ms (silence where nothing came).
    pub(crate) fn take_frame(&mut self, frame: &mut [i16; FRAME]) {
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
        self.members.push(Member { slot, session, side, id, packets });
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

    fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn input_is_decoded_queued_and_bounded() {
        let mut input = MemberInput::new();
        let mut frame = [1i16; FRAME];
        input.take_frame(&mut frame);
        assert_eq!(frame, [0; FRAME], "nothing came: silence");
        let mut payload = Vec::new();
        Law::Ulaw.encode(&[1000; FRAME], &mut payload);
        input.on_rtp(&packet(0, &payload));
        input.on_rtp(&packet(101, &[1, 2, 3, 4]));
        input.take_frame(&mut frame);
        assert!(frame.iter().all(|&s| (s - 1000).abs() < 40), "{:?}", &frame[..4]);
        for _ in 0..10 {
            input.on_rtp(&packet(0, &payload));
        }
        assert_eq!(input.queue.len(), MAX_QUEUED);
    }
}
