//! Request parsing and normalisation of the edge layer: the raw-byte framing
//! scanner, the head checks (percent-decoding, UTF-8, smuggling markers) and
//! the body checks, on arbitrary bytes. None may panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_config::{LimitsConfig, ProtocolConfig};
use portcullis_gateway::edge::framing::{FramingScanner, parser_error_status};
use portcullis_gateway::edge::protocol::{check_body, check_head, percent_decode};

fuzz_target!(|data: &[u8]| {
    let mut scanner = FramingScanner::default();
    for chunk in data.chunks(7) {
        scanner.feed(chunk);
    }
    let _ = scanner.conflict();
    let _ = parser_error_status(data);
    let _ = percent_decode(data);

    let (head, body) = data.split_at(data.len() / 2);
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let mut headers = http::HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                http::HeaderValue::from_str(value.trim()),
            ) {
                headers.append(name, value);
            }
        }
    }
    let protocol = ProtocolConfig::default();
    let _ = check_head("POST", target, &headers, &protocol, &LimitsConfig::default());
    for content_type in ["application/json", "application/x-www-form-urlencoded", "text/plain"] {
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        let _ = check_body(&headers, body, true, &protocol);
        let _ = check_body(&headers, body, false, &protocol);
    }
});
