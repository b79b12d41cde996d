//! Mount options as users know them from gocryptfs, FUSE and `/etc/fstab`, and the
//! mount-helper command line.
//!
//! `mount -t fuse.ccmount CIPHERDIR MOUNTPOINT -o OPTS` (and an fstab line) makes
//! `mount.fuse3` run `ccmount CIPHERDIR MOUNTPOINT -o OPTS` (no subcommand; `mount(8)` adds
//! `rw` unless `ro` is given, `mount.fuse3` adds `dev,suid` unless `nodev,nosuid` are).
//! [`helper_argv`] rewrites that into `ccmount mount ...`, turning the ccmount options
//! (`passfile=`, `key=`, ...) into flags. gocryptfs' own `-o` handling is the model:
//! `allow_other` implies `default_permissions` (`mount.go`), and mounts are `nosuid,nodev`.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use fuse_decrypt::MountConfig;

/// Subcommand names: argv whose first word is one of these is not the helper form.
const SUBCOMMANDS: [&str; 16] = [
    "encrypt",
    "decrypt",
    "verify",
    "info",
    "manifest",
    "mount",
    "umount",
    "secure-mount",
    "get-resource",
    "secrets",
    "attest",
    "load-gpu",
    "demo",
    "completions",
    "man",
    "help",
];

/// ccmount options that the helper form carries inside `-o`, and the flag each becomes.
const HELPER_KEYS: [(&str, &str); 9] = [
    ("passfile", "--passfile"),
    ("masterkey_file", "--masterkey-file"),
    ("masterkey-file", "--masterkey-file"),
    ("key", "--key"),
    ("key_format", "--key-format"),
    ("key-format", "--key-format"),
    ("threads", "--threads"),
    ("ready_file", "--ready-file"),
    ("ready-file", "--ready-file"),
];

/// Recognises the mount-helper argv `ccmount SRC MNT [-o OPTS]...` and rewrites it as
/// `ccmount mount SRC MNT [--passfile F ...] [-o OTHER_OPTS]`. `Ok(None)`: not the helper
/// form (clap parses argv as it is).
///
/// # Errors
/// An option value that is not UTF-8.
pub(crate) fn helper_argv(argv: &[OsString]) -> Result<Option<Vec<OsString>>, String> {
    let (Some(prog), Some(src), Some(mnt)) = (argv.first(), argv.get(1), argv.get(2)) else {
        return Ok(None);
    };
    let is_word = |a: &OsStr| !a.is_empty() && !a.as_encoded_bytes().starts_with(b"-");
    if !is_word(src) || !is_word(mnt) || src.to_str().is_some_and(|s| SUBCOMMANDS.contains(&s)) {
        return Ok(None);
    }
    // Only as the helper: run as `mount.ccmount`/`mount.fuse.ccmount`, or with `-o` (what
    // mount(8) and mount.fuse3 pass). `ccmount verfy x` is a typo for clap to report, not
    // a mount of "verfy" on "x".
    let as_helper = Path::new(prog)
        .file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"mount."));
    let has_o = argv
        .iter()
        .skip(3)
        .any(|a| a.as_encoded_bytes().starts_with(b"-o"));
    if !as_helper && !has_o {
        return Ok(None);
    }
    // The rest must be `-o OPTS` / `-oOPTS` only (what mount.fuse3 passes).
    let mut opts: Vec<&OsStr> = Vec::new();
    let mut rest = argv.iter().skip(3);
    while let Some(a) = rest.next() {
        if a == "-o" {
            match rest.next() {
                Some(v) => opts.push(v),
                None => return Ok(None),
            }
        } else if a.as_encoded_bytes().starts_with(b"-o") {
            let s = a
                .to_str()
                .ok_or_else(|| "mount options must be UTF-8 text".to_owned())?;
            opts.push(OsStr::new(s.get(2..).unwrap_or_default()));
        } else {
            return Ok(None);
        }
    }
    let mut out: Vec<OsString> = vec![prog.clone(), "mount".into(), src.clone(), mnt.clone()];
    let mut generic: Vec<String> = Vec::new();
    for o in opts {
        let s = o
            .to_str()
            .ok_or_else(|| "mount options must be UTF-8 text".to_owned())?;
        for opt in s.split(',').filter(|x| !x.is_empty()) {
            let (k, v) = opt
                .split_once('=')
                .map_or((opt, None), |(k, v)| (k, Some(v)));
            match HELPER_KEYS.iter().find(|(name, _)| *name == k) {
                Some((_, flag)) => {
                    let v = v.ok_or_else(|| format!("mount option {k} needs a value ({k}=...)"))?;
                    out.push((*flag).into());
                    out.push(v.into());
                }
                None => generic.push(opt.to_owned()),
            }
        }
    }
    if !generic.is_empty() {
        out.push("-o".into());
        out.push(generic.join(",").into());
    }
    Ok(Some(out))
}

