//! The fuzz corpora on stable: every file of every `fuzz/corpus/<target>/` runs through the
//! same body the cargo-fuzz target wraps (`gocryptfs_format::internal::fuzzing::*`,
//! `attest::internal::fuzzing::*`), so CI checks each target's property on its seeds and on
//! every input a fuzz run found worth keeping, without nightly or libFuzzer.
//!
//! `generate_fuzz_seeds` (ignored; run by hand) rewrites the generated seeds: blocks, names
//! and long names sealed with the fixed keys the bodies use, and KBS messages taken from the
//! test KBS over plain HTTP on 127.0.0.1. See docs/fuzzing.md.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gocryptfs_format::configfile::NameLayout;
use gocryptfs_format::contentenc::{ContentEnc, FileId};
use gocryptfs_format::cryptocore::{Backend, ContentAlgo, ContentCipher, MasterKey};
use gocryptfs_format::nametransform::{DirIv, NameTransform};
use sha2::Digest as _;
use test_kbs::{KbsConfig, Policy, TestKbs};

type Body = fn(&[u8]);

/// Every fuzz target and its body. A corpus directory without an entry here fails the test,
/// so a new target cannot be forgotten.
fn bodies() -> BTreeMap<&'static str, Body> {
    use attest::internal::fuzzing as a;
    use gocryptfs_format::internal::fuzzing as f;
    BTreeMap::from([
        ("config", f::config as Body),
        ("header", f::header),
        ("block_open", f::block_open),
        ("encrypted_name", f::encrypted_name),
        ("long_name_file", f::long_name_file),
        ("diriv", f::diriv),
        ("base64", f::base64),
        ("manifest", f::manifest),
        (
            "safetensors_header",
            gpu_loader::internal::fuzzing::safetensors_header,
        ),
        ("kbs_json", a::kbs_json),
        ("jwe", a::jwe),
        ("resource_uri", a::resource_uri),
        ("token_claims", a::token_claims),
        ("sealed_secret", a::sealed_secret),
        ("secure_mount_request", a::secure_mount_request),
        ("s3_location", s3_source::internal::fuzzing::s3_location),
        (
            "storage_credentials",
            s3_source::internal::fuzzing::storage_credentials,
        ),
        ("listing_keys", s3_source::internal::fuzzing::listing_keys),
    ])
}

fn corpus_root() -> PathBuf {
    e2e::tests_dir().join("../fuzz/corpus")
}

#[test]
fn replay_every_corpus_file() {
    let bodies = bodies();
    let root = corpus_root();
    let mut seen = Vec::new();
    for dir in fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let body = bodies
            .get(name.as_str())
            .unwrap_or_else(|| panic!("fuzz/corpus/{name}: no body registered in bodies()"));
        let mut n = 0;
        for f in fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            let data = fs::read(&p).unwrap();
            // A panic names the file: rerun it with `cargo +nightly fuzz run <target> <file>`.
            let r = std::panic::catch_unwind(|| body(&data));
            assert!(r.is_ok(), "{} violates the {name} property", p.display());
            n += 1;
        }
        assert!(n > 0, "fuzz/corpus/{name} is empty");
        seen.push(name);
    }
    seen.sort();
    let want: Vec<&str> = bodies.keys().copied().collect();
    assert_eq!(seen, want, "every target has a seed corpus");
}

/// Regression inputs found by fuzzing (docs/fuzzing.md, "Findings"): each stays in its
/// target's corpus; this names them so a deleted corpus file cannot hide a regression.
#[test]
fn fuzz_findings_stay_fixed() {
    let root = corpus_root();
    for (target, file) in FINDINGS {
        let p = root.join(target).join(file);
        let data = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        bodies()[target](&data);
    }
}

/// (target, corpus file) of every fuzz finding.
const FINDINGS: &[(&str, &str)] = &[];

// ---- seed generation -------------------------------------------------------------------

fn write_seed(target: &str, name: &str, data: &[u8]) {
    let dir = corpus_root().join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), data).unwrap();
}

/// Seeds named by content, as libFuzzer names its corpus files (sha1 there; sha256 here).
fn write_hashed(target: &str, data: &[u8]) {
    let h = hex::encode(sha2::Sha256::digest(data));
    write_seed(target, &format!("seed-{}", &h[..16]), data);
}

