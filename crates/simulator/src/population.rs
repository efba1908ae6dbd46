//! The labelled populations and how each of their clients behaves: who it
//! is (address, device, accounts, software), what it asks for and at what
//! pace. One async task per client; each returns its own counts.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, CONTENT_TYPE, COOKIE, REFERER, USER_AGENT,
};
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
    /// Students on phones behind one campus NAT address.
    CampusNat,
    /// Phones on a carrier-grade NAT whose public address moves between
    /// /24s (and now and then to another /16 of the carrier) within a session.
    CarrierNat,
    /// Phones switching between home Wi-Fi and the mobile network.
    WifiMobile,
    /// Phones shared by two family accounts.
    FamilyShared,
    /// New installs arriving through the run: a new device, a sign-up.
    FreshInstall,
    /// Users whose app is killed and relaunched (a new check each time).
    AppRestart,
    /// Power users scrolling in bursts.
    PowerUser,
    /// Browser users of the web site, without the SDK.
    WebUser,
    /// Phones whose signed requests someone captures and replays.
    ReplayVictim,
    /// A protocol-complete coupon bot: it solves the check and signs, with a
    /// new address every request, a new device every 3, a new account every claim.
    CouponBot,
    /// One device logging into a new account every 3 s.
    AccountTakeover,
    /// One clearance (token, key, device id) shared by 20 scripts on other networks.
    SharedClearance,
    /// Captured signed requests replayed from other networks.
    Replay,
    /// A quiet scraper on a hosting range that no list names.
    QuietScraper,
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
    pub const ALL: [Population; 21] = [
        Population::Ordinary,
        Population::CampusNat,
        Population::CarrierNat,
        Population::WifiMobile,
        Population::FamilyShared,
        Population::FreshInstall,
        Population::AppRestart,
        Population::PowerUser,
        Population::WebUser,
        Population::ReplayVictim,
        Population::CouponBot,
        Population::AccountTakeover,
        Population::SharedClearance,
        Population::Replay,
        Population::QuietScraper,
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
            Population::CampusNat => "campus_nat",
            Population::CarrierNat => "carrier_nat",
            Population::WifiMobile => "wifi_mobile",
            Population::FamilyShared => "family_shared",
            Population::FreshInstall => "fresh_install",
            Population::AppRestart => "app_restart",
            Population::PowerUser => "power_user",
            Population::WebUser => "web_user",
            Population::ReplayVictim => "replay_victim",
            Population::CouponBot => "coupon_bot",
            Population::AccountTakeover => "account_takeover",
            Population::SharedClearance => "shared_clearance",
            Population::Replay => "replay",
            Population::QuietScraper => "quiet_scraper",
            Population::CouponFarm => "coupon_farm",
            Population::DeviceFarm => "device_farm",
            Population::Emulator => "emulator",
            Population::CredentialStuffing => "credential_stuffing",
            Population::SlowScraper => "slow_scraper",
            Population::ReviewScanner => "review_scanner",
        }
    }

    pub fn abusive(self) -> bool {
        !matches!(
            self,
            Population::Ordinary
                | Population::CampusNat
                | Population::CarrierNat
                | Population::WifiMobile
                | Population::FamilyShared
                | Population::FreshInstall
                | Population::AppRestart
                | Population::PowerUser
                | Population::WebUser
                | Population::ReplayVictim
        )
    }

    /// Clients at scale 1.
    fn base_clients(self) -> f64 {
        match self {
            Population::Ordinary => 40.0,
            Population::CampusNat => 150.0,
            Population::CarrierNat => 60.0,
            Population::WifiMobile => 30.0,
            Population::FamilyShared => 30.0,
            Population::FreshInstall => 30.0,
            Population::AppRestart => 30.0,
            Population::PowerUser => 20.0,
            Population::WebUser => 30.0,
            Population::ReplayVictim => 4.0,
            Population::CouponBot => 4.0,
            Population::AccountTakeover => 2.0,
            Population::SharedClearance => 1.0,
            Population::Replay => 4.0,
            Population::QuietScraper => 2.0,
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
/// A check that got no answer (the network, a gateway restarting) is tried
/// again this soon, as the SDK retries a failed `getClearance()`.
const RETRY_UNANSWERED_AFTER: Duration = Duration::from_secs(2);

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
    /// Signed requests the replay victims leaked, for the replayers.
    pub captured: std::sync::Mutex<Vec<Captured>>,
}

/// A signed request as a client sent it (the replayers' loot).
#[derive(Debug, Clone)]
pub struct Captured {
    method: Method,
    target: String,
    headers: Vec<(HeaderName, String)>,
    body: Bytes,
}

/// Captured requests kept for the replayers.
const MAX_CAPTURED: usize = 256;

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
        Population::Ordinary => {
            let ip = agent.residential();
            phone_session(&mut agent, Habits::at(Mobility::Fixed(ip))).await;
        }
        Population::CampusNat => {
            let ip = shared_address(&mut agent);
            phone_session(&mut agent, Habits::at(Mobility::Fixed(ip))).await;
        }
        Population::CarrierNat => {
            let mobility = carrier(&mut agent);
            phone_session(&mut agent, Habits::at(mobility)).await;
        }
        Population::WifiMobile => {
            let home = agent.residential();
            let Mobility::Carrier { blocks, .. } = carrier(&mut agent) else {
                return agent.report;
            };
            let mobility = Mobility::WifiMobile { home, blocks };
            phone_session(&mut agent, Habits::at(mobility)).await;
        }
        Population::FamilyShared => {
            let ip = agent.residential();
            let habits = Habits {
                accounts: 2,
                ..Habits::at(Mobility::Fixed(ip))
            };
            phone_session(&mut agent, habits).await;
        }
        Population::FreshInstall => {
            // Installs arrive through the first half of the run.
            let left = agent
                .scene
                .deadline
                .saturating_duration_since(Instant::now());
            let wait = agent.rng.random_range(0.0..left.as_secs_f64() / 2.0);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            let ip = agent.residential();
            let habits = Habits {
                signup: true,
                ..Habits::at(Mobility::Fixed(ip))
            };
            phone_session(&mut agent, habits).await;
        }
        Population::AppRestart => {
            let ip = agent.residential();
            let habits = Habits {
                relaunch_every_s: Some(20.0),
                ..Habits::at(Mobility::Fixed(ip))
            };
            phone_session(&mut agent, habits).await;
        }
        Population::PowerUser => {
            let ip = agent.residential();
            let habits = Habits {
                bursts: true,
                ..Habits::at(Mobility::Fixed(ip))
            };
            phone_session(&mut agent, habits).await;
        }
        Population::WebUser => web_user(&mut agent).await,
        Population::ReplayVictim => {
            let ip = agent.residential();
            let habits = Habits {
                leak_to: Some(index),
                ..Habits::at(Mobility::Fixed(ip))
            };
            phone_session(&mut agent, habits).await;
        }
        Population::CouponBot => coupon_bot(&mut agent).await,
        Population::AccountTakeover => account_takeover(&mut agent).await,
        Population::SharedClearance => shared_clearance(&mut agent).await,
        Population::Replay => replay(&mut agent, index).await,
        Population::QuietScraper => quiet_scraper(&mut agent, index).await,
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

    fn capture(&self, ask: &Ask<'_>) {
        let mut captured = self
            .scene
            .captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if captured.len() < MAX_CAPTURED {
            captured.push(Captured {
                method: ask.method.clone(),
                target: ask.target.to_string(),
                headers: ask.headers.clone(),
                body: ask.body.clone(),
            });
        }
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
                self.report.check_refused(&code);
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
                app.recheck_at = Some(Instant::now() + RETRY_UNANSWERED_AFTER);
                None
            }
        };
    }

    async fn app_request(&mut self, app: &mut App, ask: Ask<'_>, account: &str) -> Verdict {
        self.app_request_leaking(app, ask, account, false).await
    }

    /// A request of a script that speaks the protocol but never re-runs the
    /// check (its device is thrown away anyway).
    async fn app_request_once(
        &mut self,
        app: &mut App,
        mut ask: Ask<'_>,
        account: &str,
    ) -> Verdict {
        let mut headers = identity::miniprogram_headers(&app.phone);
        headers.push((DEVICE_HEADER, app.device.clone()));
        self.account_header(&mut headers, account);
        headers.append(&mut ask.headers);
        if let Some(clearance) = &app.clearance {
            headers.extend(clearance.sign(
                ask.method.as_str(),
                ask.target,
                &ask.body,
                &mut self.rng,
            ));
        }
        ask.headers = headers;
        self.send(&ask).await
    }

    /// A request from the app: its headers, the SDK's device id and
    /// signature; a challenge runs the check again and retries once.
    /// `leak`: the signed request is also captured for the replayers.
    async fn app_request_leaking(
        &mut self,
        app: &mut App,
        mut ask: Ask<'_>,
        account: &str,
        leak: bool,
    ) -> Verdict {
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
            if leak && app.clearance.is_some() {
                self.capture(&ask);
            }
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

/// Where a phone's requests come from over its session.
#[derive(Debug, Clone)]
enum Mobility {
    /// One address (home line, or a NAT shared with others).
    Fixed(IpAddr),
    /// A carrier's NAT pool: a few /16s; the public address moves to
    /// another /24 now and then, rarely to another /16 of the pool.
    Carrier { blocks: Vec<[u8; 2]>, at: usize },
    /// Home Wi-Fi, and the carrier's network when out.
    WifiMobile { home: IpAddr, blocks: Vec<[u8; 2]> },
}

/// How a phone's user behaves beyond the ordinary session.
#[derive(Debug, Clone)]
struct Habits {
    mobility: Mobility,
    /// Accounts used on the phone (a family shares it).
    accounts: usize,
    /// The session starts with a sign-up (a fresh install).
    signup: bool,
    /// The app is killed and relaunched about this often (a new check).
    relaunch_every_s: Option<f64>,
    /// Scrolls in bursts of quick calls.
    bursts: bool,
    /// Some of the signed calls are captured for this replayer.
    leak_to: Option<usize>,
}

impl Habits {
    fn at(mobility: Mobility) -> Habits {
        Habits {
            mobility,
            accounts: 1,
            signup: false,
            relaunch_every_s: None,
            bursts: false,
            leak_to: None,
        }
    }
}

/// One address shared by every client of the population (the campus NAT).
fn shared_address(agent: &mut Agent<'_>) -> IpAddr {
    let mut rng =
        StdRng::seed_from_u64(client_seed(agent.scene.seed, agent.population, usize::MAX));
    identity::residential_ip(&mut rng, &agent.scene.not_residential)
}

/// A carrier pool of three /16s shared by the population.
fn carrier(agent: &mut Agent<'_>) -> Mobility {
    let mut rng = StdRng::seed_from_u64(client_seed(
        agent.scene.seed,
        Population::CarrierNat,
        usize::MAX,
    ));
    let blocks = (0..3)
        .map(
            |_| match identity::residential_ip(&mut rng, &agent.scene.not_residential) {
                IpAddr::V4(v4) => {
                    let [a, b, _, _] = v4.octets();
                    [a, b]
                }
                IpAddr::V6(_) => [10, 0],
            },
        )
        .collect();
    let at = agent.rng.random_range(0..3);
    Mobility::Carrier { blocks, at }
}

impl Mobility {
    /// The address of the next request.
    fn next(&mut self, rng: &mut StdRng, current: IpAddr) -> IpAddr {
        let in_block = |rng: &mut StdRng, [a, b]: [u8; 2]| {
            IpAddr::from([a, b, rng.random(), rng.random_range(2..=254)])
        };
        match self {
            Mobility::Fixed(ip) => *ip,
            Mobility::Carrier { blocks, at } => {
                if rng.random_bool(0.03) {
                    *at = rng.random_range(0..blocks.len());
                } else if !rng.random_bool(0.3) {
                    return current;
                }
                in_block(rng, blocks[*at])
            }
            Mobility::WifiMobile { home, blocks } => {
                let on_wifi = current == *home;
                if !rng.random_bool(0.05) {
                    return current;
                }
                if on_wifi {
                    in_block(rng, blocks[0])
                } else {
                    *home
                }
            }
        }
    }

    fn first(&mut self, rng: &mut StdRng) -> IpAddr {
        match self {
            Mobility::Fixed(ip) | Mobility::WifiMobile { home: ip, .. } => *ip,
            Mobility::Carrier { blocks, at } => {
                let [a, b] = blocks[*at];
                IpAddr::from([a, b, rng.random(), rng.random_range(2..=254)])
            }
        }
    }
}

/// A phone user's session with the SDK under some habits: launch (the
/// silent check), log in or sign up, then browse, add to the cart, claim
/// the campaign's coupon once per account.
async fn phone_session(agent: &mut Agent<'_>, mut habits: Habits) {
    let phone = identity::phone(&mut agent.rng);
    let mut ip = habits.mobility.first(&mut agent.rng);
    let mut app = App::new(agent, phone, ip, &[]);
    let accounts: Vec<String> = (0..habits.accounts.max(1))
        .map(|_| identity::account(&mut agent.rng))
        .collect();
    let mut account = accounts[0].clone();
    agent.clear(&mut app).await;
    let (target, body) = if habits.signup {
        (
            "/api/signup",
            serde_json::json!({"account": account, "password": format!("pw-{account}")}),
        )
    } else {
        (
            "/api/login",
            serde_json::json!({"account": account, "password": format!("pw-{account}")}),
        )
    };
    agent
        .app_request(
            &mut app,
            Ask::json(Method::POST, target, ip, body),
            &account,
        )
        .await;
    let mut claimed = std::collections::HashSet::new();
    let mut page = 1;
    let mut launched = Instant::now();
    let mut burst_left = 0u32;
    loop {
        let alive = if burst_left > 0 {
            burst_left -= 1;
            agent.pause(0.3, 0.15, 0.8).await
        } else {
            if habits.bursts && agent.rng.random_bool(0.3) {
                burst_left = agent.rng.random_range(5..15);
            }
            agent.pause(3.0, 0.8, 20.0).await
        };
        if !alive {
            return;
        }
        if let Some(every) = habits.relaunch_every_s
            && launched.elapsed().as_secs_f64() > every
        {
            launched = Instant::now();
            app.clearance = None;
            agent.clear(&mut app).await;
        }
        ip = habits.mobility.next(&mut agent.rng, ip);
        app.ip = ip;
        if accounts.len() > 1 && agent.rng.random_bool(0.1) {
            account = accounts[agent.rng.random_range(0..accounts.len())].clone();
        }
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
            _ if claimed.insert(account.clone()) => {
                let body = serde_json::json!({"campaign": "spring", "account": account});
                Ask::json(Method::POST, "/api/coupon/claim", ip, body)
            }
            _ => Ask::get("/api/coupon/mine", ip),
        };
        let leak = habits.leak_to.is_some() && agent.rng.random_bool(0.3);
        agent
            .app_request_leaking(&mut app, ask, &account, leak)
            .await;
    }
}

