//! KBS settings and the attestation session every KBS-using command shares.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §5.2 (CoCo configuration habits): the KBS URL
//! comes from `--kbs-url`, else the `[kbs]` table of `--config`, else the kernel command line
//! `agent.aa_kbc_params=cc_kbc::<url>`; the same order applies to the CA certificate, the TEE
//! and the timeout. [`kbs_client`] builds one [`KbsSession`] per process: it attests once and
//! its cached token serves every further resource (`--key kbs:///…`, secrets delivery).
//!
//! `[kbs]` keys: `url`, `cert` (a PEM file path, relative to the config file, or inline PEM
//! as in the CoCo attestation-agent config), `tee`, `timeout` ("30s" or seconds),
//! `insecure_http` (bool).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use attest::evidence::{self, Platform, TeeChoice};
use attest::{AttestationInfo, KbsClient, ResourceUri, Secret};
use serde::Deserialize;

use crate::cli::GlobalArgs;
use crate::exit::{Exit, coded};

/// Where the kernel command line is read.
pub(crate) const PROC_CMDLINE: &str = "/proc/cmdline";
/// Default total deadline per KBS operation.
const DEFAULT_TIMEOUT: Duration = attest::kbs::client::DEFAULT_TIMEOUT;

/// The resolved KBS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KbsSettings {
    /// KBS base URL.
    pub(crate) url: String,
    /// Where the URL came from (for messages).
    pub(crate) url_source: &'static str,
    /// Extra CA certificate (PEM).
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// Where the CA came from (for messages), e.g. `--kbs-cert ca.pem`.
    pub(crate) ca_source: String,
    /// TEE choice.
    pub(crate) tee: TeeChoice,
    /// Total deadline per operation.
    pub(crate) timeout: Duration,
    /// Allow http://.
    pub(crate) insecure_http: bool,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    kbs: Option<KbsTable>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KbsTable {
    url: Option<String>,
    cert: Option<String>,
    tee: Option<String>,
    timeout: Option<toml::Value>,
    insecure_http: Option<bool>,
}

/// Resolves the settings from the flags, the config file and the kernel command line.
pub(crate) fn resolve(global: &GlobalArgs, cmdline: &Path) -> Result<KbsSettings> {
    let (table, config_dir) = match &global.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let cfg: ConfigFile = toml::from_str(&text).map_err(|e| {
                coded(
                    Exit::Usage,
                    format!(
                        "invalid config file {}: {}",
                        path.display(),
                        e.message().replace('\n', " ")
                    ),
                )
            })?;
            (
                cfg.kbs.unwrap_or_default(),
                path.parent().map(Path::to_path_buf),
            )
        }
        None => (KbsTable::default(), None),
    };

    let coco = global
        .coco_config
        .as_deref()
        .map(CocoConfig::read)
        .transpose()?;
    let (url, url_source) = if let Some(u) = &global.kbs_url {
        (u.clone(), "--kbs-url")
    } else if let Some(u) = &table.url {
        (u.clone(), "the [kbs] url of --config")
    } else if let Some(c) = &coco {
        (c.url.clone(), c.url_source)
    } else if let Some(u) = url_from_cmdline(cmdline)? {
        (u, "agent.aa_kbc_params on the kernel command line")
    } else {
        return Err(coded(
            Exit::Usage,
            "no KBS URL: pass --kbs-url, set [kbs] url in --config, or boot with agent.aa_kbc_params=cc_kbc::<url>",
        ));
    };

    let mut ca_source = String::new();
    let ca_pem = if let Some(p) = &global.kbs_cert {
        ca_source = format!("--kbs-cert {}", p.display());
        Some(std::fs::read(p).with_context(|| format!("reading {ca_source}"))?)
    } else if let Some(c) = &table.cert {
        let (pem, source) = config_cert(c, config_dir.as_deref(), "[kbs] cert")?;
        ca_source = source;
        Some(pem)
    } else if let Some((pem, source)) = coco.as_ref().and_then(|c| c.cert.clone()) {
        ca_source = source;
        Some(pem)
    } else {
        None
    };

    // `--tee` defaults to "auto"; only an explicit value beats the config file.
    let tee_name = match (global.tee.as_str(), &table.tee) {
        ("auto", Some(t)) => t.as_str(),
        (cli, _) => cli,
    };
    let tee: TeeChoice = tee_name
        .parse()
        .map_err(|e: attest::EvidenceError| coded(Exit::Usage, e.to_string()))?;

    let timeout = match (global.timeout, &table.timeout) {
        (Some(t), _) => t,
        (None, Some(v)) => parse_timeout(v)?,
        (None, None) => DEFAULT_TIMEOUT,
    };
    if timeout.is_zero() {
        return Err(coded(Exit::Usage, "the KBS timeout must be more than zero"));
    }

    Ok(KbsSettings {
        url,
        url_source,
        ca_pem,
        ca_source,
        tee,
        timeout,
        insecure_http: global.insecure_http || table.insecure_http.unwrap_or(false),
    })
}

