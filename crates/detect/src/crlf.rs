//! CRLF / header injection (a line break followed by a header line or a
//! status line), and IMAP / SMTP command injection (a line break followed
//! by a mail protocol command).

use crate::text::{Hits, Text};
use crate::{Family, score};

const HEADERS: &[&[u8]] = &[
    b"set-cookie",
    b"location",
    b"content-type",
    b"content-length",
    b"refresh",
    b"x-xss-protection",
    b"access-control-allow-origin",
    b"access-control-allow-credentials",
    b"host",
    b"cookie",
    b"transfer-encoding",
    b"connection",
    b"content-security-policy",
    b"link",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"authorization",
    b"content-disposition",
    b"cache-control",
];
const MAIL_HEADERS: &[&[u8]] = &[
    b"bcc",
    b"cc",
    b"to",
    b"from",
    b"subject",
    b"reply-to",
    b"mime-version",
    b"content-transfer-encoding",
];
const SMTP_LINES: &[&[u8]] = &[
    b"rcpt to:",
    b"mail from:",
    b"helo ",
    b"ehlo ",
    b"vrfy ",
    b"expn ",
    b"auth login",
    b"auth plain",
];
const SMTP_ALONE: &[&[u8]] = &[b"QUIT", b"DATA", b"RSET", b"NOOP", b"STARTTLS", b"TURN"];
const IMAP_COMMANDS: &[&[u8]] = &[
    b"CAPABILITY",
    b"FETCH",
    b"LOGIN",
    b"SELECT",
    b"LIST",
    b"STORE",
    b"UID",
    b"LOGOUT",
    b"EXAMINE",
    b"CREATE",
    b"DELETE",
    b"RENAME",
    b"APPEND",
    b"SEARCH",
    b"COPY",
    b"NOOP",
    b"AUTHENTICATE",
    b"STARTTLS",
    b"LSUB",
    b"SUBSCRIBE",
    b"STATUS",
    b"EXPUNGE",
    b"CHECK",
    b"CLOSE",
];

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let lower = t.bytes();
    let orig = t.s.as_bytes();
    let mut n = 0;
    for p in memchr::memchr2_iter(b'\r', b'\n', lower) {
        n += 1;
        if n > 256 {
            return;
        }
        let mut i = p;
        while i < lower.len() && matches!(lower[i], b'\r' | b'\n' | b' ' | b'\t') {
            i += 1;
        }
        if i >= lower.len() || i == p + 1 && p > 0 && matches!(lower[p - 1], b'\r' | b'\n') {
            continue;
        }
        line_after_break(&lower[i..], &orig[i..], p, hits);
    }
}

fn line_after_break(lower: &[u8], orig: &[u8], at: usize, hits: &mut Hits) {
    let line_end = lower
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .unwrap_or(lower.len());
    let line = &lower[..line_end];
    let oline = &orig[..line_end];
    if line.starts_with(b"http/1.") || line.starts_with(b"http/2") {
        hits.add(Family::Crlf, score::STRONG, "crlf.response-splitting", at);
        return;
    }
    let name_end = line
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'-'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let colon = line
        .get(name_end..)
        .is_some_and(|r| r.iter().find(|c| **c != b' ') == Some(&b':'));
    if SMTP_LINES.iter().any(|s| line.starts_with(s)) {
        hits.add(
            Family::MailInjection,
            score::STRONG,
            "mail.smtp-command",
            at,
        );
        return;
    }
    if colon && !name.is_empty() {
        if HEADERS.contains(&name) {
            hits.add(Family::Crlf, score::STRONG, "crlf.header-injection", at);
        } else if MAIL_HEADERS.contains(&name) {
            hits.add(
                Family::MailInjection,
                score::MEDIUM + 1,
                "mail.header-injection",
                at,
            );
        } else if name.starts_with(b"x-") {
            hits.add(Family::Crlf, score::MEDIUM, "crlf.header-injection", at);
        } else {
            hits.add(Family::Crlf, score::WEAK, "crlf.header-like-line", at);
        }
        return;
    }
    let trimmed = oline.trim_ascii();
    if SMTP_ALONE.contains(&trimmed) {
        hits.add(
            Family::MailInjection,
            score::MEDIUM + 1,
            "mail.smtp-command",
            at,
        );
        return;
    }
    // IMAP: `<tag> <COMMAND> ...` with the command in capitals.
    let mut parts = oline.split(|&c| c == b' ');
    if let (Some(tag), Some(cmd)) = (parts.next(), parts.next()) {
        let tag_ok =
            !tag.is_empty() && tag.len() <= 10 && tag.iter().all(u8::is_ascii_alphanumeric);
        if tag_ok && IMAP_COMMANDS.contains(&cmd) {
            hits.add(
                Family::MailInjection,
                score::STRONG,
                "mail.imap-command",
                at,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, &mut h);
        h.best(Family::Crlf).max(h.best(Family::MailInjection))
    }

    #[test]
    fn attacks() {
        for a in [
            "\r\nSet-Cookie:crlf=injection",
            "\n\rSet-cookie:crlf=injection",
            "%\n\nSet-cookie:crlf=injection",
            "\r\nV100 CAPABILITY\r\nV101 FETCH 4791",
            "\r\nQUIT\r\n",
            "\nRCPT TO: test@evil.com\n",
            "x\r\nHTTP/1.1 200 OK",
        ] {
            assert!(best(a) >= score::MEDIUM, "missed: {a:?}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "Dear team,\nthanks for the help.\nBest, Ann",
            "Note:\nTime: 5pm\nPlace: here",
            "line one\n\nline two",
            "I quit\nthe job",
        ] {
            assert!(best(b) < score::MEDIUM - 1, "false positive: {b:?}");
        }
    }
}
