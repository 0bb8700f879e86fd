//! Transcoding in the relay, packet by packet and in place, for the codecs whose RTP streams
//! have the same clock (8000) and the same byte rate (8000 bytes per second): G.711 µ-law,
//! G.711 A-law and G.722. A packet keeps its sequence number, timestamp, SSRC and size; only its
//! payload type and payload change, so RTCP passes through untouched. G.722 ↔ G.711 goes
//! through 16 kHz ↔ 8 kHz resampling; G.711 µ-law ↔ A-law through a 256-entry table.
//!
//! Sans-IO: the worker hands each packet of a transcoded direction to [`Transcoder::convert`].

use audio::g711::{Law, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use audio::g722::{G722Decoder, G722Encoder};
use audio::resample::{Downsampler, Upsampler};

use crate::rtp::payload_range;

/// A codec the relay can transcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 at 64 kbit/s.
    G722,
}

impl Codec {
    /// From an `a=rtpmap` encoding name and clock rate (case-insensitive).
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Codec> {
        match (name.to_ascii_uppercase().as_str(), clock_rate) {
            ("PCMU", 8000) => Some(Codec::Pcmu),
            ("PCMA", 8000) => Some(Codec::Pcma),
            ("G722", 8000) => Some(Codec::G722),
            _ => None,
        }
    }

    /// Its static RTP payload type (RFC 3551).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
        }
    }

    /// `a=rtpmap` encoding name and clock rate.
    pub fn rtpmap(self) -> (&'static str, u32) {
        match self {
            Codec::Pcmu => ("PCMU", 8000),
            Codec::Pcma => ("PCMA", 8000),
            Codec::G722 => ("G722", 8000),
        }
    }
}

/// One direction of a transcoded call: what arrives, and what to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectionPlan {
    /// Codec and payload type the sender uses.
    pub from: (Codec, u8),
    /// Codec and payload type the receiver expects.
    pub to: (Codec, u8),
    /// Telephone-event payload types (sender's, receiver's), remapped as they pass.
    pub telephone_event: Option<(u8, u8)>,
}

/// Why a packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a well-formed RTP packet.
    Malformed,
    /// A payload type the plan does not carry (the receiver would not understand it).
    UnknownPayloadType,
}

/// Converts the packets of one direction.
#[derive(Debug)]
pub struct Transcoder {
    plan: DirectionPlan,
    table: Option<[u8; 256]>,
    g722_decoder: Option<Box<G722Decoder>>,
    g722_encoder: Option<Box<G722Encoder>>,
    down: Downsampler,
    up: Upsampler,
    narrow: Vec<i16>,
    wide: Vec<i16>,
    bytes: Vec<u8>,
}

impl Transcoder {
    /// A transcoder for `plan`.
    pub fn new(plan: DirectionPlan) -> Self {
        let (from, to) = (plan.from.0, plan.to.0);
        let table = match (from, to) {
            (Codec::Pcmu, Codec::Pcma) => Some(std::array::from_fn(|c| alaw_encode(ulaw_decode(c as u8)))),
            (Codec::Pcma, Codec::Pcmu) => Some(std::array::from_fn(|c| ulaw_encode(alaw_decode(c as u8)))),
            _ => None,
        };
        Transcoder {
            plan,
            table,
            g722_decoder: (from == Codec::G722 && to != Codec::G722).then(|| Box::new(G722Decoder::new())),
            g722_encoder: (to == Codec::G722 && from != Codec::G722).then(|| Box::new(G722Encoder::new())),
            down: Downsampler::new(),
            up: Upsampler::new(),
            narrow: Vec::with_capacity(480),
            wide: Vec::with_capacity(960),
            bytes: Vec::with_capacity(480),
        }
    }

    /// The plan.
    pub fn plan(&self) -> DirectionPlan {
        self.plan
    }

