//! Attack detection for Portcullis (layer 2, "clean").
//!
//! This crate owns the analysis of one HTTP request for injection attacks:
//! it parses the request target, headers, cookies and body (url-encoded
//! forms, JSON, XML/SOAP, multipart with quoted-printable parts, GraphQL,
//! gzip/deflate bodies, quoted cookies unescaped as Python reads them),
//! decodes every value recursively within fixed bounds (percent, `%u`, `+`,
//! HTML entities, JS escapes, base64, overlong UTF-8), refuses text in a
//! charset it cannot read ([`charset`]), and judges each decoded
//! value per attack family, by structure wherever the family has a grammar
//! (SQL, HTML/JS, shell, LDAP filters, template syntax, ...).
//!
//! It also owns the response-side check [`leaks_internals`], which tells
//! whether an origin error page leaks stack traces or SQL errors.
//!
//! It is pure: no I/O, no async, no mutable global state, no allocation
//! that is not bounded by the input size and the caps in [`Profile`].
//!
//! ```
//! use portcullis_detect::{DEFAULT_THRESHOLD, Detector, Family, Profile, RawRequest};
//!
//! let detector = Detector::new(Profile::default());
//! let headers: [(&str, &[u8]); 1] = [("user-agent", b"Mozilla/5.0")];
//! let verdict = detector.inspect(&RawRequest {
//!     method: "GET",
//!     target: b"/items?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
//!     headers: &headers,
//!     body: b"",
//!     body_truncated: false,
//! });
//! assert!(verdict.is_attack(DEFAULT_THRESHOLD));
//! let top = verdict.top().unwrap();
//! assert_eq!((top.family, top.location.as_str()), (Family::Sqli, "query.id"));
//!
//! let verdict = detector.inspect(&RawRequest {
//!     method: "GET",
//!     target: b"/search?q=union+was+a+great+select",
//!     headers: &headers,
//!     body: b"",
//!     body_truncated: false,
//! });
//! assert!(!verdict.is_attack(DEFAULT_THRESHOLD));
//! ```
//!
//! Scores: each finding carries a score on the scale of [`score`]; a
//! request is an attack when the sum reaches the caller's threshold
//! ([`DEFAULT_THRESHOLD`] = 5, so one medium finding blocks, a weak hint
//! alone does not). [`Sensitivity`] decides which findings are reported at
//! all, and [`Profile::free_text`] keeps only strong structures for fields
//! that legitimately hold prose or code.
//!
//! A value is judged where it lands: a statement that opens a search term
//! (`select 1 from a`), CR LF or rich-text HTML inside a JSON string, a
//! GraphQL document (only its string arguments are values) and loopback URLs
//! in JSON configuration are data; a cloud metadata address, in any spelling
//! a URL parser accepts, counts everywhere. `Referer` and `Origin` query parameters
//! are inspected like the request's own, at `header.referer.<key>`.
//!
//! Signals: some findings are risk signals, never a refusal on their own
//! ([`Finding::signal`], summed in [`Verdict::signal_score`]): a
//! scanner-looking path is one.
//!
//! Limits: a request carrying more than the engine reads (pairs, cookies,
//! headers, parts, nesting, values, body, stacked encodings, ambiguous
//! multipart headers) is reported in [`Verdict::incomplete`] and by an
//! `inspection.incomplete` finding that refuses by default
//! ([`Profile::on_incomplete`]).
//!
//! Cost: a one-pass prefilter skips every family check on values that none
//! could fire on, and a detector remembers (keyed, bounded, lock-free) the
//! values it found clean, such as a client's headers; neither changes a
//! verdict (`examples/corpus_eval.rs --verdicts` writes every verdict of
//! the corpora, to diff two builds).

mod analyze;
pub mod charset;
mod code;
mod crlf;
pub mod decode;
mod deser;
mod graphql;
mod jndi;
mod ldap;
mod leak;
mod nosql;
mod parse;
mod prefilter;
mod quoted;
mod rce;
mod scanner;
mod sqli;
mod ssi;
mod ssrf;
mod ssti;
mod text;
mod traversal;
mod webshell;
mod xss;
mod xxe;

pub use leak::{LeakKind, leaks_internals};

/// Multipart bodies read as the detection reads them, for checks that
/// must split them the same way.
pub mod multipart {
    pub use crate::parse::multipart::{boundary, split_part};
}

use serde::{Deserialize, Serialize};

/// One request as received, before any decoding.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// The method, as sent (`GET`, `POST`, or anything else).
    pub method: &'a str,
    /// `path?query` exactly as received, still percent-encoded.
    pub target: &'a [u8],
    /// Header names in lowercase, values as received.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body, possibly truncated to the inspection limit.
    pub body: &'a [u8],
    /// Whether `body` was cut short by the caller.
    pub body_truncated: bool,
}

