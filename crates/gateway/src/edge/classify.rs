//! Traffic classes: declared crawlers, automation clients and platform review
//! scanners, recognised from the User-Agent, marker headers and addresses.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use http::HeaderMap;
use http::header::USER_AGENT;
use memchr::memmem::Finder;
use parking_lot::Mutex;
use portcullis_config::TrafficConfig;

use super::ipset::IpSet;
use crate::context::TrafficClass;

/// The matchers of [`TrafficConfig`], compiled once per configuration.
pub struct Classifier {
    crawler_ua: Option<AhoCorasick>,
    automation_ua: Option<AhoCorasick>,
    scanner_markers: Option<AhoCorasick>,
    /// The three lists in one automaton: a User-Agent none of them occurs
    /// in (most) is searched once instead of three times. `None` when it
    /// could not be built: every list is searched then.
    any_ua: Option<AhoCorasick>,
    plain_agents: PlainAgents,
    scanner_ips: IpSet,
}

/// User-Agents lately found to hold no pattern of any list: a client sends
/// the same one with every request, and a hash and a comparison cost less
/// than the search. Direct-mapped, so bounded by construction; a collision
/// only evicts (the bytes are compared in full).
struct PlainAgents {
    /// Shards by worker, so that workers seldom share a lock.
    shards: [Mutex<AgentSlots>; AGENT_SHARDS],
    hasher: foldhash::fast::RandomState,
}

/// One shard: a User-Agent at most per slot.
type AgentSlots = [Option<Box<[u8]>>; AGENT_SLOTS];

const AGENT_SHARDS: usize = 8;
const AGENT_SLOTS: usize = 64;
/// Longer User-Agents are searched every time: the table stays small.
const MAX_AGENT_BYTES: usize = 512;

impl PlainAgents {
    fn new() -> Self {
        PlainAgents {
            shards: std::array::from_fn(|_| Mutex::new(std::array::from_fn(|_| None))),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Whether `ua` holds no pattern, by `search` when it was not seen lately.
    fn check(&self, ua: &[u8], search: impl FnOnce() -> bool) -> bool {
        if ua.len() > MAX_AGENT_BYTES {
            return search();
        }
        let shard = &self.shards[crate::worker::worker_index() % AGENT_SHARDS];
        let slot = self.hasher.hash_one(ua) as usize % AGENT_SLOTS;
        if shard.lock()[slot].as_deref() == Some(ua) {
            return true;
        }
        let plain = search();
        if plain {
            shard.lock()[slot] = Some(ua.into());
        }
        plain
    }
}

/// A class and what gave it away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: TrafficClass,
    pub evidence: String,
}

fn matcher(patterns: &[String]) -> Option<AhoCorasick> {
    build(patterns, MatchKind::LeftmostFirst)
}

fn build<P: AsRef<[u8]>>(
    patterns: impl IntoIterator<Item = P>,
    kind: MatchKind,
) -> Option<AhoCorasick> {
    let patterns: Vec<P> = patterns.into_iter().collect();
    if patterns.is_empty() {
        return None;
    }
    // A DFA: the fastest search, and these lists are short.
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(kind)
        .kind(Some(AhoCorasickKind::DFA))
        .build(patterns)
        .ok()
}

impl Classifier {
    pub fn new(config: &TrafficConfig) -> Self {
        Classifier {
            crawler_ua: matcher(&config.crawler.user_agents),
            automation_ua: matcher(&config.automation.user_agents),
            scanner_markers: matcher(&config.scanner.header_markers),
            // Only whether any occurs: the first match ends the search.
            any_ua: build(
                [
                    &config.crawler.user_agents,
                    &config.automation.user_agents,
                    &config.scanner.header_markers,
                ]
                .into_iter()
                .flatten(),
                MatchKind::Standard,
            ),
            plain_agents: PlainAgents::new(),
            scanner_ips: IpSet::from_nets(&config.scanner.ips),
        }
    }

