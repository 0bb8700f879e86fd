//! Transcoding in the relay, for one direction of a call. Two paths:
//!
//! - **In place** ([`Transcoder::convert`]), for the codecs whose RTP streams have the same clock
//!   (8000) and the same byte rate (8000 bytes per second): G.711 µ-law, G.711 A-law and G.722. A
//!   packet keeps its sequence number, timestamp, SSRC and size; only its payload type and payload
//!   change, so RTCP passes through untouched. G.722 ↔ G.711 goes through 16 kHz ↔ 8 kHz
//!   resampling; G.711 µ-law ↔ A-law through a 256-entry table.
//! - **General** ([`Transcoder::convert_into`]), when the in-place path cannot work: Opus (RFC 7587,
//!   48 kHz RTP clock), G.729 (feature `g729`), or a different packetisation time on the two legs.
//!   Each packet is decoded to linear audio at a working rate (8 kHz when either side is
//!   narrowband, 16 kHz for G.722 ↔ Opus, 48 kHz for Opus ↔ Opus); the samples queue in a FIFO cut
//!   into frames of the receiver's packetisation time, each encoded into a new RTP packet with the
//!   receiver's payload type, the sender's SSRC, and sequence numbers and timestamps of its own (in
//!   the receiver's clock). Timestamp gaps of the sender (DTX, VAD, comfort noise) keep their length
//!   in the receiver's clock and the first packet after one has the marker bit. Lost packets (a
//!   sequence gap of at most [`MAX_CONCEALED_PACKETS`]) are concealed: Opus with the in-band FEC of
//!   the packet after the loss when it carries some, else Opus PLC; G.729 with its decoder's
//!   erasure concealment; G.711 and G.722 by repeating the last pitch period, fading to silence over
//!   60 ms. Larger jumps start a new talkspurt; late and duplicate packets are dropped. RFC 4733
//!   telephone-events pass with their payload type remapped and their timestamp and duration
//!   scaled to the receiver's clock, in the same sequence number space as the audio. Comfort noise
//!   (payload type 13) is dropped: the gap it covers is kept as a timestamp gap. RTCP of a
//!   direction on this path is not rewritten yet (its counts and timestamps are the sender's).
//!
//! Sans-IO: the worker hands each packet of a transcoded direction to the transcoder. Nothing is
//! allocated per packet in steady state: buffers are reserved in [`Transcoder::new`] and the
//! caller reuses its [`Outbox`].

use audio::g711::{Law, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use audio::g722::{G722Decoder, G722Encoder};
use audio::resample::{Downsampler, Upsampler};
use audiopus::coder::{Decoder as OpusDecoder, Encoder as OpusEncoder};
use audiopus::packet::Packet as OpusPacket;
use audiopus::{Application, Bandwidth, Bitrate, Channels, MutSignals, SampleRate, Signal};

use crate::rtp::payload_range;

/// Packetisation time when SDP gives none (ms).
pub const DEFAULT_PTIME_MS: u16 = 20;

/// The largest sequence gap concealed: more packets lost at once start a new talkspurt instead.
pub const MAX_CONCEALED_PACKETS: u16 = 5;

/// How far back a packet may arrive and still count as late (dropped) rather than as the sender
/// starting over (RFC 3550 A.1 uses the same figure).
const MAX_MISORDER: u16 = 100;

/// The longest Opus packet (ms), and so the decoding buffer.
const OPUS_MAX_MS: usize = 120;

/// Room for one encoded Opus packet (60 ms at the highest bit rate, 510 kbit/s, is 3825 bytes).
const OPUS_MAX_BYTES: usize = 4000;

/// A codec the relay can transcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 at 64 kbit/s.
    G722,
    /// Opus (RFC 7587): `opus/48000/2` in SDP; Switchboard sends and decodes mono.
    Opus,
    /// G.729 Annex A (without Annex B silence compression when sending), through the system
    /// libbcg729. GPL: only with the `g729` feature.
    #[cfg(feature = "g729")]
    G729,
}

impl Codec {
    /// From an `a=rtpmap` encoding name and clock rate (case-insensitive).
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Codec> {
        match (name.to_ascii_uppercase().as_str(), clock_rate) {
            ("PCMU", 8000) => Some(Codec::Pcmu),
            ("PCMA", 8000) => Some(Codec::Pcma),
            ("G722", 8000) => Some(Codec::G722),
            ("OPUS", 48000) => Some(Codec::Opus),
            #[cfg(feature = "g729")]
            ("G729", 8000) => Some(Codec::G729),
            _ => None,
        }
    }

    /// Its static RTP payload type (RFC 3551), `None` for Opus, which has only dynamic ones.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
            #[cfg(feature = "g729")]
            Codec::G729 => Some(18),
        }
    }

    /// `a=rtpmap` encoding name and clock rate.
    pub fn rtpmap(self) -> (&'static str, u32) {
        (
            match self {
                Codec::Pcmu => "PCMU",
                Codec::Pcma => "PCMA",
                Codec::G722 => "G722",
                Codec::Opus => "opus",
                #[cfg(feature = "g729")]
                Codec::G729 => "G729",
            },
            self.clock_rate(),
        )
    }

    /// The channel count of `a=rtpmap` (its encoding parameters), where there must be one: 2 for
    /// Opus (RFC 7587 §7), whatever is actually sent.
    pub fn rtpmap_channels(self) -> Option<u8> {
        (self == Codec::Opus).then_some(2)
    }

    /// The RTP clock rate: 8000 for G.711, G.729 and G.722 (whose clock runs at half its sampling
    /// rate, RFC 3551 §4.5.2), 48000 for Opus.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48000,
            _ => 8000,
        }
    }

    /// Whether packets convert in place to and from the other codecs for which this holds.
    fn in_place(self) -> bool {
        matches!(self, Codec::Pcmu | Codec::Pcma | Codec::G722)
    }

    /// The sampling rate of what its decoder gives.
    fn decoded_rate(self) -> u32 {
        match self {
            Codec::G722 => 16000,
            Codec::Opus => 48000,
            _ => 8000,
        }
    }
}

/// What the receiver of an Opus stream asked for in its `a=fmtp` (RFC 7587 §6.1), and how hard
/// the encoder works.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpusParams {
    /// `useinbandfec=1`: the receiver uses in-band FEC, so the encoder adds it (and expects some
    /// loss).
    pub fec: bool,
    /// `usedtx=1`: the encoder may stop sending during silence.
    pub dtx: bool,
    /// `maxplaybackrate` (Hz): the encoder's audio bandwidth stays within what this rate renders.
    pub max_playback_rate: u32,
    /// `maxaveragebitrate` (bit/s); `None` for the default of the working rate: 16 kbit/s
    /// narrowband, 24 kbit/s wideband, 32 kbit/s fullband.
    pub bitrate: Option<u32>,
    /// Encoder complexity, 0–10: a relay setting, not from SDP. The default, 5, costs about half
    /// of 10 for a quality difference hard to hear at voice bit rates.
    pub complexity: u8,
}

impl Default for OpusParams {
    /// RFC 7587's defaults: no FEC, no DTX, up to 48 kHz, default bit rate; complexity 5.
    fn default() -> Self {
        OpusParams { fec: false, dtx: false, max_playback_rate: 48000, bitrate: None, complexity: 5 }
    }
}

/// Reads the parameters of an Opus `a=fmtp` value: `useinbandfec=1; usedtx=1; maxplaybackrate=16000;
/// maxaveragebitrate=20000`, with or without the payload type before it. Unknown parameters and
/// unreadable values are ignored (the defaults stay), rates and bit rates are clamped to what Opus
/// supports.
pub fn parse_opus_fmtp(fmtp: &str) -> OpusParams {
    let mut params = OpusParams::default();
    let mut text = fmtp.trim();
    if let Some((first, rest)) = text.split_once(char::is_whitespace)
        && first.bytes().all(|b| b.is_ascii_digit())
    {
        text = rest;
    }
    for item in text.split(';') {
        let Some((key, value)) = item.split_once('=') else { continue };
        let (key, value) = (key.trim(), value.trim());
        let number = value.parse::<u32>().ok();
        if key.eq_ignore_ascii_case("useinbandfec") {
            params.fec = value == "1";
        } else if key.eq_ignore_ascii_case("usedtx") {
            params.dtx = value == "1";
        } else if key.eq_ignore_ascii_case("maxplaybackrate")
            && let Some(rate) = number
        {
            params.max_playback_rate = rate.clamp(8000, 48000);
        } else if key.eq_ignore_ascii_case("maxaveragebitrate")
            && let Some(bitrate) = number
        {
            params.bitrate = Some(bitrate.clamp(6000, 510_000));
        }
    }
    params
}

/// One direction of a transcoded call: what arrives, and what to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectionPlan {
    /// Codec and payload type the sender uses.
    pub from: (Codec, u8),
    /// Codec and payload type the receiver expects.
    pub to: (Codec, u8),
    /// Telephone-event payload types (sender's, receiver's), remapped as they pass. Each runs at
    /// its side's audio clock (48000 beside Opus).
    pub telephone_event: Option<(u8, u8)>,
    /// The sender's packetisation time (ms): 10, 20, 30, 40 or 60.
    pub from_ptime_ms: u16,
    /// The packetisation time the receiver asked for (ms): 10, 20, 30, 40 or 60 (Opus has no 30 ms
    /// frame: 30 is sent as 20).
    pub to_ptime_ms: u16,
    /// The receiver's Opus parameters, when it receives Opus.
    pub opus: OpusParams,
}

