//! Feature flags of `gocryptfs.conf`: the table of known flags, and what we do with each.
//!
//! Mirrors gocryptfs `internal/configfile/feature_flags.go` and `validate.go`; spec §1.3.
//! Unknown flags are refused (that is gocryptfs' forward-compatibility rule), and FIDO2 is
//! refused on purpose: there is no token in a TEE.

#![warn(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use crate::error::ConfigError;

/// Every feature flag gocryptfs 2.x knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FeatureFlag {
    /// Keys are HKDF-derived from the master key (every tree since 1.3).
    Hkdf,
    /// 128-bit GCM (and SIV) nonces.
    GcmIv128,
    /// Content is XChaCha20-Poly1305.
    XChaCha20Poly1305,
    /// Content is AES-SIV-512.
    AesSiv,
    /// A `gocryptfs.diriv` in every directory.
    DirIv,
    /// Names are EME-encrypted.
    EmeNames,
    /// Long names are hashed into `gocryptfs.longname.*`.
    LongNames,
    /// A custom long-name threshold in `LongNameMax`.
    LongNameMax,
    /// Unpadded base64url names.
    Raw64,
    /// Names are stored unencrypted.
    PlaintextNames,
    /// The password comes from a FIDO2 token (refused).
    Fido2,
}

/// (flag, name in the JSON) in the order gocryptfs writes them for a default tree.
const TABLE: [(FeatureFlag, &str); 11] = [
    (FeatureFlag::Hkdf, "HKDF"),
    (FeatureFlag::GcmIv128, "GCMIV128"),
    (FeatureFlag::XChaCha20Poly1305, "XChaCha20Poly1305"),
    (FeatureFlag::PlaintextNames, "PlaintextNames"),
    (FeatureFlag::DirIv, "DirIV"),
    (FeatureFlag::LongNameMax, "LongNameMax"),
    (FeatureFlag::EmeNames, "EMENames"),
    (FeatureFlag::LongNames, "LongNames"),
    (FeatureFlag::Raw64, "Raw64"),
    (FeatureFlag::AesSiv, "AESSIV"),
    (FeatureFlag::Fido2, "FIDO2"),
];

impl FeatureFlag {
    /// The flag's name in `gocryptfs.conf`.
    #[must_use]
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("?", |(_, n)| n)
    }

    /// Parses a flag name (exact, case-sensitive, as gocryptfs).
    ///
    /// # Errors
    /// [`ConfigError::UnknownFlag`] for anything not in the table.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        TABLE
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| *f)
            .ok_or(ConfigError::UnknownFlag { index: 0 })
    }

    /// The position gocryptfs' `-init` would write this flag at (for canonical output).
    pub(crate) fn write_order(self) -> usize {
        TABLE
            .iter()
            .position(|(f, _)| *f == self)
            .unwrap_or(TABLE.len())
    }
}

/// A set of feature flags (order in the file is not significant).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagSet {
    flags: Vec<FeatureFlag>,
}

impl FlagSet {
    /// Parses the `FeatureFlags` array: every name known, none twice, FIDO2 refused.
    ///
    /// # Errors
    /// [`ConfigError::UnknownFlag`], [`ConfigError::DuplicateFlag`], [`ConfigError::Fido2`].
    pub fn parse(names: &[String]) -> Result<Self, ConfigError> {
        let mut flags = Vec::with_capacity(names.len());
        for (index, n) in names.iter().enumerate() {
            let f = FeatureFlag::parse(n).map_err(|_| ConfigError::UnknownFlag { index })?;
            if f == FeatureFlag::Fido2 {
                return Err(ConfigError::Fido2);
            }
            if flags.contains(&f) {
                return Err(ConfigError::DuplicateFlag { index });
            }
            flags.push(f);
        }
        Ok(FlagSet { flags })
    }

    /// Builds a set from flags (callers ensure no duplicates).
    #[must_use]
    pub fn from_flags(flags: &[FeatureFlag]) -> Self {
        let mut v: Vec<FeatureFlag> = Vec::with_capacity(flags.len());
        for f in flags {
            if !v.contains(f) {
                v.push(*f);
            }
        }
        FlagSet { flags: v }
    }

    /// Whether `f` is set.
    #[must_use]
    pub fn has(&self, f: FeatureFlag) -> bool {
        self.flags.contains(&f)
    }

