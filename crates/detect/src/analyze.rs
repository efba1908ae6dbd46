//! Runs the family checks on each decoded view of a value and collects
//! findings for the request.

use crate::decode::{self, Anomalies};
use crate::text::{Hits, Text, snippet};
use crate::{
    Family, code, crlf, deser, jndi, ldap, nosql, quoted, rce, scanner, sqli, ssi, ssrf, ssti,
    traversal, webshell, xss, xxe,
};
use crate::{Finding, Incomplete, OnIncomplete, Profile, Verdict, score};

/// What kind of place a value comes from; some checks only apply to some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctx {
    Path,
    Query,
    Form,
    Json,
    Xml,
    XmlDoc,
    Multipart,
    Filename,
    Header,
    /// `Referer` and `Origin`: URLs of the page the request came from, which
    /// on an intranet site name internal hosts as a matter of course.
    Referrer,
    /// A query parameter of the `Referer` or `Origin` URL: the query of the
    /// page before (a search engine's `q=`), which reaches this origin only
    /// as part of a logged or displayed URL.
    RefererQuery,
    UserAgent,
    Cookie,
    Body,
}

impl Ctx {
    /// Whether a GraphQL document may sit here (a JSON `query` string, a
    /// `?query=` parameter, a form field or a raw body).
    fn may_hold_graphql(self) -> bool {
        matches!(
            self,
            Ctx::Json | Ctx::Query | Ctx::Form | Ctx::Body | Ctx::Multipart
        )
    }

    /// Whether `+` means a space in this place.
    fn plus_is_space(self) -> bool {
        matches!(
            self,
            Ctx::Query | Ctx::RefererQuery | Ctx::Form | Ctx::Cookie
        )
    }
}

/// Most values inspected in one request; the rest are skipped.
const MAX_VALUES: usize = 512;
/// Most decoded bytes analysed in one request.
const MAX_TOTAL_BYTES: usize = 2 * 1024 * 1024;

/// Values found clean in earlier requests (the same user agent, language
/// and cookies come with every request of a client), by a keyed hash of
/// value and place: lock-free, fixed size, an entry overwritten by the next
/// value that maps to its slot. The key is random per detector, so a value
/// cannot be made to collide with a clean one.
pub(crate) struct CleanCache {
    hasher: std::collections::hash_map::RandomState,
    slots: Box<[std::sync::atomic::AtomicU64]>,
}

/// Slots of [`CleanCache`] (8 bytes each).
const SEEN_SLOTS: usize = 4096;
/// Longest value remembered.
const MAX_SEEN_LEN: usize = 1024;