fn fixture_seeds() {
    let root = e2e::tests_dir().join("fixtures/gocryptfs-2.3");
    for v in [
        "default",
        "xchacha",
        "aessiv",
        "plaintextnames",
        "deterministic",
        "longnamemax62",
    ] {
        let dir = root.join(v);
        write_hashed("config", &fs::read(dir.join("gocryptfs.conf")).unwrap());
        let mut files = Vec::new();
        collect(&dir, &mut files);
        files.sort();
        for p in files.iter().take(40) {
            let data = fs::read(p).unwrap();
            let name = p.file_name().unwrap().as_bytes();
            if name == b"gocryptfs.diriv" {
                write_hashed("diriv", &data);
                continue;
            }
            if name != b"gocryptfs.conf" && data.len() >= 18 && !name.ends_with(b".name") {
                write_hashed("header", &data[..data.len().min(64)]);
            }
            if !name.starts_with(b"gocryptfs.") {
                write_hashed("encrypted_name", name);
                write_hashed("base64", name);
            }
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Blocks, names and long names sealed with the fixed keys of the fuzz bodies, so that the
/// fuzzer starts from inputs that pass authentication and reach the round-trip checks.
fn keyed_seeds() {
    let id = FileId([7; 16]);
    for (algo, klen, nonce_len, sizes) in [
        (ContentAlgo::AesGcm, 32, 16, &[1usize, 100, 4096][..]),
        (ContentAlgo::XChaCha20Poly1305, 32, 24, &[33][..]),
        (ContentAlgo::AesSiv, 64, 16, &[17][..]),
    ] {
        let key = [0x24u8; 64];
        let c = ContentCipher::new(algo, Backend::RustCrypto, &key[..klen]).unwrap();
        let enc = ContentEnc::new(c);
        for &n in sizes {
            let pt: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let nonce: Vec<u8> = (0..nonce_len).map(|i| (i + n) as u8 | 1).collect();
            let block_no = u64::from(nonce[0]);
            let mut out = vec![0u8; n + nonce_len + 16];
            let m = enc
                .encrypt_block_with_nonce(&pt, block_no, &id, &nonce, &mut out)
                .unwrap();
            write_hashed("block_open", &out[..m]);
        }
    }
    write_hashed("block_open", &[0u8; 4128]);

    let iv = DirIv([9; 16]);
    let key = MasterKey::from_bytes(&[0x42; 32]).unwrap();
    for raw64 in [true, false] {
        let nt = NameTransform::new(
            NameLayout::Encrypted {
                dir_iv: true,
                raw64,
                long_name_max: 255,
            },
            &key,
            true,
        );
        for plain in [
            &b"config.json"[..],
            b"model-00001-of-00004.safetensors",
            b"a",
            &[b'x'; 255][..],
        ] {
            let cipher = nt.encrypt_name_unchecked(plain, &iv);
            write_hashed("encrypted_name", cipher.as_bytes());
            write_hashed("base64", cipher.as_bytes());
            let mut pair = nt.hash_long_name(&cipher).into_bytes();
            pair.push(0);
            pair.extend_from_slice(cipher.as_bytes());
            write_hashed("long_name_file", &pair);
        }
    }
    write_hashed("diriv", &[9; 16]);
}

/// One HTTP/1.1 exchange over plain TCP; returns (status line, body).
fn http(addr: &str, req: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    (
        head.lines().next().unwrap().to_owned(),
        buf[split + 4..].to_vec(),
    )
}

fn kbs_seeds() {
    let kbs = TestKbs::start(
        KbsConfig::default()
            .http()
            .with_policy(Policy::allow_all())
            .with_resource("default/key/model", b"model password".to_vec()),
    )
    .unwrap();
    let addr = kbs.addr().to_string();
    let auth = r#"{"version":"0.4.0","tee":"sample","extra-params":""}"#;
    let (_, challenge) = http(
        &addr,
        &format!(
            "POST /kbs/v0/auth HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{auth}",
            auth.len()
        ),
    );
    write_hashed("kbs_json", &challenge);
    let bad = r#"{"version":"0.2.0","tee":"sample","extra-params":""}"#;
    let (_, err) = http(
        &addr,
        &format!(
            "POST /kbs/v0/auth HTTP/1.1\r\nHost: k\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
            bad.len()
        ),
    );
    write_hashed("kbs_json", &err);

    // A token for the fixed key of the `jwe` body, then the resource sealed to that key.
    let key = attest::jwe::TeeKeyPair::from_ec_scalar(&[0x11; 32]).unwrap();
    let jwk = serde_json::to_value(key.public_jwk()).unwrap();
    let token = kbs
        .issue_token("sample", &jwk, Duration::from_secs(3600))
        .unwrap();
    write_hashed("token_claims", token.as_bytes());
    write_hashed(
        "kbs_json",
        serde_json::json!({ "token": token }).to_string().as_bytes(),
    );
    let (status, jwe) = http(
        &addr,
        &format!(
            "GET /kbs/v0/resource/default/key/model HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(status.contains(" 200 "), "{status}");
    assert!(attest::jwe::decrypt(&key, &jwe).is_ok());
    write_hashed("jwe", &jwe);
    let (_, missing) = http(
        &addr,
        &format!(
            "GET /kbs/v0/resource/default/key/absent HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    );
    write_hashed("kbs_json", &missing);
    write_hashed(
        "kbs_json",
        b"kbs-session-id=0123456789abcdef0123456789abcdef; Expires=Mon, 23 Nov 2026 12:00:00 GMT",
    );

    for uri in [
        "kbs:///default/key/model",
        "kbs://kbs.example:8080/default/aliyun/model-decryption-key",
        "kbs:///a/b/c",
        "kbs:///default/../x",
        "kbs:///a//c",
    ] {
        write_hashed("resource_uri", uri.as_bytes());
    }
}

#[test]
#[ignore = "writes fuzz/corpus/; run by hand: cargo nextest run -p e2e --run-ignored only generate_fuzz_seeds"]
fn generate_fuzz_seeds() {
    fixture_seeds();
    keyed_seeds();
    kbs_seeds();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, .. Default::default() })]

    /// The `attest` bodies hold on arbitrary bytes and on JSON-shaped noise (the
    /// `fuse-decrypt` bodies have the same check in `fuse-decrypt/tests/it/props.rs`).
    #[test]
    fn attest_fuzz_bodies_on_random_input(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
        json in "\\{(\"[a-z_-]{1,12}\":(\"[A-Za-z0-9_.-]{0,40}\"|[0-9]{1,20}|null|\\{\\}),?){0,6}\\}",
    ) {
        for input in [&data[..], json.as_bytes()] {
            attest::internal::fuzzing::kbs_json(input);
            attest::internal::fuzzing::jwe(input);
            attest::internal::fuzzing::resource_uri(input);
            attest::internal::fuzzing::token_claims(input);
            attest::internal::fuzzing::sealed_secret(input);
            attest::internal::fuzzing::secure_mount_request(input);
        }
    }
}
