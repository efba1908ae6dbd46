//! The canonical request: one normalised path and one authority, computed
//! once per request. Every matcher (policies, rate limits, custom rules,
//! detection, lists, the origin choice) reads this form, and the origin
//! receives a target built from it, so that the gateway and the origin route
//! a request the same way.
//!
//! The path is percent-decoded (once), `\` and a decoded `%2F` / `%5C` count
//! as separators, repeated slashes are merged, dot segments are removed
//! (RFC 3986 5.2.4, also where a segment is `..;x`, as Tomcat reads it), and
//! `;` parameters are split from their segment: matchers see the path
//! without them, the origin receives them. Whoever reads the forwarded
//! target, whether it decodes, strips parameters or neither, lands on the
//! path the gateway matched or on a stricter reading of it.

use std::borrow::Cow;

/// Why a target or an authority cannot be made canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("a NUL byte in the path")]
    Nul,
    #[error("the path is not an origin-form path")]
    NotOriginForm,
    #[error("several Host headers")]
    HostRepeated,
    #[error("the Host header and the target's authority disagree")]
    HostMismatch,
    #[error("a malformed authority")]
    BadAuthority,
    #[error("no Host header")]
    HostMissing,
}

impl CanonicalError {
    pub fn code(self) -> &'static str {
        match self {
            CanonicalError::Nul => "nul_byte",
            CanonicalError::NotOriginForm => "bad_target",
            CanonicalError::HostRepeated => "host_repeated",
            CanonicalError::HostMismatch => "host_mismatch",
            CanonicalError::BadAuthority => "bad_authority",
            CanonicalError::HostMissing => "host_missing",
        }
    }
}

/// A request path in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Decoded, without dot segments, repeated slashes or `;` parameters:
    /// what matchers read. Bytes that are not UTF-8 are replaced (U+FFFD);
    /// protocol sanity refuses them first where the configuration says so.
    pub matched: String,
    /// The path sent to the origin: `matched` with its `;` parameters,
    /// percent-encoded where a byte is not a plain path character.
    pub forwarded: String,
    /// The client wrote `%2F` or `%5C` (an encoded separator); routes that
    /// refuse encoded slashes read this.
    pub encoded_slash: bool,
    /// Whether any normalisation changed the path (for the event log).
    pub rewritten: bool,
}

/// Makes `raw` (the path of an origin-form target, without the query)
/// canonical.
pub fn canonical_path(raw: &str) -> Result<CanonicalPath, CanonicalError> {
    if !raw.starts_with('/') {
        return Err(CanonicalError::NotOriginForm);
    }
    if is_plain(raw.as_bytes()) {
        return Ok(CanonicalPath {
            matched: raw.to_owned(),
            forwarded: raw.to_owned(),
            encoded_slash: false,
            rewritten: false,
        });
    }
    let mut encoded_slash = false;
    let mut output: Vec<Segment> = Vec::new();
    let raw_segments = split_segments(raw.as_bytes(), &mut encoded_slash)?;
    let last = raw_segments.len().saturating_sub(1);
    for (index, segment) in raw_segments.into_iter().enumerate() {
        let is_last = index == last;
        match segment.name.as_slice() {
            b"." => {
                if is_last {
                    output.push(Segment::default());
                }
            }
            b".." => {
                output.pop();
                if is_last {
                    output.push(Segment::default());
                }
            }
            // Repeated slashes are merged, a segment of parameters alone
            // (`/;x/`) too, as Tomcat and Spring read it after cutting the
            // parameters; a trailing slash is kept.
            b"" if !is_last => {}
            _ => output.push(segment),
        }
    }
    let mut matched = Vec::with_capacity(raw.len());
    let mut forwarded = String::with_capacity(raw.len());
    for segment in &output {
        matched.push(b'/');
        matched.extend_from_slice(&segment.name);
        forwarded.push('/');
        encode_into(&mut forwarded, &segment.name, false);
        if let Some(params) = &segment.params {
            forwarded.push(';');
            encode_into(&mut forwarded, params, true);
        }
    }
    if output.is_empty() {
        matched.push(b'/');
        forwarded.push('/');
    }
    let matched = match String::from_utf8_lossy(&matched) {
        Cow::Borrowed(_) => String::from_utf8(matched).unwrap_or_default(),
        Cow::Owned(lossy) => lossy,
    };
    Ok(CanonicalPath {
        rewritten: forwarded != raw,
        matched,
        forwarded,
        encoded_slash,
    })
}