/// Builds the mount configuration from `ccmount mount`'s flags and `-o` options.
///
/// # Errors
/// An unknown option, a bad value, or a helper-only option (`passfile=`) given to
/// `ccmount mount -o` instead of its flag.
pub(crate) fn config(
    options: &[String],
    threads: Option<usize>,
    direct_io: bool,
) -> Result<MountConfig, String> {
    let mut c = MountConfig::default();
    c.threads = threads.unwrap_or(0);
    if threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    c.direct_io = direct_io;
    for group in options {
        for opt in group.split(',').filter(|x| !x.is_empty()) {
            apply(&mut c, opt)?;
        }
    }
    Ok(c)
}

fn apply(c: &mut MountConfig, opt: &str) -> Result<(), String> {
    let (k, v) = opt
        .split_once('=')
        .map_or((opt, None), |(k, v)| (k, Some(v)));
    let need = || v.ok_or_else(|| format!("mount option {k} needs a value"));
    // A switch takes no value: `default_permissions=0` must not silently turn it on.
    const SWITCHES: [&str; 29] = [
        "ro",
        "nosuid",
        "nodev",
        "exec",
        "atime",
        "relatime",
        "nodiratime",
        "strictatime",
        "lazytime",
        "async",
        "kernel_cache",
        "auto_cache",
        "rw",
        "suid",
        "dev",
        "noexec",
        "noatime",
        "allow_other",
        "allow_root",
        "default_permissions",
        "nonempty",
        "direct_io",
        "defaults",
        "auto",
        "noauto",
        "nouser",
        "_netdev",
        "nofail",
        "sync",
    ];
    if v.is_some() && SWITCHES.contains(&k) {
        return Err(format!(
            "mount option {k} takes no value (got {k}=...): give it as plain {k}"
        ));
    }
    match k {
        // ccmount mounts are always read-only, nosuid and nodev (like gocryptfs -ro).
        "ro" | "nosuid" | "nodev" | "exec" | "atime" | "relatime" | "nodiratime"
        | "strictatime" | "lazytime" | "async" | "kernel_cache" | "auto_cache" => {}
        "rw" => tracing::debug!("mount option rw ignored: ccmount mounts are read-only"),
        "suid" | "dev" => {
            tracing::debug!("mount option {k} ignored: ccmount mounts are nosuid,nodev");
        }
        "noexec" => c.noexec = true,
        "noatime" => c.noatime = true,
        "allow_other" => c.allow_other = true,
        "allow_root" => c.allow_root = true,
        "default_permissions" => c.default_permissions = true,
        "nonempty" => c.nonempty = true,
        "direct_io" => c.direct_io = true,
        "fsname" => {
            let s = need()?;
            if s.is_empty() || s.contains(['\\', ',']) || s.chars().any(char::is_control) {
                return Err(
                    "fsname= must be a non-empty name without backslashes, commas or control characters"
                        .into(),
                );
            }
            c.fsname = Some(s.into());
        }
        "subtype" => {
            let s = need()?;
            if s.is_empty() || s.contains([',', ' ', '/']) {
                return Err(format!("subtype={s}: not a valid type name"));
            }
            c.subtype = s.to_owned();
        }
        "read_ahead_kb" => {
            let n: u32 = need()?
                .parse()
                .map_err(|_| format!("read_ahead_kb={}: not a number", v.unwrap_or_default()))?;
            c.read_ahead_kb = (n > 0).then_some(n);
        }
        // What mount(8), fstab and systemd pass along or keep for themselves; and libfuse
        // options that do not apply (sizes are chosen for speed).
        "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "owner" | "group"
        | "_netdev" | "nofail" | "sync" | "dirsync" | "max_read" | "blksize" | "fd"
        | "rootmode" | "user_id" | "group_id" | "context" | "fscontext" | "defcontext"
        | "rootcontext" | "comment" => {}
        _ if k.starts_with("x-") => {}
        _ if HELPER_KEYS.iter().any(|(name, _)| *name == k) => {
            let flag = HELPER_KEYS
                .iter()
                .find(|(name, _)| *name == k)
                .map_or("", |(_, f)| *f);
            return Err(format!(
                "mount option {k}= is for the mount-helper form (mount -t fuse.ccmount); with `ccmount mount` use {flag}"
            ));
        }
        _ => {
            return Err(format!(
                "unknown mount option {opt:?}; see `ccmount mount --help` and docs/cli.md"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn helper_form_from_fstab_is_translated() {
        let got = helper_argv(&os(&[
            "ccmount",
            "/data/enc/model",
            "/mnt/model",
            "-o",
            "ro,nosuid,nodev,allow_other,passfile=/etc/ccmount/model.pass",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            os(&[
                "ccmount",
                "mount",
                "/data/enc/model",
                "/mnt/model",
                "--passfile",
                "/etc/ccmount/model.pass",
                "-o",
                "ro,nosuid,nodev,allow_other",
            ])
        );
    }

    #[test]
    fn helper_form_variants() {
        let got = helper_argv(&os(&[
            "/usr/local/bin/ccmount",
            "src",
            "mnt",
            "-orw,dev,suid,key=kbs:///a/b/c,key_format=masterkey,threads=3,ready_file=/run/r,direct_io",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            os(&[
                "/usr/local/bin/ccmount",
                "mount",
                "src",
                "mnt",
                "--key",
                "kbs:///a/b/c",
                "--key-format",
                "masterkey",
                "--threads",
                "3",
                "--ready-file",
                "/run/r",
                "-o",
                "rw,dev,suid,direct_io",
            ])
        );
        // No options at all: only when run under a helper name (else it may be a typo).
        let got = helper_argv(&os(&["mount.ccmount", "a", "b"]))
            .unwrap()
            .unwrap();
        assert_eq!(got, os(&["mount.ccmount", "mount", "a", "b"]));
        assert_eq!(helper_argv(&os(&["ccmount", "a", "b"])).unwrap(), None);
        assert!(helper_argv(&os(&["ccmount", "a", "b", "-o", "passfile"])).is_err());
    }

    #[test]
    fn ordinary_command_lines_are_left_alone() {
        for argv in [
            vec!["ccmount", "mount", "a", "b"],
            vec!["ccmount", "decrypt", "a", "b", "--passfile", "p"],
            vec!["ccmount", "--config", "x", "mount", "a", "b"],
            vec!["ccmount", "a"],
            vec!["ccmount", "a", "b", "--foreground"],
            vec!["ccmount", "a", "b", "-o"],
            vec!["ccmount", "help", "mount"],
            // Typos are clap's to report, not mounts of "verfy" on "x".
            vec!["ccmount", "verfy", "x"],
            vec!["ccmount", "unmount", "m"],
            vec!["ccmount", "completion", "bash"],
        ] {
            assert_eq!(helper_argv(&os(&argv)).unwrap(), None, "{argv:?}");
        }
        // Invoked as the helper, no `-o` is needed.
        assert!(
            helper_argv(&os(&["/sbin/mount.ccmount", "src", "mnt"]))
                .unwrap()
                .is_some()
        );
    }

    fn opts(groups: &[&str]) -> Result<MountConfig, String> {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        config(&groups, None, false)
    }

    #[test]
    fn options_map_to_the_config() {
        let c = opts(&[
            "ro,nosuid,nodev,allow_other,fsname=model,noatime",
            "dev,suid,rw,nofail,x-systemd.automount,_netdev,read_ahead_kb=8192",
        ])
        .unwrap();
        assert!(c.allow_other && c.noatime && !c.noexec && !c.direct_io);
        assert_eq!(c.fsname.as_deref(), Some(OsStr::new("model")));
        assert_eq!(c.read_ahead_kb, Some(8192));
        let c = opts(&["direct_io,nonempty,noexec,subtype=llm"]).unwrap();
        assert!(c.direct_io && c.nonempty && c.noexec);
        assert_eq!(c.subtype, "llm");
    }

    #[test]
    fn bad_options_are_refused() {
        for o in [
            "bogus",
            "passfile=/x",
            "fsname",
            "read_ahead_kb=x",
            "subtype=a/b",
            "fsname=",
            "fsname=a\\b",
            "default_permissions=0",
            "allow_other=1",
            "ro=no",
        ] {
            assert!(opts(&[o]).is_err(), "{o}");
        }
    }
}
