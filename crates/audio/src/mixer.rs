//! Conference mixing, sans-IO and frame-synchronous.
//!
//! Every 20 ms the owner pushes each participant's decoded frame (16-bit linear at the mixer's
//! rate, 8 or 16 kHz), calls [`Mixer::tick`], then reads for each participant the frame that
//! participant must hear ([`Mixer::output`]). A participant who pushed nothing in a tick
//! contributes silence to it.
//!
//! # What each participant hears
//!
//! The sum of every other participant whose voice is public, never their own voice: the mixer
//! adds all public contributions once, then takes each listener's own contribution back out, so
//! a tick costs O(N) whatever the number of talkers. Whispers are the exception: a whisperer's
//! voice is added to its one listener's mix only.
//!
//! | [`Role`] | is heard by | hears |
//! | --- | --- | --- |
//! | `Normal` | everyone else | everyone else, and whispers addressed to them |
//! | `ListenOnly` | nobody | everyone (public voices) |
//! | `WhisperTo(id)` | `id` only | everyone (public voices) |
//! | `Deaf` | everyone else | nothing (silence) |
//!
//! `muted` silences a participant's voice whatever the role. The input gain scales what a
//! participant says (for everyone who hears it), the output gain what they hear; both are in dB
//! and clamped to [`MIN_GAIN_DB`]..=[`MAX_GAIN_DB`].
//!
//! # Saturation
//!
//! Contributions are summed in `i32` (no overflow is possible: at most [`MAX_PARTICIPANTS`]
//! voices of 16 bits at +20 dB) and the listener's mix is clamped to the 16-bit range. A soft
//! limiter was considered and left out: telephone speech sits around −20 dBm0, so even several
//! people talking at once stay more than 10 dB below full scale and the clamp almost never acts,
//! whereas a limiter changes every listener's level whenever it does (gain pumping) and needs an
//! envelope per listener. A hard clamp cannot wrap around, which is the failure that matters.
//!
//! # Talker detection
//!
//! Each participant's input runs through a [`TalkDetector`] (an energy detector against an
//! adaptive noise floor; thresholds on the type). Changes are returned by [`Mixer::tick`] as
//! [`MixerEvent`]s, and [`Mixer::loudest_talker`] names the loudest participant currently
//! talking whose voice is public. The detector looks at what the participant sends, before mute
//! and gain, so that a muted participant who starts talking can be told they are muted.
//!
//! # Allocation
//!
//! Buffers are allocated when a participant is added; `push`, `tick` and `output` allocate
//! nothing.

use std::fmt;

/// The most participants one mixer holds.
pub const MAX_PARTICIPANTS: usize = 64;
/// Lowest input or output gain, dB (lower values are clamped to it).
pub const MIN_GAIN_DB: f32 = -60.0;
/// Highest input or output gain, dB (higher values are clamped to it).
pub const MAX_GAIN_DB: f32 = 20.0;
/// Duration of one mixer frame, milliseconds.
pub const FRAME_MS: u32 = 20;

/// Identifies a participant of one mixer. Assigned by [`Mixer::add`] and never reused by that
/// mixer, so a stale id cannot reach a participant who joined later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(u32);

impl ParticipantId {
    /// The number behind the id.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "participant {}", self.0)
    }
}

/// How a participant takes part (see the table in the [module documentation](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// Hears everyone else, heard by everyone else.
    #[default]
    Normal,
    /// Hears everyone, says nothing to anybody.
    ListenOnly,
    /// Supervisor whisper (coaching): hears everyone, heard only by this participant.
    WhisperTo(ParticipantId),
    /// Speak-only: heard by everyone else, hears nothing.
    Deaf,
}

/// A participant's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// What they say reaches nobody.
    pub muted: bool,
    /// How they take part.
    pub role: Role,
    /// Gain on what they say, dB.
    pub input_gain_db: f32,
    /// Gain on what they hear, dB.
    pub output_gain_db: f32,
}

impl Default for Settings {
    /// Unmuted, [`Role::Normal`], both gains 0 dB.
    fn default() -> Self {
        Settings { muted: false, role: Role::Normal, input_gain_db: 0.0, output_gain_db: 0.0 }
    }
}

/// A change of a participant's talking state, reported by [`Mixer::tick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MixerEvent {
    /// The participant started talking (after [`TalkDetector::ATTACK_FRAMES`] voiced frames).
    StartedTalking(ParticipantId),
    /// The participant stopped talking (after [`TalkDetector::HANGOVER_FRAMES`] quiet frames).
    StoppedTalking(ParticipantId),
}

/// Why a mixer call was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MixerError {
    /// The mixer runs at 8000 or 16000 Hz only.
    UnsupportedRate(u32),
    /// [`MAX_PARTICIPANTS`] are already in the conference.
    Full,
    /// No such participant (never added, or removed).
    UnknownParticipant(ParticipantId),
    /// A pushed frame must hold exactly one frame of samples.
    FrameLength {
        /// Samples per frame at the mixer's rate.
        expected: usize,
        /// Samples pushed.
        got: usize,
    },
    /// A participant cannot whisper to themselves.
    WhisperToSelf(ParticipantId),
    /// A gain must be a finite number of dB.
    InvalidGain(f32),
}

