//! Audio for Switchboard's media engine, sans-IO: samples in, samples or events out.
//!
//! - [`g711`]: µ-law and A-law, bit-exact with the ITU-T G.191 reference algorithm.
//! - [`g722`]: G.722 wideband (16 kHz) sub-band ADPCM, encoder at 64 kbit/s, decoder at 64/56/48.
//! - [`tone`]: call-progress tones of the French, European and North American plans, DTMF pairs.
//! - [`dtmf`]: in-band DTMF detection (Goertzel) with the ITU-T Q.24 duration, twist and level rules.
//! - [`telephone_event`]: RFC 4733 telephone-event payloads, receiver and sender.
//! - [`resample`]: 2:1 conversion between 8 and 16 kHz (windowed-sinc FIR), streaming.
//! - [`analysis`]: level, power at a frequency, dominant frequency.
//! - [`testsignal`]: reproducible noise, speech-like and music-like signals for tests.
//! - [`mixer`]: N-party conference mixing with mute, gains, listen-only, whisper and talker detection.
//! - [`prompts`]: spoken system prompts (English, French) generated with the external `espeak-ng`,
//!   tenant overrides, sentences such as "you have 21 new messages".
//! - [`wav`]: WAV files of any common format and rate loaded as mono 16-bit at 8 or 16 kHz.
//!
//! Except for [`wav`] and [`prompts`], which read files and run a program, nothing here does
//! I/O, and nothing allocates per sample; the detectors and generators keep their state between
//! calls so that audio can be fed packet by packet.

pub mod analysis;
pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod mixer;
pub mod prompts;
pub mod resample;
pub mod telephone_event;
pub mod testsignal;
pub mod tone;
pub mod wav;