    /// Converts one RTP packet in place (same length).
    pub fn convert(&mut self, packet: &mut [u8]) -> Result<(), Refused> {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return Err(Refused::Malformed);
        }
        let pt = packet[1] & 0x7F;
        let marker = packet[1] & 0x80;
        if let Some((from, to)) = self.plan.telephone_event
            && pt == from
        {
            packet[1] = marker | to;
            return Ok(());
        }
        if pt == 13 {
            return Ok(()); // comfort noise (8 kHz) means the same on both sides
        }
        if pt != self.plan.from.1 {
            return Err(Refused::UnknownPayloadType);
        }
        let payload = payload_range(packet).ok_or(Refused::Malformed)?;
        packet[1] = marker | self.plan.to.1;
        self.convert_payload(&mut packet[payload]);
        Ok(())
    }

    fn convert_payload(&mut self, payload: &mut [u8]) {
        let (from, to) = (self.plan.from.0, self.plan.to.0);
        if from == to {
            return;
        }
        if let Some(table) = &self.table {
            payload.iter_mut().for_each(|b| *b = table[usize::from(*b)]);
            return;
        }
        // Through linear audio: to 8 kHz samples, or 16 kHz for G.722.
        self.narrow.clear();
        match from {
            Codec::Pcmu => Law::Ulaw.decode(payload, &mut self.narrow),
            Codec::Pcma => Law::Alaw.decode(payload, &mut self.narrow),
            Codec::G722 => {
                self.wide.clear();
                if let Some(decoder) = &mut self.g722_decoder {
                    decoder.decode(payload, &mut self.wide);
                }
                self.down.process(&self.wide, &mut self.narrow);
            }
        }
        self.bytes.clear();
        match to {
            Codec::Pcmu => Law::Ulaw.encode(&self.narrow, &mut self.bytes),
            Codec::Pcma => Law::Alaw.encode(&self.narrow, &mut self.bytes),
            Codec::G722 => {
                self.wide.clear();
                self.up.process(&self.narrow, &mut self.wide);
                if let Some(encoder) = &mut self.g722_encoder {
                    encoder.encode(&self.wide, &mut self.bytes);
                }
            }
        }
        // Same byte rate both sides: the lengths match (a truncated G.722 byte pair aside).
        let n = self.bytes.len().min(payload.len());
        payload[..n].copy_from_slice(&self.bytes[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio::analysis::dominant_frequency;
    use audio::tone::{ToneGenerator, ToneSpec};

    fn tone(freq: f64, rate: u32, ms: u32) -> Vec<i16> {
        let spec = ToneSpec { components: vec![(freq, -10.0)], cadence_ms: vec![], repeat: true };
        let mut samples = vec![0i16; (rate / 1000 * ms) as usize];
        ToneGenerator::new(&spec, rate).fill(&mut samples);
        samples
    }

    fn packet(pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&[1, 2, 3, 4]);
        p.extend_from_slice(payload);
        p
    }

    /// Encodes `samples` as `from` in 20 ms packets, converts, decodes as `to`.
    fn round(from: (Codec, u8), to: (Codec, u8), samples: &[i16]) -> (Vec<i16>, Vec<u8>) {
        let mut t = Transcoder::new(DirectionPlan { from, to, telephone_event: Some((101, 96)) });
        let mut g722_in = G722Encoder::new();
        let mut g722_out = G722Decoder::new();
        let rate_in = if from.0 == Codec::G722 { 16000 } else { 8000 };
        let mut out = Vec::new();
        let mut pts = Vec::new();
        for (seq, chunk) in samples.chunks((rate_in / 50) as usize).enumerate() {
            let mut payload = Vec::new();
            match from.0 {
                Codec::Pcmu => Law::Ulaw.encode(chunk, &mut payload),
                Codec::Pcma => Law::Alaw.encode(chunk, &mut payload),
                Codec::G722 => g722_in.encode(chunk, &mut payload),
            }
            let mut p = packet(from.1, seq as u16, &payload);
            let before = p.clone();
            t.convert(&mut p).expect("converted");
            assert_eq!(p.len(), before.len());
            assert_eq!(&p[2..12], &before[2..12], "sequence, timestamp and SSRC kept");
            pts.push(p[1] & 0x7F);
            let mut decoded = Vec::new();
            match to.0 {
                Codec::Pcmu => Law::Ulaw.decode(&p[12..], &mut decoded),
                Codec::Pcma => Law::Alaw.decode(&p[12..], &mut decoded),
                Codec::G722 => g722_out.decode(&p[12..], &mut decoded),
            }
            out.extend(decoded);
        }
        (out, pts)
    }

    #[test]
    fn every_pair_carries_a_tone() {
        let codecs = [(Codec::Pcmu, 0u8), (Codec::Pcma, 8), (Codec::G722, 9)];
        for from in codecs {
            for to in codecs {
                let rate_in = if from.0 == Codec::G722 { 16000 } else { 8000 };
                let rate_out = if to.0 == Codec::G722 { 16000 } else { 8000 };
                let (out, pts) = round(from, to, &tone(1000.0, rate_in, 500));
                assert!(pts.iter().all(|&pt| pt == to.1), "{from:?} → {to:?}: {pts:?}");
                let steady = &out[out.len() / 5..];
                let found = dominant_frequency(steady, rate_out);
                assert!((found - 1000.0).abs() < 20.0, "{from:?} → {to:?}: {found} Hz");
                let level = audio::analysis::rms(steady);
                let expected = audio::tone::amplitude_for_dbm0(-10.0) / 2f64.sqrt();
                assert!((level / expected - 1.0).abs() < 0.15, "{from:?} → {to:?}: level {level} for {expected}");
            }
        }
    }

    #[test]
    fn events_are_remapped_other_types_refused() {
        let mut t = Transcoder::new(DirectionPlan {
            from: (Codec::Pcma, 8),
            to: (Codec::Pcmu, 0),
            telephone_event: Some((101, 96)),
        });
        let mut event = packet(0x80 | 101, 1, &[5, 0x0A, 0, 160]);
        t.convert(&mut event).expect("event");
        assert_eq!(event[1], 0x80 | 96);
        assert_eq!(&event[12..], &[5, 0x0A, 0, 160]);
        let mut cn = packet(13, 2, &[40]);
        assert_eq!(t.convert(&mut cn), Ok(()));
        let mut other = packet(18, 3, &[0; 20]);
        assert_eq!(t.convert(&mut other), Err(Refused::UnknownPayloadType));
        for bad in
            [&[0x80u8, 8][..], &[0x40, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[0x90, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
        {
            assert_eq!(t.convert(&mut bad.to_vec()), Err(Refused::Malformed));
        }
        // Padding longer than the packet.
        let mut padded = packet(8, 4, &[0xD5, 0xD5, 200]);
        padded[0] |= 0x20;
        assert_eq!(t.convert(&mut padded), Err(Refused::Malformed));
        assert_eq!(Codec::from_rtpmap("pcma", 8000), Some(Codec::Pcma));
        assert_eq!(Codec::from_rtpmap("G722", 16000), None);
    }
}