    /// Classifies a request; `None` for ordinary traffic.
    pub fn classify(&self, ip: IpAddr, headers: &HeaderMap) -> Option<Classification> {
        if self.scanner_ips.contains(ip) {
            return Some(Classification {
                class: TrafficClass::Scanner,
                evidence: format!("scanner address {ip}"),
            });
        }
        let ua_value = headers.get(USER_AGENT);
        let ua = ua_value.map(|v| v.as_bytes()).unwrap_or_default();
        let plain_ua = self
            .any_ua
            .as_ref()
            .is_some_and(|m| self.plain_agents.check(ua, || !m.is_match(ua)));
        if let Some(markers) = &self.scanner_markers {
            for (name, value) in headers {
                // The User-Agent searched above holds no marker, and most
                // values (hosts, media types, languages) are too short for one.
                let searched = plain_ua && ua_value.is_some_and(|ua| std::ptr::eq(ua, value));
                if searched || value.len() < markers.min_pattern_len() {
                    continue;
                }
                if let Some(m) = markers.find(value.as_bytes()) {
                    let marker = &value.as_bytes()[m.start()..m.end()];
                    return Some(Classification {
                        class: TrafficClass::Scanner,
                        evidence: format!("{}: {}", name, String::from_utf8_lossy(marker)),
                    });
                }
            }
        }
        if ua.trim_ascii().is_empty() {
            return Some(Classification {
                class: TrafficClass::Automation,
                evidence: "no user-agent".into(),
            });
        }
        if plain_ua {
            return None;
        }
        let found = |m: &Option<AhoCorasick>| {
            m.as_ref()
                .and_then(|m| m.find(ua))
                .map(|hit| String::from_utf8_lossy(&ua[hit.start()..hit.end()]).into_owned())
        };
        if let Some(token) = found(&self.automation_ua) {
            return Some(Classification {
                class: TrafficClass::Automation,
                evidence: format!("user-agent: {token}"),
            });
        }
        found(&self.crawler_ua).map(|token| Classification {
            class: TrafficClass::Crawler,
            evidence: format!("user-agent: {token}"),
        })
    }
}

/// A desktop-browser User-Agent without the headers every such browser sends:
/// weak evidence of a script, weighed by the risk engine, never blocking alone.
pub fn missing_browser_headers(headers: &HeaderMap) -> Option<&'static str> {
    // Searchers built once: `memmem::find` builds one per call.
    static IN_APP: LazyLock<[Finder<'static>; 2]> =
        LazyLock::new(|| [Finder::new(b"MicroMessenger"), Finder::new(b"miniProgram")]);
    let ua = headers.get(USER_AGENT)?.as_bytes();
    let claims_browser = ua.starts_with(b"Mozilla/") && IN_APP.iter().all(|f| f.find(ua).is_none());
    if !claims_browser {
        return None;
    }
    if !headers.contains_key(http::header::ACCEPT) {
        return Some("accept");
    }
    if !headers.contains_key(http::header::ACCEPT_LANGUAGE) {
        return Some("accept-language");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn classify(ip: &str, headers: &[(&'static str, &'static str)]) -> TrafficClass {
        let classifier = Classifier::new(&TrafficConfig::default());
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_static(v));
        }
        classifier
            .classify(ip.parse().unwrap(), &map)
            .map_or(TrafficClass::Normal, |c| c.class)
    }

    const BROWSER: &str =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15";

    #[test]
    fn review_scanner_by_header_and_by_address() {
        let ua = "Tencent Security Team, more information: https://developers.weixin.qq.com/";
        assert_eq!(
            classify("1.2.3.4", &[("user-agent", ua)]),
            TrafficClass::Scanner
        );
        assert_eq!(
            classify(
                "1.2.3.4",
                &[("user-agent", BROWSER), ("x-scan", "tencent security team")]
            ),
            TrafficClass::Scanner
        );
        assert_eq!(
            classify("113.96.223.69", &[("user-agent", BROWSER)]),
            TrafficClass::Scanner
        );
    }

    #[test]
    fn automation_and_crawlers() {
        assert_eq!(
            classify("1.2.3.4", &[("user-agent", "curl/8.5.0")]),
            TrafficClass::Automation
        );
        assert_eq!(
            classify("1.2.3.4", &[("user-agent", "python-requests/2.31")]),
            TrafficClass::Automation
        );
        assert_eq!(classify("1.2.3.4", &[]), TrafficClass::Automation);
        assert_eq!(
            classify(
                "1.2.3.4",
                &[("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1)")]
            ),
            TrafficClass::Crawler
        );
        assert_eq!(
            classify("1.2.3.4", &[("user-agent", BROWSER)]),
            TrafficClass::Normal
        );
    }