impl std::fmt::Debug for CleanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanCache")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl CleanCache {
    pub fn new() -> Self {
        CleanCache {
            hasher: std::collections::hash_map::RandomState::new(),
            slots: (0..SEEN_SLOTS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    /// The key of `raw` in `ctx`, never 0 (an empty slot).
    fn key(&self, raw: &[u8], ctx: Ctx) -> Option<u64> {
        use std::hash::{BuildHasher, Hasher};
        if raw.len() > MAX_SEEN_LEN {
            return None;
        }
        // The value, then the place's one byte: no length prefix is needed
        // for the input to name one (value, place) pair.
        let mut hasher = self.hasher.build_hasher();
        hasher.write(raw);
        hasher.write_u8(ctx as u8);
        Some(hasher.finish() | 1)
    }

    fn slot(&self, key: u64) -> &std::sync::atomic::AtomicU64 {
        &self.slots[(key >> 40) as usize % self.slots.len()]
    }

    fn contains(&self, key: u64) -> bool {
        self.slot(key).load(std::sync::atomic::Ordering::Relaxed) == key
    }

    fn insert(&self, key: u64) {
        self.slot(key)
            .store(key, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) struct Sink<'p> {
    profile: &'p Profile,
    seen_clean: &'p CleanCache,
    findings: Vec<Finding>,
    values: usize,
    bytes: usize,
    lower: String,
    incomplete: Incomplete,
    /// A location buffer to write the next value's location into (see
    /// `parse::at_location`): one allocation a request, not one a value.
    spare_location: String,
}

impl<'p> Sink<'p> {
    pub fn new(profile: &'p Profile, seen_clean: &'p CleanCache) -> Self {
        Sink {
            profile,
            seen_clean,
            findings: Vec::new(),
            values: 0,
            bytes: 0,
            lower: String::new(),
            incomplete: Incomplete::default(),
            spare_location: String::with_capacity(128),
        }
    }

    /// An empty buffer for a location, the spare one when it is free.
    pub(crate) fn take_location_buffer(&mut self) -> String {
        let mut buffer = std::mem::take(&mut self.spare_location);
        buffer.clear();
        buffer
    }

    /// Keeps `buffer` as the spare for the next location.
    pub(crate) fn give_location_buffer(&mut self, buffer: String) {
        self.spare_location = buffer;
    }

    /// Note that part of the request was not read (see [`Incomplete`]).
    pub fn overflow(&mut self, mark: impl FnOnce(&mut Incomplete)) {
        mark(&mut self.incomplete);
    }

    pub fn profile(&self) -> &Profile {
        self.profile
    }

    /// Inspect one value found at `location`.
    pub fn value(&mut self, location: &str, raw: &[u8], ctx: Ctx) {
        if raw.is_empty() {
            return;
        }
        if self.values >= MAX_VALUES || self.bytes >= MAX_TOTAL_BYTES {
            self.incomplete.values = true;
            return;
        }
        if self.profile.is_excluded(location) {
            return;
        }
        self.values += 1;
        self.bytes += raw.len();
        // Values found clean before, in this request (enum-like fields in
        // arrays) or an earlier one, are not analysed again.
        let seen_key = self.seen_clean.key(raw, ctx);
        if seen_key.is_some_and(|k| self.seen_clean.contains(k)) {
            return;
        }
        let views = decode::views(raw, ctx.plus_is_space());
        if ctx.may_hold_graphql() && self.graphql(location, &views.texts[0]) {
            return;
        }
        let mut hits = Hits::default();
        let mut evidence_src: Vec<(crate::Family, String)> = Vec::new();
        for text in &views.texts {
            let before = hits.v.clone();
            self.lower.clear();
            self.lower.push_str(text);
            self.lower.make_ascii_lowercase();
            let view = Text::new(text, &self.lower);
            if crate::prefilter::may_fire(&view, ctx) {
                run_all(&view, ctx, location, self.profile, &mut hits);
            }
            for h in &hits.v {
                let is_new = !before
                    .iter()
                    .any(|b| b.family == h.family && b.score == h.score && b.at == h.at);
                if is_new {
                    evidence_src.retain(|(f, _)| *f != h.family);
                    evidence_src.push((h.family, snippet(text, h.at)));
                }
            }
        }
        protocol_anomalies(&views.anomalies, ctx, &mut hits);
        if views.anomalies.undecoded {
            self.incomplete.encodings = true;
        }
        if hits.v.is_empty() {
            // A value whose decoding stopped early is not clean, only unread.
            if let Some(k) = seen_key.filter(|_| !views.anomalies.undecoded) {
                self.seen_clean.insert(k);
            }
            return;
        }
        self.emit(location, &hits, &evidence_src);
    }

    /// A GraphQL document: only its string arguments are inspected (as JSON
    /// strings), and the document for introspection. False when `text` is
    /// not GraphQL.
    fn graphql(&mut self, location: &str, text: &str) -> bool {
        let Some(strings) = crate::graphql::string_arguments(text) else {
            return false;
        };
        if self.profile.block_graphql_introspection {
            let lower = text.to_ascii_lowercase();
            let mut hits = Hits::default();
            code::check_graphql_introspection(&Text::new(text, &lower), &mut hits);
            if !hits.v.is_empty() {
                let ev = vec![(Family::Protocol, snippet(text, 0))];
                self.emit(location, &hits, &ev);
            }
        }
        for s in strings {
            self.value(location, s.as_bytes(), Ctx::Json);
        }
        true
    }

    /// Report a hit found outside the per-value pipeline.
    pub fn direct(
        &mut self,
        location: &str,
        family: Family,
        score: u32,
        rule: &'static str,
        evidence: &str,
    ) {
        if self.profile.is_excluded(location) {
            return;
        }
        let mut hits = Hits::default();
        hits.add(family, score, rule, 0);
        self.emit(location, &hits, &[(family, snippet(evidence, 0))]);
    }

    fn emit(&mut self, location: &str, hits: &Hits, evidence: &[(Family, String)]) {
        let free = self.profile.is_free_text(location);
        let min = if free {
            score::STRONG
        } else {
            self.profile.sensitivity.min_score()
        };
        for h in &hits.v {
            if h.score < min {
                continue;
            }
            let ev = evidence
                .iter()
                .find(|(f, _)| *f == h.family)
                .map(|(_, e)| e.clone())
                .unwrap_or_default();
            let dup = self
                .findings
                .iter_mut()
                .find(|f| f.family == h.family && f.location == location);
            match dup {
                Some(f) if f.score >= h.score => {}
                Some(f) => {
                    f.score = h.score;
                    f.rule_id = h.rule;
                    f.signal = is_signal_rule(h.rule);
                    f.evidence = ev;
                }
                None => self.findings.push(Finding {
                    family: h.family,
                    location: location.to_string(),
                    evidence: ev,
                    score: h.score,
                    rule_id: h.rule,
                    signal: is_signal_rule(h.rule),
                }),
            }
        }
    }

    pub fn finish(mut self) -> Verdict {
        let incomplete = self.incomplete;
        if incomplete.any() {
            self.findings.push(Finding {
                family: Family::Protocol,
                location: "request".to_string(),
                evidence: incomplete.reasons().join(","),
                score: score::STRONG,
                rule_id: "inspection.incomplete",
                signal: self.profile.on_incomplete == OnIncomplete::Signal,
            });
        }
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.score));
        let sum = |signal: bool| {
            self.findings
                .iter()
                .filter(|f| f.signal == signal)
                .fold(0u32, |acc, f| acc.saturating_add(f.score))
        };
        let total_score = sum(false);
        let signal_score = sum(true);
        self.findings.truncate(self.profile.max_findings.max(1));
        Verdict {
            findings: self.findings,
            total_score,
            signal_score,
            incomplete,
        }
    }
}

/// Rules whose findings are risk signals, never a refusal on their own.
fn is_signal_rule(rule: &str) -> bool {
    matches!(rule, "scanner.path" | "scanner.sensitive-file")
}

fn protocol_anomalies(a: &Anomalies, ctx: Ctx, hits: &mut Hits) {
    if a.overlong {
        hits.add(
            Family::Protocol,
            score::WEAK + 1,
            "protocol.overlong-utf8",
            0,
        );
    } else if a.nul
        && matches!(
            ctx,
            Ctx::Path | Ctx::Query | Ctx::RefererQuery | Ctx::Filename
        )
    {
        hits.add(Family::Protocol, score::WEAK, "protocol.nul-byte", 0);
    } else if a.malformed_utf8
        && matches!(ctx, Ctx::Path | Ctx::Query | Ctx::RefererQuery | Ctx::Form)
    {
        hits.add(Family::Protocol, 1, "protocol.malformed-utf8", 0);
    }
}

/// SQL inside a JSON string is data (a forum post about SQL, a query in a
/// tool's settings, a database error in a crash report) unless it can
/// leave the string it lands in: a quote that closes the string followed
/// by SQL, or a number it continues (`1 union select`, an id sent as a
/// string and pasted into a query) or a subquery it opens, or MySQL's
/// executable comment (`/*!union*/`), which no text but SQL holds.
fn sql_in_a_json_string(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    // `.1` and `\N` are values to MySQL as much as `1` is.
    let numeric_start = match b {
        [c, ..] if c.is_ascii_digit() || *c == b'(' => true,
        [b'.', c, ..] => c.is_ascii_digit(),
        [b'\\', c, ..] => c.eq_ignore_ascii_case(&b'n'),
        _ => false,
    };
    sql_that_leaves_its_string(t, numeric_start, hits);
}

/// The SQL findings of `t` when it can leave the string it is pasted into
/// (or when `lands` says it works where it is).
fn sql_that_leaves_its_string(t: &Text, lands: bool, hits: &mut Hits) {
    let mut sql = Hits::default();
    sqli::check(t, &mut sql);
    if sql.v.is_empty() {
        return;
    }
    let b = t.bytes();
    let executable_comment = memchr::memmem::find(b, b"/*!").is_some();
    if lands || executable_comment || quoted::leaves_string_as_sql(b) {
        for h in sql.v {
            hits.add(h.family, h.score, h.rule, h.at);
        }
    }
}

/// A value that opens with a statement: the shape of a statement (its
/// clauses, a second statement, its literals) is what a search or a post
/// about SQL holds; what still counts is a break-out of a string, or what
/// no such text needs (system tables and variables, time delays, file and
/// command functions).
fn sql_in_a_statement(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    if quoted::leaves_string_as_sql(b) || memchr::memmem::find(b, b"/*!").is_some() {
        sqli::check(t, hits);
        return;
    }
    let mut telling = Hits {
        ignored: sqli::STATEMENT_SHAPE_RULES,
        ..Hits::default()
    };
    sqli::check(t, &mut telling);
    for h in telling.v {
        hits.add(h.family, h.score, h.rule, h.at);
    }
}

/// Whether the value at `location` is where a browser is sent
/// (`redirect_uri`, `return_to`, ...), by its last key, case, `_` and `-`
/// aside: the server redirects to it and fetches nothing (an OAuth native
/// app's `http://127.0.0.1:port/` redirect, RFC 8252).
fn redirect_target(location: &str) -> bool {
    let key = location.rsplit('.').next().unwrap_or(location);
    // Compared from the end, without a folded copy of the key.
    let folded_from_end = || {
        key.bytes()
            .rev()
            .filter(|b| !matches!(b, b'_' | b'-'))
            .map(|b| b.to_ascii_lowercase())
    };
    [
        "redirecturi",
        "redirecturl",
        "redirect",
        "redirectto",
        "returnto",
        "returnurl",
        "returnuri",
    ]
    .iter()
    .any(|name| {
        let mut folded = folded_from_end();
        name.bytes().rev().all(|c| folded.next() == Some(c))
    })
}

/// Every family check on one view of the value at `location`.
pub(crate) fn run_all(t: &Text, ctx: Ctx, location: &str, profile: &Profile, hits: &mut Hits) {
    // A referrer's query lands in this origin as part of a URL string (a
    // log, a dashboard): SQL there works only if it breaks out of that
    // string. SQL a person searched for, literals and all, does not.
    match ctx {
        Ctx::RefererQuery if !quoted::leaves_string_as_sql(t.bytes()) => {}
        Ctx::Json => sql_in_a_json_string(t, hits),
        // A search or a post that opens with a statement (`select ... from
        // t where d > '2024-01-01'`, `mysql delete from`) is not a number,
        // an operand or a subquery: only a break-out of a string works.
        Ctx::Query | Ctx::Form if sqli::opens_as_text(t.bytes()) => {
            sql_in_a_statement(t, hits);
        }
        _ => sqli::check(t, hits),
    }
    xss::check(t, ctx != Ctx::XmlDoc, ctx == Ctx::Json, hits);
    // Code a post shows in a code block (`<pre>`, `<code>`, a markdown
    // fence) is read, not run: commands, calls, paths and URLs count
    // outside them.
    // Markup counts everywhere, a block ending early (`</code>`) included.
    let shown = matches!(ctx, Ctx::Json | Ctx::Form | Ctx::Multipart | Ctx::Body)
        .then(|| crate::text::outside_code_blocks(t))
        .flatten();
    let prose = shown.as_ref().map(|(s, lower)| Text::new(s, lower));
    let prose = prose.as_ref().unwrap_or(t);
    rce::check(prose, hits);
    code::check(prose, hits);
    traversal::check(prose, ctx == Ctx::Path, hits);
    if ctx != Ctx::Referrer {
        // Only values outside JSON need their key read.
        ssrf::check(prose, ctx == Ctx::Json || redirect_target(location), hits);
    }
    xxe::check(t, hits);
    ssti::check(t, hits);
    jndi::check(t, hits);
    // CR LF inside a JSON string is an escaped character of data: the
    // document cannot split the message that carries it.
    if ctx != Ctx::Json {
        crlf::check(t, hits);
    }
    deser::check(t, hits);
    nosql::check(t, hits);
    ldap::check(t, hits);
    ssi::check(t, hits);
    match ctx {
        Ctx::UserAgent => scanner::check_user_agent(t, hits),
        Ctx::Path => scanner::check_path(t, hits),
        Ctx::Filename => webshell::check_filename(t, hits),
        _ => {}
    }
    if profile.block_graphql_introspection {
        code::check_graphql_introspection(t, hits);
    }
}
