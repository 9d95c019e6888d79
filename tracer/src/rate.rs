//! A token bucket: `burst` at once, then `per_second`.

use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    burst: f64,
    per_second: f64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(burst: f64, per_second: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
            burst,
            per_second,
        }
    }

    /// Takes one token, if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t = Instant::now();
        let mut b = Bucket::new(3.0, 2.0, t);
        assert_eq!((0..5).filter(|_| b.take(t)).count(), 3);
        assert!(!b.take(t + Duration::from_millis(400)));
        assert!(
            b.take(t + Duration::from_millis(600)),
            "one more after half a second"
        );
        assert_eq!(
            (0..5)
                .filter(|_| b.take(t + Duration::from_secs(60)))
                .count(),
            3,
            "never more than the burst"
        );
    }
}
