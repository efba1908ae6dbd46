//! Environment signals the SDK posts with a solution, and their assessment.
//!
//! Everything here is self-reported by the client, so it can only *raise*
//! risk: a clean report proves nothing, a dirty one is a strong hint (a
//! script that bothers to lie has paid for the proof of work anyway).

use serde::{Deserialize, Serialize};

/// Operating system, as in the `x-wx-platform` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Ios,
    Android,
    Windows,
    Mac,
    /// The mini-program developer tools.
    Devtools,
    /// HarmonyOS.
    Ohos,
    Linux,
    #[default]
    #[serde(other)]
    Unknown,
}

impl Platform {
    pub fn as_str(&self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Windows => "windows",
            Platform::Mac => "mac",
            Platform::Devtools => "devtools",
            Platform::Ohos => "ohos",
            Platform::Linux => "linux",
            Platform::Unknown => "unknown",
        }
    }

    pub(crate) fn to_wire(self) -> u8 {
        match self {
            Platform::Unknown => 0,
            Platform::Ios => 1,
            Platform::Android => 2,
            Platform::Windows => 3,
            Platform::Mac => 4,
            Platform::Devtools => 5,
            Platform::Ohos => 6,
            Platform::Linux => 7,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Option<Self> {
        Some(match b {
            0 => Platform::Unknown,
            1 => Platform::Ios,
            2 => Platform::Android,
            3 => Platform::Windows,
            4 => Platform::Mac,
            5 => Platform::Devtools,
            6 => Platform::Ohos,
            7 => Platform::Linux,
            _ => return None,
        })
    }

    fn is_mobile(self) -> bool {
        matches!(self, Platform::Ios | Platform::Android | Platform::Ohos)
    }
}

/// User interaction counted by the SDK since `start()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Interactions {
    pub pointer: u32,
    pub keys: u32,
    pub touches: u32,
    pub scrolls: u32,
}

/// Screen as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
    /// devicePixelRatio / pixelRatio.
    pub dpr: f32,
    pub color_depth: u8,
}

/// What the SDK reports alongside a solution (`POST /.portcullis/verify`,
/// field `report`). Every field has a default so old SDKs still parse.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientReport {
    /// SDK name/version, e.g. `js/0.1.0`.
    pub sdk: String,
    /// `browser` or `miniprogram`.
    pub runtime: String,
    /// `navigator.webdriver`.
    pub webdriver: bool,
    /// Automation / headless markers the SDK found, e.g. `ua_headless`,
    /// `no_plugins`, `selenium_globals`, `phantom`, `cdp_runtime`.
    pub headless_markers: Vec<String>,
    pub platform: Platform,
    /// User agent (truncated to 256 chars by the SDK).
    pub user_agent: String,
    /// Wall time spent solving the proof of work.
    pub solve_ms: u64,
    /// Time from `start()` to the report.
    pub since_start_ms: u64,
    pub interactions: Interactions,
    pub screen: Screen,
    pub languages: Vec<String>,
    /// IANA zone, e.g. `Asia/Shanghai`.
    pub timezone: String,
    /// Minutes east of UTC as the client computes it.
    pub tz_offset_min: i32,
    /// Touch events supported.
    pub touch: bool,
    pub max_touch_points: u8,
    /// `navigator.hardwareConcurrency` (0 if unknown).
    pub cores: u16,
    /// What an app SDK found about its device: `emulator`, `root`
    /// (rooted / jailbroken), `hook` (Frida, Xposed ...), `debugger`.
    pub device_flags: Vec<String>,
}

/// The assessment of a report: named flags and a rank 0-4.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct EnvAssessment {
    pub flags: Vec<&'static str>,
    pub risk: u8,
}

/// Hashes per millisecond above which a solve was not done by a browser
/// JS engine (the SDK reaches ~2-5k/ms; native code ~20k/ms per core).
pub const NATIVE_SOLVER_RATE: u64 = 15_000;

