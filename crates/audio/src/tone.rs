//! Tone generation: sums of sine waves switched on and off by a repeating cadence, at any sample
//! rate. Call-progress tones (ringback, busy, congestion, call waiting, dial) for the French,
//! European (CEPT) and North American plans, and the DTMF pairs.

use std::f64::consts::TAU;

/// Amplitude (16-bit peak) of a sine at `dbm0` (G.711: a full-scale sine is +3.17 dBm0).
pub fn amplitude_for_dbm0(dbm0: f64) -> f64 {
    32767.0 * 10f64.powf((dbm0 - 3.17) / 20.0)
}

/// Level in dBm0 of a sine of 16-bit peak `amplitude`.
pub fn dbm0_for_amplitude(amplitude: f64) -> f64 {
    20.0 * (amplitude / 32767.0).log10() + 3.17
}

/// What a tone sounds like: frequencies (each at its own level) and a cadence.
#[derive(Clone, Debug, PartialEq)]
pub struct ToneSpec {
    /// (frequency in Hz, level in dBm0) of each component, summed.
    pub components: Vec<(f64, f64)>,
    /// Alternating on and off durations in milliseconds, starting with on, repeated; empty means
    /// continuous.
    pub cadence_ms: Vec<u32>,
    /// Whether the cadence repeats; if not, the tone ends after one pass.
    pub repeat: bool,
}

/// Which country's call-progress tones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TonePlan {
    /// France (440 Hz).
    France,
    /// CEPT / ETSI TR 101 041 European recommendation (425 Hz).
    Europe,
    /// North America (precise tone plan, dual frequencies).
    NorthAmerica,
}

/// A call-progress tone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgressTone {
    /// Dial tone (continuous).
    Dial,
    /// Ringback (the caller hears the callee ringing).
    Ringback,
    /// Busy.
    Busy,
    /// Congestion / reorder (no route, network busy).
    Congestion,
    /// Call waiting (a short beep over a call in progress).
    CallWaiting,
}

impl TonePlan {
    /// The spec of `tone` in this plan.
    pub fn spec(self, tone: ProgressTone) -> ToneSpec {
        use ProgressTone::*;
        let single = |f: f64, cadence: &[u32]| ToneSpec {
            components: vec![(f, -13.0)],
            cadence_ms: cadence.to_vec(),
            repeat: true,
        };
        let dual = |f1: f64, f2: f64, cadence: &[u32]| ToneSpec {
            components: vec![(f1, -16.0), (f2, -16.0)],
            cadence_ms: cadence.to_vec(),
            repeat: true,
        };
        match (self, tone) {
            (TonePlan::France, Dial) => single(440.0, &[]),
            (TonePlan::France, Ringback) => single(440.0, &[1500, 3500]),
            (TonePlan::France, Busy) => single(440.0, &[500, 500]),
            (TonePlan::France, Congestion) => single(440.0, &[250, 250]),
            (TonePlan::France, CallWaiting) => single(440.0, &[300, 10_000]),
            (TonePlan::Europe, Dial) => single(425.0, &[]),
            (TonePlan::Europe, Ringback) => single(425.0, &[1000, 4000]),
            (TonePlan::Europe, Busy) => single(425.0, &[500, 500]),
            (TonePlan::Europe, Congestion) => single(425.0, &[200, 200]),
            (TonePlan::Europe, CallWaiting) => single(425.0, &[200, 200, 200, 4400]),
            (TonePlan::NorthAmerica, Dial) => dual(350.0, 440.0, &[]),
            (TonePlan::NorthAmerica, Ringback) => dual(440.0, 480.0, &[2000, 4000]),
            (TonePlan::NorthAmerica, Busy) => dual(480.0, 620.0, &[500, 500]),
            (TonePlan::NorthAmerica, Congestion) => dual(480.0, 620.0, &[250, 250]),
            (TonePlan::NorthAmerica, CallWaiting) => single(440.0, &[300, 9700]),
        }
    }
}