impl DirectionPlan {
    /// From `from` to `to`, without telephone-events, at 20 ms both sides, default Opus parameters.
    pub fn new(from: (Codec, u8), to: (Codec, u8)) -> Self {
        DirectionPlan {
            from,
            to,
            telephone_event: None,
            from_ptime_ms: DEFAULT_PTIME_MS,
            to_ptime_ms: DEFAULT_PTIME_MS,
            opus: OpusParams::default(),
        }
    }

    /// With these telephone-event payload types (sender's, receiver's).
    pub fn with_telephone_event(mut self, telephone_event: Option<(u8, u8)>) -> Self {
        self.telephone_event = telephone_event;
        self
    }

    /// With these packetisation times (ms), the sender's and the receiver's.
    pub fn with_ptime(mut self, from_ms: u16, to_ms: u16) -> Self {
        self.from_ptime_ms = from_ms;
        self.to_ptime_ms = to_ms;
        self
    }

    /// With the receiver's Opus parameters.
    pub fn with_opus(mut self, opus: OpusParams) -> Self {
        self.opus = opus;
        self
    }
}

/// Why a packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a well-formed RTP packet, or a payload its codec cannot read.
    Malformed,
    /// A payload type the plan does not carry (the receiver would not understand it).
    UnknownPayloadType,
    /// [`Transcoder::convert`] on a plan that needs the general path (Opus, G.729).
    NotInPlace,
    /// The codec library could not be set up for this plan (out of memory): nothing passes.
    CodecUnavailable,
}

/// The packets that one received packet becomes, in one reusable buffer: clear it before each
/// [`Transcoder::convert_into`]; once it has held the largest batch it allocates no more.
#[derive(Clone, Debug)]
pub struct Outbox {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox { bytes: Vec::with_capacity(4096), ends: Vec::with_capacity(16) }
    }
}

impl Outbox {
    /// An empty outbox with room for a few packets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the packets, keeping the room.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// How many packets it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Packet `i` (oldest first).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    /// The packets, in the order to send them.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ends.iter().scan(0, |start, &end| {
            let packet = &self.bytes[*start..end];
            *start = end;
            Some(packet)
        })
    }

    /// Appends an RTP packet without CSRCs, extension or padding.
    fn push_rtp(&mut self, header: Header, payload: &[u8]) {
        self.bytes.push(0x80);
        self.bytes.push((u8::from(header.marker) << 7) | header.payload_type);
        self.bytes.extend_from_slice(&header.seq.to_be_bytes());
        self.bytes.extend_from_slice(&header.timestamp.to_be_bytes());
        self.bytes.extend_from_slice(&header.ssrc.to_be_bytes());
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }

    /// Appends a copy of `packet`, returning it for changes in place.
    fn push_copy(&mut self, packet: &[u8]) -> &mut [u8] {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packet);
        self.ends.push(self.bytes.len());
        &mut self.bytes[start..]
    }

    /// Removes the last packet.
    fn pop(&mut self) {
        self.ends.pop();
        self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
    }
}

/// The fields of an RTP header that the general path writes.
#[derive(Clone, Copy, Debug)]
struct Header {
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
}

/// Converts the packets of one direction.
#[derive(Debug)]
pub struct Transcoder {
    plan: DirectionPlan,
    /// Both codecs convert in place (whatever the packetisation times).
    codecs_in_place: bool,
    /// [`Transcoder::convert`] does all the plan asks (and the packetisation times are equal).
    in_place: bool,
    table: Option<[u8; 256]>,
    g722_decoder: Option<Box<G722Decoder>>,
    g722_encoder: Option<Box<G722Encoder>>,
    down: Downsampler,
    up: Upsampler,
    narrow: Vec<i16>,
    wide: Vec<i16>,
    bytes: Vec<u8>,
    /// The general path's state, when the plan needs it (`None` there if a codec library could
    /// not be set up).
    general: Option<Box<General>>,
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
        let codecs_in_place = from.in_place() && to.in_place();
        let in_place = codecs_in_place && plan.from_ptime_ms == plan.to_ptime_ms;
        let general = if in_place { None } else { General::new(&plan).map(Box::new) };
        Transcoder {
            plan,
            codecs_in_place,
            in_place,
            table,
            g722_decoder: (codecs_in_place && from == Codec::G722 && to != Codec::G722)
                .then(|| Box::new(G722Decoder::new())),
            g722_encoder: (codecs_in_place && to == Codec::G722 && from != Codec::G722)
                .then(|| Box::new(G722Encoder::new())),
            down: Downsampler::new(),
            up: Upsampler::new(),
            narrow: Vec::with_capacity(480),
            wide: Vec::with_capacity(960),
            bytes: Vec::with_capacity(480),
            general,
        }
    }

    /// The plan.
    pub fn plan(&self) -> DirectionPlan {
        self.plan
    }

    /// Whether [`Transcoder::convert`] does all the plan asks: both codecs among G.711 and G.722,
    /// and the same packetisation time both sides. Otherwise use [`Transcoder::convert_into`].
    pub fn in_place(&self) -> bool {
        self.in_place
    }

    /// Converts one RTP packet in place (same length). G.711 and G.722 only: for them it also
    /// works when the packetisation times differ, keeping the sender's (see
    /// [`Transcoder::in_place`]); Opus and G.729 are refused with [`Refused::NotInPlace`].
    pub fn convert(&mut self, packet: &mut [u8]) -> Result<(), Refused> {
        if !self.codecs_in_place {
            return Err(Refused::NotInPlace);
        }
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

    /// Converts one received RTP packet into the packets to send for it (none, one or several),
    /// appended to `out`. On an in-place plan this is [`Transcoder::convert`] on a copy; otherwise
    /// the general path of the module documentation. Late and duplicate packets, comfort noise
    /// and DTX frames give none and are not refused.
    pub fn convert_into(&mut self, packet: &[u8], out: &mut Outbox) -> Result<(), Refused> {
        if self.in_place {
            let copy = out.push_copy(packet);
            let result = self.convert(copy);
            if result.is_err() {
                out.pop();
            }
            return result;
        }
        match &mut self.general {
            Some(general) => general.convert(packet, out),
            None => Err(Refused::CodecUnavailable),
        }
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
            _ => return, // not reached: `convert` takes only in-place codecs
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
            _ => return,
        }
        // Same byte rate both sides: the lengths match (a truncated G.722 byte pair aside).
        let n = self.bytes.len().min(payload.len());
        payload[..n].copy_from_slice(&self.bytes[..n]);
    }
}

/// A packetisation time the general path can send: 10–60 ms in steps of 10, else the default.
fn sane_ptime(ms: u16) -> u16 {
    if ms.is_multiple_of(10) && (10..=60).contains(&ms) { ms } else { DEFAULT_PTIME_MS }
}

/// What the receiver's decoder renders at most, as a working rate.
fn render_rate(codec: Codec, opus: &OpusParams) -> u32 {
    match codec {
        Codec::Opus if opus.max_playback_rate > 16000 => 48000,
        Codec::Opus if opus.max_playback_rate > 8000 => 16000,
        Codec::Opus => 8000,
        other => other.decoded_rate(),
    }
}

fn opus_rate(rate: u32) -> SampleRate {
    match rate {
        8000 => SampleRate::Hz8000,
        16000 => SampleRate::Hz16000,
        _ => SampleRate::Hz48000,
    }
}

/// The general path: decoding, FIFO, encoding, and the timing of both streams.
#[derive(Debug)]
struct General {
    /// Working rate (samples per second).
    rate: u32,
    from_clock: u32,
    to_clock: u32,
    /// Working samples per sent packet.
    frame: usize,
    /// Receiver clock ticks per sent packet.
    frame_ticks: u32,
    from_pt: u8,
    to_pt: u8,
    events: Option<(u8, u8)>,
    decode: Decode,
    encode: Encode,
    plc: Plc,
    /// Decoded audio not sent yet (less than a frame between packets).
    fifo: Vec<i16>,
    /// One packet's decoded audio.
    decoded: Vec<i16>,
    // The sender's stream.
    /// The last sequence number accepted; `None` before the first packet.
    last_seq: Option<u16>,
    ssrc: u32,
    /// The sender's timestamp of the sample after the last one decoded.
    in_next: u32,
    /// Sender ticks of the last audio packet (the length of a lost one).
    last_ticks: u32,
    // The stream sent.
    seq: u16,
    /// The receiver's timestamp of the first sample in the FIFO.
    head: u32,
    /// The next packet sent starts a talkspurt.
    marker: bool,
    /// The last telephone-event's timestamps (sender's, receiver's): every packet of one event
    /// keeps the same.
    event_ts: Option<(u32, u32)>,
}

/// What became of a packet's sequence number.
enum Arrival {
    /// The first packet.
    First,
    /// After the previous one, with `lost` packets missing in between.
    Next { lost: u16 },
    /// Older than the last one or a duplicate: dropped.
    Late,
    /// Too far from the last one, or another SSRC: the stream starts over.
    Jump,
}

