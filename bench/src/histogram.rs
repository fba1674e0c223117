//! A log-linear latency histogram, cheap to merge across watchers.

use std::time::Duration;

use crate::report::ms;

/// Log-linear latency histogram in microseconds (about 12 % resolution), cheap to merge.
#[derive(Clone)]
pub(crate) struct Histogram([u64; 320]);

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram([0; 320])
    }
    pub(crate) fn bucket(us: u64) -> usize {
        if us < 16 {
            return us as usize;
        }
        let e = 63 - u64::from(us.leading_zeros());
        let m = (us >> (e - 3)) & 7;
        (16 + (e - 4) * 8 + m).min(319) as usize
    }
    pub(crate) fn upper(b: usize) -> u64 {
        if b < 16 {
            return b as u64;
        }
        let e = (b as u64 - 16) / 8 + 4;
        let m = (b as u64 - 16) % 8;
        ((8 + m + 1) << (e - 3)) - 1
    }
    pub(crate) fn record(&mut self, us: u64) {
        self.0[Self::bucket(us)] += 1;
    }
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
    pub(crate) fn count(&self) -> u64 {
        self.0.iter().sum()
    }
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let want = ((self.count() as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Duration::from_micros(Self::upper(b));
            }
        }
        Duration::ZERO
    }
    pub(crate) fn max(&self) -> Duration {
        let b = self.0.iter().rposition(|&n| n > 0).unwrap_or(0);
        Duration::from_micros(Self::upper(b))
    }
    pub(crate) fn summary(&self) -> String {
        format!(
            "p50 {} p99 {} max {}",
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.max())
        )
    }
}
