//! RTCP (RFC 3550 §6) for call quality: reading the sender and receiver reports and RTCP XR VoIP
//! metrics (RFC 3611 §4.7) that phones send, writing Switchboard's own reports on the legs it
//! terminates, and the receiver-side statistics behind them (RFC 3550 A.1, A.3, A.8: sequence
//! tracking, loss, interarrival jitter), plus the burst ratio the E-model wants.
//!
//! Parsing is bounded and never panics: every length is checked against the datagram, and a
//! compound packet yields its packets one by one, stopping at the first malformed one.

/// Why an RTCP datagram (or one packet of it) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcpError {
    /// Fewer bytes than a header or than the packet's length field says.
    Truncated,
    /// Version is not 2.
    BadVersion,
    /// A report count or block length that does not fit the packet.
    BadLength,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from the source (0: none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> ReportBlock {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Sign-extend the 24-bit cumulative loss.
        let cumulative = (((i32::from(b[5]) << 16) | (i32::from(b[6]) << 8) | i32::from(b[7])) << 8) >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost: cumulative,
            highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(self.fraction_lost);
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32;
        out.extend_from_slice(&lost.to_be_bytes()[1..]);
        out.extend_from_slice(&self.highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }

    /// Round-trip time seen from the sender of the SR this block answers: `arrival` is the
    /// middle 32 bits of the NTP time the block arrived (RFC 3550 §6.4.1). In 1/65536 s; `None`
    /// when the peer has received no SR yet or the clocks disagree.
    pub fn round_trip(&self, arrival: u32) -> Option<u32> {
        if self.last_sr == 0 {
            return None;
        }
        let rtt = arrival.wrapping_sub(self.last_sr).wrapping_sub(self.delay_since_last_sr);
        (rtt < 0x8000_0000).then_some(rtt)
    }
}

/// Report blocks of an SR or RR, read lazily.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    bytes: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        if self.bytes.len() < 24 {
            return None;
        }
        let (block, rest) = self.bytes.split_at(24);
        self.bytes = rest;
        Some(ReportBlock::parse(block))
    }
}

/// The VoIP metrics report block of RTCP XR (RFC 3611 §4.7), as sent by phones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VoipMetrics {
    /// The source the metrics are about.
    pub ssrc: u32,
    /// Loss rate, in 1/256.
    pub loss_rate: u8,
    /// Jitter-buffer discard rate, in 1/256.
    pub discard_rate: u8,
    /// Density of losses and discards within bursts, in 1/256.
    pub burst_density: u8,
    /// Density within gaps, in 1/256.
    pub gap_density: u8,
    /// Mean burst duration, ms.
    pub burst_duration: u16,
    /// Mean gap duration, ms.
    pub gap_duration: u16,
    /// Round-trip delay, ms.
    pub round_trip_delay: u16,
    /// End-system delay, ms.
    pub end_system_delay: u16,
    /// R factor (127: unavailable).
    pub r_factor: u8,
    /// MOS-LQ ×10 (127: unavailable).
    pub mos_lq: u8,
    /// MOS-CQ ×10 (127: unavailable).
    pub mos_cq: u8,
    /// Jitter buffer nominal delay, ms.
    pub jb_nominal: u16,
}

/// One packet of a compound RTCP datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// Sender report (PT 200).
    SenderReport {
        /// Sender's SSRC.
        ssrc: u32,
        /// NTP timestamp of the report (64-bit fixed point).
        ntp: u64,
        /// RTP timestamp of the same instant.
        rtp_timestamp: u32,
        /// Packets sent.
        packets: u32,
        /// Payload octets sent.
        octets: u32,
        /// Reception report blocks.
        reports: ReportBlocks<'a>,
    },
    /// Receiver report (PT 201).
    ReceiverReport {
        /// Reporter's SSRC.
        ssrc: u32,
        /// Reception report blocks.
        reports: ReportBlocks<'a>,
    },
    /// Extended report (PT 207); only the VoIP metrics blocks are read.
    ExtendedReport {
        /// Reporter's SSRC.
        ssrc: u32,
        /// The VoIP metrics blocks it carried (at most two are kept).
        voip_metrics: [Option<VoipMetrics>; 2],
    },
    /// Any other packet type (SDES, BYE, APP, feedback), by payload type.
    Other(u8),
}

