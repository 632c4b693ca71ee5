//! The numbers of the report: percentiles of a run's samples, medians over runs, and how a value is shown.

use std::time::Duration;

use serde::Serialize;

/// The `p`th percentile (nearest rank) of `values`; NaN when there are none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of the runs' values (NaN ones, from failed runs, left out).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().filter(|v| !v.is_nan()).fold(f64::NAN, f64::max)
}

pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().filter(|v| !v.is_nan()).fold(f64::NAN, f64::min)
}

/// A p50 and a p99: of one run's samples ([`Pair::of`]), or each the median over the runs of the runs' own
/// ([`Pair::median_of`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pair {
    pub p50: f64,
    pub p99: f64,
}

impl Pair {
    /// Each percentile's median over `runs`.
    pub fn median_of(runs: impl IntoIterator<Item = Pair> + Clone) -> Self {
        let of = |p: fn(&Pair) -> f64| median(&runs.clone().into_iter().map(|r| p(&r)).collect::<Vec<_>>());
        Self { p50: of(|r| r.p50), p99: of(|r| r.p99) }
    }

    /// The p50 and p99 of one run's `values`.
    pub fn of(values: &[f64]) -> Self {
        Self { p50: percentile(values, 50.0), p99: percentile(values, 99.0) }
    }
}

/// Percentile by percentile: what relaying added is `via - direct`.
impl std::ops::Sub for Pair {
    type Output = Pair;

    fn sub(self, other: Pair) -> Pair {
        Pair { p50: self.p50 - other.p50, p99: self.p99 - other.p99 }
    }
}

/// A duration in ms.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A value as the report shows it: `—` when there is none (NaN).
pub fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() { "—".into() } else { format!("{v:.decimals$}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((percentile(&v, 50.0), percentile(&v, 99.0), percentile(&v, 100.0)), (50.0, 99.0, 100.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