impl General {
    fn new(plan: &DirectionPlan) -> Option<General> {
        let (from, to) = (plan.from.0, plan.to.0);
        let rate = from.decoded_rate().min(render_rate(to, &plan.opus));
        let mut to_ms = sane_ptime(plan.to_ptime_ms);
        if to == Codec::Opus && !matches!(to_ms, 10 | 20 | 40 | 60) {
            to_ms = DEFAULT_PTIME_MS;
        }
        let frame = (rate / 1000) as usize * usize::from(to_ms);
        let from_ms = u32::from(sane_ptime(plan.from_ptime_ms));
        let packet_max = (rate / 1000) as usize * OPUS_MAX_MS;
        Some(General {
            rate,
            from_clock: from.clock_rate(),
            to_clock: to.clock_rate(),
            frame,
            frame_ticks: to.clock_rate() / 1000 * u32::from(to_ms),
            from_pt: plan.from.1,
            to_pt: plan.to.1,
            events: plan.telephone_event,
            decode: Decode::new(from, rate)?,
            encode: Encode::new(to, rate, &plan.opus)?,
            plc: Plc::new(rate),
            // A packet, the longest concealment and a frame, with room to spare.
            fifo: Vec::with_capacity(packet_max * (usize::from(MAX_CONCEALED_PACKETS) + 2) + frame),
            decoded: Vec::with_capacity(packet_max),
            last_seq: None,
            ssrc: 0,
            in_next: 0,
            last_ticks: from.clock_rate() / 1000 * from_ms,
            seq: 0,
            head: 0,
            marker: true,
            event_ts: None,
        })
    }

    fn convert(&mut self, packet: &[u8], out: &mut Outbox) -> Result<(), Refused> {
        let range = payload_range(packet).ok_or(Refused::Malformed)?;
        let payload = &packet[range];
        let pt = packet[1] & 0x7F;
        let marker = packet[1] & 0x80 != 0;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let event = self.events.filter(|&(from, _)| from == pt);
        if event.is_some() {
            if payload.len() < 4 {
                return Err(Refused::Malformed);
            }
        } else if pt == self.from_pt {
            self.decode.check(payload)?;
        } else if pt != 13 {
            return Err(Refused::UnknownPayloadType);
        }
        match self.arrival(seq, ssrc) {
            Arrival::Late => return Ok(()),
            Arrival::First => self.start(seq, ts, ssrc),
            Arrival::Jump => self.jump(ts, ssrc, out),
            Arrival::Next { lost } => {
                if pt == self.from_pt {
                    self.catch_up(ts, lost, payload, out);
                }
            }
        }
        self.last_seq = Some(seq);
        if let Some((_, to)) = event {
            self.event(marker, to, ts, payload, out);
        } else if pt == self.from_pt {
            self.audio(ts, payload, out)?;
        }
        // Comfort noise: dropped; the gap it covers stays a gap of the timestamps.
        Ok(())
    }

    fn arrival(&self, seq: u16, ssrc: u32) -> Arrival {
        let Some(last) = self.last_seq else { return Arrival::First };
        if ssrc != self.ssrc {
            return Arrival::Jump;
        }
        match seq.wrapping_sub(last) {
            0 => Arrival::Late,
            d if d <= MAX_CONCEALED_PACKETS + 1 => Arrival::Next { lost: d - 1 },
            d if d >= u16::MAX - MAX_MISORDER => Arrival::Late,
            _ => Arrival::Jump,
        }
    }

    fn start(&mut self, seq: u16, ts: u32, ssrc: u32) {
        self.ssrc = ssrc;
        self.in_next = ts;
        self.seq = seq;
        self.head = ts;
        self.marker = true;
    }

    /// The stream starts over: what is queued goes out, and the new talkspurt keeps its distance
    /// from the last when the sender's clock moved forward by less than a minute (a long loss),
    /// else follows after one frame.
    fn jump(&mut self, ts: u32, ssrc: u32, out: &mut Outbox) {
        self.flush(out);
        let delta = ts.wrapping_sub(self.in_next) as i32;
        let ahead = ssrc == self.ssrc && delta > 0 && (delta as u32) < 60 * self.from_clock;
        let gap = if ahead { self.ticks_to_out(delta) } else { self.frame_ticks };
        self.head = self.head.wrapping_add(gap);
        self.marker = true;
        self.ssrc = ssrc;
        self.in_next = ts;
        self.event_ts = None;
    }

    /// Before an audio packet in sequence: conceals what was lost and keeps silence as a gap.
    fn catch_up(&mut self, ts: u32, lost: u16, payload: &[u8], out: &mut Outbox) {
        if self.decode.is_silence(payload) {
            return; // DTX or SID: silence, not loss; the next packet's timestamp tells its length
        }
        let delta = ts.wrapping_sub(self.in_next) as i32;
        if delta <= 0 {
            // Overlapping (or a sender whose clock went back): keep sending continuously.
            self.in_next = ts;
            return;
        }
        let delta = delta as u32;
        let longest = u32::from(MAX_CONCEALED_PACKETS) * self.from_clock / 1000 * OPUS_MAX_MS as u32;
        let lost_ticks =
            if lost > 0 { delta.min(u32::from(lost).saturating_mul(self.last_ticks)).min(longest) } else { 0 };
        if lost_ticks > 0 {
            let samples = self.ticks_to_working(lost_ticks);
            self.decode.conceal(samples, payload, &mut self.plc, &mut self.fifo);
            self.in_next = self.in_next.wrapping_add(lost_ticks);
            self.drain(out);
        }
        let silence = delta - lost_ticks;
        if silence > 0 {
            self.silence(self.ticks_to_working(silence), out);
            self.in_next = ts;
        }
    }

    fn audio(&mut self, ts: u32, payload: &[u8], out: &mut Outbox) -> Result<(), Refused> {
        if self.decode.is_silence(payload) {
            return Ok(());
        }
        self.decoded.clear();
        let ticks = self.decode.decode(payload, &mut self.decoded)?;
        if self.decode.uses_plc() {
            self.plc.finish(&mut self.decoded);
            self.plc.remember(&self.decoded);
        }
        self.fifo.extend_from_slice(&self.decoded);
        self.in_next = ts.wrapping_add(ticks);
        if ticks > 0 {
            self.last_ticks = ticks;
        }
        self.drain(out);
        Ok(())
    }

    /// A silence of `samples` (working rate) in the sender's stream: what is queued is completed
    /// with silence and sent, the rest of the silence becomes a timestamp gap. A silence shorter
    /// than what completes the frame is sent as such.
    fn silence(&mut self, mut samples: usize, out: &mut Outbox) {
        self.drain(out);
        self.plc.cancel(); // what follows the silence is not faded in from a concealment
        if !self.fifo.is_empty() {
            let pad = self.frame - self.fifo.len();
            if samples < pad {
                self.fifo.resize(self.fifo.len() + samples, 0);
                return;
            }
            self.fifo.resize(self.frame, 0);
            self.drain(out);
            samples -= pad;
        }
        if samples > 0 {
            self.head = self.head.wrapping_add(self.working_to_out(samples));
            self.marker = true;
        }
    }

    /// Sends what is queued, completed with silence.
    fn flush(&mut self, out: &mut Outbox) {
        if !self.fifo.is_empty() {
            self.fifo.resize(self.frame, 0);
            self.drain(out);
        }
    }

    /// Sends every whole frame queued.
    fn drain(&mut self, out: &mut Outbox) {
        let mut at = 0;
        while self.fifo.len() - at >= self.frame {
            let samples = &self.fifo[at..at + self.frame];
            match self.encode.encode(samples) {
                Some(payload) => {
                    let header = Header {
                        marker: self.marker,
                        payload_type: self.to_pt,
                        seq: self.seq,
                        timestamp: self.head,
                        ssrc: self.ssrc,
                    };
                    out.push_rtp(header, payload);
                    self.seq = self.seq.wrapping_add(1);
                    self.marker = false;
                }
                None => self.marker = true, // DTX: nothing sent for this frame
            }
            self.head = self.head.wrapping_add(self.frame_ticks);
            at += self.frame;
        }
        self.fifo.drain(..at);
    }

    /// A telephone-event: its timestamp (the event's start) placed on the receiver's clock where
    /// the audio would be, its duration scaled (saturating at the field's maximum).
    fn event(&mut self, marker: bool, to_pt: u8, ts: u32, payload: &[u8], out: &mut Outbox) {
        let timestamp = match self.event_ts {
            Some((from, to)) if from == ts => to,
            _ => {
                let end = self.head.wrapping_add(self.working_to_out(self.fifo.len()));
                let delta = i64::from(ts.wrapping_sub(self.in_next) as i32);
                let to = end.wrapping_add((delta * i64::from(self.to_clock) / i64::from(self.from_clock)) as u32);
                self.event_ts = Some((ts, to));
                to
            }
        };
        let duration = u64::from(u16::from_be_bytes([payload[2], payload[3]]));
        let scaled = (duration * u64::from(self.to_clock) / u64::from(self.from_clock)).min(0xFFFF) as u16;
        let [hi, lo] = scaled.to_be_bytes();
        let header = Header { marker, payload_type: to_pt, seq: self.seq, timestamp, ssrc: self.ssrc };
        out.push_rtp(header, &[payload[0], payload[1], hi, lo]);
        self.seq = self.seq.wrapping_add(1);
    }

    fn ticks_to_working(&self, ticks: u32) -> usize {
        (u64::from(ticks) * u64::from(self.rate) / u64::from(self.from_clock)) as usize
    }

    fn working_to_out(&self, samples: usize) -> u32 {
        (samples as u64 * u64::from(self.to_clock) / u64::from(self.rate)) as u32
    }

    fn ticks_to_out(&self, ticks: i32) -> u32 {
        (i64::from(ticks) * i64::from(self.to_clock) / i64::from(self.from_clock)) as u32
    }
}

/// The sender's decoder, giving audio at the working rate.
#[derive(Debug)]
enum Decode {
    G711(Law),
    G722 {
        decoder: Box<G722Decoder>,
        /// To 8 kHz, when that is the working rate.
        down: Option<Downsampler>,
        wide: Vec<i16>,
    },
    Opus {
        decoder: OpusDecoder,
        rate: u32,
        /// Decoded samples: room for the longest packet.
        pcm: Vec<i16>,
    },
    #[cfg(feature = "g729")]
    G729(g729::Decoder),
}

