//! The GPU loader's pipeline on the CPU copy target (no GPU needed): byte-exact loads of
//! trees written by our writer, by gocryptfs (the 2.3 corpus, and a live mount when root and
//! FUSE are available); every chunk/depth shape; random copy delays; forced overlap and
//! out-of-order completion; tampered, truncated and empty files; injected copy and
//! allocation failures (device memory freed, no hang); the device-copy check; safetensors
//! headers against the reference implementation.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use e2e::gocryptfs::{self, Mount};
use e2e::tree::Rng;
use e2e::{corpus, skip_unless};
use gocryptfs_format::writer::{InitOptions, encrypt_tree};
use gocryptfs_format::{CipherDir, Error as FError, ErrorKind as FKind, KeySource, NoProgress};
use gpu_loader::cpu::{CpuOptions, CpuTarget, Gate};
use gpu_loader::safetensors::{self as st, Dtype};
use gpu_loader::{Error, ErrorKind, GpuError, LoadOptions, Loader};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const CHUNK: usize = 64 * 1024;

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Encrypts `files` (name, contents) with our writer; returns the temp dir and the open
/// cipher directory.
fn tree(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, CipherDir) {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    for (name, data) in files {
        let p = plain.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    let cipher = tmp.path().join("cipher");
    let opts = InitOptions {
        scrypt_log_n: 10,
        ..InitOptions::default()
    };
    encrypt_tree(&plain, &cipher, b"pw", &opts, &NoProgress).unwrap();
    let dir = CipherDir::open(
        &cipher,
        KeySource::password_from_passfile(b"pw").unwrap(),
        &corpus::gocryptfs_opts(),
    )
    .unwrap();
    (tmp, dir)
}

fn opts(chunk: usize, depth: usize) -> LoadOptions {
    LoadOptions {
        chunk_bytes: chunk,
        depth,
        hash: true,
        file_hash: true,
    }
}

/// The cipher file backing plaintext `name`.
fn cipher_path(dir: &CipherDir, name: &str) -> PathBuf {
    dir.root()
        .join(dir.resolve(Path::new(name)).unwrap().cipher_path)
}

fn sizes() -> Vec<(String, Vec<u8>)> {
    [
        0usize,
        1,
        17,
        4095,
        4096,
        4097,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        3 * CHUNK + 123,
        (1 << 20) + 4096 * 3 + 5,
    ]
    .iter()
    .enumerate()
    .map(|(i, &n)| (format!("f{i}_{n}.bin"), random(n, i as u64 + 1)))
    .collect()
}

#[test]
fn our_tree_loads_byte_exact_for_every_chunk_and_depth() {
    let files = sizes();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let (_tmp, dir) = tree(&refs);
    let target = CpuTarget::new(CpuOptions::default()).unwrap();
    for chunk in [4096, CHUNK, 1 << 20, 4 << 20] {
        for depth in [1, 2, 4] {
            let mut loader = Loader::new(&target, opts(chunk, depth)).unwrap();
            for (name, data) in &files {
                let f = loader
                    .load_path(&dir, Path::new(name), &NoProgress)
                    .unwrap();
                assert_eq!(f.len, data.len() as u64);
                assert!(
                    f.device.to_vec() == *data,
                    "{name}: chunk {chunk} depth {depth}"
                );
                assert!(f.stats.max_in_flight <= depth);
                assert_eq!(f.stats.chunks, (data.len() as u64).div_ceil(chunk as u64));
                assert!(f.tensors.is_none());
                loader.verify(&f).unwrap();
            }
        }
    }
    assert_eq!(target.live_device_bytes(), 0);
}

#[test]
fn random_copy_delays_on_many_engines_keep_bytes_exact() {
    let data = random(40 * 4096 + 77, 9);
    let (_tmp, dir) = tree(&[("m.bin", data.clone())]);
    for seed in 1..=3 {
        let target = CpuTarget::new(CpuOptions {
            engines: 4,
            delay_ms: Some((0, 4)),
            seed,
            ..CpuOptions::default()
        })
        .unwrap();
        let mut loader = Loader::new(&target, opts(8192, 6)).unwrap();
        let f = loader
            .load_path(&dir, Path::new("m.bin"), &NoProgress)
            .unwrap();
        assert!(f.device.to_vec() == data, "seed {seed}");
        loader.verify(&f).unwrap();
    }
}

#[test]
fn decryption_overlaps_copies_in_a_deep_pipeline() {
    let data = random(24 * 4096, 3);
    let (_tmp, dir) = tree(&[("m.bin", data.clone())]);
    // Copy k cannot complete before copy k+1 was submitted: only a pipeline that decrypts
    // the next chunk while a copy is in flight gets through without gate timeouts.
    let target = CpuTarget::new(CpuOptions {
        gate: Gate::NextSubmitted,
        ..CpuOptions::default()
    })
    .unwrap();
    let mut loader = Loader::new(&target, opts(4096, 3)).unwrap();
    let f = loader
        .load_path(&dir, Path::new("m.bin"), &NoProgress)
        .unwrap();
    assert!(f.device.to_vec() == data);
    let s = target.stats();
    assert_eq!(s.gate_timeouts, 0, "the pipeline did not overlap: {s:?}");
    assert!(s.max_in_flight >= 2, "{s:?}");
    assert!(f.stats.max_in_flight >= 2);

    // Depth 1 is still correct, with one copy at a time.
    let target = CpuTarget::new(CpuOptions::default()).unwrap();
    let mut loader = Loader::new(&target, opts(4096, 1)).unwrap();
    let f = loader
        .load_path(&dir, Path::new("m.bin"), &NoProgress)
        .unwrap();
    assert!(f.device.to_vec() == data);
    assert_eq!(target.stats().max_in_flight, 1);
    assert_eq!(f.stats.max_in_flight, 1);
}

#[test]
fn out_of_order_completion_is_handled() {
    let data = random(33 * 4096 + 5, 4);
    let (_tmp, dir) = tree(&[("m.bin", data.clone())]);
    let target = CpuTarget::new(CpuOptions {
        engines: 2,
        gate: Gate::ReversePairs,
        ..CpuOptions::default()
    })
    .unwrap();
    let mut loader = Loader::new(&target, opts(4096, 3)).unwrap();
    let f = loader
        .load_path(&dir, Path::new("m.bin"), &NoProgress)
        .unwrap();
    let s = target.stats();
    assert_eq!(s.gate_timeouts, 0, "{s:?}");
    assert!(
        s.out_of_order,
        "copies should have completed out of order: {s:?}"
    );
    assert!(f.device.to_vec() == data);
    loader.verify(&f).unwrap();
}

#[test]
fn tampered_block_aborts_the_load_names_file_and_block_and_frees_the_device() {
    let good = random(10 * 4096, 5);
    let (_tmp, dir) = tree(&[("bad.bin", good.clone()), ("ok.bin", good.clone())]);
    // Flip one ciphertext byte inside block 5 (after the header).
    let cp = cipher_path(&dir, "bad.bin");
    let f = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&cp)
        .unwrap();
    let cbs = dir.content().geometry().cipher_bs();
    let at = 18 + 5 * cbs + 100;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    drop(f);

    for depth in [1, 3] {
        let target = CpuTarget::new(CpuOptions {
            delay_ms: Some((0, 2)),
            ..CpuOptions::default()
        })
        .unwrap();
        let mut loader = Loader::new(&target, opts(8192, depth)).unwrap();
        let err = loader
            .load_path(&dir, Path::new("bad.bin"), &NoProgress)
            .unwrap_err();
        match &err {
            Error::Format(FError::Authentication { path, block }) => {
                assert_eq!(path, Path::new("bad.bin"));
                assert_eq!(*block, 5);
            }
            e => panic!("expected an authentication error, got {e:?}"),
        }
        assert_eq!(err.kind(), ErrorKind::Format(FKind::Corrupt));
        let msg = err.to_string();
        assert!(msg.contains("bad.bin") && msg.contains("block 5"), "{msg}");
        assert_eq!(target.live_device_bytes(), 0, "device memory leaked");
        // Nothing of the chunk holding the bad block (blocks 4..6) reached the device.
        let sent = target.stats().max_copied_end;
        assert!(sent <= 4 * 4096, "bytes up to {sent} were copied");
        // The loader (and its staging ring) is still usable.
        let f = loader
            .load_path(&dir, Path::new("ok.bin"), &NoProgress)
            .unwrap();
        assert!(f.device.to_vec() == good);
    }
}

