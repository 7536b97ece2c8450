//! Cluster: the Redis that carries events between nodes, when there are several.

use clap::Args;

use super::{ConfigError, SecretUrl};

/// Flags for running as one node of several.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterConfig {
    /// Redis that carries events between the nodes of a cluster: `redis://host:6379` (or with a
    /// password, `redis://:password@host:6379`), or several comma-separated URLs of a Redis Cluster's
    /// nodes (sharded pub/sub, Redis ≥ 7). Without it the node runs alone, with no Redis.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<SecretUrl>,

    /// Prefix of the Redis channels the cluster shares; nodes with different prefixes on one Redis are
    /// separate clusters.
    #[arg(long, env = "CHATROOM_REDIS_PREFIX", default_value = "chatroom")]
    pub redis_prefix: String,
}

/// The cluster, resolved.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The cluster's Redis, if the node is one of several.
    pub redis_url: Option<SecretUrl>,
    /// Prefix of the cluster's Redis channel.
    pub redis_prefix: String,
}

impl ClusterConfig {
    /// Drops a blank Redis URL and checks a given one.
    ///
    /// # Errors
    /// [`ConfigError::RedisUrl`] when the URL cannot be used, with its password hidden.
    pub fn resolve(self) -> Result<ClusterSettings, ConfigError> {
        let redis_url = self.redis_url.filter(|u| !u.expose().trim().is_empty());
        if let Some(url) = &redis_url {
            for seed in url.expose().split(',').map(str::trim) {
                redis::Client::open(seed)
                    .map_err(|e| ConfigError::RedisUrl(format!("{}: {e}", url.redacted())))?;
            }
        }
        Ok(ClusterSettings {
            redis_url,
            redis_prefix: self.redis_prefix,
        })
    }
}

impl ClusterSettings {
    /// Test values: a node on its own.
    pub fn for_tests() -> Self {
        Self {
            redis_url: None,
            redis_prefix: "chatroom".into(),
        }
    }
}
