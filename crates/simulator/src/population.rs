//! The labelled populations and how each of their clients behaves: who it
//! is (address, device, accounts, software), what it asks for and at what
//! pace. One async task per client; each returns its own counts.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE, REFERER, USER_AGENT};
use http::{HeaderName, Method};
use ipnet::IpNet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::http::{Call, Gateway, RiskHeaderNames, Verdict, classify};
use crate::identity::{self, BROWSER_USER_AGENTS, Phone};
use crate::report::{Bands, PopulationReport};
use crate::sdk::{self, CheckOutcome, Clearance, DEVICE_HEADER};

/// A labelled population of clients.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Population {
    /// People on phones using the mini-program (the SDK, one device and
    /// one account each, residential addresses, human pace).
    Ordinary,
    /// A script on one datacenter /24 claiming coupons fast for many accounts.
    CouponFarm,
    /// A few real phones, each cycling through many accounts.
    DeviceFarm,
    /// The app in Android emulators (the app's checks report emulator and root).
    Emulator,
    /// Logins for many accounts from rotating addresses; most fail.
    CredentialStuffing,
    /// A slow scraper rotating residential addresses, no device, a
    /// browser's user agent without a browser's other headers.
    SlowScraper,
    /// The platform's review scanner of the incident report.
    ReviewScanner,
}

impl Population {
    pub const ALL: [Population; 7] = [
        Population::Ordinary,
        Population::CouponFarm,
        Population::DeviceFarm,
        Population::Emulator,
        Population::CredentialStuffing,
        Population::SlowScraper,
        Population::ReviewScanner,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Population::Ordinary => "ordinary",
            Population::CouponFarm => "coupon_farm",
            Population::DeviceFarm => "device_farm",
            Population::Emulator => "emulator",
            Population::CredentialStuffing => "credential_stuffing",
            Population::SlowScraper => "slow_scraper",
            Population::ReviewScanner => "review_scanner",
        }
    }

    pub fn abusive(self) -> bool {
        self != Population::Ordinary
    }

    /// Clients at scale 1.
    fn base_clients(self) -> f64 {
        match self {
            Population::Ordinary => 80.0,
            Population::CouponFarm => 4.0,
            Population::DeviceFarm => 3.0,
            Population::Emulator => 6.0,
            Population::CredentialStuffing => 3.0,
            Population::SlowScraper => 1.0,
            Population::ReviewScanner => 1.0,
        }
    }

    /// Clients at this scale; at least one.
    pub fn clients(self, scale: f64) -> usize {
        (self.base_clients() * scale).round().max(1.0) as usize
    }
}

/// Accounts each device of the farm cycles through.
const FARM_ACCOUNTS: usize = 50;
/// Accounts the coupon script holds.
const SCRIPT_ACCOUNTS: usize = 500;
/// A client whose check was refused waits this long before trying again.
const RECHECK_AFTER: Duration = Duration::from_secs(30);

/// What every client needs to know about the run.
pub struct Scene {
    pub gateway: Gateway,
    pub deadline: Instant,
    /// Clients start within this time of each other (app launches).
    pub start_spread: Duration,
    pub bands: Bands,
    pub risk_headers: RiskHeaderNames,
    /// The datacenter /24 the coupon script runs in.
    pub datacenter: IpNet,
    /// Ranges residential addresses stay out of (datacenters, the scanner).
    pub not_residential: Vec<IpNet>,
    pub scanner_ips: Vec<IpAddr>,
    pub scanner_user_agent: String,
    /// `identity.account_header`: the app names its account there.
    pub account_header: Option<HeaderName>,
    /// The run's seed (clients that share something derive it from here).
    pub seed: u64,
}