/// Flag weights. The rank is the sum, capped at 4.
///
/// | flag | weight | meaning |
/// |---|---|---|
/// | `webdriver` | 3 | `navigator.webdriver` is true: the browser is driven by automation |
/// | `automation_marker` | 3 | globals of selenium / phantom / nightmare / CDP runtimes |
/// | `headless` | 2 | a headless marker (HeadlessChrome UA, no plugins + no languages, ...) |
/// | `ua_headless` | 2 | the user agent itself says headless / a scripting client |
/// | `native_solver` | 2 | the work was done faster than a JS engine can |
/// | `timing_inconsistent` | 1 | zero time since `start()`, or a solve longer than the time since `start()` (a forged report) |
/// | `no_languages` | 1 | empty `navigator.languages` |
/// | `no_screen` | 1 | zero screen size |
/// | `mobile_without_touch` | 1 | claims ios / android / ohos but has no touch support |
/// | `platform_mismatch` | 1 | the user agent names another OS than the platform field |
/// | `devtools` | 1 | the mini-program developer tools |
/// | `emulator` | 3 | an app SDK reports an emulator |
/// | `hook` | 3 | an app SDK reports a hooking framework |
/// | `root` | 2 | an app SDK reports a rooted or jailbroken device |
/// | `debugger` | 2 | an app SDK reports an attached debugger |
/// | `no_timezone` | 0 | empty time zone (informative) |
/// | `no_interaction` | 0 | no input events yet (informative: the silent check at launch has none) |
pub fn assess(report: &ClientReport) -> EnvAssessment {
    let mut flags = Vec::new();
    let mut score: u32 = 0;
    let mut flag = |name: &'static str, weight: u32| {
        flags.push(name);
        score += weight;
    };
    if report.webdriver {
        flag("webdriver", 3);
    }
    let mut headless = false;
    let mut automation = false;
    for m in &report.headless_markers {
        match m.as_str() {
            "selenium_globals" | "phantom" | "nightmare" | "cdp_runtime" | "dom_automation" => {
                automation = true
            }
            _ => headless = true,
        }
    }
    if automation {
        flag("automation_marker", 3);
    }
    if headless {
        flag("headless", 2);
    }
    let ua = report.user_agent.to_ascii_lowercase();
    if [
        "headless",
        "phantomjs",
        "electron",
        "puppeteer",
        "playwright",
        "python-",
        "curl/",
        "okhttp",
    ]
    .iter()
    .any(|m| ua.contains(m))
    {
        flag("ua_headless", 2);
    }
    if report.since_start_ms == 0 || report.solve_ms > report.since_start_ms.saturating_add(5) {
        flag("timing_inconsistent", 1);
    }
    if report.languages.is_empty() {
        flag("no_languages", 1);
    }
    if report.screen.width == 0 || report.screen.height == 0 {
        flag("no_screen", 1);
    }
    if report.platform.is_mobile() && !report.touch && report.max_touch_points == 0 {
        flag("mobile_without_touch", 1);
    }
    if !ua.is_empty() && platform_mismatch(report.platform, &ua) {
        flag("platform_mismatch", 1);
    }
    if report.platform == Platform::Devtools {
        flag("devtools", 1);
    }
    for reported in &report.device_flags {
        match reported.as_str() {
            "emulator" => flag("emulator", 3),
            "hook" => flag("hook", 3),
            "root" => flag("root", 2),
            "debugger" => flag("debugger", 2),
            _ => {}
        }
    }
    if report.timezone.is_empty() {
        flag("no_timezone", 0);
    }
    let i = report.interactions;
    if i.pointer == 0 && i.keys == 0 && i.touches == 0 && i.scrolls == 0 {
        flag("no_interaction", 0);
    }
    EnvAssessment {
        flags,
        risk: score.min(4) as u8,
    }
}

/// [`assess`], plus the `native_solver` flag when `attempts` hashes (the
/// solution counter, since the SDK counts from 0) took implausibly little
/// time for JavaScript.
pub fn assess_with_work(report: &ClientReport, attempts: u64) -> EnvAssessment {
    let mut a = assess(report);
    // Only meaningful when there was real work to time.
    if attempts >= 100_000 && attempts / report.solve_ms.max(1) > NATIVE_SOLVER_RATE {
        a.flags.push("native_solver");
        a.risk = (a.risk + 2).min(4);
    }
    a
}