impl fmt::Display for MixerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixerError::UnsupportedRate(rate) => write!(f, "the mixer runs at 8000 or 16000 Hz, not {rate} Hz"),
            MixerError::Full => write!(f, "the conference is full ({MAX_PARTICIPANTS} participants)"),
            MixerError::UnknownParticipant(id) => write!(f, "no {id} in this conference"),
            MixerError::FrameLength { expected, got } => {
                write!(f, "a frame holds {expected} samples, {got} were pushed")
            }
            MixerError::WhisperToSelf(id) => write!(f, "{id} cannot whisper to themselves"),
            MixerError::InvalidGain(db) => write!(f, "invalid gain {db} dB"),
        }
    }
}

impl std::error::Error for MixerError {}

/// Level of a full-scale sine, dBm0 (G.711).
const FULL_SCALE_SINE_DBM0: f32 = 3.17;
/// Mean square of a full-scale sine.
const FULL_SCALE_SINE_POWER: f32 = 32767.0 * 32767.0 / 2.0;

/// Level in dBm0 of a block whose mean square is `mean_square` (−120 for silence).
fn dbm0(mean_square: f32) -> f32 {
    if mean_square <= 0.0 {
        return -120.0;
    }
    10.0 * (mean_square / FULL_SCALE_SINE_POWER).log10() + FULL_SCALE_SINE_DBM0
}

/// Voice-activity detection on one participant's input, one 20 ms frame per call.
///
/// A frame is *voiced* when its level is at least [`MIN_LEVEL_DBM0`](Self::MIN_LEVEL_DBM0) and
/// at least [`ABOVE_FLOOR_DB`](Self::ABOVE_FLOOR_DB) above the noise floor. Talking starts
/// after [`ATTACK_FRAMES`](Self::ATTACK_FRAMES) voiced frames in a row (40 ms) and stops after
/// [`HANGOVER_FRAMES`](Self::HANGOVER_FRAMES) frames in a row that are not (300 ms), so the
/// pauses between words do not end a turn.
///
/// The noise floor follows the quietest frames: it falls at once to a quieter frame and rises by
/// [`FLOOR_RISE_DB`](Self::FLOOR_RISE_DB) per frame (5 dB/s) otherwise, so the pauses of speech
/// hold it down while a steady noise (a fan, a car) is learned within seconds and then no longer
/// counts as talking. It starts at [`INITIAL_FLOOR_DBM0`](Self::INITIAL_FLOOR_DBM0), so that a
/// participant who talks at once is detected at once; the price is that a loud steady noise
/// present from the first frame counts as talking until the floor has reached it.
#[derive(Clone, Debug)]
pub struct TalkDetector {
    floor_dbm0: f32,
    voiced_run: u32,
    quiet_run: u32,
    talking: bool,
    /// Mean square, smoothed over about 60 ms.
    smoothed_power: f32,
}

impl Default for TalkDetector {
    fn default() -> Self {
        TalkDetector {
            floor_dbm0: Self::INITIAL_FLOOR_DBM0,
            voiced_run: 0,
            quiet_run: 0,
            talking: false,
            smoothed_power: 0.0,
        }
    }
}

impl TalkDetector {
    /// A voiced frame is at least this loud, dBm0 (speech is about −20 dBm0, a quiet talker
    /// −35 dBm0, line noise below −50 dBm0).
    pub const MIN_LEVEL_DBM0: f32 = -45.0;
    /// A voiced frame is at least this far above the noise floor, dB.
    pub const ABOVE_FLOOR_DB: f32 = 10.0;
    /// Voiced frames in a row before talking starts (40 ms).
    pub const ATTACK_FRAMES: u32 = 2;
    /// Frames in a row that are not voiced before talking stops (300 ms).
    pub const HANGOVER_FRAMES: u32 = 15;
    /// Noise floor before the first frame, dBm0.
    pub const INITIAL_FLOOR_DBM0: f32 = -55.0;
    /// The noise floor never goes below this, dBm0 (digital silence).
    pub const MIN_FLOOR_DBM0: f32 = -80.0;
    /// How fast the noise floor rises towards louder frames, dB per frame.
    pub const FLOOR_RISE_DB: f32 = 0.1;

    /// A detector that has heard nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one 20 ms frame; returns the new talking state when it changes.
    pub fn push(&mut self, frame: &[i16]) -> Option<bool> {
        let sum: i64 = frame.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
        let power = if frame.is_empty() { 0.0 } else { sum as f32 / frame.len() as f32 };
        let level = dbm0(power);
        let voiced = level >= Self::MIN_LEVEL_DBM0 && level >= self.floor_dbm0 + Self::ABOVE_FLOOR_DB;
        self.floor_dbm0 = if level < self.floor_dbm0 {
            level.max(Self::MIN_FLOOR_DBM0)
        } else {
            (self.floor_dbm0 + Self::FLOOR_RISE_DB).min(level)
        };
        self.step(voiced, power)
    }

    /// Notes a frame period in which nothing was received: not voiced, and no news about the
    /// noise floor.
    pub fn push_nothing(&mut self) -> Option<bool> {
        self.step(false, 0.0)
    }

    fn step(&mut self, voiced: bool, power: f32) -> Option<bool> {
        self.smoothed_power += 0.3 * (power - self.smoothed_power);
        if voiced {
            self.voiced_run = self.voiced_run.saturating_add(1);
            self.quiet_run = 0;
        } else {
            self.quiet_run = self.quiet_run.saturating_add(1);
            self.voiced_run = 0;
        }
        if !self.talking && self.voiced_run >= Self::ATTACK_FRAMES {
            self.talking = true;
            return Some(true);
        }
        if self.talking && self.quiet_run >= Self::HANGOVER_FRAMES {
            self.talking = false;
            return Some(false);
        }
        None
    }

