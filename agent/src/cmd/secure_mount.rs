//! `ccmount secure-mount --request FILE|- [-f] [--ready-file FILE] [-o OPTS] [--threads N]`:
//! the secure mount of the Confidential Containers data hub (CDH), done by ccmount itself.
//!
//! Mirrors CDH's `SecureMount(volume_type, options, flags, mount_point)` for
//! `alibaba-cloud-oss` (guest-components `confidential-data-hub/storage/src/volume_type/`,
//! kbs-protocol.md §5.5): where CDH unseals `akId`/`akSecret`/`encPasswd`, writes them to
//! files and runs `ossfs` then `gocryptfs`, ccmount unseals them in memory and serves the
//! bucket's gocryptfs tree with its own read-only FUSE mount of `s3://BUCKET/PATH`
//! ([`crate::serve::foreground_supplied`]): no ossfs, no gocryptfs binary, no secret file.
//!
//! Parse → plan → run: the request (`attest::secure_mount`), its bucket, path and endpoint
//! and the mount options are checked before any secret is read or the KBS contacted (exit
//! 2). Then the run's storage options ([`crate::remote::options`], flags and `[source]`)
//! with the request's endpoint and access key on top, then the sealed fields are unsealed
//! ([`crate::unseal::unseal`]) over the process-wide attested session that everything else
//! uses ([`crate::kbs`]), then the mount.
//!
//! Background mode is `ccmount mount`'s ([`super::mount::spawn_daemon`]): the parent
//! re-executes itself with `--daemon-child` and waits for "ready" on the status pipe. With
//! `--request -` the parent has already read stdin; it writes the request to the child's
//! stdin (a pipe: never argv or the environment), and the child reads it from there.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use attest::secure_mount::{MAX_REQUEST_LEN, OssVolume, SecretValue, SecureMountRequest, Volume};
use gocryptfs_format::KeySource;
use s3_source::{Credentials, S3Location, S3Options};
use zeroize::Zeroizing;

use super::mount::{StatusPipe, spawn_daemon};
use crate::cli::{ExpectArgs, ExpectMode, GlobalArgs, SecureMountArgs};
use crate::exit::{self, Exit, coded};
use crate::plan::{KeyPlan, MountPlan};
use crate::serve;

pub(crate) fn run(g: &GlobalArgs, a: &SecureMountArgs, argv: &[OsString]) -> Result<Exit> {
    let bytes = read_request(&a.request)?;
    let req = parse(&bytes, &a.request)?;
    let Volume::AlibabaCloudOss(oss) = &req.volume;
    let plan = plan(a, oss, &req)?;
    if !a.foreground && !a.daemon_child {
        return spawn_daemon(argv, is_stdin(&a.request).then_some(&bytes[..]));
    }
    drop(bytes);
    tracing::debug!(
        mount_point = %req.mount_point,
        flags = ?req.flags,
        "secure-mount request of {} at {}",
        plan.cipherdir.display(),
        oss.endpoint()
    );
    let status = a.daemon_child.then(StatusPipe::stdout);
    let ready = || {
        if let Some(s) = &status {
            s.ready();
        }
    };
    let res =
        supplied(g, oss).and_then(|supplied| serve::foreground_supplied(g, &plan, supplied, ready));
    match res {
        Ok(code) => Ok(code),
        Err(err) => match status {
            Some(s) => {
                // The parent prints it; this process exits with the same code quietly.
                let code = exit::classify(&err);
                s.failed(code, &exit::message(&err));
                Ok(code)
            }
            None => Err(err),
        },
    }
}

fn is_stdin(p: &Path) -> bool {
    p == Path::new("-")
}

/// How messages name the request.
fn request_name(p: &Path) -> String {
    if is_stdin(p) {
        "the secure-mount request on stdin".to_owned()
    } else {
        format!("--request {}", p.display())
    }
}

/// The request's bytes (at most 64 KiB), from a file or stdin, in a wiped buffer: plain
/// secrets may be in it.
fn read_request(p: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let max = MAX_REQUEST_LEN as u64;
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_REQUEST_LEN + 1));
    crate::hardening::lock_capacity(&buf, "secure-mount request");
    let read = if is_stdin(p) {
        std::io::stdin().lock().take(max + 1).read_to_end(&mut buf)
    } else {
        File::open(p)
            .with_context(|| format!("opening {}", request_name(p)))?
            .take(max + 1)
            .read_to_end(&mut buf)
    };
    read.with_context(|| format!("reading {}", request_name(p)))?;
    if buf.len() > MAX_REQUEST_LEN {
        return Err(coded(
            Exit::Usage,
            format!(
                "{} is larger than 64 KiB; is it a CDH secure-mount request?",
                request_name(p)
            ),
        ));
    }
    Ok(buf)
}

