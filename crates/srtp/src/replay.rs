//! Packet index estimation (RFC 3711 §3.3.1, Appendix A) and the sliding replay window
//! (RFC 3711 §3.3.2), shared by SRTP (48-bit indices) and SRTCP (31-bit indices).

use crate::SrtpError;

/// Packets the window remembers behind the highest index seen.
pub(crate) const WINDOW: u64 = 128;

/// The highest authenticated index and which of the [`WINDOW`] indices up to it were seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    highest: u64,
    /// Bit `i`: index `highest - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    /// A window whose first packet is `index`.
    pub(crate) fn starting_at(index: u64) -> ReplayWindow {
        ReplayWindow { highest: index, seen: 1 }
    }

    /// The highest index accepted so far.
    pub(crate) fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `index` may be accepted, without changing anything (checked before the packet is
    /// authenticated, recorded with [`ReplayWindow::accept`] after).
    pub(crate) fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        let behind = self.highest - index;
        if behind >= WINDOW {
            Err(SrtpError::TooOld)
        } else if self.seen >> behind & 1 == 1 {
            Err(SrtpError::Replay)
        } else {
            Ok(())
        }
    }

    /// Records `index` as seen (it passed [`ReplayWindow::check`] and authentication).
    pub(crate) fn accept(&mut self, index: u64) {
        if index > self.highest {
            let ahead = index - self.highest;
            self.seen = if ahead >= WINDOW { 0 } else { self.seen << ahead };
            self.seen |= 1;
            self.highest = index;
        } else {
            let behind = self.highest - index;
            if behind < WINDOW {
                self.seen |= 1 << behind;
            }
        }
    }
}

/// The 48-bit SRTP index of sequence number `seq`, given the highest index authenticated so far
/// (`None` before the first packet: rollover counter 0). RFC 3711 Appendix A: the guess whose
/// index is closest to the highest one, so the ROC goes one up just after a wrap and one down for
/// a late packet from before it. `TooOld` for a packet from before index 0, `KeyExhausted` past
/// 2^48.
pub(crate) fn estimate_index(highest: Option<u64>, seq: u16) -> Result<u64, SrtpError> {
    let Some(highest) = highest else {
        return Ok(u64::from(seq));
    };
    let roc = highest >> 16;
    let s_l = highest as u16;
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            // Late packet from before the last wrap.
            match roc.checked_sub(1) {
                Some(v) => v,
                None => return Err(SrtpError::TooOld),
            }
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        // Just wrapped.
        roc + 1
    } else {
        roc
    };
    if v > u64::from(u32::MAX) {
        return Err(SrtpError::KeyExhausted);
    }
    Ok(v << 16 | u64::from(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_new_and_rejects_duplicates() {
        let mut window = ReplayWindow::starting_at(1000);
        assert_eq!(window.check(1000), Err(SrtpError::Replay));
        assert_eq!(window.check(1001), Ok(()));
        assert_eq!(window.check(999), Ok(()));
        window.accept(1005);
        window.accept(999);
        assert_eq!(window.check(999), Err(SrtpError::Replay));
        assert_eq!(window.check(1005), Err(SrtpError::Replay));
        assert_eq!(window.check(1004), Ok(()));
        assert_eq!(window.check(1005 - 127), Ok(()));
        assert_eq!(window.check(1005 - 128), Err(SrtpError::TooOld));
        // A jump past the whole window forgets everything behind it.
        window.accept(2000);
        assert_eq!(window.check(1999), Ok(()));
        assert_eq!(window.check(2000), Err(SrtpError::Replay));
        assert_eq!(window.check(1005), Err(SrtpError::TooOld));
        assert_eq!(window.highest(), 2000);
    }

    #[test]
    fn window_shift_keeps_seen_bits() {
        let mut window = ReplayWindow::starting_at(0);
        for index in [2, 4, 6] {
            window.accept(index);
        }
        window.accept(70);
        for index in [0, 2, 4, 6, 70] {
            assert_eq!(window.check(index), Err(SrtpError::Replay), "{index}");
        }
        for index in [1, 3, 5, 69] {
            assert_eq!(window.check(index), Ok(()), "{index}");
        }
    }

    #[test]
    fn estimate_index_follows_appendix_a() {
        assert_eq!(estimate_index(None, 65_535), Ok(65_535));
        // Forward within the same cycle, and a wrap.
        assert_eq!(estimate_index(Some(65_000), 65_100), Ok(65_100));
        assert_eq!(estimate_index(Some(65_500), 3), Ok(0x1_0003));
        // A late packet from before the wrap.
        assert_eq!(estimate_index(Some(0x1_0003), 65_500), Ok(65_500));
        assert_eq!(estimate_index(Some(0x5_0010), 0xF000), Ok(0x4_F000));
        // Before the first cycle: nothing to go back to.
        assert_eq!(estimate_index(Some(10), 60_000), Err(SrtpError::TooOld));
        // The last cycle of a 48-bit index.
        let last = u64::from(u32::MAX) << 16 | 0xFFF0;
        assert_eq!(estimate_index(Some(last), 0xFFFF), Ok(last | 0xF));
        assert_eq!(estimate_index(Some(last), 1), Err(SrtpError::KeyExhausted));
    }
}