    /// Whether the participant is talking.
    pub fn is_talking(&self) -> bool {
        self.talking
    }

    /// The current noise floor estimate, dBm0.
    pub fn noise_floor_dbm0(&self) -> f32 {
        self.floor_dbm0
    }

    /// The recent input level (smoothed over about 60 ms), dBm0.
    pub fn level_dbm0(&self) -> f32 {
        dbm0(self.smoothed_power)
    }
}

/// Unity gain in the mixer's fixed point (Q16).
const UNITY: i64 = 1 << 16;

fn gain_q16(db: f32) -> Result<i64, MixerError> {
    if !db.is_finite() {
        return Err(MixerError::InvalidGain(db));
    }
    let db = db.clamp(MIN_GAIN_DB, MAX_GAIN_DB);
    Ok((10f64.powf(f64::from(db) / 20.0) * UNITY as f64).round() as i64)
}

/// Who hears a participant's voice in the current tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    Nobody,
    Everyone,
    Only(ParticipantId),
}

#[derive(Debug)]
struct Participant {
    id: ParticipantId,
    settings: Settings,
    input_gain: i64,
    output_gain: i64,
    /// The frame pushed this tick (meaningful only when `sent`).
    input: Box<[i16]>,
    sent: bool,
    /// The input after the input gain, when `reach` is not `Nobody`.
    contribution: Box<[i32]>,
    reach: Reach,
    output: Box<[i16]>,
    detector: TalkDetector,
}

impl Participant {
    /// Whether this participant's voice, when they talk, goes to everyone.
    fn is_public(&self) -> bool {
        !self.settings.muted && matches!(self.settings.role, Role::Normal | Role::Deaf)
    }
}

/// An N-party conference mixer (see the [module documentation](self)).
#[derive(Debug)]
pub struct Mixer {
    sample_rate: u32,
    frame_len: usize,
    participants: Vec<Participant>,
    next_id: u32,
    /// Sum of all public contributions of the tick.
    total: Box<[i32]>,
    /// One listener's mix.
    mix: Box<[i32]>,
    /// (index of the whisperer, listener) for the tick.
    whispers: Vec<(usize, ParticipantId)>,
    events: Vec<MixerEvent>,
    loudest: Option<ParticipantId>,
}

impl Mixer {
    /// A mixer at `sample_rate` (8000 or 16000 Hz).
    pub fn new(sample_rate: u32) -> Result<Self, MixerError> {
        if sample_rate != 8000 && sample_rate != 16000 {
            return Err(MixerError::UnsupportedRate(sample_rate));
        }
        let frame_len = (sample_rate * FRAME_MS / 1000) as usize;
        Ok(Mixer {
            sample_rate,
            frame_len,
            participants: Vec::with_capacity(MAX_PARTICIPANTS),
            next_id: 0,
            total: vec![0; frame_len].into_boxed_slice(),
            mix: vec![0; frame_len].into_boxed_slice(),
            whispers: Vec::with_capacity(MAX_PARTICIPANTS),
            events: Vec::with_capacity(MAX_PARTICIPANTS),
            loudest: None,
        })
    }

