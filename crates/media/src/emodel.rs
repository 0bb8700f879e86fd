//! The ITU-T G.107 E-model: a transmission rating R for one direction of a call, and the MOS
//! estimate it maps to.
//!
//! Switchboard feeds it what it measures per leg (packet loss and its burstiness, delay from the
//! round-trip time and the jitter buffer, the codec) and keeps G.107's default values for what it
//! cannot know (loudness ratings, room noise, echo loss of the handsets). With every default the
//! model gives R = 93.2, MOS 4.41: a perfect G.711 call.

/// Every input of the E-model (G.107 Table 3 names and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EModelInput {
    /// Send loudness rating, dB (SLR).
    pub slr: f64,
    /// Receive loudness rating, dB (RLR).
    pub rlr: f64,
    /// Sidetone masking rating, dB (STMR).
    pub stmr: f64,
    /// Listener sidetone rating, dB (LSTR).
    pub lstr: f64,
    /// D-value of the telephone, send side (Ds).
    pub ds: f64,
    /// D-value of the telephone, receive side (Dr).
    pub dr: f64,
    /// Talker echo loudness rating, dB (TELR).
    pub telr: f64,
    /// Weighted echo path loss, dB (WEPL).
    pub wepl: f64,
    /// Mean one-way delay of the echo path, ms (T).
    pub t: f64,
    /// Round-trip delay in a 4-wire loop, ms (Tr).
    pub tr: f64,
    /// Absolute delay in echo-free connections, ms (Ta).
    pub ta: f64,
    /// Number of quantisation distortion units (qdu).
    pub qdu: f64,
    /// Equipment impairment factor of the codec (Ie).
    pub ie: f64,
    /// Packet-loss robustness factor of the codec (Bpl).
    pub bpl: f64,
    /// Random packet-loss probability, % (Ppl).
    pub ppl: f64,
    /// Burst ratio (BurstR): 1 for random loss, more when losses come in bursts.
    pub burst_r: f64,
    /// Circuit noise referred to the 0 dBr point, dBm0p (Nc).
    pub nc: f64,
    /// Noise floor at the receive side, dBmp (Nfor).
    pub nfor: f64,
    /// Room noise at the send side, dB(A) (Ps).
    pub ps: f64,
    /// Room noise at the receive side, dB(A) (Pr).
    pub pr: f64,
    /// Advantage factor (A).
    pub a: f64,
}

impl Default for EModelInput {
    fn default() -> Self {
        EModelInput {
            slr: 8.0,
            rlr: 2.0,
            stmr: 15.0,
            lstr: 18.0,
            ds: 3.0,
            dr: 3.0,
            telr: 65.0,
            wepl: 110.0,
            t: 0.0,
            tr: 0.0,
            ta: 0.0,
            qdu: 1.0,
            ie: 0.0,
            bpl: 1.0,
            ppl: 0.0,
            burst_r: 1.0,
            nc: -70.0,
            nfor: -64.0,
            ps: 35.0,
            pr: 35.0,
            a: 0.0,
        }
    }
}

/// The impairment figures of a codec (ITU-T G.113 Appendix I where it lists the codec).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor (Ie).
    pub ie: f64,
    /// Packet-loss robustness factor (Bpl).
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.711 with packet-loss concealment (G.711 Appendix I): Ie 0, Bpl 25.1.
    pub const G711_PLC: Self = CodecImpairment { ie: 0.0, bpl: 25.1 };
    /// G.711 without concealment: Ie 0, Bpl 4.3.
    pub const G711: Self = CodecImpairment { ie: 0.0, bpl: 4.3 };
    /// G.729A with VAD: Ie 11, Bpl 19.
    pub const G729A: Self = CodecImpairment { ie: 11.0, bpl: 19.0 };
    /// G.722 and Opus, rated on the narrowband scale like G.711 with concealment (G.113 has no
    /// narrowband figures for them; both conceal losses at least as well).
    pub const WIDEBAND: Self = CodecImpairment { ie: 0.0, bpl: 25.1 };
}

