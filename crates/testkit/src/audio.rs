//! WAV helpers and the small signal analysis that media tests need: write a test tone, read what
//! a peer recorded, and tell whether it holds that tone.
//!
//! Samples are mono `f32` in `-1.0..=1.0`. The analysis is FFT-free: the Goertzel algorithm
//! measures the power at one frequency, and [`dominant_frequency`] scans for the strongest one
//! (coarse 10 Hz steps on 50 ms blocks, then 0.5 Hz steps on up to 1 s of the loudest part),
//! which is accurate to about 1 Hz for a steady tone.
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::audio;
//! audio::write_tone_wav("tone.wav".as_ref(), 8000, 1000.0, 0.5, Duration::from_secs(30))?;
//! let got = audio::read_wav("recorded.wav".as_ref())?;
//! let report = got.report();
//! assert!(report.matches_tone(1000.0, 0.02), "{report}");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::f64::consts::PI;
use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

/// The RMS below which audio counts as silent in [`Audio::report`] (about -50 dBFS).
pub const SILENCE_RMS: f32 = 0.003;

/// Mono audio: samples and their rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples per second.
    pub sample_rate: u32,
    /// Mono samples in `-1.0..=1.0`.
    pub samples: Vec<f32>,
}

impl Audio {
    /// How long the audio lasts.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.sample_rate))
    }

    /// RMS, voiced fraction, dominant frequency and tone purity in one go.
    pub fn report(&self) -> AudioReport {
        let dominant_hz = dominant_frequency(&self.samples, self.sample_rate);
        AudioReport {
            duration: self.duration(),
            rms: rms(&self.samples),
            voiced_fraction: voiced_fraction(&self.samples, self.sample_rate, SILENCE_RMS),
            dominant_hz,
            purity: dominant_hz.map_or(0.0, |f| tone_purity(&self.samples, self.sample_rate, f)),
        }
    }
}

/// A summary of some audio, printable in an assertion message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioReport {
    /// How long the audio lasts.
    pub duration: Duration,
    /// Root mean square of all samples.
    pub rms: f32,
    /// The fraction of 20 ms frames louder than [`SILENCE_RMS`].
    pub voiced_fraction: f32,
    /// The strongest frequency, if the audio is not silent.
    pub dominant_hz: Option<f32>,
    /// How much of the power sits at the dominant frequency (see [`tone_purity`]).
    pub purity: f32,
}

impl AudioReport {
    /// Whether the audio is not silent and its dominant frequency is `hz` within `tolerance`
    /// (a fraction: 0.02 is 2 %).
    pub fn matches_tone(&self, hz: f32, tolerance: f32) -> bool {
        self.rms >= SILENCE_RMS && self.dominant_hz.is_some_and(|f| within(f, hz, tolerance))
    }
}

impl fmt::Display for AudioReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2} s, rms {:.4}, voiced {:.0} %, dominant ",
            self.duration.as_secs_f32(),
            self.rms,
            self.voiced_fraction * 100.0
        )?;
        match self.dominant_hz {
            Some(hz) => write!(f, "{hz:.1} Hz (purity {:.2})", self.purity),
            None => write!(f, "none (silent)"),
        }
    }
}

/// Whether `measured` is within `tolerance` (a fraction of `expected`) of `expected`.
pub fn within(measured: f32, expected: f32, tolerance: f32) -> bool {
    (measured - expected).abs() <= expected.abs() * tolerance
}

/// A sine tone: `amplitude` in `0.0..=1.0`, starting at phase 0.
pub fn tone(sample_rate: u32, freq_hz: f32, amplitude: f32, duration: Duration) -> Vec<f32> {
    let n = (duration.as_secs_f64() * f64::from(sample_rate)).round() as usize;
    let step = 2.0 * PI * f64::from(freq_hz) / f64::from(sample_rate);
    (0..n).map(|i| (f64::from(amplitude) * (step * i as f64).sin()) as f32).collect()
}

/// Deterministic white noise, uniform in `-amplitude..amplitude` (a linear congruential
/// generator seeded by `seed`), for tests that need a signal without a tone.
pub fn white_noise(len: usize, amplitude: f32, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32; // 0..1
            (unit * 2.0 - 1.0) * amplitude
        })
        .collect()
}

/// Writes mono 16-bit PCM samples (clamped to `-1.0..=1.0`) to a WAV file.
///
/// # Errors
/// Any error creating or writing the file.
pub fn write_wav(path: &Path, sample_rate: u32, samples: &[f32]) -> io::Result<()> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).map_err(hound_err)?;
    for &s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16).map_err(hound_err)?;
    }
    w.finalize().map_err(hound_err)
}

