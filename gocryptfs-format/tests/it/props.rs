//! Property tests: the two AES-GCM backends are interchangeable, the offset math is
//! consistent (also against the sizes the writer really produces), headers and names
//! round-trip, and runs of blocks decrypt from any starting block.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use gocryptfs_format::configfile::NameLayout;
use gocryptfs_format::contentenc::{ContentEnc, FileHeader, Geometry, SizeCheck};
use gocryptfs_format::cryptocore::{ContentCipher, TAG_LEN};
use gocryptfs_format::internal::fuzzing;
use gocryptfs_format::nametransform::{DirIv, DiskName, NameTransform};
use gocryptfs_format::{Backend, BlockErrorKind, ContentAlgo, FileId, MasterKey};
use proptest::prelude::*;

fn valid_name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
        1..=255,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// aws-lc and RustCrypto produce identical ciphertext and tags for any key, 16-byte
    /// nonce, AAD and message, open each other's output, and both reject a flipped bit.
    #[test]
    fn gcm_backends_are_equal(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 16]>(),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        pt in proptest::collection::vec(any::<u8>(), 0..5000),
        flip in any::<usize>(),
    ) {
        let all = Backend::all();
        prop_assume!(all.len() == 2);
        let a = ContentCipher::new(ContentAlgo::AesGcm, Backend::AwsLc, &key).unwrap();
        let b = ContentCipher::new(ContentAlgo::AesGcm, Backend::RustCrypto, &key).unwrap();
        let (mut ca, mut ta) = (vec![0u8; pt.len()], [0u8; TAG_LEN]);
        let (mut cb, mut tb) = (vec![0u8; pt.len()], [0u8; TAG_LEN]);
        a.seal(&nonce, &pt, &aad, &mut ca, &mut ta).unwrap();
        b.seal(&nonce, &pt, &aad, &mut cb, &mut tb).unwrap();
        prop_assert_eq!(&ca, &cb);
        prop_assert_eq!(ta, tb);
        let mut out = vec![0u8; pt.len()];
        a.open(&nonce, &cb, &tb, &aad, &mut out).unwrap();
        prop_assert_eq!(&out, &pt);
        b.open(&nonce, &ca, &ta, &aad, &mut out).unwrap();
        prop_assert_eq!(&out, &pt);
        let mut bad = ca.clone();
        let mut badtag = ta;
        if bad.is_empty() { badtag[flip % TAG_LEN] ^= 1 } else { let i = flip % bad.len(); bad[i] ^= 1 }
        prop_assert!(a.open(&nonce, &bad, &badtag, &aad, &mut out).is_err());
        prop_assert!(b.open(&nonce, &bad, &badtag, &aad, &mut out).is_err());
    }

    /// Plain → cipher → plain is the identity; every cipher size is classified, and a valid
    /// one maps back exactly.
    #[test]
    fn offsets_are_consistent(p in 0u64..(1 << 40), c in 0u64..(1 << 40), nl in prop_oneof![Just(16usize), Just(24)]) {
        let g = Geometry::new(nl);
        let cs = g.plain_to_cipher_size(p).unwrap();
        prop_assert_eq!(g.cipher_to_plain_size(cs), p);
        match g.check_cipher_size(c) {
            SizeCheck::Valid { plain } => prop_assert_eq!(g.plain_to_cipher_size(plain), Some(c)),
            SizeCheck::Empty => prop_assert_eq!(c, 0),
            SizeCheck::HeaderOnly => prop_assert_eq!(c, 18),
            SizeCheck::ShortHeader => prop_assert!(c < 18),
            SizeCheck::Truncated => prop_assert!(g.plain_to_cipher_size(g.cipher_to_plain_size(c)) != Some(c)),
        }
        if p > 0 && p < (1 << 22) {
            let (first, last) = g.block_range(0, p).unwrap();
            prop_assert_eq!(first, 0);
            prop_assert_eq!(last + 1, Geometry::blocks(p));
            let total: u64 = (0..=last).map(|b| g.plain_block_len(p, b)).sum();
            prop_assert_eq!(total, p);
        }
    }

    /// Any valid name survives encrypt → (hash) → decrypt in every name layout.
    #[test]
    fn names_round_trip(name in valid_name(), iv in any::<[u8; 16]>(), raw64 in any::<bool>(), lnm in 62u8..=255) {
        prop_assume!(iv != [0u8; 16]);
        let nt = NameTransform::new(
            NameLayout::Encrypted { dir_iv: true, raw64, long_name_max: lnm },
            &MasterKey::from_bytes(&[3u8; 32]).unwrap(),
            true,
        );
        let iv = DirIv(iv);
        match nt.to_disk(OsStr::from_bytes(&name), &iv).unwrap() {
            DiskName::Short(c) => {
                prop_assert!(c.len() <= usize::from(lnm));
                prop_assert_eq!(nt.decrypt_name(c.as_bytes(), &iv).unwrap(), name);
            }
            DiskName::Long { hashed, cipher } => {
                prop_assert!(cipher.len() > usize::from(lnm));
                let stored = nt.check_long_name(OsStr::new(&hashed), cipher.as_bytes()).unwrap();
                prop_assert_eq!(nt.decrypt_name(stored, &iv).unwrap(), name);
            }
            DiskName::Plain(_) => prop_assert!(false),
        }
    }

    /// A run of blocks decrypts from any starting block, sequentially and in parallel, and a
    /// flipped byte is reported at its block.
    #[test]
    fn block_runs(len in 1usize..300_000, from in any::<usize>(), flip in any::<usize>(), algo in prop_oneof![Just(ContentAlgo::AesGcm), Just(ContentAlgo::XChaCha20Poly1305), Just(ContentAlgo::AesSiv)]) {
        let key = [9u8; 64];
        let klen = if algo == ContentAlgo::AesSiv { 64 } else { 32 };
        let enc = ContentEnc::new(ContentCipher::new(algo, Backend::preferred(), &key[..klen]).unwrap());
        let g = enc.geometry();
        let id = FileId([1; 16]);
        let pt: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut ct = vec![0u8; (g.plain_to_cipher_size(len as u64).unwrap() - 18) as usize];
        enc.encrypt_blocks(0, &id, &pt, &mut ct).unwrap();
        let blocks = Geometry::blocks(len as u64) as usize;
        let first = from % blocks;
        let cbs = g.cipher_bs() as usize;
        let sub = &ct[first * cbs..];
        let mut out = vec![0u8; len];
        let n = enc.decrypt_blocks(first as u64, &id, sub, &mut out).unwrap();
        prop_assert_eq!(&out[..n], &pt[first * 4096..]);
        let mut out2 = vec![0u8; len];
        let n2 = enc.decrypt_blocks_par(first as u64, &id, sub, &mut out2).unwrap();
        prop_assert_eq!(&out2[..n2], &pt[first * 4096..]);
        let mut bad = ct.clone();
        let i = flip % bad.len();
        bad[i] ^= 0x80;
        let e = enc.decrypt_blocks(0, &id, &bad, &mut out).unwrap_err();
        prop_assert_eq!(e.block, (i / cbs) as u64);
        prop_assert!(matches!(e.kind, BlockErrorKind::Authentication | BlockErrorKind::AllZeroNonce));
    }

    /// The fuzz bodies hold on arbitrary bytes.
    #[test]
    fn fuzz_bodies_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
        fuzzing::config(&data);
        fuzzing::header(&data);
        fuzzing::block_open(&data);
        fuzzing::encrypted_name(&data);
        fuzzing::long_name_file(&data);
        fuzzing::diriv(&data);
        fuzzing::base64(&data);
        fuzzing::manifest(&data);
    }

    /// Any header with a non-zero file ID encodes and parses back to itself; any other
    /// version is refused.
    #[test]
    fn headers_round_trip(id in any::<[u8; 16]>(), version in any::<u16>(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        prop_assume!(id != [0u8; 16]);
        let h = FileHeader { id: FileId(id) };
        let mut bytes = h.to_bytes().to_vec();
        prop_assert_eq!(&bytes[..2], &[0u8, 2][..]);
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(FileHeader::parse(&bytes).unwrap(), h);
        bytes[..2].copy_from_slice(&version.to_be_bytes());
        prop_assert_eq!(FileHeader::parse(&bytes).is_ok(), version == 2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// The offset math agrees with the writer: every file it writes is exactly
    /// `plain_to_cipher_size` bytes on disk, the walker reports the plaintext size back, and
    /// the reader returns the bytes. Sizes cluster around block boundaries.
    #[test]
    fn writer_sizes_match_the_offset_math(
        sizes in proptest::collection::vec(prop_oneof![
            0u64..3,
            4094u64..4099,
            8190u64..8194,
            0u64..70_000,
        ], 1..6),
        xchacha in any::<bool>(),
    ) {
        use gocryptfs_format::configfile::Layout;
        use gocryptfs_format::writer::{InitOptions, encrypt_tree};
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("p");
        std::fs::create_dir(&plain).unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|j| (j as usize * 13 + i) as u8).collect();
            std::fs::write(plain.join(format!("f{i}")), data).unwrap();
        }
        let layout = Layout {
            content: if xchacha { ContentAlgo::XChaCha20Poly1305 } else { ContentAlgo::AesGcm },
            ..Layout::default()
        };
        let opts = InitOptions { layout, scrypt_log_n: 10, ..InitOptions::default() };
        let cipher = tmp.path().join("c");
        encrypt_tree(&plain, &cipher, b"pw", &opts, &gocryptfs_format::NoProgress).unwrap();
        let dir = gocryptfs_format::CipherDir::open(
            &cipher,
            gocryptfs_format::KeySource::password_from_passfile(b"pw").unwrap(),
            &gocryptfs_format::OpenOptions::default(),
        ).unwrap();
        let g = Geometry::new(if xchacha { 24 } else { 16 });
        let walked = gocryptfs_format::walk::walk(&dir).unwrap();
        prop_assert!(walked.problems.is_empty());
        let mut seen = 0;
        for e in walked.entries.iter().filter(|e| e.kind == gocryptfs_format::FileKind::File) {
            let i: usize = e.plain_path.to_str().unwrap()[1..].parse().unwrap();
            let n = sizes[i];
            let on_disk = std::fs::metadata(cipher.join(&e.cipher_path)).unwrap().len();
            prop_assert_eq!(Some(on_disk), g.plain_to_cipher_size(n), "file {} of {} bytes", i, n);
            prop_assert_eq!(e.plain_size, n);
            prop_assert_eq!(g.check_cipher_size(on_disk), if n == 0 { SizeCheck::Empty } else { SizeCheck::Valid { plain: n } });
            seen += 1;
        }
        prop_assert_eq!(seen, sizes.len());
    }
}
