//! In-band DTMF detection at 8 kHz (other rates are resampled by the caller first).
//!
//! The signal is cut into blocks of 102 samples (12.75 ms). In each block a Goertzel filter
//! measures the eight DTMF frequencies, and the block "hits" a digit when:
//! - the strongest low-group and high-group tones are each above the minimum level
//!   (about −32 dBm0, so that −25 dBm0 per tone, the lowest Q.24 level, always operates);
//! - the twist (level difference between the two groups) is within limits: the high group at
//!   most 4 dB above the low group, the low group at most 8 dB above the high group;
//! - each of the two tones stands out from the other three of its group;
//! - together they carry most of the block's energy (the talk-off guard: speech and music
//!   spread their energy over harmonics and formants; a DTMF signal has almost nothing else).
//!
//! A digit begins after two consecutive hits (so a tone of 40 ms, Q.24's minimum, is always
//! found, and one of 20 ms never is: at most one full block fits in it and a partly filled block
//! fails the energy test), and ends after two consecutive blocks without it (so a break of one
//! block, up to about 12 ms, does not split a digit, while a 40 ms pause always separates two).
//! Events carry sample positions, so durations are exact to a block whatever the packetisation.

use crate::analysis::{goertzel_coefficient, goertzel_powers};
use crate::tone::{DTMF_COLS, DTMF_KEYS, DTMF_ROWS, amplitude_for_dbm0};

/// Samples per analysis block at 8 kHz.
pub const BLOCK: usize = 102;
const SAMPLE_RATE: u32 = 8000;

/// Detection thresholds; the defaults follow ITU-T Q.24.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DtmfLimits {
    /// Lowest level of each tone, dBm0.
    pub min_level_dbm0: f64,
    /// How much louder the high group may be than the low group, dB.
    pub max_high_over_low_db: f64,
    /// How much louder the low group may be than the high group, dB.
    pub max_low_over_high_db: f64,
    /// How far above the other tones of its group each tone must be, dB.
    pub min_group_margin_db: f64,
    /// Share of the block's energy the two tones must carry.
    pub min_energy_share: f64,
}

impl Default for DtmfLimits {
    fn default() -> Self {
        DtmfLimits {
            min_level_dbm0: -32.0,
            max_high_over_low_db: 4.0,
            max_low_over_high_db: 8.0,
            min_group_margin_db: 6.0,
            min_energy_share: 0.8,
        }
    }
}

/// A digit found in the audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A digit started, at this sample position (counted from the first sample pushed).
    Began {
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// Sample position of its first block.
        at: u64,
    },
    /// The digit ended.
    Ended {
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// Sample position of its first block.
        at: u64,
        /// Duration in samples (first to last block that held it).
        duration: u64,
    },
}

impl DtmfEvent {
    /// The digit.
    pub fn digit(&self) -> char {
        match *self {
            DtmfEvent::Began { digit, .. } | DtmfEvent::Ended { digit, .. } => digit,
        }
    }
}

/// The in-band DTMF detector of one audio stream (8 kHz, 16-bit linear).
#[derive(Clone, Debug)]
pub struct DtmfDetector {
    limits: DtmfLimits,
    /// Goertzel power threshold per tone, in block-energy units.
    min_power: f32,
    /// Goertzel coefficients of the low group then the high group.
    coefficients: [f32; 8],
    block: [f32; BLOCK],
    filled: usize,
    /// Sample position of the start of `block`.
    block_start: u64,
    /// The last block's hit, and where the run of identical hits started and how long it is.
    candidate: Option<char>,
    candidate_start: u64,
    candidate_run: u32,
    /// The digit being held, its start, the end of its last hit block, and the misses since.
    current: Option<(char, u64, u64)>,
    misses: u32,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new(DtmfLimits::default())
    }
}

impl DtmfDetector {
    /// A detector with these limits.
    pub fn new(limits: DtmfLimits) -> Self {
        let amplitude = amplitude_for_dbm0(limits.min_level_dbm0) as f32;
        DtmfDetector {
            limits,
            min_power: amplitude * amplitude * BLOCK as f32 / 2.0,
            coefficients: std::array::from_fn(|i| {
                goertzel_coefficient(if i < 4 { DTMF_ROWS[i] } else { DTMF_COLS[i - 4] }, SAMPLE_RATE)
            }),
            block: [0.0; BLOCK],
            filled: 0,
            block_start: 0,
            candidate: None,
            candidate_start: 0,
            candidate_run: 0,
            current: None,
            misses: 0,
        }
    }

    /// Feeds 8 kHz samples; events found are appended to `events`.
    pub fn push(&mut self, samples: &[i16], events: &mut Vec<DtmfEvent>) {
        for &sample in samples {
            self.block[self.filled] = f32::from(sample);
            self.filled += 1;
            if self.filled == BLOCK {
                let hit = self.classify();
                self.step(hit, events);
                self.filled = 0;
                self.block_start += BLOCK as u64;
            }
        }
    }

