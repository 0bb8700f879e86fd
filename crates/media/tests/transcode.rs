//! The relay transcodes over real sockets: A speaks G.711 A-law, B G.722; each hears the
//! other's tone in its own codec, with payload types remapped. Ports 41970..=41989.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use audio::analysis::dominant_frequency;
use audio::g711::Law;
use audio::g722::{G722Decoder, G722Encoder};
use audio::tone::{ToneGenerator, ToneSpec};
use media::transcode::{Codec, DirectionPlan};
use media::{Side, TranscodePlan};

fn tone(freq: f64, rate: u32, ms: u32) -> Vec<i16> {
    let spec = ToneSpec { components: vec![(freq, -10.0)], cadence_ms: vec![], repeat: true };
    let mut samples = vec![0i16; (rate / 1000 * ms) as usize];
    ToneGenerator::new(&spec, rate).fill(&mut samples);
    samples
}

fn rtp(pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[9, 9, 9, 9]);
    p.extend_from_slice(payload);
    p
}

/// Receives `n` datagrams on `s`.
fn receive(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    (0..n).map(|_| s.recv_from(&mut buf).map(|(len, _)| buf[..len].to_vec()).unwrap()).collect()
}

#[test]
fn pcma_and_g722_legs_hear_each_other() {
    let relay = common::relay(41970, 41989, 1);
    let common::Legs { session, a, b, relay_a, relay_b } = common::legs(&relay);
    let plan = TranscodePlan {
        a_to_b: DirectionPlan::new((Codec::Pcma, 8), (Codec::G722, 9)).with_telephone_event(Some((101, 96))),
        b_to_a: DirectionPlan::new((Codec::G722, 9), (Codec::Pcma, 8)).with_telephone_event(Some((96, 101))),
    };
    session.set_transcoding(Some(plan)).unwrap();

    // A → B: 1 kHz in A-law, 20 ms packets; B gets G.722.
    let mut payload = Vec::new();
    for (seq, chunk) in tone(1000.0, 8000, 400).chunks(160).enumerate() {
        Law::Alaw.encode(chunk, &mut payload);
        a.send_to(&rtp(8, seq as u16, &payload), relay_a).unwrap();
    }
    a.send_to(&rtp(0x80 | 101, 100, &[3, 0x0A, 0, 160]), relay_a).unwrap();
    let got = receive(&b, 21);
    let mut decoder = G722Decoder::new();
    let mut wide = Vec::new();
    for p in &got[..20] {
        assert_eq!(p[1] & 0x7F, 9);
        assert_eq!(p.len(), 12 + 160);
        decoder.decode(&p[12..], &mut wide);
    }
    assert_eq!(got[20][1], 0x80 | 96, "telephone-event remapped");
    let found = dominant_frequency(&wide[1600..], 16000);
    assert!((found - 1000.0).abs() < 20.0, "B heard {found} Hz");

    // B → A: 2 kHz in G.722; A gets A-law.
    let mut encoder = G722Encoder::new();
    for (seq, chunk) in tone(2000.0, 16000, 400).chunks(320).enumerate() {
        payload.clear();
        encoder.encode(chunk, &mut payload);
        b.send_to(&rtp(9, seq as u16, &payload), relay_b).unwrap();
    }
    let got = receive(&a, 20);
    let mut narrow = Vec::new();
    let mut decoded = Vec::new();
    for p in &got {
        assert_eq!(p[1] & 0x7F, 8);
        Law::Alaw.decode(&p[12..], &mut decoded);
        narrow.extend_from_slice(&decoded);
    }
    let found = dominant_frequency(&narrow[800..], 8000);
    assert!((found - 2000.0).abs() < 20.0, "A heard {found} Hz");

    // A payload type the plan does not carry is not forwarded; transcoding off relays as is.
    a.send_to(&rtp(18, 200, &[0; 20]), relay_a).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(session.stats().a.dropped_invalid, 1);
    session.set_transcoding(None).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let plain = rtp(8, 201, &[0xD5; 160]);
    a.send_to(&plain, relay_a).unwrap();
    assert_eq!(receive(&b, 1), vec![plain]);
}

#[test]
fn music_on_hold_replaces_the_other_side() {
    use media::player::Source;
    let relay = common::relay(41990, 41999, 1);
    let common::Legs { session, a, b, relay_a, relay_b } = common::legs(&relay);
    // B speaks A-law first, so the music comes in A-law.
    b.send_to(&rtp(8, 1, &[0xD5; 160]), relay_b).unwrap();
    assert_eq!(receive(&a, 1)[0][1], 8);
    session.play(Side::B, Some(Source::BuiltinMusic)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    // What A sends no longer reaches B; the music does, 50 packets a second.
    a.send_to(&rtp(8, 2, &[0x55; 160]), relay_a).unwrap();
    let started = std::time::Instant::now();
    let got = receive(&b, 25);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_millis(1000), "25 packets in {took:?}");
    let mut samples = Vec::new();
    let mut decoded = Vec::new();
    for p in &got {
        assert_eq!((p[1] & 0x7F, p.len()), (8, 172), "A's packet or a wrong codec reached B");
        Law::Alaw.decode(&p[12..], &mut decoded);
        samples.extend_from_slice(&decoded);
    }
    assert!(audio::analysis::rms(&samples) > 300.0, "silent music");
    let seqs: Vec<u16> = got.iter().map(|p| u16::from_be_bytes([p[2], p[3]])).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{seqs:?}");
    // Stopped: A is heard again.
    session.play(Side::B, None).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 2048];
    while b.recv_from(&mut buf).is_ok() {}
    let mine = rtp(8, 3, &[0x55; 160]);
    a.send_to(&mine, relay_a).unwrap();
    assert_eq!(receive(&b, 1), vec![mine]);
}

/// Music on hold to a leg whose codec the player cannot make (Opus): its µ-law is converted
/// like the other side's audio, so the held Opus phone hears music, not silence.
#[test]
fn music_on_hold_reaches_an_opus_leg() {
    use media::player::Source;
    use media::transcode::{Outbox, Transcoder};
    let relay = common::relay(42160, 42169, 1);
    let common::Legs { session, a: _a, b, relay_a: _, relay_b: _ } = common::legs(&relay);
    session
        .set_transcoding(Some(TranscodePlan {
            a_to_b: DirectionPlan::new((Codec::Pcmu, 0), (Codec::Opus, 111)),
            b_to_a: DirectionPlan::new((Codec::Opus, 111), (Codec::Pcmu, 0)),
        }))
        .unwrap();
    session.play(Side::B, Some(Source::BuiltinMusic)).unwrap();
    let got = receive(&b, 40);
    let mut decoder = Transcoder::new(DirectionPlan::new((Codec::Opus, 111), (Codec::Pcmu, 0)));
    let mut out = Outbox::new();
    let mut music = Vec::new();
    let mut decoded = Vec::new();
    for (k, p) in got.iter().enumerate() {
        assert_eq!(p[1] & 0x7F, 111, "Opus, the held leg's codec");
        if k > 0 {
            let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            assert_eq!(ts(p).wrapping_sub(ts(&got[k - 1])), 960, "48 kHz clock, 20 ms");
        }
        out.clear();
        decoder.convert_into(p, &mut out).unwrap();
        for q in out.iter() {
            Law::Ulaw.decode(&q[12..], &mut decoded);
            music.extend_from_slice(&decoded);
        }
    }
    assert!(audio::analysis::rms(&music[1600..]) > 300.0, "the held Opus leg hears silence");
}
