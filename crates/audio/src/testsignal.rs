//! Reproducible test signals: noise, speech-like and music-like audio, for detector tests
//! (talk-off: a DTMF detector must find nothing in them) and for benchmarks.

use std::f64::consts::TAU;

/// A small deterministic random source (xorshift64*), so test signals are the same every run.
#[derive(Clone, Debug)]
pub struct Noise {
    state: u64,
}

impl Noise {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Noise { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
    }
}

/// A two-pole resonator (one formant).
struct Resonator {
    a1: f64,
    a2: f64,
    gain: f64,
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn new() -> Self {
        Resonator { a1: 0.0, a2: 0.0, gain: 0.0, y1: 0.0, y2: 0.0 }
    }

    fn tune(&mut self, frequency: f64, bandwidth: f64, rate: f64) {
        let r = (-std::f64::consts::PI * bandwidth / rate).exp();
        self.a1 = 2.0 * r * (TAU * frequency / rate).cos();
        self.a2 = -r * r;
        self.gain = 1.0 - r;
    }

    fn run(&mut self, x: f64) -> f64 {
        let y = self.gain * x + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Speech-like audio: voiced syllables (a glottal pulse train with a wandering pitch through
/// three formant resonators), unvoiced fricatives (filtered noise) and pauses, at a conversational
/// level (about −20 dBm0 while talking).
pub fn speech(sample_rate: u32, seconds: f64, seed: u64) -> Vec<i16> {
    // (F1, F2, F3) of common vowels, Hz.
    const VOWELS: [(f64, f64, f64); 8] = [
        (730.0, 1090.0, 2440.0),
        (270.0, 2290.0, 3010.0),
        (530.0, 1840.0, 2480.0),
        (570.0, 840.0, 2410.0),
        (300.0, 870.0, 2240.0),
        (660.0, 1720.0, 2410.0),
        (440.0, 1020.0, 2240.0),
        (490.0, 1350.0, 1690.0),
    ];
    let rate = f64::from(sample_rate);
    let total = (seconds * rate) as usize;
    let mut rng = Noise::new(seed ^ 0x5EED);
    let mut out = Vec::with_capacity(total);
    let mut formants = [Resonator::new(), Resonator::new(), Resonator::new()];
    let mut phase = 0.0;
    let base_pitch = 90.0 + 140.0 * rng.uniform();
    while out.len() < total {
        let kind = rng.uniform();
        let length = ((0.08 + 0.25 * rng.uniform()) * rate) as usize;
        if kind < 0.15 {
            out.extend(std::iter::repeat_n(0i16, length));
            continue;
        }
        let voiced = kind >= 0.3;
        let (f1, f2, f3) = VOWELS[(rng.uniform() * VOWELS.len() as f64) as usize % VOWELS.len()];
        let nyquist = rate / 2.0 - 100.0;
        formants[0].tune(f1.min(nyquist), 90.0, rate);
        formants[1].tune(f2.min(nyquist), 110.0, rate);
        formants[2].tune(f3.min(nyquist), 170.0, rate);
        if !voiced {
            formants[0].tune((2500.0f64).min(nyquist), 1500.0, rate);
        }
        let start_pitch = base_pitch * (0.8 + 0.4 * rng.uniform());
        let end_pitch = base_pitch * (0.8 + 0.4 * rng.uniform());
        for i in 0..length {
            let t = i as f64 / length as f64;
            let envelope = (std::f64::consts::PI * t).sin().powf(0.6);
            let excitation = if voiced {
                let pitch = start_pitch + (end_pitch - start_pitch) * t;
                phase += pitch * (1.0 + 0.01 * rng.gaussian()) / rate;
                if phase >= 1.0 {
                    phase -= 1.0;
                    1.0
                } else {
                    0.0
                }
            } else {
                0.05 * rng.gaussian()
            };
            let y = formants.iter_mut().fold(0.0, |acc, f| acc + f.run(excitation));
            out.push((y * envelope * 60_000.0).clamp(-32768.0, 32767.0) as i16);
        }
    }
    out.truncate(total);
    out
}

/// Music-like audio: chords and melody notes of the chromatic scale between C4 and C7 (many near
/// the DTMF frequencies: F5 ≈ 697 Hz, A♯5 ≈ 941 Hz, F♯6 ≈ 1477 Hz...), each with harmonics falling
/// as 1/n like strings or brass, with attack and decay.
pub fn music(sample_rate: u32, seconds: f64, seed: u64) -> Vec<i16> {
    let rate = f64::from(sample_rate);
    let total = (seconds * rate) as usize;
    let mut rng = Noise::new(seed ^ 0x0A11);
    let mut out = vec![0f64; total];
    let mut at = 0usize;
    while at < total {
        let length = ((0.1 + 0.5 * rng.uniform()) * rate) as usize;
        let voices = 1 + (rng.uniform() * 3.0) as usize;
        for _ in 0..voices {
            // MIDI 60 (C4) to 96 (C7).
            let note = 60.0 + (rng.uniform() * 37.0).floor();
            let frequency = 440.0 * 2f64.powf((note - 69.0) / 12.0);
            let level = 2500.0 + 3000.0 * rng.uniform();
            for n in 1..=8 {
                let harmonic = frequency * f64::from(n);
                if harmonic >= rate / 2.0 - 50.0 {
                    break;
                }
                let amplitude = level / f64::from(n);
                for i in 0..length.min(total - at) {
                    let t = i as f64 / rate;
                    let envelope = (t / 0.01).min(1.0) * (-t * 3.0).exp();
                    out[at + i] += amplitude * envelope * (TAU * harmonic * t).sin();
                }
            }
        }
        at += length;
    }
    out.into_iter().map(|v| v.clamp(-32768.0, 32767.0) as i16).collect()
}
