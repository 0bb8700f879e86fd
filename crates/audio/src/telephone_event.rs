//! RFC 4733 telephone-events: the 4-byte payload, a receiver turning a stream of event packets
//! into digits with their durations, and a sender planning the packets of one digit.
//!
//! All packets of one event carry the RTP timestamp of its start; the first has the marker bit;
//! the duration grows in each update; the end packet (E bit) is sent three times.

/// The 4-byte telephone-event payload (RFC 4733 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code: 0–9, `*` = 10, `#` = 11, A–D = 12–15 for DTMF.
    pub event: u8,
    /// The E bit: the event has ended.
    pub end: bool,
    /// Power level, in −dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

/// Why a payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    /// Fewer than 4 bytes.
    TooShort,
}

impl EventPayload {
    /// Reads a payload (extra bytes after the first 4 are ignored, as the RFC allows none).
    pub fn parse(bytes: &[u8]) -> Result<Self, EventError> {
        let [event, flags, hi, lo, ..] = *bytes else {
            return Err(EventError::TooShort);
        };
        Ok(EventPayload { event, end: flags & 0x80 != 0, volume: flags & 0x3F, duration: u16::from_be_bytes([hi, lo]) })
    }

    /// The payload's bytes.
    pub fn to_bytes(self) -> [u8; 4] {
        let [hi, lo] = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3F), hi, lo]
    }
}

/// The RFC 4733 event code of a DTMF digit.
pub fn event_for_digit(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// The DTMF digit of an RFC 4733 event code (codes above 15 are not DTMF).
pub fn digit_for_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// What a receiver learns from an event packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventNotice {
    /// A new event started (its first packet, or the first that arrived).
    Began {
        /// Event code.
        event: u8,
        /// Its RTP timestamp.
        timestamp: u32,
    },
    /// The event ended.
    Ended {
        /// Event code.
        event: u8,
        /// Its RTP timestamp.
        timestamp: u32,
        /// Duration, in RTP timestamp units (summed over segments of a long event).
        duration: u32,
        /// Whether the end was seen (false: ended by a later event or [`EventReceiver::finish`]
        /// after the end packets were lost).
        end_seen: bool,
    },
}

/// Turns the telephone-event packets of one RTP stream into events, ignoring the repeated end
/// packets and retransmitted updates.
#[derive(Clone, Debug, Default)]
pub struct EventReceiver {
    /// The event in progress: code, timestamp of its first segment, timestamp of the current
    /// segment, duration of finished segments, duration of the current one.
    current: Option<Current>,
    /// Timestamp of the last event that ended, to ignore its repeated end packets.
    last_ended: Option<u32>,
}

#[derive(Clone, Copy, Debug)]
struct Current {
    event: u8,
    first_timestamp: u32,
    segment_timestamp: u32,
    earlier_segments: u32,
    duration: u16,
}

impl EventReceiver {
    /// A receiver with nothing in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// One telephone-event packet: its RTP timestamp and payload.
    pub fn receive(&mut self, timestamp: u32, payload: EventPayload, notices: &mut Vec<EventNotice>) {
        if self.last_ended == Some(timestamp) {
            return; // a repeated end packet, or a late update of an event already ended
        }
        match self.current {
            Some(ref mut current) if current.segment_timestamp == timestamp => {
                current.duration = current.duration.max(payload.duration);
            }
            Some(current)
                if current.event == payload.event
                    && current.duration >= 0xFF00
                    && (u32::from(current.duration)..=0xFFFF)
                        .contains(&timestamp.wrapping_sub(current.segment_timestamp)) =>
            {
                // RFC 4733 §2.5.1.3: a long event continues in a new segment.
                self.current = Some(Current {
                    segment_timestamp: timestamp,
                    earlier_segments: current.earlier_segments + timestamp.wrapping_sub(current.segment_timestamp),
                    duration: payload.duration,
                    ..current
                });
            }
            Some(_) => {
                self.end_current(false, notices);
                self.start(timestamp, payload, notices);
            }
            None => self.start(timestamp, payload, notices),
        }
        if payload.end {
            self.end_current(true, notices);
        }
    }

    /// Ends the event in progress, if any (the stream stopped or went quiet for too long).
    pub fn finish(&mut self, notices: &mut Vec<EventNotice>) {
        self.end_current(false, notices);
    }

    /// Whether an event is in progress.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    fn start(&mut self, timestamp: u32, payload: EventPayload, notices: &mut Vec<EventNotice>) {
        self.current = Some(Current {
            event: payload.event,
            first_timestamp: timestamp,
            segment_timestamp: timestamp,
            earlier_segments: 0,
            duration: payload.duration,
        });
        notices.push(EventNotice::Began { event: payload.event, timestamp });
    }

    fn end_current(&mut self, end_seen: bool, notices: &mut Vec<EventNotice>) {
        if let Some(current) = self.current.take() {
            self.last_ended = Some(current.segment_timestamp);
            notices.push(EventNotice::Ended {
                event: current.event,
                timestamp: current.first_timestamp,
                duration: current.earlier_segments + u32::from(current.duration),
                end_seen,
            });
        }
    }
}

/// One packet of an event to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPacket {
    /// When to send it, in ms after the event starts.
    pub send_at_ms: u32,
    /// The RTP marker bit (first packet of the event).
    pub marker: bool,
    /// Timestamp offset from the event's start, in RTP units (non-zero only for the segments of
    /// an event longer than 65,535 units).
    pub timestamp_offset: u32,
    /// The payload.
    pub payload: EventPayload,
}