/// Writes a mono 16-bit sine tone WAV (for example 8000 Hz for PCMU/PCMA, 16000 Hz for G.722).
///
/// # Errors
/// Any error creating or writing the file.
pub fn write_tone_wav(
    path: &Path,
    sample_rate: u32,
    freq_hz: f32,
    amplitude: f32,
    duration: Duration,
) -> io::Result<()> {
    write_wav(path, sample_rate, &tone(sample_rate, freq_hz, amplitude, duration))
}

/// Reads a WAV file of any rate, channel count and sample format into mono samples (channels
/// are averaged).
///
/// A data chunk that claims more bytes than the file holds is read up to the end of the file:
/// mediastreamer's recorder (linphone) writes such headers, and a peer killed mid-call leaves
/// them too.
///
/// # Errors
/// Any error opening the file, or `InvalidData` if it is not a WAV file hound can read.
pub fn read_wav(path: &Path) -> io::Result<Audio> {
    let reader = hound::WavReader::open(path).map_err(hound_err)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    // Samples up to the first read error (a truncated data chunk).
    let mut interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().map_while(Result::ok).collect(),
        hound::SampleFormat::Int => {
            let scale = 2f32.powi(i32::from(spec.bits_per_sample) - 1);
            reader.into_samples::<i32>().map_while(Result::ok).map(|v| v as f32 / scale).collect()
        }
    };
    interleaved.truncate(interleaved.len() / channels * channels);
    let samples = interleaved.chunks(channels).map(|frame| frame.iter().sum::<f32>() / frame.len() as f32).collect();
    Ok(Audio { sample_rate: spec.sample_rate, samples })
}

/// Reads a WAV that a peer may still be finishing: retries [`read_wav`] every 100 ms until it
/// succeeds twice in a row on an unchanged file size (peers write the header's lengths, or
/// flush the last samples, only as the recording closes), or `timeout` passes.
///
/// # Errors
/// The last error of [`read_wav`] if the file never became readable and stable in time.
pub fn read_wav_settled(path: &Path, timeout: Duration) -> io::Result<Audio> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last: Option<(u64, Audio)> = None;
    loop {
        let size = std::fs::metadata(path).map(|m| m.len());
        let attempt = size.and_then(|size| read_wav(path).map(|a| (size, a)));
        match attempt {
            Ok((size, audio)) => {
                if last.as_ref().is_some_and(|(s, a)| *s == size && a.samples.len() == audio.samples.len()) {
                    return Ok(audio);
                }
                last = Some((size, audio));
            }
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => last = None,
        }
        if std::time::Instant::now() >= deadline
            && let Some((_, audio)) = last
        {
            return Ok(audio);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hound_err(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// Root mean square of the samples (0 for none).
pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt() as f32
}

/// Whether the RMS of the samples is below `threshold` (see [`SILENCE_RMS`]).
pub fn is_silent(samples: &[f32], threshold: f32) -> bool {
    rms(samples) < threshold
}

/// The fraction of whole 20 ms frames whose RMS reaches `threshold` (0 if there is no whole
/// frame).
pub fn voiced_fraction(samples: &[f32], sample_rate: u32, threshold: f32) -> f32 {
    let frame = (sample_rate / 50).max(1) as usize;
    let frames = samples.len() / frame;
    if frames == 0 {
        return 0.0;
    }
    let voiced = samples.chunks_exact(frame).filter(|f| rms(f) >= threshold).count();
    voiced as f32 / frames as f32
}

/// `|X(f)|²` of the samples at any (not only bin) frequency.
fn goertzel_raw(samples: &[f64], sample_rate: u32, freq_hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq_hz / f64::from(sample_rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0)
}

/// The samples multiplied by a Hann window, and the window's sum.
fn hann_windowed(samples: &[f32]) -> (Vec<f64>, f64) {
    let denom = (samples.len().max(2) - 1) as f64;
    let mut sum = 0.0;
    let windowed = samples
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / denom).cos();
            sum += w;
            f64::from(x) * w
        })
        .collect();
    (windowed, sum)
}

/// The Goertzel power at `freq_hz`, normalised so that a sine of amplitude `A` at exactly that
/// frequency (over a whole number of periods) gives about `A²`.
pub fn goertzel_power(samples: &[f32], sample_rate: u32, freq_hz: f32) -> f32 {
    if samples.is_empty() || sample_rate == 0 {
        return 0.0;
    }
    let n = samples.len() as f64;
    let plain: Vec<f64> = samples.iter().map(|&x| f64::from(x)).collect();
    (goertzel_raw(&plain, sample_rate, f64::from(freq_hz)) * 4.0 / (n * n)) as f32
}

