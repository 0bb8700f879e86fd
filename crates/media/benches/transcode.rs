//! Transcoding cost per 20 ms packet, each direction of a call: what the relay worker adds per
//! packet of a transcoded call, beyond relaying it. In place (G.711, G.722) and through the
//! general path (Opus: decoding, encoding, new packets).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::time::Duration;

use audio::g711::Law;
use audio::g722::G722Encoder;
use audio::testsignal::speech;
use criterion::{Criterion, criterion_group, criterion_main};
use media::transcode::{Codec, DirectionPlan, OpusParams, Outbox, Transcoder};

fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
    p.extend_from_slice(payload);
    p
}

/// 20 ms packets of `payload_bytes` each cut from `payload`.
fn packets(pt: u8, payload: &[u8], payload_bytes: usize) -> Vec<Vec<u8>> {
    payload.chunks_exact(payload_bytes).map(|chunk| packet(pt, chunk)).collect()
}

/// What `plan`'s transcoder sends for `input`, numbered in order.
fn transcoded(plan: DirectionPlan, input: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut t = Transcoder::new(plan);
    let mut out = Outbox::new();
    let mut sent = Vec::new();
    for (i, p) in input.iter().enumerate() {
        let mut p = p.clone();
        p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        p[4..8].copy_from_slice(&(i as u32 * 160).to_be_bytes());
        out.clear();
        t.convert_into(&p, &mut out).expect("converted");
        sent.extend(out.iter().map(<[u8]>::to_vec));
    }
    sent
}

fn bench(c: &mut Criterion) {
    let narrow = speech(8000, 5.0, 5);
    let wide = speech(16000, 5.0, 5);
    let mut pcmu = Vec::new();
    Law::Ulaw.encode(&narrow, &mut pcmu);
    let mut g722 = Vec::new();
    G722Encoder::new().encode(&wide, &mut g722);
    let cases = [
        ("PCMU → PCMA", (Codec::Pcmu, 0u8), (Codec::Pcma, 8u8), packet(0, &pcmu[..160])),
        ("PCMU → G.722", (Codec::Pcmu, 0), (Codec::G722, 9), packet(0, &pcmu[..160])),
        ("G.722 → PCMU", (Codec::G722, 9), (Codec::Pcmu, 0), packet(9, &g722[..160])),
    ];
    for (name, from, to, original) in cases {
        let mut t = Transcoder::new(DirectionPlan::new(from, to));
        let mut p = original.clone();
        c.bench_function(&format!("transcode 20 ms {name}"), |b| {
            b.iter(|| {
                p.copy_from_slice(&original);
                black_box(t.convert(black_box(&mut p)))
            })
        });
    }

    // The general path, fed 5 s of speech packet after packet (numbered as they go, so that the
    // transcoder sees a stream without loss).
    let pcmu_packets = packets(0, &pcmu, 160);
    let g722_packets = packets(9, &g722, 160);
    let opus_narrow = transcoded(DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111)), &pcmu_packets);
    let opus_wide = transcoded(DirectionPlan::new((Codec::G722, 9), (Codec::Opus, 111)), &g722_packets);
    let complexity_10 = OpusParams { complexity: 10, ..OpusParams::default() };
    let complexity = |c: u8| OpusParams { complexity: c, ..OpusParams::default() };
    let general = [
        ("PCMU → Opus", DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111)), &pcmu_packets, 160),
        (
            "PCMU → Opus complexity 0",
            DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111)).with_opus(complexity(0)),
            &pcmu_packets,
            160,
        ),
        (
            "PCMU → Opus complexity 1",
            DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111)).with_opus(complexity(1)),
            &pcmu_packets,
            160,
        ),
        (
            "PCMU → Opus complexity 10",
            DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111)).with_opus(complexity_10),
            &pcmu_packets,
            160,
        ),
        ("Opus → PCMU", DirectionPlan::new((Codec::Opus, 111), (Codec::Pcmu, 0)), &opus_narrow, 960),
        ("G.722 → Opus", DirectionPlan::new((Codec::G722, 9), (Codec::Opus, 111)), &g722_packets, 160),
        ("Opus → G.722", DirectionPlan::new((Codec::Opus, 111), (Codec::G722, 9)), &opus_wide, 960),
    ];
    for (name, plan, input, step) in general {
        let mut t = Transcoder::new(plan);
        let mut out = Outbox::new();
        let mut p = Vec::with_capacity(1500);
        let mut i = 0u32;
        c.bench_function(&format!("transcode 20 ms {name}"), |b| {
            b.iter(|| {
                p.clear();
                p.extend_from_slice(&input[i as usize % input.len()]);
                p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                p[4..8].copy_from_slice(&i.wrapping_mul(step).to_be_bytes());
                i = i.wrapping_add(1);
                out.clear();
                black_box(t.convert_into(black_box(&p), &mut out))
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