    /// Ends a digit still held (the stream stopped), as if silence followed.
    pub fn flush(&mut self, events: &mut Vec<DtmfEvent>) {
        if let Some((digit, at, last_end)) = self.current.take() {
            events.push(DtmfEvent::Ended { digit, at, duration: last_end - at });
        }
        self.candidate = None;
        self.candidate_run = 0;
        self.misses = 0;
    }

    fn step(&mut self, hit: Option<char>, events: &mut Vec<DtmfEvent>) {
        let block_end = self.block_start + BLOCK as u64;
        if hit.is_some() && hit == self.candidate {
            self.candidate_run += 1;
        } else {
            self.candidate = hit;
            self.candidate_start = self.block_start;
            self.candidate_run = 1;
        }
        if let Some((digit, at, _)) = self.current {
            if hit == Some(digit) {
                self.current = Some((digit, at, block_end));
                self.misses = 0;
                return;
            }
            self.misses += 1;
            let replaced = hit.is_some() && self.candidate_run >= 2;
            if self.misses < 2 && !replaced {
                return;
            }
            if let Some((digit, at, last_end)) = self.current.take() {
                events.push(DtmfEvent::Ended { digit, at, duration: last_end - at });
            }
            self.misses = 0;
        }
        if let Some(digit) = hit
            && self.candidate_run >= 2
        {
            self.current = Some((digit, self.candidate_start, block_end));
            events.push(DtmfEvent::Began { digit, at: self.candidate_start });
        }
    }

    /// The digit this block holds, if any.
    fn classify(&self) -> Option<char> {
        let block = &self.block;
        let energy: f32 = block.iter().map(|x| x * x).sum();
        // A tone's normalised Goertzel power is at most twice the block's energy: a block this
        // quiet cannot reach the level limit (margin kept for rounding), so skip the filters.
        if 4.0 * energy < self.min_power {
            return None;
        }
        let powers = goertzel_powers(block, &self.coefficients);
        let rows = [powers[0], powers[1], powers[2], powers[3]];
        let cols = [powers[4], powers[5], powers[6], powers[7]];
        let (row, row_power) = strongest(&rows);
        let (col, col_power) = strongest(&cols);
        if row_power < self.min_power || col_power < self.min_power {
            return None;
        }
        let db = |ratio: f32| 10.0 * f64::from(ratio).log10();
        let twist = db(col_power / row_power);
        if twist > self.limits.max_high_over_low_db || -twist > self.limits.max_low_over_high_db {
            return None;
        }
        let margin = |powers: &[f32; 4], best: usize| {
            powers
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != best)
                .all(|(_, &p)| db(powers[best] / p.max(1e-3)) >= self.limits.min_group_margin_db)
        };
        if !margin(&rows, row) || !margin(&cols, col) {
            return None;
        }
        if f64::from(row_power + col_power) < self.limits.min_energy_share * f64::from(energy) {
            return None;
        }
        Some(DTMF_KEYS[row][col])
    }
}

fn strongest(powers: &[f32; 4]) -> (usize, f32) {
    let mut best = (0, powers[0]);
    for (i, &p) in powers.iter().enumerate().skip(1) {
        if p > best.1 {
            best = (i, p);
        }
    }
    best
}

