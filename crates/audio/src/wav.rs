//! Loading WAV files as mono 16-bit audio at 8 or 16 kHz, whatever their own format.
//!
//! Reads PCM WAV (8, 16, 24 or 32-bit integer, or 32-bit float; any number of channels, mixed
//! down to mono by averaging them; any rate from 4 to 192 kHz) with `hound`, and converts the
//! rate: exact 2:1 ratios (16 → 8 kHz, 8 → 16 kHz, 32 → 16 kHz) with [`crate::resample`]'s
//! filters, the rest (11.025, 22.05, 44.1, 48 kHz...) with `rubato`'s band-limited sinc
//! interpolation. Meant for prompts and music on hold, loaded once and kept: this allocates and
//! reads whole files, unlike the frame-by-frame parts of the crate.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavReader};
use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};

use crate::resample::{Downsampler, TAPS, Upsampler};

/// Rates [`load_wav`] and [`decode_wav`] convert to, Hz.
pub const TARGET_RATES: [u32; 2] = [8000, 16000];
/// Lowest source rate read, Hz.
pub const MIN_SOURCE_RATE: u32 = 4000;
/// Highest source rate read, Hz.
pub const MAX_SOURCE_RATE: u32 = 192_000;

/// Why a WAV file could not be loaded: what is wrong, and in which file.
#[derive(Debug)]
pub struct WavError {
    path: Option<PathBuf>,
    kind: WavErrorKind,
}

/// What is wrong with a WAV file.
#[derive(Debug)]
#[non_exhaustive]
pub enum WavErrorKind {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The data ends before the end of a WAV header (an empty file, or not a WAV file).
    ShortHeader(io::Error),
    /// The data is not a well-formed WAV file (the parser's reason).
    NotWav(&'static str),
    /// The data ends in the middle of a sample frame.
    Truncated,
    /// A WAV encoding this module does not read (A-law, µ-law, ADPCM, 64-bit float...).
    UnsupportedEncoding {
        /// Integer or float samples, as the header says.
        format: SampleFormat,
        /// Bits per sample, as the header says.
        bits: u16,
    },
    /// The header declares no channels.
    NoChannels,
    /// The file's sample rate is outside [`MIN_SOURCE_RATE`]..=[`MAX_SOURCE_RATE`].
    UnsupportedRate(u32),
    /// The rate asked for is not one of [`TARGET_RATES`].
    UnsupportedTargetRate(u32),
    /// The rate converter refused the conversion (its reason).
    Resampler(String),
}

impl WavError {
    fn new(kind: WavErrorKind) -> Self {
        WavError { path: None, kind }
    }

    fn in_file(mut self, path: &Path) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// The file concerned (none for [`decode_wav`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What is wrong.
    pub fn kind(&self) -> &WavErrorKind {
        &self.kind
    }
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: ", path.display())?,
            None => write!(f, "WAV data: ")?,
        }
        match &self.kind {
            WavErrorKind::Io(e) => write!(f, "cannot read: {e}"),
            WavErrorKind::ShortHeader(e) => write!(f, "not a WAV file, or a truncated one (header: {e})"),
            WavErrorKind::NotWav(reason) => write!(f, "not a valid WAV file ({reason})"),
            WavErrorKind::Truncated => write!(f, "truncated WAV file (ends in the middle of a sample)"),
            WavErrorKind::UnsupportedEncoding { format, bits } => {
                let format = match format {
                    SampleFormat::Int => "integer",
                    SampleFormat::Float => "float",
                };
                write!(
                    f,
                    "unsupported WAV encoding ({bits}-bit {format}): PCM 8, 16, 24 or 32-bit integer or 32-bit float is read"
                )
            }
            WavErrorKind::NoChannels => write!(f, "unsupported WAV file: the header declares no channels"),
            WavErrorKind::UnsupportedRate(rate) => {
                write!(f, "unsupported sample rate {rate} Hz (from {MIN_SOURCE_RATE} to {MAX_SOURCE_RATE} Hz is read)")
            }
            WavErrorKind::UnsupportedTargetRate(rate) => {
                write!(f, "cannot convert to {rate} Hz: 8000 or 16000 Hz only")
            }
            WavErrorKind::Resampler(reason) => write!(f, "rate conversion failed: {reason}"),
        }
    }
}

impl std::error::Error for WavError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            WavErrorKind::Io(e) | WavErrorKind::ShortHeader(e) => Some(e),
            _ => None,
        }
    }
}