/// Runs one client of a population until the deadline.
pub async fn run_client(
    scene: &Scene,
    population: Population,
    index: usize,
    seed: u64,
) -> PopulationReport {
    let mut agent = Agent {
        scene,
        population,
        report: PopulationReport::new(population.name(), population.abusive()),
        rng: StdRng::seed_from_u64(client_seed(seed, population, index)),
    };
    agent.report.clients = 1;
    let spread = scene.start_spread.as_secs_f64();
    if spread > 0.0 {
        let wait = agent.rng.random_range(0.0..spread);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    match population {
        Population::Ordinary => ordinary(&mut agent).await,
        Population::CouponFarm => coupon_farm(&mut agent, index).await,
        Population::DeviceFarm => device_farm(&mut agent, index).await,
        Population::Emulator => emulator(&mut agent).await,
        Population::CredentialStuffing => credential_stuffing(&mut agent).await,
        Population::SlowScraper => slow_scraper(&mut agent).await,
        Population::ReviewScanner => review_scanner(&mut agent).await,
    }
    agent.report
}

fn client_seed(seed: u64, population: Population, index: usize) -> u64 {
    let p = Population::ALL
        .iter()
        .position(|x| *x == population)
        .unwrap_or(0) as u64;
    seed ^ (p << 48) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

struct Agent<'a> {
    scene: &'a Scene,
    population: Population,
    report: PopulationReport,
    rng: StdRng,
}

/// One request in the making.
struct Ask<'a> {
    method: Method,
    target: &'a str,
    ip: IpAddr,
    headers: Vec<(HeaderName, String)>,
    body: Bytes,
}

impl Ask<'_> {
    fn json(method: Method, target: &str, ip: IpAddr, body: serde_json::Value) -> Ask<'_> {
        Ask {
            method,
            target,
            ip,
            headers: vec![(CONTENT_TYPE, "application/json".into())],
            body: Bytes::from(body.to_string()),
        }
    }

    fn get(target: &str, ip: IpAddr) -> Ask<'_> {
        Ask {
            method: Method::GET,
            target,
            ip,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
}

impl Agent<'_> {
    fn alive(&self) -> bool {
        Instant::now() < self.scene.deadline
    }

    /// Sleeps a random pause (never past the deadline); false once it passed.
    async fn pause(&mut self, mean_s: f64, min_s: f64, max_s: f64) -> bool {
        let pause = Duration::from_secs_f64(identity::pause_s(&mut self.rng, mean_s, min_s, max_s));
        let left = self
            .scene
            .deadline
            .saturating_duration_since(Instant::now());
        tokio::time::sleep(pause.min(left)).await;
        self.alive()
    }

    async fn send(&mut self, ask: &Ask<'_>) -> Verdict {
        let call = Call {
            method: ask.method.clone(),
            target: ask.target,
            client_ip: ask.ip,
            headers: &ask.headers,
            body: ask.body.clone(),
            population: self.population.name(),
        };
        let verdict = match self.scene.gateway.send(&call).await {
            Ok(answer) => classify(&answer, &self.scene.risk_headers),
            Err(error) => Verdict::Failed { error },
        };
        self.report.record(&verdict, self.scene.bands);
        verdict
    }

    fn account_header(&self, headers: &mut Vec<(HeaderName, String)>, account: &str) {
        if let Some(name) = &self.scene.account_header {
            headers.push((name.clone(), account.to_string()));
        }
    }

    fn residential(&mut self) -> IpAddr {
        identity::residential_ip(&mut self.rng, &self.scene.not_residential)
    }
}

/// The app on one phone, with the SDK.
struct App {
    phone: Phone,
    device: String,
    ip: IpAddr,
    device_flags: &'static [&'static str],
    clearance: Option<Clearance>,
    /// No new check before this instant (after a refusal).
    recheck_at: Option<Instant>,
}

impl App {
    fn new(agent: &mut Agent<'_>, phone: Phone, ip: IpAddr, flags: &'static [&'static str]) -> App {
        App {
            phone,
            device: identity::device_id(&mut agent.rng),
            ip,
            device_flags: flags,
            clearance: None,
            recheck_at: None,
        }
    }
}

impl Agent<'_> {
    /// `getClearance()`: the silent check, counted in the report.
    async fn clear(&mut self, app: &mut App) {
        if app.recheck_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let headers = identity::miniprogram_headers(&app.phone);
        let client = sdk::Client {
            gateway: &self.scene.gateway,
            population: self.population.name(),
            ip: app.ip,
            device: &app.device,
            headers: &headers,
        };
        let report = identity::client_report(&app.phone, &mut self.rng, app.device_flags);
        let counts = &mut self.report.clearances;
        app.clearance = match sdk::check(&client, report, &mut self.rng).await {
            CheckOutcome::Cleared(clearance) => {
                counts.obtained += 1;
                counts.risk_at_issue[usize::from(clearance.risk.min(4))] += 1;
                app.recheck_at = None;
                Some(clearance)
            }
            CheckOutcome::Refused(code) => {
                counts.refused += 1;
                tracing::debug!(population = self.population.name(), code, "check refused");
                app.recheck_at = Some(Instant::now() + RECHECK_AFTER);
                None
            }
            CheckOutcome::Unavailable(why) => {
                counts.unavailable += 1;
                tracing::debug!(
                    population = self.population.name(),
                    why,
                    "check unavailable"
                );
                app.recheck_at = Some(Instant::now() + RECHECK_AFTER);
                None
            }
        };
    }

