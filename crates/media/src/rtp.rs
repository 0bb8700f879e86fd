//! The RTP fixed header (RFC 3550 §5.1), as far as the relay reads into packets.

use std::ops::Range;

/// Where an RTP packet's payload is: after the fixed header, the CSRCs and any header
/// extension, before any padding. `None` for a packet that is not RTP version 2 or whose
/// lengths do not fit.
pub fn payload_range(packet: &[u8]) -> Option<Range<usize>> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(packet[0] & 0x0F);
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let padding = if packet[0] & 0x20 != 0 { usize::from(*packet.last()?) } else { 0 };
    let end = packet.len().checked_sub(padding)?;
    (start <= end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrcs_extension_and_padding() {
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 7, 7];
        assert_eq!(payload_range(&p), Some(12..14));
        // Two CSRCs and a one-word extension.
        p = vec![0x92, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0, 0, 0, 0, 9, 9]);
        assert_eq!(payload_range(&p), Some(28..30));
        // Padding of 3 (the last byte counts it).
        p = vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 0, 3];
        assert_eq!(payload_range(&p), Some(12..13));
        // Malformed: short, wrong version, extension or padding beyond the packet.
        assert_eq!(payload_range(&[0x80; 11]), None);
        assert_eq!(payload_range(&[0x40; 12]), None);
        assert_eq!(payload_range(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE]), None);
        assert_eq!(payload_range(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 200]), None);
        assert_eq!(payload_range(&[0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    }
}