impl Decode {
    fn new(codec: Codec, rate: u32) -> Option<Decode> {
        Some(match codec {
            Codec::Pcmu => Decode::G711(Law::Ulaw),
            Codec::Pcma => Decode::G711(Law::Alaw),
            Codec::G722 => Decode::G722 {
                decoder: Box::new(G722Decoder::new()),
                down: (rate == 8000).then(Downsampler::new),
                wide: Vec::with_capacity(16 * OPUS_MAX_MS),
            },
            Codec::Opus => Decode::Opus {
                decoder: OpusDecoder::new(opus_rate(rate), Channels::Mono).ok()?,
                rate,
                pcm: vec![0; (rate / 1000) as usize * OPUS_MAX_MS],
            },
            #[cfg(feature = "g729")]
            Codec::G729 => Decode::G729(g729::Decoder::new()?),
        })
    }

    /// Refuses a payload it cannot read, before anything changes.
    fn check(&self, payload: &[u8]) -> Result<(), Refused> {
        match self {
            Decode::Opus { .. } if payload.len() > 2 => {
                let packet = OpusPacket::try_from(payload).map_err(|_| Refused::Malformed)?;
                let samples =
                    audiopus::packet::nb_samples(packet, SampleRate::Hz48000).map_err(|_| Refused::Malformed)?;
                if samples == 0 || samples > 48 * OPUS_MAX_MS {
                    return Err(Refused::Malformed);
                }
                Ok(())
            }
            #[cfg(feature = "g729")]
            Decode::G729(_) if !matches!(payload.len() % g729::BYTES, 0 | 2) => Err(Refused::Malformed),
            _ => Ok(()),
        }
    }

    /// A payload that means silence: an Opus DTX frame (at most 2 bytes), a lone G.729 SID.
    fn is_silence(&self, payload: &[u8]) -> bool {
        match self {
            Decode::Opus { .. } => payload.len() <= 2,
            #[cfg(feature = "g729")]
            Decode::G729(_) => payload.len() < g729::BYTES,
            _ => false,
        }
    }

    fn uses_plc(&self) -> bool {
        matches!(self, Decode::G711(_) | Decode::G722 { .. })
    }

    /// Appends the payload's audio to `out`, returning its length in sender ticks.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<u32, Refused> {
        match self {
            Decode::G711(law) => {
                law.decode(payload, out);
                Ok(payload.len() as u32)
            }
            Decode::G722 { decoder, down, wide } => {
                match down {
                    Some(down) => {
                        wide.clear();
                        decoder.decode(payload, wide);
                        down.process(wide, out);
                    }
                    None => decoder.decode(payload, out),
                }
                Ok(payload.len() as u32)
            }
            Decode::Opus { decoder, rate, pcm } => {
                let packet = OpusPacket::try_from(payload).map_err(|_| Refused::Malformed)?;
                let signals = MutSignals::try_from(&mut pcm[..]).map_err(|_| Refused::Malformed)?;
                let n = decoder.decode(Some(packet), signals, false).map_err(|_| Refused::Malformed)?;
                out.extend_from_slice(&pcm[..n]);
                Ok((n as u64 * 48000 / u64::from(*rate)) as u32)
            }
            #[cfg(feature = "g729")]
            Decode::G729(decoder) => {
                let mut frames = 0;
                for frame in payload.chunks_exact(g729::BYTES) {
                    decoder.decode(Some(frame), out);
                    frames += 1;
                }
                Ok(frames * g729::FRAME as u32)
            }
        }
    }

    /// Appends `samples` of audio standing for lost packets, before `next` (the payload that
    /// arrived after the loss).
    fn conceal(&mut self, samples: usize, next: &[u8], plc: &mut Plc, out: &mut Vec<i16>) {
        let start = out.len();
        match self {
            Decode::G711(_) | Decode::G722 { .. } => plc.conceal(samples, out),
            Decode::Opus { decoder, rate, pcm } => {
                // PLC, then FEC from `next` for its own length at the end of the loss (libopus
                // runs PLC over the rest itself); lengths in whole 2.5 ms steps.
                let step = (*rate / 400) as usize;
                let mut left = samples / step * step;
                let max = pcm.len() / step * step;
                while left > 0 {
                    let n = left.min(max);
                    let fec = n == left;
                    let Ok(signals) = MutSignals::try_from(&mut pcm[..n]) else { break };
                    let input = if fec { OpusPacket::try_from(next).ok() } else { None };
                    match decoder.decode(input, signals, fec) {
                        Ok(got) => out.extend_from_slice(&pcm[..got.min(n)]),
                        Err(_) => break,
                    }
                    left -= n;
                }
            }
            #[cfg(feature = "g729")]
            Decode::G729(decoder) => {
                for _ in 0..samples / g729::FRAME {
                    decoder.decode(None, out);
                }
            }
        }
        // Whatever could not be concealed (a partial step) is silence, so that time is kept.
        out.resize(start + samples, 0);
    }
}

/// The receiver's encoder, from audio at the working rate.
#[derive(Debug)]
enum Encode {
    G711 {
        law: Law,
        bytes: Vec<u8>,
    },
    G722 {
        encoder: Box<G722Encoder>,
        /// From 8 kHz, when that is the working rate.
        up: Option<Upsampler>,
        wide: Vec<i16>,
        bytes: Vec<u8>,
    },
    Opus {
        encoder: OpusEncoder,
        dtx: bool,
        bytes: Box<[u8; OPUS_MAX_BYTES]>,
    },
    #[cfg(feature = "g729")]
    G729 {
        encoder: g729::Encoder,
        bytes: Vec<u8>,
    },
}

impl Encode {
    fn new(codec: Codec, rate: u32, params: &OpusParams) -> Option<Encode> {
        Some(match codec {
            Codec::Pcmu => Encode::G711 { law: Law::Ulaw, bytes: Vec::with_capacity(480) },
            Codec::Pcma => Encode::G711 { law: Law::Alaw, bytes: Vec::with_capacity(480) },
            Codec::G722 => Encode::G722 {
                encoder: Box::new(G722Encoder::new()),
                up: (rate == 8000).then(Upsampler::new),
                wide: Vec::with_capacity(960),
                bytes: Vec::with_capacity(480),
            },
            Codec::Opus => Encode::Opus {
                encoder: opus_encoder(rate, params).ok()?,
                dtx: params.dtx,
                bytes: Box::new([0; OPUS_MAX_BYTES]),
            },
            #[cfg(feature = "g729")]
            Codec::G729 => Encode::G729 { encoder: g729::Encoder::new()?, bytes: Vec::with_capacity(60) },
        })
    }

    /// The payload of one frame, `None` when nothing is to be sent (Opus DTX).
    fn encode(&mut self, samples: &[i16]) -> Option<&[u8]> {
        match self {
            Encode::G711 { law, bytes } => {
                bytes.clear();
                law.encode(samples, bytes);
                Some(bytes)
            }
            Encode::G722 { encoder, up, wide, bytes } => {
                bytes.clear();
                match up {
                    Some(up) => {
                        wide.clear();
                        up.process(samples, wide);
                        encoder.encode(wide, bytes);
                    }
                    None => encoder.encode(samples, bytes),
                }
                Some(bytes)
            }
            Encode::Opus { encoder, dtx, bytes } => {
                let n = encoder.encode(samples, &mut bytes[..]).ok()?;
                // With DTX, libopus marks silence with frames of 1 or 2 bytes: not worth sending.
                if *dtx && n <= 2 { None } else { Some(&bytes[..n]) }
            }
            #[cfg(feature = "g729")]
            Encode::G729 { encoder, bytes } => {
                bytes.clear();
                for frame in samples.chunks_exact(g729::FRAME) {
                    encoder.encode(frame, bytes);
                }
                Some(bytes)
            }
        }
    }
}

/// A VoIP mono encoder at the working rate, with the receiver's parameters.
fn opus_encoder(rate: u32, params: &OpusParams) -> audiopus::Result<OpusEncoder> {
    let mut encoder = OpusEncoder::new(opus_rate(rate), Channels::Mono, Application::Voip)?;
    encoder.set_complexity(params.complexity.min(10))?;
    let bitrate = params.bitrate.unwrap_or(match rate {
        8000 => 16_000,
        16000 => 24_000,
        _ => 32_000,
    });
    encoder.set_bitrate(Bitrate::BitsPerSecond(bitrate.clamp(6000, 510_000) as i32))?;
    encoder.set_signal(Signal::Voice)?;
    encoder.set_max_bandwidth(match params.max_playback_rate {
        0..=8000 => Bandwidth::Narrowband,
        8001..=12000 => Bandwidth::Mediumband,
        12001..=16000 => Bandwidth::Wideband,
        16001..=24000 => Bandwidth::Superwideband,
        _ => Bandwidth::Fullband,
    })?;
    if params.fec {
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(10)?;
    }
    encoder.set_dtx(params.dtx)?;
    Ok(encoder)
}

/// Loss concealment for G.711 and G.722, at the working rate: the last pitch period repeated, at
/// full level for 10 ms, then fading to silence at 60 ms; the first 2.5 ms after the loss cross-fade
/// from the repetition into the audio received.
#[derive(Debug)]
struct Plc {
    /// Samples per millisecond.
    per_ms: usize,
    /// The last 30 ms received, oldest first.
    history: Vec<i16>,
    /// The period repeated; 0 outside a loss.
    period: usize,
    /// Where in the period the next sample is.
    at: usize,
    /// Samples concealed in this loss.
    elapsed: usize,
}

impl Plc {
    fn new(rate: u32) -> Self {
        let per_ms = (rate / 1000) as usize;
        Plc { per_ms, history: vec![0; 30 * per_ms], period: 0, at: 0, elapsed: 0 }
    }

