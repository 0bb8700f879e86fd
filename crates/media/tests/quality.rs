//! The relay measures call quality on real sockets: loss and jitter of what each phone sends,
//! its reports about what it receives, and the round trip timed from forwarded sender reports.
//! Ports 41900..=41949.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use media::Side;
use media::emodel::CodecImpairment;
use media::rtcp::{ReportBlock, SenderInfo, ntp_middle, write_receiver_report, write_sender_report};

fn rtp(seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 7]);
    p.extend(std::iter::repeat_n(0xFF, 160));
    p
}

#[test]
fn loss_jitter_round_trip_and_mos_per_side() {
    let relay = common::relay(41900, 41949, 1);
    let common::Legs { session, a, b, relay_a, relay_b } = common::legs(&relay);
    b.set_read_timeout(Some(Duration::from_millis(200))).unwrap();

    // A sends 100 packets 20 ms apart, alternately on time and 6 ms late, every 10th lost.
    let start = Instant::now();
    for i in 0..100u32 {
        let due = start + Duration::from_millis(u64::from(i) * 20 + if i % 2 == 1 { 6 } else { 0 });
        while Instant::now() < due {
            std::thread::sleep(Duration::from_micros(200));
        }
        if i % 10 != 4 {
            a.send_to(&rtp(i as u16, i * 160), relay_a).unwrap();
        }
    }
    // B sends a sender report through the relay to A; A answers 100 ms later with a receiver
    // report that held it 80 ms, saying it lost a quarter of what it got.
    let ntp = 0x0000_2000_4000_0000u64;
    let mut sr = Vec::new();
    write_sender_report(9, SenderInfo { ntp, rtp_timestamp: 0, packets: 1, octets: 1 }, &[], &mut sr);
    b.send_to(&sr, relay_b).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &sr[..]);
    std::thread::sleep(Duration::from_millis(100));
    let block = ReportBlock {
        ssrc: 9,
        fraction_lost: 64,
        last_sr: ntp_middle(ntp),
        delay_since_last_sr: 65_536 * 80 / 1000,
        ..ReportBlock::default()
    };
    let mut rr = Vec::new();
    write_receiver_report(7, &[block], &mut rr);
    a.send_to(&rr, relay_a).unwrap();
    // Published about once a second while packets flow: keep a trickle going.
    let deadline = Instant::now() + Duration::from_secs(5);
    let quality = loop {
        std::thread::sleep(Duration::from_millis(100));
        a.send_to(&rtp(100, 100 * 160), relay_a).unwrap();
        let q = session.quality(Side::A);
        if q.rtt_ms.is_some() || Instant::now() > deadline {
            break q;
        }
    };
    assert!((quality.loss_pct - 10.0).abs() < 1.0, "{quality:?}");
    // |D| is 6 ms every packet (loopback and scheduling add a little).
    assert!((4.5..8.0).contains(&quality.jitter_ms), "{quality:?}");
    let rtt = quality.rtt_ms.unwrap();
    assert!((15.0..60.0).contains(&rtt), "round trip {rtt} ms");
    assert_eq!(quality.peer_loss_pct, Some(25.0));
    let mos = quality.mos(CodecImpairment::G711_PLC).unwrap();
    assert!(mos < 3.5, "MOS {mos}");
    // B sent no RTP: nothing measured there.
    assert_eq!(session.quality(Side::B).packets, 0);
}

#[test]
fn rfc4733_digits_are_reported_with_their_duration() {
    use audio::telephone_event::plan_event;
    use media::{MediaEvent, TelephoneEventType};
    use std::sync::{Arc, Mutex};

    let relay = common::relay(41950, 41969, 1);
    let common::Legs { session, a, b: _b, relay_a, relay_b: _ } = common::legs(&relay);
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    session.set_event_sink(Arc::new(move |e| seen.lock().unwrap().push(e))).unwrap();
    // Side B declared telephone-event 101 at 8 kHz; side A declared nothing (either is enough).
    session.set_telephone_events(Side::B, &[TelephoneEventType { payload_type: 101, clock_rate: 8000 }]).unwrap();
    // A sends digit 7 for 200 ms (updates every 20 ms, the end three times), then digit #.
    let mut seq = 0u16;
    for (event, ts) in [(7u8, 8000u32), (11, 16000)] {
        for packet in plan_event(event, 10, 200, 8000, 20) {
            let mut p = vec![0x80, if packet.marker { 0x80 | 101 } else { 101 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(ts + packet.timestamp_offset).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 7]);
            p.extend_from_slice(&packet.payload.to_bytes());
            a.send_to(&p, relay_a).unwrap();
            seq += 1;
        }
        // An audio packet is not an event.
        a.send_to(&[0x80, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 7, 0xFF, 0xFF, 0xFF, 0xFF], relay_a).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while events.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = events.lock().unwrap().clone();
    let expected = |digit| MediaEvent::Dtmf {
        side: Side::A,
        digit,
        duration: Duration::from_millis(200),
        end_seen: true,
        in_band: false,
    };
    assert_eq!(got, vec![expected('7'), expected('#')]);
}
