//! Cost of one 20 ms conference tick: ten participants talking (speech-like audio), each frame
//! pushed, mixed and read back, as a conference bridge does every 20 ms.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use audio::mixer::{Mixer, Role, Settings};
use audio::testsignal::speech;
use criterion::{Criterion, criterion_group, criterion_main};

const PARTIES: usize = 10;

fn bench_rate(c: &mut Criterion, rate: u32, whisper: bool) {
    let mut mixer = Mixer::new(rate).expect("supported rate");
    let ids: Vec<_> = (0..PARTIES).map(|_| mixer.add(Settings::default()).expect("room")).collect();
    if whisper {
        mixer.set_role(ids[1], Role::WhisperTo(ids[0])).expect("whisper");
        mixer.set_input_gain_db(ids[2], 6.0).expect("gain");
        mixer.set_output_gain_db(ids[3], -6.0).expect("gain");
    }
    let signals: Vec<Vec<i16>> = (0..PARTIES as u64).map(|seed| speech(rate, 1.0, seed + 1)).collect();
    let frame_len = mixer.frame_len();
    let frames = signals[0].len() / frame_len;
    let mut at = 0;
    let name =
        format!("mixer tick, {PARTIES} parties, {} kHz{}", rate / 1000, if whisper { ", whisper + gains" } else { "" });
    c.bench_function(&name, |b| {
        b.iter(|| {
            let range = at * frame_len..(at + 1) * frame_len;
            for (&id, signal) in ids.iter().zip(&signals) {
                mixer.push(id, black_box(&signal[range.clone()])).expect("frame");
            }
            black_box(mixer.tick().len());
            for (_, out) in mixer.outputs() {
                black_box(out);
            }
            at = (at + 1) % frames;
        })
    });
}

fn bench(c: &mut Criterion) {
    bench_rate(c, 8000, false);
    bench_rate(c, 16000, false);
    bench_rate(c, 16000, true);
}

criterion_group!(benches, bench);
criterion_main!(benches);
