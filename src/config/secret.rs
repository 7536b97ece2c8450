//! Values that must never reach a log line: secrets, and URLs that may carry a password. Their `Debug`
//! hides them, so settings can derive `Debug` and still be logged whole.

use std::fmt;

/// A secret (the token secret, the metrics token): `Debug` prints `<redacted>`; [`Secret::expose`]
/// is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself, for the code that uses it (signing, comparing).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A URL that may carry credentials (the database, Redis, the robot upstream): `Debug` and
/// [`SecretUrl::redacted`] print it with the password hidden (see [`redact_url`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The whole URL, password included, for the code that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password hidden, for logs and error messages.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

/// Hides credentials in a URL (`postgres://user:pass@host` → `postgres://user:***@host`), or in each
/// of a comma-separated list of URLs (a Redis Cluster's nodes).
pub fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://bob:hunter2@db/chat"),
            "postgres://bob:***@db/chat"
        );
        assert_eq!(redact_url("sqlite://data/chat.db"), "sqlite://data/chat.db");
        assert_eq!(
            redact_url("redis://:a@r1:7000,redis://u:b@r2:7001,redis://r3:7002"),
            "redis://:***@r1:7000,redis://u:***@r2:7001,redis://r3:7002"
        );
    }

    #[test]
    fn debug_hides_secrets_and_passwords() {
        let url = SecretUrl::from("postgres://bob:hunter2@db/chat");
        assert_eq!(format!("{url:?}"), r#""postgres://bob:***@db/chat""#);
        assert_eq!(url.expose(), "postgres://bob:hunter2@db/chat");
        let secret: Secret<String> = "scrape-me-0123456789".into();
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(secret.expose(), "scrape-me-0123456789");
    }
}
