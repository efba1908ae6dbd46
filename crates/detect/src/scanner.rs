//! Known scanners and exploit probes: tool names in the User-Agent, and
//! request paths that only scanners ask for (`/.env`, `/.git/config`,
//! `eval-stdin.php`, ...).

use crate::text::{Hits, Text};
use crate::{Family, score};
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

const AGENTS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nuclei",
    "openvas",
    "fuzz faster u fool",
    "ffuf",
    "gobuster",
    "dirbuster",
    "wpscan",
    "masscan",
    "zgrab",
    "nmap scripting",
    "nmap nse",
    "acunetix",
    "netsparker",
    "w3af",
    "arachni",
    "nessus",
    ".nasl",
    "whatweb",
    "hydra",
    "jaeles",
    "wfuzz",
    "feroxbuster",
    "havij",
    "commix",
    "zmeu",
    "morfeus",
    "interactsh",
    "appscan",
    "webinspect",
    "dirsearch",
    "xsstrike",
    "burp collaborator",
    "projectdiscovery",
    "qualys",
    "detectify",
    "skipfish",
    "paros",
    "vega/",
    "brutus",
    "sqlninja",
    "pangolin",
    "bsqlbf",
    "jorgee",
    "libwww-perl",
    "python-requests/0.",
];

const PATHS: &[&str] = &[
    "/.env",
    "/.git/",
    "/.svn/",
    "/.hg/",
    "/.ds_store",
    "/.aws/",
    "/.ssh/",
    "/.htpasswd",
    "/.htaccess",
    "/wp-config.php",
    "/phpmyadmin",
    "/pma/",
    "/myadmin/",
    "/server-status",
    "/actuator/env",
    "/actuator/heapdump",
    "/actuator/gateway",
    "/vendor/phpunit/",
    "eval-stdin.php",
    "/boaform/",
    "/hnap1",
    "/solr/admin",
    "/wls-wsat/",
    "/_async/",
    "/_ignition/execute-solution",
    "/jmx-console",
    "/invoker/jmxinvokerservlet",
    "/web-inf/",
    "/meta-inf/",
    "/shell.php",
    "/cmd.php",
    "/c99.php",
    "/r57.php",
    "/wso.php",
    "/backup.sql",
    "/dump.sql",
    "/database.sql",
    "/config.php.bak",
    "/wp-content/debug.log",
    "/cgi-bin/",
    "/manager/html",
    "/console/login",
    "/owa/auth/x.js",
    "/autodiscover/autodiscover.json",
    "/ecp/",
    "/remote/fgt_lang",
    "/api/v1/namespaces",
    "/.well-known/security.txt.bak",
    "/adminer.php",
    "/telescope/requests",
];

static UA_AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| crate::text::dfa(AGENTS));
static PATH_AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| crate::text::dfa(PATHS));

pub(crate) fn check_user_agent(t: &Text, hits: &mut Hits) {
    if let Some(m) = UA_AC.as_ref().and_then(|ac| ac.find(t.bytes())) {
        hits.add(
            Family::ScannerPath,
            score::MEDIUM + 2,
            "scanner.user-agent",
            m.start(),
        );
    }
}

pub(crate) fn check_path(t: &Text, hits: &mut Hits) {
    let b = t.bytes();
    let Some(ac) = PATH_AC.as_ref() else {
        return;
    };
    for m in ac.find_iter(b).take(8) {
        // The match must end a segment or a name: `/.env` but not `/.envoy`.
        let e = m.end();
        let pat = PATHS[m.pattern().as_usize()];
        let boundary = pat.ends_with('/')
            || b.get(e)
                .is_none_or(|&c| matches!(c, b'/' | b'?' | b'.' | b';' | b'#'));
        if boundary {
            let sc = if pat == "/cgi-bin/" {
                score::MEDIUM
            } else {
                score::MEDIUM + 1
            };
            hits.add(Family::ScannerPath, sc, "scanner.path", m.start());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_and_paths() {
        let check = |s: &str, ua: bool| {
            let lower = s.to_ascii_lowercase();
            let mut h = Hits::default();
            let t = Text::new(s, &lower);
            if ua {
                check_user_agent(&t, &mut h)
            } else {
                check_path(&t, &mut h)
            }
            h.has(Family::ScannerPath)
        };
        assert!(check("sqlmap/1.7.4#stable (https://sqlmap.org)", true));
        assert!(check("Mozilla/5.0 [en] (X11, U; OpenVAS-VT 22.4.1)", true));
        assert!(!check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
            true
        ));
        assert!(check("/.env", false));
        assert!(check("/app/.git/config", false));
        assert!(!check("/.envoy/config", false));
        assert!(!check("/api/users/42", false));
    }
}
