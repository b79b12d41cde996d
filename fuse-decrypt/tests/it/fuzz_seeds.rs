//! Replays the fuzz bodies (`fuse_decrypt::internal::fuzzing`) over seeds taken from the
//! corpus, plus every single-byte mutation of the small ones: the fuzz targets' properties
//! run in CI on stable, without libFuzzer.

use std::fs;
use std::path::Path;

use fuse_decrypt::internal::fuzzing;

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
