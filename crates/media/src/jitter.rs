//! An adaptive jitter buffer for legs whose audio Switchboard decodes (transcoding, prompts,
//! recording, mixing); the pure relay path has none.
//!
//! Sans-IO: packets are [pushed](JitterBuffer::push) with their arrival time, and the consumer
//! (a decoder or mixer running on its own frame clock) [pops](JitterBuffer::pop) one frame per
//! tick with the current time. Packets are put back in timestamp order; one that arrives after
//! its turn is discarded and counted. The depth follows the measured delay variation: the buffer
//! targets the 95th percentile of how late packets have been recently, plus one frame, within
//! configured bounds; it grows at once by playing a concealment frame when packets start arriving
//! later, and shrinks by one frame at a time, dropping a frame, when it has held more than
//! needed for a while.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Jitter buffer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the payload.
    pub clock_rate: u32,
    /// Frame length the consumer pops, in timestamp units (160 for 20 ms at 8 kHz).
    pub frame: u32,
    /// Smallest target depth.
    pub min_delay: Duration,
    /// Largest target depth; packets later than this are discarded.
    pub max_delay: Duration,
    /// Most packets held (memory bound).
    pub capacity: usize,
}

impl JitterConfig {
    /// 20 ms frames at `clock_rate`, depth between 20 and 200 ms.
    pub fn for_clock(clock_rate: u32) -> Self {
        JitterConfig {
            clock_rate,
            frame: clock_rate / 50,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            capacity: 64,
        }
    }
}

/// What the consumer gets for one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The packet for this frame.
    Packet {
        /// RTP timestamp.
        timestamp: u32,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Nothing for this frame (lost or late): conceal it.
    Missing {
        /// RTP timestamp of the frame.
        timestamp: u32,
    },
    /// Playout has not started (no packet yet, or still filling).
    Waiting,
}

/// Counters of a jitter buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed.
    pub pushed: u64,
    /// Frames played from a packet.
    pub played: u64,
    /// Frames concealed because their packet was missing.
    pub concealed: u64,
    /// Concealment frames inserted to deepen the buffer.
    pub inserted: u64,
    /// Packets that arrived after their frame had been played, or duplicates.
    pub late: u64,
    /// Frames dropped to shrink the buffer, or packets dropped because it was full.
    pub dropped: u64,
}

/// The jitter buffer of one received stream.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    /// Packets waiting, by extended timestamp.
    packets: BTreeMap<u64, Vec<u8>>,
    /// Extended timestamp of the last packet pushed (to extend the 32-bit one).
    last_extended: Option<u64>,
    /// Extended timestamp of the next frame to play; None until playout starts.
    next_play: Option<u64>,
    /// When the first packet arrived, and its extended timestamp (the reference for lateness).
    reference: Option<(Instant, u64)>,
    /// Recent lateness samples (µs after the earliest-seen transit), newest last.
    lateness: VecDeque<u64>,
    /// Room to find the percentile in, reused for every packet.
    ranked: Vec<u64>,
    /// Smallest transit seen (arrival µs − timestamp µs), the "on time" reference.
    min_transit: Option<i64>,
    target: Duration,
    /// Frames played in a row while the buffer held more than the target.
    surplus_run: u32,
    /// A packet came since the last inserted frame: growing is allowed (so that a stream that
    /// stops drains instead of stretching its last frames forever).
    may_grow: bool,
    stats: JitterStats,
}

