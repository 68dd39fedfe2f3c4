//! The statistics the table prints: nearest-rank percentiles, the
//! median/p99/count summary of a set of samples, and the conversion of TSC
//! cycles to microseconds.

/// The nearest-rank percentile `p` (0-100) of ascending `sorted` values
/// (the median of an even count is the lower middle value); NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median, p99 and count of a set of values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The median (nearest rank).
    pub median: f64,
    /// The 99th percentile (nearest rank).
    pub p99: f64,
    /// How many values.
    pub count: usize,
}

/// Summarise `values` (in any order); `None` when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(Summary {
        median: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
        count: v.len(),
    })
}

/// TSC cycles to microseconds at `tsc_khz`.
pub fn cycles_to_us(cycles: f64, tsc_khz: u64) -> f64 {
    cycles * 1000.0 / tsc_khz as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
        let four = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&four, 50.0), 2.0);
        assert_eq!(percentile(&four, 99.0), 4.0);
    }

    #[test]
    fn summaries_sort_their_input() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 3.0,
                p99: 5.0,
                count: 5
            }
        );
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn cycles_convert_with_the_tsc_frequency() {
        assert_eq!(cycles_to_us(2_000.0, 2_000_000), 1.0);
    }
}
