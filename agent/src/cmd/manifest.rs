//! `ccmount manifest CIPHERDIR KEY --out FILE`: one keyed verify pass (every block
//! authenticated and hashed), then the canonical model manifest written atomically to FILE
//! and its digest (`sha256:<hex>`) printed on stdout. A tree with any error finding gets no
//! manifest (exit 26): a manifest pins only a clean tree.

use anyhow::{Context as _, Result};
use gocryptfs_format::manifest::{Manifest, ModelId};

use crate::cli::{GlobalArgs, ManifestArgs};
use crate::exit::{Exit, coded};
use crate::keys;
use crate::plan::KeyPlan;
use crate::progress::Bar;
use crate::receipt::Receipt;

pub(crate) fn run(g: &GlobalArgs, a: ManifestArgs) -> Result<Exit> {
    let key = keys::load(&KeyPlan::require(&a.key)?)?;
    let built = if crate::remote::is_s3(&a.cipherdir) {
        let b = crate::remote::bucket(g, &a.cipherdir)?;
        let tree = crate::remote::open_tree(g, b, key)?;
        let bar = Bar::new("manifest", !g.quiet);
        let report = tree.verify(true, &bar);
        bar.finish();
        Manifest::from_report(tree.cipher_dir(), &report?)
    } else {
        let dir = keys::open_dir(g, &a.cipherdir, key)?;
        let bar = Bar::new("manifest", !g.quiet);
        let built = Manifest::of_tree(&dir, &bar).map(|(m, _)| m);
        bar.finish();
        built
    };
    let manifest = match built {
        Ok(m) => m,
        Err(diffs) => {
            for d in &diffs {
                eprintln!("error: {d}");
            }
            return Err(coded(
                Exit::Corrupt,
                format!(
                    "{}: {} problems found; no manifest written (run `ccmount verify` for details)",
                    a.cipherdir.display(),
                    diffs.len()
                ),
            ));
        }
    };
    let manifest = manifest.with_model(model_tag(&a.model)?);
    crate::fsutil::write_atomic(&a.out, &manifest.to_canonical(), 0o644)
        .with_context(|| format!("writing the manifest {}", a.out.display()))?;
    let digest = manifest.digest();
    println!("{digest}");
    if let Some(path) = &a.receipt.receipt {
        Receipt {
            command: "manifest",
            cipherdir: &a.cipherdir,
            digest,
            pin: None,
            key_resource: a.key.key.as_deref(),
        }
        .write(path)?;
    }
    Ok(Exit::Ok)
}

/// `--model NAME --model-version N` as a manifest's model ID.
pub(crate) fn model_tag(a: &crate::cli::ModelTagArgs) -> Result<Option<ModelId>> {
    match (&a.model_name, a.model_version) {
        (Some(name), Some(version)) => ModelId::new(name, version)
            .map(Some)
            .map_err(|e| coded(Exit::Usage, format!("--model: {e}"))),
        _ => Ok(None),
    }
}
