//! Password hashing with bcrypt, kept off the async runtime.
//!
//! bcrypt is deliberately slow (≈80 ms at cost 10 on one core), so hashing runs on the blocking pool,
//! and a semaphore sized to the cores keeps a burst of sign-ins from starving the machine.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::AppError;

/// bcrypt silently ignores bytes past 72; longer passwords are refused instead.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the user does not exist, so that an
    /// unknown name takes as long to refuse as a wrong password.
    dummy_hash: Arc<String>,
}

impl PasswordHasher {
    /// A hasher using `cost` for new hashes.
    ///
    /// # Panics
    /// Never in practice: hashing a fixed short string at a valid cost cannot fail.
    pub fn new(cost: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let random = hex::encode(rand::random::<[u8; 12]>());
        #[expect(
            clippy::expect_used,
            reason = "a valid cost and a short ASCII password cannot fail"
        )]
        let dummy_hash = bcrypt::hash(random, cost).expect("bcrypt hash of a fixed password");
        Self {
            cost,
            permits: Arc::new(Semaphore::new(cores)),
            dummy_hash: Arc::new(dummy_hash),
        }
    }

    /// Hashes `password` for storage.
    ///
    /// # Errors
    /// [`AppError::Invalid`] if it is longer than bcrypt can take; [`AppError::Internal`] if hashing fails.
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AppError::invalid("密码过长"));
        }
        let (password, cost) = (password.to_owned(), self.cost);
        self.blocking(move || {
            bcrypt::hash(password, cost).map_err(|e| AppError::Internal(e.into()))
        })
        .await
    }

    /// Checks `password` against `hash`; with no hash (unknown user) it spends the same time and fails.
    ///
    /// # Errors
    /// [`AppError::Internal`] only if the blocking pool is gone.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AppError> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.as_str().to_owned(), str::to_owned);
        let password = password.to_owned();
        let matches = self
            .blocking(move || Ok(bcrypt::verify(password, &hash).unwrap_or(false)))
            .await?;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AppError::Unavailable)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AppError::Internal(e.into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_fail() {
        let hasher = PasswordHasher::new(4);
        let hash = hasher.hash("秘密password").await.unwrap();
        assert!(hash.starts_with("$2b$04$"));
        assert!(hasher.verify("秘密password", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("wrong", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("秘密password", None).await.unwrap());
        assert!(!hasher.verify("x", Some("not a bcrypt hash")).await.unwrap());
    }

    #[tokio::test]
    async fn refuses_passwords_bcrypt_would_truncate() {
        let hasher = PasswordHasher::new(4);
        assert!(matches!(
            hasher.hash(&"a".repeat(73)).await,
            Err(AppError::Invalid(_))
        ));
    }
}