    /// The mixer's sample rate, Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples per frame (20 ms).
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// How many participants are in the conference.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// Whether the conference is empty.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// The participants, in no particular order.
    pub fn participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.participants.iter().map(|p| p.id)
    }

    /// Adds a participant with `settings` (between ticks); they are heard from the next tick.
    pub fn add(&mut self, settings: Settings) -> Result<ParticipantId, MixerError> {
        if self.participants.len() >= MAX_PARTICIPANTS {
            return Err(MixerError::Full);
        }
        let id = ParticipantId(self.next_id);
        self.check_role(id, settings.role)?;
        let input_gain = gain_q16(settings.input_gain_db)?;
        let output_gain = gain_q16(settings.output_gain_db)?;
        self.next_id = self.next_id.wrapping_add(1);
        self.participants.push(Participant {
            id,
            settings,
            input_gain,
            output_gain,
            input: vec![0; self.frame_len].into_boxed_slice(),
            sent: false,
            contribution: vec![0; self.frame_len].into_boxed_slice(),
            reach: Reach::Nobody,
            output: vec![0; self.frame_len].into_boxed_slice(),
            detector: TalkDetector::new(),
        });
        Ok(id)
    }

    /// Removes a participant (between ticks). No `StoppedTalking` is reported for them.
    pub fn remove(&mut self, id: ParticipantId) -> Result<(), MixerError> {
        let index = self.index(id)?;
        self.participants.swap_remove(index);
        if self.loudest == Some(id) {
            self.loudest = None;
        }
        Ok(())
    }

    fn index(&self, id: ParticipantId) -> Result<usize, MixerError> {
        self.participants.iter().position(|p| p.id == id).ok_or(MixerError::UnknownParticipant(id))
    }

    fn participant_mut(&mut self, id: ParticipantId) -> Result<&mut Participant, MixerError> {
        let index = self.index(id)?;
        Ok(&mut self.participants[index])
    }

    fn check_role(&self, id: ParticipantId, role: Role) -> Result<(), MixerError> {
        match role {
            Role::WhisperTo(target) if target == id => Err(MixerError::WhisperToSelf(id)),
            Role::WhisperTo(target) => self.index(target).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// A participant's settings.
    pub fn settings(&self, id: ParticipantId) -> Result<Settings, MixerError> {
        Ok(self.participants[self.index(id)?].settings)
    }

    /// Mutes or unmutes a participant.
    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> Result<(), MixerError> {
        self.participant_mut(id)?.settings.muted = muted;
        Ok(())
    }

    /// Changes a participant's role. A whisper target must be another participant of the
    /// conference; if that participant leaves, the whisper reaches nobody.
    pub fn set_role(&mut self, id: ParticipantId, role: Role) -> Result<(), MixerError> {
        self.index(id)?;
        self.check_role(id, role)?;
        self.participant_mut(id)?.settings.role = role;
        Ok(())
    }

    /// Sets the gain on what a participant says, dB (clamped to [`MIN_GAIN_DB`]..=[`MAX_GAIN_DB`]).
    pub fn set_input_gain_db(&mut self, id: ParticipantId, db: f32) -> Result<(), MixerError> {
        let gain = gain_q16(db)?;
        let p = self.participant_mut(id)?;
        p.settings.input_gain_db = db.clamp(MIN_GAIN_DB, MAX_GAIN_DB);
        p.input_gain = gain;
        Ok(())
    }

    /// Sets the gain on what a participant hears, dB (clamped to [`MIN_GAIN_DB`]..=[`MAX_GAIN_DB`]).
    pub fn set_output_gain_db(&mut self, id: ParticipantId, db: f32) -> Result<(), MixerError> {
        let gain = gain_q16(db)?;
        let p = self.participant_mut(id)?;
        p.settings.output_gain_db = db.clamp(MIN_GAIN_DB, MAX_GAIN_DB);
        p.output_gain = gain;
        Ok(())
    }

    /// Gives a participant's frame for the coming tick ([`frame_len`](Self::frame_len) samples
    /// at the mixer's rate). Pushing twice in one tick keeps the second frame.
    pub fn push(&mut self, id: ParticipantId, frame: &[i16]) -> Result<(), MixerError> {
        let expected = self.frame_len;
        if frame.len() != expected {
            return Err(MixerError::FrameLength { expected, got: frame.len() });
        }
        let p = self.participant_mut(id)?;
        p.input.copy_from_slice(frame);
        p.sent = true;
        Ok(())
    }

    /// Mixes one frame for everyone from what was pushed since the last tick, and returns the
    /// talking-state changes of this tick (in no particular order).
    pub fn tick(&mut self) -> &[MixerEvent] {
        self.events.clear();
        self.whispers.clear();
        self.total.fill(0);
        let mut loudest: Option<(ParticipantId, f32)> = None;
        for (index, p) in self.participants.iter_mut().enumerate() {
            let change = if p.sent { p.detector.push(&p.input) } else { p.detector.push_nothing() };
            match change {
                Some(true) => self.events.push(MixerEvent::StartedTalking(p.id)),
                Some(false) => self.events.push(MixerEvent::StoppedTalking(p.id)),
                None => {}
            }
            if p.detector.is_talking() && p.is_public() {
                let gain = p.input_gain as f32 / UNITY as f32;
                let level = p.detector.smoothed_power * gain * gain;
                if loudest.is_none_or(|(_, best)| level > best) {
                    loudest = Some((p.id, level));
                }
            }
            p.reach = match p.settings.role {
                _ if !p.sent || p.settings.muted => Reach::Nobody,
                Role::Normal | Role::Deaf => Reach::Everyone,
                Role::ListenOnly => Reach::Nobody,
                Role::WhisperTo(listener) => Reach::Only(listener),
            };
            if p.reach == Reach::Nobody {
                continue;
            }
            apply_input_gain(&p.input, p.input_gain, &mut p.contribution);
            match p.reach {
                Reach::Everyone => {
                    for (t, c) in self.total.iter_mut().zip(&p.contribution) {
                        *t += c;
                    }
                }
                Reach::Only(listener) => self.whispers.push((index, listener)),
                Reach::Nobody => {}
            }
        }
        self.loudest = loudest.map(|(id, _)| id);

        for index in 0..self.participants.len() {
            let listener = &self.participants[index];
            if listener.settings.role == Role::Deaf {
                self.participants[index].output.fill(0);
                continue;
            }
            if listener.reach == Reach::Everyone {
                for ((m, t), c) in self.mix.iter_mut().zip(&self.total).zip(&listener.contribution) {
                    *m = t - c;
                }
            } else {
                self.mix.copy_from_slice(&self.total);
            }
            for &(whisperer, to) in &self.whispers {
                if to == listener.id {
                    for (m, c) in self.mix.iter_mut().zip(&self.participants[whisperer].contribution) {
                        *m += c;
                    }
                }
            }
            let listener = &mut self.participants[index];
            apply_output_gain(&self.mix, listener.output_gain, &mut listener.output);
        }
        for p in &mut self.participants {
            p.sent = false;
        }
        &self.events
    }

    /// The frame a participant hears, from the last tick.
    pub fn output(&self, id: ParticipantId) -> Result<&[i16], MixerError> {
        Ok(&self.participants[self.index(id)?].output)
    }

    /// Every participant's frame from the last tick.
    pub fn outputs(&self) -> impl Iterator<Item = (ParticipantId, &[i16])> + '_ {
        self.participants.iter().map(|p| (p.id, &*p.output))
    }

    /// Whether a participant is talking (as of the last tick).
    pub fn is_talking(&self, id: ParticipantId) -> Result<bool, MixerError> {
        Ok(self.participants[self.index(id)?].detector.is_talking())
    }

    /// A participant's talk detector (level, noise floor).
    pub fn detector(&self, id: ParticipantId) -> Result<&TalkDetector, MixerError> {
        Ok(&self.participants[self.index(id)?].detector)
    }

    /// The loudest participant talking (as of the last tick) among those everyone hears:
    /// neither muted, listen-only nor whispering. Levels are compared after the input gain.
    pub fn loudest_talker(&self) -> Option<ParticipantId> {
        self.loudest
    }
}