/// A certificate given in a config file (`[kbs] cert`, CDH's `kbs_cert`, AA's `cert`): inline
/// PEM, or a path relative to the config's directory. Returns the PEM and where it came from
/// (for messages): `KEY (inline PEM)` or `KEY PATH`.
fn config_cert(value: &str, config_dir: Option<&Path>, key: &str) -> Result<(Vec<u8>, String)> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok((value.as_bytes().to_vec(), format!("{key} (inline PEM)")));
    }
    let p = match config_dir {
        Some(dir) if Path::new(value).is_relative() => dir.join(value),
        _ => PathBuf::from(value),
    };
    let source = format!("{key} {}", p.display());
    let pem = std::fs::read(&p).with_context(|| format!("reading {source}"))?;
    Ok((pem, source))
}

/// The KBS settings of a Confidential Containers config (`--coco-config`): the confidential
/// data hub's `cdh.toml` or the attestation agent's config (kbs-protocol.md §5.2, §5.4).
#[derive(Debug)]
struct CocoConfig {
    url: String,
    url_source: &'static str,
    /// The certificate (PEM) and where it came from, for messages.
    cert: Option<(Vec<u8>, String)>,
}

impl CocoConfig {
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --coco-config {}", path.display()))?;
        let bad = |why: String| {
            coded(
                Exit::Usage,
                format!("--coco-config {}: {why}", path.display()),
            )
        };
        // The attestation agent also takes JSON; CDH and AA both default to TOML.
        let doc: serde_json::Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON ({e})")))?
        } else {
            let v: toml::Value = toml::from_str(&text)
                .map_err(|e| bad(format!("invalid TOML ({})", e.message().replace('\n', " "))))?;
            serde_json::to_value(v).map_err(|e| bad(e.to_string()))?
        };
        let text_at = |table: &str, key: &str| -> Result<Option<String>> {
            let mut cur = &doc;
            for part in table.split('.') {
                match cur.get(part) {
                    Some(v) => cur = v,
                    None => return Ok(None),
                }
            }
            match cur.get(key) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(bad(format!("[{table}] {key} must be a non-empty string"))),
            }
        };
        let (url, url_source, cert, cert_key) = if let Some(url) = text_at("kbc", "url")? {
            if let Some(name) = text_at("kbc", "name")?
                && name != "cc_kbc"
            {
                return Err(bad(format!(
                    "[kbc] name is {name:?}: only cc_kbc (a remote KBS) can serve ccmount"
                )));
            }
            (
                url,
                "the [kbc] url of --coco-config (confidential data hub)",
                text_at("kbc", "kbs_cert")?,
                "[kbc] kbs_cert",
            )
        } else if let Some(url) = text_at("token_configs.kbs", "url")? {
            (
                url,
                "the [token_configs.kbs] url of --coco-config (attestation agent)",
                text_at("token_configs.kbs", "cert")?,
                "[token_configs.kbs] cert",
            )
        } else {
            return Err(bad(
                "no KBS URL in it ([kbc] url of cdh.toml, or [token_configs.kbs] url of the attestation agent's config)".into(),
            ));
        };
        // CDH and AA hold the certificate inline; a path is accepted too.
        let cert = cert
            .map(|c| {
                let key = format!("{cert_key} of --coco-config {}", path.display());
                config_cert(&c, path.parent(), &key)
            })
            .transpose()?;
        Ok(CocoConfig {
            url,
            url_source,
            cert,
        })
    }
}

