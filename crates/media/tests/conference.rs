//! A three-party conference over real sockets: three phones each send their own tone (G.711
//! µ-law or A-law); each hears the other two and not itself; a muted party is heard by
//! nobody; leaving the conference relays a session normally again. Ports 42130..=42159.
#![allow(clippy::unwrap_used)]

mod common;

use common::V4;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use audio::analysis::goertzel_power;
use audio::g711::Law;
use audio::tone::{ToneGenerator, ToneSpec};
use media::{MediaSession, MemberSettings, PeerMedia, Side};

const TONES: [f64; 3] = [440.0, 1000.0, 1700.0];

struct Phone {
    socket: Arc<UdpSocket>,
    relay: SocketAddr,
    law: Law,
    /// RTCP the relay sent it.
    reports: std::cell::RefCell<Vec<Vec<u8>>>,
}

/// Sends `hz` as 20 ms packets until `stop`.
fn talk(phone: &Phone, hz: f64, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let (socket, relay, law) = (Arc::clone(&phone.socket), phone.relay, phone.law);
    thread::spawn(move || {
        let spec = ToneSpec { components: vec![(hz, -12.0)], cadence_ms: vec![], repeat: true };
        let mut tone = ToneGenerator::new(&spec, 8000);
        let pt = if law == Law::Ulaw { 0 } else { 8 };
        let mut samples = [0i16; 160];
        let mut payload = Vec::new();
        for seq in 0u16.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            tone.fill(&mut samples);
            law.encode(&samples, &mut payload);
            let mut p = vec![0x80, pt];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&(hz as u32).to_be_bytes());
            p.extend_from_slice(&payload);
            let _ = socket.send_to(&p, relay);
            thread::sleep(Duration::from_millis(20));
        }
    })
}

/// What `phone` hears for `ms`, decoded (the most recent part).
fn listen(phone: &Phone, ms: u64) -> Vec<i16> {
    phone.socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 2048];
    let mut heard = Vec::new();
    let mut decoded = Vec::new();
    let end = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < end {
        if let Ok((n, _)) = phone.socket.recv_from(&mut buf) {
            if (200..=204).contains(&buf[1]) {
                phone.reports.borrow_mut().push(buf[..n].to_vec());
                continue;
            }
            let pt = buf[1] & 0x7F;
            let law = if pt == 0 { Law::Ulaw } else { Law::Alaw };
            assert_eq!(law, phone.law, "mixed audio comes in the phone's own codec");
            law.decode(&buf[12..n], &mut decoded);
            heard.extend_from_slice(&decoded);
        }
    }
    heard
}

/// Relative power (dB) of each conference tone in `heard`.
fn levels(heard: &[i16]) -> [f32; 3] {
    let f: Vec<f32> = heard[heard.len() - 4000..].iter().map(|&s| f32::from(s)).collect();
    TONES.map(|hz| 10.0 * (goertzel_power(&f, hz, 8000) + 1.0).log10())
}

#[test]
fn three_parties_each_hear_the_other_two() {
    let relay = common::relay(42130, 42159, 2);
    let conference = relay.create_conference().unwrap();
    let laws = [Law::Ulaw, Law::Alaw, Law::Ulaw];
    let mut sessions: Vec<MediaSession> = Vec::new();
    let mut phones = Vec::new();
    for law in laws {
        let session = relay.allocate_for(&conference, V4, V4).unwrap();
        let socket = Arc::new(UdpSocket::bind((V4, 0)).unwrap());
        session.set_peer(Side::A, PeerMedia::muxed(socket.local_addr().unwrap())).unwrap();
        let relay = SocketAddr::new(V4, session.local(Side::A).rtp);
        phones.push(Phone { socket, relay, law, reports: Default::default() });
        sessions.push(session);
    }
    // A session of another worker cannot join.
    let elsewhere = relay.allocate(V4, V4).unwrap();
    let other = relay.allocate(V4, V4).unwrap();
    let wrong =
        [&elsewhere, &other].into_iter().any(|s| s.join(Side::A, &conference, MemberSettings::default()).is_err());
    assert!(wrong, "one of two consecutive sessions is on the other worker");
    drop((elsewhere, other));

    let stop = Arc::new(AtomicBool::new(false));
    let talkers: Vec<_> = phones.iter().zip(TONES).map(|(p, hz)| talk(p, hz, Arc::clone(&stop))).collect();
    thread::sleep(Duration::from_millis(100));
    for s in &sessions {
        s.join(Side::A, &conference, MemberSettings::default()).unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    for (i, phone) in phones.iter().enumerate() {
        let heard = listen(phone, 800);
        assert!(heard.len() >= 5000, "phone {i} heard {} samples", heard.len());
        let l = levels(&heard);
        for (j, level) in l.iter().enumerate() {
            if i == j {
                continue;
            }
            assert!(*level > l[i] + 30.0, "phone {i} should hear tone {j} well above its own: {l:?}");
        }
    }

    // Phone 0 muted: phones 1 and 2 no longer hear 440 Hz; phone 0 still hears them.
    sessions[0].set_member(Side::A, MemberSettings { muted: true, ..MemberSettings::default() }).unwrap();
    thread::sleep(Duration::from_millis(200));
    for (i, phone) in phones.iter().enumerate().skip(1) {
        let l = levels(&listen(phone, 600));
        let other = 3 - i;
        assert!(l[0] + 30.0 < l[other], "phone {i} still hears the muted party: {l:?}");
    }
    let l = levels(&listen(&phones[0], 600));
    assert!(l[1] > l[0] + 30.0 && l[2] > l[0] + 30.0, "the muted party hears the others: {l:?}");

    // Phone 0 unmuted, phone 2 leaves: phone 1 hears phone 0 again, and no longer phone 2;
    // phone 2 hears nothing from the conference (its session has no other side).
    sessions[0].set_member(Side::A, MemberSettings::default()).unwrap();
    sessions[2].leave(Side::A).unwrap();
    thread::sleep(Duration::from_millis(200));
    let l = levels(&listen(&phones[1], 600));
    assert!(l[0] > l[2] + 30.0, "phone 1 should hear phone 0 and not the party that left: {l:?}");
    let _ = listen(&phones[2], 100); // what was sent before it left
    assert!(listen(&phones[2], 300).is_empty(), "the party that left still gets the mix");
    // The relay reports to each member as its peer: a sender report from the SSRC of the mix,
    // with a block about what the member sends (its SSRC is the tone's frequency).
    for (phone, hz) in phones.iter().zip(TONES).take(2) {
        let _ = listen(phone, 200); // what came while nobody listened
        let reports = phone.reports.borrow();
        let sr = reports.iter().find(|r| r[1] == 200).expect("no sender report from the relay");
        let packets = u32::from_be_bytes([sr[20], sr[21], sr[22], sr[23]]);
        assert!(packets > 100, "{packets} packets reported");
        assert_eq!(sr[0] & 0x1F, 1, "one report block");
        assert_eq!(u32::from_be_bytes([sr[28], sr[29], sr[30], sr[31]]), hz as u32, "the block is about the member");
    }
    stop.store(true, Ordering::Relaxed);
    for t in talkers {
        t.join().unwrap();
    }
}