/// Parses the request; every refusal is a usage error (2) naming the field.
fn parse(bytes: &[u8], p: &Path) -> Result<SecureMountRequest> {
    SecureMountRequest::parse(bytes)
        .map_err(|e| coded(Exit::Usage, format!("{}: {e}", request_name(p))))
}

/// The mount the request asks for, checked: the `s3://` location, the endpoint's form and
/// the mount options. Nothing secret is read.
fn plan(a: &SecureMountArgs, oss: &OssVolume, req: &SecureMountRequest) -> Result<MountPlan> {
    let url = oss.s3_url();
    S3Location::parse(&url).map_err(|e| {
        coded(
            Exit::Usage,
            format!("options.bucket and options.path of the secure-mount request: {e}"),
        )
    })?;
    // The endpoint's form now; whether plain HTTP is allowed is decided with the run's
    // storage options (`--s3-allow-http` or `[source] allow_http`) in `supplied`.
    S3Options {
        endpoint: Some(oss.endpoint()),
        allow_http: true,
        ..S3Options::default()
    }
    .check()
    .context("options.url of the secure-mount request")?;
    let config = crate::mountopts::config(&a.options, a.threads, false)
        .map_err(|m| coded(Exit::Usage, m))?;
    Ok(MountPlan {
        cipherdir: PathBuf::from(url),
        mountpoint: PathBuf::from(&req.mount_point),
        key: KeyPlan::Supplied,
        config,
        ready_file: a.ready_file.clone(),
        expect: ExpectArgs {
            expect: None,
            expect_signed_by: None,
            expect_model: None,
            expect_min_version: None,
        },
        expect_mode: ExpectMode::Full,
        receipt: None,
        // The daemon child keeps the caller's terminal until it is ready.
        foreground: a.foreground || a.daemon_child,
        cache_size: None,
    })
}

/// The storage options and the key: the run's storage options with the request's endpoint
/// and access key, and the password; sealed fields unsealed over the attested session.
fn supplied(g: &GlobalArgs, oss: &OssVolume) -> Result<serve::Supplied> {
    let mut s3 = crate::remote::options(g)?;
    s3.endpoint = Some(oss.endpoint());
    s3.check()
        .context("options.url of the secure-mount request")?;
    if let Some((id, secret)) = &oss.access_key {
        let access_key_id = text(id, "akId")?;
        let secret_access_key = text(secret, "akSecret")?;
        s3.credentials = Some(Credentials {
            access_key_id: access_key_id.to_string(),
            secret_access_key,
            session_token: None,
        });
    }
    let key = password(&oss.password)?;
    Ok(serve::Supplied { key, s3 })
}

/// How messages name an option.
fn what(field: &str) -> String {
    format!("options.{field} of the secure-mount request")
}

/// A field's bytes: the plain value, or the sealed secret's resource (signature checked
/// first, then fetched over the shared attested session).
fn bytes_of(v: &SecretValue, field: &str) -> Result<Zeroizing<Vec<u8>>> {
    match v {
        SecretValue::Plain(s) => Ok(Zeroizing::new(s.expose().to_vec())),
        SecretValue::Sealed(text) => {
            Ok(crate::unseal::unseal(text.as_bytes(), &what(field))?.into_zeroizing())
        }
    }
}

/// An access key part as text: surrounding white space (a newline stored with a KBS
/// resource) dropped; empty, non-UTF-8 or control characters refused (never echoed).
fn text(v: &SecretValue, field: &str) -> Result<Zeroizing<String>> {
    let bytes = bytes_of(v, field)?;
    let s = std::str::from_utf8(&bytes)
        .map_err(|_| coded(Exit::Usage, format!("{}: not UTF-8 text", what(field))))?
        .trim();
    if s.is_empty() || s.len() > 4096 || s.chars().any(char::is_control) {
        return Err(coded(
            Exit::Usage,
            format!(
                "{}: empty, longer than 4096 bytes or has control characters",
                what(field)
            ),
        ));
    }
    Ok(Zeroizing::new(s.to_owned()))
}