    /// The classification with every list searched in full, as before the
    /// combined automaton: the reference the shortcut must agree with.
    fn unfiltered(c: &Classifier, ip: IpAddr, headers: &HeaderMap) -> Option<Classification> {
        if c.scanner_ips.contains(ip) {
            return Some(Classification {
                class: TrafficClass::Scanner,
                evidence: format!("scanner address {ip}"),
            });
        }
        for (name, value) in headers {
            if let Some(m) = c
                .scanner_markers
                .as_ref()
                .and_then(|m| m.find(value.as_bytes()))
            {
                let marker = String::from_utf8_lossy(&value.as_bytes()[m.start()..m.end()]);
                return Some(Classification {
                    class: TrafficClass::Scanner,
                    evidence: format!("{name}: {marker}"),
                });
            }
        }
        let ua = headers.get(USER_AGENT).map_or(&b""[..], |v| v.as_bytes());
        if ua.trim_ascii().is_empty() {
            return Some(Classification {
                class: TrafficClass::Automation,
                evidence: "no user-agent".into(),
            });
        }
        let found = |m: &Option<AhoCorasick>| {
            let hit = m.as_ref()?.find(ua)?;
            Some(String::from_utf8_lossy(&ua[hit.start()..hit.end()]).into_owned())
        };
        if let Some(token) = found(&c.automation_ua) {
            return Some(Classification {
                class: TrafficClass::Automation,
                evidence: format!("user-agent: {token}"),
            });
        }
        found(&c.crawler_ua).map(|token| Classification {
            class: TrafficClass::Crawler,
            evidence: format!("user-agent: {token}"),
        })
    }

    #[test]
    fn one_search_of_the_user_agent_classifies_as_every_list_searched() {
        let agents = [
            BROWSER,
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0) curl/8.0",
            "Sogou web spider/4.0",
            "CURL/7.1",
            "python-requests/2.31 Googlebot",
            "Tencent Security Team, more information: https://developers.weixin.qq.com/",
            "Mozilla/5.0 TENCENT SECURITY TEAM",
            "   ",
            "",
            "axios/1.6",
            "Go-http-client/1.1",
            "okhttp/4.12",
        ];
        let mut custom = TrafficConfig::default();
        custom.crawler.user_agents = vec!["Mozilla".into()];
        custom.automation.user_agents = vec![];
        custom.scanner.header_markers = vec!["zh-CN".into()];
        let mut none = TrafficConfig::default();
        none.crawler.user_agents.clear();
        none.automation.user_agents.clear();
        none.scanner.header_markers.clear();
        let others: [&[(&str, &str)]; 3] = [
            &[],
            &[("accept", "*/*"), ("accept-language", "zh-CN,zh;q=0.9")],
            &[("x-scan", "tencent security team")],
        ];
        let mut compared = 0;
        for config in [TrafficConfig::default(), custom, none] {
            let classifier = Classifier::new(&config);
            for ua in agents {
                for extra in others {
                    for second_ua in [None, Some("curl/8")] {
                        let mut map = HeaderMap::new();
                        map.insert(USER_AGENT, HeaderValue::from_str(ua).unwrap());
                        if let Some(second) = second_ua {
                            map.append(USER_AGENT, HeaderValue::from_static(second));
                        }
                        for (k, v) in extra {
                            map.append(*k, HeaderValue::from_static(v));
                        }
                        // Twice: the second answer comes from the recent plain agents.
                        for ip in ["1.2.3.4", "113.96.223.69", "1.2.3.4"] {
                            let ip = ip.parse().unwrap();
                            assert_eq!(
                                classifier.classify(ip, &map),
                                unfiltered(&classifier, ip, &map),
                                "{ua:?} {extra:?} {second_ua:?}"
                            );
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 3 * 16 * 3 * 2 * 3);
    }

    #[test]
    fn only_plain_agents_are_remembered() {
        let memo = PlainAgents::new();
        assert!(memo.check(b"Mozilla/5.0", || true));
        assert!(memo.check(b"Mozilla/5.0", || panic!("searched again")));
        assert!(!memo.check(b"curl/8", || false));
        assert!(
            !memo.check(b"curl/8", || false),
            "a match is searched again"
        );
        let long = vec![b'x'; MAX_AGENT_BYTES + 1];
        assert!(memo.check(&long, || true));
        assert!(
            !memo.check(&long, || false),
            "a long agent is searched again"
        );
    }

    #[test]
    fn missing_headers_only_for_browser_claims() {
        let mut h = HeaderMap::new();
        h.insert(USER_AGENT, HeaderValue::from_static(BROWSER));
        assert_eq!(missing_browser_headers(&h), Some("accept"));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(
            http::header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("en"),
        );
        assert_eq!(missing_browser_headers(&h), None);
        let mut app = HeaderMap::new();
        app.insert(
            USER_AGENT,
            HeaderValue::from_static("Mozilla/5.0 MicroMessenger/8.0 miniProgram"),
        );
        assert_eq!(missing_browser_headers(&app), None);
    }
}