#[test]
fn truncated_file_fails_naming_the_block() {
    let (_tmp, dir) = tree(&[("t.bin", random(6 * 4096, 6))]);
    let cp = cipher_path(&dir, "t.bin");
    let len = fs::metadata(&cp).unwrap().len();
    // Cut into block 4's tag: the plaintext size shrinks, the last block fails.
    let cbs = dir.content().geometry().cipher_bs();
    fs::OpenOptions::new()
        .write(true)
        .open(&cp)
        .unwrap()
        .set_len(18 + 4 * cbs + 2000)
        .unwrap();
    assert!(len > 18 + 4 * cbs + 2000);
    let target = CpuTarget::new(CpuOptions::default()).unwrap();
    let mut loader = Loader::new(&target, opts(4096, 2)).unwrap();
    let err = loader
        .load_path(&dir, Path::new("t.bin"), &NoProgress)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Format(FError::Authentication { block: 4, .. } | FError::Block { block: 4, .. })
        ),
        "{err:?}"
    );
    assert_eq!(target.live_device_bytes(), 0);
}

#[test]
fn injected_copy_failure_aborts_without_hanging_and_frees_the_device() {
    let data = random(20 * 4096, 7);
    let (_tmp, dir) = tree(&[("m.bin", data.clone())]);
    for (depth, fail) in [(1, 0), (1, 3), (3, 2), (4, 19)] {
        let target = CpuTarget::new(CpuOptions {
            engines: 2,
            delay_ms: Some((0, 1)),
            fail_copy: Some(fail),
            ..CpuOptions::default()
        })
        .unwrap();
        let mut loader = Loader::new(&target, opts(4096, depth)).unwrap();
        let err = loader
            .load_path(&dir, Path::new("m.bin"), &NoProgress)
            .unwrap_err();
        assert!(
            matches!(err, Error::Gpu(GpuError::Copy { .. })),
            "depth {depth} fail {fail}: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Gpu);
        assert_eq!(target.live_device_bytes(), 0);
        // Later loads work (the failed copy's buffer is replaced).
        let f = loader
            .load_path(&dir, Path::new("m.bin"), &NoProgress)
            .unwrap();
        assert!(f.device.to_vec() == data);
    }
}

#[test]
fn device_out_of_memory_is_a_gpu_error() {
    let (_tmp, dir) = tree(&[("m.bin", random(10_000, 8))]);
    let target = CpuTarget::new(CpuOptions {
        device_limit: Some(4096),
        ..CpuOptions::default()
    })
    .unwrap();
    let mut loader = Loader::new(&target, LoadOptions::default()).unwrap();
    let err = loader
        .load_path(&dir, Path::new("m.bin"), &NoProgress)
        .unwrap_err();
    assert!(
        matches!(err, Error::Gpu(GpuError::OutOfMemory { bytes: 10_000 })),
        "{err:?}"
    );
    assert!(err.to_string().contains("out of GPU memory"));
}

#[test]
fn verify_detects_a_corrupted_device_copy() {
    let data = random(5 * 4096, 10);
    let (_tmp, dir) = tree(&[("m.bin", data)]);
    let target = CpuTarget::new(CpuOptions::default()).unwrap();
    let mut loader = Loader::new(&target, opts(8192, 2)).unwrap();
    let f = loader
        .load_path(&dir, Path::new("m.bin"), &NoProgress)
        .unwrap();
    loader.verify(&f).unwrap();
    f.device.corrupt(5000);
    let err = loader.verify(&f).unwrap_err();
    match err {
        Error::Gpu(GpuError::Mismatch { path, start, end }) => {
            assert_eq!(path, Path::new("m.bin"));
            // Pieces are min(1 MiB, chunk) = 8192 bytes here.
            assert_eq!((start, end), (0, 8192));
        }
        e => panic!("{e:?}"),
    }
    // Without hashes there is nothing to verify against.
    let mut loader = Loader::new(
        &target,
        LoadOptions {
            hash: false,
            ..opts(8192, 2)
        },
    )
    .unwrap();
    let f = loader
        .load_path(&dir, Path::new("m.bin"), &NoProgress)
        .unwrap();
    assert!(matches!(
        loader.verify(&f),
        Err(Error::Gpu(GpuError::NotHashed { .. }))
    ));
}

#[test]
fn bad_options_are_refused() {
    let target = CpuTarget::new(CpuOptions::default()).unwrap();
    for o in [
        opts(0, 2),
        opts(1000, 2),
        opts(3 << 19, 2),
        opts(4096, 0),
        opts(4096, 65),
    ] {
        let e = Loader::new(&target, o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{o:?}");
    }
}

/// A safetensors file made by the reference (Hugging Face) writer.
fn reference_safetensors() -> Vec<u8> {
    use safetensors::tensor::{Dtype as D, TensorView};
    let a = random(4 * 6 * 2, 11);
    let b = random(1000 * 4, 12);
    let c = random(3, 13);
    let tensors = vec![
        (
            "model.embed.weight",
            TensorView::new(D::BF16, vec![4, 6], &a).unwrap(),
        ),
        (
            "model.layers.0.mlp.weight",
            TensorView::new(D::F32, vec![10, 100], &b).unwrap(),
        ),
        ("scale", TensorView::new(D::U8, vec![3], &c).unwrap()),
    ];
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(tensors, Some(meta)).unwrap()
}

#[test]
fn safetensors_from_the_reference_writer_report_their_tensors() {
    let file = reference_safetensors();
    let (_tmp, dir) = tree(&[("model/model.safetensors", file.clone())]);
    let target = CpuTarget::new(CpuOptions::default()).unwrap();
    let mut loader = Loader::new(&target, opts(4096, 2)).unwrap();
    let f = loader
        .load_path(&dir, Path::new("model/model.safetensors"), &NoProgress)
        .unwrap();
    let dev = f.device.to_vec();
    assert!(dev == file);
    let tensors = f.tensors.as_ref().unwrap();
    let reference = safetensors::SafeTensors::deserialize(&file).unwrap();
    let (n, _) = safetensors::SafeTensors::read_metadata(&file).unwrap();
    assert_eq!(tensors.len(), reference.len());
    for t in tensors {
        let r = reference.tensor(&t.name).unwrap();
        assert_eq!(t.dtype.as_str(), r.dtype().to_string());
        assert_eq!(
            t.shape,
            r.shape().iter().map(|&d| d as u64).collect::<Vec<_>>()
        );
        assert!(t.range.start >= 8 + n as u64);
        assert_eq!(
            &dev[t.range.start as usize..t.range.end as usize],
            r.data(),
            "{}",
            t.name
        );
    }
}

#[test]
fn a_bad_safetensors_header_fails_before_any_device_memory_is_used() {
    let mut bad = reference_safetensors();
    bad[0] = 0xff; // header length far past the end
    let (_tmp, dir) = tree(&[("x.safetensors", bad), ("empty.safetensors", Vec::new())]);
    let target = CpuTarget::new(CpuOptions::default()).unwrap();
    let mut loader = Loader::new(&target, LoadOptions::default()).unwrap();
    for name in ["x.safetensors", "empty.safetensors"] {
        let err = loader
            .load_path(&dir, Path::new(name), &NoProgress)
            .unwrap_err();
        assert!(matches!(err, Error::Safetensors { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Format(FKind::Corrupt));
        assert!(err.to_string().contains(name));
    }
    assert_eq!(target.stats().copies, 0);
    assert_eq!(target.live_device_bytes(), 0);
}

#[test]
fn directories_are_not_loadable() {
    let (_tmp, dir) = tree(&[("d/f.bin", random(10, 1))]);
    let target = CpuTarget::new(CpuOptions::default()).unwrap();
    let mut loader = Loader::new(&target, LoadOptions::default()).unwrap();
    let err = loader
        .load_path(&dir, Path::new("d"), &NoProgress)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Format(FKind::Usage));
}

/// Every regular file of the gocryptfs-made corpus loads with the plaintext SHA-256 the
/// manifest recorded.
#[test]
fn gocryptfs_corpus_files_load_byte_exact() {
    let m = corpus::manifest();
    let tmp = tempfile::tempdir().unwrap();
    let target = CpuTarget::new(CpuOptions {
        engines: 3,
        delay_ms: Some((0, 1)),
        ..CpuOptions::default()
    })
    .unwrap();
    let mut checked = 0;
    for v in [
        "default",
        "xchacha",
        "aessiv",
        "plaintextnames",
        "deterministic",
        "longnamemax62",
    ] {
        let root = corpus::materialize(v, tmp.path());
        let key = KeySource::password_from_passfile(m.password.as_bytes()).unwrap();
        let dir = CipherDir::open(&root, key, &corpus::gocryptfs_opts()).unwrap();
        let mut loader = Loader::new(&target, opts(8192, 3)).unwrap();
        for e in &m.variants[v].entries {
            if e.kind != "file" {
                continue;
            }
            let plain = e.plain_bytes();
            let f = loader
                .load_path(&dir, Path::new(OsStr::from_bytes(&plain)), &NoProgress)
                .unwrap_or_else(|err| panic!("{v}: {err}"));
            let got = hex::encode(Sha256::digest(f.device.to_vec()));
            assert_eq!(Some(got), e.sha256.clone(), "{v}: {:?}", e.plain);
            loader.verify(&f).unwrap();
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} files checked");
}

/// Files written through a live gocryptfs mount (default and XChaCha trees) load exactly.
#[test]
fn gocryptfs_written_files_load_byte_exact() {
    skip_unless!(gocryptfs::skip_reason());
    for args in [&[][..], &["-xchacha"][..]] {
        let tmp = tempfile::tempdir().unwrap();
        let pass = tmp.path().join("pass");
        fs::write(&pass, "gpu test\n").unwrap();
        let cipher = tmp.path().join("cipher");
        gocryptfs::init(&cipher, &pass, args);
        let files = sizes();
        let m = Mount::new(&cipher, &tmp.path().join("mnt"), Some(&pass), &[]);
        for (name, data) in &files {
            fs::write(m.path().join(name), data).unwrap();
        }
        fs::write(m.path().join("w.safetensors"), reference_safetensors()).unwrap();
        m.unmount();
        let key = KeySource::password_from_passfile(&fs::read(&pass).unwrap()).unwrap();
        let dir = CipherDir::open(&cipher, key, &corpus::gocryptfs_opts()).unwrap();
        let target = CpuTarget::new(CpuOptions::default()).unwrap();
        let mut loader = Loader::new(&target, opts(CHUNK, 3)).unwrap();
        for (name, data) in &files {
            let f = loader
                .load_path(&dir, Path::new(name), &NoProgress)
                .unwrap();
            assert!(f.device.to_vec() == *data, "{args:?} {name}");
        }
        let f = loader
            .load_path(&dir, Path::new("w.safetensors"), &NoProgress)
            .unwrap();
        assert_eq!(f.tensors.unwrap().len(), 3);
    }
}

fn arb_reference_tensors()
-> impl Strategy<Value = Vec<(String, safetensors::tensor::Dtype, Vec<usize>)>> {
    use safetensors::tensor::Dtype as D;
    let dtypes = vec![
        D::BOOL,
        D::U8,
        D::I8,
        D::F16,
        D::BF16,
        D::F32,
        D::F64,
        D::I64,
        D::U16,
    ];
    proptest::collection::btree_map(
        "[a-z][a-z0-9._]{0,10}",
        (
            proptest::sample::select(dtypes),
            proptest::collection::vec(0usize..4, 0..3),
        ),
        0..6,
    )
    .prop_map(|m| m.into_iter().map(|(n, (d, s))| (n, d, s)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the reference writer produces, we parse to the same tensors.
    #[test]
    fn our_parser_agrees_with_the_reference_writer(ts in arb_reference_tensors()) {
        use safetensors::tensor::TensorView;
        let datas: Vec<Vec<u8>> = ts
            .iter()
            .map(|(_, d, s)| vec![0x3c; s.iter().product::<usize>() * d.bitsize() / 8])
            .collect();
        let views: Vec<(String, TensorView<'_>)> = ts
            .iter()
            .zip(&datas)
            .map(|((n, d, s), data)| (n.clone(), TensorView::new(*d, s.clone(), data).unwrap()))
            .collect();
        let file = safetensors::serialize(views, None).unwrap();
        let ours = st::parse(&file, file.len() as u64).unwrap();
        let reference = safetensors::SafeTensors::deserialize(&file).unwrap();
        prop_assert_eq!(ours.tensors.len(), reference.len());
        for t in &ours.tensors {
            let r = reference.tensor(&t.name).unwrap();
            prop_assert_eq!(Some(t.dtype), Dtype::parse(&r.dtype().to_string()));
            prop_assert_eq!(&file[t.range.start as usize..t.range.end as usize], r.data());
        }
    }

    /// We are never looser than the reference: anything we accept, it accepts too.
    #[test]
    fn what_we_accept_the_reference_accepts(
        ts in arb_reference_tensors(),
        at in any::<usize>(),
        x in 1u8..,
    ) {
        use safetensors::tensor::TensorView;
        let datas: Vec<Vec<u8>> = ts
            .iter()
            .map(|(_, d, s)| vec![1; s.iter().product::<usize>() * d.bitsize() / 8])
            .collect();
        let views: Vec<(String, TensorView<'_>)> = ts
            .iter()
            .zip(&datas)
            .map(|((n, d, s), data)| (n.clone(), TensorView::new(*d, s.clone(), data).unwrap()))
            .collect();
        let mut file = safetensors::serialize(views, None).unwrap();
        let i = at % file.len();
        file[i] ^= x;
        if st::parse(&file, file.len() as u64).is_ok() {
            prop_assert!(safetensors::SafeTensors::deserialize(&file).is_ok());
        }
        gpu_loader::internal::fuzzing::safetensors_header(&file);
    }
}

/// On a host with a CUDA driver and device: byte-exact loads of several shapes into real
/// device memory (read back and compared), the device-copy check, and a tampered block
/// refused with nothing returned. Elsewhere it prints `skipped: no GPU (reason)`.
#[test]
fn cuda_device_loads_byte_exact_and_refuses_tampered_blocks() {
    use gpu_loader::cuda::{CudaOptions, CudaTarget};
    let target = match CudaTarget::new(0, CudaOptions::default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIP {}: skipped: no GPU ({e})", module_path!());
            return;
        }
    };
    let files: Vec<(String, Vec<u8>)> = sizes();
    let named: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let (_tmp, dir) = tree(&named);
    for (chunk, depth) in [(4096, 1), (CHUNK, 3), (1 << 20, 2)] {
        let mut loader = Loader::new(&target, opts(chunk, depth)).unwrap();
        for (name, data) in &files {
            let f = loader
                .load_path(&dir, Path::new(name), &NoProgress)
                .unwrap();
            let mut back = vec![0u8; data.len()];
            if !back.is_empty() {
                use gpu_loader::CopyTarget as _;
                target.read_back(&f.device, 0, &mut back).unwrap();
            }
            assert!(back == *data, "{name} chunk {chunk} depth {depth}");
            loader.verify(&f).unwrap();
        }
    }
    // Tamper with the largest file and load it again.
    let (name, _) = files.iter().max_by_key(|(_, d)| d.len()).unwrap();
    let cp = cipher_path(&dir, name);
    let f = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&cp)
        .unwrap();
    let at = 18 + dir.content().geometry().cipher_bs() + 3;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    let mut loader = Loader::new(&target, opts(CHUNK, 3)).unwrap();
    let err = loader
        .load_path(&dir, Path::new(name), &NoProgress)
        .unwrap_err();
    assert!(
        matches!(err, Error::Format(FError::Authentication { block: 1, .. })),
        "{err:?}"
    );
}