fn apply_input_gain(input: &[i16], gain: i64, out: &mut [i32]) {
    if gain == UNITY {
        for (o, &x) in out.iter_mut().zip(input) {
            *o = i32::from(x);
        }
    } else {
        // |x · gain| ≤ 32768 · 10 · 2^16: fits in i64, and the result (≤ 327680) in i32.
        for (o, &x) in out.iter_mut().zip(input) {
            *o = ((i64::from(x) * gain + (UNITY >> 1)) >> 16) as i32;
        }
    }
}

fn apply_output_gain(mix: &[i32], gain: i64, out: &mut [i16]) {
    if gain == UNITY {
        for (o, &m) in out.iter_mut().zip(mix) {
            *o = m.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
    } else {
        for (o, &m) in out.iter_mut().zip(mix) {
            let scaled = (i64::from(m) * gain + (UNITY >> 1)) >> 16;
            *o = scaled.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{goertzel_power, rms};
    use crate::testsignal::Noise;
    use crate::tone::amplitude_for_dbm0;
    use std::f64::consts::TAU;

    /// A continuous sine, frame by frame.
    struct Sine {
        step: f64,
        phase: f64,
        amplitude: f64,
    }

    impl Sine {
        fn new(freq: f64, dbm0: f64, rate: u32) -> Self {
            Sine { step: TAU * freq / f64::from(rate), phase: 0.0, amplitude: amplitude_for_dbm0(dbm0) }
        }

        fn frame(&mut self, len: usize) -> Vec<i16> {
            (0..len)
                .map(|_| {
                    let v = self.amplitude * self.phase.sin();
                    self.phase = (self.phase + self.step) % TAU;
                    v.round() as i16
                })
                .collect()
        }
    }

    fn power(samples: &[i16], freq: f64, rate: u32) -> f32 {
        let block: Vec<f32> = samples.iter().map(|&s| f32::from(s)).collect();
        goertzel_power(&block, freq, rate)
    }

    fn db(ratio: f32) -> f32 {
        10.0 * ratio.log10()
    }

    const FREQS: [f64; 3] = [440.0, 697.0, 1209.0];

    /// Runs `ticks` ticks with each participant sending its tone (None: nothing), collecting
    /// what each hears after the first few ticks.
    fn run_tones(mixer: &mut Mixer, parties: &[(ParticipantId, Option<f64>)], ticks: usize) -> Vec<Vec<i16>> {
        let rate = mixer.sample_rate();
        let mut sines: Vec<Option<Sine>> = parties.iter().map(|(_, f)| f.map(|f| Sine::new(f, -20.0, rate))).collect();
        let mut heard = vec![Vec::new(); parties.len()];
        for _ in 0..ticks {
            for ((id, _), sine) in parties.iter().zip(&mut sines) {
                if let Some(sine) = sine {
                    mixer.push(*id, &sine.frame(mixer.frame_len())).unwrap();
                }
            }
            mixer.tick();
            for ((id, _), out) in parties.iter().zip(&mut heard) {
                out.extend_from_slice(mixer.output(*id).unwrap());
            }
        }
        heard
    }

    fn three_parties(rate: u32) -> (Mixer, Vec<ParticipantId>) {
        let mut mixer = Mixer::new(rate).unwrap();
        let ids = (0..3).map(|_| mixer.add(Settings::default()).unwrap()).collect();
        (mixer, ids)
    }

    #[test]
    fn three_parties_each_hear_the_other_two() {
        for rate in [8000, 16000] {
            let (mut mixer, ids) = three_parties(rate);
            let parties: Vec<_> = ids.iter().zip(FREQS).map(|(&id, f)| (id, Some(f))).collect();
            let heard = run_tones(&mut mixer, &parties, 10);
            for (me, out) in heard.iter().enumerate() {
                let p: Vec<f32> = FREQS.iter().map(|&f| power(out, f, rate)).collect();
                for other in (0..3).filter(|&o| o != me) {
                    assert!(db(p[other] / p[me]) > 40.0, "{rate} Hz, party {me}: {p:?}");
                }
            }
        }
    }

    #[test]
    fn muted_party_reaches_nobody_but_still_hears() {
        let (mut mixer, ids) = three_parties(8000);
        mixer.set_muted(ids[0], true).unwrap();
        let parties: Vec<_> = ids.iter().zip(FREQS).map(|(&id, f)| (id, Some(f))).collect();
        let heard = run_tones(&mut mixer, &parties, 10);
        for out in &heard[1..] {
            assert!(db(power(out, FREQS[1], 8000).max(power(out, FREQS[2], 8000)) / power(out, FREQS[0], 8000)) > 40.0);
        }
        assert!(db(power(&heard[0], FREQS[1], 8000) / power(&heard[0], FREQS[0], 8000)) > 40.0);
        assert!(db(power(&heard[0], FREQS[2], 8000) / power(&heard[0], FREQS[0], 8000)) > 40.0);
        // Unmuting brings the voice back.
        mixer.set_muted(ids[0], false).unwrap();
        let heard = run_tones(&mut mixer, &parties, 10);
        assert!(db(power(&heard[1], FREQS[0], 8000) / power(&heard[1], FREQS[2], 8000)).abs() < 1.0);
    }

    #[test]
    fn volume_changes_level_by_the_gain() {
        for (input_db, output_db) in [(6.0, 0.0), (-10.0, 0.0), (0.0, -12.0), (0.0, 9.0), (-20.0, 20.0)] {
            let (mut mixer, ids) = three_parties(8000);
            let parties = [(ids[0], Some(FREQS[0])), (ids[1], Some(FREQS[1])), (ids[2], None)];
            let reference = run_tones(&mut mixer, &parties, 10);
            let (mut mixer, ids) = three_parties(8000);
            mixer.set_input_gain_db(ids[0], input_db).unwrap();
            mixer.set_output_gain_db(ids[2], output_db).unwrap();
            let changed = run_tones(&mut mixer, &parties, 10);
            // The third party hears the first through both gains, the second through the output gain.
            let first = db(power(&changed[2], FREQS[0], 8000) / power(&reference[2], FREQS[0], 8000));
            assert!((first - (input_db + output_db)).abs() < 0.5, "{input_db}/{output_db}: {first} dB");
            let second = db(power(&changed[2], FREQS[1], 8000) / power(&reference[2], FREQS[1], 8000));
            assert!((second - output_db).abs() < 0.5, "{input_db}/{output_db}: {second} dB");
            // The second party hears the first through the input gain only.
            let at_second = db(power(&changed[1], FREQS[0], 8000) / power(&reference[1], FREQS[0], 8000));
            assert!((at_second - input_db).abs() < 0.5, "{input_db}: {at_second} dB");
        }
        let (mut mixer, ids) = three_parties(8000);
        mixer.set_input_gain_db(ids[0], 40.0).unwrap();
        assert_eq!(mixer.settings(ids[0]).unwrap().input_gain_db, MAX_GAIN_DB);
        assert!(matches!(mixer.set_output_gain_db(ids[0], f32::NAN), Err(MixerError::InvalidGain(g)) if g.is_nan()));
    }

    #[test]
    fn listen_only_hears_all_and_is_heard_by_none() {
        let (mut mixer, ids) = three_parties(8000);
        mixer.set_role(ids[2], Role::ListenOnly).unwrap();
        let parties: Vec<_> = ids.iter().zip(FREQS).map(|(&id, f)| (id, Some(f))).collect();
        let heard = run_tones(&mut mixer, &parties, 10);
        for out in &heard[..2] {
            assert!(power(out, FREQS[2], 8000) < power(&heard[2], FREQS[0], 8000) * 1e-4);
        }
        let listener = &heard[2];
        assert!(db(power(listener, FREQS[0], 8000) / power(listener, FREQS[2], 8000)) > 40.0);
        assert!(db(power(listener, FREQS[1], 8000) / power(listener, FREQS[2], 8000)) > 40.0);
        assert!(mixer.loudest_talker() != Some(ids[2]));
    }

    #[test]
    fn whisper_is_heard_by_its_listener_only() {
        let (mut mixer, ids) = three_parties(8000);
        let coach = mixer.add(Settings { role: Role::WhisperTo(ids[0]), ..Settings::default() }).unwrap();
        let freqs = [FREQS[0], FREQS[1], FREQS[2], 1633.0];
        let parties: Vec<_> = ids.iter().chain([&coach]).zip(freqs).map(|(&id, f)| (id, Some(f))).collect();
        let heard = run_tones(&mut mixer, &parties, 10);
        let whisper_at = |i: usize| power(&heard[i], 1633.0, 8000);
        let reference = power(&heard[1], FREQS[0], 8000);
        assert!(db(whisper_at(0) / reference).abs() < 1.0, "the agent hears the coach");
        assert!(whisper_at(1) < reference * 1e-4 && whisper_at(2) < reference * 1e-4, "the others do not");
        // The coach hears everyone else.
        for f in &FREQS {
            assert!(db(power(&heard[3], *f, 8000) / power(&heard[3], 1633.0, 8000)) > 40.0);
        }
        assert_eq!(mixer.set_role(coach, Role::WhisperTo(coach)), Err(MixerError::WhisperToSelf(coach)));
        // The agent leaves: the whisper reaches nobody and nothing breaks.
        mixer.remove(ids[0]).unwrap();
        let heard = run_tones(&mut mixer, &parties[1..], 5);
        for out in &heard[..2] {
            assert!(power(out, 1633.0, 8000) < reference * 1e-4);
        }
    }

    #[test]
    fn deaf_party_is_heard_and_hears_nothing() {
        let (mut mixer, ids) = three_parties(8000);
        mixer.set_role(ids[0], Role::Deaf).unwrap();
        let parties: Vec<_> = ids.iter().zip(FREQS).map(|(&id, f)| (id, Some(f))).collect();
        let heard = run_tones(&mut mixer, &parties, 5);
        assert!(heard[0].iter().all(|&s| s == 0));
        assert!(db(power(&heard[1], FREQS[0], 8000) / power(&heard[1], FREQS[2], 8000)).abs() < 1.0);
    }

    #[test]
    fn silent_party_contributes_silence() {
        let (mut mixer, ids) = three_parties(8000);
        let parties = [(ids[0], Some(FREQS[0])), (ids[1], None), (ids[2], None)];
        let heard = run_tones(&mut mixer, &parties, 3);
        assert!(heard[0].iter().all(|&s| s == 0), "alone, the talker hears nothing");
        assert_eq!(heard[1], heard[2]);
        // A frame pushed in one tick is not replayed in the next.
        mixer.push(ids[0], &[1000; 160]).unwrap();
        mixer.tick();
        assert!(mixer.output(ids[1]).unwrap().iter().all(|&s| s == 1000));
        mixer.tick();
        assert!(mixer.output(ids[1]).unwrap().iter().all(|&s| s == 0));
    }

    /// Feeds `frames` to one participant; returns the ticks at which events came.
    fn talk_events(frames: &[Vec<i16>]) -> Vec<(usize, MixerEvent)> {
        let mut mixer = Mixer::new(8000).unwrap();
        let id = mixer.add(Settings::default()).unwrap();
        let mut events = Vec::new();
        for (tick, frame) in frames.iter().enumerate() {
            mixer.push(id, frame).unwrap();
            events.extend(mixer.tick().iter().map(|&e| (tick, e)));
            if matches!(events.last(), Some((t, MixerEvent::StartedTalking(_))) if *t == tick) {
                assert_eq!(mixer.loudest_talker(), Some(id));
            }
        }
        events
    }

    #[test]
    fn talker_events_follow_a_tone_burst() {
        let mut sine = Sine::new(440.0, -25.0, 8000);
        // 200 ms of silence, 500 ms of tone, 1 s of silence.
        let frames: Vec<Vec<i16>> =
            (0..85).map(|i| if (10..35).contains(&i) { sine.frame(160) } else { vec![0; 160] }).collect();
        let events = talk_events(&frames);
        assert_eq!(events.len(), 2, "{events:?}");
        let (start, started) = events[0];
        assert!(matches!(started, MixerEvent::StartedTalking(_)));
        // The event comes with the tick that ends `start`'s frame.
        let attack_ms = (start + 1 - 10) as u32 * FRAME_MS;
        assert!(attack_ms <= 40, "started after {attack_ms} ms");
        let (stop, stopped) = events[1];
        assert!(matches!(stopped, MixerEvent::StoppedTalking(_)));
        let hangover_ms = (stop + 1 - 35) as u32 * FRAME_MS;
        assert!((300..=340).contains(&hangover_ms), "stopped {hangover_ms} ms after the tone");
    }

    #[test]
    fn no_talker_on_silence_or_low_noise() {
        let mut noise = Noise::new(7);
        // Gaussian noise at −50 dBm0.
        let sigma = amplitude_for_dbm0(-50.0) / 2f64.sqrt();
        let frames: Vec<Vec<i16>> = (0..200)
            .map(|i| if i < 50 { vec![0; 160] } else { (0..160).map(|_| (sigma * noise.gaussian()) as i16).collect() })
            .collect();
        assert_eq!(talk_events(&frames), vec![]);
    }

    #[test]
    fn steady_noise_is_learned_and_speech_above_it_still_found() {
        let mut noise = Noise::new(11);
        let sigma = amplitude_for_dbm0(-35.0) / 2f64.sqrt();
        let mut sine = Sine::new(697.0, -15.0, 8000);
        // 20 s of noise at −35 dBm0 from the first frame, then a 400 ms tone over it.
        let frames: Vec<Vec<i16>> = (0..1100)
            .map(|i| {
                let mut f: Vec<i16> = (0..160).map(|_| (sigma * noise.gaussian()) as i16).collect();
                if (1000..1020).contains(&i) {
                    for (s, t) in f.iter_mut().zip(sine.frame(160)) {
                        *s = s.saturating_add(t);
                    }
                }
                f
            })
            .collect();
        let events = talk_events(&frames);
        // The noise counts as talk until the floor reaches it (a few seconds), then no more.
        let stopped = events.iter().position(|(_, e)| matches!(e, MixerEvent::StoppedTalking(_)));
        let (stop_tick, _) = events[stopped.unwrap()];
        assert!(stop_tick < 500, "noise learned only after {stop_tick} ticks: {events:?}");
        let later: Vec<_> = events.iter().filter(|(t, _)| *t > stop_tick).collect();
        assert_eq!(later.len(), 2, "{events:?}");
        assert!(matches!(later[0], (1001, MixerEvent::StartedTalking(_))), "{later:?}");
    }

    #[test]
    fn loudest_talker_is_the_louder_public_one() {
        let mut mixer = Mixer::new(8000).unwrap();
        let quiet = mixer.add(Settings::default()).unwrap();
        let loud = mixer.add(Settings::default()).unwrap();
        let muted = mixer.add(Settings { muted: true, ..Settings::default() }).unwrap();
        let (mut a, mut b, mut c) =
            (Sine::new(440.0, -30.0, 8000), Sine::new(697.0, -20.0, 8000), Sine::new(941.0, -5.0, 8000));
        for _ in 0..10 {
            mixer.push(quiet, &a.frame(160)).unwrap();
            mixer.push(loud, &b.frame(160)).unwrap();
            mixer.push(muted, &c.frame(160)).unwrap();
            mixer.tick();
        }
        assert!(mixer.is_talking(muted).unwrap(), "a muted talker is still detected");
        assert_eq!(mixer.loudest_talker(), Some(loud));
        // 15 dB more on the quiet one makes it the loudest.
        mixer.set_input_gain_db(quiet, 15.0).unwrap();
        mixer.push(quiet, &a.frame(160)).unwrap();
        mixer.push(loud, &b.frame(160)).unwrap();
        mixer.tick();
        assert_eq!(mixer.loudest_talker(), Some(quiet));
    }

    #[test]
    fn ten_loud_parties_clip_without_wrapping() {
        let mut mixer = Mixer::new(16000).unwrap();
        let ids: Vec<_> = (0..10).map(|_| mixer.add(Settings::default()).unwrap()).collect();
        for &id in &ids {
            mixer.push(id, &[30000; 320]).unwrap();
        }
        mixer.tick();
        for (_, out) in mixer.outputs() {
            assert!(out.iter().all(|&s| s == i16::MAX));
        }
        // Full-scale sines in phase, +20 dB input gain: every sample keeps the sign of the true sum.
        let mut sines: Vec<Sine> = ids.iter().map(|_| Sine::new(1000.0, 3.17, 16000)).collect();
        for &id in &ids {
            mixer.set_input_gain_db(id, 20.0).unwrap();
        }
        for (&id, sine) in ids.iter().zip(&mut sines) {
            mixer.push(id, &sine.frame(320)).unwrap();
        }
        mixer.tick();
        let reference = Sine::new(1000.0, 3.17, 16000).frame(320);
        for (_, out) in mixer.outputs() {
            for (&o, &r) in out.iter().zip(&reference) {
                assert_eq!(o.signum(), r.signum());
                if r.unsigned_abs() > 400 {
                    assert_eq!(o.unsigned_abs(), if r > 0 { 32767 } else { 32768 });
                }
            }
        }
        assert!(rms(mixer.output(ids[0]).unwrap()) > 30000.0);
    }

    #[test]
    fn membership_is_bounded_and_ids_are_not_reused() {
        assert_eq!(Mixer::new(44100).err(), Some(MixerError::UnsupportedRate(44100)));
        let mut mixer = Mixer::new(8000).unwrap();
        let ids: Vec<_> = (0..MAX_PARTICIPANTS).map(|_| mixer.add(Settings::default()).unwrap()).collect();
        assert_eq!(mixer.add(Settings::default()), Err(MixerError::Full));
        mixer.remove(ids[3]).unwrap();
        assert_eq!(mixer.remove(ids[3]), Err(MixerError::UnknownParticipant(ids[3])));
        assert_eq!(mixer.push(ids[3], &[0; 160]), Err(MixerError::UnknownParticipant(ids[3])));
        let newcomer = mixer.add(Settings::default()).unwrap();
        assert!(!ids.contains(&newcomer));
        assert_eq!(mixer.len(), MAX_PARTICIPANTS);
        assert_eq!(mixer.push(newcomer, &[0; 320]), Err(MixerError::FrameLength { expected: 160, got: 320 }));
        let stale = ParticipantId(9999);
        assert_eq!(mixer.set_role(newcomer, Role::WhisperTo(stale)), Err(MixerError::UnknownParticipant(stale)));
        assert_eq!(MixerError::Full.to_string(), "the conference is full (64 participants)");
    }

    mod allocations {
        //! Counts this thread's allocations, to show that a tick allocates nothing.
        #![allow(unsafe_code)]

        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static COUNT: Cell<usize> = const { Cell::new(0) };
        }

        struct Counting;

        // SAFETY: forwards every call to the system allocator unchanged.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
                // SAFETY: the caller's contract is passed on.
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: the caller's contract is passed on.
                unsafe { System.dealloc(ptr, layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
                // SAFETY: the caller's contract is passed on.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static ALLOCATOR: Counting = Counting;

        /// Allocations made by this thread so far.
        pub(super) fn count() -> usize {
            COUNT.with(Cell::get)
        }
    }

    #[test]
    fn a_tick_allocates_nothing() {
        let mut mixer = Mixer::new(16000).unwrap();
        let ids: Vec<_> = (0..MAX_PARTICIPANTS).map(|_| mixer.add(Settings::default()).unwrap()).collect();
        mixer.set_role(ids[1], Role::WhisperTo(ids[0])).unwrap();
        mixer.set_role(ids[2], Role::ListenOnly).unwrap();
        mixer.set_input_gain_db(ids[3], 6.0).unwrap();
        mixer.set_output_gain_db(ids[4], -6.0).unwrap();
        let mut sine = Sine::new(440.0, -10.0, 16000);
        let frames: Vec<Vec<i16>> = (0..40).map(|i| if i < 20 { sine.frame(320) } else { vec![0; 320] }).collect();
        let before = allocations::count();
        let mut events = 0;
        for frame in &frames {
            for &id in &ids {
                mixer.push(id, frame).unwrap();
            }
            events += mixer.tick().len();
            for &id in &ids {
                std::hint::black_box(mixer.output(id).unwrap());
            }
        }
        assert_eq!(allocations::count(), before);
        assert_eq!(events, 2 * MAX_PARTICIPANTS, "everyone started and stopped talking");
    }
}
