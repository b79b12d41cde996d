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
/// Default limit on scrypt memory (and a quarter of the work): 512 MiB, 8x the cost of
/// gocryptfs' default parameters (N=2^16, R=8: 64 MiB). `--max-scrypt-memory` raises it.
pub const DEFAULT_MAX_MEMORY: u64 = 512 << 20;
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
            return Err(ConfigError::WeakScrypt("ScryptObject.N is below 2^10"));
        }
        if !n.is_power_of_two() {
            return Err(ConfigError::WeakScrypt(
                "ScryptObject.N is not a power of two",
            ));
        }
        let log_n = u8::try_from(n.trailing_zeros()).unwrap_or(u8::MAX);
        if log_n > MAX_LOG_N {
            return Err(ConfigError::ScryptTooExpensive(
                "ScryptObject.N is above 2^28, more than gocryptfs ever writes",
            ));
        }
        if r < 8 {
            return Err(ConfigError::WeakScrypt("ScryptObject.R is below 8"));
        }
        if p < 1 {
            return Err(ConfigError::WeakScrypt("ScryptObject.P is 0"));
        }
        let r = u32::try_from(r).ok().filter(|&r| r <= MAX_R).ok_or(
            ConfigError::ScryptTooExpensive("ScryptObject.R is above 32"),
        )?;
        let p = u32::try_from(p).ok().filter(|&p| p <= MAX_P).ok_or(
            ConfigError::ScryptTooExpensive("ScryptObject.P is above 16"),
        )?;
        if salt.len() < 32 {
            return Err(ConfigError::WeakScrypt(
                "ScryptObject.Salt is shorter than 32 bytes",
            ));
        }
        if salt.len() > MAX_SALT {
            return Err(ConfigError::ScryptTooExpensive(
                "ScryptObject.Salt is longer than 1024 bytes",
            ));
        }
        if key_len < KEY_LEN as u64 {
            return Err(ConfigError::WeakScrypt("ScryptObject.KeyLen is below 32"));
        }
        if key_len != KEY_LEN as u64 {
            return Err(ConfigError::ScryptTooExpensive(
                "ScryptObject.KeyLen is not 32 (gocryptfs always uses 32)",
            ));
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
            .map_err(|_| ConfigError::WeakScrypt("no random salt: the OS random source failed"))?;
        Self::new(salt, 1u64 << log_n.min(63), 8, 1, KEY_LEN as u64)
    }

    /// N.
    #[must_use]
    pub fn n(&self) -> u64 {
        1u64 << self.log_n
    }

    /// Bytes of memory scrypt needs: N × R × 128 for the large table, plus P × R × 128.
    #[must_use]
    pub fn memory_bytes(&self) -> u64 {
        let block = 128 * u64::from(self.r);
        self.n()
            .saturating_mul(block)
            .saturating_add(u64::from(self.p).saturating_mul(block))
    }

    /// Refuses parameters that need more than `limit` bytes of memory, or more than
    /// `limit`'s worth of work (P passes over the table), before anything is allocated.
    ///
    /// # Errors
    /// [`ConfigError::ScryptCost`].
    pub fn check_cost(&self, limit: u64) -> Result<(), ConfigError> {
        let memory = self.memory_bytes();
        let work = memory.saturating_mul(u64::from(self.p));
        // P passes reuse one table; allow as much work as four passes of the limit.
        if memory > limit || work > limit.saturating_mul(4) {
            return Err(ConfigError::ScryptCost {
                needed_mib: memory.max(work / 4).div_ceil(1 << 20),
                limit_mib: limit >> 20,
            });
        }
        Ok(())
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
            ScryptParams::new(salt.clone(), 1 << 10, 1 << 40, 1, 32),
            Err(ConfigError::ScryptTooExpensive(_))
        ));
        // The cost bound: gocryptfs' default passes the default limit with room to spare;
        // N=2^28, R=32 (a 1 TiB table) is refused before any allocation.
        let default = ScryptParams::new(salt.clone(), 1 << 16, 8, 1, 32).unwrap();
        assert_eq!(default.memory_bytes(), (64 << 20) + 1024);
        assert!(default.check_cost(DEFAULT_MAX_MEMORY).is_ok());
        let bomb = ScryptParams::new(salt.clone(), 1 << 28, 32, 1, 32).unwrap();
        assert!(matches!(
            bomb.check_cost(DEFAULT_MAX_MEMORY),
            Err(ConfigError::ScryptCost { limit_mib: 512, .. })
        ));
        let slow = ScryptParams::new(salt, 1 << 18, 8, 16, 32).unwrap();
        assert!(slow.check_cost(DEFAULT_MAX_MEMORY).is_err());
        assert!(slow.check_cost(8 << 30).is_ok());
    }
}