/// What the E-model gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rating {
    /// Transmission rating R (0–100; 93.2 with every default).
    pub r: f64,
    /// Mean opinion score estimate, conversational quality (1–4.5).
    pub mos: f64,
    /// The parts of R: basic signal-to-noise ratio Ro, simultaneous impairments Is, delay
    /// impairments Id, effective equipment impairment Ie,eff.
    pub ro: f64,
    /// Simultaneous impairment factor Is.
    pub is: f64,
    /// Delay impairment factor Id.
    pub id: f64,
    /// Effective equipment impairment factor Ie,eff.
    pub ie_eff: f64,
}

/// Power sum helper: 10^(x/10).
fn p(x: f64) -> f64 {
    10f64.powf(x / 10.0)
}

/// Rates a connection (G.107 §7).
pub fn rate(input: &EModelInput) -> Rating {
    let i = input;
    let olr = i.slr + i.rlr;
    // Basic signal-to-noise ratio.
    let nos = i.ps - i.slr - i.ds - 100.0 + 0.004 * (i.ps - olr - i.ds - 14.0).powi(2);
    let pre = i.pr + 10.0 * (1.0 + p(10.0 - i.lstr)).log10();
    let nor = i.rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nfo = i.nfor + i.rlr;
    let no = 10.0 * (p(i.nc) + p(nos) + p(nor) + p(nfo)).log10();
    let ro = 15.0 - 1.5 * (i.slr + no);

    // Simultaneous impairments.
    let xolr = olr + 0.2 * (64.0 + no - i.rlr);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let stmro = -10.0 * (p(-i.stmr) + (-i.t / 4.0).exp() * p(-i.telr)).log10();
    let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
        + 29.0;
    let q = 37.0 - 15.0 * i.qdu.log10();
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let z = 46.0 / 30.0 - g / 40.0;
    let iq = 15.0 * (1.0 + 10f64.powf(y) + 10f64.powf(z)).log10();
    let is = iolr + ist + iq;

    // Delay impairments: talker echo, listener echo, and delay itself.
    let roe = -1.5 * (no - i.rlr);
    let mut terv = i.telr - 40.0 * ((1.0 + i.t / 10.0) / (1.0 + i.t / 150.0)).log10() + 6.0 * (-0.3 * i.t * i.t).exp();
    if i.stmr < 9.0 {
        terv += ist / 2.0;
    }
    let re = 80.0 + 2.5 * (terv - 14.0);
    // The talker-echo term vanishes as the echo path's delay goes to 0.
    let idte = ((roe - re) / 2.0 + ((roe - re).powi(2) / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-i.t).exp());
    let rle = 10.5 * (i.wepl + 7.0) * (i.tr + 1.0).powf(-0.25);
    let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
    let idd = if i.ta <= 100.0 {
        0.0
    } else {
        let x = (i.ta / 100.0).log10() / 2f64.log10();
        25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0) + 2.0)
    };
    let id = idte + idle + idd;

    // Equipment impairment with packet loss.
    let ppl = i.ppl.clamp(0.0, 100.0);
    let burst_r = i.burst_r.max(1.0);
    let ie_eff = i.ie + (95.0 - i.ie) * ppl / (ppl / burst_r + i.bpl);

    let r = ro - is - id - ie_eff + i.a;
    Rating { r, mos: mos_from_r(r), ro, is, id, ie_eff }
}

/// G.107 Annex B: the MOS (conversational quality) that a rating R corresponds to.
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// What Switchboard measures on one direction of a leg.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LegConditions {
    /// Packets lost, % (after the jitter buffer's own discards, when known).
    pub loss_pct: f64,
    /// Burst ratio (RTCP XR, or 1 when unknown).
    pub burst_ratio: f64,
    /// One-way mouth-to-ear delay, ms: half the round-trip time plus jitter buffer and codec
    /// delays.
    pub one_way_delay_ms: f64,
    /// The codec's impairment figures.
    pub codec: CodecImpairment,
}