/// Attack families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// SQL injection.
    Sqli,
    /// Cross-site scripting.
    Xss,
    /// OS command injection.
    Rce,
    /// Code injection (PHP, JS, Python, Java, ASP eval-style).
    CodeInjection,
    /// Path traversal and local file inclusion.
    PathTraversal,
    /// Server-side request forgery and remote file inclusion.
    Ssrf,
    /// XML external entities.
    Xxe,
    /// Server-side template injection.
    Ssti,
    /// JNDI lookups (Log4Shell).
    Jndi,
    /// CRLF and HTTP header injection.
    Crlf,
    /// Serialized objects (Java, PHP, .NET, Python).
    Deserialization,
    /// NoSQL (MongoDB) operator and JS injection.
    Nosql,
    /// LDAP filter injection.
    Ldap,
    /// IMAP / SMTP command injection.
    MailInjection,
    /// Server-side includes.
    Ssi,
    /// Uploads of server-side scripts.
    Webshell,
    /// Known scanner tools and exploit paths.
    ScannerPath,
    /// Protocol anomalies (malformed encodings, introspection, ...).
    Protocol,
}

impl Family {
    /// Every family, in declaration order.
    pub const ALL: [Family; 18] = [
        Family::Sqli,
        Family::Xss,
        Family::Rce,
        Family::CodeInjection,
        Family::PathTraversal,
        Family::Ssrf,
        Family::Xxe,
        Family::Ssti,
        Family::Jndi,
        Family::Crlf,
        Family::Deserialization,
        Family::Nosql,
        Family::Ldap,
        Family::MailInjection,
        Family::Ssi,
        Family::Webshell,
        Family::ScannerPath,
        Family::Protocol,
    ];

    /// A short stable name, the same as the serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Sqli => "sqli",
            Family::Xss => "xss",
            Family::Rce => "rce",
            Family::CodeInjection => "code_injection",
            Family::PathTraversal => "path_traversal",
            Family::Ssrf => "ssrf",
            Family::Xxe => "xxe",
            Family::Ssti => "ssti",
            Family::Jndi => "jndi",
            Family::Crlf => "crlf",
            Family::Deserialization => "deserialization",
            Family::Nosql => "nosql",
            Family::Ldap => "ldap",
            Family::MailInjection => "mail_injection",
            Family::Ssi => "ssi",
            Family::Webshell => "webshell",
            Family::ScannerPath => "scanner_path",
            Family::Protocol => "protocol",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scores are on this scale: a finding at [`score::STRONG`] or above is
/// an attack on its own, [`score::MEDIUM`] blocks at the default threshold,
/// [`score::WEAK`] needs company.
pub mod score {
    /// A structure that only attacks have.
    pub const STRONG: u32 = 9;
    /// A structure that is very rare in normal traffic.
    pub const MEDIUM: u32 = 6;
    /// A hint: blocks only together with another finding.
    pub const WEAK: u32 = 3;
}

/// The default blocking threshold for [`Verdict::is_attack`].
pub const DEFAULT_THRESHOLD: u32 = 5;

/// One thing found in one place of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The attack family.
    pub family: Family,
    /// Where: `query.id`, `path`, `json.user.name`, `header.user-agent`,
    /// `cookie.sid`, `form.q`, `multipart.avatar.filename`, `xml.tag`, `body`.
    pub location: String,
    /// A short, sanitized snippet of the decoded value (at most 64 chars).
    pub evidence: String,
    /// See [`score`].
    pub score: u32,
    /// A stable rule name, such as `sqli.union-select`.
    pub rule_id: &'static str,
    /// A risk signal rather than an attack: its score is in
    /// [`Verdict::signal_score`], not in [`Verdict::total_score`], so it
    /// never makes a request an attack on its own: scanner-looking paths
    /// (rules `scanner.path` and `scanner.sensitive-file`; real APIs live
    /// under `/cgi-bin/`) and, under [`OnIncomplete::Signal`], the
    /// `inspection.incomplete` finding. A scanner's user agent is not one.
    pub signal: bool,
}

/// How eager the detector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Report only structures that practically never occur in normal
    /// traffic (a `<script>` tag, `UNION SELECT`, `${jndi:`). Fewest false
    /// alarms; misses attacks that look like ordinary text.
    Low,
    /// Also report structures that are very rare in normal traffic, such as
    /// a shell separator followed by a command name. The recommended
    /// balance between stopping attacks and letting real users through.
    #[default]
    Medium,
    /// Also report weak hints (a lone SQL keyword after a quote, a
    /// malformed encoding). Catches more, at the price of more false alarms
    /// on forms where users write free prose or code.
    High,
}

impl Sensitivity {
    /// The lowest finding score reported at this level.
    pub fn min_score(self) -> u32 {
        match self {
            Sensitivity::Low => score::STRONG,
            Sensitivity::Medium => score::MEDIUM - 1,
            Sensitivity::High => 1,
        }
    }
}

