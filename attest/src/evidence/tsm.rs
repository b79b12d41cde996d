//! configfs-tsm reports (Linux ≥ 6.7), shared by TDX and SNP.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §3.2 "configfs-tsm" (ABI
//! `Documentation/ABI/testing/configfs-tsm`): one fresh directory per request under the report
//! root (the kernel populates its attributes on `mkdir`), check `provider`, write exactly 64
//! bytes to `inblob` (TDX rejects any other length), read `outblob` (and `auxblob` for SNP),
//! then check that `generation` advanced by exactly one — anything else means another writer
//! raced us. The directory is removed on every path (the report directory guard is RAII).
//!
//! File access goes through [`TsmFs`] so tests can simulate the kernel's side of a real
//! directory tree (attribute files appear on `mkdir`, `generation` counts writes).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::EvidenceError;

/// The file operations a report needs. [`RealFs`] is the kernel's configfs.
pub trait TsmFs: Send + Sync + fmt::Debug {
    /// `mkdir`.
    ///
    /// # Errors
    /// The OS error.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// `rmdir`.
    ///
    /// # Errors
    /// The OS error.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Reads a whole attribute.
    ///
    /// # Errors
    /// The OS error.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Writes a whole attribute in one `write(2)`.
    ///
    /// # Errors
    /// The OS error.
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
}

/// configfs through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl TsmFs for RealFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        use std::io::Write as _;
        // configfs binary attributes take the whole blob in one write.
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data)
    }
}

/// What a report request returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    /// The report or quote.
    pub outblob: Vec<u8>,
    /// The auxiliary blob (SNP certificate table), if asked for and present.
    pub auxblob: Option<Vec<u8>>,
}

/// A report directory that is removed when dropped.
struct ReportDir<'a> {
    fs: &'a dyn TsmFs,
    path: PathBuf,
}

impl Drop for ReportDir<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.fs.remove_dir(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove configfs-tsm report directory");
        }
    }
}

/// Requests one report with `inblob` from provider `expected_provider`.
///
/// # Errors
/// [`EvidenceError::TsmUnavailable`], [`EvidenceError::ProviderMismatch`],
/// [`EvidenceError::GenerationRace`], or [`EvidenceError::Io`] naming the attribute.
pub fn request(
    fs: &dyn TsmFs,
    root: &Path,
    expected_provider: &'static str,
    inblob: &[u8; 64],
    want_auxblob: bool,
) -> Result<TsmReport, EvidenceError> {
    if !root.is_dir() {
        return Err(EvidenceError::TsmUnavailable {
            path: root.to_owned(),
        });
    }
    let mut name = [0u8; 8];
    getrandom::fill(&mut name).map_err(|_| {
        EvidenceError::io(
            "choose a report directory name under",
            root,
            io::Error::other("the OS random number generator failed"),
        )
    })?;
    let path = root.join(format!("ccmount-{}", hex::encode(name)));
    // mkdir fails if the name exists, so the directory is ours and fresh.
    fs.create_dir(&path)
        .map_err(|e| EvidenceError::io("create report directory", &path, e))?;
    let dir = ReportDir { fs, path };
    let attr = |name: &str| dir.path.join(name);

    let provider = read_attr(fs, &attr("provider"))?;
    let provider = String::from_utf8_lossy(&provider);
    if provider.trim_end() != expected_provider {
        return Err(EvidenceError::ProviderMismatch {
            path: dir.path.clone(),
            expected: expected_provider,
            found: crate::sanitize::sanitize_detail(provider.trim_end()),
        });
    }
    let before = generation(fs, &attr("generation"))?;
    fs.write(&attr("inblob"), inblob)
        .map_err(|e| EvidenceError::io("write 64 bytes to", &attr("inblob"), e))?;
    let outblob = read_attr(fs, &attr("outblob"))?;
    let auxblob = if want_auxblob {
        match fs.read(&attr("auxblob")) {
            Ok(b) if b.is_empty() => None,
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(EvidenceError::io("read", &attr("auxblob"), e)),
        }
    } else {
        None
    };
    let after = generation(fs, &attr("generation"))?;
    let expected = before.saturating_add(1);
    if after != expected {
        return Err(EvidenceError::GenerationRace {
            path: dir.path.clone(),
            expected,
            found: after,
        });
    }
    if outblob.is_empty() {
        return Err(EvidenceError::Malformed {
            what: "report",
            path: attr("outblob"),
            reason: "empty outblob",
        });
    }
    Ok(TsmReport { outblob, auxblob })
}

fn read_attr(fs: &dyn TsmFs, path: &Path) -> Result<Vec<u8>, EvidenceError> {
    fs.read(path)
        .map_err(|e| EvidenceError::io("read", path, e))
}

fn generation(fs: &dyn TsmFs, path: &Path) -> Result<u64, EvidenceError> {
    let raw = read_attr(fs, path)?;
    String::from_utf8_lossy(&raw)
        .trim()
        .parse()
        .map_err(|_| EvidenceError::Malformed {
            what: "generation",
            path: path.to_owned(),
            reason: "not a decimal number",
        })
}