/// The packets of one event of `duration_ms`: an update every `interval_ms` (at least 10), then
/// the end packet three times, as RFC 4733 §2.5.1.4 recommends.
pub fn plan_event(event: u8, volume: u8, duration_ms: u32, clock_rate: u32, interval_ms: u32) -> Vec<EventPacket> {
    let interval_ms = interval_ms.max(10);
    let units = |ms: u32| (u64::from(ms) * u64::from(clock_rate) / 1000) as u32;
    let total = units(duration_ms.max(interval_ms));
    let mut packets = Vec::new();
    let mut elapsed_ms = interval_ms;
    let mut segment_start = 0u32;
    loop {
        let now = units(elapsed_ms.min(duration_ms.max(interval_ms)));
        if now - segment_start > 0xFFFF {
            // Close this segment at its maximum and start another (RFC 4733 §2.5.1.3).
            let payload = EventPayload { event, end: false, volume, duration: 0xFFFF };
            let send_at_ms = elapsed_ms.min(duration_ms.max(interval_ms));
            packets.push(EventPacket { send_at_ms, marker: false, timestamp_offset: segment_start, payload });
            segment_start += 0xFFFF;
        }
        let end = now >= total;
        let payload = EventPayload { event, end, volume, duration: (now - segment_start) as u16 };
        let packet = EventPacket {
            send_at_ms: elapsed_ms.min(duration_ms.max(interval_ms)),
            marker: packets.is_empty(),
            timestamp_offset: segment_start,
            payload,
        };
        if end {
            for _ in 0..3 {
                packets.push(EventPacket { marker: packets.is_empty(), ..packet });
            }
            return packets;
        }
        packets.push(packet);
        elapsed_ms += interval_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let payload = EventPayload { event: 11, end: true, volume: 10, duration: 1280 };
        assert_eq!(payload.to_bytes(), [11, 0x8A, 0x05, 0x00]);
        assert_eq!(EventPayload::parse(&payload.to_bytes()), Ok(payload));
        assert_eq!(EventPayload::parse(&[1, 2, 3]), Err(EventError::TooShort));
        for digit in "0123456789*#ABCD".chars() {
            assert_eq!(event_for_digit(digit).and_then(digit_for_event), Some(digit));
        }
        assert_eq!(event_for_digit('x'), None);
        assert_eq!(digit_for_event(16), None);
    }

    fn run(packets: &[(u32, EventPayload)]) -> Vec<EventNotice> {
        let mut receiver = EventReceiver::new();
        let mut notices = Vec::new();
        for &(ts, p) in packets {
            receiver.receive(ts, p, &mut notices);
        }
        receiver.finish(&mut notices);
        notices
    }

    #[test]
    fn a_planned_digit_is_received_once_with_its_duration() {
        let plan = plan_event(5, 10, 200, 8000, 20);
        assert!(plan[0].marker);
        assert_eq!(plan.iter().filter(|p| p.payload.end).count(), 3);
        assert_eq!(plan.last().map(|p| p.payload.duration), Some(1600));
        let packets: Vec<_> = plan.iter().map(|p| (1000 + p.timestamp_offset, p.payload)).collect();
        // Retransmitted updates and the repeated ends change nothing.
        let mut with_duplicates = packets.clone();
        with_duplicates.insert(3, packets[2]);
        for input in [packets, with_duplicates] {
            assert_eq!(
                run(&input),
                vec![
                    EventNotice::Began { event: 5, timestamp: 1000 },
                    EventNotice::Ended { event: 5, timestamp: 1000, duration: 1600, end_seen: true }
                ]
            );
        }
    }

    #[test]
    fn lost_end_packets_and_back_to_back_digits() {
        let p = |event, end, duration| EventPayload { event, end, volume: 10, duration };
        let notices =
            run(&[(100, p(1, false, 160)), (100, p(1, false, 320)), (900, p(2, false, 160)), (900, p(2, false, 480))]);
        assert_eq!(
            notices,
            vec![
                EventNotice::Began { event: 1, timestamp: 100 },
                EventNotice::Ended { event: 1, timestamp: 100, duration: 320, end_seen: false },
                EventNotice::Began { event: 2, timestamp: 900 },
                EventNotice::Ended { event: 2, timestamp: 900, duration: 480, end_seen: false },
            ]
        );
        // The same digit twice in a row is two events (two timestamps).
        let notices = run(&[(100, p(7, true, 800)), (100, p(7, true, 800)), (1800, p(7, true, 800))]);
        assert_eq!(notices.iter().filter(|n| matches!(n, EventNotice::Ended { .. })).count(), 2);
    }

    #[test]
    fn a_long_event_spans_segments() {
        // 10 s at 8 kHz = 80,000 units: more than one 16-bit duration.
        let plan = plan_event(0, 10, 10_000, 8000, 50);
        assert!(plan.iter().any(|p| p.timestamp_offset == 0xFFFF));
        let packets: Vec<_> = plan.iter().map(|p| (5000u32.wrapping_add(p.timestamp_offset), p.payload)).collect();
        let notices = run(&packets);
        assert_eq!(
            notices,
            vec![
                EventNotice::Began { event: 0, timestamp: 5000 },
                EventNotice::Ended { event: 0, timestamp: 5000, duration: 80_000, end_seen: true }
            ]
        );
    }

    #[test]
    fn wideband_clock() {
        let plan = plan_event(9, 10, 100, 16000, 20);
        assert_eq!(plan.last().map(|p| p.payload.duration), Some(1600));
        let plan = plan_event(9, 10, 100, 48000, 20);
        assert_eq!(plan.last().map(|p| p.payload.duration), Some(4800));
    }
}