    /// The flags in file order.
    pub fn iter(&self) -> impl Iterator<Item = FeatureFlag> + '_ {
        self.flags.iter().copied()
    }

    /// Names in the order gocryptfs `-init` writes them.
    #[must_use]
    pub fn canonical_names(&self) -> Vec<String> {
        let mut v = self.flags.clone();
        v.sort_by_key(|f| f.write_order());
        v.into_iter().map(|f| f.name().to_owned()).collect()
    }

    /// Enforces gocryptfs' flag matrix (`validate.go`) plus our refusals; one message per
    /// rule.
    ///
    /// # Errors
    /// [`ConfigError::FlagMatrix`] or [`ConfigError::Unsupported`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        use FeatureFlag as F;
        let m = |s| Err(ConfigError::FlagMatrix(s));
        if self.has(F::XChaCha20Poly1305) {
            if !self.has(F::Hkdf) {
                return m("XChaCha20Poly1305 requires HKDF");
            }
            if self.has(F::GcmIv128) {
                return m("XChaCha20Poly1305 conflicts with GCMIV128");
            }
            if self.has(F::AesSiv) {
                return m("XChaCha20Poly1305 conflicts with AESSIV");
            }
        } else if !self.has(F::GcmIv128) {
            return Err(ConfigError::Unsupported(
                "GCMIV128 is missing: a pre-v0.9 tree with 96-bit content nonces (gocryptfs 2.x refuses it too); migrate it with an old gocryptfs",
            ));
        }
        if self.has(F::PlaintextNames) {
            for (f, msg) in [
                (F::EmeNames, "PlaintextNames conflicts with EMENames"),
                (F::DirIv, "PlaintextNames conflicts with DirIV"),
                (F::LongNames, "PlaintextNames conflicts with LongNames"),
                (F::Raw64, "PlaintextNames conflicts with Raw64"),
                (F::LongNameMax, "PlaintextNames conflicts with LongNameMax"),
            ] {
                if self.has(f) {
                    return m(msg);
                }
            }
        } else {
            if !self.has(F::EmeNames) {
                return Err(ConfigError::Unsupported(
                    "neither EMENames nor PlaintextNames: a pre-v0.5 CBC-names tree; migrate it with an old gocryptfs",
                ));
            }
            if self.has(F::LongNameMax) && !self.has(F::LongNames) {
                return m("LongNameMax requires LongNames");
            }
        }
        Ok(())
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

    fn set(names: &[&str]) -> Result<FlagSet, ConfigError> {
        FlagSet::parse(&names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn default_and_variants_validate() {
        for names in [
            &[
                "HKDF",
                "GCMIV128",
                "DirIV",
                "EMENames",
                "LongNames",
                "Raw64",
            ][..],
            &[
                "HKDF",
                "XChaCha20Poly1305",
                "DirIV",
                "EMENames",
                "LongNames",
                "Raw64",
            ],
            &[
                "HKDF",
                "GCMIV128",
                "DirIV",
                "EMENames",
                "LongNames",
                "Raw64",
                "AESSIV",
            ],
            &["HKDF", "GCMIV128", "PlaintextNames"],
            &["HKDF", "GCMIV128", "EMENames", "LongNames", "Raw64"],
            &[
                "HKDF",
                "GCMIV128",
                "DirIV",
                "LongNameMax",
                "EMENames",
                "LongNames",
                "Raw64",
            ],
            &["GCMIV128", "DirIV", "EMENames", "LongNames"],
        ] {
            set(names).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            set(&["HKDF", "Bogus"]),
            Err(ConfigError::UnknownFlag { .. })
        ));
        assert!(matches!(
            set(&["hkdf"]),
            Err(ConfigError::UnknownFlag { .. })
        ));
        assert!(matches!(set(&["FIDO2"]), Err(ConfigError::Fido2)));
        assert!(matches!(
            set(&["HKDF", "HKDF"]),
            Err(ConfigError::DuplicateFlag { .. })
        ));
        for names in [
            &["XChaCha20Poly1305", "EMENames"][..],
            &["HKDF", "XChaCha20Poly1305", "GCMIV128", "EMENames"],
            &["HKDF", "XChaCha20Poly1305", "AESSIV", "EMENames"],
            &["HKDF", "GCMIV128", "PlaintextNames", "DirIV"],
            &["HKDF", "GCMIV128", "LongNameMax", "EMENames"],
        ] {
            assert!(
                matches!(
                    set(names).unwrap().validate(),
                    Err(ConfigError::FlagMatrix(_))
                ),
                "{names:?}"
            );
        }
        assert!(matches!(
            set(&["HKDF", "EMENames"]).unwrap().validate(),
            Err(ConfigError::Unsupported(_))
        ));
        assert!(matches!(
            set(&["HKDF", "GCMIV128"]).unwrap().validate(),
            Err(ConfigError::Unsupported(_))
        ));
    }

    #[test]
    fn canonical_order() {
        let s = set(&[
            "Raw64",
            "LongNames",
            "EMENames",
            "LongNameMax",
            "DirIV",
            "GCMIV128",
            "HKDF",
        ])
        .unwrap();
        assert_eq!(
            s.canonical_names(),
            [
                "HKDF",
                "GCMIV128",
                "DirIV",
                "LongNameMax",
                "EMENames",
                "LongNames",
                "Raw64"
            ]
        );
        let s = set(&[
            "AESSIV",
            "Raw64",
            "HKDF",
            "GCMIV128",
            "DirIV",
            "EMENames",
            "LongNames",
        ])
        .unwrap();
        assert_eq!(
            s.canonical_names(),
            [
                "HKDF",
                "GCMIV128",
                "DirIV",
                "EMENames",
                "LongNames",
                "Raw64",
                "AESSIV"
            ]
        );
    }
}