/// A simulated configfs-tsm on a real temporary directory, for tests of TDX and SNP.
#[cfg(test)]
pub(crate) mod fake {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::sync::Mutex;

    /// Builds the simulated outblob from the inblob.
    pub(crate) type MakeOutblob = fn(&[u8]) -> Vec<u8>;

    /// Misbehaviours to simulate.
    #[derive(Debug, Default, Clone)]
    pub(crate) struct FakeKernel {
        /// Provider name the kernel reports (without newline).
        pub(crate) provider: &'static str,
        /// A concurrent writer bumps `generation` once more after our write.
        pub(crate) race: bool,
        /// Certificate table to expose as `auxblob`.
        pub(crate) auxblob: Option<Vec<u8>>,
        /// Builds the outblob from the inblob.
        pub(crate) outblob: Option<MakeOutblob>,
    }

    #[derive(Debug, Default)]
    pub(crate) struct FakeTsm {
        pub(crate) kernel: FakeKernel,
        /// Every inblob written, to check lengths.
        pub(crate) inblobs: Mutex<Vec<Vec<u8>>>,
        pub(crate) removed: Mutex<Vec<PathBuf>>,
    }

    impl TsmFs for FakeTsm {
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            std::fs::create_dir(path)?;
            std::fs::write(path.join("provider"), format!("{}\n", self.kernel.provider))?;
            std::fs::write(path.join("generation"), "0\n")?;
            std::fs::write(path.join("outblob"), b"")?;
            if let Some(aux) = &self.kernel.auxblob {
                std::fs::write(path.join("auxblob"), aux)?;
            }
            Ok(())
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            self.removed.lock().unwrap().push(path.to_owned());
            std::fs::remove_dir_all(path)
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            std::fs::read(path)
        }
        fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
            if path.file_name().is_some_and(|n| n == "inblob") {
                // The TDX driver demands exactly 64 bytes (EINVAL otherwise).
                if self.kernel.provider == "tdx_guest" && data.len() != 64 {
                    return Err(io::Error::from_raw_os_error(22));
                }
                self.inblobs.lock().unwrap().push(data.to_vec());
                let dir = path.parent().unwrap();
                let g: u64 = std::fs::read_to_string(dir.join("generation"))?
                    .trim()
                    .parse()
                    .unwrap();
                let g = g + if self.kernel.race { 2 } else { 1 };
                std::fs::write(dir.join("generation"), format!("{g}\n"))?;
                let make = self.kernel.outblob.unwrap_or(|d| d.to_vec());
                std::fs::write(dir.join("outblob"), make(data))?;
            }
            std::fs::write(path, data)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::fake::{FakeKernel, FakeTsm};
    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("tsm/report");
        std::fs::create_dir_all(&root).unwrap();
        (d, root)
    }

    #[test]
    fn happy_path_cleans_up() {
        let (_d, root) = tree();
        let fs = FakeTsm {
            kernel: FakeKernel {
                provider: "tdx_guest",
                ..FakeKernel::default()
            },
            ..FakeTsm::default()
        };
        let r = request(&fs, &root, "tdx_guest", &[5u8; 64], false).unwrap();
        assert_eq!(r.outblob, vec![5u8; 64]);
        assert_eq!(fs.inblobs.lock().unwrap().as_slice(), &[vec![5u8; 64]]);
        assert_eq!(fs.removed.lock().unwrap().len(), 1);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn wrong_provider_is_refused_and_cleaned_up() {
        let (_d, root) = tree();
        let fs = FakeTsm {
            kernel: FakeKernel {
                provider: "sev_guest",
                ..FakeKernel::default()
            },
            ..FakeTsm::default()
        };
        let e = request(&fs, &root, "tdx_guest", &[0u8; 64], false).unwrap_err();
        assert!(
            matches!(&e, EvidenceError::ProviderMismatch { found, .. } if found == "sev_guest"),
            "{e}"
        );
        assert!(
            fs.inblobs.lock().unwrap().is_empty(),
            "no write after a mismatch"
        );
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn generation_race_is_detected() {
        let (_d, root) = tree();
        let fs = FakeTsm {
            kernel: FakeKernel {
                provider: "tdx_guest",
                race: true,
                ..FakeKernel::default()
            },
            ..FakeTsm::default()
        };
        let e = request(&fs, &root, "tdx_guest", &[0u8; 64], false).unwrap_err();
        assert!(
            matches!(
                e,
                EvidenceError::GenerationRace {
                    expected: 1,
                    found: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn missing_configfs_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let e = request(
            &RealFs,
            &d.path().join("nope"),
            "tdx_guest",
            &[0; 64],
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("configfs-tsm is not available"),
            "{e}"
        );
    }

    #[test]
    fn plain_directory_is_not_configfs() {
        // On a plain file system mkdir creates no attributes: reading `provider` fails, the
        // error names the file, and the directory is still removed.
        let (_d, root) = tree();
        let e = request(&RealFs, &root, "tdx_guest", &[0; 64], false).unwrap_err();
        assert!(matches!(e, EvidenceError::Io { op: "read", .. }), "{e}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }
}
