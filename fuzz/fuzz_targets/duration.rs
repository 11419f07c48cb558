//! Duration strings: parsing never panics, and what parses prints back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_config::duration::{Duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = parse_duration(text) {
        let printed = Duration(d).to_string();
        assert_eq!(parse_duration(&printed), Ok(d), "{text:?} printed as {printed:?}");
    }
});
