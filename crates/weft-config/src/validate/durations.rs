//! Durations: Istio's `ValidateDuration` and the CRDs' 1ms minimum.

use super::{Path, Report};
use crate::duration::Duration;

/// Istio's `ValidateDuration`: at least 1ms, in whole milliseconds.
pub fn validate_duration(d: Duration) -> Result<(), String> {
    let d = d.get();
    if d < std::time::Duration::from_millis(1) {
        return Err("duration must be greater than 1ms".into());
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("only durations to ms precision are supported".into());
    }
    Ok(())
}

/// The CRD rule `duration(self) >= duration('1ms')`, with the API server's wording.
pub fn check_min_1ms(report: &mut Report, path: &Path, d: Duration) {
    if d.get() < std::time::Duration::from_millis(1) {
        report.error(
            path,
            format!("Invalid value: \"{d}\": must be a valid duration greater than 1ms"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_ms_precision() {
        let d = |s: &str| s.parse::<Duration>().unwrap();
        assert!(validate_duration(d("1s")).is_ok());
        assert!(validate_duration(d("1ms")).is_ok());
        assert!(validate_duration(d("0s")).is_err());
        assert!(validate_duration(d("1.000000001s")).is_err());
        assert!(validate_duration(d("0.0000005s")).is_err());
        assert!(validate_duration(Duration::from_millis(1)).is_ok());
        assert!(validate_duration(Duration(std::time::Duration::from_micros(1500))).is_err());
        assert!(validate_duration(Duration::from_millis(0)).is_err());
    }

    #[test]
    fn min_1ms() {
        let mut r = Report::default();
        check_min_1ms(&mut r, &Path::root("spec.t"), Duration::from_millis(1));
        assert!(r.issues.is_empty());
        check_min_1ms(&mut r, &Path::root("spec.t"), Duration::from_millis(0));
        assert_eq!(r.issues.len(), 1);
    }
}
