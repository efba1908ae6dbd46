//! Path patterns of route rules: a prefix, an exact path (`$` at the end), or
//! `*` wildcards matching any run of characters. Matching is linear in the
//! path for prefixes and at most path x pattern for wildcards, with no
//! backtracking blow-up.

use portcullis_config::PathCase;

/// Which requests a route rule (a rate limit, a policy) applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatcher {
    /// Lowercase host names; empty means any.
    hosts: Vec<String>,
    path: PathPattern,
    /// Uppercase methods; empty means any.
    methods: Vec<String>,
    /// The pattern is lower case and compared with the lower-cased path.
    ignore_case: bool,
}

impl RouteMatcher {
    /// A route over the canonical path; with `PathCase::Insensitive` the
    /// pattern also covers `/API/` for `/api/`.
    pub fn new(hosts: &[String], path: &str, methods: &[String], case: PathCase) -> RouteMatcher {
        let ignore_case = case == PathCase::Insensitive;
        let pattern = if ignore_case {
            path.to_lowercase()
        } else {
            path.to_owned()
        };
        RouteMatcher {
            hosts: hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            path: PathPattern::parse(&pattern),
            methods: with_head(methods),
            ignore_case,
        }
    }

    /// `host` is the canonical authority (lower case, no trailing dot); its
    /// port is ignored. `path` is the canonical path.
    pub fn matches(&self, host: &str, method: &str, path: &str) -> bool {
        let host = host_name(host);
        let host_ok =
            self.hosts.is_empty() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
        let method_ok = self.methods.is_empty() || self.methods.iter().any(|m| m == method);
        if !host_ok || !method_ok {
            return false;
        }
        if self.ignore_case && path.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
            self.path.matches(&path.to_lowercase())
        } else {
            self.path.matches(path)
        }
    }
}

/// Uppercase methods; a route on GET covers HEAD, which origins answer
/// with their GET handler (its side effects, headers and timing included).
fn with_head(methods: &[String]) -> Vec<String> {
    let mut upper: Vec<String> = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
    if upper.iter().any(|m| m == "GET") && !upper.iter().any(|m| m == "HEAD") {
        upper.push("HEAD".to_owned());
    }
    upper
}

/// The name of an authority, without its port (`[v6]:port` included).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Prefix(String),
    Exact(String),
    /// The literal pieces between `*`s; `anchored_end` when the pattern ends with `$`.
    Wildcard {
        pieces: Vec<String>,
        anchored_end: bool,
    },
}

impl PathPattern {
    pub fn parse(pattern: &str) -> PathPattern {
        let (body, anchored_end) = match pattern.strip_suffix('$') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        if body.contains('*') {
            PathPattern::Wildcard {
                pieces: body.split('*').map(String::from).collect(),
                anchored_end,
            }
        } else if anchored_end {
            PathPattern::Exact(body.to_string())
        } else {
            PathPattern::Prefix(body.to_string())
        }
    }

    /// A trailing slash never decides: `/login$` covers `/login/` and the
    /// prefix `/api/` covers `/api`, as most origins route them alike (a
    /// rule must not be stepped around by adding or dropping the slash).
    pub fn matches(&self, path: &str) -> bool {
        if self.matches_as_written(path) {
            return true;
        }
        match path.strip_suffix('/') {
            Some(bare) if !bare.is_empty() => self.matches_as_written(bare),
            _ => matches!(self, PathPattern::Prefix(prefix)
                if prefix.len() > 1 && prefix.strip_suffix('/') == Some(path)),
        }
    }

    fn matches_as_written(&self, path: &str) -> bool {
        match self {
            PathPattern::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathPattern::Exact(exact) => path == exact,
            PathPattern::Wildcard {
                pieces,
                anchored_end,
            } => wildcard(pieces, *anchored_end, path),
        }
    }
}

/// Greedy match of literal pieces separated by `*`: the first piece anchors
/// at the start; each later piece takes its leftmost occurrence, except the
/// last of an end-anchored pattern, which must end the path. Leftmost is
/// optimal for `*` (any run), so this never backtracks.
fn wildcard(pieces: &[String], anchored_end: bool, path: &str) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return true;
    };
    let Some(mut remaining) = path.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return !anchored_end || remaining.is_empty();
    };
    for piece in middle {
        match remaining.find(piece.as_str()) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    if anchored_end {
        remaining.ends_with(last.as_str())
    } else {
        remaining.contains(last.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{PathCase, PathPattern, RouteMatcher};

    #[test]
    fn case_follows_the_route() {
        let any = RouteMatcher::new(&[], "/api/", &[], PathCase::Insensitive);
        assert!(any.matches("h", "GET", "/API/x"));
        assert!(any.matches("h", "GET", "/Api/x"));
        let exact = RouteMatcher::new(&[], "/api/", &[], PathCase::Sensitive);
        assert!(!exact.matches("h", "GET", "/API/x"));
        assert!(exact.matches("h", "GET", "/api/x"));
    }

    #[test]
    fn hosts_ignore_port_case_and_trailing_dot() {
        let route = RouteMatcher::new(&["Api.Local.".into()], "/", &[], PathCase::Sensitive);
        assert!(route.matches("api.local:8080", "GET", "/"));
        assert!(route.matches("api.local", "GET", "/"));
        assert!(!route.matches("other.local", "GET", "/"));
        let v6 = RouteMatcher::new(&["[::1]".into()], "/", &[], PathCase::Sensitive);
        assert!(v6.matches("[::1]:8080", "GET", "/"));
    }

    #[test]
    fn a_get_route_covers_head_and_nothing_else_is_added() {
        let get = RouteMatcher::new(&[], "/g/", &["get".into()], PathCase::Sensitive);
        assert!(get.matches("a", "HEAD", "/g/x"));
        assert!(get.matches("a", "GET", "/g/x"));
        assert!(!get.matches("a", "POST", "/g/x"));
        let delete = RouteMatcher::new(&[], "/m/", &["DELETE".into()], PathCase::Sensitive);
        assert!(!delete.matches("a", "HEAD", "/m/x"));
    }

    fn m(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern).matches(path)
    }

    #[test]
    fn prefixes_and_exact_paths() {
        assert!(m("/api/", "/api/v1"));
        assert!(!m("/api/", "/apix"));
        assert!(m("/login$", "/login"));
        assert!(!m("/login$", "/login/x"));
    }

    #[test]
    fn a_trailing_slash_never_decides() {
        assert!(m("/login$", "/login/"));
        assert!(m("/api/", "/api"));
        assert!(m("/api/*/vote$", "/api/42/vote/"));
        assert!(!m("/api/", "/ap"));
        assert!(!m("/api/", "/apix"));
        assert!(!m("/login$", "/login//x"));
        assert!(m("/", "/"));
    }

    #[test]
    fn wildcards() {
        assert!(m("/api/*/vote", "/api/42/vote"));
        assert!(
            m("/api/*/vote", "/api/42/vote/extra"),
            "unanchored: a prefix pattern"
        );
        assert!(!m("/api/*/vote$", "/api/42/vote/extra"));
        assert!(m("/api/*/vote$", "/api/a/b/vote"));
        assert!(!m("/api/*/vote", "/api/42/like"));
        assert!(m("*.php", "/x/y.php"));
        assert!(m("/a*b*c$", "/aXbYbZc"));
        assert!(!m("/a*b*c$", "/aXbYcZ"));
    }
}
