//! Order statistics for benchmark samples. Medians and percentiles, never means: one preempted
//! sample on a shared 2-CPU machine would move a mean by more than the effect being measured.

/// The `q`-quantile (0..=1) of `sorted` by nearest rank; 0 for no samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

pub fn median(samples: &[f64]) -> f64 {
    quantile(&sorted(samples), 0.5)
}

/// Median with the 10th and 90th percentiles: how one variant's samples spread.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        let s = sorted(samples);
        Spread {
            median: quantile(&s, 0.5),
            p10: quantile(&s, 0.1),
            p90: quantile(&s, 0.9),
            n: s.len(),
        }
    }
}

/// A ratio to the baseline: per round (each round's median over the baseline's median of the
/// same round, so slow phases of the machine cancel out), then the median and range of those.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ratio {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Ratio {
    /// `pairs`: (variant median, baseline median) per round.
    pub fn of(pairs: &[(f64, f64)]) -> Ratio {
        let r: Vec<f64> = pairs
            .iter()
            .filter(|(_, b)| *b > 0.0)
            .map(|(v, b)| v / b)
            .collect();
        let s = sorted(&r);
        Ratio {
            median: quantile(&s, 0.5),
            min: s.first().copied().unwrap_or(0.0),
            max: s.last().copied().unwrap_or(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let s: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(quantile(&s, 0.5), 6.0);
        assert_eq!(quantile(&s, 0.1), 2.0);
        assert_eq!(quantile(&s, 0.9), 10.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn ratio_is_per_round_then_median() {
        // A machine twice as slow in round 2 does not change the ratio.
        let r = Ratio::of(&[(110.0, 100.0), (220.0, 200.0), (130.0, 100.0)]);
        assert!((r.median - 1.1).abs() < 1e-9);
        assert!((r.min - 1.1).abs() < 1e-9 && (r.max - 1.3).abs() < 1e-9);
    }
}
