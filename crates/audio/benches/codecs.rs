//! Per-frame cost of the audio work a transcoding or DTMF-listening leg does: one 20 ms frame,
//! the unit a relay worker handles per packet.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use audio::dtmf::DtmfDetector;
use audio::g711::Law;
use audio::g722::{G722Decoder, G722Encoder};
use audio::testsignal::speech;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let narrow = speech(8000, 1.0, 3);
    let wide = speech(16000, 1.0, 3);
    let frame8 = &narrow[..160];
    let frame16 = &wide[..320];

    let mut bytes = Vec::with_capacity(320);
    let mut samples = Vec::with_capacity(320);
    c.bench_function("G.711 µ-law encode 20 ms", |b| b.iter(|| Law::Ulaw.encode(black_box(frame8), &mut bytes)));
    Law::Ulaw.encode(frame8, &mut bytes);
    let ulaw = bytes.clone();
    c.bench_function("G.711 µ-law decode 20 ms", |b| b.iter(|| Law::Ulaw.decode(black_box(&ulaw), &mut samples)));

    let mut encoder = G722Encoder::new();
    c.bench_function("G.722 encode 20 ms", |b| {
        b.iter(|| {
            bytes.clear();
            encoder.encode(black_box(frame16), &mut bytes)
        })
    });
    let mut g722 = Vec::new();
    G722Encoder::new().encode(frame16, &mut g722);
    let mut decoder = G722Decoder::new();
    c.bench_function("G.722 decode 20 ms", |b| {
        b.iter(|| {
            samples.clear();
            decoder.decode(black_box(&g722), &mut samples)
        })
    });

    let mut detector = DtmfDetector::default();
    let mut events = Vec::new();
    c.bench_function("in-band DTMF detector 20 ms", |b| {
        b.iter(|| {
            events.clear();
            detector.push(black_box(frame8), &mut events)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