/// A browser on the web site, without the SDK: a browser's headers and a
/// session cookie, no device id, no clearance, no signature.
async fn web_user(agent: &mut Agent<'_>) {
    let ip = agent.residential();
    let ua = BROWSER_USER_AGENTS[agent.rng.random_range(0..BROWSER_USER_AGENTS.len())];
    let session = identity::nonce(&mut agent.rng);
    let mut page = 1;
    while agent.pause(4.0, 1.0, 20.0).await {
        let item = agent.rng.random_range(1..5_000);
        let target = if agent.rng.random_bool(0.5) {
            page += 1;
            format!("/api/feed?page={page}")
        } else {
            format!("/api/items/{item}")
        };
        let mut ask = Ask::get(&target, ip);
        ask.headers.extend([
            (USER_AGENT, ua.to_string()),
            (ACCEPT, "application/json, text/plain, */*".to_string()),
            (ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9,en;q=0.8".to_string()),
            (ACCEPT_ENCODING, "gzip, deflate, br".to_string()),
            (REFERER, "https://shop.example.com/items".to_string()),
            (COOKIE, format!("sid={session}")),
            (
                HeaderName::from_static("sec-fetch-mode"),
                "cors".to_string(),
            ),
            (
                HeaderName::from_static("sec-fetch-site"),
                "same-origin".to_string(),
            ),
            (
                HeaderName::from_static("sec-fetch-dest"),
                "empty".to_string(),
            ),
        ]);
        agent.send(&ask).await;
    }
}

/// The protocol-complete coupon bot: a new residential address on every
/// request, a new device (with a solved check, the same fake phone's
/// report every time) every 3 requests, a new account on every claim.
async fn coupon_bot(agent: &mut Agent<'_>) {
    let phone = identity::phone(&mut agent.rng);
    while agent.alive() {
        let ip = agent.residential();
        let mut app = App::new(agent, phone.clone(), ip, &[]);
        agent.clear(&mut app).await;
        if app.clearance.is_none() {
            if !agent.pause(0.5, 0.1, 1.0).await {
                return;
            }
            continue;
        }
        for _ in 0..3 {
            let ip = agent.residential();
            app.ip = ip;
            let account = identity::account(&mut agent.rng);
            let body = serde_json::json!({"campaign": "spring", "account": account});
            let ask = Ask::json(Method::POST, "/api/coupon/claim", ip, body);
            agent.app_request_once(&mut app, ask, &account).await;
            if !agent.pause(0.05, 0.01, 0.2).await {
                return;
            }
        }
    }
}

/// One device trying a new account every 3 seconds.
async fn account_takeover(agent: &mut Agent<'_>) {
    let phone = identity::phone(&mut agent.rng);
    let ip = agent.residential();
    let mut app = App::new(agent, phone, ip, &[]);
    agent.clear(&mut app).await;
    while agent.alive() {
        let account = identity::account(&mut agent.rng);
        let body = serde_json::json!({"account": account, "password": format!("pw-{account}")});
        let ask = Ask::json(Method::POST, "/api/login", ip, body);
        agent.app_request(&mut app, ask, &account).await;
        if !agent.pause(3.0, 2.5, 3.5).await {
            return;
        }
    }
}

/// One clearance, bought once, used by 20 scripts on other networks.
async fn shared_clearance(agent: &mut Agent<'_>) {
    let phone = identity::phone(&mut agent.rng);
    let ip = agent.residential();
    let mut app = App::new(agent, phone, ip, &[]);
    agent.clear(&mut app).await;
    let account = identity::account(&mut agent.rng);
    let mut scripts: Vec<(IpAddr, Instant)> = (0..20)
        .map(|_| (agent.residential(), Instant::now()))
        .collect();
    while agent.alive() {
        // The script whose turn comes first.
        let Some(next) = scripts.iter_mut().min_by_key(|(_, at)| *at) else {
            return;
        };
        let wait = next.1.saturating_duration_since(Instant::now());
        tokio::time::sleep(wait).await;
        let ip = next.0;
        next.1 = Instant::now() + Duration::from_secs_f64(agent.rng.random_range(1.0..3.0));
        app.ip = ip;
        let item = agent.rng.random_range(1..5_000);
        let target = format!("/api/items/{item}");
        agent
            .app_request_once(&mut app, Ask::get(&target, ip), &account)
            .await;
    }
}

/// Replays of signed requests the victims leaked, each from another network.
async fn replay(agent: &mut Agent<'_>, index: usize) {
    while agent.pause(1.0, 0.3, 3.0).await {
        let loot = {
            let captured = agent
                .scene
                .captured
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if captured.is_empty() {
                None
            } else {
                let pick = (index + agent.rng.random_range(0..captured.len())) % captured.len();
                Some(captured[pick].clone())
            }
        };
        let Some(loot) = loot else { continue };
        let ask = Ask {
            method: loot.method,
            target: &loot.target,
            ip: agent.residential(),
            headers: loot.headers,
            body: loot.body,
        };
        agent.send(&ask).await;
    }
}

/// A quiet scraper on a hosting range no list names: a few hosts of one
/// /24, a browser's user agent, item pages in order at a slow pace.
async fn quiet_scraper(agent: &mut Agent<'_>, index: usize) {
    // A hosting provider's range (not in the simulated datacenter lists).
    let hosts: Vec<IpAddr> = (0..4u8)
        .map(|h| IpAddr::from([154, 38, 160 + (index % 50) as u8, 10 + h]))
        .collect();
    let ua = BROWSER_USER_AGENTS[index % BROWSER_USER_AGENTS.len()];
    let mut item: u32 = agent.rng.random_range(1..1_000);
    let mut turn = 0usize;
    while agent.alive() {
        item += 1;
        turn += 1;
        let target = format!("/api/items/{item}");
        let mut ask = Ask::get(&target, hosts[turn % hosts.len()]);
        // A copied user agent; the rest of a browser's headers are not copied.
        ask.headers.extend([
            (USER_AGENT, ua.to_string()),
            (ACCEPT, "*/*".to_string()),
            (ACCEPT_ENCODING, "gzip, deflate".to_string()),
        ]);
        agent.send(&ask).await;
        if !agent.pause(3.0, 1.5, 6.0).await {
            break;
        }
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
        assert_eq!(Population::Ordinary.clients(1.0), 40);
        assert_eq!(Population::Ordinary.clients(0.05), 2);
        assert_eq!(Population::SlowScraper.clients(0.1), 1);
        assert_eq!(Population::DeviceFarm.clients(1.0), 3);
    }

    #[test]
    fn client_seeds_differ_by_population_and_index() {
        let seeds: std::collections::HashSet<u64> = Population::ALL
            .iter()
            .flat_map(|p| (0..10).map(move |i| client_seed(1, *p, i)))
            .collect();
        assert_eq!(seeds.len(), 10 * Population::ALL.len());
    }

    #[test]
    fn names_are_unique_and_only_ordinary_is_benign() {
        let names: std::collections::HashSet<_> =
            Population::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), Population::ALL.len());
        assert_eq!(Population::ALL.iter().filter(|p| !p.abusive()).count(), 10);
    }
}