/// The share of the signal's power that sits at `freq_hz` (Hann-windowed Goertzel against the
/// mean square): about 1 for a pure tone at that frequency, near 0 for noise or another tone.
pub fn tone_purity(samples: &[f32], sample_rate: u32, freq_hz: f32) -> f32 {
    let segment = loudest_segment(samples, sample_rate);
    let mean_square = f64::from(rms(segment)).powi(2);
    if mean_square == 0.0 {
        return 0.0;
    }
    let (windowed, wsum) = hann_windowed(segment);
    let amplitude = 2.0 * goertzel_raw(&windowed, sample_rate, f64::from(freq_hz)).sqrt() / wsum;
    ((amplitude * amplitude / 2.0) / mean_square).min(1.0) as f32
}

/// Up to one second of the loudest part of the samples (all of them if shorter).
fn loudest_segment(samples: &[f32], sample_rate: u32) -> &[f32] {
    let len = (sample_rate as usize).max(1);
    if samples.len() <= len {
        return samples;
    }
    let frame = (sample_rate / 50).max(1) as usize;
    let energies: Vec<f64> =
        samples.chunks(frame).map(|f| f.iter().map(|&s| f64::from(s) * f64::from(s)).sum()).collect();
    let per_window = len / frame;
    let mut best = (0usize, f64::MIN);
    let mut sum: f64 = energies.iter().take(per_window).sum();
    for start in 0..=energies.len().saturating_sub(per_window) {
        if start > 0 {
            sum += energies.get(start + per_window - 1).copied().unwrap_or(0.0) - energies[start - 1];
        }
        if sum > best.1 {
            best = (start, sum);
        }
    }
    let begin = (best.0 * frame).min(samples.len() - len);
    &samples[begin..begin + len]
}

/// The strongest frequency between 50 Hz and 4000 Hz (or 45 % of the sample rate, if lower),
/// or `None` for silence. Accurate to about 1 Hz for a steady tone.
pub fn dominant_frequency(samples: &[f32], sample_rate: u32) -> Option<f32> {
    if sample_rate < 200 || is_silent(samples, 1e-4) {
        return None;
    }
    let lo = 50.0f64;
    let hi = (f64::from(sample_rate) * 0.45).min(4000.0);
    let segment = loudest_segment(samples, sample_rate);

    // Coarse: 10 Hz steps over 50 ms Hann blocks (main lobe ±40 Hz), summed over <= 10 blocks.
    let block = ((sample_rate / 20) as usize).min(segment.len());
    let nblocks = (segment.len() / block).clamp(1, 10);
    let stride = if nblocks > 1 { (segment.len() - block) / (nblocks - 1) } else { 0 };
    let blocks: Vec<Vec<f64>> =
        (0..nblocks).map(|b| hann_windowed(&segment[b * stride..b * stride + block]).0).collect();
    let coarse = argmax(lo, hi, 10.0, |f| blocks.iter().map(|b| goertzel_raw(b, sample_rate, f)).sum())?;

    // Fine: 0.5 Hz steps over the whole segment (up to 1 s: main lobe ±2 Hz).
    let (windowed, _) = hann_windowed(segment);
    let fine =
        argmax((coarse - 20.0).max(lo), (coarse + 20.0).min(hi), 0.5, |f| goertzel_raw(&windowed, sample_rate, f))?;
    Some(fine as f32)
}

