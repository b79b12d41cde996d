//! `ccmount info CIPHERDIR [--json]`: the parameters of a cipher directory from its
//! `gocryptfs.conf`, no key needed (like `gocryptfs -info`).

use anyhow::{Context, Result};
use gocryptfs_format::Config;
use gocryptfs_format::configfile::NameLayout;
use serde_json::json;

use crate::cli::{GlobalArgs, InfoArgs};
use crate::exit::Exit;

pub(crate) fn run(g: &GlobalArgs, a: InfoArgs) -> Result<Exit> {
    let c = if crate::remote::is_s3(&a.cipherdir) {
        let b = crate::remote::bucket(g, &a.cipherdir)?;
        let bytes = b
            .read_small(
                gocryptfs_format::configfile::CONF_NAME,
                gocryptfs_format::configfile::MAX_CONF_LEN,
            )
            .with_context(|| format!("reading {}", a.cipherdir.display()))?;
        Config::parse(&bytes).map_err(|source| gocryptfs_format::Error::Config {
            path: a.cipherdir.join(gocryptfs_format::configfile::CONF_NAME),
            source,
        })?
    } else {
        Config::load(&a.cipherdir).with_context(|| format!("reading {}", a.cipherdir.display()))?
    };
    let l = c.layout();
    let (names, dir_iv, raw64, lnm) = match l.names {
        NameLayout::Plaintext => ("plaintext", false, false, None),
        NameLayout::Encrypted {
            dir_iv,
            raw64,
            long_name_max,
        } => ("encrypted (EME)", dir_iv, raw64, Some(long_name_max)),
    };
    let flags: Vec<String> = c.flags.iter().map(|f| f.name().to_owned()).collect();
    if a.json {
        let v = json!({
            "schema": "ccmount.info/v1",
            "creator": c.creator,
            "version": 2,
            "feature_flags": flags,
            "content_encryption": l.content.name(),
            "hkdf": l.hkdf,
            "names": names,
            "dir_iv": dir_iv,
            "raw64": raw64,
            "long_name_max": lnm,
            "encrypted_key_len": c.encrypted_key_len(),
            "scrypt": {
                "log2_n": c.scrypt.log_n,
                "n": c.scrypt.n(),
                "r": c.scrypt.r,
                "p": c.scrypt.p,
                "salt_len": c.scrypt.salt.len(),
                "key_len": 32,
            },
        });
        crate::fsutil::print_json(&v)?;
    } else {
        println!("Creator:           {}", c.creator);
        println!("FeatureFlags:      {}", flags.join(" "));
        println!("EncryptedKey:      {}B", c.encrypted_key_len());
        println!(
            "ScryptObject:      Salt={}B N={} (2^{}) R={} P={} KeyLen=32",
            c.scrypt.salt.len(),
            c.scrypt.n(),
            c.scrypt.log_n,
            c.scrypt.r,
            c.scrypt.p
        );
        println!("contentEncryption: {}", l.content.name());
        println!(
            "names:             {names}{}{}",
            if names == "plaintext" {
                ""
            } else if dir_iv {
                ", per-directory IV"
            } else {
                ", deterministic (no diriv)"
            },
            lnm.map(|n| format!(", long names hashed above {n} chars"))
                .unwrap_or_default()
        );
    }
    Ok(Exit::Ok)
}
