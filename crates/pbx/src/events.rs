//! Facts call control publishes. Consumers (CDR writer, later webhooks and dashboards)
//! subscribe; call control never writes a CDR itself.

use std::fmt;

/// Switchboard's identifier for one call (both legs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// How a call ended, as billing and reports see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Answered, then hung up.
    Answered,
    /// Rang but nobody answered (or the callee was unavailable).
    NoAnswer,
    /// The callee was busy.
    Busy,
    /// The caller gave up before an answer.
    Cancelled,
    /// Any other failure.
    Failed,
}

impl Disposition {
    /// Lower-case name used in CDRs.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::NoAnswer => "no-answer",
            Disposition::Busy => "busy",
            Disposition::Cancelled => "cancelled",
            Disposition::Failed => "failed",
        }
    }
}

/// Who ended the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    /// The calling party.
    Caller,
    /// The called party.
    Callee,
    /// Switchboard (timeouts, shutdown, errors).
    System,
}

impl Initiator {
    /// Lower-case name used in CDRs.
    pub fn as_str(self) -> &'static str {
        match self {
            Initiator::Caller => "caller",
            Initiator::Callee => "callee",
            Initiator::System => "system",
        }
    }
}

/// Quality of one leg, from the relay: what its phone sends (loss, jitter), the round trip to
/// it, what it reports receiving, and the leg's MOS estimate (ITU-T G.107 E-model).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LegQuality {
    /// RTP packets received from the leg's phone.
    pub packets: u64,
    /// Loss of the RTP the phone sends, %.
    pub loss_pct: f64,
    /// Interarrival jitter of that RTP, ms.
    pub jitter_ms: f64,
    /// Round trip between the relay and the phone, ms, when the phone's RTCP allows it.
    pub rtt_ms: Option<f64>,
    /// Loss the phone reports for what it receives, %.
    pub peer_loss_pct: Option<f64>,
    /// MOS estimate of the leg (the worse of its two directions).
    pub mos: Option<f64>,
}

/// How a DTMF digit was signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfMethod {
    /// RFC 4733 telephone-events in the RTP stream.
    Rfc4733,
    /// SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    SipInfo,
    /// Tones in the audio.
    InBand,
}

impl DtmfMethod {
    /// Name for logs and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            DtmfMethod::Rfc4733 => "rfc4733",
            DtmfMethod::SipInfo => "info",
            DtmfMethod::InBand => "inband",
        }
    }
}

/// Reads a DTMF digit from a SIP INFO body: `application/dtmf-relay` (`Signal=5` and
/// `Duration=160` lines, the de facto format) or `application/dtmf` (the digit alone). Returns
/// the digit and its duration in ms (0 if not given); `None` for anything else.
pub fn dtmf_from_info(content_type: &str, body: &[u8]) -> Option<(char, u32)> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let text = std::str::from_utf8(body).ok()?;
    let digit_of = |s: &str| {
        let s = s.trim();
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || matches!(c.to_ascii_uppercase(), '*' | '#' | 'A'..='D') => {
                Some(c.to_ascii_uppercase())
            }
            // Some phones send the RFC 4733 event code: 10 = *, 11 = #.
            _ => match s {
                "10" => Some('*'),
                "11" => Some('#'),
                _ => None,
            },
        }
    };
    if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        let mut digit = None;
        let mut duration = 0;
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            match key.trim().to_ascii_lowercase().as_str() {
                "signal" => digit = digit_of(value),
                "duration" => duration = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        digit.map(|d| (d, duration))
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        digit_of(text).map(|d| (d, 0))
    } else {
        None
    }
}

/// Media counters of a call, from the relay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaCounters {
    /// Packets relayed from caller to callee.
    pub packets_a_to_b: u64,
    /// Packets relayed from callee to caller.
    pub packets_b_to_a: u64,
    /// Bytes relayed from caller to callee.
    pub bytes_a_to_b: u64,
    /// Bytes relayed from callee to caller.
    pub bytes_b_to_a: u64,
    /// Quality of the caller's leg.
    pub quality_a: LegQuality,
    /// Quality of the callee's leg.
    pub quality_b: LegQuality,
    /// SRTP suite of the caller's leg; `None` for plain RTP.
    pub srtp_a: Option<String>,
    /// SRTP suite of the callee's leg.
    pub srtp_b: Option<String>,
    /// Packets from the caller refused by SRTP (failed authentication, replayed).
    pub srtp_rejected_a: u64,
    /// Packets from the callee refused by SRTP.
    pub srtp_rejected_b: u64,
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum CallEventKind {
    /// A call was accepted for routing.
    Created {
        /// Caller extension.
        caller: String,
        /// Callee extension.
        callee: String,
        /// The caller's Call-ID.
        sip_call_id: String,
    },
    /// The callee is ringing (first 180/183).
    Ringing,
    /// The callee answered.
    Answered,
    /// Periodic quality figures of an answered call (every `[media] quality_interval_secs`).
    Quality {
        /// The caller's leg.
        a: LegQuality,
        /// The callee's leg.
        b: LegQuality,
    },
    /// A DTMF digit from one leg, with its duration.
    Dtmf {
        /// From the caller's leg (else the callee's).
        caller_leg: bool,
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// How long it was held, ms (0 when the method does not say).
        duration_ms: u32,
        /// How it came.
        method: DtmfMethod,
    },
    /// A leg's MOS stayed under the configured threshold for two intervals in a row. Raised
    /// once per leg and call, again only after the leg has recovered.
    QualityAlert {
        /// The leg: `true` for the caller's, `false` for the callee's.
        caller_leg: bool,
        /// Its MOS in the last interval.
        mos: f64,
        /// The threshold (`[media] mos_alert_threshold`).
        threshold: f64,
    },
    /// The call is over. Emitted exactly once per call.
    Ended {
        /// Billing view.
        disposition: Disposition,
        /// Human-readable cause ("BYE", "486 Busy Here", "media timeout"...).
        cause: String,
        /// The SIP status that ended a failed call, if any.
        status: Option<u16>,
        /// Who ended it.
        initiator: Initiator,
        /// Relay counters (filled in by the driver, which owns the relay session).
        media: Option<MediaCounters>,
        /// The call's recording, if it was recorded (filled in by the driver).
        recording: Option<String>,
    },
}

