//! Known answers from `tests/fixtures/gocryptfs-2.3/KAT.json` (made with the real gocryptfs
//! 2.3 and cross-checked there): config unwrap, HKDF subkeys, EME names, blocks of all three
//! AEADs, a symlink blob. `reverse_pathiv` is not applicable: we read reverse views in forward
//! mode, where every derived value is stored, so nothing here derives path IVs.

use std::ffi::OsStr;

use gocryptfs_format::configfile::{Config, NameLayout, ScryptParams};
use gocryptfs_format::contentenc::ContentEnc;
use gocryptfs_format::cryptocore::{ContentCipher, Subkey, derive_subkey};
use gocryptfs_format::nametransform::{DirIv, DiskName, NameTransform, XATTR_IV, b64_encode};
use gocryptfs_format::{Backend, ContentAlgo, FileId, MasterKey};

use crate::{corpus, h, kat};

#[test]
fn config_unwrap_default() {
    let k = &kat()["config_unwrap_default"];
    let params = ScryptParams::new(
        h(&k["scrypt_salt_hex"]),
        k["scrypt_N"].as_u64().unwrap(),
        k["scrypt_r"].as_u64().unwrap(),
        k["scrypt_p"].as_u64().unwrap(),
        k["scrypt_keylen"].as_u64().unwrap(),
    )
    .unwrap();
    let kek = params.derive(k["password"].as_str().unwrap().as_bytes());
    assert_eq!(kek.to_vec(), h(&k["kek_hex (scrypt output)"]));
    let wrap = derive_subkey(&*kek, Subkey::Gcm);
    assert_eq!(
        wrap.to_vec(),
        h(
            &k["wrap_key_hex = HKDF-SHA256(ikm=kek, salt=none, info='AES-GCM file content encryption', 32)"]
        )
    );
    let conf = std::fs::read(corpus().join("default/gocryptfs.conf")).unwrap();
    let c = Config::parse(&conf).unwrap();
    assert_eq!(c.scrypt.salt, h(&k["scrypt_salt_hex"]));
    let m = c
        .unlock(k["password"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(m.expose_secret().to_vec(), h(&k["masterkey_hex"]));
}

#[test]
fn derived_subkeys() {
    for set in ["derived_keys_default", "derived_keys_zerokey"] {
        let k = &kat()[set];
        let m = h(&k["masterkey_hex"]);
        for (field, which) in [
            (
                "eme_key = HKDF(m, 'EME filename encryption', 32)",
                Subkey::Eme,
            ),
            (
                "gcm_key = HKDF(m, 'AES-GCM file content encryption', 32)",
                Subkey::Gcm,
            ),
            (
                "siv_key = HKDF(m, 'AES-SIV file content encryption', 64)",
                Subkey::Siv,
            ),
            (
                "xchacha_key = HKDF(m, 'XChaCha20-Poly1305 file content encryption', 32)",
                Subkey::XChaCha,
            ),
            ("legacy_siv_key_noHKDF = SHA512(m)", Subkey::LegacySiv),
        ] {
            assert_eq!(
                derive_subkey(&m, which).to_vec(),
                h(&k[field]),
                "{set} {field}"
            );
        }
    }
}

fn zero_names() -> NameTransform {
    NameTransform::new(
        NameLayout::Encrypted {
            dir_iv: true,
            raw64: true,
            long_name_max: 255,
        },
        &MasterKey::from_bytes(&[0u8; 32]).unwrap(),
        true,
    )
}

#[test]
fn eme_names_zerokey() {
    let k = &kat()["names_zerokey_iv_0102..10"];
    let iv = DirIv(h(&k["iv_hex"]).try_into().unwrap());
    let nt = zero_names();
    let names = k["names"].as_object().unwrap();
    assert!(names.len() >= 8);
    for (label, v) in names {
        let plain = match label.strip_prefix("'x'*") {
            Some(n) => "x".repeat(n.parse().unwrap()),
            None => label.clone(),
        };
        let c = nt.encrypt_name(plain.as_bytes(), &iv).unwrap();
        assert_eq!(c, v["raw64_name"].as_str().unwrap(), "{label}");
        assert_eq!(c.len() as u64, v["len"].as_u64().unwrap());
        if let Some(e) = v["eme_ciphertext_hex"].as_str() {
            assert_eq!(b64_encode(&hex::decode(e).unwrap(), true), c);
        }
        let disk = nt.to_disk(OsStr::new(&plain), &iv).unwrap();
        assert_eq!(
            disk.on_disk(),
            OsStr::new(v["on_disk"].as_str().unwrap()),
            "{label}"
        );
        if let DiskName::Long { hashed, cipher } = &disk {
            assert_eq!(
                nt.check_long_name(OsStr::new(hashed), cipher.as_bytes())
                    .unwrap(),
                cipher.as_bytes()
            );
        }
        assert_eq!(
            nt.decrypt_name(c.as_bytes(), &iv).unwrap(),
            plain.as_bytes()
        );
    }
}

#[test]
fn xattr_name_iv() {
    assert_eq!(h(&kat()["xattr_name_iv"]), XATTR_IV);
}

fn block_kat(field: &str, algo: ContentAlgo) {
    let k = &kat()[field];
    let master = MasterKey::from_bytes(&[0u8; 32]).unwrap();
    let backends = if algo == ContentAlgo::AesGcm {
        Backend::all()
    } else {
        vec![Backend::RustCrypto]
    };
    let block_field = k
        .as_object()
        .unwrap()
        .keys()
        .find(|f| f.starts_with("block_hex"))
        .unwrap()
        .clone();
    let want = h(&k[&block_field]);
    let id = FileId(h(&k["file_id_hex"]).try_into().unwrap());
    let block_no = k["block_no"].as_u64().unwrap();
    let pt = k["plaintext"].as_str().unwrap().as_bytes();
    for b in backends {
        let enc = ContentEnc::new(ContentCipher::from_master(algo, b, &master, true).unwrap());
        let mut out = vec![0u8; want.len()];
        let n = enc
            .encrypt_block_with_nonce(pt, block_no, &id, &h(&k["nonce_hex"]), &mut out)
            .unwrap();
        assert_eq!(&out[..n], &want[..], "{field} {b:?}");
        let mut back = vec![0u8; 4096];
        let m = enc.decrypt_block(&want, block_no, &id, &mut back).unwrap();
        assert_eq!(&back[..m], pt);
        assert!(
            enc.decrypt_block(&want, block_no + 1, &id, &mut back)
                .is_err()
        );
    }
}

#[test]
fn gcm_block_zerokey() {
    block_kat("gcm_block_zerokey", ContentAlgo::AesGcm);
}

#[test]
fn xchacha_block_zerokey() {
    block_kat("xchacha_block_zerokey", ContentAlgo::XChaCha20Poly1305);
}

#[test]
fn aessiv_block_zerokey() {
    block_kat("aessiv_block_zerokey", ContentAlgo::AesSiv);
}

#[test]
fn symlink_zerokey() {
    let k = &kat()["symlink_zerokey"];
    let master = MasterKey::from_bytes(&[0u8; 32]).unwrap();
    let enc = ContentEnc::new(
        ContentCipher::from_master(ContentAlgo::AesGcm, Backend::preferred(), &master, true)
            .unwrap(),
    );
    let blob = enc
        .seal_blob_with_nonce(
            k["target"].as_str().unwrap().as_bytes(),
            &h(&k["nonce_hex"]),
        )
        .unwrap();
    assert_eq!(b64_encode(&blob, true), k["on_disk"].as_str().unwrap());
    assert_eq!(
        enc.open_blob(&blob).unwrap(),
        k["target"].as_str().unwrap().as_bytes()
    );
}