/// A path that is already canonical: no escapes, backslashes, parameters,
/// dot segments or empty segments.
fn is_plain(raw: &[u8]) -> bool {
    let mut previous = 0u8;
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'%' | b'\\' | b';' | 0 => return false,
            b'/' if previous == b'/' => return false,
            b'.' if previous == b'/' => {
                let rest = &raw[i..];
                let segment_end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
                if matches!(&rest[..segment_end], b"." | b"..") {
                    return false;
                }
            }
            _ => {}
        }
        previous = b;
    }
    true
}

#[derive(Debug, Default)]
struct Segment {
    name: Vec<u8>,
    /// What followed the first `;` of the segment, decoded.
    params: Option<Vec<u8>>,
}

/// Splits a path into decoded segments; a decoded `/` or `\` separates too.
fn split_segments(raw: &[u8], encoded_slash: &mut bool) -> Result<Vec<Segment>, CanonicalError> {
    let mut segments = Vec::new();
    let mut current = Segment::default();
    let mut i = 1; // after the leading '/'
    while i <= raw.len() {
        let Some(&b) = raw.get(i) else {
            segments.push(std::mem::take(&mut current));
            break;
        };
        let (byte, consumed, was_encoded) = match (b, decode_escape(&raw[i..])) {
            (b'%', Some(decoded)) => (decoded, 3, true),
            _ => (b, 1, false),
        };
        i += consumed;
        match byte {
            0 => return Err(CanonicalError::Nul),
            b'/' | b'\\' => {
                *encoded_slash |= was_encoded;
                segments.push(std::mem::take(&mut current));
            }
            b';' if current.params.is_none() => current.params = Some(Vec::new()),
            _ => match &mut current.params {
                Some(params) => params.push(byte),
                None => current.name.push(byte),
            },
        }
    }
    // A parameter-only dot segment (`..;x`) is a dot segment.
    for segment in &mut segments {
        if matches!(segment.name.as_slice(), b"." | b"..") {
            segment.params = None;
        }
    }
    Ok(segments)
}

/// The byte of a `%XX` escape at the start of `rest`; a `%` without two hex
/// digits is a literal, as nginx and most origins read it.
fn decode_escape(rest: &[u8]) -> Option<u8> {
    let hex = rest.get(1..3)?;
    let hi = (hex[0] as char).to_digit(16)?;
    let lo = (hex[1] as char).to_digit(16)?;
    Some((hi * 16 + lo) as u8)
}

/// Appends `bytes`, percent-encoding all but unreserved characters and the
/// sub-delimiters a path segment may carry (`;` and `=` too in parameters).
fn encode_into(out: &mut String, bytes: &[u8], in_params: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        let plain = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b':'
                    | b'@'
                    | b'='
            )
            || (in_params && b == b';');
        if plain {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// The one authority of a request: the target's (absolute form, or HTTP/2's
/// `:authority`) and the Host header must agree. Lower case, without a
/// trailing dot on the name and without the scheme's default port. `None`
/// when the request names no authority.
pub fn canonical_authority<'a>(
    target_authority: Option<&str>,
    mut host_headers: impl Iterator<Item = &'a [u8]>,
    default_port: u16,
) -> Result<Option<String>, CanonicalError> {
    let host = host_headers.next();
    if host_headers.next().is_some() {
        return Err(CanonicalError::HostRepeated);
    }
    let host = host
        .map(|h| std::str::from_utf8(h).map_err(|_| CanonicalError::BadAuthority))
        .transpose()?
        .map(|h| normalise_authority(h, default_port))
        .transpose()?;
    let target = target_authority
        .map(|a| normalise_authority(a, default_port))
        .transpose()?;
    match (target, host) {
        (Some(target), Some(host)) if target != host => Err(CanonicalError::HostMismatch),
        (Some(one), _) | (None, Some(one)) => Ok(Some(one)),
        (None, None) => Ok(None),
    }
}