/// The packets of a compound RTCP datagram.
pub fn packets(datagram: &[u8]) -> Packets<'_> {
    Packets { rest: datagram }
}

/// Iterator over a compound RTCP datagram; stops after the first error.
#[derive(Clone, Debug)]
pub struct Packets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = self.parse_one();
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl<'a> Packets<'a> {
    fn parse_one(&mut self) -> Result<RtcpPacket<'a>, RtcpError> {
        let rest = self.rest;
        if rest.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        if rest[0] >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        let padded = rest[0] & 0x20 != 0;
        let count = usize::from(rest[0] & 0x1F);
        let pt = rest[1];
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if rest.len() < len {
            return Err(RtcpError::Truncated);
        }
        let mut body = &rest[4..len];
        self.rest = &rest[len..];
        if padded {
            let pad = usize::from(*body.last().ok_or(RtcpError::BadLength)?);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadLength);
            }
            body = &body[..body.len() - pad];
        }
        match pt {
            200 => {
                if body.len() < 24 + 24 * count {
                    return Err(RtcpError::BadLength);
                }
                Ok(RtcpPacket::SenderReport {
                    ssrc: word(body, 0),
                    ntp: (u64::from(word(body, 4)) << 32) | u64::from(word(body, 8)),
                    rtp_timestamp: word(body, 12),
                    packets: word(body, 16),
                    octets: word(body, 20),
                    reports: ReportBlocks { bytes: &body[24..24 + 24 * count] },
                })
            }
            201 => {
                if body.len() < 4 + 24 * count {
                    return Err(RtcpError::BadLength);
                }
                Ok(RtcpPacket::ReceiverReport {
                    ssrc: word(body, 0),
                    reports: ReportBlocks { bytes: &body[4..4 + 24 * count] },
                })
            }
            207 => {
                if body.len() < 4 {
                    return Err(RtcpError::BadLength);
                }
                let ssrc = word(body, 0);
                let mut blocks = &body[4..];
                let mut voip_metrics = [None, None];
                let mut found = 0;
                while blocks.len() >= 4 {
                    let block_type = blocks[0];
                    let block_len = (usize::from(u16::from_be_bytes([blocks[2], blocks[3]])) + 1) * 4;
                    if blocks.len() < block_len {
                        return Err(RtcpError::BadLength);
                    }
                    if block_type == 7 && block_len >= 36 && found < 2 {
                        let b = &blocks[4..block_len];
                        let half = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
                        voip_metrics[found] = Some(VoipMetrics {
                            ssrc: word(b, 0),
                            loss_rate: b[4],
                            discard_rate: b[5],
                            burst_density: b[6],
                            gap_density: b[7],
                            burst_duration: half(8),
                            gap_duration: half(10),
                            round_trip_delay: half(12),
                            end_system_delay: half(14),
                            r_factor: b[20],
                            mos_lq: b[22],
                            mos_cq: b[23],
                            jb_nominal: half(26),
                        });
                        found += 1;
                    }
                    blocks = &blocks[block_len..];
                }
                Ok(RtcpPacket::ExtendedReport { ssrc, voip_metrics })
            }
            other => Ok(RtcpPacket::Other(other)),
        }
    }
}

/// Appends a receiver report (PT 201) with up to 31 blocks.
pub fn write_receiver_report(ssrc: u32, blocks: &[ReportBlock], out: &mut Vec<u8>) {
    let blocks = &blocks[..blocks.len().min(31)];
    let words = 1 + 6 * blocks.len();
    out.push(0x80 | blocks.len() as u8);
    out.push(201);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    for block in blocks {
        block.write(out);
    }
}