fn parse_timeout(v: &toml::Value) -> Result<Duration> {
    let bad = || {
        coded(
            Exit::Usage,
            "invalid [kbs] timeout: use seconds (30) or a duration (\"500ms\", \"30s\", \"2m\")",
        )
    };
    match v {
        toml::Value::Integer(n) => u64::try_from(*n)
            .map(Duration::from_secs)
            .map_err(|_| bad()),
        toml::Value::String(s) => crate::cli::parse_duration(s).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// `agent.aa_kbc_params=cc_kbc::<url>` from the kernel command line, if present.
pub(crate) fn url_from_cmdline(path: &Path) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for word in text.split_whitespace() {
        let Some(params) = word.strip_prefix("agent.aa_kbc_params=") else {
            continue;
        };
        return match params.split_once("::") {
            Some(("cc_kbc", url)) if !url.is_empty() => Ok(Some(url.to_owned())),
            _ => Err(coded(
                Exit::Usage,
                format!(
                    "unsupported agent.aa_kbc_params {params:?} on the kernel command line: only cc_kbc::<url> is supported; pass --kbs-url"
                ),
            )),
        };
    }
    Ok(None)
}

/// One attested session with the KBS: a runtime and a client whose token is reused.
#[derive(Debug)]
pub(crate) struct KbsSession {
    rt: tokio::runtime::Runtime,
    client: KbsClient,
    settings: KbsSettings,
}

/// The process-wide session: built from the global options on first use, then shared by
/// every consumer (key, manifest, secrets) so that one attestation serves them all.
enum Shared {
    Pending(Box<GlobalArgs>),
    Ready(Box<KbsSession>),
}

static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();

/// Records the global options for [`with_shared`]. Called once by `main`.
pub(crate) fn install(global: &GlobalArgs) {
    let _ = SHARED.set(Mutex::new(Shared::Pending(Box::new(global.clone()))));
}

/// Runs `f` on the process-wide session, building it on first use (no traffic until `f`
/// asks for a resource).
pub(crate) fn with_shared<T>(f: impl FnOnce(&mut KbsSession) -> Result<T>) -> Result<T> {
    let cell = SHARED
        .get()
        .ok_or_else(|| anyhow::anyhow!("internal: KBS settings not installed"))?;
    // A panic while holding the lock cannot leave a half-built session: take it anyway.
    let mut guard = cell
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Shared::Pending(global) = &*guard {
        let session = kbs_client(global)?;
        *guard = Shared::Ready(Box::new(session));
    }
    match &mut *guard {
        Shared::Ready(session) => f(session),
        Shared::Pending(_) => unreachable!("the session was just built"),
    }
}

/// Runs `f` on the process-wide session only if something already built it (receipts:
/// never resolves settings or attests just to report).
pub(crate) fn with_existing<T>(f: impl FnOnce(&KbsSession) -> T) -> Option<T> {
    let guard = SHARED
        .get()?
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*guard {
        Shared::Ready(session) => Some(f(session)),
        Shared::Pending(_) => None,
    }
}

/// Resolves the settings and builds the session. No network traffic yet: the first
/// [`KbsSession::get_resource`] or [`KbsSession::attest`] attests.
pub(crate) fn kbs_client(global: &GlobalArgs) -> Result<KbsSession> {
    let settings = resolve(global, Path::new(PROC_CMDLINE))?;
    KbsSession::new(settings, &Platform::default())
}

impl KbsSession {
    /// Builds a session from resolved settings on `platform`.
    pub(crate) fn new(settings: KbsSettings, platform: &Platform) -> Result<Self> {
        // `--tee sample` is warned about once, by the attester when it first sends evidence.
        let attester = evidence::attester(settings.tee, platform)?;
        let mut b = KbsClient::builder(&settings.url, attester)
            .insecure_http(settings.insecure_http)
            .timeout(settings.timeout)
            .request_timeout(
                settings
                    .timeout
                    .min(attest::kbs::client::DEFAULT_REQUEST_TIMEOUT),
            );
        if let Some(pem) = &settings.ca_pem {
            b = b.extra_ca_pem(pem.clone());
        }
        let client = b.build().map_err(|e| {
            let what = if matches!(e, attest::Error::InvalidCaCert { .. }) {
                settings.ca_source.clone()
            } else {
                format!("KBS URL from {}", settings.url_source)
            };
            anyhow::Error::new(e).context(what)
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(Self {
            rt,
            client,
            settings,
        })
    }

    /// Fetches one resource (attesting only when there is no usable token).
    pub(crate) fn get_resource(&mut self, uri: &ResourceUri) -> Result<Secret> {
        let secret = self.rt.block_on(self.client.get_resource(uri))?;
        tracing::debug!(resource = %uri, bytes = secret.len(), "fetched KBS resource");
        Ok(secret)
    }

    /// Runs a fresh handshake and returns what the KBS saw.
    pub(crate) fn attest(&mut self) -> Result<AttestationInfo> {
        Ok(self.rt.block_on(self.client.attest())?)
    }

    /// The resolved settings.
    pub(crate) fn settings(&self) -> &KbsSettings {
        &self.settings
    }

    /// The KBS base URL as used.
    pub(crate) fn url(&self) -> &str {
        self.client.url()
    }

    /// The TEE this session attests as.
    pub(crate) fn tee(&self) -> attest::Tee {
        self.client.tee()
    }

    /// Expiry of the cached token (seconds since the epoch), once attested.
    pub(crate) fn token_expiry(&self) -> Option<u64> {
        self.client.token_claims().and_then(|c| c.exp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::cli::Cli;
    use clap::Parser as _;

    fn global(args: &[&str]) -> GlobalArgs {
        let mut v = vec!["ccmount"];
        v.extend_from_slice(args);
        v.push("attest");
        Cli::try_parse_from(v).unwrap().global
    }

    #[test]
    fn precedence_flag_config_cmdline() {
        let d = tempfile::tempdir().unwrap();
        let cmdline = d.path().join("cmdline");
        std::fs::write(
            &cmdline,
            "quiet agent.aa_kbc_params=cc_kbc::https://boot:1 ro\n",
        )
        .unwrap();
        let cfg = d.path().join("c.toml");
        std::fs::write(&cfg, "[kbs]\nurl = \"https://cfg:2\"\ntee = \"sample\"\ntimeout = \"7s\"\ncert = \"ca.pem\"\n[secrets]\nx = 1\n").unwrap();
        std::fs::write(d.path().join("ca.pem"), "PEM").unwrap();

        let s = resolve(&global(&[]), &cmdline).unwrap();
        assert_eq!(
            (s.url.as_str(), s.url_source),
            (
                "https://boot:1",
                "agent.aa_kbc_params on the kernel command line"
            )
        );
        assert_eq!(s.tee, TeeChoice::Auto);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);

        let c = cfg.to_str().unwrap();
        let s = resolve(&global(&["--config", c]), &cmdline).unwrap();
        assert_eq!(s.url, "https://cfg:2");
        assert_eq!(s.tee, TeeChoice::Sample);
        assert_eq!(s.timeout, Duration::from_secs(7));
        assert_eq!(s.ca_pem.as_deref(), Some(&b"PEM"[..]));

        let s = resolve(
            &global(&[
                "--config",
                c,
                "--kbs-url",
                "https://flag:3",
                "--tee",
                "snp",
                "--timeout",
                "2s",
            ]),
            &cmdline,
        )
        .unwrap();
        assert_eq!(
            (s.url.as_str(), s.tee, s.timeout),
            ("https://flag:3", TeeChoice::Snp, Duration::from_secs(2))
        );
    }

    #[test]
    fn missing_url_and_bad_values_are_usage_errors() {
        let d = tempfile::tempdir().unwrap();
        let none = d.path().join("absent");
        let e = resolve(&global(&[]), &none).unwrap_err();
        assert_eq!(crate::exit::classify(&e), Exit::Usage);
        assert!(e.to_string().contains("--kbs-url"));

        let cmdline = d.path().join("cmdline");
        std::fs::write(&cmdline, "agent.aa_kbc_params=offline_fs_kbc::null").unwrap();
        let e = resolve(&global(&[]), &cmdline).unwrap_err();
        assert_eq!(crate::exit::classify(&e), Exit::Usage);

        let cfg = d.path().join("c.toml");
        std::fs::write(&cfg, "[kbs]\nurl = \"https://x\"\nbogus = 1\n").unwrap();
        let e = resolve(&global(&["--config", cfg.to_str().unwrap()]), &none).unwrap_err();
        assert_eq!(crate::exit::classify(&e), Exit::Usage);

        let e = resolve(&global(&["--kbs-url", "https://x", "--tee", "sgx"]), &none).unwrap_err();
        assert_eq!(crate::exit::classify(&e), Exit::Usage);
    }

    #[test]
    fn coco_configs_give_url_and_cert_below_flags_and_config() {
        let d = tempfile::tempdir().unwrap();
        let none = d.path().join("absent");
        let cmdline = d.path().join("cmdline");
        std::fs::write(&cmdline, "agent.aa_kbc_params=cc_kbc::https://boot:1\n").unwrap();
        let cdh = d.path().join("cdh.toml");
        std::fs::write(
            &cdh,
            "socket = \"unix:///run/confidential-containers/cdh.sock\"\n[kbc]\nname = \"cc_kbc\"\nurl = \"https://cdh:8080\"\nkbs_cert = \"\"\"\n-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n\"\"\"\n",
        )
        .unwrap();
        let c = cdh.to_str().unwrap();
        // The coco config beats the kernel command line ...
        let s = resolve(&global(&["--coco-config", c]), &cmdline).unwrap();
        assert_eq!(s.url, "https://cdh:8080");
        assert!(s.url_source.contains("[kbc] url"));
        assert!(s.ca_pem.unwrap().starts_with(b"-----BEGIN"));
        // ... and loses to the flag and to --config.
        let s = resolve(
            &global(&["--coco-config", c, "--kbs-url", "https://f:1"]),
            &none,
        )
        .unwrap();
        assert_eq!(s.url, "https://f:1");
        let cfg = d.path().join("c.toml");
        std::fs::write(&cfg, "[kbs]\nurl = \"https://cfg:2\"\n").unwrap();
        let s = resolve(
            &global(&["--coco-config", c, "--config", cfg.to_str().unwrap()]),
            &none,
        )
        .unwrap();
        assert_eq!(s.url, "https://cfg:2");

        // The attestation agent's config, TOML and JSON, with a certificate path.
        std::fs::write(d.path().join("ca.pem"), "PEM").unwrap();
        let aa = d.path().join("aa.toml");
        std::fs::write(
            &aa,
            "[token_configs.kbs]\nurl = \"https://aa:1\"\ncert = \"ca.pem\"\n",
        )
        .unwrap();
        let s = resolve(&global(&["--coco-config", aa.to_str().unwrap()]), &none).unwrap();
        assert_eq!(
            (s.url.as_str(), s.ca_pem.as_deref()),
            ("https://aa:1", Some(&b"PEM"[..]))
        );
        let aaj = d.path().join("aa.json");
        std::fs::write(
            &aaj,
            r#"{"token_configs": {"kbs": {"url": "https://aaj:1"}}}"#,
        )
        .unwrap();
        let s = resolve(&global(&["--coco-config", aaj.to_str().unwrap()]), &none).unwrap();
        assert_eq!(s.url, "https://aaj:1");

        // offline_fs_kbc, no URL, a bad type, bad syntax: usage errors naming the file.
        for body in [
            "[kbc]\nname = \"offline_fs_kbc\"\nurl = \"null\"\n",
            "[log]\nlevel = \"info\"\n",
            "[kbc]\nurl = 5\n",
            "[kbc\n",
            "{\"kbc\": ",
        ] {
            let p = d.path().join("bad.toml");
            std::fs::write(&p, body).unwrap();
            let e = resolve(&global(&["--coco-config", p.to_str().unwrap()]), &none).unwrap_err();
            assert_eq!(crate::exit::classify(&e), Exit::Usage, "{body}: {e:#}");
            assert!(format!("{e:#}").contains("bad.toml"), "{e:#}");
        }
    }

    #[test]
    fn inline_pem_in_config() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("c.toml");
        std::fs::write(&cfg, "[kbs]\nurl = \"https://x\"\ncert = \"-----BEGIN CERTIFICATE-----\\nAA\\n-----END CERTIFICATE-----\"\ntimeout = 3\n").unwrap();
        let s = resolve(
            &global(&["--config", cfg.to_str().unwrap()]),
            &d.path().join("n"),
        )
        .unwrap();
        assert!(s.ca_pem.unwrap().starts_with(b"-----BEGIN"));
        assert_eq!(s.timeout, Duration::from_secs(3));
    }
}
