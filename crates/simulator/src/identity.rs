//! Who a simulated client is: addresses, device ids, accounts, user agents
//! and the headers its software sends. Pure, driven by a seeded RNG.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderName;
use http::header::{ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, REFERER, USER_AGENT};
use ipnet::IpNet;
use portcullis_challenge::env::{Interactions, Screen};
use portcullis_challenge::{ClientReport, Platform};
use rand::Rng;
use rand::rngs::StdRng;

/// First octets of consumer broadband and mobile networks (China Telecom,
/// China Unicom, China Mobile and others): where phones and home routers are.
const RESIDENTIAL_FIRST_OCTETS: [u8; 24] = [
    27, 36, 39, 42, 58, 59, 60, 61, 101, 110, 111, 112, 114, 115, 116, 117, 119, 120, 121, 171,
    180, 183, 218, 223,
];

/// The mini-program's app id, as it appears in referers and user agents.
pub const APP_ID: &str = "wx5f2a1c3e4b6d7089";

/// A random public address on a residential network, outside `avoid`.
pub fn residential_ip(rng: &mut StdRng, avoid: &[IpNet]) -> IpAddr {
    loop {
        let first = RESIDENTIAL_FIRST_OCTETS[rng.random_range(0..RESIDENTIAL_FIRST_OCTETS.len())];
        let ip = IpAddr::V4(Ipv4Addr::new(
            first,
            rng.random(),
            rng.random(),
            rng.random_range(2..=254),
        ));
        if !avoid.iter().any(|net| net.contains(&ip)) {
            return ip;
        }
    }
}

/// A host inside an IPv4 network (its first /24 when the network is larger).
pub fn host_in(net: &IpNet, host: u8) -> IpAddr {
    match net {
        IpNet::V4(v4) => {
            let [a, b, c, _] = v4.network().octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, host.max(1)))
        }
        IpNet::V6(v6) => IpAddr::V6(v6.network()),
    }
}

