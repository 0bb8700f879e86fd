//! 2:1 sample-rate conversion between 8 kHz and 16 kHz (narrowband ↔ wideband), streaming.
//!
//! A linear-phase FIR low-pass (windowed sinc, Blackman window, cut-off at a quarter of the high
//! rate: 4 kHz) removes what the lower rate cannot carry before decimation, and the images after
//! zero-stuffing. The filter keeps its history between calls, so 20 ms packets can be converted
//! one after another with no seams. Delay: (TAPS − 1) / 2 samples at 16 kHz.

use std::f64::consts::PI;
use std::sync::OnceLock;

/// Filter length (odd: symmetric around its centre tap).
pub const TAPS: usize = 31;

fn coefficients() -> &'static [f32; TAPS] {
    static COEFFICIENTS: OnceLock<[f32; TAPS]> = OnceLock::new();
    COEFFICIENTS.get_or_init(|| {
        let mut h = [0f32; TAPS];
        let centre = (TAPS - 1) as f64 / 2.0;
        let cutoff = 0.25; // of the 16 kHz rate: 4 kHz
        let mut sum = 0.0;
        let mut taps = [0f64; TAPS];
        for (n, tap) in taps.iter_mut().enumerate() {
            let x = n as f64 - centre;
            let sinc = if x == 0.0 { 2.0 * cutoff } else { (2.0 * PI * cutoff * x).sin() / (PI * x) };
            let w = 0.42 - 0.5 * (2.0 * PI * n as f64 / (TAPS - 1) as f64).cos()
                + 0.08 * (4.0 * PI * n as f64 / (TAPS - 1) as f64).cos();
            *tap = sinc * w;
            sum += *tap;
        }
        for (out, tap) in h.iter_mut().zip(taps) {
            *out = (tap / sum) as f32; // unity gain at DC
        }
        h
    })
}

fn saturate(v: f32) -> i16 {
    v.round().clamp(-32768.0, 32767.0) as i16
}

/// A window of the last `N` values, kept twice over so that it can always be read as one
/// contiguous slice (oldest first) without shifting on every sample.
#[derive(Clone, Debug)]
struct History<const N: usize> {
    values: Vec<f32>,
    /// Where the next value goes (0..N).
    at: usize,
}

impl<const N: usize> History<N> {
    fn new() -> Self {
        History { values: vec![0.0; 2 * N], at: 0 }
    }

    fn push(&mut self, value: f32) {
        self.values[self.at] = value;
        self.values[self.at + N] = value;
        self.at = (self.at + 1) % N;
    }

    /// The last N values, oldest first.
    fn window(&self) -> &[f32] {
        &self.values[self.at..self.at + N]
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// 16 kHz → 8 kHz.
#[derive(Clone, Debug)]
pub struct Downsampler {
    history: History<TAPS>,
    /// An input sample waiting for its pair (odd-length input).
    odd: Option<i16>,
}

impl Default for Downsampler {
    fn default() -> Self {
        Downsampler { history: History::new(), odd: None }
    }
}

impl Downsampler {
    /// A downsampler with silent history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts `input` (16 kHz), appending to `out` (8 kHz): one sample per two in.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let h = coefficients();
        let mut samples = input.iter().copied();
        if let Some(first) = self.odd.take() {
            let Some(second) = samples.next() else {
                self.odd = Some(first);
                return;
            };
            self.history.push(f32::from(first));
            self.history.push(f32::from(second));
            out.push(saturate(dot(self.history.window(), h)));
        }
        while let Some(a) = samples.next() {
            let Some(b) = samples.next() else {
                self.odd = Some(a);
                break;
            };
            self.history.push(f32::from(a));
            self.history.push(f32::from(b));
            out.push(saturate(dot(self.history.window(), h)));
        }
    }
}

/// Taps of the upsampler's two phases: the zero-stuffed signal meets the even taps when the
/// newest value is a real sample, the odd taps when it is a stuffed zero (oldest first, gain 2).
fn phases() -> &'static ([f32; PHASE_EVEN], [f32; PHASE_ODD]) {
    static PHASES: OnceLock<([f32; PHASE_EVEN], [f32; PHASE_ODD])> = OnceLock::new();
    PHASES.get_or_init(|| {
        let h = coefficients();
        let even = std::array::from_fn(|k| 2.0 * h[2 * k]);
        // With a zero newest, the real samples sit at the odd taps 1, 3, ..., 29.
        let odd = std::array::from_fn(|k| 2.0 * h[2 * k + 1]);
        (even, odd)
    })
}

