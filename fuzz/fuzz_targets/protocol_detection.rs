//! Protocol detection on a listener's first bytes (TLS ClientHello with SNI and ALPN, HTTP/1
//! request line, h2c preface): never panics, never asks for more bytes than a listener can
//! peek, and what it reports is well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proxy::parse_first_bytes;

fuzz_target!(|data: &[u8]| {
    match parse_first_bytes(data) {
        None => {
            // "Need more bytes" only while a TLS record (at most 5 + 65535 bytes) or an HTTP
            // request line (at most 8 KiB) may still be incomplete.
            assert!(data.len() < 5 + 65535, "asked for more after {} bytes", data.len());
        }
        Some(f) => {
            assert!(matches!(f.transport, Some("tls") | Some("raw_buffer")));
            if let Some(sni) = &f.server_name {
                assert_eq!(sni, &sni.to_ascii_lowercase());
                assert_eq!(f.transport, Some("tls"));
            }
            if f.transport == Some("raw_buffer") {
                assert!(f.application_protocols.len() <= 1);
            }
            // The same bytes give the same answer.
            assert_eq!(parse_first_bytes(data), Some(f));
        }
    }
});
