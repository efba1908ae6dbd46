//! Building the HTTP request GoTestWAF sends for a case.

use serde::{Deserialize, Serialize};

use crate::encode::{encode, push_pct, query_escape};
use crate::{Case, Encoder, Placeholder};

/// The User-Agent Go's HTTP client sends when a request sets none; every
/// built request carries it unless its placeholder sets its own.
pub const GO_USER_AGENT: &str = "Go-http-client/1.1";

const PAYLOAD_MARK: &str = "{{payload}}";

const SOAP_TEMPLATE_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"\n\
\txmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n\
\t<soapenv:Header>\n\
\t\t<ns1:RequestHeader soapenv:actor=\"http://schemas.xmlsoap.org/soap/actor/next\"\n\
\t\t\tsoapenv:mustUnderstand=\"0\" xmlns:ns1=\"https://www.google.com/apis/ads/publisher/v202002\">\n\
\t\t</ns1:RequestHeader>\n\
\t</soapenv:Header>\n\
\t<soapenv:Body>\n\
\t\t<getAdUnitsByStatement xmlns=\"https://www.google.com/apis/ads/publisher/v202002\">\n\
\t\t\t<filterStatement>\n\
\t\t\t\t";
const SOAP_TEMPLATE_TAIL: &str = "\n\
\t\t\t</filterStatement>\n\
\t\t</getAdUnitsByStatement>\n\
\t</soapenv:Body>\n\
</soapenv:Envelope>";

