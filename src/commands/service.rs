//! What `vigie predict`, `vigie drift`, `vigie trainer` and `vigie up` share: the settings every
//! service takes (declared once, flattened into each command) and the common opening.

use std::time::Duration;

use vigie_api::server::Limits;
use vigie_api::service::Common;
use vigie_registry::Registry;

use crate::Cli;
use crate::commands::required;

/// The settings every service takes (flags, or the environment variables named).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Kafka bootstrap servers (host:port,...). `vigie up` runs an embedded broker without it.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Secret that signs and checks tokens, the same for every service: at least 32 bytes.
    /// `vigie up` makes a throwaway one without it.
    #[arg(long, env = "VIGIE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, env = "VIGIE_TOKEN_TTL_SECS", default_value_t = 8 * 3600,
          value_parser = clap::value_parser!(u64).range(60..=7 * 24 * 3600))]
    pub token_ttl_secs: u64,
    /// How often the registry, the accounts and the broker are checked, in milliseconds.
    #[arg(long, env = "VIGIE_POLL_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub poll_ms: u64,
    /// The topic predictions are published to and read from.
    #[arg(long, env = "VIGIE_PREDICTIONS_TOPIC", default_value = vigie_stream::PREDICTIONS_TOPIC)]
    pub topic: String,
    /// How long a connection may take to send a request's headers, counted from its opening
    /// or from the previous response (an idle kept-alive connection is closed then), in seconds.
    #[arg(long, env = "VIGIE_IDLE_TIMEOUT_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_secs: u64,
    /// How long a request body may pause between two chunks, in seconds (408 beyond).
    #[arg(long, env = "VIGIE_BODY_TIMEOUT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_secs: u64,
    /// Most connections served at once per service; more wait until one closes.
    #[arg(long, env = "VIGIE_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
}

impl ServiceArgs {
    /// The opening of `vigie predict|drift|trainer`: the broker and the secret must be set
    /// (`command` and what it does with the broker make the message), then the registry opens.
    pub async fn connect(
        &self,
        cli: &Cli,
        command: &str,
        uses_broker: &str,
    ) -> anyhow::Result<Common> {
        let brokers = required(
            self.kafka_brokers.as_deref(),
            &format!(
                "KAFKA_BROKERS (or --kafka-brokers) is not set: `{command}` {uses_broker}; `vigie up` runs an embedded broker for local use"
            ),
        )?
        .to_string();
        let secret = required(
            self.jwt_secret.as_deref(),
            &format!(
                "VIGIE_JWT_SECRET (or --jwt-secret) is not set: `{command}` signs and checks tokens with it, the same secret as the other services (at least 32 bytes, e.g. `openssl rand -hex 32`); only `vigie up` makes a throwaway one"
            ),
        )?
        .to_string();
        Ok(self.common(cli.registry().await?, brokers, secret))
    }

    /// The services' settings on an open registry, a broker and a secret.
    pub fn common(&self, registry: Registry, brokers: String, jwt_secret: String) -> Common {
        Common {
            registry,
            brokers,
            jwt_secret,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            poll_interval: Duration::from_millis(self.poll_ms),
            limits: Limits {
                idle: Duration::from_secs(self.idle_timeout_secs),
                body: Duration::from_secs(self.body_timeout_secs),
                max_connections: self.max_connections as usize,
            },
        }
    }
}
