//! Statistical checks for traffic splits.

/// Checks that `count` out of `total` requests is consistent with a share `p` (0..=1) within
/// `sigmas` binomial standard deviations; the error says by how much it is not.
pub fn check_share(
    what: &str,
    count: usize,
    total: usize,
    p: f64,
    sigmas: f64,
) -> Result<(), String> {
    let n = total as f64;
    let mean = n * p;
    let sd = (n * p * (1.0 - p)).sqrt();
    let dev = (count as f64 - mean).abs();
    // A share of exactly 0 or 1 has no variance: it must be met exactly.
    let ok = if sd == 0.0 {
        dev == 0.0
    } else {
        dev <= sigmas * sd
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: {count} of {total} requests, expected {mean:.0} ({:.0}%) +/- {:.1} ({sigmas} sigma)",
            p * 100.0,
            sigmas * sd
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_within_and_outside_bounds() {
        assert!(check_share("v1", 900, 1000, 0.9, 4.0).is_ok());
        assert!(check_share("v1", 865, 1000, 0.9, 4.0).is_ok());
        assert!(check_share("v1", 850, 1000, 0.9, 4.0).is_err());
        assert!(check_share("v1", 1000, 1000, 1.0, 4.0).is_ok());
        assert!(check_share("v1", 999, 1000, 1.0, 4.0).is_err());
    }
}