/// What to inspect and how eagerly, per route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// See [`Sensitivity`].
    pub sensitivity: Sensitivity,
    /// Locations (or prefixes ending in `.` or `*`) never inspected,
    /// for example `json.token`, `cookie.`, `header.x-signature`.
    pub excluded: Vec<String>,
    /// Locations (or prefixes) holding prose or code: only strong
    /// structures are reported there.
    pub free_text: Vec<String>,
    /// Most bytes of a body inspected after decompression.
    pub max_body: usize,
    /// Most findings kept per request.
    pub max_findings: usize,
    /// Whether a GraphQL introspection query is reported.
    pub block_graphql_introspection: bool,
    /// What a request that carries more than the engine inspects becomes
    /// (see [`Incomplete`]).
    pub on_incomplete: OnIncomplete,
}

/// The route's choice for a request the engine could not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnIncomplete {
    /// An `inspection.incomplete` finding at [`score::STRONG`] that counts
    /// as an attack: what was not read cannot be let through unread.
    #[default]
    Refuse,
    /// The same finding as a signal ([`Finding::signal`]): what fits is
    /// inspected, the request passes unless that part is an attack.
    Signal,
}

/// What a request carried beyond the engine's reading limits; any of these
/// is a place an attack could hide unread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Incomplete {
    /// More query, form or Referer pairs than are read.
    pub pairs: bool,
    /// More cookies than are read.
    pub cookies: bool,
    /// More headers than are read.
    pub headers: bool,
    /// More multipart parts than are read.
    pub parts: bool,
    /// JSON nested deeper than is walked (what follows is still read as
    /// text).
    pub nesting: bool,
    /// More XML text nodes and attributes than are read.
    pub nodes: bool,
    /// More values or decoded bytes in the request than are analysed.
    pub values: bool,
    /// A body cut short by the caller or longer than `Profile::max_body`.
    pub body: bool,
    /// A value still encoded after the last decoding round.
    pub encodings: bool,
    /// A multipart header read differently by different parsers
    /// (`filename*=`, a repeated `name` or `filename`).
    pub ambiguous_multipart: bool,
}

impl Incomplete {
    /// Whether anything was left unread.
    pub fn any(&self) -> bool {
        !self.reasons().is_empty()
    }

    /// The names of what overflowed, such as `pairs` or `nesting`.
    pub fn reasons(&self) -> Vec<&'static str> {
        [
            (self.pairs, "pairs"),
            (self.cookies, "cookies"),
            (self.headers, "headers"),
            (self.parts, "parts"),
            (self.nesting, "nesting"),
            (self.nodes, "nodes"),
            (self.values, "values"),
            (self.body, "body"),
            (self.encodings, "encodings"),
            (self.ambiguous_multipart, "ambiguous_multipart"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            sensitivity: Sensitivity::Medium,
            excluded: Vec::new(),
            free_text: Vec::new(),
            max_body: 256 * 1024,
            max_findings: 16,
            block_graphql_introspection: true,
            on_incomplete: OnIncomplete::Refuse,
        }
    }
}

impl Profile {
    fn matches(list: &[String], location: &str) -> bool {
        list.iter().any(|p| {
            if let Some(prefix) = p.strip_suffix('*') {
                location.starts_with(prefix)
            } else if p.ends_with('.') {
                location.starts_with(p.as_str())
            } else {
                location == p
                    || (location.starts_with(p.as_str())
                        && matches!(location.as_bytes().get(p.len()), Some(b'.' | b'[')))
            }
        })
    }

    pub(crate) fn is_excluded(&self, location: &str) -> bool {
        Self::matches(&self.excluded, location)
    }

    pub(crate) fn is_free_text(&self, location: &str) -> bool {
        Self::matches(&self.free_text, location)
    }
}

/// The outcome of one inspection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The findings, highest score first, at most `Profile::max_findings`.
    pub findings: Vec<Finding>,
    /// The sum of the scores of the findings that are not signals
    /// (saturating); [`Verdict::is_attack`] compares it to the threshold.
    pub total_score: u32,
    /// The sum of the scores of the signal findings ([`Finding::signal`]).
    pub signal_score: u32,
    /// What the request carried beyond the engine's limits; when anything
    /// did, an `inspection.incomplete` finding is also reported.
    pub incomplete: Incomplete,
}

impl Verdict {
    /// Whether the total score reaches `threshold` (see [`DEFAULT_THRESHOLD`]).
    pub fn is_attack(&self, threshold: u32) -> bool {
        self.findings.iter().any(|f| !f.signal) && self.total_score >= threshold
    }

    /// The highest-scoring finding, if any.
    pub fn top(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

/// The detector: build once per profile, share between threads.
#[derive(Debug, Clone)]
pub struct Detector {
    profile: Profile,
    seen_clean: std::sync::Arc<analyze::CleanCache>,
}

impl Detector {
    /// A detector for this profile.
    pub fn new(profile: Profile) -> Self {
        Detector {
            profile,
            seen_clean: std::sync::Arc::new(analyze::CleanCache::new()),
        }
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Inspect one request.
    pub fn inspect(&self, req: &RawRequest) -> Verdict {
        let mut sink = analyze::Sink::new(&self.profile, &self.seen_clean);
        if req.body_truncated {
            sink.overflow(|i| i.body = true);
        }
        parse::request(req, &mut sink);
        sink.finish()
    }
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new(Profile::default())
    }
}
