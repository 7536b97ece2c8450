//! Auth: the secret that signs tokens and how long they last, password hashing, and how often sign-ups
//! and sign-ins may be tried.

use std::path::Path;
use std::time::Duration;

use clap::Args;

use super::{ConfigError, Secret};

/// Flags for tokens, passwords and sign-up and sign-in limits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Auth")]
pub struct AuthConfig {
    /// Secret that signs tokens (at least 32 bytes). Default: generated once and kept in the data dir.
    #[arg(long, env = "CHATROOM_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<Secret<String>>,

    /// How long a token stays valid, in seconds.
    #[arg(long, env = "CHATROOM_TOKEN_TTL", default_value_t = 24 * 3600)]
    pub token_ttl: u64,

    /// bcrypt cost for new password hashes (4–31).
    #[arg(long, env = "CHATROOM_BCRYPT_COST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// Sign-ups allowed per client IP per hour.
    #[arg(long, env = "CHATROOM_SIGNUP_PER_HOUR", default_value_t = 30)]
    pub signup_per_hour: u32,

    /// Failed sign-ins allowed per account and client address per 15 minutes; past it that address is
    /// refused at that account (its owner elsewhere is not). An account is the user a name or e-mail
    /// address resolves to (any capitalisation of the address); a successful sign-in clears the pair's
    /// count. Unknown names are counted the same way.
    #[arg(long, env = "CHATROOM_SIGNIN_FAILURES", default_value_t = 10)]
    pub signin_failures: u32,

    /// Sign-in attempts allowed per client IP per 15 minutes, whatever account they name.
    #[arg(long, env = "CHATROOM_SIGNIN_PER_IP", default_value_t = 50)]
    pub signin_per_ip: u32,

    /// Failed sign-ins at one account per 15 minutes, from all addresses together, past which every
    /// further attempt at it waits before its password is checked (a delay that doubles as the
    /// failures go on, at most 5 s). Attempts are slowed, never refused, so the owner still gets in.
    #[arg(long, env = "CHATROOM_SIGNIN_ACCOUNT_CEILING", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub signin_account_ceiling: u32,
}

/// Tokens, passwords and sign-up and sign-in limits, resolved.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The secret that signs tokens, at least 32 bytes.
    pub token_secret: Secret<Vec<u8>>,
    /// How long a token stays valid (at least a minute).
    pub token_ttl: Duration,
    /// bcrypt cost for new password hashes.
    pub bcrypt_cost: u32,
    /// Sign-ups per client address per hour.
    pub signup_per_hour: u32,
    /// Failed sign-ins per account and client address per 15 minutes.
    pub signin_failures: u32,
    /// Sign-in attempts per client address per 15 minutes.
    pub signin_per_ip: u32,
    /// Failed sign-ins at one account per 15 minutes past which attempts are slowed.
    pub signin_account_ceiling: u32,
}

impl AuthConfig {
    /// Loads the token secret (or creates one in `data_dir`) and checks its length.
    ///
    /// # Errors
    /// [`ConfigError::SecretFile`] or [`ConfigError::WeakSecret`].
    pub fn resolve(self, data_dir: &Path) -> Result<AuthSettings, ConfigError> {
        let token_secret = match &self.token_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => load_or_create_secret(&data_dir.join("token_secret"))?,
        };
        if token_secret.len() < 32 {
            return Err(ConfigError::WeakSecret);
        }
        Ok(AuthSettings {
            token_secret: Secret::new(token_secret),
            token_ttl: Duration::from_secs(self.token_ttl.max(60)),
            bcrypt_cost: self.bcrypt_cost,
            signup_per_hour: self.signup_per_hour,
            signin_failures: self.signin_failures,
            signin_per_ip: self.signin_per_ip,
            signin_account_ceiling: self.signin_account_ceiling.max(1),
        })
    }
}

impl AuthSettings {
    /// Test values: a fixed secret, cheap hashes, sign-up and sign-in limits no test reaches by
    /// accident.
    pub fn for_tests() -> Self {
        Self {
            token_secret: Secret::new(b"test-secret-test-secret-test-secret!".to_vec()),
            token_ttl: Duration::from_secs(3600),
            bcrypt_cost: 4,
            signup_per_hour: 10_000,
            signin_failures: 10,
            signin_per_ip: 1000,
            signin_account_ceiling: 100,
        }
    }
}

/// Reads the secret kept in the data dir, or writes a new random one (owner-readable only), so that
/// tokens stay valid across restarts: the v3 client never refreshes its token.
fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let err = |source| ConfigError::SecretFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = hex::encode(rand::random::<[u8; 32]>());
            write_private(path, secret.as_bytes()).map_err(err)?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(err(e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(&dir.path().join("s")).unwrap();
        let second = load_or_create_secret(&dir.path().join("s")).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
    }
}