    /// A request from the app: its headers, the SDK's device id and
    /// signature; a challenge runs the check again and retries once.
    async fn app_request(&mut self, app: &mut App, mut ask: Ask<'_>, account: &str) -> Verdict {
        let mut base = identity::miniprogram_headers(&app.phone);
        base.push((DEVICE_HEADER, app.device.clone()));
        self.account_header(&mut base, account);
        base.append(&mut ask.headers);
        let mut retried = false;
        loop {
            ask.headers = base.clone();
            if let Some(clearance) = &app.clearance {
                let signed =
                    clearance.sign(ask.method.as_str(), ask.target, &ask.body, &mut self.rng);
                ask.headers.extend(signed);
            }
            let verdict = self.send(&ask).await;
            let Verdict::Challenged { .. } = &verdict else {
                return verdict;
            };
            if retried {
                return verdict;
            }
            retried = true;
            app.clearance = None;
            self.clear(app).await;
            if app.clearance.is_none() {
                return verdict;
            }
        }
    }
}

/// The ordinary user's session: launch (silent check), log in, then browse
/// at a human pace, add to the cart, claim the campaign's coupon once.
async fn ordinary(agent: &mut Agent<'_>) {
    let phone = identity::phone(&mut agent.rng);
    let ip = agent.residential();
    let mut app = App::new(agent, phone, ip, &[]);
    let account = identity::account(&mut agent.rng);
    agent.clear(&mut app).await;
    let login = serde_json::json!({"account": account, "password": format!("pw-{account}")});
    agent
        .app_request(
            &mut app,
            Ask::json(Method::POST, "/api/login", ip, login),
            &account,
        )
        .await;
    let mut claimed = false;
    let mut page = 1;
    while agent.pause(3.0, 0.8, 20.0).await {
        let roll = agent.rng.random_range(0..100);
        let item = agent.rng.random_range(1..5_000);
        let target;
        let ask = match roll {
            0..40 => {
                page += 1;
                target = format!("/api/feed?page={page}");
                Ask::get(&target, ip)
            }
            40..75 => {
                target = format!("/api/items/{item}");
                Ask::get(&target, ip)
            }
            75..92 => {
                let body = serde_json::json!({"item": item, "qty": 1});
                Ask::json(Method::POST, "/api/cart/add", ip, body)
            }
            _ if !claimed => {
                claimed = true;
                let body = serde_json::json!({"campaign": "spring", "account": account});
                Ask::json(Method::POST, "/api/coupon/claim", ip, body)
            }
            _ => Ask::get("/api/coupon/mine", ip),
        };
        agent.app_request(&mut app, ask, &account).await;
    }
}

/// Coupon farming from one datacenter /24: `python-requests`, no device,
/// a different account on every call, as fast as the script goes.
async fn coupon_farm(agent: &mut Agent<'_>, index: usize) {
    let ip = identity::host_in(&agent.scene.datacenter, 10 + (index % 200) as u8);
    let accounts: Vec<String> = (0..SCRIPT_ACCOUNTS)
        .map(|_| identity::account(&mut agent.rng))
        .collect();
    while agent.alive() {
        let account = &accounts[agent.rng.random_range(0..accounts.len())];
        let body = serde_json::json!({"campaign": "spring", "account": account});
        let mut ask = Ask::json(Method::POST, "/api/coupon/claim", ip, body);
        ask.headers.extend([
            (USER_AGENT, "python-requests/2.31.0".to_string()),
            (ACCEPT, "*/*".to_string()),
            (ACCEPT_ENCODING, "gzip, deflate".to_string()),
        ]);
        agent.account_header(&mut ask.headers, account);
        agent.send(&ask).await;
        if !agent.pause(0.4, 0.05, 2.0).await {
            break;
        }
    }
}

