//! Server-side includes (`<!--#exec cmd=...-->`) and edge-side includes.

use crate::text::{Hits, Text};
use crate::{Family, score};

const DIRECTIVES: &[&[u8]] = &[
    b"exec",
    b"include",
    b"echo",
    b"config",
    b"set",
    b"printenv",
    b"fsize",
    b"flastmod",
    b"if",
    b"elif",
];

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    let scan = if t.may_contain(b"<!-#") { b } else { &[][..] };
    for p in crate::text::find_iter(scan, b"<!--#").take(16) {
        let rest = &b[p + 5..];
        if DIRECTIVES.iter().any(|d| rest.starts_with(d)) {
            hits.add(Family::Ssi, score::STRONG, "ssi.directive", p);
            return;
        }
    }
    if let Some(p) = t.find("<esi:include") {
        hits.add(Family::Ssi, score::STRONG, "ssi.esi-include", p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        for (s, want) in [
            ("<!--#exec cmd=\"ls\" -->", true),
            ("<!--#include virtual=\"/etc/passwd\"-->", true),
            ("<!-- a comment -->", false),
            ("#exec in prose", false),
        ] {
            let lower = s.to_ascii_lowercase();
            let mut h = Hits::default();
            check(&Text::new(s, &lower), &mut h);
            assert_eq!(h.has(Family::Ssi), want, "{s}");
        }
    }
}
