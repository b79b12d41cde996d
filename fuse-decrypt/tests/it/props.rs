//! Property tests: the two AES-GCM backends are interchangeable, the offset math is
//! consistent, names round-trip, and runs of blocks decrypt from any starting block.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuse_decrypt::configfile::NameLayout;
use fuse_decrypt::contentenc::{ContentEnc, Geometry, SizeCheck};
use fuse_decrypt::cryptocore::{ContentCipher, TAG_LEN};
use fuse_decrypt::internal::fuzzing;
use fuse_decrypt::nametransform::{DirIv, DiskName, NameTransform};
use fuse_decrypt::{Backend, BlockErrorKind, ContentAlgo, FileId, MasterKey};
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
}
