//! XML / SOAP bodies: the whole document is checked once (for DOCTYPE,
//! ENTITY, XInclude and markup-level attacks), then each text node, CDATA
//! section and attribute value is inspected at `xml.<element>`.

use super::location;
use crate::analyze::{Ctx, Sink};

/// Most text nodes and attributes inspected.
const MAX_NODES: usize = 256;

pub(crate) fn walk(data: &[u8], sink: &mut Sink) {
    sink.value("xml", data, Ctx::XmlDoc);
    let b = data;
    let mut i = 0;
    let mut nodes = 0;
    let mut current: &[u8] = b"";
    while i < b.len() && nodes < MAX_NODES {
        let Some(p) = memchr::memchr(b'<', &b[i..]) else {
            text(&b[i..], current, sink, &mut nodes);
            break;
        };
        let lt = i + p;
        text(&b[i..lt], current, sink, &mut nodes);
        let rest = &b[lt..];
        if rest.starts_with(b"<![CDATA[") {
            let end = memchr::memmem::find(&rest[9..], b"]]>").map_or(b.len(), |e| lt + 9 + e);
            let loc = location("xml", current);
            sink.value(&loc, &b[lt + 9..end], Ctx::Xml);
            nodes += 1;
            i = (end + 3).min(b.len());
            continue;
        }
        if rest.starts_with(b"<!--") {
            i = memchr::memmem::find(&rest[4..], b"-->").map_or(b.len(), |e| lt + 4 + e + 3);
            continue;
        }
        let gt = memchr::memchr(b'>', rest).map_or(b.len(), |e| lt + e);
        let tag = &b[lt + 1..gt];
        if !matches!(tag.first(), Some(b'?' | b'!' | b'/')) {
            let name_end = tag
                .iter()
                .position(|c| c.is_ascii_whitespace() || *c == b'/')
                .unwrap_or(tag.len());
            current = &tag[..name_end];
            attributes(&tag[name_end..], current, sink, &mut nodes);
        }
        i = gt + 1;
    }
    if nodes >= MAX_NODES && i < b.len() {
        sink.overflow(|o| o.nodes = true);
    }
}

fn text(t: &[u8], current: &[u8], sink: &mut Sink, nodes: &mut usize) {
    let t = t.trim_ascii();
    if t.is_empty() {
        return;
    }
    *nodes += 1;
    let loc = location("xml", local_name(current));
    sink.value(&loc, t, Ctx::Xml);
}

fn local_name(n: &[u8]) -> &[u8] {
    match n.iter().position(|&c| c == b':') {
        Some(p) => &n[p + 1..],
        None => n,
    }
}

fn attributes(a: &[u8], current: &[u8], sink: &mut Sink, nodes: &mut usize) {
    let mut i = 0;
    while let Some(p) = memchr::memchr2(b'"', b'\'', &a[i..]) {
        let q = a[i + p];
        let start = i + p + 1;
        let end = memchr::memchr(q, &a[start..]).map_or(a.len(), |e| start + e);
        let v = &a[start..end];
        if v.iter()
            .any(|c| !c.is_ascii_alphanumeric() && !matches!(c, b'.' | b'-' | b'_' | b':' | b'/'))
        {
            *nodes += 1;
            let loc = location("xml", local_name(current));
            sink.value(&loc, v, Ctx::Xml);
        }
        i = end + 1;
        if i >= a.len() {
            break;
        }
    }
}
