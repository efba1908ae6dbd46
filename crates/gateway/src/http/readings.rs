//! Other readings of a canonical path: the paths that some origins route a
//! request to although the gateway reads it otherwise. A path that one
//! origin decodes twice (`/%2561pi/`), folds to ASCII (`/ａｐｉ/`, IIS
//! "best fit", NFKC in Python and Java stacks), trims (`/api./`, `/api%20/`:
//! Windows drops trailing dots and spaces, Spring trims tokens) or cuts at a
//! decoded `#` or `?` names another resource there than here. The route
//! stage refuses a request whose readings fall under different policies or
//! rate limits; ordinary paths have no other reading and cost one scan.

use unicode_normalization::UnicodeNormalization;

use super::canonical::canonical_path;

/// The readings of `matched` (a canonical path) that differ from it, at
/// most four; empty for a path that every origin reads alike.
pub fn other_readings(matched: &str) -> Vec<String> {
    if !has_other_reading(matched) {
        return Vec::new();
    }
    let decoded_again = canonical_path(matched).ok().map(|p| p.matched);
    let folded = fold(matched);
    let trimmed = trim(matched);
    let loosest = trim(&fold(decoded_again.as_deref().unwrap_or(matched)));
    let mut readings: Vec<String> = Vec::with_capacity(4);
    for reading in [decoded_again, Some(folded), Some(trimmed), Some(loosest)]
        .into_iter()
        .flatten()
    {
        if reading != matched && !readings.contains(&reading) {
            readings.push(reading);
        }
    }
    readings
}

/// Whether any transformation below could change the path: an escape left
/// after one decoding, a non-ASCII character, a cut character, or a segment
/// with whitespace or a trailing dot at its edge.
fn has_other_reading(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'%' | b'#' | b'?' | 0x80.. => true,
        b'.' => matches!(bytes.get(i + 1), None | Some(b'/')) && !is_dot_segment(bytes, i),
        _ if is_trimmed(b) => true,
        _ => false,
    })
}

/// Whether the dot at `end` closes a segment made of dots only (`.`, `..`),
/// which the canonical path already removed unless it ends the path.
fn is_dot_segment(bytes: &[u8], end: usize) -> bool {
    let start = bytes[..end]
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |s| s + 1);
    bytes[start..=end].iter().all(|&b| b == b'.')
}

fn is_trimmed(b: u8) -> bool {
    b == b' ' || b.is_ascii_control()
}

/// Compatibility folding (NFKC): fullwidth letters, solidus and full stop
/// become ASCII, so `／ａｐｉ／．．／` is re-read as a path. Then the letters
/// whose case mapping is ASCII (`ı` and `İ` to `i`/`I`, `ſ` to `s`): Java's
/// `equalsIgnoreCase` and Python's `re.IGNORECASE` match them with `i`
/// and `s`.
fn fold(path: &str) -> String {
    if path.is_ascii() {
        return path.to_owned();
    }
    let folded: String = path
        .nfkc()
        .map(|c| match c {
            'ı' => 'i',
            'İ' => 'I',
            'ſ' => 's',
            c => c,
        })
        .collect();
    resegment(&folded)
}

/// Each segment without leading whitespace and without trailing dots and
/// whitespace, and the path cut at a decoded `#` or `?`.
fn trim(path: &str) -> String {
    let cut = path.find(['#', '?']).map_or(path, |at| &path[..at]);
    let trimmed: Vec<&str> = cut
        .split('/')
        .map(|segment| {
            segment
                .trim_start_matches(is_trimmed_char)
                .trim_end_matches(|c: char| c == '.' || is_trimmed_char(c))
        })
        .collect();
    resegment(&trimmed.join("/"))
}

/// What some origin trims off a token's edges: ASCII controls and space,
/// Unicode whitespace (.NET `Trim`, Python `strip`: U+0085, U+00A0, U+1680,
/// U+2028, U+3000...) and the invisible zero-width characters.
fn is_trimmed_char(c: char) -> bool {
    (c.is_ascii() && is_trimmed(c as u8))
        || c.is_whitespace()
        || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Dot segments, separators and repeated slashes of an already decoded
/// path, normalised again without decoding it a second time.
fn resegment(decoded: &str) -> String {
    let escaped = decoded.replace('%', "%25");
    let rooted = if escaped.starts_with('/') {
        escaped
    } else {
        format!("/{escaped}")
    };
    canonical_path(&rooted).map_or_else(|_| decoded.to_owned(), |p| p.matched)
}

#[cfg(test)]
mod tests {
    use super::other_readings;

    fn reads_as(path: &str, expected: &str) {
        let readings = other_readings(path);
        assert!(
            readings.iter().any(|r| r == expected),
            "{path} should also read as {expected}, got {readings:?}"
        );
    }

    #[test]
    fn ordinary_paths_have_no_other_reading() {
        for path in [
            "/",
            "/api/v1/users/42",
            "/static/app.min.js",
            "/a-b_c~d/e.f/",
            "/x/",
        ] {
            assert!(other_readings(path).is_empty(), "{path}");
        }
    }

    #[test]
    fn a_second_decoding_is_a_reading() {
        reads_as("/%61pi/x", "/api/x");
        reads_as("/%2e%2e/api/x", "/api/x");
    }

    #[test]
    fn compatibility_forms_fold_to_ascii() {
        reads_as("/ａｐｉ/x", "/api/x");
        reads_as("/ＡＰＩ/x", "/API/x");
        reads_as("/x／．．／api/y", "/api/y");
    }

    #[test]
    fn letters_whose_case_is_ascii_fold_to_it() {
        reads_as("/ap\u{131}/x", "/api/x");
        reads_as("/AP\u{130}/x", "/API/x");
        reads_as("/\u{17F}ecure/x", "/secure/x");
    }

    #[test]
    fn unicode_whitespace_and_invisible_characters_are_trimmed() {
        for space in [
            "\u{85}", "\u{A0}", "\u{1680}", "\u{2028}", "\u{3000}", "\u{200B}", "\u{FEFF}",
        ] {
            reads_as(&format!("/api{space}/x"), "/api/x");
            reads_as(&format!("/{space}api/x"), "/api/x");
        }
    }

    #[test]
    fn segment_edges_are_trimmed_like_windows_and_spring() {
        reads_as("/api./x", "/api/x");
        reads_as("/api /x", "/api/x");
        reads_as("/api\t/x", "/api/x");
        reads_as("/ api/x", "/api/x");
        reads_as("/api.../x", "/api/x");
    }

    #[test]
    fn a_decoded_fragment_or_query_mark_cuts_the_path() {
        reads_as("/api#/x", "/api");
        reads_as("/api?/x", "/api");
    }

    #[test]
    fn readings_combine() {
        reads_as("/%EF%BD%81pi%2e/x", "/api/x");
    }

    #[test]
    fn text_in_other_scripts_reads_as_itself() {
        assert!(other_readings("/文章/标题").is_empty());
    }
}