/// Rates one direction of a leg, G.107 defaults for everything not measured. The echo path's
/// delay follows the one-way delay (the handsets' echo is controlled: TELR 65 dB).
pub fn rate_leg(conditions: &LegConditions) -> Rating {
    let delay = conditions.one_way_delay_ms.max(0.0);
    rate(&EModelInput {
        t: delay,
        tr: 2.0 * delay,
        ta: delay,
        ie: conditions.codec.ie,
        bpl: conditions.codec.bpl,
        ppl: conditions.loss_pct,
        burst_r: conditions.burst_ratio,
        ..EModelInput::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_93_2() {
        // G.107 §7.7: "the default values ... result in a rating R = 93.2".
        let rating = rate(&EModelInput::default());
        assert!((rating.r - 93.2).abs() < 0.05, "{rating:?}");
        assert!((rating.mos - 4.41).abs() < 0.01, "{rating:?}");
        // And its parts, as G.107 gives them for the defaults: Ro 94.77, Is 1.41, Id 0.15.
        assert!((rating.ro - 94.77).abs() < 0.05, "{rating:?}");
        assert!((rating.is - 1.41).abs() < 0.05, "{rating:?}");
        assert!((rating.id - 0.15).abs() < 0.05, "{rating:?}");
    }

    #[test]
    fn r_to_mos_table() {
        // G.107 Annex B, Figure B.1 / G.109 category boundaries.
        for (r, mos) in [(100.0, 4.5), (90.0, 4.34), (80.0, 4.03), (70.0, 3.60), (60.0, 3.10), (50.0, 2.58), (0.0, 1.0)]
        {
            assert!((mos_from_r(r) - mos).abs() < 0.01, "R {r}: {}", mos_from_r(r));
        }
    }

    #[test]
    fn packet_loss_lowers_the_rating() {
        let rating = |loss: f64, burst: f64, codec| {
            rate_leg(&LegConditions { loss_pct: loss, burst_ratio: burst, one_way_delay_ms: 0.0, codec }).r
        };
        // Ie,eff = 95 · Ppl / (Ppl + Bpl): 2 % random loss on G.711 with concealment ≈ 7.0.
        let clean = rating(0.0, 1.0, CodecImpairment::G711_PLC);
        assert!((clean - rating(2.0, 1.0, CodecImpairment::G711_PLC) - 95.0 * 2.0 / 27.1).abs() < 0.01);
        // Without concealment loss hurts much more; bursts hurt more than random loss.
        assert!(rating(2.0, 1.0, CodecImpairment::G711) < rating(2.0, 1.0, CodecImpairment::G711_PLC) - 20.0);
        assert!(rating(5.0, 2.0, CodecImpairment::G711_PLC) < rating(5.0, 1.0, CodecImpairment::G711_PLC));
        // G.729A costs 11 even without loss.
        assert!((clean - rating(0.0, 1.0, CodecImpairment::G729A) - 11.0).abs() < 0.01);
        // 10 % loss: R about 66; 20 %: below "many users dissatisfied" (R < 60).
        assert!((rating(10.0, 1.0, CodecImpairment::G711_PLC) - (clean - 95.0 * 10.0 / 35.1)).abs() < 0.01);
        assert!(rating(20.0, 1.0, CodecImpairment::G711_PLC) < 60.0);
    }

    #[test]
    fn delay_lowers_the_rating_past_100_ms() {
        let at = |ms: f64| {
            rate_leg(&LegConditions {
                loss_pct: 0.0,
                burst_ratio: 1.0,
                one_way_delay_ms: ms,
                codec: CodecImpairment::G711_PLC,
            })
            .r
        };
        assert!(at(0.0) - at(50.0) < 1.5);
        assert!(at(150.0) < at(50.0));
        assert!(at(400.0) < 70.0, "R at 400 ms: {}", at(400.0));
        // Monotonic.
        let mut previous = at(0.0);
        for ms in (10..600).step_by(10) {
            let r = at(f64::from(ms));
            assert!(r <= previous + 1e-9, "{ms} ms");
            previous = r;
        }
    }

    #[test]
    fn pure_delay_term() {
        // Idd = 25 · ((1 + X⁶)^⅙ − 3 (1 + (X/3)⁶)^⅙ + 2), X = log2(Ta / 100): at 200 ms X = 1.
        let with = rate(&EModelInput { ta: 200.0, ..EModelInput::default() });
        let without = rate(&EModelInput::default());
        let x: f64 = 1.0;
        let expected =
            25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0) + 2.0);
        assert!((with.id - without.id - expected).abs() < 1e-9);
        assert!((expected - 3.05).abs() < 0.01);
    }
}
