//! Helper binary of `tests/bench/run.sh`: generates model-like trees and measures block
//! decryption of each AES-GCM backend against bare aws-lc EVP calls on one core.
//!
//! ```text
//! ccmount-bench gen DIR SIZE_MIB     # 4 large "safetensors" shards + many small files
//! ccmount-bench blocks MIB           # prints aws_lc=.. rustcrypto=.. evp=.. (MB/s, 1 core)
//! ccmount-bench fusetree DIR BIG_MIB NFILES   # big.bin + NFILES small files in small/dNN/
//! ccmount-bench mmapread FILE        # prints the MB/s of reading FILE through a shared mmap
//! ccmount-bench randread FILE N      # prints the ops/s of N random 4 KiB preads
//! ccmount-bench walk DIR [--read]    # prints the entries/s of an lstat (+ read) walk
//! ccmount-bench safetensors FILE SIZE_MIB  # one valid safetensors file of random BF16 tensors
//! ccmount-bench slurp FILE           # reads FILE into one heap buffer (a "load into memory")
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "benchmark tool"
)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use e2e::tree::Rng;
use gocryptfs_format::contentenc::ContentEnc;
use gocryptfs_format::cryptocore::{ContentCipher, bench_raw_evp_open};
use gocryptfs_format::{Backend, ContentAlgo, FileId};

fn write_random(path: &Path, size: u64, rng: &mut Rng, buf: &mut [u8]) {
    let mut f = fs::File::create(path).unwrap();
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// 7/8 of the bytes in 4 shards, 1/8 in small files of 4 KiB..512 KiB in a few dirs.
fn generate(dir: &Path, size_mib: u64) {
    let total = size_mib << 20;
    let mut rng = Rng::new(0x5eed);
    let mut buf = vec![0u8; 1 << 20];
    let shard = total * 7 / 8 / 4;
    let mut written = 0u64;
    for i in 1..=4 {
        write_random(
            &dir.join(format!("model-{i:05}-of-00004.safetensors")),
            shard + i, // not block aligned
            &mut rng,
            &mut buf,
        );
        written += shard + i;
    }
    let mut n = 0;
    while written < total {
        let sub = dir.join(format!("extra/part{:02}", n % 16));
        fs::create_dir_all(&sub).unwrap();
        let size = (4096 + rng.below(512 * 1024)).min(total - written);
        write_random(
            &sub.join(format!("file{n:05}.bin")),
            size,
            &mut rng,
            &mut buf,
        );
        written += size;
        n += 1;
    }
    fs::write(dir.join("config.json"), b"{\"model_type\": \"bench\"}\n").unwrap();
    println!("bytes={} files={}", written + 24, n + 5);
}

/// A valid safetensors file of about `size_mib` MiB: BF16 tensors of 64 MiB (the last one
/// smaller) filled with random bytes, header padded with spaces to a multiple of 8.
fn safetensors(path: &Path, size_mib: u64) {
    let total = (size_mib << 20).max(2);
    let tensor = 64u64 << 20;
    let mut json = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut off = 0u64;
    let mut i = 0;
    while off < total {
        let n = (total - off).min(tensor) & !1;
        if n == 0 {
            break;
        }
        let shape = if n.is_multiple_of(2048) {
            format!("[{},1024]", n / 2048)
        } else {
            format!("[{}]", n / 2)
        };
        json.push_str(&format!(
            ",\"layers.{i}.weight\":{{\"dtype\":\"BF16\",\"shape\":{shape},\"data_offsets\":[{off},{}]}}",
            off + n
        ));
        off += n;
        i += 1;
    }
    json.push('}');
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut f = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    f.write_all(&(json.len() as u64).to_le_bytes()).unwrap();
    f.write_all(json.as_bytes()).unwrap();
    let mut rng = Rng::new(0x7e45);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = off;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
    println!("bytes={} tensors={i}", 8 + json.len() as u64 + off);
}

/// Reads a whole file into one heap buffer with 32 MiB reads, as a loader that reads a
/// model from a (FUSE) file system into host memory would; prints the bytes read.
fn slurp(path: &Path) {
    use std::io::Read;
    let mut f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let mut v = vec![0u8; len];
    let mut at = 0;
    while at < len {
        let end = (at + (32 << 20)).min(len);
        let n = f.read(&mut v[at..end]).unwrap();
        assert!(n > 0, "short read at {at}");
        at += n;
    }
    println!("bytes={at} first={}", v.first().copied().unwrap_or(0));
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// Runs `f` repeatedly for ~1 s and returns the best MB/s of 3 rounds.
fn measure(bytes: u64, mut f: impl FnMut()) -> f64 {
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let mut iters = 0u64;
        while t.elapsed().as_secs_f64() < 1.0 {
            f();
            iters += 1;
        }
        best = best.max(mbps(bytes * iters, t.elapsed().as_secs_f64()));
    }
    best
}

fn blocks(mib: u64) {
    let key = [0x11u8; 32];
    let id = FileId([0x22; 16]);
    let pt: Vec<u8> = {
        let mut v = vec![0u8; (mib << 20) as usize];
        Rng::new(1).fill(&mut v);
        v
    };
    let aws = Backend::AwsLc.is_available().then(|| {
        ContentEnc::new(ContentCipher::new(ContentAlgo::AesGcm, Backend::AwsLc, &key).unwrap())
    });
    let rc = ContentEnc::new(
        ContentCipher::new(ContentAlgo::AesGcm, Backend::RustCrypto, &key).unwrap(),
    );
    let cbs = rc.geometry().cipher_bs() as usize;
    let mut ct = vec![0u8; pt.len() / 4096 * cbs];
    rc.encrypt_blocks(0, &id, &pt, &mut ct).unwrap();
    let mut out = vec![0u8; pt.len()];
    let bytes = pt.len() as u64;
    let r_rc = measure(bytes, || {
        rc.decrypt_blocks(0, &id, &ct, &mut out).unwrap();
    });
    assert_eq!(out, pt);
    let (r_aws, r_evp) = match &aws {
        Some(a) => {
            let r = measure(bytes, || {
                a.decrypt_blocks(0, &id, &ct, &mut out).unwrap();
            });
            assert_eq!(out, pt);
            let e = measure(bytes, || {
                assert_eq!(bench_raw_evp_open(&key, &id.0, &ct, cbs), Some(bytes));
            });
            (r, e)
        }
        None => (0.0, 0.0),
    };
    println!("aws_lc={r_aws:.0} rustcrypto={r_rc:.0} evp={r_evp:.0}");
}

/// The FUSE suite's tree: one large file and many small ones (1..16 KiB) in 100 dirs.
fn fusetree(dir: &Path, big_mib: u64, nfiles: u64) {
    let mut rng = Rng::new(0xf05e);
    let mut buf = vec![0u8; 1 << 20];
    write_random(
        &dir.join("big.bin"),
        (big_mib << 20) + 77,
        &mut rng,
        &mut buf,
    );
    for i in 0..nfiles {
        let sub = dir.join(format!("small/d{:02}", i % 100));
        if i < 100 {
            fs::create_dir_all(&sub).unwrap();
        }
        let size = 1024 + rng.below(15 * 1024);
        write_random(&sub.join(format!("f{i:05}")), size, &mut rng, &mut buf);
    }
    println!("big_bytes={} files={nfiles}", (big_mib << 20) + 77);
}

#[allow(unsafe_code, reason = "mmap is what is measured; SAFETY comment below")]
fn mmapread(path: &Path) {
    let f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let t = Instant::now();
    // SAFETY: a read-only shared mapping of an open file, only read, unmapped below.
    let sum = unsafe {
        let ptr = rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::SHARED,
            &f,
            0,
        )
        .unwrap();
        let data = std::slice::from_raw_parts(ptr.cast::<u8>(), len);
        // Touch one byte per page, like a loader copying tensors out.
        let mut sum = 0u64;
        for chunk in data.chunks(4096) {
            sum = sum.wrapping_add(u64::from(chunk[0]));
        }
        rustix::mm::munmap(ptr, len).unwrap();
        sum
    };
    let secs = t.elapsed().as_secs_f64();
    println!("mbps={:.0} sum={sum}", mbps(len as u64, secs));
}