/// Low-group (row) and high-group (column) frequencies of a DTMF digit (`0-9`, `*`, `#`, `A-D`).
pub fn dtmf_frequencies(digit: char) -> Option<(f64, f64)> {
    let (row, col) = match digit.to_ascii_uppercase() {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    Some((DTMF_ROWS[row], DTMF_COLS[col]))
}

/// DTMF low-group frequencies (Hz).
pub const DTMF_ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// DTMF high-group frequencies (Hz).
pub const DTMF_COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// DTMF keypad: `DTMF_KEYS[row][col]`.
pub const DTMF_KEYS: [[char; 4]; 4] =
    [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];

/// The tone of one DTMF digit for `on_ms`, at the usual levels (low group −7 dBm0, high group
/// −5 dBm0: the high group a little louder, as phones send it), played once.
pub fn dtmf_spec(digit: char, on_ms: u32) -> Option<ToneSpec> {
    let (row, col) = dtmf_frequencies(digit)?;
    Some(ToneSpec { components: vec![(row, -7.0), (col, -5.0)], cadence_ms: vec![on_ms], repeat: false })
}

/// Generates a [`ToneSpec`] sample by sample, continuing across calls (phase kept), so a tone
/// can be played into 20 ms packets one after another.
#[derive(Clone, Debug)]
pub struct ToneGenerator {
    /// Per component: phase increment per sample, amplitude.
    oscillators: Vec<(f64, f64)>,
    phases: Vec<f64>,
    /// Cadence in samples (on, off, on, ...).
    cadence: Vec<u64>,
    repeat: bool,
    /// Position within the cadence pass, in samples.
    position: u64,
    /// Length of one cadence pass in samples (0: continuous).
    period: u64,
    finished: bool,
}

impl ToneGenerator {
    /// A generator of `spec` at `sample_rate` Hz.
    pub fn new(spec: &ToneSpec, sample_rate: u32) -> Self {
        let rate = f64::from(sample_rate);
        let cadence: Vec<u64> =
            spec.cadence_ms.iter().map(|&ms| u64::from(ms) * u64::from(sample_rate) / 1000).collect();
        ToneGenerator {
            oscillators: spec.components.iter().map(|&(f, dbm0)| (TAU * f / rate, amplitude_for_dbm0(dbm0))).collect(),
            phases: vec![0.0; spec.components.len()],
            period: cadence.iter().sum(),
            cadence,
            repeat: spec.repeat,
            position: 0,
            finished: false,
        }
    }

    /// Whether a non-repeating tone has played out.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Fills `out` with the next samples; after a non-repeating tone ends, silence.
    pub fn fill(&mut self, out: &mut [i16]) {
        for sample in out {
            *sample = if self.sounding() { self.next_value() } else { 0 };
            self.advance();
        }
    }

    fn sounding(&self) -> bool {
        if self.finished {
            return false;
        }
        if self.period == 0 {
            return true;
        }
        let mut at = self.position;
        for (i, &len) in self.cadence.iter().enumerate() {
            if at < len {
                return i % 2 == 0;
            }
            at -= len;
        }
        false
    }

    fn next_value(&mut self) -> i16 {
        let mut value = 0.0;
        for ((step, amplitude), phase) in self.oscillators.iter().zip(&mut self.phases) {
            value += amplitude * phase.sin();
            *phase += step;
            if *phase >= TAU {
                *phase -= TAU;
            }
        }
        value.round().clamp(-32768.0, 32767.0) as i16
    }

    fn advance(&mut self) {
        if self.period == 0 || self.finished {
            return;
        }
        self.position += 1;
        if self.position >= self.period {
            if self.repeat {
                self.position = 0;
            } else {
                self.finished = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{dominant_frequency, rms};

    #[test]
    fn levels_round_trip() {
        assert!((dbm0_for_amplitude(amplitude_for_dbm0(-13.0)) + 13.0).abs() < 1e-9);
        // A full-scale sine is +3.17 dBm0.
        assert!((amplitude_for_dbm0(3.17) - 32767.0).abs() < 1e-6);
    }

    #[test]
    fn busy_tones_follow_their_cadence_and_frequency() {
        for (plan, freq) in [(TonePlan::France, 440.0), (TonePlan::Europe, 425.0)] {
            let mut generator = ToneGenerator::new(&plan.spec(ProgressTone::Busy), 8000);
            let mut samples = vec![0i16; 8000];
            generator.fill(&mut samples);
            // 500 ms on, 500 ms off.
            let on = &samples[400..3600];
            let off = &samples[4100..7900];
            assert!(rms(on) > 1000.0, "{plan:?}: on part has level {}", rms(on));
            assert_eq!(rms(off), 0.0, "{plan:?}");
            let found = dominant_frequency(on, 8000);
            assert!((found - freq).abs() < freq * 0.01, "{plan:?}: {found} Hz");
        }
    }

    #[test]
    fn ringback_cadences_differ_by_plan() {
        let on_ms = |plan: TonePlan| {
            let mut generator = ToneGenerator::new(&plan.spec(ProgressTone::Ringback), 8000);
            let mut samples = vec![0i16; 8000 * 6];
            generator.fill(&mut samples);
            let first_silent = samples.chunks(80).position(|c| rms(c) == 0.0).unwrap_or(0);
            first_silent * 10
        };
        assert_eq!(on_ms(TonePlan::France), 1500);
        assert_eq!(on_ms(TonePlan::Europe), 1000);
        assert_eq!(on_ms(TonePlan::NorthAmerica), 2000);
    }

    #[test]
    fn phase_continues_across_fills() {
        let spec = TonePlan::France.spec(ProgressTone::Dial);
        let mut whole = ToneGenerator::new(&spec, 16000);
        let mut pieces = ToneGenerator::new(&spec, 16000);
        let mut a = vec![0i16; 960];
        whole.fill(&mut a);
        let mut b = vec![0i16; 960];
        for chunk in b.chunks_mut(320) {
            pieces.fill(chunk);
        }
        assert_eq!(a, b);
    }

    #[test]
    fn a_single_digit_ends() {
        let spec = dtmf_spec('5', 100).expect("digit");
        let mut generator = ToneGenerator::new(&spec, 8000);
        let mut samples = vec![0i16; 1600];
        generator.fill(&mut samples);
        assert!(generator.is_finished());
        assert!(rms(&samples[..800]) > 1000.0);
        assert_eq!(rms(&samples[800..]), 0.0);
        assert!(dtmf_spec('x', 100).is_none());
    }
}