/// The gocryptfs password: the first line of the value, as CDH's `gocryptfs -passfile`.
fn password(v: &SecretValue) -> Result<KeySource> {
    let bytes = bytes_of(v, "encPasswd")?;
    let code = match v {
        // A KBS resource that is no password: the key is wrong, as `--key` says.
        SecretValue::Sealed(_) => Exit::WrongKey,
        SecretValue::Plain(_) => Exit::Usage,
    };
    let key = KeySource::password_from_passfile(&bytes).map_err(|e| {
        coded(
            code,
            format!("{}: not a usable password ({e})", what("encPasswd")),
        )
    })?;
    if let KeySource::Password(pw) = &key {
        crate::hardening::lock(pw, "password");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;
    use clap::Parser as _;

    fn args(extra: &[&str]) -> (GlobalArgs, SecureMountArgs) {
        let argv = [&["ccmount", "secure-mount", "--request", "r.json"], extra].concat();
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        match cli.command {
            crate::cli::Command::SecureMount(a) => (cli.global, a),
            _ => panic!("not secure-mount"),
        }
    }

    fn request(url: &str, bucket: &str, path: &str) -> SecureMountRequest {
        let j = serde_json::json!({
            "volume_type": "alibaba-cloud-oss",
            "mount_point": "/mnt/model",
            "flags": [],
            "options": {
                "bucket": bucket, "path": path, "url": url, "encrypted": "gocryptfs",
                "akId": "id", "akSecret": "plain-ak-secret", "encPasswd": "pw\nsecond line",
                "readonly": "true",
            },
        });
        SecureMountRequest::parse(j.to_string().as_bytes()).unwrap()
    }

    fn oss(r: &SecureMountRequest) -> &OssVolume {
        let Volume::AlibabaCloudOss(o) = &r.volume;
        o
    }

    #[test]
    fn the_plan_mounts_the_bucket_path_read_only_with_a_supplied_key() {
        let (_, a) = args(&[
            "-f",
            "--ready-file",
            "/run/r",
            "-o",
            "allow_other",
            "--threads",
            "3",
        ]);
        let r = request("oss-cn-hangzhou.aliyuncs.com", "models", "/qwen/v1/");
        let p = plan(&a, oss(&r), &r).unwrap();
        assert_eq!(p.cipherdir, PathBuf::from("s3://models/qwen/v1"));
        assert_eq!(p.mountpoint, PathBuf::from("/mnt/model"));
        assert!(matches!(p.key, KeyPlan::Supplied));
        assert_eq!(p.ready_file, Some(PathBuf::from("/run/r")));
        assert!(p.foreground);
        assert!(p.expect.expect.is_none());
    }

    #[test]
    fn cheap_refusals_are_usage_errors() {
        let (_, a) = args(&[]);
        for r in [
            request("https://oss.example", "Bad_Bucket!", ""),
            request("https://oss.example", "models", "a/../b"),
            request("ftp://oss.example", "models", ""),
            request("https://user:pw@oss.example", "models", ""),
        ] {
            let e = plan(&a, oss(&r), &r).unwrap_err();
            assert_eq!(exit::classify(&e), Exit::Usage, "{e:#}");
        }
        let (_, a) = args(&["--threads", "0"]);
        let r = request("https://oss.example", "models", "");
        assert_eq!(
            exit::classify(&plan(&a, oss(&r), &r).unwrap_err()),
            Exit::Usage
        );
    }

    #[test]
    fn plain_http_needs_the_opt_in_and_the_request_overrides_the_run() {
        let r = request("http://127.0.0.1:9000", "models", "");
        let (g, _) = args(&[]);
        let e = supplied(&g, oss(&r)).unwrap_err();
        assert_eq!(exit::classify(&e), Exit::Usage);
        assert!(
            exit::message(&e).contains("plain HTTP"),
            "{}",
            exit::message(&e)
        );
        let argv = [
            "ccmount",
            "--s3-allow-http",
            "--s3-endpoint",
            "https://elsewhere.example",
            "secure-mount",
            "--request",
            "r.json",
        ];
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let s = supplied(&cli.global, oss(&r)).unwrap();
        assert_eq!(s.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        let c = s.s3.credentials.as_ref().unwrap();
        assert_eq!(c.access_key_id, "id");
        assert_eq!(c.secret_access_key.as_str(), "plain-ak-secret");
        let KeySource::Password(pw) = &s.key else {
            panic!("not a password")
        };
        assert_eq!(&pw[..], b"pw");
        // Nothing secret in Debug.
        let dbg = format!("{s:?} {:?}", s.s3);
        assert!(
            !dbg.contains("plain-ak-secret") && !dbg.contains("pw\n"),
            "{dbg}"
        );
    }

    #[test]
    fn secure_mount_is_never_read_as_the_mount_helper_form() {
        let argv: Vec<OsString> = ["ccmount", "secure-mount", "x", "-o", "ro"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(crate::mountopts::helper_argv(&argv), Ok(None));
    }

    #[test]
    fn a_request_over_64_kib_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.json");
        std::fs::write(&p, vec![b' '; MAX_REQUEST_LEN + 1]).unwrap();
        let e = read_request(&p).unwrap_err();
        assert_eq!(exit::classify(&e), Exit::Usage);
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(&read_request(&p).unwrap()[..], b"{}");
        let e = parse(b"{}", &p).unwrap_err();
        assert_eq!(exit::classify(&e), Exit::Usage);
        assert!(
            exit::message(&e).contains("volume_type"),
            "{}",
            exit::message(&e)
        );
    }
}