impl From<hound::Error> for WavError {
    fn from(e: hound::Error) -> Self {
        WavError::new(match e {
            hound::Error::IoError(e) => WavErrorKind::Io(e),
            hound::Error::FormatError(reason) => WavErrorKind::NotWav(reason),
            hound::Error::UnfinishedSample => WavErrorKind::Truncated,
            // Unsupported (a format tag other than PCM or float), TooWide, InvalidSampleFormat.
            _ => WavErrorKind::NotWav("unsupported or inconsistent format header"),
        })
    }
}

/// Reads the WAV file at `path` as mono 16-bit samples at `target_rate` (8000 or 16000 Hz).
pub fn load_wav(path: &Path, target_rate: u32) -> Result<Vec<i16>, WavError> {
    check_target(target_rate).map_err(|e| e.in_file(path))?;
    let file = File::open(path).map_err(|e| WavError::new(WavErrorKind::Io(e)).in_file(path))?;
    decode_wav(BufReader::new(file), target_rate).map_err(|e| e.in_file(path))
}

/// Decodes WAV data from `reader` as mono 16-bit samples at `target_rate` (8000 or 16000 Hz).
pub fn decode_wav<R: Read>(reader: R, target_rate: u32) -> Result<Vec<i16>, WavError> {
    check_target(target_rate)?;
    let reader = WavReader::new(reader).map_err(|e| match e {
        hound::Error::Unsupported => WavError::new(WavErrorKind::NotWav(
            "unsupported encoding: not PCM integer or float (A-law, µ-law or compressed?)",
        )),
        hound::Error::IoError(e) => WavError::new(WavErrorKind::ShortHeader(e)),
        e => WavError::from(e),
    })?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(WavError::new(WavErrorKind::NoChannels));
    }
    if !(MIN_SOURCE_RATE..=MAX_SOURCE_RATE).contains(&spec.sample_rate) {
        return Err(WavError::new(WavErrorKind::UnsupportedRate(spec.sample_rate)));
    }
    let mono = read_mono(reader)?;
    convert_rate(&mono, spec.sample_rate, target_rate)
}

fn check_target(rate: u32) -> Result<(), WavError> {
    if TARGET_RATES.contains(&rate) { Ok(()) } else { Err(WavError::new(WavErrorKind::UnsupportedTargetRate(rate))) }
}

/// The samples, channels averaged, scaled to [−1, 1).
fn read_mono<R: Read>(mut reader: WavReader<R>) -> Result<Vec<f32>, WavError> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    // The header's length is a hint only: do not trust it with a huge reservation.
    let mut mono = Vec::with_capacity((reader.len() as usize / channels).min(1 << 22));
    let mut frame = MonoFrames { channels, sum: 0.0, filled: 0, out: &mut mono };
    match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => {
            for sample in reader.samples::<f32>() {
                frame.push(sample?);
            }
        }
        (SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for sample in reader.samples::<i32>() {
                frame.push(sample? as f32 * scale);
            }
        }
        (format, bits) => return Err(WavError::new(WavErrorKind::UnsupportedEncoding { format, bits })),
    }
    if frame.filled != 0 {
        return Err(WavError::new(WavErrorKind::Truncated));
    }
    Ok(mono)
}

/// Averages interleaved channels into mono.
struct MonoFrames<'a> {
    channels: usize,
    sum: f32,
    filled: usize,
    out: &'a mut Vec<f32>,
}

impl MonoFrames<'_> {
    fn push(&mut self, sample: f32) {
        self.sum += sample;
        self.filled += 1;
        if self.filled == self.channels {
            self.out.push(self.sum / self.channels as f32);
            self.sum = 0.0;
            self.filled = 0;
        }
    }
}

fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Converts `mono` (scaled to [−1, 1)) from `from` Hz to `to` Hz, 16-bit.
fn convert_rate(mono: &[f32], from: u32, to: u32) -> Result<Vec<i16>, WavError> {
    if from == to || mono.is_empty() {
        return Ok(mono.iter().map(|&x| to_i16(x)).collect());
    }
    if from == 2 * to {
        let samples: Vec<i16> = mono.iter().map(|&x| to_i16(x)).collect();
        return Ok(halve(&samples));
    }
    if to == 2 * from {
        let samples: Vec<i16> = mono.iter().map(|&x| to_i16(x)).collect();
        return Ok(double(&samples));
    }
    let resampler_error = |e: &dyn fmt::Display| WavError::new(WavErrorKind::Resampler(e.to_string()));
    let parameters = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
    let mut resampler =
        Async::<f32>::new_sinc(f64::from(to) / f64::from(from), 1.0, &parameters, 1024, 1, FixedAsync::Input)
            .map_err(|e| resampler_error(&e))?;
    let input = SequentialSlice::new(mono, 1, mono.len()).map_err(|e| resampler_error(&e))?;
    let output = resampler.process_all(&input, mono.len(), None).map_err(|e| resampler_error(&e))?;
    Ok(output.take_data().into_iter().map(to_i16).collect())
}

