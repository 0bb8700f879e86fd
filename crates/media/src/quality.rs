//! Call quality seen by the relay, per side, even when it only relays.
//!
//! A [`QualityMonitor`] watches what one side's phone sends: its RTP (sequence numbers and
//! timestamps give loss, burstiness and interarrival jitter, RFC 3550 A.3 and A.8) and its RTCP
//! (the receiver reports say how the stream the relay forwarded to it arrived; an RTCP XR VoIP
//! metrics block adds the phone's own view). The round trip between the relay and the phone is
//! timed from the sender reports the relay forwards to it and the receiver reports that answer
//! them. Sans-IO: datagrams and `Instant`s in, a [`SideQuality`] snapshot out.
//!
//! The RTP clock rate is known for static payload types and otherwise inferred from how fast the
//! timestamps advance (snapped to a common rate), so the relay needs nothing from the SDP.

use std::time::{Duration, Instant};

use crate::emodel::{CodecImpairment, LegConditions, Rating, rate_leg};
use crate::rtcp::{ReceiveStats, RtcpPacket, VoipMetrics, ntp_middle, packets};

/// Quality of one side, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SideQuality {
    /// RTP packets received from this side's phone.
    pub packets: u64,
    /// Of those the sequence numbers said should have come, how many did not (inbound).
    pub lost: i64,
    /// Inbound loss, %.
    pub loss_pct: f64,
    /// Inbound burst ratio (1: random loss).
    pub burst_ratio: f64,
    /// Inbound interarrival jitter, ms (RFC 3550).
    pub jitter_ms: f64,
    /// Round trip between the relay and this side's phone, ms (from SR/RR timing).
    pub rtt_ms: Option<f64>,
    /// What the phone last reported about the stream it receives (outbound direction): loss
    /// over the last interval, %.
    pub peer_loss_pct: Option<f64>,
    /// The phone's reported cumulative loss.
    pub peer_cumulative_lost: Option<i64>,
    /// The phone's reported jitter, ms.
    pub peer_jitter_ms: Option<f64>,
    /// The phone's last RTCP XR VoIP metrics, if it sends them.
    pub xr: Option<VoipMetrics>,
    /// RTP clock rate in use (0: not known yet).
    pub clock_rate: u32,
}

/// Assumed mouth-to-ear delay beyond the network: phone jitter buffers and codec framing, ms.
const END_SYSTEM_DELAY_MS: f64 = 40.0;

impl SideQuality {
    /// The E-model rating of the inbound direction (this phone's audio as it reaches the relay),
    /// with `codec`'s impairment figures. `None` before any RTP.
    pub fn inbound_rating(&self, codec: CodecImpairment) -> Option<Rating> {
        (self.packets > 0).then(|| {
            rate_leg(&LegConditions {
                loss_pct: self.loss_pct,
                burst_ratio: self.burst_ratio,
                one_way_delay_ms: self.one_way_delay_ms(),
                codec,
            })
        })
    }

    /// The rating of the outbound direction (what the phone receives), from its reports.
    pub fn outbound_rating(&self, codec: CodecImpairment) -> Option<Rating> {
        let loss_pct = self.peer_loss_pct?;
        Some(rate_leg(&LegConditions { loss_pct, burst_ratio: 1.0, one_way_delay_ms: self.one_way_delay_ms(), codec }))
    }

    /// MOS of this leg: the worse of its two directions (as far as they are known).
    pub fn mos(&self, codec: CodecImpairment) -> Option<f64> {
        match (self.inbound_rating(codec), self.outbound_rating(codec)) {
            (Some(a), Some(b)) => Some(a.mos.min(b.mos)),
            (Some(a), None) | (None, Some(a)) => Some(a.mos),
            (None, None) => None,
        }
    }

    fn one_way_delay_ms(&self) -> f64 {
        self.rtt_ms.unwrap_or(0.0) / 2.0 + 2.0 * self.jitter_ms + END_SYSTEM_DELAY_MS
    }
}

/// Sender reports forwarded to the phone, remembered to time the receiver reports answering
/// them.
const SR_SLOTS: usize = 4;