/// Lateness samples kept for the percentile (about 10 s at 50 packets/s).
const WINDOW: usize = 500;

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> Self {
        JitterBuffer {
            target: config.min_delay,
            config,
            packets: BTreeMap::new(),
            last_extended: None,
            next_play: None,
            reference: None,
            lateness: VecDeque::with_capacity(WINDOW),
            ranked: Vec::with_capacity(WINDOW),
            min_transit: None,
            surplus_run: 0,
            may_grow: false,
            stats: JitterStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The depth the buffer currently aims at.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// Audio held, from the next frame to play to the newest packet's end.
    pub fn buffered(&self) -> Duration {
        match (self.next_play, self.packets.keys().next_back()) {
            (Some(next), Some(&last)) if last >= next => {
                self.units_to_duration(last - next + u64::from(self.config.frame))
            }
            _ => Duration::ZERO,
        }
    }

    fn units_to_duration(&self, units: u64) -> Duration {
        Duration::from_micros(units * 1_000_000 / u64::from(self.config.clock_rate.max(1)))
    }

    fn extend(&mut self, timestamp: u32) -> u64 {
        let extended = match self.last_extended {
            None => u64::from(timestamp) + (1 << 32),
            Some(last) => {
                let delta = timestamp.wrapping_sub(last as u32) as i32;
                (last as i64 + i64::from(delta)).max(0) as u64
            }
        };
        if self.last_extended.is_none_or(|last| extended > last) {
            self.last_extended = Some(extended);
        }
        extended
    }

    /// A packet arrived at `now`.
    pub fn push(&mut self, timestamp: u32, payload: &[u8], now: Instant) {
        self.stats.pushed += 1;
        self.may_grow = true;
        let extended = self.extend(timestamp);
        let (ref_time, ref_ts) = *self.reference.get_or_insert((now, extended));
        // Transit relative to the first packet, in µs: how much later than its schedule it came.
        let arrival_us = now.saturating_duration_since(ref_time).as_micros() as i64;
        let media_us = (extended as i64 - ref_ts as i64) * 1_000_000 / i64::from(self.config.clock_rate.max(1));
        let transit = arrival_us - media_us;
        let min_transit = *self.min_transit.get_or_insert(transit);
        if transit < min_transit {
            // An earlier-than-ever packet: everything measured so far was later than thought.
            let shift = (min_transit - transit) as u64;
            self.lateness.iter_mut().for_each(|l| *l += shift);
            self.min_transit = Some(transit);
        }
        let lateness = (transit - self.min_transit.unwrap_or(transit)).max(0) as u64;
        if self.lateness.len() == WINDOW {
            self.lateness.pop_front();
        }
        self.lateness.push_back(lateness);
        self.retarget();

        if self.next_play.is_some_and(|next| extended < next) || self.packets.contains_key(&extended) {
            self.stats.late += 1;
            return;
        }
        if self.packets.len() >= self.config.capacity {
            self.stats.dropped += 1;
            return;
        }
        self.packets.insert(extended, payload.to_vec());
    }

    fn retarget(&mut self) {
        // The 95th percentile, found in linear time in a buffer kept between packets.
        self.ranked.clear();
        self.ranked.extend(self.lateness.iter().copied());
        let at = self.ranked.len() * 95 / 100;
        let p95 = if at < self.ranked.len() { *self.ranked.select_nth_unstable(at).1 } else { 0 };
        let frame = self.units_to_duration(u64::from(self.config.frame));
        self.target = (Duration::from_micros(p95) + frame).clamp(self.config.min_delay, self.config.max_delay);
    }

    /// The frame to play now (call once per frame period).
    pub fn pop(&mut self, now: Instant) -> Frame {
        let frame = u64::from(self.config.frame);
        let Some(next) = self.next_play else {
            // Start once the first packet has waited the target delay.
            let Some((&first, _)) = self.packets.iter().next() else { return Frame::Waiting };
            let Some((arrived, _)) = self.reference else { return Frame::Waiting };
            if now.saturating_duration_since(arrived) < self.target {
                return Frame::Waiting;
            }
            self.next_play = Some(first);
            return self.pop(now);
        };
        let frame_time = self.units_to_duration(frame);
        let buffered = self.buffered();
        // Grow: holding less than the target, play a concealment frame without advancing (at most
        // one per packet received).
        if self.may_grow && buffered + frame_time < self.target {
            self.may_grow = false;
            self.surplus_run = 0;
            self.stats.inserted += 1;
            return Frame::Missing { timestamp: next as u32 };
        }
        // Shrink: held more than target + one frame for 50 frames (1 s) in a row.
        self.surplus_run = if buffered > self.target + frame_time { self.surplus_run + 1 } else { 0 };
        if self.surplus_run >= 50 && self.packets.contains_key(&next) {
            self.packets.remove(&next);
            self.stats.dropped += 1;
            self.surplus_run = 0;
            self.next_play = Some(next + frame);
            return self.pop(now);
        }
        self.next_play = Some(next + frame);
        match self.packets.remove(&next) {
            Some(payload) => {
                self.stats.played += 1;
                Frame::Packet { timestamp: next as u32, payload }
            }
            None => {
                self.stats.concealed += 1;
                Frame::Missing { timestamp: next as u32 }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u32) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    /// Sends `count` 20 ms packets with the given extra delay (ms) each, pops every 20 ms, and
    /// returns the payload indices played in order and the buffer.
    fn run(count: u32, delay_ms: impl Fn(u32) -> u64, drop: impl Fn(u32) -> bool) -> (Vec<Option<u32>>, JitterBuffer) {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::for_clock(8000));
        let mut arrivals: Vec<(Instant, u32)> = (0..count)
            .filter(|&i| !drop(i))
            .map(|i| (start + Duration::from_millis(u64::from(i) * 20 + delay_ms(i)), i))
            .collect();
        arrivals.sort_by_key(|&(at, _)| at);
        let mut played = Vec::new();
        let mut next_arrival = 0;
        for tick in 0..(count + 100) {
            if next_arrival == arrivals.len() && buffer.packets.is_empty() {
                break;
            }
            let now = start + Duration::from_millis(u64::from(tick) * 20 + 10);
            while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= now {
                let (at, i) = arrivals[next_arrival];
                buffer.push(i.wrapping_mul(160).wrapping_add(4_294_000_000), &payload(i), at);
                next_arrival += 1;
            }
            match buffer.pop(now) {
                Frame::Packet { payload, .. } => {
                    played.push(Some(u32::from_be_bytes(payload.try_into().unwrap_or([0; 4]))))
                }
                Frame::Missing { .. } => played.push(None),
                Frame::Waiting => {}
            }
        }
        (played, buffer)
    }

    #[test]
    fn steady_stream_plays_everything_in_order_across_timestamp_wrap() {
        let (played, buffer) = run(300, |_| 5, |_| false);
        let got: Vec<u32> = played.iter().flatten().copied().collect();
        assert_eq!(got, (0..300).collect::<Vec<_>>());
        assert_eq!(buffer.stats().late, 0);
        assert_eq!(buffer.target_delay(), Duration::from_millis(20));
    }

    #[test]
    fn jitter_and_reordering_are_absorbed() {
        // Up to 60 ms of pseudo-random extra delay: packets arrive out of order.
        let delay = |i: u32| u64::from((i.wrapping_mul(2_654_435_761) >> 7) % 61);
        let (played, buffer) = run(1000, delay, |_| false);
        let got: Vec<u32> = played.iter().flatten().copied().collect();
        // In order, and (after the first second of adaptation) nothing lost.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
        let late = buffer.stats().late;
        assert!(late < 30, "{late} late packets");
        let dropped = buffer.stats().dropped;
        assert!(got.len() as u64 + late + dropped == 1000, "{} played + {late} late + {dropped} dropped", got.len());
        // The target settles near the 95th percentile of the jitter plus a frame (~77 ms).
        let target = buffer.target_delay().as_millis();
        assert!((60..=100).contains(&target), "target {target} ms");
    }

    #[test]
    fn lost_packets_are_concealed() {
        let (played, buffer) = run(200, |_| 0, |i| i % 20 == 7);
        assert_eq!(buffer.stats().concealed, 10);
        assert_eq!(played.iter().filter(|p| p.is_none()).count() as u64, 10 + buffer.stats().inserted);
        assert_eq!(played.iter().flatten().count(), 190);
    }

    #[test]
    fn the_buffer_shrinks_after_a_delay_spike() {
        // 150 ms late for one second, then on time: the depth grows, then comes back down.
        let (_, buffer) = run(1200, |i| if (50..100).contains(&i) { 150 } else { 0 }, |_| false);
        assert!(buffer.stats().dropped > 0, "{:?}", buffer.stats());
        assert!(buffer.buffered() <= Duration::from_millis(200), "{:?}", buffer.buffered());
    }

    #[test]
    fn capacity_bounds_memory() {
        let mut buffer = JitterBuffer::new(JitterConfig { capacity: 8, ..JitterConfig::for_clock(8000) });
        let now = Instant::now();
        for i in 0..100u32 {
            buffer.push(i * 160, &[0; 160], now);
        }
        assert_eq!(buffer.stats().dropped, 92);
        assert!(buffer.packets.len() <= 8);
    }
}