fn normalise_authority(raw: &str, default_port: u16) -> Result<String, CanonicalError> {
    let raw = raw.trim_matches(|c| c == ' ' || c == '\t');
    if raw.is_empty() || raw.as_bytes().contains(&b'@') {
        return Err(CanonicalError::BadAuthority);
    }
    let (name, port) = split_port(raw)?;
    // One trailing dot names the same host (a fully qualified name); more,
    // or a leading dot, is no host name, though some origins trim them all.
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid_name = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        });
    if !valid_name || name.as_bytes().windows(2).any(|pair| pair == b"..") {
        return Err(CanonicalError::BadAuthority);
    }
    // One allocation, the port included.
    let mut out = String::with_capacity(raw.len());
    out.push_str(name);
    out.make_ascii_lowercase();
    if let Some(port) = port.filter(|&p| p != default_port) {
        out.push(':');
        out.push_str(itoa::Buffer::new().format(port));
    }
    Ok(out)
}

/// The name and the port of an authority (`[v6]:port` included).
fn split_port(raw: &str) -> Result<(&str, Option<u16>), CanonicalError> {
    let (name, port) = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => match &raw[end + 1..] {
                "" => (raw, None),
                rest => (
                    &raw[..=end],
                    Some(rest.strip_prefix(':').ok_or(CanonicalError::BadAuthority)?),
                ),
            },
            None => return Err(CanonicalError::BadAuthority),
        }
    } else {
        match raw.bytes().rposition(|b| b == b':') {
            Some(colon) => (&raw[..colon], Some(&raw[colon + 1..])),
            None => (raw, None),
        }
    };
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| CanonicalError::BadAuthority))
        .transpose()?;
    Ok((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(raw: &str) -> String {
        canonical_path(raw).expect("canonical").matched
    }

    fn forwarded(raw: &str) -> String {
        canonical_path(raw).expect("canonical").forwarded
    }

    #[test]
    fn plain_paths_are_kept() {
        let p = canonical_path("/api/v1/items").unwrap();
        assert_eq!(p.matched, "/api/v1/items");
        assert_eq!(p.forwarded, "/api/v1/items");
        assert!(!p.rewritten);
        assert_eq!(matched("/"), "/");
        assert_eq!(matched("/a/.well-known/x"), "/a/.well-known/x");
        assert_eq!(matched("/a/..b/c."), "/a/..b/c.");
    }

    #[test]
    fn every_spelling_of_the_api_prefix_is_the_api_prefix() {
        for raw in [
            "/%61pi/x",
            "/ap%69/x",
            "//api/x",
            "/./api/x",
            "/%2e/api/x",
            "/%2E%2E/api/x",
            "/api%2fx",
            "/%2fapi/x",
            "/api;/x",
            "/api;jsessionid=1/x",
            "/;/api/x",
            "/;jsessionid=1/api/x",
            "//;/api/x",
            "/;//api/x",
            "/%3b/api/x",
            "/;%2fapi/x",
            "/x/;/../api/x",
            "/x/..;/api/x",
            "/x/%2e%2e;/api/x",
            "/api\\x",
            "/api%5cx",
            "/a/b/../../api/x",
            "/../api/x",
        ] {
            assert_eq!(matched(raw), "/api/x", "{raw}");
            assert!(
                forwarded(raw).starts_with("/api"),
                "{raw}: {}",
                forwarded(raw)
            );
        }
    }

    #[test]
    fn the_origin_receives_what_was_matched() {
        assert_eq!(forwarded("/%61pi//x"), "/api/x");
        assert_eq!(forwarded("/api;v=1/x"), "/api;v=1/x");
        assert_eq!(forwarded("/x/..;/api"), "/api");
        // Characters that mean something else undecoded are encoded again.
        assert_eq!(forwarded("/a%3Fb%23c%25d"), "/a%3Fb%23c%25d");
        assert_eq!(matched("/a%3Fb%23c%25d"), "/a?b#c%d");
        // A double encoding is decoded once: the origin decodes the same once.
        assert_eq!(forwarded("/%252e%252e/x"), "/%252e%252e/x");
        assert_eq!(matched("/%252e%252e/x"), "/%2e%2e/x");
        // Raw UTF-8 encoded on the way out.
        assert_eq!(forwarded("/caf%C3%A9"), "/caf%C3%A9");
        assert_eq!(matched("/caf%C3%A9"), "/café");
    }

    #[test]
    fn trailing_slashes_and_dots_at_the_end() {
        assert_eq!(matched("/api/"), "/api/");
        assert_eq!(matched("/api/."), "/api/");
        assert_eq!(matched("/api/x/.."), "/api/");
        assert_eq!(matched("/api//"), "/api/");
        assert_eq!(matched("/.."), "/");
    }

    #[test]
    fn a_lone_percent_is_a_literal() {
        assert_eq!(matched("/a%sa"), "/a%sa");
        assert_eq!(forwarded("/a%sa"), "/a%25sa");
        assert_eq!(matched("/a%"), "/a%");
    }

    #[test]
    fn encoded_slashes_are_noted() {
        assert!(canonical_path("/a%2Fb").unwrap().encoded_slash);
        assert!(canonical_path("/a%5cb").unwrap().encoded_slash);
        assert!(!canonical_path("/a/b").unwrap().encoded_slash);
    }

    #[test]
    fn nul_and_non_origin_forms_are_refused() {
        assert_eq!(canonical_path("/a%00b"), Err(CanonicalError::Nul));
        assert_eq!(canonical_path("*"), Err(CanonicalError::NotOriginForm));
        assert_eq!(canonical_path(""), Err(CanonicalError::NotOriginForm));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_for_matching() {
        let p = canonical_path("/a%bf").unwrap();
        assert_eq!(p.matched, "/a\u{fffd}");
        assert_eq!(p.forwarded, "/a%BF");
    }

    fn authority(target: Option<&str>, hosts: &[&str]) -> Result<Option<String>, CanonicalError> {
        canonical_authority(target, hosts.iter().map(|h| h.as_bytes()), 80)
    }

    #[test]
    fn one_authority() {
        assert_eq!(
            authority(None, &["API.local"]),
            Ok(Some("api.local".into()))
        );
        assert_eq!(
            authority(None, &["api.local."]),
            Ok(Some("api.local".into()))
        );
        assert_eq!(
            authority(None, &["api.local:80"]),
            Ok(Some("api.local".into()))
        );
        assert_eq!(
            authority(None, &["api.local:8080"]),
            Ok(Some("api.local:8080".into()))
        );
        assert_eq!(
            authority(None, &["[::1]:8080"]),
            Ok(Some("[::1]:8080".into()))
        );
        assert_eq!(
            authority(Some("api.local"), &["API.LOCAL."]),
            Ok(Some("api.local".into()))
        );
        assert_eq!(
            authority(Some("api.local"), &[]),
            Ok(Some("api.local".into()))
        );
        assert_eq!(authority(None, &[]), Ok(None));
    }

    #[test]
    fn disagreeing_or_odd_authorities_are_refused() {
        assert_eq!(
            authority(Some("other.local"), &["api.local"]),
            Err(CanonicalError::HostMismatch)
        );
        assert_eq!(
            authority(None, &["a", "b"]),
            Err(CanonicalError::HostRepeated)
        );
        for bad in [
            "",
            "user@api.local",
            "api local",
            "api.local:x",
            "a..b",
            "[::1",
            "api.local..",
            "api.local..:80",
            ".api.local",
        ] {
            assert_eq!(
                authority(None, &[bad]),
                Err(CanonicalError::BadAuthority),
                "{bad}"
            );
        }
    }
}