fn randread(path: &Path, n: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut rng = Rng::new(7);
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    for _ in 0..n {
        let off = rng.below(len.saturating_sub(4096).max(1)) & !4095;
        f.read_exact_at(&mut buf, off).unwrap();
    }
    println!("iops={:.0}", n as f64 / t.elapsed().as_secs_f64());
}

fn walk(dir: &Path, read: bool) {
    fn go(d: &Path, read: bool, n: &mut u64) {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            *n += 1;
            if m.is_dir() {
                go(&p, read, n);
            } else if read && m.is_file() {
                let _ = fs::read(&p).unwrap();
            }
        }
    }
    let t = Instant::now();
    let mut n = 0;
    go(dir, read, &mut n);
    println!(
        "entries={n} per_sec={:.0}",
        n as f64 / t.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") => generate(Path::new(&args[2]), args[3].parse().unwrap()),
        Some("blocks") => blocks(args.get(2).map_or(64, |s| s.parse().unwrap())),
        Some("fusetree") => fusetree(
            Path::new(&args[2]),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        ),
        Some("mmapread") => mmapread(Path::new(&args[2])),
        Some("randread") => randread(Path::new(&args[2]), args[3].parse().unwrap()),
        Some("walk") => walk(
            Path::new(&args[2]),
            args.get(3).is_some_and(|a| a == "--read"),
        ),
        Some("safetensors") => safetensors(Path::new(&args[2]), args[3].parse().unwrap()),
        Some("slurp") => slurp(Path::new(&args[2])),
        _ => {
            eprintln!(
                "usage: ccmount-bench gen DIR SIZE_MIB | blocks MIB | fusetree DIR BIG_MIB NFILES | mmapread FILE | randread FILE N | walk DIR [--read] | safetensors FILE SIZE_MIB | slurp FILE"
            );
            std::process::exit(2);
        }
    }
}
