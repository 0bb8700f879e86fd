//! G.711 µ-law and A-law (ITU-T G.711), bit-exact with the reference algorithm of ITU-T G.191.
//!
//! Input and output are 16-bit linear samples. G.711 quantises 14-bit (µ-law) or 13-bit (A-law)
//! magnitudes; as in G.191, the low bits are dropped and a negative sample's magnitude is taken as
//! its one's complement (`!x`), so that -1 lands in the same step as 0 with the opposite sign, the
//! way the standard's tables pair their positive and negative decision intervals.
//!
//! Encoding goes through 256-entry tables indexed by the sample's top bits where that is exact,
//! and decoding is a 256-entry table: both are built at compile time from the algorithm below.

/// µ-law code of a 16-bit linear sample.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENCODE[(sample as u16 >> 2) as usize]
}

/// 16-bit linear sample of a µ-law code.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// A-law code of a 16-bit linear sample.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[(sample as u16 >> 4) as usize]
}

/// 16-bit linear sample of an A-law code.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// µ-law code of silence (linear 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law code of silence (linear 0).
pub const ALAW_SILENCE: u8 = 0xD5;

/// The two G.711 laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law (PCMU, RTP payload type 0).
    Ulaw,
    /// A-law (PCMA, RTP payload type 8).
    Alaw,
}

impl Law {
    /// Encodes `samples` into `out` (one byte per sample; `out` is cleared first).
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        out.clear();
        match self {
            Law::Ulaw => out.extend(samples.iter().map(|&s| ulaw_encode(s))),
            Law::Alaw => out.extend(samples.iter().map(|&s| alaw_encode(s))),
        }
    }

    /// Decodes `codes` into `out` (one sample per byte; `out` is cleared first).
    pub fn decode(self, codes: &[u8], out: &mut Vec<i16>) {
        out.clear();
        match self {
            Law::Ulaw => out.extend(codes.iter().map(|&c| ulaw_decode(c))),
            Law::Alaw => out.extend(codes.iter().map(|&c| alaw_decode(c))),
        }
    }

    /// The code of linear 0.
    pub fn silence(self) -> u8 {
        match self {
            Law::Ulaw => ULAW_SILENCE,
            Law::Alaw => ALAW_SILENCE,
        }
    }
}

/// The G.191 µ-law compressor on a 16-bit sample. Only the top 14 bits matter.
const fn ulaw_compress(lin: i16) -> u8 {
    let lin = lin as i32;
    // 14-bit magnitude, one's complement for negatives, biased by 33.
    let mut absno = if lin < 0 { ((!lin) >> 2) + 33 } else { (lin >> 2) + 33 };
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high_nibble = 0x8 - segno;
    let low_nibble = 0xF - ((absno >> segno) & 0xF);
    let mut out = (high_nibble << 4) | low_nibble;
    if lin >= 0 {
        out |= 0x80;
    }
    out as u8
}

/// The G.191 µ-law expander.
const fn ulaw_expand(code: u8) -> i16 {
    let inverted = !code;
    let exponent = ((inverted >> 4) & 0x7) as i32;
    let mantissa = (inverted & 0xF) as i32;
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    (if code < 0x80 { -magnitude } else { magnitude }) as i16
}

/// The G.191 A-law compressor on a 16-bit sample. Only the top 12 bits matter.
const fn alaw_compress(lin: i16) -> u8 {
    let lin = lin as i32;
    // 12-bit magnitude, one's complement for negatives.
    let mut ix = if lin < 0 { (!lin) >> 4 } else { lin >> 4 };
    if ix > 15 {
        let mut exponent = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            exponent += 1;
        }
        ix -= 16;
        ix += exponent << 4;
    }
    if lin >= 0 {
        ix |= 0x80;
    }
    (ix ^ 0x55) as u8
}

/// The G.191 A-law expander.
const fn alaw_expand(code: u8) -> i16 {
    let ix = ((code ^ 0x55) & 0x7F) as i32;
    let exponent = ix >> 4;
    let mut mantissa = ix & 0xF;
    if exponent > 0 {
        mantissa += 16;
    }
    mantissa = (mantissa << 4) + 0x8;
    if exponent > 1 {
        mantissa <<= exponent - 1;
    }
    (if code > 127 { mantissa } else { -mantissa }) as i16
}

/// µ-law codes indexed by the top 14 bits of the sample (as unsigned bits).
static ULAW_ENCODE: [u8; 1 << 14] = {
    let mut table = [0u8; 1 << 14];
    let mut i = 0;
    while i < table.len() {
        table[i] = ulaw_compress(((i as u16) << 2) as i16);
        i += 1;
    }
    table
};

/// A-law codes indexed by the top 12 bits of the sample (as unsigned bits).
static ALAW_ENCODE: [u8; 1 << 12] = {
    let mut table = [0u8; 1 << 12];
    let mut i = 0;
    while i < table.len() {
        table[i] = alaw_compress(((i as u16) << 4) as i16);
        i += 1;
    }
    table
};

static ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_expand(i as u8);
        i += 1;
    }
    table
};

static ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_expand(i as u8);
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Reconstruction values of G.711 Table 2a (µ-law), positive codes 0x80..=0xFF, in 16-bit units
    /// (the table's 14-bit values ×4). Each segment's first and last value: the standard's figures.
    const ULAW_SEGMENT_ENDS: [(u8, i16); 16] = [
        (0x80, 32124),
        (0x8F, 16764),
        (0x90, 15996),
        (0x9F, 8316),
        (0xA0, 7932),
        (0xAF, 4092),
        (0xB0, 3900),
        (0xBF, 1980),
        (0xC0, 1884),
        (0xCF, 924),
        (0xD0, 876),
        (0xDF, 396),
        (0xE0, 372),
        (0xEF, 132),
        (0xF0, 120),
        (0xFF, 0),
    ];

    /// Reconstruction values of G.711 Table 1a (A-law), positive codes before the even-bit
    /// inversion, in 16-bit units (the table's 13-bit values ×8, with the half step).
    const ALAW_SEGMENT_ENDS: [(u8, i16); 8] = [
        (0xD5, 8),     // segment 0, first step
        (0xDA, 248),   // segment 0, last step
        (0xC5, 264),   // segment 1, first step
        (0xCA, 504),   // segment 1, last step
        (0xF5, 528),   // segment 2, first step
        (0xFA, 1008),  // segment 2, last step
        (0xAA, 32256), // segment 7, last step (largest)
        (0xA5, 16896), // segment 7, first step
    ];

    #[test]
    fn ulaw_decoding_matches_the_standard_table() {
        for (code, value) in ULAW_SEGMENT_ENDS {
            assert_eq!(ulaw_decode(code), value, "code {code:#04x}");
            assert_eq!(ulaw_decode(code & 0x7F), if value == 0 { 0 } else { -value }, "code {:#04x}", code & 0x7F);
        }
        // Within a segment the steps are equal: 2^(segment+1) in 14-bit units.
        for segment in 0..8u8 {
            let step = 8i16 << segment;
            for m in 0..15u8 {
                let code = 0xFF - (segment << 4) - m;
                assert_eq!(ulaw_decode(code) + step, ulaw_decode(code - 1), "code {code:#04x}");
            }
        }
    }

    #[test]
    fn alaw_decoding_matches_the_standard_table() {
        for (code, value) in ALAW_SEGMENT_ENDS {
            assert_eq!(alaw_decode(code), value, "code {code:#04x}");
            assert_eq!(alaw_decode(code & 0x7F), -value, "code {:#04x}", code & 0x7F);
        }
    }

    #[test]
    fn silence_and_extremes() {
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ulaw_decode(ULAW_SILENCE), 0);
        assert_eq!(alaw_decode(ALAW_SILENCE), 8);
    }

    /// Every 16-bit input lands in the interval of its code: the reconstruction levels are the
    /// midpoints of their intervals, so the input is within half an interval of its level, the
    /// interval being at most as wide as the gap to the farther neighbouring level (an
    /// independent check over the 128 levels, not the segment arithmetic); and the code never
    /// goes down as the input goes up.
    fn check_intervals(encode: fn(i16) -> u8, decode: fn(u8) -> i16, drop_bits: u32) {
        let mut levels: Vec<i32> = (0u8..128).map(|c| i32::from(decode(c | 0x80)).abs()).collect();
        levels.sort_unstable();
        levels.dedup();
        let half_width = |level: i32| {
            let i = levels.iter().position(|&l| l == level).unwrap_or(0);
            let below = if i > 0 { level - levels[i - 1] } else { 0 };
            let above = levels.get(i + 1).map_or(0, |&l| l - level);
            below.max(above) / 2
        };
        let top = *levels.last().unwrap_or(&0);
        let mut previous: Option<(bool, i32)> = None;
        for x in i16::MIN..=i16::MAX {
            let code = encode(x);
            let negative = x < 0;
            assert_eq!(code & 0x80 == 0, negative, "sign of {x}");
            // The magnitude the standard sees: low bits dropped, one's complement for negatives.
            let scale = 1i32 << drop_bits;
            let magnitude = if negative { (!i32::from(x)) >> drop_bits } else { i32::from(x) >> drop_bits };
            let centre = magnitude * scale + scale / 2;
            let level = i32::from(decode(code)).abs();
            if level != top {
                assert!(
                    (centre - level).abs() <= half_width(level),
                    "input {x}: code {code:#04x} decodes to {level}, too far from {centre}"
                );
            } else {
                assert!(centre >= level - half_width(level), "input {x}: overload level too early");
            }
            // Monotonic: larger magnitudes never get smaller levels (within one sign).
            if let Some((was_negative, was_level)) = previous
                && was_negative == negative
            {
                if negative {
                    assert!(level <= was_level, "input {x}: level {level} after {was_level}");
                } else {
                    assert!(level >= was_level, "input {x}: level {level} after {was_level}");
                }
            }
            previous = Some((negative, level));
        }
    }

    #[test]
    fn ulaw_encoding_puts_every_input_in_its_interval() {
        check_intervals(ulaw_encode, ulaw_decode, 2);
    }

    #[test]
    fn alaw_encoding_puts_every_input_in_its_interval() {
        check_intervals(alaw_encode, alaw_decode, 4);
    }

    #[test]
    fn decode_then_encode_gives_the_code_back() {
        for code in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(code));
            // µ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
            if code == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "µ-law {code:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn tables_agree_with_the_algorithm() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), ulaw_compress(x));
            assert_eq!(alaw_encode(x), alaw_compress(x));
        }
    }
}
