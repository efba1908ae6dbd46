//! Traffic classes: declared crawlers, automation clients and platform review
//! scanners, recognised from the User-Agent, marker headers and addresses.

use std::net::IpAddr;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use http::HeaderMap;
use http::header::USER_AGENT;
use portcullis_config::TrafficConfig;

use super::ipset::IpSet;
use crate::context::TrafficClass;

/// The matchers of [`TrafficConfig`], compiled once per configuration.
pub struct Classifier {
    crawler_ua: Option<AhoCorasick>,
    automation_ua: Option<AhoCorasick>,
    scanner_markers: Option<AhoCorasick>,
    scanner_ips: IpSet,
}

/// A class and what gave it away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: TrafficClass,
    pub evidence: String,
}

fn matcher(patterns: &[String]) -> Option<AhoCorasick> {
    if patterns.is_empty() {
        return None;
    }
    // A DFA: the fastest search, and these lists are short.
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
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
        if let Some(markers) = &self.scanner_markers {
            for (name, value) in headers {
                if let Some(m) = markers.find(value.as_bytes()) {
                    let marker = &value.as_bytes()[m.start()..m.end()];
                    return Some(Classification {
                        class: TrafficClass::Scanner,
                        evidence: format!("{}: {}", name, String::from_utf8_lossy(marker)),
                    });
                }
            }
        }
        let ua = headers
            .get(USER_AGENT)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if ua.trim_ascii().is_empty() {
            return Some(Classification {
                class: TrafficClass::Automation,
                evidence: "no user-agent".into(),
            });
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
    let ua = headers.get(USER_AGENT)?.as_bytes();
    let claims_browser = ua.starts_with(b"Mozilla/")
        && memchr::memmem::find(ua, b"MicroMessenger").is_none()
        && memchr::memmem::find(ua, b"miniProgram").is_none();
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
