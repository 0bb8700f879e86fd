//! Measuring audio: level, power at one frequency (Goertzel), dominant frequency.

use std::f64::consts::TAU;

/// Root mean square of `samples` (0 for none).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Power of `samples` at `frequency` (Goertzel), scaled so that a sine of amplitude A at exactly
/// that frequency gives about its energy over the block, `A² · N / 2`: comparable with the sum of
/// squares of the block.
pub fn goertzel_power(samples: &[f32], frequency: f64, sample_rate: u32) -> f32 {
    goertzel_powers(samples, &[goertzel_coefficient(frequency, sample_rate)])[0]
}

/// The Goertzel coefficient of `frequency` (2·cos ω), for [`goertzel_powers`].
pub fn goertzel_coefficient(frequency: f64, sample_rate: u32) -> f32 {
    (2.0 * (TAU * frequency / f64::from(sample_rate)).cos()) as f32
}

/// [`goertzel_power`] at several frequencies in one pass over `samples`: the filters run side by
/// side, so their recurrences do not wait on each other (each gives the same result as alone).
pub fn goertzel_powers<const K: usize>(samples: &[f32], coefficients: &[f32; K]) -> [f32; K] {
    let (mut s1, mut s2) = ([0.0f32; K], [0.0f32; K]);
    for &x in samples {
        for k in 0..K {
            let s0 = x + coefficients[k] * s1[k] - s2[k];
            s2[k] = s1[k];
            s1[k] = s0;
        }
    }
    let n = samples.len().max(1) as f32;
    std::array::from_fn(|k| 2.0 * (s1[k] * s1[k] + s2[k] * s2[k] - coefficients[k] * s1[k] * s2[k]) / n)
}

/// The frequency (Hz, to about 0.1 Hz) with the most power in `samples`, between 20 Hz and the
/// Nyquist frequency.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> f64 {
    let block: Vec<f32> = samples.iter().map(|&s| f32::from(s)).collect();
    let nyquist = f64::from(sample_rate) / 2.0;
    let best_in = |from: f64, to: f64, step: f64| {
        let mut best = (from, f32::MIN);
        let mut f = from;
        while f <= to {
            let p = goertzel_power(&block, f, sample_rate);
            if p > best.1 {
                best = (f, p);
            }
            f += step;
        }
        best.0
    };
    let coarse = best_in(20.0, nyquist - 20.0, 5.0);
    let fine = best_in((coarse - 5.0).max(20.0), coarse + 5.0, 0.5);
    best_in(fine - 0.5, fine + 0.5, 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amplitude: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n).map(|i| (amplitude * (TAU * freq * i as f64 / f64::from(rate)).sin()) as i16).collect()
    }

    #[test]
    fn finds_a_sine() {
        for (freq, rate) in [(440.0, 8000), (1004.0, 16000), (7100.0, 48000)] {
            let found = dominant_frequency(&sine(freq, 8000.0, rate, rate as usize / 4), rate);
            assert!((found - freq).abs() < 0.5, "{freq} Hz at {rate}: found {found}");
        }
    }

    #[test]
    fn a_bank_of_filters_gives_each_filter_s_result() {
        let block: Vec<f32> = sine(941.0, 3000.0, 8000, 102).iter().map(|&s| f32::from(s)).collect();
        let freqs = [697.0, 941.0, 1209.0, 1633.0];
        let bank = goertzel_powers(&block, &freqs.map(|f| goertzel_coefficient(f, 8000)));
        for (f, p) in freqs.iter().zip(bank) {
            let mut single = (0.0f32, 0.0f32);
            let c = goertzel_coefficient(*f, 8000);
            for &x in &block {
                single = (x + c * single.0 - single.1, single.0);
            }
            let alone = 2.0 * (single.0 * single.0 + single.1 * single.1 - c * single.0 * single.1) / 102.0;
            assert_eq!(p.to_bits(), alone.to_bits(), "{f} Hz");
        }
    }

    #[test]
    fn goertzel_power_is_the_block_energy_of_a_sine() {
        let samples = sine(1000.0, 1000.0, 8000, 400);
        let block: Vec<f32> = samples.iter().map(|&s| f32::from(s)).collect();
        let energy: f32 = block.iter().map(|x| x * x).sum();
        let power = goertzel_power(&block, 1000.0, 8000);
        assert!((power / energy - 1.0).abs() < 0.02, "{power} vs {energy}");
        assert!(goertzel_power(&block, 1500.0, 8000) < energy * 0.01);
        assert_eq!(rms(&[]), 0.0);
        assert!((rms(&samples) - 1000.0 / 2f64.sqrt()).abs() < 5.0);
    }
}