    /// Keeps the end of audio received.
    fn remember(&mut self, samples: &[i16]) {
        let h = self.history.len();
        if samples.len() >= h {
            self.history.copy_from_slice(&samples[samples.len() - h..]);
        } else {
            self.history.copy_within(samples.len().., 0);
            self.history[h - samples.len()..].copy_from_slice(samples);
        }
    }

    /// The lag (2.5–15 ms) whose past best matches the last 5 ms (normalised cross-correlation).
    fn pitch(&self) -> usize {
        let (n, min, max) = (5 * self.per_ms, 5 * self.per_ms / 2, 15 * self.per_ms);
        let end = self.history.len();
        let target = &self.history[end - n..];
        let mut best = (min, f32::MIN);
        for lag in min..=max {
            let past = &self.history[end - n - lag..end - lag];
            let (mut xy, mut yy) = (0.0f32, 0.0f32);
            for (&x, &y) in target.iter().zip(past) {
                let (x, y) = (f32::from(x), f32::from(y));
                xy += x * y;
                yy += y * y;
            }
            let score = if yy > 0.0 { xy / yy.sqrt() } else { 0.0 };
            if score > best.1 {
                best = (lag, score);
            }
        }
        best.0
    }

    fn next_sample(&mut self) -> i16 {
        let end = self.history.len();
        let x = f32::from(self.history[end - self.period + self.at]);
        self.at = (self.at + 1) % self.period;
        let (full, silent) = (10 * self.per_ms, 60 * self.per_ms);
        let gain = if self.elapsed < full {
            1.0
        } else if self.elapsed >= silent {
            0.0
        } else {
            1.0 - (self.elapsed - full) as f32 / (silent - full) as f32
        };
        self.elapsed += 1;
        (x * gain) as i16
    }

    /// Appends `samples` of concealment.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        if self.period == 0 {
            self.period = self.pitch();
            self.at = 0;
            self.elapsed = 0;
        }
        out.extend((0..samples).map(|_| self.next_sample()));
    }

    /// Ends a loss without fading in.
    fn cancel(&mut self) {
        self.period = 0;
    }

    /// After a loss, fades `received` in from the concealment.
    fn finish(&mut self, received: &mut [i16]) {
        if self.period == 0 {
            return;
        }
        let width = (5 * self.per_ms / 2).min(received.len());
        for (k, sample) in received[..width].iter_mut().enumerate() {
            let a = k as f32 / width as f32;
            let concealed = f32::from(self.next_sample());
            *sample = (f32::from(*sample) * a + concealed * (1.0 - a)) as i16;
        }
        self.period = 0;
    }
}

/// G.729 Annex A through the system libbcg729 (GPL), only with the `g729` feature.
#[cfg(feature = "g729")]
#[allow(unsafe_code)]
mod g729 {
    use std::ptr::NonNull;

    /// Samples of one 10 ms frame (8 kHz).
    pub(super) const FRAME: usize = 80;
    /// Bytes of one encoded frame.
    pub(super) const BYTES: usize = 10;

    #[repr(C)]
    struct EncoderContext {
        _opaque: [u8; 0],
    }

    #[repr(C)]
    struct DecoderContext {
        _opaque: [u8; 0],
    }

    #[link(name = "bcg729")]
    unsafe extern "C" {
        fn initBcg729EncoderChannel(enable_vad: u8) -> *mut EncoderContext;
        fn closeBcg729EncoderChannel(context: *mut EncoderContext);
        fn bcg729Encoder(context: *mut EncoderContext, input: *const i16, bitstream: *mut u8, length: *mut u8);
        fn initBcg729DecoderChannel() -> *mut DecoderContext;
        fn closeBcg729DecoderChannel(context: *mut DecoderContext);
        fn bcg729Decoder(
            context: *mut DecoderContext,
            bitstream: *const u8,
            length: u8,
            frame_erasure: u8,
            sid_frame: u8,
            rfc3389_payload: u8,
            output: *mut i16,
        );
    }

    /// An encoder channel, VAD off (every frame 10 bytes).
    #[derive(Debug)]
    pub(super) struct Encoder(NonNull<EncoderContext>);

    // SAFETY: the context is heap memory owned by this value alone; bcg729 keeps no thread state.
    unsafe impl Send for Encoder {}

    impl Encoder {
        pub(super) fn new() -> Option<Self> {
            // SAFETY: no precondition; null when out of memory.
            NonNull::new(unsafe { initBcg729EncoderChannel(0) }).map(Encoder)
        }

