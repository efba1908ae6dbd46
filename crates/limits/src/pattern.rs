//! Path patterns of route rules: a prefix, an exact path (`$` at the end), or
//! `*` wildcards matching any run of characters. Matching is linear in the
//! path for prefixes and at most path x pattern for wildcards, with no
//! backtracking blow-up.

/// Which requests a route rule (a rate limit, a policy) applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatcher {
    /// Lowercase host names; empty means any.
    hosts: Vec<String>,
    path: PathPattern,
    /// Uppercase methods; empty means any.
    methods: Vec<String>,
}

impl RouteMatcher {
    pub fn new(hosts: &[String], path: &str, methods: &[String]) -> RouteMatcher {
        RouteMatcher {
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            path: PathPattern::parse(path),
            methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
        }
    }

    /// `host` may carry a port, which is ignored.
    pub fn matches(&self, host: &str, method: &str, path: &str) -> bool {
        let host = host.split(':').next().unwrap_or_default();
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && self.path.matches(path)
    }
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

    pub fn matches(&self, path: &str) -> bool {
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
    use super::PathPattern;

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