/// A device id as the SDK makes it: 16 random bytes, base64url.
pub fn device_id(rng: &mut StdRng) -> String {
    let bytes: [u8; 16] = rng.random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signature nonce: 16 random bytes, base64url.
pub fn nonce(rng: &mut StdRng) -> String {
    device_id(rng)
}

/// An account id of the app.
pub fn account(rng: &mut StdRng) -> String {
    format!("u{:09}", rng.random_range(0..1_000_000_000u32))
}

/// A phone model and what its mini-program runtime reports.
#[derive(Debug, Clone)]
pub struct Phone {
    pub platform: Platform,
    /// The web view's user agent (sent on every request).
    pub user_agent: String,
    /// `wx.getSystemInfo` style: brand model system.
    pub model: String,
    pub screen: Screen,
    pub cores: u16,
}

const IPHONES: [(&str, &str, u32, u32); 4] = [
    ("iPhone 15 Pro<iPhone16,1>", "17_4_1", 393, 852),
    ("iPhone 14<iPhone14,7>", "16_6", 390, 844),
    ("iPhone 13<iPhone14,5>", "17_2", 390, 844),
    ("iPhone 12 mini<iPhone13,1>", "15_8", 375, 812),
];

const ANDROIDS: [(&str, &str, &str, u32, u32); 4] = [
    ("vivo", "V2183A", "13", 393, 873),
    ("Xiaomi", "23049RAD8C", "14", 393, 873),
    ("HUAWEI", "NOH-AN00", "12", 360, 780),
    ("OPPO", "PGEM10", "13", 412, 915),
];

/// A real phone running the app.
pub fn phone(rng: &mut StdRng) -> Phone {
    if rng.random_bool(0.45) {
        let (model, ios, width, height) = IPHONES[rng.random_range(0..IPHONES.len())];
        Phone {
            platform: Platform::Ios,
            user_agent: format!(
                "Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) \
                 NetType/WIFI Language/zh_CN miniProgram/{APP_ID}"
            ),
            model: format!("{model} iOS {}", ios.replace('_', ".")),
            screen: Screen {
                width,
                height,
                dpr: 3.0,
                color_depth: 24,
            },
            cores: 6,
        }
    } else {
        let (brand, model, android, width, height) = ANDROIDS[rng.random_range(0..ANDROIDS.len())];
        Phone {
            platform: Platform::Android,
            user_agent: android_user_agent(android, model),
            model: format!("{brand} {model} Android {android}"),
            screen: Screen {
                width,
                height,
                dpr: 2.75,
                color_depth: 24,
            },
            cores: 8,
        }
    }
}

fn android_user_agent(android: &str, model: &str) -> String {
    format!(
        "Mozilla/5.0 (Linux; Android {android}; {model} Build/TP1A.220624.014; wv) \
         AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile \
         Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MicroMessenger/8.0.47.2560(0x28002F30) \
         WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64 miniProgram/{APP_ID}"
    )
}

/// An Android emulator on a PC (the app running in it says so).
pub fn emulator() -> Phone {
    Phone {
        platform: Platform::Android,
        user_agent: android_user_agent("11", "Android SDK built for x86_64"),
        model: "Google Android SDK built for x86_64 Android 11".into(),
        screen: Screen {
            width: 1080,
            height: 1920,
            dpr: 1.0,
            color_depth: 24,
        },
        cores: 4,
    }
}

/// What the mini-program SDK reports for this phone, with `device_flags`
/// from the app's own checks; `since_start_ms` is the time from launch to
/// the check, the SDK adds the solve time.
pub fn client_report(phone: &Phone, rng: &mut StdRng, device_flags: &[&str]) -> ClientReport {
    ClientReport {
        sdk: "miniprogram/0.1.0".into(),
        runtime: "miniprogram".into(),
        platform: phone.platform,
        user_agent: phone.model.clone(),
        since_start_ms: rng.random_range(300..2_500),
        interactions: Interactions {
            touches: rng.random_range(0..6),
            scrolls: rng.random_range(0..3),
            ..Interactions::default()
        },
        screen: phone.screen,
        languages: vec!["zh-CN".into()],
        timezone: "Asia/Shanghai".into(),
        tz_offset_min: 480,
        touch: true,
        max_touch_points: 5,
        cores: phone.cores,
        device_flags: device_flags.iter().map(|f| f.to_string()).collect(),
        ..ClientReport::default()
    }
}

/// The headers a mini-program's `wx.request` sends besides the SDK's.
pub fn miniprogram_headers(phone: &Phone) -> Vec<(HeaderName, String)> {
    vec![
        (USER_AGENT, phone.user_agent.clone()),
        (ACCEPT, "*/*".into()),
        (ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9".into()),
        (ACCEPT_ENCODING, "gzip, deflate, br".into()),
        (
            REFERER,
            format!("https://servicewechat.com/{APP_ID}/27/page-frame.html"),
        ),
    ]
}

/// Desktop browsers' user agents, as scrapers and credential stuffers copy them.
pub const BROWSER_USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
];

/// An exponentially distributed pause with this mean (seconds), clamped.
pub fn pause_s(rng: &mut StdRng, mean_s: f64, min_s: f64, max_s: f64) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (-mean_s * u.ln()).clamp(min_s, max_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn residential_addresses_avoid_the_given_ranges() {
        let mut rng = StdRng::seed_from_u64(7);
        let avoid: Vec<IpNet> = RESIDENTIAL_FIRST_OCTETS
            .iter()
            .skip(1)
            .map(|o| format!("{o}.0.0.0/8").parse().expect("net"))
            .collect();
        for _ in 0..100 {
            let ip = residential_ip(&mut rng, &avoid);
            assert!(ip.to_string().starts_with("27."), "{ip}");
        }
    }

    #[test]
    fn same_seed_same_identities() {
        let a: Vec<String> = {
            let mut rng = StdRng::seed_from_u64(42);
            (0..5).map(|_| device_id(&mut rng)).collect()
        };
        let mut rng = StdRng::seed_from_u64(42);
        let b: Vec<String> = (0..5).map(|_| device_id(&mut rng)).collect();
        assert_eq!(a, b);
        assert_eq!(a[0].len(), 22);
    }

    #[test]
    fn phone_reports_are_clean_and_emulator_reports_are_not() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20 {
            let p = phone(&mut rng);
            let report = client_report(&p, &mut rng, &[]);
            let assessment = portcullis_challenge::assess(&report);
            assert_eq!(assessment.risk, 0, "{:?} {:?}", p.model, assessment.flags);
        }
        let report = client_report(&emulator(), &mut rng, &["emulator", "root"]);
        assert_eq!(portcullis_challenge::assess(&report).risk, 4);
    }

    #[test]
    fn host_in_a_network() {
        let net: IpNet = "47.96.0.0/11".parse().expect("net");
        assert_eq!(host_in(&net, 9).to_string(), "47.96.0.9");
    }

    #[test]
    fn pauses_are_clamped() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let p = pause_s(&mut rng, 3.0, 0.5, 15.0);
            assert!((0.5..=15.0).contains(&p));
        }
    }
}
