//! A route's requirement against a verified token: issuers, scopes, claim
//! values, and the account the request acts on. Pure.

use std::borrow::Cow;

use portcullis_config::JwtRequirement;
use serde_json::Value;

use crate::VerifiedToken;

/// Evidence copied into a denial is cut to this many characters.
const EVIDENCE_CHARS: usize = 64;

/// The parts of a request a requirement may look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestView<'a> {
    /// The path as sent (percent-encoded), without the query.
    pub path: &'a str,
    /// The query as sent, without `?`; empty when there is none.
    pub query: &'a str,
    /// The body, when it is JSON and was buffered for inspection.
    pub json_body: Option<&'a [u8]>,
}

/// Why a valid token does not allow this request: the request is
/// over-privileged. [`Denial::as_str`] names the reason; `Display` gives the
/// evidence for the event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("issuer {issuer:?} is not accepted on this route")]
    IssuerNotAllowed { issuer: String },
    #[error("scope {scope:?} is missing")]
    MissingScope { scope: String },
    #[error("claim {claim:?} is {} and not one of those allowed", shown(found))]
    ClaimNotAllowed {
        claim: String,
        found: Option<String>,
    },
    /// The account named at `location` (`path:3`, `query:uid`, `json:a.b`)
    /// is not the token's subject, or the request does not name one there.
    #[error(
        "the account at {location} is {} and not the token's subject ({})",
        shown(found),
        shown(subject)
    )]
    SubjectMismatch {
        location: String,
        found: Option<String>,
        subject: Option<String>,
    },
}

fn shown(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "absent".into(),
    }
}

impl Denial {
    /// The signal name of the reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            Denial::IssuerNotAllowed { .. } => "jwt_issuer_not_allowed",
            Denial::MissingScope { .. } => "jwt_missing_scope",
            Denial::ClaimNotAllowed { .. } => "jwt_claim_not_allowed",
            Denial::SubjectMismatch { .. } => "jwt_subject_mismatch",
        }
    }
}

pub(crate) fn check(
    token: &VerifiedToken,
    requirement: &JwtRequirement,
    view: &RequestView<'_>,
) -> Result<(), Denial> {
    if !requirement.issuers.is_empty() && !requirement.issuers.contains(&token.issuer_name) {
        return Err(Denial::IssuerNotAllowed {
            issuer: token.issuer_name.clone(),
        });
    }
    if let Some(scope) = requirement
        .scopes
        .iter()
        .find(|scope| !has_scope(token, scope))
    {
        return Err(Denial::MissingScope {
            scope: scope.clone(),
        });
    }
    for (claim, allowed) in &requirement.claims {
        let value = token.claims.get(claim);
        if !value.is_some_and(|v| claim_allows(v, allowed)) {
            return Err(Denial::ClaimNotAllowed {
                claim: claim.clone(),
                found: value.map(|v| clip(&text_of(v))),
            });
        }
    }
    match &requirement.subject_in {
        Some(location) => check_subject(location, token.subject.as_deref(), view),
        None => Ok(()),
    }
}

/// Scopes come space separated in `scope` (RFC 8693) or as an array (or
/// string) in `scp`.
fn has_scope(token: &VerifiedToken, wanted: &str) -> bool {
    let in_text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| s.split_ascii_whitespace().any(|s| s == wanted))
    };
    let in_array = |v: Option<&Value>| {
        v.and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(wanted)))
    };
    let (scope, scp) = (token.claims.get("scope"), token.claims.get("scp"));
    in_text(scope) || in_text(scp) || in_array(scp)
}

/// A string, number or boolean equal to an allowed value, or an array with
/// such an element.
fn claim_allows(value: &Value, allowed: &[String]) -> bool {
    match value {
        Value::String(s) => allowed.contains(s),
        Value::Number(_) | Value::Bool(_) => allowed.contains(&value.to_string()),
        Value::Array(items) => items
            .iter()
            .any(|item| !item.is_array() && claim_allows(item, allowed)),
        Value::Null | Value::Object(_) => false,
    }
}

fn text_of(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(EVIDENCE_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Every place the location names must hold the subject, and there must be
/// at least one: a repeated query parameter cannot smuggle a second account.
fn check_subject(
    location: &str,
    subject: Option<&str>,
    view: &RequestView<'_>,
) -> Result<(), Denial> {
    let mismatch = |found: Option<&str>| Denial::SubjectMismatch {
        location: location.to_string(),
        found: found.map(clip),
        subject: subject.map(clip),
    };
    let values = named_accounts(location, view);
    if values.is_empty() {
        return Err(mismatch(None));
    }
    match values.iter().find(|v| Some(v.as_ref()) != subject) {
        Some(other) => Err(mismatch(Some(other))),
        None => Ok(()),
    }
}

/// The account ids a request names at a location (`path:N`, `query:NAME`,
/// `json:a.b`), decoded; empty when it names none (or the location is invalid).
fn named_accounts<'a>(location: &str, view: &RequestView<'a>) -> Vec<Cow<'a, str>> {
    match location.split_once(':') {
        Some(("path", n)) => n
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| {
                let path = view.path.strip_prefix('/').unwrap_or(view.path);
                path.split('/').nth(i)
            })
            .map(|segment| percent_decode(segment, false))
            .into_iter()
            .collect(),
        Some(("query", name)) => view
            .query
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key, true) == name).then(|| percent_decode(value, true))
            })
            .collect(),
        Some(("json", dotted)) => json_field(view.json_body, dotted)
            .map(Cow::Owned)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// A field of a JSON body by dotted path (`a.b`, array indices as numbers),
/// as text.
fn json_field(body: Option<&[u8]>, dotted: &str) -> Option<String> {
    let root: Value = serde_json::from_slice(body?).ok()?;
    let mut value = &root;
    for segment in dotted.split('.') {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(text_of(value).into_owned())
}

/// Percent-decoding (and `+` as space in forms); invalid escapes stay as
/// they are, and invalid UTF-8 becomes U+FFFD, which matches no subject.
fn percent_decode(text: &str, plus_is_space: bool) -> Cow<'_, str> {
    let escaped = text.contains('%') || (plus_is_space && text.contains('+'));
    if !escaped {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' => bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("al%69ce", false), "alice");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("%zz%", false), "%zz%");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
    }

    #[test]
    fn evidence_is_clipped_on_a_char_boundary() {
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), EVIDENCE_CHARS + 3);
        assert!(clipped.ends_with("..."));
    }

    #[test]
    fn json_fields_by_dotted_path() {
        let body = br#"{"order":{"owner":"bob","items":[{"uid":7}]}}"#;
        assert_eq!(
            json_field(Some(body), "order.owner").as_deref(),
            Some("bob")
        );
        assert_eq!(
            json_field(Some(body), "order.items.0.uid").as_deref(),
            Some("7")
        );
        assert_eq!(json_field(Some(body), "order.missing"), None);
        assert_eq!(json_field(Some(b"not json"), "a"), None);
        assert_eq!(json_field(None, "a"), None);
    }
}
