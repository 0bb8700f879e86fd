//! How much delay the adaptive jitter buffer adds for a given network jitter, in virtual time:
//! 20 ms packets whose transit varies uniformly over [0, J] ms, popped every 20 ms; for each J,
//! the delay each packet spent in the buffer (mean, 95th percentile), the buffer's target, and
//! the share of packets that came too late to play.
//!
//!     cargo run --release -p switchboard-media --example jitter_delay

use std::collections::HashMap;
use std::time::{Duration, Instant};

use media::jitter::{Frame, JitterBuffer, JitterConfig};

fn main() {
    println!(
        "| jitter J (ms) | mean added delay (ms) | p95 added delay (ms) | target at end (ms) | late or lost (%) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for jitter_ms in [0u64, 10, 20, 40, 60, 100] {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::for_clock(8000));
        let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ jitter_ms;
        let mut uniform = move || {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        let count = 3000u32;
        let mut arrivals: Vec<(Instant, u32)> = (0..count)
            .map(|i| {
                let transit = Duration::from_secs_f64(uniform() * jitter_ms as f64 / 1000.0);
                (start + Duration::from_millis(u64::from(i) * 20) + transit, i * 160)
            })
            .collect();
        arrivals.sort();
        let arrived_at: HashMap<u32, Instant> = arrivals.iter().map(|&(at, ts)| (ts, at)).collect();
        let mut delays = Vec::new();
        let mut next = 0;
        for tick in 0..(count + 50) {
            let now = start + Duration::from_millis(u64::from(tick) * 20 + 1);
            while next < arrivals.len() && arrivals[next].0 <= now {
                buffer.push(arrivals[next].1, &[0u8; 160], arrivals[next].0);
                next += 1;
            }
            if let Frame::Packet { timestamp, .. } = buffer.pop(now)
                && let Some(at) = arrived_at.get(&timestamp)
            {
                delays.push(now.saturating_duration_since(*at).as_secs_f64() * 1000.0);
            }
        }
        // Skip the first second (the buffer adapts).
        let steady = &delays[delays.len().min(50)..];
        let mut sorted = steady.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = steady.iter().sum::<f64>() / steady.len().max(1) as f64;
        let p95 = sorted.get(sorted.len() * 95 / 100).copied().unwrap_or(0.0);
        let lost = 100.0 * (1.0 - delays.len() as f64 / f64::from(count));
        println!("| {jitter_ms} | {mean:.1} | {p95:.1} | {} | {lost:.2} |", buffer.target_delay().as_millis());
    }
}
