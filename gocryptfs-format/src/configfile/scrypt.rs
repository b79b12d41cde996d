//! scrypt parameters of `gocryptfs.conf` and the password → key-encryption-key step.
//!
//! Mirrors gocryptfs `internal/configfile/scrypt.go`; spec §1.2. On load we enforce
//! gocryptfs' minimums (N ≥ 2^10, R ≥ 8, P ≥ 1, salt and key ≥ 32 bytes) and, unlike
//! gocryptfs, also maximums, so that a hostile config cannot make us allocate gigabytes.

#![warn(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use zeroize::Zeroizing;

use crate::cryptocore::KEY_LEN;
use crate::error::ConfigError;

/// Smallest log2(N) gocryptfs accepts (`-scryptn 10`).
pub const MIN_LOG_N: u8 = 10;
/// Largest log2(N) gocryptfs' `-scryptn` accepts.
pub const MAX_LOG_N: u8 = 28;
/// gocryptfs' default log2(N).
pub const DEFAULT_LOG_N: u8 = 16;
/// Largest R and P we run (gocryptfs always writes R=8, P=1): bounds CPU and memory.
const MAX_R: u32 = 32;
const MAX_P: u32 = 16;
/// Largest salt we accept (gocryptfs writes 32 bytes).
const MAX_SALT: usize = 1024;

/// Validated scrypt parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScryptParams {
    /// Random salt (32 bytes when we write it).
    pub salt: Vec<u8>,
    /// log2 of the cost N.
    pub log_n: u8,
    /// Block size R.
    pub r: u32,
    /// Parallelism P.
    pub p: u32,
}

impl ScryptParams {
    /// Validates raw values from the JSON.
    ///
    /// # Errors
    /// [`ConfigError::WeakScrypt`] below gocryptfs' minimums,
    /// [`ConfigError::ScryptTooExpensive`] above our maximums.
    pub fn new(salt: Vec<u8>, n: u64, r: u64, p: u64, key_len: u64) -> Result<Self, ConfigError> {
        if n < (1 << MIN_LOG_N) {
            return Err(ConfigError::WeakScrypt(format!("N={n} is below 2^10")));
        }
        if !n.is_power_of_two() {
            return Err(ConfigError::WeakScrypt(format!(
                "N={n} is not a power of two"
            )));
        }
        let log_n = u8::try_from(n.trailing_zeros()).unwrap_or(u8::MAX);
        if log_n > MAX_LOG_N {
            return Err(ConfigError::ScryptTooExpensive(format!("N=2^{log_n}")));
        }
        if r < 8 {
            return Err(ConfigError::WeakScrypt(format!("R={r} is below 8")));
        }
        if p < 1 {
            return Err(ConfigError::WeakScrypt("P=0".into()));
        }
        let r = u32::try_from(r)
            .ok()
            .filter(|&r| r <= MAX_R)
            .ok_or_else(|| ConfigError::ScryptTooExpensive(format!("R={r}")))?;
        let p = u32::try_from(p)
            .ok()
            .filter(|&p| p <= MAX_P)
            .ok_or_else(|| ConfigError::ScryptTooExpensive(format!("P={p}")))?;
        if salt.len() < 32 {
            return Err(ConfigError::WeakScrypt(format!(
                "the salt is {} bytes, below 32",
                salt.len()
            )));
        }
        if salt.len() > MAX_SALT {
            return Err(ConfigError::ScryptTooExpensive(format!(
                "a {}-byte salt",
                salt.len()
            )));
        }
        if key_len < KEY_LEN as u64 {
            return Err(ConfigError::WeakScrypt(format!(
                "KeyLen={key_len} is below 32"
            )));
        }
        if key_len != KEY_LEN as u64 {
            return Err(ConfigError::ScryptTooExpensive(format!(
                "KeyLen={key_len} (gocryptfs always uses 32)"
            )));
        }
        Ok(ScryptParams { salt, log_n, r, p })
    }

    /// Fresh parameters for a new tree: random 32-byte salt, N = 2^`log_n`, R = 8, P = 1.
    ///
    /// # Errors
    /// [`ConfigError::WeakScrypt`] / [`ConfigError::ScryptTooExpensive`] outside 10..=28;
    /// a random-source failure is reported as `WeakScrypt` too (no salt, no config).
    pub fn generate(log_n: u8) -> Result<Self, ConfigError> {
        let mut salt = vec![0u8; 32];
        crate::cryptocore::fill_random(&mut salt)
            .map_err(|e| ConfigError::WeakScrypt(format!("no random salt: {e}")))?;
        Self::new(salt, 1u64 << log_n.min(63), 8, 1, KEY_LEN as u64)
    }

    /// N.
    #[must_use]
    pub fn n(&self) -> u64 {
        1u64 << self.log_n
    }

    /// Runs scrypt on `password`: the key-encryption key (KEK).
    #[must_use]
    pub fn derive(&self, password: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        // Parameters were validated in `new`, so both calls succeed; on the impossible
        // failure the KEK stays zero and unwrapping then fails as a wrong password.
        if let Ok(params) = scrypt::Params::new(self.log_n, self.r, self.p) {
            let _ = scrypt::scrypt(password, &self.salt, &params, &mut *kek);
        }
        kek
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use super::*;

    #[test]
    fn minimums_and_maximums() {
        let salt = vec![1u8; 32];
        assert!(ScryptParams::new(salt.clone(), 1 << 10, 8, 1, 32).is_ok());
        for (n, r, p, kl, s) in [
            (512u64, 8u64, 1u64, 32u64, 32usize),
            (1000, 8, 1, 32, 32),
            (1024, 7, 1, 32, 32),
            (1024, 8, 0, 32, 32),
            (1024, 8, 1, 16, 32),
            (1024, 8, 1, 32, 31),
        ] {
            assert!(
                matches!(
                    ScryptParams::new(vec![1; s], n, r, p, kl),
                    Err(ConfigError::WeakScrypt(_))
                ),
                "{n} {r} {p} {kl} {s}"
            );
        }
        assert!(matches!(
            ScryptParams::new(salt.clone(), 1 << 40, 8, 1, 32),
            Err(ConfigError::ScryptTooExpensive(_))
        ));
        assert!(matches!(
            ScryptParams::new(salt, 1 << 10, 1 << 40, 1, 32),
            Err(ConfigError::ScryptTooExpensive(_))
        ));
    }
}