/// Runs a whole 8 kHz signal through a fresh detector: the digits found with their durations
/// in milliseconds.
pub fn detect_all(samples: &[i16]) -> Vec<(char, u32)> {
    let mut detector = DtmfDetector::default();
    let mut events = Vec::new();
    detector.push(samples, &mut events);
    detector.flush(&mut events);
    events
        .into_iter()
        .filter_map(|e| match e {
            DtmfEvent::Ended { digit, duration, .. } => {
                Some((digit, (duration * 1000 / u64::from(SAMPLE_RATE)) as u32))
            }
            DtmfEvent::Began { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsignal::{Noise, music, speech};
    use crate::tone::{ToneGenerator, ToneSpec, dtmf_frequencies, dtmf_spec};

    const ALL: &str = "123A456B789C*0#D";

    fn digit_signal(digit: char, on_ms: u32) -> Vec<i16> {
        let spec = dtmf_spec(digit, on_ms).expect("digit");
        let mut samples = vec![0i16; on_ms as usize * 8];
        ToneGenerator::new(&spec, 8000).fill(&mut samples);
        samples
    }

    fn silence(ms: u32) -> Vec<i16> {
        vec![0; ms as usize * 8]
    }

    fn add_noise(samples: &mut [i16], rms: f64, seed: u64) {
        let mut noise = Noise::new(seed);
        for s in samples {
            *s = (f64::from(*s) + noise.gaussian() * rms).clamp(-32768.0, 32767.0) as i16;
        }
    }

    #[test]
    fn all_sixteen_digits_in_noise() {
        let mut signal = silence(55);
        for digit in ALL.chars() {
            signal.extend(digit_signal(digit, 50));
            signal.extend(silence(50));
        }
        // White noise at −40 dBm0 (about 25 dB under each tone).
        add_noise(&mut signal, crate::tone::amplitude_for_dbm0(-40.0) / 2f64.sqrt(), 7);
        let found: String = detect_all(&signal).iter().map(|&(d, _)| d).collect();
        assert_eq!(found, ALL);
    }

    #[test]
    fn forty_ms_is_always_found_twenty_never() {
        // Every alignment of the tone against the 102-sample blocks.
        for offset in (0..BLOCK).step_by(7) {
            for digit in ['1', '5', '9', '0', '#', 'D'] {
                let mut signal = silence(0);
                signal.resize(offset, 0);
                signal.extend(digit_signal(digit, 40));
                signal.extend(silence(60));
                let found = detect_all(&signal);
                assert_eq!(found.len(), 1, "40 ms '{digit}' at offset {offset}: {found:?}");
                assert_eq!(found[0].0, digit);
                assert!((25..=52).contains(&found[0].1), "duration {found:?}");

                let mut short = silence(0);
                short.resize(offset, 0);
                short.extend(digit_signal(digit, 20));
                short.extend(silence(60));
                assert!(detect_all(&short).is_empty(), "20 ms '{digit}' at offset {offset} was detected");
            }
        }
    }

    #[test]
    fn duration_is_measured() {
        let mut signal = digit_signal('7', 250);
        signal.extend(silence(100));
        let found = detect_all(&signal);
        assert_eq!(found.len(), 1);
        assert!((230..=262).contains(&found[0].1), "{found:?}");
    }

    #[test]
    fn a_short_break_does_not_split_a_digit_a_pause_does() {
        let mut signal = digit_signal('3', 100);
        signal.extend(silence(8));
        signal.extend(digit_signal('3', 100));
        signal.extend(silence(40));
        signal.extend(digit_signal('3', 60));
        signal.extend(silence(60));
        let found: Vec<char> = detect_all(&signal).iter().map(|&(d, _)| d).collect();
        assert_eq!(found, vec!['3', '3']);
    }

    fn two_tones(low: (f64, f64), high: (f64, f64), ms: u32) -> Vec<i16> {
        let spec = ToneSpec { components: vec![low, high], cadence_ms: vec![ms], repeat: false };
        let mut samples = vec![0i16; ms as usize * 8];
        ToneGenerator::new(&spec, 8000).fill(&mut samples);
        samples.extend(silence(60));
        samples
    }

    #[test]
    fn twist_limits() {
        let (row, col) = dtmf_frequencies('8').expect("digit");
        // High group 3 dB above low (allowed 4), low group 7 dB above high (allowed 8).
        assert_eq!(detect_all(&two_tones((row, -10.0), (col, -7.0), 80)).len(), 1);
        assert_eq!(detect_all(&two_tones((row, -5.0), (col, -12.0), 80)).len(), 1);
        // 6 dB and 10 dB: refused.
        assert!(detect_all(&two_tones((row, -12.0), (col, -6.0), 80)).is_empty());
        assert!(detect_all(&two_tones((row, -4.0), (col, -14.0), 80)).is_empty());
    }

    #[test]
    fn level_limits() {
        let (row, col) = dtmf_frequencies('2').expect("digit");
        // −25 dBm0 per tone operates (Q.24), −40 dBm0 does not; 0 dBm0 still does.
        assert_eq!(detect_all(&two_tones((row, -25.0), (col, -25.0), 80)).len(), 1);
        assert_eq!(detect_all(&two_tones((row, 0.0), (col, 0.0), 80)).len(), 1);
        assert!(detect_all(&two_tones((row, -40.0), (col, -40.0), 80)).is_empty());
        // One tone alone is not a digit.
        assert!(detect_all(&two_tones((row, -10.0), (col, -80.0), 80)).is_empty());
    }

    #[test]
    fn no_digit_in_speech_or_music() {
        for seed in 0..6 {
            let talk = speech(8000, 20.0, seed);
            assert_eq!(detect_all(&talk), vec![], "speech, seed {seed}");
            let tune = music(8000, 20.0, seed);
            assert_eq!(detect_all(&tune), vec![], "music, seed {seed}");
        }
    }

    #[test]
    fn digits_over_quiet_speech() {
        // Digits pressed while the other party talks 20 dB lower.
        let mut signal = Vec::new();
        for digit in "159#".chars() {
            signal.extend(digit_signal(digit, 80));
            signal.extend(silence(80));
        }
        let talk = speech(8000, signal.len() as f64 / 8000.0, 3);
        for (s, t) in signal.iter_mut().zip(talk) {
            *s = (f64::from(*s) + f64::from(t) * 0.1) as i16;
        }
        let found: String = detect_all(&signal).iter().map(|&(d, _)| d).collect();
        assert_eq!(found, "159#");
    }
}
