//! SRTP on one side, plain RTP on the other, over real sockets: each side gets the other's
//! packets in its own form; tampered and replayed packets are dropped and counted, and do not
//! move the latch. Ports 42100..=42119.
#![allow(clippy::unwrap_used)]

mod common;

use common::V4;

use std::net::UdpSocket;
use std::time::Duration;

use media::{Side, SrtpKeys};
use srtp::{Context, MasterKey, Suite};

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[1, 2, 3, 4]);
    p.extend(std::iter::repeat_n(seq as u8, 160));
    p
}

/// A receiver report (RTCP, PT 201) with no blocks.
fn rtcp_rr() -> Vec<u8> {
    vec![0x80, 201, 0, 1, 0, 0, 0, 7]
}

fn receive(s: &UdpSocket) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
}

#[test]
fn one_side_encrypted_the_other_plain() {
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm] {
        let port_min = 42100 + 6 * (Suite::ALL.iter().position(|&s| s == suite).unwrap() as u16);
        let relay = common::relay(port_min, port_min + 5, 1);
        let common::Legs { session, a, b, relay_a, relay_b } = common::legs(&relay);
        // The phone on side A encrypts with `phone`; the relay toward it with `relay_key`.
        let phone = MasterKey::generate(suite).unwrap();
        let relay_key = MasterKey::generate(suite).unwrap();
        session.set_srtp(Side::A, Some(&SrtpKeys { inbound: phone.clone(), outbound: relay_key.clone() })).unwrap();
        let mut phone_tx = Context::new(&phone);
        let mut phone_rx = Context::new(&relay_key);
        std::thread::sleep(Duration::from_millis(50));

        // A → B: decrypted.
        let mut sealed = Vec::new();
        for seq in 1..=5 {
            phone_tx.protect_rtp(&rtp(seq), &mut sealed).unwrap();
            a.send_to(&sealed, relay_a).unwrap();
            assert_eq!(receive(&b), Some(rtp(seq)), "{suite}: B gets plain RTP");
        }
        phone_tx.protect_rtcp(&rtcp_rr(), &mut sealed).unwrap();
        a.send_to(&sealed, relay_a).unwrap();
        assert_eq!(receive(&b), Some(rtcp_rr()), "{suite}: B gets plain RTCP");

        // B → A: encrypted with the relay's key; the phone can open it.
        let mut opened = Vec::new();
        for seq in 100..=104 {
            b.send_to(&rtp(seq), relay_b).unwrap();
            let got = receive(&a).unwrap();
            assert_eq!(got.len(), rtp(seq).len() + suite.rtp_overhead());
            phone_rx.unprotect_rtp(&got, &mut opened).unwrap();
            assert_eq!(opened, rtp(seq), "{suite}: A gets B's packet, encrypted");
        }
        b.send_to(&rtcp_rr(), relay_b).unwrap();
        phone_rx.unprotect_rtcp(&receive(&a).unwrap(), &mut opened).unwrap();
        assert_eq!(opened, rtcp_rr());

        // A tampered packet, a replayed one, and one from elsewhere keyed otherwise: dropped,
        // counted, not forwarded.
        phone_tx.protect_rtp(&rtp(6), &mut sealed).unwrap();
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        a.send_to(&tampered, relay_a).unwrap();
        assert_eq!(receive(&b), None, "{suite}: tampered packet not forwarded");
        a.send_to(&sealed, relay_a).unwrap();
        assert_eq!(receive(&b), Some(rtp(6)));
        a.send_to(&sealed, relay_a).unwrap();
        assert_eq!(receive(&b), None, "{suite}: replay not forwarded");
        let stranger = UdpSocket::bind((V4, 0)).unwrap();
        let mut other = Context::new(&MasterKey::generate(suite).unwrap());
        other.protect_rtp(&rtp(7), &mut sealed).unwrap();
        stranger.send_to(&sealed, relay_a).unwrap();
        assert_eq!(receive(&b), None);
        let stats = session.stats();
        assert_eq!(stats.a.dropped_srtp, 3, "{suite}: {stats:?}");
        assert_eq!(stats.a.latched_rtp, Some(a.local_addr().unwrap()), "the latch did not move");
        assert_eq!(stats.b.dropped_srtp, 0);

        // Keys off: plain again.
        session.set_srtp(Side::A, None).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        a.send_to(&rtp(8), relay_a).unwrap();
        assert_eq!(receive(&b), Some(rtp(8)));
    }
}
