//! SRTP cost per packet: protecting and unprotecting a 20 ms G.711 packet (172 bytes) with
//! each suite, as the relay does for an encrypted leg.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use srtp::{Context, MasterKey, Suite};

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[1, 2, 3, 4]);
    p.extend(std::iter::repeat_n(0x55, 160));
    p
}

fn bench(c: &mut Criterion) {
    for suite in Suite::ALL {
        let key = MasterKey::generate(suite).expect("OS randomness");
        let mut sender = Context::new(&key);
        let mut out = Vec::with_capacity(256);
        let mut seq = 0u16;
        c.bench_function(&format!("srtp protect 172 B {suite}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let p = packet(seq);
                black_box(sender.protect_rtp(black_box(&p), &mut out))
            })
        });
        // A stream to open, packet after packet (replay protection on).
        let mut sealer = Context::new(&key);
        let sealed: Vec<Vec<u8>> = (0..50_000u32)
            .map(|i| {
                let mut o = Vec::new();
                sealer.protect_rtp(&packet(i as u16), &mut o).expect("protect");
                o
            })
            .collect();
        let mut receiver = Context::new(&key);
        let mut i = 0usize;
        c.bench_function(&format!("srtp unprotect 172 B {suite}"), |b| {
            b.iter(|| {
                if i.is_multiple_of(sealed.len()) {
                    // Start the stream again rather than replay it.
                    receiver = Context::new(&key);
                }
                let r = receiver.unprotect_rtp(black_box(&sealed[i % sealed.len()]), &mut out);
                i += 1;
                black_box(r)
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