fn argmax(lo: f64, hi: f64, step: f64, power: impl Fn(f64) -> f64) -> Option<f64> {
    let steps = ((hi - lo) / step).floor() as usize;
    (0..=steps).map(|k| lo + k as f64 * step).map(|f| (f, power(f))).max_by(|a, b| a.1.total_cmp(&b.1)).map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn dominant_frequency_finds_tones_within_two_percent() {
        for rate in [8000, 16000, 48000] {
            for hz in [100.0, 300.0, 440.0, 1000.0, 1234.0, 3000.0] {
                let t = tone(rate, hz, 0.5, SEC);
                let got = dominant_frequency(&t, rate).unwrap();
                assert!(within(got, hz, 0.02), "{rate} Hz rate: {hz} Hz tone read as {got} Hz");
                assert!((got - hz).abs() <= 1.0, "{rate} Hz rate: {hz} Hz tone read as {got} Hz");
            }
        }
    }

    #[test]
    fn dominant_frequency_of_a_short_quiet_tone_in_noise() {
        let rate = 8000;
        let mut s = tone(rate, 440.0, 0.05, Duration::from_millis(300));
        for (x, n) in s.iter_mut().zip(white_noise(2400, 0.02, 7)) {
            *x += n;
        }
        let got = dominant_frequency(&s, rate).unwrap();
        assert!(within(got, 440.0, 0.02), "read as {got}");
    }

    #[test]
    fn dominant_frequency_uses_the_loud_part() {
        // Silence (before media flows), then the tone: the loudest second is found.
        let rate = 8000;
        let mut s = vec![0.0; 3 * rate as usize];
        s.extend(tone(rate, 1000.0, 0.4, 2 * SEC));
        let got = dominant_frequency(&s, rate).unwrap();
        assert!(within(got, 1000.0, 0.02), "read as {got}");
    }

    #[test]
    fn silence_is_rejected() {
        let silence = vec![0.0f32; 8000];
        assert!(is_silent(&silence, SILENCE_RMS));
        assert_eq!(dominant_frequency(&silence, 8000), None);
        assert_eq!(voiced_fraction(&silence, 8000, SILENCE_RMS), 0.0);
        let report = Audio { sample_rate: 8000, samples: silence }.report();
        assert!(!report.matches_tone(1000.0, 0.02), "{report}");
        // Very low-level hiss is still silence.
        assert!(is_silent(&white_noise(8000, 0.001, 1), SILENCE_RMS));
    }

    #[test]
    fn noise_has_no_pure_tone() {
        let noise = white_noise(16000, 0.5, 42);
        assert!(!is_silent(&noise, SILENCE_RMS));
        let f = dominant_frequency(&noise, 8000).unwrap();
        assert!(tone_purity(&noise, 8000, f) < 0.1, "noise purity at {f} Hz");
        let t = tone(8000, 1000.0, 0.5, SEC);
        assert!(tone_purity(&t, 8000, 1000.0) > 0.9);
        assert!(tone_purity(&t, 8000, 440.0) < 0.01);
    }

    #[test]
    fn rms_and_goertzel_power_of_a_sine() {
        let t = tone(8000, 1000.0, 0.5, SEC);
        assert!((rms(&t) - 0.5 / 2f32.sqrt()).abs() < 1e-3);
        assert!((goertzel_power(&t, 8000, 1000.0) - 0.25).abs() < 0.01);
        assert!(goertzel_power(&t, 8000, 1500.0) < 1e-4);
        assert_eq!(rms(&[]), 0.0);
    }

    #[test]
    fn voiced_fraction_counts_loud_frames() {
        let rate = 8000;
        let mut s = tone(rate, 440.0, 0.5, SEC);
        s.extend(vec![0.0; rate as usize]);
        let v = voiced_fraction(&s, rate, SILENCE_RMS);
        assert!((v - 0.5).abs() < 0.02, "{v}");
    }

    #[test]
    fn wav_round_trip_any_rate_and_channels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        write_tone_wav(&path, 16000, 440.0, 0.5, SEC).unwrap();
        let a = read_wav(&path).unwrap();
        assert_eq!(a.sample_rate, 16000);
        assert_eq!(a.samples.len(), 16000);
        assert!(a.report().matches_tone(440.0, 0.02));

        // A stereo float file is averaged to mono.
        let stereo = dir.path().join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&stereo, spec).unwrap();
        for s in tone(48000, 1000.0, 0.5, SEC / 2) {
            w.write_sample(s).unwrap();
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        let b = read_wav(&stereo).unwrap();
        assert_eq!((b.sample_rate, b.samples.len()), (48000, 24000));
        let report = b.report();
        assert!(report.matches_tone(1000.0, 0.02), "{report}");
        assert!((report.duration.as_secs_f32() - 0.5).abs() < 1e-3);
    }

    #[test]
    fn read_wav_settled_waits_for_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.wav");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(250));
                write_tone_wav(&path, 8000, 440.0, 0.5, SEC).unwrap();
            })
        };
        let a = read_wav_settled(&path, Duration::from_secs(3)).unwrap();
        writer.join().unwrap();
        assert_eq!(a.samples.len(), 8000);
        assert!(read_wav_settled(&dir.path().join("never.wav"), Duration::from_millis(200)).is_err());
    }

    #[test]
    fn read_wav_tolerates_a_data_chunk_longer_than_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long-header.wav");
        write_tone_wav(&path, 8000, 440.0, 0.5, SEC).unwrap();
        // What linphone writes: the data length is the file's length, 44 bytes too many.
        let mut bytes = std::fs::read(&path).unwrap();
        let claimed = u32::try_from(bytes.len()).unwrap();
        bytes[40..44].copy_from_slice(&claimed.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let a = read_wav(&path).unwrap();
        assert_eq!(a.samples.len(), 8000);
    }

    #[test]
    fn read_wav_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.wav");
        std::fs::write(&path, b"not a wav file at all").unwrap();
        assert_eq!(read_wav(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
