//! Connecting to Redis: standalone (a connection manager that reconnects by
//! itself), Sentinel (the master's address asked of the sentinels on every
//! connect, so a failover is followed at the next probe) and Cluster.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisResult, Value};

/// How the nodes reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    Standalone,
    Cluster,
    Sentinel { master: String },
}

/// Where Redis is and who we are to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub mode: RedisMode,
    /// `redis://` or `rediss://` URLs: the server, the cluster's seed nodes or the sentinels.
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// One connection, cheap to clone, multiplexing every caller's commands.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs a pipeline; per-command errors come back as `Value::ServerError`.
    pub(crate) async fn query(&self, pipe: &Pipeline) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => pipe.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => pipe.query_async(&mut c.clone()).await,
        }
    }
}

impl Endpoint {
    fn infos(&self) -> RedisResult<Vec<ConnectionInfo>> {
        self.urls
            .iter()
            .map(|url| {
                let info = url.as_str().into_connection_info()?;
                let mut redis = info.redis_settings().clone();
                if let Some(user) = &self.username {
                    redis = redis.set_username(user);
                }
                if let Some(password) = &self.password {
                    redis = redis.set_password(password);
                }
                Ok(info.set_redis_settings(redis))
            })
            .collect()
    }

    /// A client for one server: the standalone server, the current master,
    /// or (cluster) the first seed, which is where pub/sub listens.
    pub(crate) async fn client(&self) -> RedisResult<Client> {
        let infos = self.infos()?;
        match &self.mode {
            RedisMode::Sentinel { master } => {
                let node = infos.first().map(|i| {
                    SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(i.redis_settings().clone())
                });
                let sentinels: Vec<ConnectionInfo> = infos
                    .iter()
                    .map(|i| {
                        // Sentinels themselves are asked without the data ACL.
                        i.clone()
                            .set_redis_settings(redis::RedisConnectionInfo::default())
                    })
                    .collect();
                let mut sentinel = SentinelClient::build(
                    sentinels,
                    master.clone(),
                    node,
                    SentinelServerType::Master,
                )?;
                sentinel.async_get_client().await
            }
            RedisMode::Standalone | RedisMode::Cluster => {
                let info = infos.into_iter().next().ok_or_else(no_url)?;
                Client::open(info)
            }
        }
    }

    /// The servers whose settings decide what happens to our keys: the
    /// standalone server or current master, or every cluster seed.
    pub(crate) async fn servers(&self) -> RedisResult<Vec<Client>> {
        match self.mode {
            RedisMode::Cluster => self.infos()?.into_iter().map(Client::open).collect(),
            RedisMode::Standalone | RedisMode::Sentinel { .. } => Ok(vec![self.client().await?]),
        }
    }

    /// Connects; `timeout` bounds every command and the connection itself.
    pub(crate) async fn connect(&self, timeout: Duration) -> RedisResult<Conn> {
        let connect_timeout = timeout.max(Duration::from_millis(500));
        match self.mode {
            RedisMode::Cluster => {
                let mut builder = ClusterClientBuilder::new(self.infos()?)
                    .connection_timeout(connect_timeout)
                    .response_timeout(timeout)
                    .retries(0);
                if let Some(user) = &self.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &self.password {
                    builder = builder.password(password);
                }
                let conn = builder.build()?.get_async_connection().await?;
                Ok(Conn::Cluster(conn))
            }
            RedisMode::Standalone | RedisMode::Sentinel { .. } => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                let client = self.client().await?;
                let conn = ConnectionManager::new_with_config(client, config).await?;
                Ok(Conn::Single(conn))
            }
        }
    }
}

fn no_url() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis URL"))
}
