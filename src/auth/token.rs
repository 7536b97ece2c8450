//! Signed, expiring bearer tokens (HS256 JWTs).
//!
//! A token names its user (`sub`) and carries a random id (`jti`) so that one token can be revoked
//! (logout) without touching the user's other devices. The algorithm is pinned: a token whose header
//! names another algorithm, or none, is rejected. `exp`, `sub` and `aud` are required; `exp` and, when
//! present, `nbf` are enforced with a leeway of 5 seconds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use super::UserId;

const AUDIENCE: &str = "chatroom";

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    /// Unique token id, used for revocation.
    pub jti: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Audience: always `chatroom`.
    pub aud: String,
}

impl Claims {
    /// The user the token was issued for.
    pub fn user_id(&self) -> Option<UserId> {
        self.sub.parse().ok()
    }

    /// When the token stops being valid.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or_else(Utc::now)
    }
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The encoded token to hand to the client.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is malformed or its signature is wrong")]
    Invalid,
}

/// Issues and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenService {
    /// A service signing with `secret` and issuing tokens valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Clocks of several nodes may differ by a few seconds; past that, a token is refused.
        validation.leeway = 5;
        // A token that says it is not valid yet is refused (chatroom never issues one; someone holding
        // the secret might, and issuers elsewhere use `nbf` to schedule access).
        validation.validate_nbf = true;
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// How long new tokens live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a token for `user`.
    ///
    /// # Errors
    /// Only if signing fails, which with an HMAC key means a broken crypto backend.
    pub fn issue(&self, user: UserId) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.to_string(),
            jti: hex::encode(rand::random::<[u8; 16]>()),
            iat: now,
            exp: now + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
            aud: AUDIENCE.to_owned(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken { token, claims })
    }

    /// Checks the signature, algorithm, audience and expiry of `token`.
    ///
    /// # Errors
    /// [`TokenError::Expired`] for an expired token, [`TokenError::Invalid`] for anything else wrong.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ttl: u64) -> TokenService {
        TokenService::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(ttl),
        )
    }

    // Also guards against jsonwebtoken being built without a crypto backend, which compiles and then
    // panics on first use.
    #[test]
    fn issued_tokens_verify_and_name_their_user() {
        let tokens = service(60);
        let issued = tokens.issue(42).unwrap();
        let claims = tokens.verify(&issued.token).unwrap();
        assert_eq!(claims.user_id(), Some(42));
        assert_eq!(claims.jti.len(), 32);
        assert_ne!(tokens.issue(42).unwrap().claims.jti, claims.jti);
    }

    #[test]
    fn refuses_other_secrets_tampering_and_alg_none() {
        let tokens = service(60);
        let issued = tokens.issue(7).unwrap();
        let other = TokenService::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        assert_eq!(other.verify(&issued.token), Err(TokenError::Invalid));

        let mut parts: Vec<&str> = issued.token.split('.').collect();
        // {"alg":"none","typ":"JWT"}
        parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        assert_eq!(
            tokens.verify(&format!("{}.{}.", parts[0], parts[1])),
            Err(TokenError::Invalid)
        );
        assert_eq!(tokens.verify("false"), Err(TokenError::Invalid));
        assert_eq!(tokens.verify(""), Err(TokenError::Invalid));
    }

    #[test]
    fn tokens_not_yet_valid_or_without_expiry_are_refused() {
        let tokens = service(60);
        let now = Utc::now().timestamp();
        let sign = |claims: serde_json::Value| {
            encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding).unwrap()
        };
        let future = sign(serde_json::json!({
            "sub": "1", "jti": "x", "iat": now, "exp": now + 600, "aud": AUDIENCE, "nbf": now + 60,
        }));
        assert_eq!(tokens.verify(&future), Err(TokenError::Invalid));
        // Within the leeway, and in the past, `nbf` is fine.
        for nbf in [now + 3, now - 60] {
            let ok = sign(serde_json::json!({
                "sub": "1", "jti": "x", "iat": now, "exp": now + 600, "aud": AUDIENCE, "nbf": nbf,
            }));
            assert!(tokens.verify(&ok).is_ok());
        }
        let eternal =
            sign(serde_json::json!({"sub": "1", "jti": "x", "iat": now, "aud": AUDIENCE}));
        assert_eq!(tokens.verify(&eternal), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let tokens = service(60);
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: "1".into(),
            jti: "x".into(),
            iat: now - 120,
            exp: now - 60,
            aud: AUDIENCE.into(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding).unwrap();
        assert_eq!(tokens.verify(&token), Err(TokenError::Expired));
    }
}