/// Watches one side's phone.
#[derive(Clone, Debug)]
pub struct QualityMonitor {
    origin: Instant,
    stats: ReceiveStats,
    ssrc: Option<u32>,
    /// The stream's audio payload type (the first seen; telephone-events, which carry the
    /// timestamp of their start, are left out of the jitter).
    audio_pt: Option<u8>,
    clock_rate: u32,
    /// First packet (arrival µs, timestamp) for clock-rate inference.
    first: Option<(u64, u32)>,
    /// (NTP middle 32 bits, when forwarded) of the last SRs sent to the phone.
    sent_srs: [(u32, Option<Instant>); SR_SLOTS],
    next_sr: usize,
    quality: SideQuality,
}

impl QualityMonitor {
    /// A monitor whose time origin is `now`.
    pub fn new(now: Instant) -> Self {
        QualityMonitor {
            origin: now,
            stats: ReceiveStats::new(),
            ssrc: None,
            audio_pt: None,
            clock_rate: 0,
            first: None,
            sent_srs: [(0, None); SR_SLOTS],
            next_sr: 0,
            quality: SideQuality { burst_ratio: 1.0, ..SideQuality::default() },
        }
    }

    /// An RTP packet from the phone (already known not to be RTCP).
    pub fn on_rtp(&mut self, packet: &[u8], now: Instant) {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return;
        }
        let pt = packet[1] & 0x7F;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        if self.ssrc != Some(ssrc) {
            // A new source (the phone restarted its stream): start over.
            self.ssrc = Some(ssrc);
            self.stats = ReceiveStats::new();
            self.audio_pt = None;
            self.first = None;
            self.clock_rate = 0;
        }
        let audio_pt = *self.audio_pt.get_or_insert(pt);
        let arrival_us = now.saturating_duration_since(self.origin).as_micros() as u64;
        if pt == audio_pt && self.clock_rate == 0 {
            self.clock_rate = static_clock_rate(pt).unwrap_or_else(|| self.infer_rate(arrival_us, timestamp));
        }
        let arrival = if self.clock_rate == 0 || pt != audio_pt {
            // Unknown rate, or a telephone-event: counted for loss, not for jitter.
            None
        } else {
            Some((arrival_us as u128 * u128::from(self.clock_rate) / 1_000_000) as u32)
        };
        match arrival {
            Some(arrival) => self.stats.record(seq, timestamp, arrival),
            None => self.stats.record_without_timing(seq),
        }
    }

    fn infer_rate(&mut self, arrival_us: u64, timestamp: u32) -> u32 {
        let Some((first_us, first_ts)) = self.first else {
            self.first = Some((arrival_us, timestamp));
            return 0;
        };
        let elapsed_us = arrival_us.saturating_sub(first_us);
        if elapsed_us < 1_000_000 {
            return 0;
        }
        let rate = f64::from(timestamp.wrapping_sub(first_ts)) * 1e6 / elapsed_us as f64;
        [8000u32, 16000, 24000, 32000, 44100, 48000, 90000]
            .into_iter()
            .min_by(|a, b| (f64::from(*a) - rate).abs().total_cmp(&(f64::from(*b) - rate).abs()))
            .unwrap_or(8000)
    }

    /// A report block about the phone's stream since the last one (for an RTCP report the
    /// relay sends itself, on a leg it terminates); `None` before any RTP came.
    pub fn report_block(&mut self) -> Option<crate::rtcp::ReportBlock> {
        let ssrc = self.ssrc?;
        Some(self.stats.report(ssrc, 0, 0))
    }

    /// An RTCP datagram from the phone.
    pub fn on_rtcp(&mut self, datagram: &[u8], now: Instant) {
        for packet in packets(datagram) {
            let Ok(packet) = packet else { break };
            match packet {
                RtcpPacket::ReceiverReport { reports, .. } | RtcpPacket::SenderReport { reports, .. } => {
                    // The phone receives one stream from us; take the first block.
                    if let Some(block) = reports.clone().next() {
                        self.quality.peer_loss_pct = Some(f64::from(block.fraction_lost) * 100.0 / 256.0);
                        self.quality.peer_cumulative_lost = Some(i64::from(block.cumulative_lost));
                        if self.clock_rate > 0 {
                            self.quality.peer_jitter_ms =
                                Some(f64::from(block.jitter) * 1000.0 / f64::from(self.clock_rate));
                        }
                        if block.last_sr != 0
                            && let Some(&(_, Some(sent))) = self.sent_srs.iter().find(|(mid, _)| *mid == block.last_sr)
                        {
                            let held = Duration::from_micros(u64::from(block.delay_since_last_sr) * 1_000_000 / 65_536);
                            let rtt = now.saturating_duration_since(sent).saturating_sub(held);
                            self.quality.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                        }
                    }
                }
                RtcpPacket::ExtendedReport { voip_metrics: [Some(m), ..], .. } => self.quality.xr = Some(m),
                _ => {}
            }
        }
    }

    /// An RTCP datagram is being forwarded to the phone: remember its sender report, if any,
    /// to time the answer.
    pub fn on_rtcp_to_phone(&mut self, datagram: &[u8], now: Instant) {
        if let Some(Ok(RtcpPacket::SenderReport { ntp, .. })) = packets(datagram).next() {
            self.sent_srs[self.next_sr] = (ntp_middle(ntp), Some(now));
            self.next_sr = (self.next_sr + 1) % SR_SLOTS;
        }
    }

    /// The audio payload type the phone sends (the first seen), if any yet.
    pub fn audio_payload_type(&self) -> Option<u8> {
        self.audio_pt
    }

    /// The current figures.
    pub fn snapshot(&self) -> SideQuality {
        let mut q = self.quality;
        q.packets = self.stats.received();
        q.lost = self.stats.lost();
        q.loss_pct = self.stats.loss_pct();
        q.burst_ratio = self.stats.burst_ratio();
        q.clock_rate = self.clock_rate;
        q.jitter_ms =
            if self.clock_rate == 0 { 0.0 } else { self.stats.jitter() * 1000.0 / f64::from(self.clock_rate) };
        q
    }
}