        /// Encodes one frame of [`FRAME`] samples (a shorter one is not encoded).
        pub(super) fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
            if frame.len() < FRAME {
                return;
            }
            let mut bits = [0u8; BYTES];
            let mut length = 0u8;
            // SAFETY: the context is live; 80 samples are read from `frame`, at most 10 bytes
            // written to `bits` and one to `length`.
            unsafe { bcg729Encoder(self.0.as_ptr(), frame.as_ptr(), bits.as_mut_ptr(), &mut length) };
            out.extend_from_slice(&bits[..usize::from(length).min(BYTES)]);
        }
    }

    impl Drop for Encoder {
        fn drop(&mut self) {
            // SAFETY: created by initBcg729EncoderChannel, closed once.
            unsafe { closeBcg729EncoderChannel(self.0.as_ptr()) }
        }
    }

    /// A decoder channel.
    #[derive(Debug)]
    pub(super) struct Decoder(NonNull<DecoderContext>);

    // SAFETY: as for the encoder.
    unsafe impl Send for Decoder {}

    impl Decoder {
        pub(super) fn new() -> Option<Self> {
            // SAFETY: no precondition; null when out of memory.
            NonNull::new(unsafe { initBcg729DecoderChannel() }).map(Decoder)
        }

        /// Appends the [`FRAME`] samples of one 10-byte frame, or of a lost one (`None`).
        pub(super) fn decode(&mut self, frame: Option<&[u8]>, out: &mut Vec<i16>) {
            let mut bits = [0u8; BYTES];
            if let Some(frame) = frame {
                let n = frame.len().min(BYTES);
                bits[..n].copy_from_slice(&frame[..n]);
            }
            let mut samples = [0i16; FRAME];
            // SAFETY: the context is live; 10 bytes are read from `bits`, 80 samples written.
            unsafe {
                bcg729Decoder(
                    self.0.as_ptr(),
                    bits.as_ptr(),
                    BYTES as u8,
                    u8::from(frame.is_none()),
                    0,
                    0,
                    samples.as_mut_ptr(),
                )
            };
            out.extend_from_slice(&samples);
        }
    }

    impl Drop for Decoder {
        fn drop(&mut self) {
            // SAFETY: created by initBcg729DecoderChannel, closed once.
            unsafe { closeBcg729DecoderChannel(self.0.as_ptr()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio::analysis::{dominant_frequency, rms};
    use audio::testsignal::speech;
    use audio::tone::{ToneGenerator, ToneSpec, amplitude_for_dbm0};

    fn tone(freq: f64, rate: u32, ms: u32) -> Vec<i16> {
        let spec = ToneSpec { components: vec![(freq, -10.0)], cadence_ms: vec![], repeat: true };
        let mut samples = vec![0i16; (rate / 1000 * ms) as usize];
        ToneGenerator::new(&spec, rate).fill(&mut samples);
        samples
    }

    fn packet(pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
        rtp(pt, seq, u32::from(seq) * 160, payload)
    }

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[1, 2, 3, 4]);
        p.extend_from_slice(payload);
        p
    }

    fn seq_of(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[2], p[3]])
    }

    fn ts_of(p: &[u8]) -> u32 {
        u32::from_be_bytes([p[4], p[5], p[6], p[7]])
    }

    fn marker_of(p: &[u8]) -> bool {
        p[1] & 0x80 != 0
    }

    /// The sampling rate a phone of this codec speaks and hears at.
    fn native_rate(codec: Codec) -> u32 {
        match codec {
            Codec::G722 => 16000,
            Codec::Opus => 48000,
            _ => 8000,
        }
    }

    /// A test phone: audio into RTP packets of its codec, and back.
    struct Phone {
        codec: Codec,
        pt: u8,
        rate: u32,
        ptime: u32,
        seq: u16,
        ts: u32,
        g722: (G722Encoder, G722Decoder),
        opus: Option<(OpusEncoder, OpusDecoder)>,
        #[cfg(feature = "g729")]
        g729: Option<(g729::Encoder, g729::Decoder)>,
    }

    impl Phone {
        fn new(codec: Codec, pt: u8) -> Self {
            Self::with(codec, pt, native_rate(codec), 20, false)
        }

        /// At `rate` (Opus: 8000, 16000 or 48000), `ptime` ms, Opus with FEC or not.
        fn with(codec: Codec, pt: u8, rate: u32, ptime: u32, fec: bool) -> Self {
            let opus = (codec == Codec::Opus).then(|| {
                let mut encoder = OpusEncoder::new(opus_rate(rate), Channels::Mono, Application::Voip).unwrap();
                encoder.set_bitrate(Bitrate::BitsPerSecond(32000)).unwrap();
                if fec {
                    encoder.set_inband_fec(true).unwrap();
                    encoder.set_packet_loss_perc(20).unwrap();
                }
                (encoder, OpusDecoder::new(opus_rate(rate), Channels::Mono).unwrap())
            });
            Phone {
                codec,
                pt,
                rate,
                ptime,
                seq: 1000,
                ts: 50_000,
                g722: (G722Encoder::new(), G722Decoder::new()),
                opus,
                #[cfg(feature = "g729")]
                g729: (codec == Codec::G729).then(|| (g729::Encoder::new().unwrap(), g729::Decoder::new().unwrap())),
            }
        }

        fn payload(&mut self, chunk: &[i16]) -> Vec<u8> {
            let mut payload = Vec::new();
            match self.codec {
                Codec::Pcmu => Law::Ulaw.encode(chunk, &mut payload),
                Codec::Pcma => Law::Alaw.encode(chunk, &mut payload),
                Codec::G722 => self.g722.0.encode(chunk, &mut payload),
                Codec::Opus => {
                    let mut bytes = [0u8; 1500];
                    let n = self.opus.as_mut().unwrap().0.encode(chunk, &mut bytes).unwrap();
                    payload.extend_from_slice(&bytes[..n]);
                }
                #[cfg(feature = "g729")]
                Codec::G729 => {
                    for frame in chunk.chunks_exact(80) {
                        self.g729.as_mut().unwrap().0.encode(frame, &mut payload);
                    }
                }
            }
            payload
        }

        /// `samples` in packets of the phone's ptime (a partial last one left out).
        fn send(&mut self, samples: &[i16]) -> Vec<Vec<u8>> {
            let n = (self.rate / 1000 * self.ptime) as usize;
            let step = self.codec.clock_rate() / 1000 * self.ptime;
            let mut packets = Vec::new();
            for chunk in samples.chunks_exact(n) {
                let payload = self.payload(chunk);
                packets.push(rtp(self.pt, self.seq, self.ts, &payload));
                self.seq = self.seq.wrapping_add(1);
                self.ts = self.ts.wrapping_add(step);
            }
            packets
        }

        /// The audio of `packets` (all of this phone's payload type), in order.
        fn hear(&mut self, packets: &[Vec<u8>]) -> Vec<i16> {
            let mut out = Vec::new();
            for p in packets {
                assert_eq!(p[1] & 0x7F, self.pt, "payload type");
                let payload = &p[12..];
                let mut g711 = Vec::new();
                match self.codec {
                    Codec::Pcmu => Law::Ulaw.decode(payload, &mut g711),
                    Codec::Pcma => Law::Alaw.decode(payload, &mut g711),
                    Codec::G722 => self.g722.1.decode(payload, &mut out),
                    Codec::Opus => {
                        let mut pcm = vec![0i16; 5760];
                        let decoder = &mut self.opus.as_mut().unwrap().1;
                        let packet = OpusPacket::try_from(payload).unwrap();
                        let n =
                            decoder.decode(Some(packet), MutSignals::try_from(&mut pcm[..]).unwrap(), false).unwrap();
                        out.extend_from_slice(&pcm[..n]);
                    }
                    #[cfg(feature = "g729")]
                    Codec::G729 => {
                        for frame in payload.chunks_exact(10) {
                            self.g729.as_mut().unwrap().1.decode(Some(frame), &mut out);
                        }
                    }
                }
                out.extend(g711);
            }
            out
        }
    }

    /// Every packet through `convert_into`, what comes out in order.
    fn run(t: &mut Transcoder, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Outbox::new();
        let mut sent = Vec::new();
        for p in packets {
            out.clear();
            t.convert_into(p, &mut out).expect("converted");
            sent.extend(out.iter().map(<[u8]>::to_vec));
        }
        sent
    }

    /// Encodes `samples` as `from` in 20 ms packets, converts in place, decodes as `to`.
    fn round(from: (Codec, u8), to: (Codec, u8), samples: &[i16]) -> (Vec<i16>, Vec<u8>) {
        let mut t = Transcoder::new(DirectionPlan::new(from, to).with_telephone_event(Some((101, 96))));
        assert!(t.in_place());
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
                _ => unreachable!(),
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
                _ => unreachable!(),
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
        let mut t = Transcoder::new(
            DirectionPlan::new((Codec::Pcma, 8), (Codec::Pcmu, 0)).with_telephone_event(Some((101, 96))),
        );
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

    #[test]
    fn codec_names_clocks_and_payload_types() {
        assert_eq!(Codec::from_rtpmap("OPUS", 48000), Some(Codec::Opus));
        assert_eq!(Codec::from_rtpmap("opus", 8000), None);
        assert_eq!(Codec::Opus.rtpmap(), ("opus", 48000));
        assert_eq!(Codec::Opus.rtpmap_channels(), Some(2));
        assert_eq!(Codec::Pcmu.rtpmap_channels(), None);
        assert_eq!(Codec::Opus.static_payload_type(), None);
        assert_eq!(Codec::G722.static_payload_type(), Some(9));
        assert_eq!(Codec::G722.clock_rate(), 8000);
        assert_eq!(Codec::Opus.clock_rate(), 48000);
        #[cfg(feature = "g729")]
        {
            assert_eq!(Codec::from_rtpmap("g729", 8000), Some(Codec::G729));
            assert_eq!(Codec::G729.static_payload_type(), Some(18));
        }
        #[cfg(not(feature = "g729"))]
        assert_eq!(Codec::from_rtpmap("G729", 8000), None);
    }

    #[test]
    fn opus_fmtp_parameters() {
        let p =
            parse_opus_fmtp("111 minptime=10; useinbandfec=1;usedtx=1;maxplaybackrate=16000;maxaveragebitrate=20000");
        assert_eq!(
            p,
            OpusParams { fec: true, dtx: true, max_playback_rate: 16000, bitrate: Some(20000), complexity: 5 }
        );
        assert_eq!(parse_opus_fmtp(""), OpusParams::default());
        let p = parse_opus_fmtp("MaxPlaybackRate=96000;maxaveragebitrate=1000000;useinbandfec=0;stereo=1;junk");
        assert_eq!((p.max_playback_rate, p.bitrate, p.fec), (48000, Some(510_000), false));
        assert_eq!(parse_opus_fmtp("maxaveragebitrate=x").bitrate, None);
    }

    #[test]
    fn in_place_only_for_g711_and_g722_at_equal_ptime() {
        let plan = DirectionPlan::new((Codec::Pcmu, 0), (Codec::G722, 9));
        assert!(Transcoder::new(plan).in_place());
        assert!(!Transcoder::new(plan.with_ptime(20, 30)).in_place());
        let opus = DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111));
        let mut t = Transcoder::new(opus);
        assert!(!t.in_place());
        let mut p = packet(0, 1, &[0xFF; 160]);
        assert_eq!(t.convert(&mut p), Err(Refused::NotInPlace));
        // G.711 at different ptimes still converts in place, keeping the sender's packetisation.
        let mut t = Transcoder::new(DirectionPlan::new((Codec::Pcmu, 0), (Codec::Pcma, 8)).with_ptime(20, 30));
        let mut p = packet(0, 1, &[0xFF; 160]);
        t.convert(&mut p).expect("in place");
        assert_eq!((p[1], p[12]), (8, 0xD5));
    }

    #[test]
    fn every_pair_with_opus_carries_a_tone_through_convert_into() {
        let codecs = [(Codec::Pcmu, 0u8), (Codec::Pcma, 8), (Codec::G722, 9), (Codec::Opus, 111)];
        let expected = amplitude_for_dbm0(-10.0) / 2f64.sqrt();
        for from in codecs {
            for to in codecs {
                let mut phone_in = Phone::new(from.0, from.1);
                let mut phone_out = Phone::new(to.0, to.1);
                let mut t = Transcoder::new(DirectionPlan::new(from, to).with_telephone_event(Some((101, 96))));
                let sent = run(&mut t, &phone_in.send(&tone(1000.0, phone_in.rate, 600)));
                assert!((29..=30).contains(&sent.len()), "{from:?} → {to:?}: {} packets", sent.len());
                let out = phone_out.hear(&sent);
                let steady = &out[out.len() / 5..];
                let found = dominant_frequency(steady, phone_out.rate);
                assert!((found - 1000.0).abs() < 20.0, "{from:?} → {to:?}: {found} Hz");
                // ±15 % (about ±1.2 dB), as in place: G.711's segment quantisation and G.722's
                // ADPCM keep a tone's level within about 2 %, and so does Opus, which codes band
                // energies in steps of a fraction of a dB (within 3 % measured with libopus 1.3);
                // the margin is for other libopus versions.
                let level = rms(steady);
                assert!((level / expected - 1.0).abs() < 0.15, "{from:?} → {to:?}: level {level:.0} for {expected:.0}");
            }
        }
    }

    /// The delay (0 to `max` samples) at which `got` best matches `want`, and the SNR there (dB).
    fn aligned_snr(want: &[i16], got: &[i16], max: usize) -> (usize, f64) {
        let n = want.len().min(got.len()).saturating_sub(max);
        let dot = |d: usize| -> f64 { (0..n).map(|i| f64::from(want[i]) * f64::from(got[i + d])).sum() };
        let delay = (0..=max).max_by(|&a, &b| dot(a).total_cmp(&dot(b))).unwrap();
        let (mut signal, mut noise) = (0.0, 0.0);
        for i in 0..n {
            let (w, g) = (f64::from(want[i]), f64::from(got[i + delay]));
            signal += w * w;
            noise += (w - g) * (w - g);
        }
        (delay, 10.0 * (signal / noise).log10())
    }

    /// `samples` through libopus alone: VoIP mode, mono, `bitrate`, 20 ms frames.
    fn direct_opus(samples: &[i16], rate: u32, bitrate: i32) -> Vec<i16> {
        let mut encoder = OpusEncoder::new(opus_rate(rate), Channels::Mono, Application::Voip).unwrap();
        encoder.set_bitrate(Bitrate::BitsPerSecond(bitrate)).unwrap();
        let mut decoder = OpusDecoder::new(opus_rate(rate), Channels::Mono).unwrap();
        let (mut bytes, mut pcm, mut out) = ([0u8; 1500], vec![0i16; 5760], Vec::new());
        for chunk in samples.chunks_exact(rate as usize / 50) {
            let n = encoder.encode(chunk, &mut bytes).unwrap();
            let packet = OpusPacket::try_from(&bytes[..n]).unwrap();
            let m = decoder.decode(Some(packet), MutSignals::try_from(&mut pcm[..]).unwrap(), false).unwrap();
            out.extend_from_slice(&pcm[..m]);
        }
        out
    }

    #[test]
    fn opus_round_trip_keeps_speech() {
        // Narrowband (PCMU → Opus → PCMU, working rate 8 kHz) and wideband (G.722 → Opus → G.722,
        // 16 kHz) at the default bit rates. Opus codes perceptually (and VoIP mode high-passes), so
        // even libopus alone keeps only about 8 dB of waveform SNR on this signal: the round trip
        // must stay within 1.5 dB of that (the G.711 or G.722 coding on the way costs a little),
        // and above 5 dB; a wrong delay, rate or gain gives below 1 dB.
        for (codec, pt, bitrate) in [(Codec::Pcmu, 0u8, 16000), (Codec::G722, 9, 24000)] {
            let mut phone = Phone::new(codec, pt);
            let original = speech(phone.rate, 3.0, 7);
            let (_, reference) = aligned_snr(&original, &direct_opus(&original, phone.rate, bitrate), 400);
            let mut there = Transcoder::new(DirectionPlan::new((codec, pt), (Codec::Opus, 111)));
            let mut back = Transcoder::new(DirectionPlan::new((Codec::Opus, 111), (codec, pt)));
            let opus = run(&mut there, &phone.send(&original));
            let returned = run(&mut back, &opus);
            let heard = Phone::new(codec, pt).hear(&returned);
            let direct = Phone::new(codec, pt).hear(&Phone::new(codec, pt).send(&original));
            let (delay, snr) = aligned_snr(&direct, &heard, phone.rate as usize / 20);
            assert!(
                snr > 5.0 && snr > reference - 1.5,
                "{codec:?}: SNR {snr:.1} dB at delay {delay}, libopus alone {reference:.1}"
            );
        }
    }

    #[test]
    fn ptime_10_to_30_and_40_to_20() {
        for (from_ms, to_ms, packets_in, packets_out) in [(10u32, 30u32, 30usize, 10usize), (40, 20, 8, 16)] {
            let plan = DirectionPlan::new((Codec::Pcmu, 0), (Codec::Pcma, 8)).with_ptime(from_ms as u16, to_ms as u16);
            let mut t = Transcoder::new(plan);
            assert!(!t.in_place());
            let mut phone = Phone::with(Codec::Pcmu, 0, 8000, from_ms, false);
            let input = phone.send(&tone(1000.0, 8000, packets_in as u32 * from_ms));
            assert_eq!(input.len(), packets_in);
            let sent = run(&mut t, &input);
            assert_eq!(sent.len(), packets_out, "{from_ms} → {to_ms} ms");
            for (i, p) in sent.iter().enumerate() {
                assert_eq!(p.len(), 12 + 8 * to_ms as usize);
                assert_eq!(p[1] & 0x7F, 8);
                assert_eq!(marker_of(p), i == 0);
                assert_eq!(&p[8..12], &[1, 2, 3, 4], "sender's SSRC");
                if i > 0 {
                    assert_eq!(seq_of(p), seq_of(&sent[i - 1]).wrapping_add(1));
                    assert_eq!(ts_of(p).wrapping_sub(ts_of(&sent[i - 1])), 8 * to_ms);
                }
            }
            let heard = Phone::new(Codec::Pcma, 8).hear(&sent);
            assert!((dominant_frequency(&heard, 8000) - 1000.0).abs() < 20.0);
        }
    }

    #[test]
    fn opus_timestamps_scale_and_wrap() {
        // PCMU (8000) → Opus (48000): 960 per 20 ms, through the wrap of the sender's clock and
        // of the receiver's.
        let mut t = Transcoder::new(DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111)));
        let mut phone = Phone::new(Codec::Pcmu, 0);
        phone.ts = u32::MAX - 479;
        phone.seq = u16::MAX - 2;
        let sent = run(&mut t, &phone.send(&tone(1000.0, 8000, 400)));
        assert_eq!(sent.len(), 20);
        for pair in sent.windows(2) {
            assert_eq!(ts_of(&pair[1]).wrapping_sub(ts_of(&pair[0])), 960);
            assert_eq!(seq_of(&pair[1]), seq_of(&pair[0]).wrapping_add(1));
            assert!(!marker_of(&pair[1]));
        }
        assert!(ts_of(&sent[19]) < ts_of(&sent[0]), "the receiver's clock wrapped");
        // Opus (48000) → PCMU (8000): 160 per 20 ms, the sender's clock wrapping.
        let mut t = Transcoder::new(DirectionPlan::new((Codec::Opus, 111), (Codec::Pcmu, 0)));
        let mut phone = Phone::new(Codec::Opus, 111);
        phone.ts = u32::MAX - 2 * 960 + 1;
        let sent = run(&mut t, &phone.send(&tone(1000.0, 48000, 400)));
        assert_eq!(sent.len(), 20);
        for pair in sent.windows(2) {
            assert_eq!(ts_of(&pair[1]).wrapping_sub(ts_of(&pair[0])), 160);
            assert_eq!(pair[1].len(), 12 + 160);
        }
    }

    #[test]
    fn telephone_event_from_opus_to_pcmu_scaled_by_6() {
        let plan = DirectionPlan::new((Codec::Opus, 111), (Codec::Pcmu, 0)).with_telephone_event(Some((110, 101)));
        let mut t = Transcoder::new(plan);
        let mut phone = Phone::new(Codec::Opus, 111);
        phone.ts = u32::MAX - 959; // the event starts after the sender's clock wrapped
        let mut input = phone.send(&tone(1000.0, 48000, 100));
        let start = phone.ts;
        // Digit 5 for 60 ms, three end packets; audio stops meanwhile, then resumes.
        for (i, duration) in [960u16, 1920, 2880, 2880, 2880, 2880].into_iter().enumerate() {
            let end = if i >= 3 { 0x80 } else { 0 };
            let marker = if i == 0 { 0x80 } else { 0 };
            input.push(rtp(marker | 110, phone.seq, start, &[5, end | 10, (duration >> 8) as u8, duration as u8]));
            phone.seq = phone.seq.wrapping_add(1);
        }
        phone.ts = start.wrapping_add(2880);
        input.extend(phone.send(&tone(1000.0, 48000, 40)));
        let sent = run(&mut t, &input);
        assert_eq!(sent.len(), 5 + 6 + 2);
        let events = &sent[5..11];
        let first_audio_ts = ts_of(&sent[0]);
        for (i, (e, duration)) in events.iter().zip([160u16, 320, 480, 480, 480, 480]).enumerate() {
            assert_eq!(e[1] & 0x7F, 101);
            assert_eq!(marker_of(e), i == 0);
            assert_eq!(ts_of(e).wrapping_sub(first_audio_ts), 5 * 160, "event at the end of the audio");
            assert_eq!(u16::from_be_bytes([e[14], e[15]]), duration, "duration / 6");
            assert_eq!(&e[12..14], &[5, if i >= 3 { 0x8A } else { 0x0A }]);
        }
        // One sequence space; the audio after the event keeps its place in time.
        for pair in sent.windows(2) {
            assert_eq!(seq_of(&pair[1]), seq_of(&pair[0]).wrapping_add(1));
        }
        assert_eq!(ts_of(&sent[11]).wrapping_sub(first_audio_ts), 5 * 160 + 480);
        assert!(marker_of(&sent[11]), "a new talkspurt after the event");
    }

    #[test]
    fn lost_g711_packet_is_concealed_without_click() {
        // PCMU 20 ms → PCMU 10 ms (general path), a 440 Hz tone (not a whole number of samples
        // per period), packet 10 of 20 lost.
        let plan = DirectionPlan::new((Codec::Pcmu, 0), (Codec::Pcmu, 0)).with_ptime(20, 10);
        let mut t = Transcoder::new(plan);
        let mut phone = Phone::new(Codec::Pcmu, 0);
        let mut input = phone.send(&tone(440.0, 8000, 400));
        input.remove(10);
        let sent = run(&mut t, &input);
        assert_eq!(sent.len(), 40, "the lost 20 ms is sent, concealed");
        for pair in sent.windows(2) {
            assert_eq!(ts_of(&pair[1]).wrapping_sub(ts_of(&pair[0])), 80);
            assert!(!marker_of(&pair[1]));
        }
        let heard = Phone::new(Codec::Pcmu, 0).hear(&sent);
        // A 440 Hz sine of amplitude A moves at most 2·A·sin(π·440/8000) ≈ 0.35·A per sample;
        // a click would jump by up to 2·A.
        let amplitude = amplitude_for_dbm0(-10.0);
        let max_step = heard.windows(2).map(|w| (i32::from(w[1]) - i32::from(w[0])).abs()).max().unwrap();
        assert!(f64::from(max_step) < 0.45 * amplitude, "step {max_step} for amplitude {amplitude:.0}");
        // The gap is not silent: the first 10 ms at full level.
        let gap = &heard[1600..1680];
        assert!(rms(gap) > 0.8 * amplitude / 2f64.sqrt(), "gap level {}", rms(gap));
    }

    /// Speech from an Opus phone (16 kHz, 32 kbit/s, with or without FEC) through Opus → G.722,
    /// the loudest packet lost: the correlation of the gap's audio with what it is without loss.
    fn opus_gap_correlation(fec: bool) -> f64 {
        let mut phone = Phone::with(Codec::Opus, 111, 16000, 20, fec);
        let original = speech(16000, 2.0, 11);
        let input = phone.send(&original);
        let loudest = (5..input.len() - 5).max_by_key(|&i| rms(&original[i * 320..(i + 1) * 320]) as i64).unwrap();
        let plan = DirectionPlan::new((Codec::Opus, 111), (Codec::G722, 9));
        let clean = Phone::new(Codec::G722, 9).hear(&run(&mut Transcoder::new(plan), &input));
        let mut lossy_input = input.clone();
        lossy_input.remove(loudest);
        let lossy_sent = run(&mut Transcoder::new(plan), &lossy_input);
        assert_eq!(lossy_sent.len(), input.len());
        for pair in lossy_sent.windows(2) {
            assert_eq!(ts_of(&pair[1]).wrapping_sub(ts_of(&pair[0])), 160);
        }
        let lossy = Phone::new(Codec::G722, 9).hear(&lossy_sent);
        let (a, b) = (&clean[loudest * 320..(loudest + 1) * 320], &lossy[loudest * 320..(loudest + 1) * 320]);
        let dot = |x: &[i16], y: &[i16]| -> f64 { x.iter().zip(y).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum() };
        dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
    }

    #[test]
    fn lost_opus_packet_is_recovered_with_fec() {
        let with_fec = opus_gap_correlation(true);
        let plc = opus_gap_correlation(false);
        // Measured with libopus 1.3: 0.997 with FEC (its LBRR copy is nearly the frame), 0.49
        // with PLC alone (a continuation of the previous pitch).
        assert!(with_fec > 0.9, "FEC: correlation {with_fec:.2}");
        assert!(with_fec > plc + 0.2, "FEC {with_fec:.2} should beat PLC {plc:.2}");
    }

    #[test]
    fn silence_gaps_keep_their_length() {
        // PCMU with VAD → Opus: 1 s without packets, consecutive sequence numbers.
        let mut t = Transcoder::new(DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111)));
        let mut phone = Phone::new(Codec::Pcmu, 0);
        let mut input = phone.send(&tone(1000.0, 8000, 200));
        phone.ts = phone.ts.wrapping_add(8000);
        input.extend(phone.send(&tone(1000.0, 8000, 200)));
        let sent = run(&mut t, &input);
        assert_eq!(sent.len(), 20);
        assert_eq!(ts_of(&sent[10]).wrapping_sub(ts_of(&sent[9])), 960 + 48000);
        assert!(marker_of(&sent[10]) && !marker_of(&sent[9]));
        assert_eq!(seq_of(&sent[10]), seq_of(&sent[9]).wrapping_add(1));

        // Opus with DTX → PCMU: a 1-byte DTX frame, then 400 ms without packets.
        let mut t = Transcoder::new(DirectionPlan::new((Codec::Opus, 111), (Codec::Pcmu, 0)));
        let mut phone = Phone::new(Codec::Opus, 111);
        let mut input = phone.send(&tone(1000.0, 48000, 200));
        input.push(rtp(111, phone.seq, phone.ts, &[0x08]));
        phone.seq += 1;
        phone.ts = phone.ts.wrapping_add(960 * 21);
        input.extend(phone.send(&tone(1000.0, 48000, 200)));
        let sent = run(&mut t, &input);
        assert_eq!(sent.len(), 20, "nothing sent for the DTX frame, nothing concealed");
        assert_eq!(ts_of(&sent[10]).wrapping_sub(ts_of(&sent[9])), 160 * 22);
        assert!(marker_of(&sent[10]));

        // Comfort noise is dropped, its gap kept.
        let mut t = Transcoder::new(DirectionPlan::new((Codec::Pcma, 8), (Codec::Opus, 111)));
        let mut phone = Phone::new(Codec::Pcma, 8);
        let mut input = phone.send(&tone(1000.0, 8000, 100));
        input.push(rtp(13, phone.seq, phone.ts, &[40]));
        phone.seq += 1;
        phone.ts = phone.ts.wrapping_add(1600);
        input.extend(phone.send(&tone(1000.0, 8000, 100)));
        let sent = run(&mut t, &input);
        assert_eq!(sent.len(), 10);
        assert_eq!(ts_of(&sent[5]).wrapping_sub(ts_of(&sent[4])), 960 * 11);
    }

    #[test]
    fn late_duplicate_and_jumping_packets() {
        let plan = DirectionPlan::new((Codec::Pcmu, 0), (Codec::Pcma, 8)).with_ptime(20, 20);
        let mut t = Transcoder::new(DirectionPlan { to_ptime_ms: 10, ..plan });
        let mut phone = Phone::new(Codec::Pcmu, 0);
        let input = phone.send(&tone(1000.0, 8000, 200));
        let mut out = Outbox::new();
        let mut count = |t: &mut Transcoder, p: &[u8]| {
            out.clear();
            t.convert_into(p, &mut out).expect("accepted");
            out.len()
        };
        assert_eq!(count(&mut t, &input[0]), 2);
        assert_eq!(count(&mut t, &input[2]), 4, "one lost: concealed");
        assert_eq!(count(&mut t, &input[1]), 0, "late");
        assert_eq!(count(&mut t, &input[2]), 0, "duplicate");
        // 20 packets lost: no concealment, a new talkspurt 420 ms later.
        let mut far = input[3].clone();
        far[2..4].copy_from_slice(&(seq_of(&input[2]).wrapping_add(21)).to_be_bytes());
        far[4..8].copy_from_slice(&(ts_of(&input[2]).wrapping_add(21 * 160)).to_be_bytes());
        out.clear();
        t.convert_into(&far, &mut out).expect("jump");
        assert_eq!(out.len(), 2);
        let first = out.get(0).unwrap();
        assert!(marker_of(first));
        assert_eq!(out.iter().count(), 2);
        assert_eq!(out.get(2), None);
        // One lost, then 100 ms of silence: 20 ms concealed, a gap, the packet.
        let mut after = input[4].clone();
        let (seq, ts) = (seq_of(&far).wrapping_add(2), ts_of(&far).wrapping_add(2 * 160 + 800));
        after[2..4].copy_from_slice(&seq.to_be_bytes());
        after[4..8].copy_from_slice(&ts.to_be_bytes());
        out.clear();
        t.convert_into(&after, &mut out).expect("loss and silence");
        let sent: Vec<_> = out.iter().collect();
        assert_eq!(sent.len(), 4);
        assert_eq!(sent.iter().map(|p| marker_of(p)).collect::<Vec<_>>(), [false, false, true, false]);
        assert_eq!(ts_of(sent[2]).wrapping_sub(ts_of(sent[1])), 80 + 800);
    }

    #[test]
    fn malformed_packets_refused_on_the_general_path() {
        let plan = DirectionPlan::new((Codec::Opus, 111), (Codec::Pcmu, 0)).with_telephone_event(Some((110, 101)));
        let mut t = Transcoder::new(plan);
        let mut out = Outbox::new();
        let mut padded = rtp(111, 4, 960, &[0x08, 0, 200]);
        padded[0] |= 0x20;
        let bad: [&[u8]; 7] = [
            &[0x80, 111],
            &[0x40, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3],
            &padded,
            &rtp(110, 1, 0, &[5, 0, 1]),          // telephone-event under 4 bytes
            &rtp(111, 2, 0, &[0x03, 0x00, 0x00]), // code 3 with no frame
            &rtp(111, 3, 0, &[0x1B, 0x3F, 0, 0]), // 63 frames of 60 ms
            &rtp(111, 5, 0, &[0x1B, 0x00, 0x00]),
        ];
        for p in bad {
            assert_eq!(t.convert_into(p, &mut out), Err(Refused::Malformed), "{p:?}");
        }
        assert_eq!(t.convert_into(&rtp(0, 6, 0, &[0; 160]), &mut out), Err(Refused::UnknownPayloadType));
        assert!(out.is_empty());
    }

    #[cfg(feature = "g729")]
    #[test]
    fn g729_round_trip_carries_a_tone() {
        let expected = amplitude_for_dbm0(-10.0) / 2f64.sqrt();
        for (from, to) in [((Codec::Pcmu, 0u8), (Codec::G729, 18u8)), ((Codec::G729, 18), (Codec::Pcma, 8))] {
            let mut phone_in = Phone::new(from.0, from.1);
            let mut t = Transcoder::new(DirectionPlan::new(from, to));
            assert!(!t.in_place());
            let sent = run(&mut t, &phone_in.send(&tone(1000.0, 8000, 600)));
            assert_eq!(sent.len(), 30);
            let size = if to.0 == Codec::G729 { 20 } else { 160 };
            assert!(sent.iter().all(|p| p.len() == 12 + size));
            let out = Phone::new(to.0, to.1).hear(&sent);
            let steady = &out[out.len() / 5..];
            let found = dominant_frequency(steady, 8000);
            assert!((found - 1000.0).abs() < 20.0, "{from:?} → {to:?}: {found} Hz");
            // G.729 is a CELP coder: about ±2 dB on a steady tone.
            let level = rms(steady);
            assert!((level / expected - 1.0).abs() < 0.25, "{from:?} → {to:?}: level {level:.0}");
        }
        let mut t = Transcoder::new(DirectionPlan::new((Codec::G729, 18), (Codec::Pcmu, 0)));
        let mut out = Outbox::new();
        assert_eq!(t.convert_into(&rtp(18, 1, 0, &[0; 15]), &mut out), Err(Refused::Malformed));
    }
}
