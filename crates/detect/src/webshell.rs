//! Webshell uploads: server-side script extensions in uploaded file names,
//! and script code inside uploaded files.

use crate::text::{Hits, Text};
use crate::{Family, score};

const SCRIPT_EXT: &[&[u8]] = &[
    b"php",
    b"php3",
    b"php4",
    b"php5",
    b"php7",
    b"php8",
    b"phtml",
    b"pht",
    b"phar",
    b"phps",
    b"jsp",
    b"jspx",
    b"jsw",
    b"jsv",
    b"jspf",
    b"asp",
    b"aspx",
    b"asa",
    b"cer",
    b"ashx",
    b"asmx",
    b"cfm",
    b"cgi",
    b"pl",
    b"shtml",
    b"war",
    b"htaccess",
    b"sh",
];

pub(crate) fn check_filename(t: &Text, hits: &mut Hits) {
    let name = t.bytes();
    let base = match name.iter().rposition(|&c| c == b'/' || c == b'\\') {
        Some(p) => &name[p + 1..],
        None => name,
    };
    let base = base.strip_suffix(b".").unwrap_or(base);
    let mut parts = base.split(|&c| c == b'.');
    parts.next();
    let exts: Vec<&[u8]> = parts.collect();
    let Some(last) = exts.last() else {
        return;
    };
    if SCRIPT_EXT.contains(last) {
        hits.add(
            Family::Webshell,
            score::MEDIUM + 2,
            "webshell.script-extension",
            0,
        );
    } else if exts.iter().any(|e| SCRIPT_EXT.contains(e)) {
        hits.add(
            Family::Webshell,
            score::MEDIUM,
            "webshell.double-extension",
            0,
        );
    }
}

/// Script code in an uploaded file body (`<?php`, JSP scriptlets).
pub(crate) fn content_marker(body: &[u8]) -> Option<&'static str> {
    let head = &body[..body.len().min(64 * 1024)];
    let find = |n: &[u8]| memchr::memmem::find(head, n).is_some();
    if find(b"<?php") || find(b"<?PHP") || find(b"<?=") {
        return Some("webshell.php-code");
    }
    if (find(b"<%@") || find(b"<% ")) && (find(b"Runtime") || find(b"Process") || find(b"Request"))
    {
        return Some("webshell.server-page");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let mut h = Hits::default();
        check_filename(&Text::new(s, &lower), &mut h);
        h.best(Family::Webshell)
    }

    #[test]
    fn names() {
        assert!(score_of("shell.php") >= score::MEDIUM);
        assert!(score_of("x.PhTmL") >= score::MEDIUM);
        assert!(score_of("avatar.php.jpg") >= score::MEDIUM);
        assert_eq!(score_of("avatar.jpg"), 0);
        assert_eq!(score_of("report.pdf"), 0);
        assert!(content_marker(b"GIF89a<?php system($_GET[1]); ?>").is_some());
        assert!(content_marker(b"\x89PNG...").is_none());
    }
}