const PHASE_EVEN: usize = TAPS.div_ceil(2);
const PHASE_ODD: usize = TAPS / 2;

/// 8 kHz → 16 kHz.
#[derive(Clone, Debug)]
pub struct Upsampler {
    /// The last input samples (8 kHz), oldest first.
    history: History<PHASE_EVEN>,
}

impl Default for Upsampler {
    fn default() -> Self {
        Upsampler { history: History::new() }
    }
}

impl Upsampler {
    /// An upsampler with silent history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts `input` (8 kHz), appending to `out` (16 kHz): two samples per one in.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let (even, odd) = phases();
        for &x in input {
            self.history.push(f32::from(x));
            let window = self.history.window();
            // Newest real sample at the last tap.
            out.push(saturate(dot(window, even)));
            // One stuffed zero later: the same samples one tap further, the newest at tap 29.
            out.push(saturate(dot(&window[1..], odd)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{dominant_frequency, goertzel_power};
    use std::f64::consts::TAU;

    fn sine(freq: f64, rate: u32, n: usize, amplitude: f64) -> Vec<i16> {
        (0..n).map(|i| (amplitude * (TAU * freq * i as f64 / f64::from(rate)).sin()) as i16).collect()
    }

    fn power(samples: &[i16], freq: f64, rate: u32) -> f32 {
        let block: Vec<f32> = samples.iter().map(|&s| f32::from(s)).collect();
        goertzel_power(&block, freq, rate)
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_level_both_ways() {
        let wide = sine(1000.0, 16000, 16000, 10000.0);
        let mut narrow = Vec::new();
        let mut down = Downsampler::new();
        for chunk in wide.chunks(320) {
            down.process(chunk, &mut narrow);
        }
        assert_eq!(narrow.len(), 8000);
        let steady = &narrow[100..];
        assert!((dominant_frequency(steady, 8000) - 1000.0).abs() < 1.0);
        let expected = power(&sine(1000.0, 8000, steady.len(), 10000.0), 1000.0, 8000);
        let ratio = power(steady, 1000.0, 8000) / expected;
        assert!((0.9..1.1).contains(&ratio), "level ratio {ratio}");

        let mut back = Vec::new();
        let mut up = Upsampler::new();
        for chunk in narrow.chunks(160) {
            up.process(chunk, &mut back);
        }
        assert_eq!(back.len(), 16000);
        let steady = &back[200..];
        assert!((dominant_frequency(steady, 16000) - 1000.0).abs() < 1.0);
        let ratio = power(steady, 1000.0, 16000) / power(&wide[200..], 1000.0, 16000);
        assert!((0.85..1.15).contains(&ratio), "level ratio {ratio}");
    }

    #[test]
    fn what_8_khz_cannot_carry_is_filtered_not_aliased() {
        // 6 kHz at 16 kHz would alias to 2 kHz at 8 kHz.
        let wide = sine(6000.0, 16000, 3200, 10000.0);
        let mut narrow = Vec::new();
        Downsampler::new().process(&wide, &mut narrow);
        let alias = power(&narrow[50..], 2000.0, 8000);
        let full = power(&sine(2000.0, 8000, narrow.len() - 50, 10000.0), 2000.0, 8000);
        assert!(alias < full * 1e-3, "alias only {} dB down", 10.0 * (alias / full).log10());
        // Upsampling leaves no image at 16 kHz − f.
        let mut wide_again = Vec::new();
        Upsampler::new().process(&sine(1000.0, 8000, 1600, 10000.0), &mut wide_again);
        let image = power(&wide_again[100..], 7000.0, 16000);
        let wanted = power(&wide_again[100..], 1000.0, 16000);
        assert!(image < wanted * 1e-3, "image only {} dB down", 10.0 * (image / wanted).log10());
    }

    #[test]
    fn odd_chunks_give_the_same_output() {
        let wide = sine(700.0, 16000, 999, 8000.0);
        let mut whole = Vec::new();
        Downsampler::new().process(&wide, &mut whole);
        let mut pieces = Vec::new();
        let mut down = Downsampler::new();
        for chunk in wide.chunks(37) {
            down.process(chunk, &mut pieces);
        }
        assert_eq!(whole, pieces);
        let mut extreme = Vec::new();
        Upsampler::new().process(&[i16::MIN, i16::MAX, i16::MIN, i16::MAX], &mut extreme);
        Downsampler::new().process(&[i16::MAX; 64], &mut extreme);
    }
}