/// One phone of a device farm: a real device (clean SDK report) behind the
/// farm's home line, logging in account after account to claim and sign in.
async fn device_farm(agent: &mut Agent<'_>, index: usize) {
    // The farm's phones share one residential /24.
    let mut farm_rng = StdRng::seed_from_u64(client_seed(
        agent.scene.seed,
        Population::DeviceFarm,
        usize::MAX,
    ));
    let line = identity::residential_ip(&mut farm_rng, &agent.scene.not_residential);
    let ip = match line {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 20 + (index % 200) as u8])
        }
        v6 => v6,
    };
    let phone = identity::phone(&mut agent.rng);
    let mut app = App::new(agent, phone, ip, &[]);
    let accounts: Vec<String> = (0..FARM_ACCOUNTS)
        .map(|_| identity::account(&mut agent.rng))
        .collect();
    agent.clear(&mut app).await;
    let mut turn = 0usize;
    while agent.alive() {
        let account = accounts[turn % accounts.len()].clone();
        turn += 1;
        let login = serde_json::json!({"account": account, "password": format!("pw-{account}")});
        let claim = serde_json::json!({"campaign": "spring", "account": account});
        let steps = [
            ("/api/login", login),
            ("/api/coupon/claim", claim),
            ("/api/signin", serde_json::json!({"account": account})),
        ];
        for (target, body) in steps {
            agent
                .app_request(
                    &mut app,
                    Ask::json(Method::POST, target, ip, body),
                    &account,
                )
                .await;
            if !agent.pause(0.7, 0.2, 3.0).await {
                return;
            }
        }
    }
}

/// The app in an emulator: the SDK's report carries the app's own checks
/// (emulator, root); a few accounts each.
async fn emulator(agent: &mut Agent<'_>) {
    let ip = agent.residential();
    let mut app = App::new(agent, identity::emulator(), ip, &["emulator", "root"]);
    let accounts: Vec<String> = (0..3).map(|_| identity::account(&mut agent.rng)).collect();
    agent.clear(&mut app).await;
    let mut turn = 0usize;
    while agent.pause(1.5, 0.3, 6.0).await {
        let account = accounts[turn % accounts.len()].clone();
        turn += 1;
        let ask = if turn.is_multiple_of(3) {
            Ask::get("/api/feed?page=1", ip)
        } else {
            let body = serde_json::json!({"campaign": "spring", "account": account});
            Ask::json(Method::POST, "/api/coupon/claim", ip, body)
        };
        agent.app_request(&mut app, ask, &account).await;
    }
}

/// Leaked passwords tried for many accounts, each call from a new address.
async fn credential_stuffing(agent: &mut Agent<'_>) {
    const PASSWORDS: [&str; 6] = [
        "123456",
        "password",
        "qwerty123",
        "111111",
        "a123456",
        "iloveyou",
    ];
    while agent.alive() {
        let ip = agent.residential();
        let account = identity::account(&mut agent.rng);
        // A leaked pair is right now and then.
        let password = if agent.rng.random_bool(0.02) {
            format!("pw-{account}")
        } else {
            PASSWORDS[agent.rng.random_range(0..PASSWORDS.len())].to_string()
        };
        let body = serde_json::json!({"account": account, "password": password});
        let mut ask = Ask::json(Method::POST, "/api/login", ip, body);
        let ua = BROWSER_USER_AGENTS[agent.rng.random_range(0..BROWSER_USER_AGENTS.len())];
        ask.headers.extend([
            (USER_AGENT, ua.to_string()),
            (ACCEPT, "application/json".to_string()),
        ]);
        agent.send(&ask).await;
        if !agent.pause(0.5, 0.1, 2.0).await {
            break;
        }
    }
}

