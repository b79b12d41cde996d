//! Random plaintext trees (sizes around block boundaries, empty and sparse files, unicode,
//! non-UTF-8 and 255-byte names, deep directories, symlinks) and snapshots to compare trees.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// A small deterministic PRNG (splitmix64): the same seed gives the same tree.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Sizes that exercise block boundaries.
pub const EDGE_SIZES: [u64; 14] = [
    0, 1, 15, 16, 4095, 4096, 4097, 8191, 8192, 8193, 12287, 12289, 65536, 65537,
];

/// What to put in a generated tree.
#[derive(Debug, Clone, Copy)]
pub struct TreeOpts {
    /// Number of regular files besides the fixed edge cases.
    pub random_files: usize,
    /// Largest random file size.
    pub max_size: u64,
    /// Include a non-UTF-8 name.
    pub non_utf8: bool,
    /// Include sparse files.
    pub sparse: bool,
    /// Include a file of about 1.1 MiB (several parallel pieces).
    pub big: bool,
}

impl Default for TreeOpts {
    fn default() -> Self {
        TreeOpts {
            random_files: 12,
            max_size: 300_000,
            non_utf8: true,
            sparse: true,
            big: true,
        }
    }
}

fn write_file(path: &Path, size: u64, rng: &mut Rng) {
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut left = size;
    let mut buf = vec![0u8; 65536];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// Generates a tree under `root` (which must exist).
pub fn generate(root: &Path, seed: u64, opts: TreeOpts) {
    let mut rng = Rng::new(seed);
    let d = |p: &str| {
        let path = root.join(p);
        fs::create_dir_all(&path).unwrap();
        path
    };
    let edge = d("edge");
    for s in EDGE_SIZES {
        write_file(&edge.join(format!("size{s}")), s, &mut rng);
    }
    let rnd = d("random/inner");
    for i in 0..opts.random_files {
        let base = EDGE_SIZES[rng.below(EDGE_SIZES.len() as u64) as usize];
        let size = if rng.below(2) == 0 {
            (base + rng.below(3)).saturating_sub(1)
        } else {
            rng.below(opts.max_size)
        };
        write_file(&rnd.join(format!("f{i:02}.bin")), size, &mut rng);
    }
    if opts.big {
        write_file(&root.join("big.bin"), (1 << 20) + 4096 * 17 + 5, &mut rng);
    }
    // Names.
    let names = d("names");
    write_file(&names.join("Grüße 日本語 ✓.txt"), 12, &mut rng);
    write_file(&names.join("n".repeat(255)), 33, &mut rng);
    write_file(&names.join("m".repeat(176)), 7, &mut rng);
    write_file(&names.join("k".repeat(175)), 7, &mut rng);
    fs::create_dir(names.join("d".repeat(200))).unwrap();
    write_file(&names.join("d".repeat(200)).join("child"), 5, &mut rng);
    if opts.non_utf8 {
        write_file(
            &names.join(OsStr::from_bytes(b"bad-\xff\xfe.bin")),
            3,
            &mut rng,
        );
    }
    write_file(&names.join("gocryptfs.conf"), 4, &mut rng);
    // Deep directories.
    let mut deep = root.join("deep");
    for i in 0..12 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    write_file(&deep.join("bottom.txt"), 100, &mut rng);
    d("empty-dir");
    // Sparse files: a hole, data, a trailing hole; one all-hole file.
    if opts.sparse {
        let sp = d("sparse");
        let f = fs::File::create(sp.join("holes")).unwrap();
        f.set_len(10 * 4096 + 100).unwrap();
        f.write_all_at(b"data in block four", 4 * 4096 + 10)
            .unwrap();
        let f = fs::File::create(sp.join("all-hole")).unwrap();
        f.set_len(64 * 1024).unwrap();
        let f = fs::File::create(sp.join("hole-then-tail")).unwrap();
        f.write_all_at(b"X", 3 * 4096 + 100).unwrap();
    }
    // Symlinks.
    let ln = d("links");
    std::os::unix::fs::symlink("../edge/size1", ln.join("rel")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", ln.join("abs")).unwrap();
    std::os::unix::fs::symlink("does-not-exist", ln.join("dangling")).unwrap();
    std::os::unix::fs::symlink("t".repeat(1000), ln.join("long-target")).unwrap();
    std::os::unix::fs::symlink("x", ln.join("l".repeat(200))).unwrap();
    // An xattr (best effort: the filesystem may not support user xattrs).
    let _ = rustix::fs::setxattr(
        edge.join("size1"),
        "user.note",
        b"hello xattr",
        rustix::fs::XattrFlags::empty(),
    );
    // Modes.
    let modes = d("modes");
    for (name, mode) in [("ro", 0o444), ("exec", 0o755), ("private", 0o600)] {
        let p = modes.join(name);
        write_file(&p, 10, &mut rng);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// One node of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f`, `d`, `l` or `o`.
    pub kind: char,
    /// Size (files) or 0.
    pub size: u64,
    /// SHA-256 of the content (files), or the target (symlinks).
    pub digest: String,
    /// Permission bits.
    pub mode: u32,
    /// `user.*` xattrs.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Every entry under `root` by relative path bytes (root itself excluded).
#[must_use]
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<Vec<u8>, Node>) {
    for e in fs::read_dir(root.join(rel)).unwrap() {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        let p = root.join(&r);
        let meta = fs::symlink_metadata(&p).unwrap();
        let ft = meta.file_type();
        let (kind, size, digest) = if ft.is_dir() {
            ('d', 0, String::new())
        } else if ft.is_symlink() {
            let t = fs::read_link(&p).unwrap();
            ('l', 0, hex::encode(t.as_os_str().as_bytes()))
        } else if ft.is_file() {
            let data = fs::read(&p).unwrap();
            ('f', meta.len(), hex::encode(Sha256::digest(&data)))
        } else {
            ('o', 0, String::new())
        };
        let mut xattrs = BTreeMap::new();
        if !ft.is_symlink() {
            let mut buf = vec![0u8; 65536];
            if let Ok(n) = rustix::fs::llistxattr(&p, &mut buf[..]) {
                for name in buf[..n]
                    .split(|&b| b == 0)
                    .filter(|s| s.starts_with(b"user."))
                {
                    let mut v = vec![0u8; 65536];
                    let cname = std::ffi::CString::new(name).unwrap();
                    if let Ok(m) = rustix::fs::lgetxattr(&p, cname.as_c_str(), &mut v[..]) {
                        xattrs.insert(name.to_vec(), v[..m].to_vec());
                    }
                }
            }
        }
        out.insert(
            r.as_os_str().as_bytes().to_vec(),
            Node {
                kind,
                size,
                digest,
                mode: if ft.is_symlink() {
                    0
                } else {
                    meta.mode() & 0o7777
                },
                xattrs,
            },
        );
        if ft.is_dir() {
            walk(root, &r, out);
        }
    }
}

/// Compares two snapshots; returns a readable list of differences (empty = equal).
/// `modes` also compares permission bits; `xattrs` compares `user.*` xattrs.
#[must_use]
pub fn diff(
    a: &BTreeMap<Vec<u8>, Node>,
    b: &BTreeMap<Vec<u8>, Node>,
    modes: bool,
    xattrs: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, na) in a {
        let name = String::from_utf8_lossy(k);
        match b.get(k) {
            None => out.push(format!("only in first: {name}")),
            Some(nb) => {
                if na.kind != nb.kind || na.size != nb.size || na.digest != nb.digest {
                    out.push(format!("differs: {name}: {na:?} vs {nb:?}"));
                } else if modes && na.mode != nb.mode {
                    out.push(format!(
                        "mode differs: {name}: {:o} vs {:o}",
                        na.mode, nb.mode
                    ));
                } else if xattrs && na.xattrs != nb.xattrs {
                    out.push(format!("xattrs differ: {name}"));
                }
            }
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            out.push(format!("only in second: {}", String::from_utf8_lossy(k)));
        }
    }
    out
}