impl ClientReport {
    /// What the report says about the environment, without what changes
    /// between two checks of one device (timings, interactions): 16 hex
    /// digits of a SHA-256. Many device ids behind one fingerprint is how a
    /// script that rotates ids looks; a popular phone model shares one too,
    /// so it is counted, never trusted or refused by itself.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let s = &self.screen;
        let fields = format!(
            "{}\0{}\0{}\0{}\0{}x{}x{}x{}\0{}\0{}\0{}\0{}\0{}\0{}\0{}\0{}",
            self.sdk,
            self.runtime,
            self.platform.as_str(),
            self.user_agent,
            s.width,
            s.height,
            s.dpr,
            s.color_depth,
            self.languages.join(","),
            self.timezone,
            self.tz_offset_min,
            self.touch,
            self.max_touch_points,
            self.cores,
            self.webdriver,
            self.device_flags.join(","),
        );
        h.update(fields.as_bytes());
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn platform_mismatch(p: Platform, ua: &str) -> bool {
    let says = |m: &[&str]| m.iter().any(|x| ua.contains(x));
    match p {
        Platform::Ios => !says(&["iphone", "ipad", "ipod", "ios"]),
        Platform::Android => !says(&["android"]),
        Platform::Windows => !says(&["windows"]),
        Platform::Mac => !says(&["mac os", "macintosh"]) || says(&["iphone", "ipad"]),
        Platform::Ohos => !says(&["harmony", "openharmony", "ohos"]),
        Platform::Linux => says(&["windows", "iphone", "android", "macintosh"]),
        Platform::Devtools | Platform::Unknown => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_timings_and_follows_the_environment() {
        let a = clean();
        let later = ClientReport {
            solve_ms: a.solve_ms + 500,
            since_start_ms: a.since_start_ms + 9_000,
            interactions: Interactions {
                touches: 7,
                ..a.interactions
            },
            ..a.clone()
        };
        assert_eq!(a.fingerprint(), later.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        let other = ClientReport {
            cores: a.cores + 2,
            ..a.clone()
        };
        assert_ne!(a.fingerprint(), other.fingerprint());
    }

    pub(crate) fn clean() -> ClientReport {
        ClientReport {
            sdk: "js/0.1.0".into(),
            runtime: "browser".into(),
            platform: Platform::Linux,
            user_agent:
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
                    .into(),
            solve_ms: 40,
            since_start_ms: 900,
            interactions: Interactions {
                pointer: 3,
                ..Default::default()
            },
            screen: Screen {
                width: 1280,
                height: 720,
                dpr: 1.0,
                color_depth: 24,
            },
            languages: vec!["en-US".into()],
            timezone: "UTC".into(),
            cores: 2,
            ..Default::default()
        }
    }

    #[test]
    fn app_device_flags_raise_the_rank() {
        let report = ClientReport {
            device_flags: vec!["emulator".into(), "root".into(), "unknown".into()],
            ..ClientReport::default()
        };
        let a = assess(&report);
        assert!(a.flags.contains(&"emulator") && a.flags.contains(&"root"));
        assert_eq!(a.risk, 4);
    }

    #[test]
    fn clean_report_is_rank_0() {
        let a = assess(&clean());
        assert_eq!(a.risk, 0, "{:?}", a.flags);
        assert!(a.flags.is_empty());
    }

    #[test]
    fn webdriver_raises_rank() {
        let mut r = clean();
        r.webdriver = true;
        let a = assess(&r);
        assert_eq!(a.risk, 3);
        assert_eq!(a.flags, vec!["webdriver"]);
        r.headless_markers = vec!["ua_headless".into()];
        r.user_agent = "Mozilla/5.0 HeadlessChrome/131.0".into();
        assert_eq!(assess(&r).risk, 4);
    }

    #[test]
    fn mobile_checks() {
        let mut r = clean();
        r.platform = Platform::Ios;
        let a = assess(&r);
        assert!(a.flags.contains(&"mobile_without_touch"));
        assert!(a.flags.contains(&"platform_mismatch"));
        assert_eq!(a.risk, 2);
    }

    #[test]
    fn native_solver() {
        let mut r = clean();
        r.solve_ms = 10;
        let a = assess_with_work(&r, 1_000_000);
        assert!(a.flags.contains(&"native_solver"));
        r.solve_ms = 400;
        assert!(
            !assess_with_work(&r, 1_000_000)
                .flags
                .contains(&"native_solver")
        );
    }

    /// Reports the SDK sent from headless Chromium 156 (driven by
    /// playwright-core): as launched, and with webdriver and the UA masked.
    #[test]
    fn chromium_reports() {
        let driven = r#"{"sdk":"js/0.1.0","runtime":"browser","webdriver":true,"headless_markers":["ua_headless"],"platform":"linux","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36","solve_ms":9,"since_start_ms":12,"interactions":{"pointer":0,"keys":0,"touches":0,"scrolls":0},"screen":{"width":1280,"height":720,"dpr":1,"color_depth":24},"languages":["en-US","en"],"timezone":"UTC","tz_offset_min":0,"touch":false,"max_touch_points":0,"cores":2}"#;
        let masked = r#"{"sdk":"js/0.1.0","runtime":"browser","webdriver":false,"headless_markers":[],"platform":"linux","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36","solve_ms":220,"since_start_ms":224,"interactions":{"pointer":0,"keys":0,"touches":0,"scrolls":0},"screen":{"width":1280,"height":720,"dpr":1,"color_depth":24},"languages":["en-US","en"],"timezone":"UTC","tz_offset_min":0,"touch":false,"max_touch_points":0,"cores":2}"#;
        let a = assess(&serde_json::from_str(driven).unwrap());
        assert_eq!(a.risk, 4, "{:?}", a.flags);
        assert!(a.flags.contains(&"webdriver") && a.flags.contains(&"headless"));
        let b = assess(&serde_json::from_str(masked).unwrap());
        assert_eq!(b.risk, 0, "{:?}", b.flags);
        assert_eq!(b.flags, vec!["no_interaction"]);
    }

    #[test]
    fn forged_timing() {
        let mut r = clean();
        r.solve_ms = 5_000;
        r.since_start_ms = 100;
        assert_eq!(assess(&r).flags, vec!["timing_inconsistent"]);
    }

    #[test]
    fn parses_partial_json() {
        let r: ClientReport =
            serde_json::from_str(r#"{"webdriver":true,"platform":"beos","screen":{"width":3}}"#)
                .unwrap();
        assert!(r.webdriver);
        assert_eq!(r.platform, Platform::Unknown);
        assert_eq!(r.screen.width, 3);
        let p: Platform = serde_json::from_str("\"ohos\"").unwrap();
        assert_eq!(p, Platform::Ohos);
    }
}