/// One event of one call.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEvent {
    /// The call.
    pub call: CallId,
    /// Its tenant.
    pub tenant_id: i64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// What.
    pub kind: CallEventKind,
}

/// Decides when a call's legs raise quality alerts: a leg whose MOS is under the threshold for
/// two quality intervals in a row raises one alert, and may raise another only after a good
/// interval.
#[derive(Clone, Copy, Debug)]
pub struct QualityAlerts {
    threshold: f64,
    low_runs: [u32; 2],
    alerted: [bool; 2],
}

impl QualityAlerts {
    /// Alerts under `threshold` (0: never).
    pub fn new(threshold: f64) -> Self {
        QualityAlerts { threshold, low_runs: [0; 2], alerted: [false; 2] }
    }

    /// One interval's figures; the alerts to raise: (caller's leg?, MOS).
    pub fn observe(&mut self, a: &LegQuality, b: &LegQuality) -> Vec<(bool, f64)> {
        let mut alerts = Vec::new();
        for (i, leg) in [a, b].into_iter().enumerate() {
            let Some(mos) = leg.mos else { continue };
            if self.threshold > 0.0 && mos < self.threshold {
                self.low_runs[i] += 1;
                if self.low_runs[i] >= 2 && !self.alerted[i] {
                    self.alerted[i] = true;
                    alerts.push((i == 0, mos));
                }
            } else {
                self.low_runs[i] = 0;
                self.alerted[i] = false;
            }
        }
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(mos: Option<f64>) -> LegQuality {
        LegQuality { mos, ..LegQuality::default() }
    }

    #[test]
    fn dtmf_in_info_bodies() {
        let relay = "application/dtmf-relay";
        assert_eq!(dtmf_from_info(relay, b"Signal=5\r\nDuration=160\r\n"), Some(('5', 160)));
        assert_eq!(dtmf_from_info("Application/DTMF-Relay; charset=x", b"signal= #\nduration=250"), Some(('#', 250)));
        assert_eq!(dtmf_from_info(relay, b"Signal=11\r\nDuration=100\r\n"), Some(('#', 100)));
        assert_eq!(dtmf_from_info(relay, b"Signal=a\r\n"), Some(('A', 0)));
        assert_eq!(dtmf_from_info("application/dtmf", b"7"), Some(('7', 0)));
        assert_eq!(dtmf_from_info(relay, b"Signal=x\r\nDuration=1\r\n"), None);
        assert_eq!(dtmf_from_info(relay, b"Duration=1\r\n"), None);
        assert_eq!(dtmf_from_info("application/sdp", b"Signal=1"), None);
        assert_eq!(dtmf_from_info(relay, &[0xFF, 0xFE]), None);
    }

    #[test]
    fn alert_after_two_bad_intervals_once_until_recovered() {
        let mut alerts = QualityAlerts::new(3.5);
        let good = leg(Some(4.3));
        let bad = leg(Some(2.9));
        assert!(alerts.observe(&bad, &good).is_empty());
        assert_eq!(alerts.observe(&bad, &good), vec![(true, 2.9)]);
        assert!(alerts.observe(&bad, &good).is_empty());
        assert!(alerts.observe(&good, &bad).is_empty());
        assert_eq!(alerts.observe(&bad, &bad), vec![(false, 2.9)]);
        assert_eq!(alerts.observe(&bad, &good), vec![(true, 2.9)]);
        // Unmeasured legs and a threshold of 0 never alert.
        assert!(alerts.observe(&leg(None), &leg(None)).is_empty());
        let mut off = QualityAlerts::new(0.0);
        assert!(off.observe(&bad, &bad).is_empty() && off.observe(&bad, &bad).is_empty());
    }
}