/// Item pages in order, slowly, a new residential address every few calls,
/// a browser's user agent without the headers a browser sends with it.
async fn slow_scraper(agent: &mut Agent<'_>) {
    let mut item: u32 = agent.rng.random_range(1..1_000);
    let mut ip = agent.residential();
    let mut left_on_ip = 0;
    let ua = BROWSER_USER_AGENTS[0];
    while agent.alive() {
        if left_on_ip == 0 {
            ip = agent.residential();
            left_on_ip = agent.rng.random_range(2..=3);
        }
        left_on_ip -= 1;
        item += 1;
        let target = if item.is_multiple_of(5) {
            format!("/api/items?page={}", item / 5)
        } else {
            format!("/api/items/{item}")
        };
        let mut ask = Ask::get(&target, ip);
        ask.headers
            .extend([(USER_AGENT, ua.to_string()), (ACCEPT, "*/*".to_string())]);
        agent.send(&ask).await;
        if !agent.pause(1.5, 0.8, 4.0).await {
            break;
        }
    }
}

/// The review scanner's probes: the incident's requests (SQL-injection-like
/// query strings, malformed UTF-8) and the business routes it exercises.
pub const SCANNER_PROBES: [(&str, &str, Option<&str>); 8] = [
    (
        "GET",
        "/open/v3/live/record?action=eval&live_id=undefined%bf%27%bf'%27%22'%22%5C%0d%0a",
        None,
    ),
    (
        "GET",
        "/open/v3/live/record?action=eval&live_id=undefined%27%29%29%20AND%20(SELECT*FROM(SELECT(SLEEP(4)))coce)%20limit%201%23",
        None,
    ),
    ("GET", "/api/items/2", None),
    ("GET", "/api/items/1?id=1%27%20AND%20SLEEP(4)%23", None),
    ("GET", "/api/feed?page=1%27%22", None),
    (
        "POST",
        "/api/coupon/claim",
        Some(r#"{"campaign":"spring' OR '1'='1"}"#),
    ),
    (
        "POST",
        "/api/login",
        Some(r#"{"account":"admin","password":"' OR 1=1--"}"#),
    ),
    ("GET", "/api/user/profile?uid=..%2F..%2Fetc%2Fpasswd", None),
];

/// Low-rate scanning from the scanner's four addresses with its header.
async fn review_scanner(agent: &mut Agent<'_>) {
    let ips = agent.scene.scanner_ips.clone();
    if ips.is_empty() {
        return;
    }
    let mut turn = 0usize;
    while agent.alive() {
        let (method, target, body) = SCANNER_PROBES[turn % SCANNER_PROBES.len()];
        let ip = ips[turn % ips.len()];
        turn += 1;
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let mut ask = match body {
            Some(body) => Ask {
                method,
                target,
                ip,
                headers: vec![(CONTENT_TYPE, "application/json".into())],
                body: Bytes::from_static(body.as_bytes()),
            },
            None => Ask::get(target, ip),
        };
        ask.headers.extend([
            (USER_AGENT, agent.scene.scanner_user_agent.clone()),
            (
                REFERER,
                format!(
                    "https://servicewechat.com/{}/0/page-frame.html",
                    identity::APP_ID
                ),
            ),
        ]);
        agent.send(&ask).await;
        if !agent.pause(2.0, 1.0, 5.0).await {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_probes_are_valid_request_targets() {
        for (method, target, _) in SCANNER_PROBES {
            assert!(Method::from_bytes(method.as_bytes()).is_ok());
            assert!(
                format!("http://127.0.0.1:1{target}")
                    .parse::<http::Uri>()
                    .is_ok(),
                "{target}"
            );
        }
    }

    #[test]
    fn population_sizes_scale_and_never_vanish() {
        assert_eq!(Population::Ordinary.clients(1.0), 80);
        assert_eq!(Population::Ordinary.clients(0.05), 4);
        assert_eq!(Population::SlowScraper.clients(0.1), 1);
        assert_eq!(Population::DeviceFarm.clients(1.0), 3);
    }

    #[test]
    fn client_seeds_differ_by_population_and_index() {
        let seeds: std::collections::HashSet<u64> = Population::ALL
            .iter()
            .flat_map(|p| (0..10).map(move |i| client_seed(1, *p, i)))
            .collect();
        assert_eq!(seeds.len(), 70);
    }

    #[test]
    fn names_are_unique_and_only_ordinary_is_benign() {
        let names: std::collections::HashSet<_> =
            Population::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), Population::ALL.len());
        assert_eq!(Population::ALL.iter().filter(|p| !p.abusive()).count(), 1);
    }
}