/// An HTTP/1.1 request as it goes on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRequest {
    pub method: String,
    /// Path and query, already encoded as sent on the wire (starts with `/`).
    pub target: String,
    /// Headers in order, without `Host` and `Content-Length` (the sender adds them).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The whole request serialized as HTTP/1.1 bytes for `host`, with
    /// `Host`, `Content-Length` (when there is a body or the method is not
    /// GET/HEAD) and `Connection: close`.
    pub fn to_wire(&self, host: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        out.extend_from_slice(
            format!(
                "{} {} HTTP/1.1\r\nHost: {host}\r\n",
                self.method, self.target
            )
            .as_bytes(),
        );
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        if !self.body.is_empty() || !matches!(self.method.as_str(), "GET" | "HEAD") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Builds the request GoTestWAF would send for `case`, or `None` when
/// GoTestWAF cannot build it (gRPC, unknown encoder/placeholder, a URL Go's
/// parser refuses, a header value Go's client refuses).
///
/// Random names GoTestWAF draws per request (parameter, header and field
/// names, multipart boundary) are derived from the case here, so runs are
/// reproducible.
pub fn build(case: &Case) -> Option<RawRequest> {
    let encoded = encode(&case.encoder, &case.payload)?;
    let seed = fnv1a(case_key(case).as_bytes());
    let name = hex_name(seed, 5);
    let mut req = RawRequest {
        method: "GET".into(),
        target: "/".into(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let mut user_agent = Some(GO_USER_AGENT.to_string());
    match &case.placeholder {
        Placeholder::UrlPath => {
            req.target = go_request_target(&format!("/{encoded}"))?;
        }
        Placeholder::UrlParam => {
            req.target = go_request_target(&format!("/?{name}={encoded}"))?;
        }
        Placeholder::Header => {
            req.headers
                .push((format!("X-{name}"), header_value(&encoded)?));
        }
        Placeholder::UserAgent => {
            user_agent = Some(header_value(&encoded)?);
        }
        Placeholder::HtmlForm => {
            req.method = "POST".into();
            req.body = format!("{name}={encoded}").into_bytes();
            req.headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        Placeholder::HtmlMultipartForm => {
            req.method = "POST".into();
            let boundary = hex_name(fnv1a(&seed.to_le_bytes()), 30);
            let mut body = Vec::with_capacity(encoded.len() + 256);
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(encoded.as_bytes());
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            req.body = body;
            req.headers.push((
                "Content-Type".into(),
                format!("multipart/form-data; boundary={boundary}"),
            ));
        }
        Placeholder::JsonBody => {
            req.method = "POST".into();
            req.body = encoded.into_bytes();
            req.headers
                .push(("Content-Type".into(), "application/json".into()));
        }
        Placeholder::JsonRequest => {
            req.method = "POST".into();
            let inner = encode(&Encoder::JsUnicode, &encoded)?;
            req.body = format!("{{\"test\":true, \"{name}\": \"{inner}\"}}").into_bytes();
            req.headers
                .push(("Content-Type".into(), "application/json".into()));
        }
        Placeholder::XmlBody => {
            req.method = "POST".into();
            req.body = encoded.into_bytes();
            req.headers.push(("Content-Type".into(), "text/xml".into()));
        }
        Placeholder::SoapBody => {
            req.method = "POST".into();
            let tag = format!("ab{name}");
            let inner = encode(&Encoder::XmlEntity, &encoded)?;
            req.body = format!("{SOAP_TEMPLATE_HEAD}<{tag}>{inner}</{tag}>{SOAP_TEMPLATE_TAIL}")
                .into_bytes();
            req.headers.push((
                "SOAPAction".into(),
                "\"http://schemas.xmlsoap.org/soap/actor/next\"".into(),
            ));
            req.headers.push(("Content-Type".into(), "text/xml".into()));
        }
        Placeholder::RequestBody => {
            req.method = "POST".into();
            req.body = encoded.into_bytes();
        }
        Placeholder::RawRequest(conf) => {
            if !is_token(&conf.method) {
                return None;
            }
            req.method = conf.method.clone();
            let path = conf.path.strip_prefix('/').unwrap_or(&conf.path);
            req.target = go_request_target(&format!("/{}", path.replace(PAYLOAD_MARK, &encoded)))?;
            req.body = conf.body.replace(PAYLOAD_MARK, &encoded).into_bytes();
            for (k, v) in &conf.headers {
                if !is_token(k) {
                    return None;
                }
                let v = header_value(&v.replace(PAYLOAD_MARK, &encoded))?;
                if k.eq_ignore_ascii_case("user-agent") {
                    user_agent = Some(v);
                } else {
                    req.headers.push((k.clone(), v));
                }
            }
        }
        Placeholder::GraphQl { method } => {
            if method == "GET" {
                req.target = format!("/?query={}", query_escape(&encoded));
            } else {
                req.method = "POST".into();
                req.body = encoded.into_bytes();
            }
        }
        Placeholder::Grpc | Placeholder::Unknown(_) => return None,
    }
    if let Some(ua) = user_agent {
        req.headers.insert(0, ("User-Agent".into(), ua));
    }
    Some(req)
}

fn case_key(case: &Case) -> String {
    format!("{}\0{}", case.id(), case.payload)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `n` pseudo-random bytes derived from `seed`, as lower-case hex (like
/// GoTestWAF's `RandomHex(n)`).
fn hex_name(seed: u64, n: usize) -> String {
    let mut state = seed | 1;
    let mut out = String::with_capacity(n * 2);
    for _ in 0..n {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let b = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value as Go's client sends it: surrounding blanks trimmed,
/// refused (None) when it holds a control character other than HTAB.
fn header_value(v: &str) -> Option<String> {
    if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return None;
    }
    Some(v.trim_matches([' ', '\t']).to_string())
}

/// The request-target Go's client sends for a URL whose path and query are
/// `raw` (what follows the host): `None` where Go's URL parser refuses it
/// (control characters, a bad `%` escape in the path).
///
/// Like Go: the fragment (`#...`) is not sent; the path is sent as written
/// when it is validly escaped, else re-escaped from its decoded form; the
/// query is sent as written, except that bytes no HTTP/1.1 request line may
/// carry (space, `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`, non-ASCII)
/// are percent-encoded so the request is valid on the wire.
pub fn go_request_target(raw: &str) -> Option<String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let raw = raw.split_once('#').map_or(raw, |(r, _)| r);
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let decoded = percent_decode_strict(path)?;
    let mut target = if path.is_empty() {
        "/".to_string()
    } else if path.bytes().all(valid_encoded_path_byte) {
        path.to_string()
    } else {
        escape_path(&decoded)
    };
    if !target.starts_with('/') {
        target.insert(0, '/');
    }
    if let Some(q) = query {
        target.push('?');
        for &b in q.as_bytes() {
            if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
                push_pct(&mut target, b);
            } else {
                target.push(b as char);
            }
        }
    }
    Some(target)
}

fn percent_decode_strict(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
            let lo = b.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Go's `validEncoded(s, encodePath)` per byte.
fn valid_encoded_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:@[]/%".contains(&b)
}

/// Go's `escape(s, encodePath)`.
fn escape_path(decoded: &[u8]) -> String {
    let mut out = String::with_capacity(decoded.len() * 3);
    for &b in decoded {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            push_pct(&mut out, b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawRequestConfig;

    fn case(payload: &str, encoder: Encoder, placeholder: Placeholder) -> Case {
        Case {
            set: "owasp".into(),
            file: "t".into(),
            family: "T".into(),
            index: 0,
            payload: payload.into(),
            encoder,
            placeholder,
            is_false_positive: false,
        }
    }

    fn built(payload: &str, encoder: Encoder, placeholder: Placeholder) -> RawRequest {
        build(&case(payload, encoder, placeholder)).expect("buildable")
    }

    #[test]
    fn url_path() {
        let r = built(
            "%0d%0aSet-Cookie:crlf=injection",
            Encoder::Plain,
            Placeholder::UrlPath,
        );
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/%0d%0aSet-Cookie:crlf=injection");
        assert!(r.body.is_empty());
        assert_eq!(r.header("user-agent"), Some(GO_USER_AGENT));
        let r = built("../etc/passwd", Encoder::Url, Placeholder::UrlPath);
        assert_eq!(r.target, "/..%2Fetc%2Fpasswd");
        let r = built("a b<c>", Encoder::Plain, Placeholder::UrlPath);
        assert_eq!(r.target, "/a%20b%3Cc%3E");
        let r = built("x?q=1#frag", Encoder::Plain, Placeholder::UrlPath);
        assert_eq!(r.target, "/x?q=1");
        // Go refuses bad escapes and control characters in a URL.
        assert!(build(&case("%zz", Encoder::Plain, Placeholder::UrlPath)).is_none());
        assert!(build(&case("a\nb", Encoder::Plain, Placeholder::UrlPath)).is_none());
    }

    #[test]
    fn url_param() {
        let r = built("' or 1=1", Encoder::Url, Placeholder::UrlParam);
        assert_eq!(r.method, "GET");
        let q = r.query().expect("query");
        let (name, value) = q.split_once('=').expect("name=value");
        assert_eq!(name.len(), 10);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(value, "%27+or+1%3D1");
        assert_eq!(r.path(), "/");
        // Deterministic.
        assert_eq!(r, built("' or 1=1", Encoder::Url, Placeholder::UrlParam));
        // Raw bytes a request line can't carry are escaped.
        let r = built("a b\"", Encoder::Plain, Placeholder::UrlParam);
        assert!(r.target.ends_with("=a%20b%22"), "{}", r.target);
        let r = built("<x>", Encoder::Base64Flat, Placeholder::UrlParam);
        assert!(r.target.ends_with("=PHg+"), "{}", r.target);
    }

    #[test]
    fn header_and_user_agent() {
        let r = built("${jndi:ldap://x}", Encoder::Plain, Placeholder::Header);
        let (k, v) = r
            .headers
            .iter()
            .find(|(k, _)| k.starts_with("X-"))
            .expect("random header");
        assert_eq!(k.len(), 12);
        assert_eq!(v, "${jndi:ldap://x}");
        assert!(build(&case("a\r\nb: c", Encoder::Plain, Placeholder::Header)).is_none());

        let r = built("sqlmap/1.0", Encoder::Plain, Placeholder::UserAgent);
        assert_eq!(r.header("User-Agent"), Some("sqlmap/1.0"));
        assert_eq!(
            r.headers.iter().filter(|(k, _)| k == "User-Agent").count(),
            1
        );
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/");
    }

    #[test]
    fn html_form() {
        let r = built("<script>", Encoder::Url, Placeholder::HtmlForm);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let body = String::from_utf8(r.body).expect("utf8");
        assert!(body.ends_with("=%3Cscript%3E"), "{body}");
        assert_eq!(body.find('='), Some(10));
    }

    #[test]
    fn html_multipart_form() {
        let r = built("<script>", Encoder::Plain, Placeholder::HtmlMultipartForm);
        assert_eq!(r.method, "POST");
        let ct = r.header("Content-Type").expect("content type");
        let boundary = ct
            .strip_prefix("multipart/form-data; boundary=")
            .expect("boundary");
        assert_eq!(boundary.len(), 60);
        let body = String::from_utf8(r.body.clone()).expect("utf8");
        assert!(body.starts_with(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\""
        )));
        assert!(body.ends_with(&format!("\"\r\n\r\n<script>\r\n--{boundary}--\r\n")));
    }

    #[test]
    fn json_body_and_request() {
        let r = built("{\"a\":1}", Encoder::Plain, Placeholder::JsonBody);
        assert_eq!(r.method, "POST");
        assert_eq!(r.body, b"{\"a\":1}");
        assert_eq!(r.header("Content-Type"), Some("application/json"));

        let r = built("a'", Encoder::Plain, Placeholder::JsonRequest);
        let body = String::from_utf8(r.body.clone()).expect("utf8");
        assert!(body.starts_with("{\"test\":true, \""), "{body}");
        assert!(body.ends_with("\": \"\\u0061\\u0027\"}"), "{body}");
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        // The body is valid JSON whose value decodes back to the payload.
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 2);
        assert!(obj.values().any(|v| v == "a'"));
    }

    #[test]
    fn xml_soap_and_request_body() {
        let r = built("<!DOCTYPE x>", Encoder::Plain, Placeholder::XmlBody);
        assert_eq!(r.body, b"<!DOCTYPE x>");
        assert_eq!(r.header("Content-Type"), Some("text/xml"));

        let r = built("'-alert(1)//", Encoder::Plain, Placeholder::SoapBody);
        let body = String::from_utf8(r.body.clone()).expect("utf8");
        assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope"));
        assert!(
            body.contains("<string>&#39;-alert(1)//</string></ab"),
            "{body}"
        );
        assert!(body.ends_with("</soapenv:Envelope>"));
        assert_eq!(
            r.header("SOAPAction"),
            Some("\"http://schemas.xmlsoap.org/soap/actor/next\"")
        );

        let r = built("x=1", Encoder::Base64, Placeholder::RequestBody);
        assert_eq!(r.method, "POST");
        assert_eq!(r.body, b"eD0x");
        assert_eq!(r.header("Content-Type"), None);
    }

    #[test]
    fn raw_request() {
        let conf = RawRequestConfig {
            method: "CUST".into(),
            path: "/api/{{payload}}".into(),
            headers: vec![
                ("X-Test".into(), "v={{payload}}".into()),
                ("User-Agent".into(), "Mozilla/5.0".into()),
            ],
            body: "cmd={{payload}}\n".into(),
        };
        let r = built("ls", Encoder::Plain, Placeholder::RawRequest(conf.clone()));
        assert_eq!(r.method, "CUST");
        assert_eq!(r.target, "/api/ls");
        assert_eq!(r.body, b"cmd=ls\n");
        assert_eq!(r.header("X-Test"), Some("v=ls"));
        assert_eq!(r.header("User-Agent"), Some("Mozilla/5.0"));
        let r = built("a b", Encoder::Plain, Placeholder::RawRequest(conf));
        assert_eq!(r.target, "/api/a%20b");
    }

    #[test]
    fn graphql_get_and_post() {
        let payload = "{\"query\": \"{__schema{types{name}}}\"}";
        let r = built(
            payload,
            Encoder::Url,
            Placeholder::GraphQl {
                method: "GET".into(),
            },
        );
        assert_eq!(r.method, "GET");
        // URL-encoded payload, escaped again as a query value.
        assert!(
            r.target.starts_with("/?query=%257B%2522query%2522%253A%2B"),
            "{}",
            r.target
        );
        let r = built(
            payload,
            Encoder::Plain,
            Placeholder::GraphQl {
                method: "POST".into(),
            },
        );
        assert_eq!(r.method, "POST");
        assert_eq!(r.body, payload.as_bytes());
        assert_eq!(r.target, "/");
    }

    #[test]
    fn unbuildable_cases() {
        assert!(build(&case("x", Encoder::Plain, Placeholder::Grpc)).is_none());
        assert!(
            build(&case(
                "x",
                Encoder::Unknown("Rot".into()),
                Placeholder::UrlParam
            ))
            .is_none()
        );
        assert!(
            build(&case(
                "x",
                Encoder::Plain,
                Placeholder::Unknown("Cookie".into())
            ))
            .is_none()
        );
    }

    #[test]
    fn targets_are_valid_for_hyper() {
        for raw in [
            "/a b",
            "/\u{e9}?\u{e9}=1",
            "/?a=\"{|}\"",
            "/%41?x=%zz",
            "/[x]",
        ] {
            let t = go_request_target(raw).expect("target");
            assert!(t.parse::<http::Uri>().is_ok(), "{raw:?} -> {t:?}");
        }
    }

    #[test]
    fn wire_form() {
        let r = built("x", Encoder::Plain, Placeholder::JsonBody);
        let wire = String::from_utf8(r.to_wire("127.0.0.1:8080")).expect("utf8");
        assert!(wire.starts_with("POST / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(wire.contains("\r\nContent-Length: 1\r\n"));
        assert!(wire.ends_with("\r\n\r\nx"));
    }
}
