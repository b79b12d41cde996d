//! `test-kbs`: run the Trustee-compatible test KBS as a process (for manual runs and the
//! demo). Prints the URL on stdout when ready and serves until SIGTERM or SIGINT.
//! Spec: `../shared/specs/kbs-protocol.md` §6.7; flags in `tests/kbs/README.md`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use test_kbs::{AdminMode, KbsConfig, Policy, TeeRule, TestKbs};

/// A Trustee-compatible KBS for tests (RCAR 0.4.0). NOT an attestation service: the sample
/// verifier checks no signature and tdx/snp are checked structurally only.
#[derive(Debug, Parser)]
#[command(name = "test-kbs", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve plain HTTP instead of HTTPS with a generated CA.
    #[arg(long)]
    http: bool,
    /// Preload a resource from a file: repo/type/tag=@FILE (repeatable).
    #[arg(long = "resource", value_name = "PATH=@FILE")]
    resources: Vec<String>,
    /// Default resource policy.
    #[arg(long, value_enum, default_value_t = PolicyArg::TrusteeDefault)]
    policy: PolicyArg,
    /// Read the resource policy from a test-kbs policy JSON file (overrides --policy).
    #[arg(long, value_name = "FILE")]
    policy_file: Option<PathBuf>,
    /// Allow sample evidence (Trustee denies it by default).
    #[arg(long)]
    allow_sample: bool,
    /// Allow this TEE type in the default rule (repeatable).
    #[arg(long = "allow-tee", value_name = "TEE")]
    allow_tees: Vec<String>,
    /// Write the CA certificate (PEM) here when ready.
    #[arg(long, value_name = "FILE")]
    ca_out: Option<PathBuf>,
    /// Write the URL here when ready.
    #[arg(long, value_name = "FILE")]
    url_out: Option<PathBuf>,
    /// Token lifetime, e.g. 300, 300s, 5m, 1h.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    token_ttl: Duration,
    /// Session (cookie) lifetime.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    session_timeout: Duration,
    /// Refuse every admin call (default: insecure allow-all, as Trustee's InsecureAllowAll).
    #[arg(long)]
    admin_deny_all: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PolicyArg {
    /// Trustee's default: every TEE except sample.
    TrusteeDefault,
    /// Every TEE including sample.
    AllowAll,
    /// Nobody.
    DenyAll,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: use e.g. 30s, 5m, 1h, 250ms"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s, m or h")),
    };
    Ok(d)
}

fn config(args: &Args) -> Result<KbsConfig, String> {
    let mut policy = match &args.policy_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Policy::from_json(&text).map_err(|e| e.to_string())?
        }
        None => match args.policy {
            PolicyArg::TrusteeDefault => Policy::trustee_default(),
            PolicyArg::AllowAll => Policy::allow_all(),
            PolicyArg::DenyAll => Policy::deny_all(),
        },
    };
    let mut tees = args.allow_tees.clone();
    if args.allow_sample {
        tees.push("sample".to_owned());
    }
    for tee in tees {
        let default = std::mem::replace(&mut policy.default, TeeRule::DenyAll);
        policy.default = default.with_tee(&tee);
    }
    let mut cfg = KbsConfig::default()
        .with_listen(args.listen)
        .with_policy(policy)
        .with_token_ttl(args.token_ttl)
        .with_session_timeout(args.session_timeout);
    if args.http {
        cfg = cfg.http();
    }
    if args.admin_deny_all {
        cfg = cfg.with_admin(AdminMode::DenyAll);
    }
    for spec in &args.resources {
        let Some((path, file)) = spec.split_once("=@") else {
            return Err(format!(
                "bad --resource {spec:?}: use repo/type/tag=@FILE (values never on the command line)"
            ));
        };
        let value =
            std::fs::read(file).map_err(|e| format!("cannot read resource file {file}: {e}"))?;
        cfg = cfg.with_resource(path, value);
    }
    Ok(cfg)
}

fn write_file(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let cfg = config(args)?;
    // Signal handlers first, so a SIGTERM right after the URL is printed is not lost.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let kbs = TestKbs::start(cfg).map_err(|e| e.to_string())?;
    let _guard = runtime.enter();
    let waiter = runtime.spawn(wait_for_signal());
    if let Some(path) = &args.ca_out {
        kbs.write_ca(path).map_err(|e| e.to_string())?;
    }
    if let Some(path) = &args.url_out {
        write_file(path, &format!("{}\n", kbs.url()))?;
    }
    eprintln!(
        "test-kbs: serving {} (policy default: {:?}); NOT an attestation service; SIGTERM stops it",
        kbs.url(),
        kbs.policy().default
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", kbs.url()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    runtime.block_on(waiter).map_err(|e| e.to_string())??;
    drop(kbs);
    eprintln!("test-kbs: stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("test-kbs: {e}");
            ExitCode::FAILURE
        }
    }
}