/// 2:1 down, the filter's delay (TAPS − 1)/2 input samples taken out: `len / 2` samples.
fn halve(samples: &[i16]) -> Vec<i16> {
    const DELAY: usize = (TAPS - 1) / 2; // at the input rate
    let mut out = Vec::with_capacity(samples.len() / 2 + DELAY);
    let mut down = Downsampler::new();
    down.process(samples, &mut out);
    down.process(&[0; DELAY + 1], &mut out);
    out.drain(..DELAY / 2);
    out.truncate(samples.len() / 2);
    out
}

/// 1:2 up, the filter's delay (TAPS − 1)/2 output samples taken out: `2 · len` samples.
fn double(samples: &[i16]) -> Vec<i16> {
    const DELAY: usize = (TAPS - 1) / 2; // at the output rate
    let mut out = Vec::with_capacity(2 * samples.len() + DELAY + 1);
    let mut up = Upsampler::new();
    up.process(samples, &mut out);
    up.process(&[0; DELAY.div_ceil(2)], &mut out);
    out.drain(..DELAY);
    out.truncate(2 * samples.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{dominant_frequency, rms};
    use hound::{WavSpec, WavWriter};
    use std::f64::consts::TAU;
    use std::io::Cursor;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh path in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str) -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            TempFile(std::env::temp_dir().join(format!("switchboard-wav-{}-{n}-{name}", std::process::id())))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const SECONDS: f64 = 1.5;
    /// Peak of the test tone, as a fraction of full scale.
    const PEAK: f64 = 0.5;

    fn tone(rate: u32, i: usize) -> f64 {
        PEAK * (TAU * 1000.0 * i as f64 / f64::from(rate)).sin()
    }

    /// Writes SECONDS of a 1 kHz tone at `rate` in every channel.
    fn write_tone(path: &Path, rate: u32, channels: u16, format: SampleFormat, bits: u16) {
        let spec = WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format: format };
        let mut writer = WavWriter::create(path, spec).unwrap();
        let frames = (SECONDS * f64::from(rate)) as usize;
        let full = (1i64 << (bits - 1)) as f64;
        for i in 0..frames {
            for _ in 0..channels {
                match format {
                    SampleFormat::Float => writer.write_sample(tone(rate, i) as f32).unwrap(),
                    SampleFormat::Int => writer.write_sample((tone(rate, i) * full).round() as i32).unwrap(),
                }
            }
        }
        writer.finalize().unwrap();
    }

    #[test]
    fn a_tone_arrives_at_the_target_rate_from_common_formats() {
        let cases = [
            (44100, 2, SampleFormat::Int, 16, 8000),
            (48000, 1, SampleFormat::Float, 32, 16000),
            (48000, 2, SampleFormat::Float, 32, 8000),
            (22050, 1, SampleFormat::Int, 8, 8000),
            (16000, 1, SampleFormat::Int, 16, 8000),
            (8000, 1, SampleFormat::Int, 16, 16000),
            (32000, 1, SampleFormat::Int, 24, 16000),
            (11025, 2, SampleFormat::Int, 16, 16000),
            (44100, 1, SampleFormat::Int, 32, 16000),
            (8000, 1, SampleFormat::Int, 16, 8000),
        ];
        for (rate, channels, format, bits, target) in cases {
            let file = TempFile::new(&format!("{rate}-{channels}-{bits}.wav"));
            write_tone(&file.0, rate, channels, format, bits);
            let samples = load_wav(&file.0, target).unwrap();
            let case = format!("{rate} Hz, {channels} ch, {bits}-bit {format:?} → {target} Hz");
            let expected = SECONDS * f64::from(target);
            assert!((samples.len() as f64 / expected - 1.0).abs() < 0.01, "{case}: {} samples", samples.len());
            // Away from the edges (filter start-up), the tone and its level are kept.
            let steady = &samples[samples.len() / 10..samples.len() * 9 / 10];
            let steady = &steady[..steady.len().min(4000)];
            let found = dominant_frequency(steady, target);
            assert!((found / 1000.0 - 1.0).abs() < 0.01, "{case}: {found} Hz");
            let level = 20.0 * (rms(steady) / (PEAK * 32768.0 / 2f64.sqrt())).log10();
            assert!(level.abs() < 0.5, "{case}: level {level} dB");
        }
    }

    #[test]
    fn same_rate_16_bit_is_read_exactly_and_channels_averaged() {
        let spec = WavSpec { channels: 2, sample_rate: 8000, bits_per_sample: 16, sample_format: SampleFormat::Int };
        let mut bytes = Cursor::new(Vec::new());
        let mut writer = WavWriter::new(&mut bytes, spec).unwrap();
        for (l, r) in [(100i16, 300i16), (-32768, -32768), (32767, 32767), (7, -7)] {
            writer.write_sample(l).unwrap();
            writer.write_sample(r).unwrap();
        }
        writer.finalize().unwrap();
        let samples = decode_wav(Cursor::new(bytes.into_inner()), 8000).unwrap();
        assert_eq!(samples, vec![200, -32768, 32767, 0]);
    }

    #[test]
    fn two_to_one_conversions_keep_their_timing() {
        // An impulse stays at the same time (to a sample) after the delay is taken out.
        let mut impulse = vec![0i16; 400];
        impulse[200] = 20000;
        let down = halve(&impulse);
        assert_eq!(down.len(), 200);
        let peak = down.iter().enumerate().max_by_key(|(_, s)| s.unsigned_abs()).unwrap().0;
        assert!((99..=101).contains(&peak), "peak at {peak}");
        let up = double(&impulse);
        assert_eq!(up.len(), 800);
        let peak = up.iter().enumerate().max_by_key(|(_, s)| s.unsigned_abs()).unwrap().0;
        assert!((399..=401).contains(&peak), "peak at {peak}");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let text = TempFile::new("not-a-wav.wav");
        std::fs::write(&text.0, "this is not audio, just some text long enough to be read").unwrap();
        let e = load_wav(&text.0, 8000).unwrap_err();
        let message = e.to_string();
        assert!(message.contains(&*text.0.to_string_lossy()), "{message}");
        assert!(message.contains("not a valid WAV file"), "{message}");
        assert_eq!(e.path(), Some(&*text.0));

        let empty = TempFile::new("empty.wav");
        std::fs::write(&empty.0, "").unwrap();
        let message = load_wav(&empty.0, 8000).unwrap_err().to_string();
        assert!(message.contains("empty.wav") && message.contains("not a WAV file"), "{message}");

        let missing = TempFile::new("missing.wav");
        let e = load_wav(&missing.0, 16000).unwrap_err();
        assert!(matches!(e.kind(), WavErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound));
        assert!(e.to_string().contains("missing.wav"), "{e}");

        let good = TempFile::new("good.wav");
        write_tone(&good.0, 8000, 1, SampleFormat::Int, 16);
        let message = load_wav(&good.0, 44100).unwrap_err().to_string();
        assert!(message.contains("good.wav") && message.contains("8000 or 16000"), "{message}");
    }

    /// A canonical 44-byte header (format tag, channels, rate, bits) and `data`.
    fn raw_wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let block = channels * bits.div_ceil(8);
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        v.extend_from_slice(&block.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn unsupported_encodings_and_rates_are_refused_clearly() {
        // G.711 A-law (format tag 6).
        let alaw = raw_wav(6, 1, 8000, 8, &[0xd5; 80]);
        let message = decode_wav(Cursor::new(alaw), 8000).unwrap_err().to_string();
        assert!(message.contains("unsupported encoding"), "{message}");
        // 64-bit float (tag 3).
        let double = raw_wav(3, 1, 8000, 64, &[0; 64]);
        let message = decode_wav(Cursor::new(double), 8000).unwrap_err().to_string();
        assert!(message.contains("not a valid WAV file (bits per sample"), "{message}");
        // 1 kHz sampling.
        let slow = raw_wav(1, 1, 1000, 16, &[0; 20]);
        let message = decode_wav(Cursor::new(slow), 8000).unwrap_err().to_string();
        assert!(message.contains("unsupported sample rate 1000 Hz"), "{message}");
        // Stereo data cut in the middle of a frame.
        let cut = raw_wav(1, 2, 8000, 16, &[0; 6]);
        assert!(decode_wav(Cursor::new(cut), 8000).is_err());
    }
}