/// What a sender report says about its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (64-bit fixed point).
    pub ntp: u64,
    /// RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

/// Appends a sender report (PT 200) with up to 31 blocks.
pub fn write_sender_report(ssrc: u32, info: SenderInfo, blocks: &[ReportBlock], out: &mut Vec<u8>) {
    let blocks = &blocks[..blocks.len().min(31)];
    let words = 6 + 6 * blocks.len();
    out.push(0x80 | blocks.len() as u8);
    out.push(200);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packets.to_be_bytes());
    out.extend_from_slice(&info.octets.to_be_bytes());
    for block in blocks {
        block.write(out);
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp (the LSR / arrival format).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Receiver-side statistics of one RTP source (RFC 3550 Appendix A.1, A.3, A.8).
#[derive(Clone, Debug, Default)]
pub struct ReceiveStats {
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Last transit time (arrival − RTP timestamp), timestamp units.
    transit: Option<i64>,
    /// Jitter estimate, timestamp units (RFC 3550 A.8, kept as f64 rather than ×16 fixed point).
    jitter: f64,
    /// Runs of consecutive missing sequence numbers seen (for the burst ratio).
    loss_runs: u64,
    duplicates_or_late: u64,
}

impl ReceiveStats {
    /// Fresh statistics.
    pub fn new() -> Self {
        Self::default()
    }

    /// One packet: its sequence number, RTP timestamp, and arrival time in the same timestamp
    /// units (the caller converts its clock at the payload's rate).
    pub fn record(&mut self, seq: u16, rtp_timestamp: u32, arrival: u32) {
        self.record_without_timing(seq);
        let transit = i64::from(arrival) - i64::from(rtp_timestamp);
        if let Some(previous) = self.transit {
            // Transit differences wrap with the 32-bit clocks: take the short way round.
            let d = ((transit - previous) as i32).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// One packet counted for loss only (its timing is not comparable: a telephone-event, or the
    /// clock rate is not known yet).
    pub fn record_without_timing(&mut self, seq: u16) {
        if !self.started {
            self.started = true;
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta == 0 || delta >= 0x8000 {
                // A duplicate or a reordered packet: counted received, not a new maximum.
                self.duplicates_or_late += 1;
            } else {
                if delta > 1 {
                    self.loss_runs += 1;
                }
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            }
        }
        self.received += 1;
    }

    /// Extended highest sequence number.
    pub fn highest_seq(&self) -> u32 {
        self.cycles + u32::from(self.max_seq)
    }

    /// Packets expected (from the sequence numbers).
    pub fn expected(&self) -> u64 {
        if !self.started { 0 } else { u64::from(self.highest_seq()) - u64::from(self.base_seq) + 1 }
    }

    /// Packets received (duplicates included, as RFC 3550 counts them).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets lost so far (negative with duplicates).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Loss over the whole stream, %.
    pub fn loss_pct(&self) -> f64 {
        let expected = self.expected();
        if expected == 0 { 0.0 } else { (self.lost().max(0) as f64) * 100.0 / expected as f64 }
    }

    /// Interarrival jitter, timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Burst ratio (E-model BurstR): the mean length of loss runs over what random loss at the
    /// same rate would give (1 / (1 − p)); 1 when nothing was lost.
    pub fn burst_ratio(&self) -> f64 {
        let lost = self.lost();
        if lost <= 0 || self.loss_runs == 0 {
            return 1.0;
        }
        let p = lost as f64 / self.expected() as f64;
        let mean_run = lost as f64 / self.loss_runs as f64;
        (mean_run * (1.0 - p)).max(1.0)
    }

    /// The report block for this source since the last call (updates the interval counters),
    /// with `last_sr` / `delay_since_last_sr` from the caller's record of the source's SRs.
    pub fn report(&mut self, ssrc: u32, last_sr: u32, delay_since_last_sr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: self.highest_seq(),
            jitter: self.jitter as u32,
            last_sr,
            delay_since_last_sr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_report_round_trip() {
        let block = ReportBlock {
            ssrc: 0x1234_5678,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 70_000,
            jitter: 42,
            last_sr: 0xAABB_CCDD,
            delay_since_last_sr: 65536,
        };
        let mut bytes = Vec::new();
        write_receiver_report(7, &[block, block], &mut bytes);
        assert_eq!(bytes.len(), 8 + 48);
        assert_eq!(&bytes[..4], &[0x82, 201, 0, 13]);
        let parsed: Vec<_> = packets(&bytes).collect();
        assert_eq!(parsed.len(), 1);
        let Ok(RtcpPacket::ReceiverReport { ssrc, reports }) = &parsed[0] else { panic!("{parsed:?}") };
        assert_eq!(*ssrc, 7);
        assert_eq!(reports.clone().collect::<Vec<_>>(), vec![block, block]);
    }

    #[test]
    fn compound_sender_report_then_sdes() {
        let mut bytes = Vec::new();
        let info = SenderInfo { ntp: 0x0102_0304_0506_0708, rtp_timestamp: 160, packets: 10, octets: 1600 };
        write_sender_report(99, info, &[ReportBlock::default()], &mut bytes);
        // An SDES packet with a CNAME, padded to a word.
        bytes.extend_from_slice(&[0x81, 202, 0, 3, 0, 0, 0, 99, 1, 3, b'a', b'b', b'c', 0, 0, 0]);
        let parsed: Vec<_> = packets(&bytes).collect::<Result<_, _>>().expect("valid");
        assert!(matches!(
            parsed[0],
            RtcpPacket::SenderReport { ssrc: 99, ntp: 0x0102_0304_0506_0708, packets: 10, .. }
        ));
        assert!(matches!(parsed[1], RtcpPacket::Other(202)));
        assert_eq!(ntp_middle(0x0102_0304_0506_0708), 0x0304_0506);
    }

    #[test]
    fn voip_metrics_block() {
        let mut bytes = vec![0x80, 207, 0, 10, 0, 0, 0, 5, 7, 0, 0, 8];
        let mut block = [0u8; 32];
        block[..4].copy_from_slice(&[0, 0, 0, 9]);
        block[4] = 13; // loss rate
        block[12..14].copy_from_slice(&150u16.to_be_bytes()); // round trip
        block[20] = 80; // R
        block[23] = 41; // MOS-CQ
        bytes.extend_from_slice(&[0, 0, 0, 9]);
        bytes.extend_from_slice(&block[4..]);
        let parsed: Vec<_> = packets(&bytes).collect();
        let Ok(RtcpPacket::ExtendedReport { ssrc: 5, voip_metrics: [Some(m), None] }) = parsed[0] else {
            panic!("{parsed:?}")
        };
        assert_eq!((m.ssrc, m.loss_rate, m.round_trip_delay, m.r_factor, m.mos_cq), (9, 13, 150, 80, 41));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(packets(&[0x80, 201]).next(), Some(Err(RtcpError::Truncated)));
        assert_eq!(packets(&[0x40, 201, 0, 1, 0, 0, 0, 1]).next(), Some(Err(RtcpError::BadVersion)));
        // Length says 3 words, only 2 there.
        assert_eq!(packets(&[0x80, 201, 0, 3, 0, 0, 0, 1]).next(), Some(Err(RtcpError::Truncated)));
        // Report count 1 without the block.
        assert_eq!(packets(&[0x81, 201, 0, 1, 0, 0, 0, 1]).next(), Some(Err(RtcpError::BadLength)));
        // Padding longer than the body.
        assert_eq!(packets(&[0xA0, 201, 0, 1, 0, 0, 0, 9]).next(), Some(Err(RtcpError::BadLength)));
        // XR block longer than the packet.
        assert_eq!(packets(&[0x80, 207, 0, 2, 0, 0, 0, 1, 7, 0, 0, 8]).next(), Some(Err(RtcpError::BadLength)));
        // Every prefix and every single-byte corruption of a valid compound packet.
        let mut valid = Vec::new();
        write_sender_report(
            1,
            SenderInfo { ntp: 1, rtp_timestamp: 2, packets: 3, octets: 4 },
            &[ReportBlock::default()],
            &mut valid,
        );
        write_receiver_report(2, &[ReportBlock::default()], &mut valid);
        for end in 0..valid.len() {
            let _ = packets(&valid[..end]).count();
        }
        for i in 0..valid.len() {
            for value in [0u8, 0x1F, 0x80, 0xFF] {
                let mut bad = valid.clone();
                bad[i] = value;
                for packet in packets(&bad) {
                    if let Ok(RtcpPacket::SenderReport { reports, .. } | RtcpPacket::ReceiverReport { reports, .. }) =
                        packet
                    {
                        let _ = reports.count();
                    }
                }
            }
        }
    }

    #[test]
    fn round_trip_time() {
        let block = ReportBlock { last_sr: 0x0001_0000, delay_since_last_sr: 0x0000_8000, ..Default::default() };
        // Arrived 0.75 s after the SR was sent, held 0.5 s by the peer: 0.25 s round trip.
        assert_eq!(block.round_trip(0x0001_C000), Some(0x4000));
        assert_eq!(ReportBlock::default().round_trip(5), None);
    }

    #[test]
    fn loss_jitter_and_wrap() {
        let mut stats = ReceiveStats::new();
        // 1,000 packets of 160 samples from seq 65,000 (wraps), every 10th lost, and arrivals
        // alternately 0 and 40 units late.
        let mut arrival_late = 0u32;
        for i in 0..1000u32 {
            let seq = (65_000 + i) as u16;
            if i % 10 == 5 {
                continue;
            }
            arrival_late = if arrival_late == 0 { 40 } else { 0 };
            stats.record(seq, i * 160, i * 160 + 1000 + arrival_late);
        }
        assert_eq!(stats.expected(), 1000);
        assert_eq!(stats.lost(), 100);
        assert!((stats.loss_pct() - 10.0).abs() < 1e-9);
        // |D| is 40 for each pair: the estimate converges to 40.
        assert!((stats.jitter() - 40.0).abs() < 1.0, "{}", stats.jitter());
        assert_eq!(stats.highest_seq(), (1 << 16) + u32::from((65_000u32 + 999) as u16));
        // Isolated losses: random-like, burst ratio about 1.
        assert!((stats.burst_ratio() - 1.0).abs() < 0.01, "{}", stats.burst_ratio());
        let block = stats.report(1, 0, 0);
        assert_eq!(block.fraction_lost, 25); // 10 % of 256
        assert_eq!(block.cumulative_lost, 100);
        // Nothing since: the next interval has no loss.
        assert_eq!(stats.report(1, 0, 0).fraction_lost, 0);
    }

    #[test]
    fn bursty_loss_has_a_high_burst_ratio() {
        let mut stats = ReceiveStats::new();
        for i in 0..1000u32 {
            // Lose 10 in a row every 100.
            if i % 100 < 10 && i >= 100 {
                continue;
            }
            stats.record(i as u16, i * 160, i * 160);
        }
        assert_eq!(stats.lost(), 90);
        // Mean run 10, p = 0.09: BurstR = 10 × 0.91 = 9.1.
        assert!((stats.burst_ratio() - 9.1).abs() < 0.01, "{}", stats.burst_ratio());
    }

    #[test]
    fn duplicates_and_reordering() {
        let mut stats = ReceiveStats::new();
        for seq in [1u16, 2, 4, 3, 5, 5, 6] {
            stats.record(seq, u32::from(seq) * 160, u32::from(seq) * 160);
        }
        assert_eq!(stats.expected(), 6);
        assert_eq!(stats.received(), 7);
        assert_eq!(stats.lost(), -1);
        assert_eq!(stats.highest_seq(), 6);
    }
}
