//! Replays the fuzz bodies (`gocryptfs_format::internal::fuzzing`) over seeds taken from the
//! corpus, plus every single-byte mutation of the small ones: the fuzz targets' properties
//! run in CI on stable, without libFuzzer.

use std::fs;
use std::path::Path;

use gocryptfs_format::internal::fuzzing;

use crate::corpus;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn mutations(seed: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..seed.len()).flat_map(move |i| {
        [0x01u8, 0x80, 0xff].into_iter().map(move |x| {
            let mut m = seed.to_vec();
            m[i] ^= x;
            m
        })
    })
}

#[test]
fn config_seeds() {
    for v in [
        "default",
        "xchacha",
        "aessiv",
        "plaintextnames",
        "deterministic",
        "longnamemax62",
    ] {
        let seed = fs::read(corpus().join(v).join("gocryptfs.conf")).unwrap();
        fuzzing::config(&seed);
        for m in mutations(&seed).step_by(7) {
            fuzzing::config(&m);
        }
        fuzzing::config(&seed[..seed.len() / 2]);
    }
}

#[test]
fn content_seeds() {
    let mut all = Vec::new();
    files(&corpus().join("default"), &mut all);
    for p in all {
        let data = fs::read(&p).unwrap();
        fuzzing::header(&data);
        if data.len() > 18 {
            let block = &data[18..data.len().min(18 + 4128)];
            fuzzing::block_open(block);
            for m in mutations(&block[..block.len().min(48)]) {
                fuzzing::block_open(&m);
            }
        }
        let name = p.file_name().unwrap().to_str().unwrap().as_bytes().to_vec();
        fuzzing::encrypted_name(&name);
        fuzzing::base64(&name);
        for m in mutations(&name) {
            fuzzing::encrypted_name(&m);
        }
        if name.ends_with(b".name") {
            let mut pair = name[..name.len() - 5].to_vec();
            pair.push(0);
            pair.extend_from_slice(&data);
            fuzzing::long_name_file(&pair);
        }
        if name == b"gocryptfs.diriv" {
            fuzzing::diriv(&data);
            for m in mutations(&data) {
                fuzzing::diriv(&m);
            }
        }
    }
    fuzzing::diriv(&[0u8; 16]);
    fuzzing::diriv(&[1u8; 17]);
}

/// A hand-built manifest with every entry type and both path encodings, and every
/// single-byte mutation of it; plus JSON shapes that stress the parser (deep nesting,
/// huge numbers, duplicate keys, pins).
#[test]
fn manifest_seeds() {
    let seed = br#"{"entries":[{"path":"a","type":"dir"},{"file_id":"02020202020202020202020202020202","path":"a/w.bin","sha256":"0101010101010101010101010101010101010101010101010101010101010101","size":5000,"type":"file"},{"path":"e","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"type":"file"},{"path":"l","target":"a/w.bin","type":"symlink"},{"path_b64":"bv8=","type":"other"}],"params":{"content":"AES-GCM-256","feature_flags":["DirIV","EMENames","GCMIV128","HKDF","LongNames","Raw64"],"scrypt":{"log2_n":16,"p":1,"r":8}},"schema":"ccmount.manifest/v2"}
"#;
    fuzzing::manifest(seed);
    assert!(
        gocryptfs_format::manifest::Manifest::parse(seed).is_ok(),
        "seed must be valid"
    );
    for m in mutations(seed) {
        fuzzing::manifest(&m);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for hostile in [
        deep.as_bytes(),
        b"{\"schema\":\"ccmount.manifest/v2\",\"schema\":\"x\"}",
        b"{\"entries\":[{\"path\":\"a\",\"type\":\"file\",\"size\":1e400}]}",
        b"sha256:",
        b"sha256:zz",
        b"  sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
        b"\xff\xfe",
        b"",
    ] {
        fuzzing::manifest(hostile);
    }
}
