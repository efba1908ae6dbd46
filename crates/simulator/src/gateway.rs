//! The gateway under test: the settings the simulator reads from the config
//! template, the config it writes for a gateway it starts, and that gateway
//! as a child process.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use portcullis_config::Config;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::SimError;
use crate::http::RiskHeaderNames;
use crate::report::Bands;

/// Where the coupon script runs when the config names no datacenter range
/// (an Alibaba Cloud range).
const FALLBACK_DATACENTER: &str = "47.96.0.0/24";
/// The line `portcullis run` prints once it listens.
const LISTENING: &str = "portcullis listening on ";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the simulator takes from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bands of the policy that covers `/api/`.
    pub bands: Bands,
    pub risk_headers: RiskHeaderNames,
    /// Every risk header the origin echoes, the rank first.
    pub echo_headers: Vec<String>,
    pub datacenter: IpNet,
    pub datacenter_configured: bool,
    pub scanner_ips: Vec<IpAddr>,
    pub scanner_user_agent: String,
    pub account_header: Option<HeaderName>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        let policy = config
            .policies
            .iter()
            .find(|p| p.path.starts_with("/api") || "/api/".starts_with(p.path.as_str()));
        let names = &config.risk.headers;
        let datacenter = config
            .risk
            .ip_types
            .datacenter
            .iter()
            .find(|net| matches!(net, IpNet::V4(_)))
            .copied();
        let marker = config
            .traffic
            .scanner
            .header_markers
            .first()
            .cloned()
            .unwrap_or_default();
        Settings {
            bands: Bands {
                challenge_at: policy.and_then(|p| p.challenge_at),
                intercept_at: policy.and_then(|p| p.intercept_at),
            },
            risk_headers: RiskHeaderNames {
                rank: names.risk_rank.clone(),
                device_rank: names.device_risk_rank.clone(),
                reasons: names.risk_reasons.clone(),
            },
            echo_headers: names.all().iter().map(|(_, n)| n.to_string()).collect(),
            datacenter_configured: datacenter.is_some(),
            datacenter: datacenter
                .or_else(|| FALLBACK_DATACENTER.parse().ok())
                .unwrap_or_default(),
            scanner_ips: config.traffic.scanner.ips.iter().map(IpNet::addr).collect(),
            // The incident's header: the marker, then where to read more.
            scanner_user_agent: format!(
                "{marker}, more information: https://developers.weixin.qq.com/community/minihome/doc/0008ea401c89c02cff2d1345051001"
            ),
            account_header: config
                .identity
                .account_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        }
    }
}

/// The template with the simulator's origin as the only upstream and
/// 127.0.0.1 as a trusted proxy (so `x-forwarded-for` names the client).
pub fn render(template: &str, origin: SocketAddr, snapshot: &Path) -> Result<String, SimError> {
    let mut table: toml::Table = template
        .parse()
        .map_err(|e: toml::de::Error| SimError::Config(e.to_string()))?;
    let mut upstream = toml::Table::new();
    upstream.insert("url".into(), format!("http://{origin}").into());
    table.insert(
        "upstreams".into(),
        toml::Value::Array(vec![toml::Value::Table(upstream)]),
    );
    let client_ip = table
        .entry("client_ip")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(client_ip) = client_ip else {
        return Err(SimError::Config("client_ip must be a table".into()));
    };
    client_ip.insert(
        "trusted_proxies".into(),
        toml::Value::Array(vec!["127.0.0.1/32".into()]),
    );
    // The restart in the middle of a run keeps the state, as a deployment does.
    let state = table
        .entry("state")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(state) = state else {
        return Err(SimError::Config("state must be a table".into()));
    };
    state.insert(
        "snapshot".into(),
        toml::Value::String(snapshot.display().to_string()),
    );
    toml::to_string(&table).map_err(|e| SimError::Config(e.to_string()))
}

/// A gateway started by the simulator; killed when dropped.
pub struct Spawned {
    pub url: String,
    child: Child,
}

impl Spawned {
    /// Stops the gateway as a deployment does: SIGTERM, so that it saves
    /// its state, then a kill if it has not exited within a few seconds.
    pub async fn stop(mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let terminated = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .is_some_and(|pid| kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok());
        if terminated
            && tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
        {
            return;
        }
        let _ = self.child.kill().await;
    }
}

