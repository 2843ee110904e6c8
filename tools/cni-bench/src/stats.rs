//! Order statistics, computed exactly like `bench-ref.sh`: the median is the
//! middle value (mean of the two middle ones for an even count) and p95 is
//! nearest-rank (the ceil(0.95 n)-th smallest).

use serde::Serialize;

/// Summary of one implementation's samples for one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Every sample, in measurement order, so runs can be re-analysed.
    pub samples: Vec<f64>,
}

impl Summary {
    /// `None` when there are no samples (or a NaN slipped in).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        // Nearest rank: smallest k with k >= 0.95 n, 1-based.
        let k = ((n * 95).div_ceil(100)).max(1);
        Some(Summary {
            n,
            median,
            p95: v[k - 1],
            min: v[0],
            max: v[n - 1],
            mean: v.iter().sum::<f64>() / n as f64,
            samples: samples.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    }

    #[test]
    fn p95_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Summary::of(&v).unwrap().p95, 19.0);
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(Summary::of(&v).unwrap().p95, 190.0);
        assert_eq!(Summary::of(&[5.0]).unwrap().p95, 5.0);
        let v: Vec<f64> = (1..=3).map(f64::from).collect();
        assert_eq!(Summary::of(&v).unwrap().p95, 3.0);
    }

    #[test]
    fn empty_and_nan() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn keeps_samples_in_order() {
        let s = Summary::of(&[3.0, 1.0]).unwrap();
        assert_eq!(s.samples, vec![3.0, 1.0]);
        assert_eq!((s.min, s.max, s.mean), (1.0, 3.0, 2.0));
    }
}