/// Clock rate of the static RTP payload types (RFC 3551) that carry audio.
fn static_clock_rate(pt: u8) -> Option<u32> {
    match pt {
        0..=5 | 7..=9 | 12 | 13 | 15 | 18 => Some(8000),
        6 => Some(16000),
        10 | 11 => Some(44100),
        16 => Some(11025),
        17 => Some(22050),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{ReportBlock, SenderInfo, write_receiver_report, write_sender_report};

    fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xFF; 160]);
        p
    }

    /// 20 ms packets of `samples_per_packet`, arriving `delay(i)` ms late, `lost(i)` skipped.
    fn feed(
        monitor: &mut QualityMonitor,
        start: Instant,
        pt: u8,
        samples_per_packet: u32,
        count: u32,
        delay: impl Fn(u32) -> f64,
        lost: impl Fn(u32) -> bool,
    ) {
        for i in 0..count {
            if lost(i) {
                continue;
            }
            let at = start + Duration::from_secs_f64((f64::from(i) * 20.0 + delay(i)) / 1000.0);
            monitor.on_rtp(&rtp(pt, i as u16, i * samples_per_packet, 42), at);
        }
    }

    #[test]
    fn a_clean_pcmu_stream() {
        let start = Instant::now();
        let mut m = QualityMonitor::new(start);
        feed(&mut m, start, 0, 160, 500, |_| 0.0, |_| false);
        let q = m.snapshot();
        assert_eq!((q.packets, q.lost, q.clock_rate), (500, 0, 8000));
        assert!(q.jitter_ms < 0.01);
        let mos = q.mos(CodecImpairment::G711_PLC).unwrap_or(0.0);
        assert!(mos > 4.3, "{mos}");
    }

    #[test]
    fn loss_and_jitter_are_measured() {
        let start = Instant::now();
        let mut m = QualityMonitor::new(start);
        // Alternately 0 and 8 ms late: |D| = 8 ms every packet; every 20th lost (5 %).
        feed(&mut m, start, 0, 160, 2000, |i| if i % 2 == 0 { 0.0 } else { 8.0 }, |i| i % 20 == 3);
        let q = m.snapshot();
        assert!((q.loss_pct - 5.0).abs() < 0.01, "{q:?}");
        assert!((q.jitter_ms - 8.0).abs() < 0.3, "{q:?}");
        let clean = SideQuality { loss_pct: 0.0, jitter_ms: 0.0, ..q };
        let codec = CodecImpairment::G711_PLC;
        assert!(q.mos(codec).unwrap_or(5.0) < clean.mos(codec).unwrap_or(0.0) - 0.3, "{q:?}");
    }

    #[test]
    fn dynamic_payload_rate_is_inferred() {
        let start = Instant::now();
        let mut m = QualityMonitor::new(start);
        // Opus: 960 per 20 ms at 48 kHz.
        feed(&mut m, start, 111, 960, 200, |i| if i % 2 == 0 { 0.0 } else { 4.0 }, |_| false);
        let q = m.snapshot();
        assert_eq!(q.clock_rate, 48000);
        assert!((q.jitter_ms - 4.0).abs() < 0.5, "{q:?}");
        // G.722 says 8000 (RFC 3551's quirk), static type 9.
        let mut g722 = QualityMonitor::new(start);
        feed(&mut g722, start, 9, 160, 10, |_| 0.0, |_| false);
        assert_eq!(g722.snapshot().clock_rate, 8000);
    }

    #[test]
    fn telephone_events_do_not_count_as_jitter() {
        let start = Instant::now();
        let mut m = QualityMonitor::new(start);
        for i in 0..300u32 {
            let at = start + Duration::from_millis(u64::from(i) * 20);
            // Packets 100-110 are an RFC 4733 event: payload type 101, the event's start
            // timestamp in each.
            let (pt, ts) = if (100..110).contains(&i) { (101, 100 * 160) } else { (0, i * 160) };
            m.on_rtp(&rtp(pt, i as u16, ts, 42), at);
        }
        let q = m.snapshot();
        assert_eq!(q.lost, 0);
        assert!(q.jitter_ms < 0.01, "{q:?}");
    }

    #[test]
    fn round_trip_from_forwarded_sender_reports() {
        let start = Instant::now();
        let mut m = QualityMonitor::new(start);
        feed(&mut m, start, 8, 160, 10, |_| 0.0, |_| false);
        let ntp = 0x0000_1234_5678_0000u64;
        let mut sr = Vec::new();
        write_sender_report(7, SenderInfo { ntp, rtp_timestamp: 0, packets: 1, octets: 1 }, &[], &mut sr);
        m.on_rtcp_to_phone(&sr, start);
        // The phone answers 250 ms later, having held the SR 200 ms: 50 ms round trip.
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 64,
            cumulative_lost: 12,
            jitter: 80,
            last_sr: ntp_middle(ntp),
            delay_since_last_sr: 65_536 / 5,
            ..ReportBlock::default()
        };
        let mut rr = Vec::new();
        write_receiver_report(9, &[block], &mut rr);
        m.on_rtcp(&rr, start + Duration::from_millis(250));
        let q = m.snapshot();
        let rtt = q.rtt_ms.unwrap_or(0.0);
        assert!((rtt - 50.0).abs() < 0.1, "{q:?}");
        assert_eq!(q.peer_loss_pct, Some(25.0));
        assert_eq!(q.peer_cumulative_lost, Some(12));
        assert_eq!(q.peer_jitter_ms, Some(10.0));
        // 25 % outbound loss makes the leg's MOS the outbound one, and poor.
        let codec = CodecImpairment::G711_PLC;
        assert!(q.mos(codec).unwrap_or(5.0) < 3.0, "{:?}", q.mos(codec));
        // Garbage RTCP changes nothing and does not panic.
        m.on_rtcp(&[0x80, 201, 0, 9, 1, 2], start);
        m.on_rtp(&[0x80], start);
        assert_eq!(m.snapshot().rtt_ms, q.rtt_ms);
    }
}