/// The config file of the gateways a simulation starts; removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A path in the temporary directory for this process, removed when dropped.
    pub fn named(suffix: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "portcullis-simulate-{}{suffix}",
            std::process::id()
        )))
    }

    pub fn write(config: &str) -> Result<TempFile, SimError> {
        let file = TempFile::named(".toml");
        std::fs::write(&file.0, config)
            .map_err(|e| SimError::Gateway(format!("cannot write {}: {e}", file.0.display())))?;
        Ok(file)
    }
}

/// A free local port for the gateway, so that a restarted gateway listens
/// where its clients' requests go.
pub fn free_port() -> Result<SocketAddr, SimError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| SimError::Gateway(format!("no free port: {e}")))?;
    listener
        .local_addr()
        .map_err(|e| SimError::Gateway(format!("no free port: {e}")))
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts `bin run` with this config on `listen` and waits until it
/// listens; `env` is added to its environment (the challenge secret, so
/// that clearances outlive a restart as they do in a deployment).
pub async fn spawn(
    bin: &Path,
    config: &Path,
    listen: SocketAddr,
    env: &[(String, String)],
) -> Result<Spawned, SimError> {
    let mut child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(listen.to_string())
        .args(["--admin", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SimError::Gateway(format!("cannot run {}: {e}", bin.display())))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| SimError::Gateway("no stderr".into()))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut last = VecDeque::new();
    let waited = tokio::time::timeout(START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(LISTENING) {
                return rest.split_whitespace().next().map(String::from);
            }
            if last.len() == 20 {
                last.pop_front();
            }
            last.push_back(line);
        }
        None
    })
    .await;
    let Ok(Some(url)) = waited else {
        let output: Vec<String> = last.into_iter().collect();
        return Err(SimError::Gateway(format!(
            "{} did not report listening within {} s; its last output:\n{}",
            bin.display(),
            START_TIMEOUT.as_secs(),
            output.join("\n")
        )));
    };
    // Keep reading, so a chatty gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Spawned { url, child })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "../../bench/simulate.toml";

    fn template() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(TEMPLATE);
        std::fs::read_to_string(path).expect("bench/simulate.toml")
    }

    #[test]
    fn rendered_template_is_a_valid_config() {
        let origin = SocketAddr::from(([127, 0, 0, 1], 4567));
        let text = render(&template(), origin, Path::new("/tmp/state.bin")).expect("render");
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.upstreams[0].url, "http://127.0.0.1:4567");
        assert_eq!(config.state.snapshot, Path::new("/tmp/state.bin"));
        assert_eq!(
            config.client_ip.trusted_proxies,
            ["127.0.0.1/32".parse::<IpNet>().expect("net")]
        );
    }

    #[test]
    fn settings_come_from_the_template() {
        let config = Config::parse(&template()).expect("valid template");
        let settings = Settings::from_config(&config);
        assert!(settings.datacenter_configured);
        assert_eq!(settings.scanner_ips.len(), 4);
        assert!(
            settings
                .scanner_user_agent
                .starts_with("Tencent Security Team")
        );
        assert_eq!(settings.echo_headers[0], "x-wx-risk-rank");
        assert!(settings.bands.challenge_at.is_some());
        assert_eq!(
            settings.account_header.as_ref().map(HeaderName::as_str),
            Some("x-account-id")
        );
    }

    #[test]
    fn render_replaces_upstreams_and_keeps_the_rest() {
        let origin = SocketAddr::from(([127, 0, 0, 1], 1));
        let text = render(
            "[[upstreams]]\nurl = \"http://10.0.0.1:80\"\n[client_ip]\nheader = \"x-real-ip\"\n",
            origin,
            Path::new("state.bin"),
        )
        .expect("render");
        let config = Config::parse(&text).expect("valid");
        assert_eq!(config.upstreams.len(), 1);
        assert_eq!(config.upstreams[0].url, "http://127.0.0.1:1");
        assert_eq!(config.client_ip.header, "x-real-ip");
        assert!(render("not = [toml", origin, Path::new("state.bin")).is_err());
    }
}
