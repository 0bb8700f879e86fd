//! Transcoding cost per 20 ms packet, each direction of a call: what the relay worker adds per
//! packet of a transcoded call, beyond relaying it.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use audio::g711::Law;
use audio::g722::G722Encoder;
use audio::testsignal::speech;
use criterion::{Criterion, criterion_group, criterion_main};
use media::transcode::{Codec, DirectionPlan, Transcoder};

fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
    p.extend_from_slice(payload);
    p
}

fn bench(c: &mut Criterion) {
    let narrow = speech(8000, 0.02, 5);
    let wide = speech(16000, 0.02, 5);
    let mut pcmu = Vec::new();
    Law::Ulaw.encode(&narrow, &mut pcmu);
    let mut g722 = Vec::new();
    G722Encoder::new().encode(&wide, &mut g722);
    let cases = [
        ("PCMU → PCMA", (Codec::Pcmu, 0u8), (Codec::Pcma, 8u8), packet(0, &pcmu)),
        ("PCMU → G.722", (Codec::Pcmu, 0), (Codec::G722, 9), packet(0, &pcmu)),
        ("G.722 → PCMU", (Codec::G722, 9), (Codec::Pcmu, 0), packet(9, &g722)),
    ];
    for (name, from, to, original) in cases {
        let mut t = Transcoder::new(DirectionPlan { from, to, telephone_event: None });
        let mut p = original.clone();
        c.bench_function(&format!("transcode 20 ms {name}"), |b| {
            b.iter(|| {
                p.copy_from_slice(&original);
                black_box(t.convert(black_box(&mut p)))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
