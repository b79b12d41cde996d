//! The command line exactly as the user typed it ("low args", ripgrep style).
//!
//! Mirrors `../shared/design/cli.md`, which is a contract: syntax written there must keep
//! working. Validation that needs more than one flag, the filesystem, or the network happens
//! later in each command's plan, before any side effect.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ccmount: attest to a Trustee KBS, fetch a model key, and serve a gocryptfs-encrypted
/// model as plaintext (FUSE mount, RAM decrypt, or GPU load).
#[derive(Debug, Parser)]
#[command(name = "ccmount", version = crate::version::string(), about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// Write a JSON receipt of what was accepted (verify, decrypt, manifest, mount, load-gpu;
    /// also accepted after those subcommands).
    #[arg(long, value_name = "FILE")]
    pub(crate) receipt: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command accepts (attestation and output).
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// KBS base URL, e.g. `https://kbs.example:8080` (else from --config or the kernel
    /// command line `agent.aa_kbc_params=cc_kbc::<url>`).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "KBS and attestation"
    )]
    pub(crate) kbs_url: Option<String>,
    /// Extra CA certificate (PEM) to trust for the KBS's TLS certificate.
    #[arg(
        long,
        global = true,
        value_name = "PEM",
        help_heading = "KBS and attestation"
    )]
    pub(crate) kbs_cert: Option<PathBuf>,
    /// TEE evidence to present: auto-detect, or name one. `sample` is insecure and only for
    /// tests; it is never chosen by `auto`.
    #[arg(
        long,
        global = true,
        value_name = "TEE",
        default_value = "auto",
        help_heading = "KBS and attestation"
    )]
    pub(crate) tee: String,
    /// TOML configuration file (KBS settings, jobs, secrets to deliver).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "KBS and attestation"
    )]
    pub(crate) config: Option<PathBuf>,
    /// A Confidential Containers config to take the KBS URL and certificate from: the
    /// confidential data hub's `cdh.toml` (`[kbc] url`, `kbs_cert`) or the attestation
    /// agent's config (`[token_configs.kbs] url`, `cert`; TOML or JSON).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "KBS and attestation"
    )]
    pub(crate) coco_config: Option<PathBuf>,
    /// Where the signing keys (JWK) of sealed secrets whose kid is a relative path are.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "KBS and attestation"
    )]
    pub(crate) sealed_key_dir: Option<PathBuf>,
    /// Unseal sealed secrets without checking their signature (as CDH's
    /// skip_sealed_secret_verification): whoever can write one then chooses the resource.
    #[arg(long, global = true, help_heading = "KBS and attestation")]
    pub(crate) insecure_skip_sealed_signature: bool,
    /// Total deadline for KBS operations, e.g. 30s, 2m.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, help_heading = "KBS and attestation")]
    pub(crate) timeout: Option<Duration>,
    /// Allow a plain-HTTP KBS URL (local test KBS only). A man in the middle can then read
    /// the token and resource paths, and forge every resource the KBS returns, including
    /// kbs:/// pins (--expect) and keys: nothing the KBS sends is authenticated.
    #[arg(long, global = true, help_heading = "KBS and attestation")]
    pub(crate) insecure_http: bool,
    /// S3-compatible endpoint for s3:// cipher directories (OSS, MinIO, Ceph RGW, GCS), e.g.
    /// https://oss-cn-hangzhou.aliyuncs.com (else AWS_ENDPOINT_URL, else AWS).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Object storage (s3://)"
    )]
    pub(crate) s3_endpoint: Option<String>,
    /// Region of the bucket (else AWS_REGION, else us-east-1).
    #[arg(
        long,
        global = true,
        value_name = "REGION",
        help_heading = "Object storage (s3://)"
    )]
    pub(crate) s3_region: Option<String>,
    /// Virtual-hosted requests (bucket.host); the default for a named endpoint.
    #[arg(
        long,
        global = true,
        conflicts_with = "s3_path_style",
        help_heading = "Object storage (s3://)"
    )]
    pub(crate) s3_virtual_hosted: bool,
    /// Path-style requests (host/bucket); the default for an IP or localhost endpoint.
    #[arg(long, global = true, help_heading = "Object storage (s3://)")]
    pub(crate) s3_path_style: bool,
    /// Ranged GETs in flight (1..=256, default 8); memory is about 2 x the chunk size per request.
    #[arg(
        long,
        global = true,
        value_name = "N",
        help_heading = "Object storage (s3://)"
    )]
    pub(crate) s3_concurrency: Option<usize>,
    /// Bytes of ciphertext per ranged GET, e.g. 16MiB (default 8MiB; 64KiB..=64MiB).
    #[arg(
        long,
        global = true,
        value_name = "SIZE",
        help_heading = "Object storage (s3://)"
    )]
    pub(crate) s3_chunk_size: Option<String>,
    /// Accept a plain-HTTP endpoint (a local test server): requests and data travel
    /// unprotected (the data stays encrypted and authenticated).
    #[arg(long, global = true, help_heading = "Object storage (s3://)")]
    pub(crate) s3_allow_http: bool,
    /// Extra trusted CA certificates (PEM) for an HTTPS endpoint with a private CA (MinIO,
    /// Ceph RGW on premises); the system's roots stay trusted.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Object storage (s3://)"
    )]
    pub(crate) s3_ca_cert: Option<PathBuf>,
    /// Storage credentials: kbs:///REPO/TYPE/TAG (fetched in the same attested session as
    /// the key) or a file, holding {"access_key_id", "secret_access_key", "session_token"?};
    /// a sealed secret is unsealed. Else the AWS_* variables or web identity.
    #[arg(
        long,
        global = true,
        value_name = "SRC",
        help_heading = "Object storage (s3://)"
    )]
    pub(crate) s3_credentials: Option<String>,
    /// More logging (-v debug, -vv trace). Secrets are never logged at any level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet", help_heading = "Output")]
    pub(crate) verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, help_heading = "Output")]
    pub(crate) quiet: bool,
    /// Log format on stderr: human text, or one JSON object per line (Kubernetes).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = "Output")]
    pub(crate) log_format: LogFormat,
    /// Accept a tree whose names and symlink targets are stored in plaintext
    /// (PlaintextNames): the storage host can then choose them. Refused by default.
    #[arg(long, global = true, help_heading = "Policy (opt-ins)")]
    pub(crate) allow_plaintextnames: bool,
    /// Accept symlinks whose target is absolute or climbs above the tree's root (decrypt
    /// writes them, the mount serves them). Refused by default.
    #[arg(long, global = true, help_heading = "Policy (opt-ins)")]
    pub(crate) allow_outside_symlinks: bool,
    /// Keep setuid/setgid/sticky and group/other-write bits from the tree (masked off by
    /// default in decrypted files and in the mount).
    #[arg(long, global = true, help_heading = "Policy (opt-ins)")]
    pub(crate) preserve_modes: bool,
    /// Read whole all-zero blocks (holes) as zeros, as gocryptfs does, for trees that really
    /// hold sparse files. Refused by default: the storage can zero any block without the key.
    #[arg(long, global = true, help_heading = "Policy (opt-ins)")]
    pub(crate) allow_holes: bool,
    /// Most memory scrypt may use for gocryptfs.conf's cost (default 512MiB, 8x gocryptfs'
    /// default); a costlier config is refused before anything is allocated.
    #[arg(
        long,
        global = true,
        value_name = "SIZE",
        help_heading = "Policy (opt-ins)"
    )]
    pub(crate) max_scrypt_memory: Option<String>,
}

/// `--receipt FILE`, on the commands that write one.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ReceiptArgs {
    /// Write a JSON receipt of what was accepted (model digest, key URI, TEE, versions).
    #[arg(long, value_name = "FILE")]
    pub(crate) receipt: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the model key comes from. Exactly one source must be given.
// The group is declared by hand (not derived) so that `--key-format`, a modifier of
// `--key`, is not itself one of the mutually exclusive key sources.
#[derive(Debug, Clone, Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("keysrc").multiple(false)))]
pub(crate) struct KeyArgs {
    /// Password file; its first line is the password (as gocryptfs -passfile).
    #[arg(long, value_name = "FILE", group = "keysrc")]
    pub(crate) passfile: Option<PathBuf>,
    /// File holding the master key as 64 hex digits (dashes allowed, as gocryptfs prints it).
    #[arg(long, value_name = "FILE", group = "keysrc")]
    pub(crate) masterkey_file: Option<PathBuf>,
    /// Fetch the key from the KBS after attestation: kbs:///REPO/TYPE/TAG.
    #[arg(long, value_name = "URI", group = "keysrc")]
    pub(crate) key: Option<String>,
    /// What the KBS resource holds: a gocryptfs password, or a master key (32 raw bytes or
    /// 64 hex digits).
    #[arg(long, value_enum, default_value_t = KeyFormat::Password, requires = "key")]
    pub(crate) key_format: KeyFormat,
}

/// Meaning of a key fetched from the KBS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyFormat {
    /// The gocryptfs password (scrypt runs on it).
    Password,
    /// The 32-byte master key, raw or as 64 hex digits.
    Masterkey,
}

/// Whole-model pinning options.
#[derive(Debug, Clone, Args)]
pub(crate) struct ExpectArgs {
    /// Accept the model only if it matches: a manifest file, `sha256:<digest>`, or
    /// kbs:///REPO/TYPE/TAG holding either.
    #[arg(long, value_name = "PIN")]
    pub(crate) expect: Option<String>,
    /// Ed25519 public key (minisign format) that must have signed the manifest. Needs
    /// --expect-model: a signature alone would accept any older model signed with the key.
    #[arg(long, value_name = "PUBKEY", requires_all = ["expect", "expect_model"])]
    pub(crate) expect_signed_by: Option<PathBuf>,
    /// The model name the pinned manifest must carry (`ccmount manifest --model`).
    #[arg(long, value_name = "NAME", requires = "expect")]
    pub(crate) expect_model: Option<String>,
    /// The lowest model version accepted (refuses a rollback to an older signed release).
    #[arg(long, value_name = "N", requires = "expect_model")]
    pub(crate) expect_min_version: Option<u64>,
}

/// The model name and release written into a manifest (inside what a signature covers).
#[derive(Debug, Clone, Args)]
pub(crate) struct ModelTagArgs {
    /// The model's name, recorded in the manifest (checked by --expect-model).
    #[arg(long = "model", value_name = "NAME", requires = "model_version")]
    pub(crate) model_name: Option<String>,
    /// The model's release number, recorded in the manifest (checked by
    /// --expect-min-version); raise it with every release.
    #[arg(long, value_name = "N", requires = "model_name")]
    pub(crate) model_version: Option<u64>,
}

// The examples at the end of each subcommand's help (checked by `help_examples_parse`).
const EX_ENCRYPT: &str = concat!(
    "Examples:\n",
    "  ccmount encrypt --passfile model.pass ./llama ./llama.enc",
);
const EX_DECRYPT: &str = concat!(
    "Examples:\n",
    "  ccmount decrypt --passfile model.pass /models/llama.enc /dev/shm/llama\n",
    "  ccmount --kbs-url https://kbs.example:8080 --kbs-cert kbs-ca.pem decrypt /models/llama.enc /dev/shm/llama --key kbs:///default/llm/model-pass --expect kbs:///default/llm/manifest",
);
const EX_VERIFY: &str = concat!(
    "Examples:\n",
    "  ccmount verify --no-key --json ./llama.enc\n",
    "  ccmount verify --passfile model.pass --expect manifest.json ./llama.enc",
);
const EX_INFO: &str = concat!("Examples:\n", "  ccmount info ./llama.enc",);
const EX_MANIFEST: &str = concat!(
    "Examples:\n",
    "  ccmount manifest --passfile model.pass --model llama-3-8b --model-version 3 --out manifest.json ./llama.enc",
);
const EX_MOUNT: &str = concat!(
    "Examples:\n",
    "  ccmount mount --passfile model.pass /models/llama.enc /models/llama\n",
    "  ccmount --kbs-url https://kbs.example:8080 --kbs-cert kbs-ca.pem mount /models/llama.enc /models/llama --key kbs:///default/llm/model-pass --expect kbs:///default/llm/manifest --foreground\n",
    "  ccmount umount /models/llama",
);
const EX_SECURE_MOUNT: &str = concat!(
    "Examples:\n",
    "  ccmount --kbs-url https://kbs.example:8080 --kbs-cert kbs-ca.pem secure-mount --request /etc/ccmount/oss-mount.json --foreground --ready-file /run/model-ready\n",
    "  ccmount --coco-config /etc/confidential-data-hub.toml secure-mount --request /run/secure-mount.json\n",
    "  ccmount umount /mnt/model",
);
const EX_UMOUNT: &str = concat!("Examples:\n", "  ccmount umount /models/llama",);
const EX_GET_RESOURCE: &str = concat!(
    "Examples:\n",
    "  ccmount --kbs-url https://kbs.example:8080 --kbs-cert kbs-ca.pem get-resource kbs:///default/llm/tls-key --out /run/secrets/tls.key --mode 0400",
);
const EX_SECRETS: &str = concat!(
    "Examples:\n",
    "  ccmount --config /etc/ccmount/ccmount.toml secrets --once",
);
const EX_UNSEAL: &str = concat!(
    "Examples:\n",
    "  ccmount --kbs-url https://kbs.example:8080 --kbs-cert kbs-ca.pem unseal /etc/secrets/api-key --out /run/secrets/api-key",
);
const EX_ATTEST: &str = concat!(
    "Examples:\n",
    "  ccmount --kbs-url https://kbs.example:8080 --kbs-cert kbs-ca.pem attest --json",
);
const EX_LOAD_GPU: &str = concat!(
    "Examples:\n",
    "  ccmount load-gpu /models/llama.enc --passfile model.pass --expect manifest.json --json",
);
const EX_COMPLETIONS: &str = concat!(
    "Examples:\n",
    "  ccmount completions bash > /etc/bash_completion.d/ccmount",
);

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Encrypt a plaintext directory into a new gocryptfs cipher directory.
    #[command(after_help = EX_ENCRYPT)]
    Encrypt(EncryptArgs),
    /// Decrypt a whole cipher directory into OUTDIR (e.g. a RAM emptyDir).
    #[command(after_help = EX_DECRYPT)]
    Decrypt(DecryptArgs),
    /// Authenticate every block and name of a cipher directory without mounting.
    #[command(after_help = EX_VERIFY)]
    Verify(VerifyArgs),
    /// Show a cipher directory's parameters (no key needed).
    #[command(after_help = EX_INFO)]
    Info(InfoArgs),
    /// Write the canonical manifest (model digest) of a cipher directory.
    #[command(after_help = EX_MANIFEST)]
    Manifest(ManifestArgs),
    /// Mount a cipher directory read-only as plaintext through FUSE.
    #[command(after_help = EX_MOUNT)]
    Mount(MountArgs),
    /// Mount an encrypted tree in a bucket as a Confidential Containers data hub (CDH)
    /// secure-mount request (JSON) asks: read-only, no ossfs or gocryptfs binary.
    #[command(after_help = EX_SECURE_MOUNT)]
    SecureMount(SecureMountArgs),
    /// Unmount a ccmount (or any FUSE) mount.
    #[command(after_help = EX_UMOUNT)]
    Umount(UmountArgs),
    /// Attest and fetch one KBS resource.
    #[command(after_help = EX_GET_RESOURCE)]
    GetResource(GetResourceArgs),
    /// Deliver KBS secrets to files, and keep them fresh.
    #[command(after_help = EX_SECRETS)]
    Secrets(SecretsArgs),
    /// Unseal a Confidential Containers sealed secret (`sealed.…`) into a file.
    #[command(after_help = EX_UNSEAL)]
    Unseal(UnsealArgs),
    /// Run the attestation handshake and print what the KBS saw (never secrets).
    #[command(after_help = EX_ATTEST)]
    Attest(AttestArgs),
    /// Decrypt model files straight into GPU memory.
    #[command(after_help = EX_LOAD_GPU)]
    LoadGpu(LoadGpuArgs),
    /// Run the whole job on generated data with a local test KBS.
    Demo(DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(after_help = EX_COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout: `ccmount man | man -l -`.
    Man,
    /// Benchmark helper: a plain pinned host-to-device copy (no decryption), the baseline
    /// of `tests/bench/run.sh gpu`.
    #[command(hide = true)]
    BenchH2d(BenchH2dArgs),
}

impl Command {
    /// Whether the command was asked for JSON on stdout (`--json`): then a failure is a JSON
    /// document too.
    pub(crate) fn wants_json(&self) -> bool {
        match self {
            Command::Decrypt(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Info(a) => a.json,
            Command::Attest(a) => a.json,
            Command::LoadGpu(a) => a.json,
            _ => false,
        }
    }
}

/// `ccmount encrypt`.
#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    /// Plaintext directory to read.
    pub(crate) plaindir: PathBuf,
    /// Cipher directory to create (must be empty or absent).
    pub(crate) cipherdir: PathBuf,
    /// Password file; its first line is the password.
    #[arg(long, value_name = "FILE")]
    pub(crate) passfile: PathBuf,
    /// Use XChaCha20-Poly1305 for file contents instead of AES-256-GCM.
    #[arg(long)]
    pub(crate) xchacha: bool,
    /// Do not encrypt file names.
    #[arg(long)]
    pub(crate) plaintextnames: bool,
    /// Deterministic names: no per-directory IV.
    #[arg(long)]
    pub(crate) deterministic_names: bool,
    /// Hash encrypted names longer than N characters (62..=255).
    #[arg(long, value_name = "N")]
    pub(crate) longnamemax: Option<u16>,
    /// scrypt cost as log2(N) (10..=28; default 16 as gocryptfs).
    #[arg(long, value_name = "LOG2N")]
    pub(crate) scryptn: Option<u8>,
    /// Also write the model manifest to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) manifest: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) model: ModelTagArgs,
}

/// `ccmount decrypt`.
#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    /// Cipher directory to read.
    pub(crate) cipherdir: PathBuf,
    /// Output directory (created if absent; must be empty unless --force).
    pub(crate) outdir: PathBuf,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    /// Write into a non-empty OUTDIR, replacing files of the same name.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) expect: ExpectArgs,
    #[command(flatten)]
    pub(crate) receipt: ReceiptArgs,
}

/// `ccmount verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Cipher directory to check.
    pub(crate) cipherdir: PathBuf,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    /// Structural check only, without any key (for pipelines that must not hold it).
    #[arg(long, conflicts_with = "keysrc")]
    pub(crate) no_key: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the model manifest (`ccmount.manifest/v2`, the bytes `ccmount manifest`
    /// writes) to this file, only when the tree is clean.
    #[arg(long, value_name = "OUT.json")]
    pub(crate) manifest: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) expect: ExpectArgs,
    #[command(flatten)]
    pub(crate) receipt: ReceiptArgs,
}

/// `ccmount info`.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Cipher directory.
    pub(crate) cipherdir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ccmount manifest`.
#[derive(Debug, Args)]
pub(crate) struct ManifestArgs {
    /// Cipher directory.
    pub(crate) cipherdir: PathBuf,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    /// Where to write the manifest.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) model: ModelTagArgs,
    #[command(flatten)]
    pub(crate) receipt: ReceiptArgs,
}

/// `ccmount unseal`.
#[derive(Debug, Args)]
pub(crate) struct UnsealArgs {
    /// The file holding the sealed secret (`sealed.HEADER.PAYLOAD.SIGNATURE`).
    pub(crate) file: PathBuf,
    /// Where to write the unsealed secret (atomically).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// File mode of OUT (octal).
    #[arg(long, default_value = "0400")]
    pub(crate) mode: String,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `ccmount mount`.
#[derive(Debug, Args)]
pub(crate) struct MountArgs {
    /// Cipher directory.
    pub(crate) cipherdir: PathBuf,
    /// Empty directory to mount on.
    pub(crate) mountpoint: PathBuf,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    /// Stay in the foreground (Kubernetes sidecars, systemd Type=notify/simple).
    #[arg(short = 'f', long)]
    pub(crate) foreground: bool,
    /// Create this file once the mount is live (startup probes).
    #[arg(long, value_name = "FILE")]
    pub(crate) ready_file: Option<PathBuf>,
    /// Mount options, comma separated (allow_other, ro, fsname=..., ...).
    #[arg(short = 'o', value_name = "OPTS")]
    pub(crate) options: Vec<String>,
    /// FUSE worker threads (default: number of CPUs).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Bypass the page cache (FOPEN_DIRECT_IO); mmap keeps working where the kernel allows.
    #[arg(long)]
    pub(crate) direct_io: bool,
    /// s3:// trees: most decrypted data kept in memory for readers (default 128MiB); the
    /// daemon's memory is about this plus --s3-concurrency × --s3-chunk-size.
    #[arg(long, value_name = "SIZE")]
    pub(crate) cache_size: Option<String>,
    #[command(flatten)]
    pub(crate) expect: ExpectArgs,
    /// What --expect checks before the mount goes live.
    #[arg(long, value_enum, default_value_t = ExpectMode::Full, requires = "expect")]
    pub(crate) expect_mode: ExpectMode,
    #[command(flatten)]
    pub(crate) receipt: ReceiptArgs,
    /// Internal: this process is the background daemon started by `ccmount mount`; its
    /// stdout is the pipe on which it reports "ready" or the error.
    #[arg(long, hide = true, conflicts_with = "foreground")]
    pub(crate) daemon_child: bool,
}

/// `ccmount secure-mount`.
#[derive(Debug, Args)]
pub(crate) struct SecureMountArgs {
    /// The CDH secure-mount request (JSON, at most 64 KiB), or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub(crate) request: PathBuf,
    /// Stay in the foreground (Kubernetes sidecars, systemd Type=notify/simple).
    #[arg(short = 'f', long)]
    pub(crate) foreground: bool,
    /// Create this file once the mount is live (startup probes).
    #[arg(long, value_name = "FILE")]
    pub(crate) ready_file: Option<PathBuf>,
    /// Mount options, comma separated (allow_other, ro, fsname=..., ...); the request's
    /// `otherOpts` (ossfs options) are not used.
    #[arg(short = 'o', value_name = "OPTS")]
    pub(crate) options: Vec<String>,
    /// FUSE worker threads (default: number of CPUs).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Internal: this process is the background daemon started by `ccmount secure-mount`;
    /// its stdout is the status pipe, its stdin the request when it was given as `-`.
    #[arg(long, hide = true, conflicts_with = "foreground")]
    pub(crate) daemon_child: bool,
}

/// How much of the tree `mount --expect` checks before going live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExpectMode {
    /// Authenticate and hash every block of every file.
    Full,
    /// Names, types, sizes and file IDs only.
    Structure,
}

/// `ccmount umount`.
#[derive(Debug, Args)]
pub(crate) struct UmountArgs {
    /// Mount point to detach.
    pub(crate) mountpoint: PathBuf,
    /// Detach even if files are open (they keep working until closed), like `umount -l`.
    #[arg(short = 'z', long)]
    pub(crate) lazy: bool,
}

/// `ccmount get-resource`.
#[derive(Debug, Args)]
pub(crate) struct GetResourceArgs {
    /// Resource URI: kbs:///REPO/TYPE/TAG.
    pub(crate) uri: String,
    /// Write to FILE atomically instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// File mode for --out, octal.
    #[arg(long, value_name = "MODE", default_value = "0400")]
    pub(crate) mode: String,
    /// Replace an existing --out file (atomically).
    #[arg(long, requires = "out")]
    pub(crate) force: bool,
}

/// `ccmount secrets`.
#[derive(Debug, Args)]
pub(crate) struct SecretsArgs {
    /// Fetch and write once, then exit (no SIGHUP/interval refresh).
    #[arg(long)]
    pub(crate) once: bool,
    /// Also re-fetch every DURATION (e.g. 15m); overrides `[delivery] interval`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "once")]
    pub(crate) interval: Option<Duration>,
}

/// `ccmount attest`.
#[derive(Debug, Args)]
pub(crate) struct AttestArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ccmount load-gpu`.
#[derive(Debug, Args)]
pub(crate) struct LoadGpuArgs {
    /// Cipher directory.
    pub(crate) cipherdir: PathBuf,
    /// Plaintext paths inside the tree (default: every *.safetensors).
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub(crate) device: usize,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) gpu: GpuArgs,
    /// Skip the check of the device copy (no hashing while decrypting, no read-back).
    #[arg(long)]
    pub(crate) no_verify: bool,
    /// Load only a pinned model: every loaded file's bytes are hashed as they are copied and
    /// must match the pin (exit 26 otherwise; a tampered block names file and block).
    #[command(flatten)]
    pub(crate) expect: ExpectArgs,
    #[command(flatten)]
    pub(crate) receipt: ReceiptArgs,
}

/// Where and how the GPU loader copies.
#[derive(Debug, Clone, Args)]
pub(crate) struct GpuArgs {
    /// Load into a CUDA device, or into `cpu`: a simulated device in host memory that runs
    /// the same pipeline without a GPU (for tests and for measuring pipeline overhead).
    #[arg(long, value_enum, default_value_t = GpuTarget::Cuda)]
    pub(crate) target: GpuTarget,
    /// Bytes per staging buffer and per host-to-device copy, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    pub(crate) chunk_mib: usize,
    /// Staging buffers in the ring (host memory used: depth × chunk).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(crate) depth: usize,
    /// Use pageable instead of pinned staging memory (as when a confidential-computing
    /// driver refuses pinning).
    #[arg(long)]
    pub(crate) no_pinned: bool,
}

/// Target of the GPU loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GpuTarget {
    /// A CUDA device (--device N).
    Cuda,
    /// A simulated device in host memory (no GPU needed).
    Cpu,
}

/// `ccmount bench-h2d` (hidden).
#[derive(Debug, Args)]
pub(crate) struct BenchH2dArgs {
    /// Bytes to copy, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    pub(crate) mib: u64,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub(crate) device: usize,
    #[command(flatten)]
    pub(crate) gpu: GpuArgs,
}

/// `ccmount completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `ccmount demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the generated files (model, cipher tree, password file, the KBS's CA) and print
    /// the commands to try next.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Like --keep, then keep the embedded KBS serving until Ctrl-C, for the --key commands.
    #[arg(long)]
    pub(crate) serve: bool,
    /// Decrypt into a directory instead of mounting, even when FUSE works.
    #[arg(long)]
    pub(crate) no_fuse: bool,
}

/// Parses `30s`, `2m`, `1h`, `500ms`, or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 500ms, 30s, 2m, 1h"))?;
    n.checked_mul(mult_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every example in a subcommand's help parses with this parser.
    #[test]
    fn help_examples_parse() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut seen = 0;
        for sub in cmd.get_subcommands() {
            let Some(after) = sub.get_after_help() else {
                continue;
            };
            for line in after.to_string().lines() {
                let Some(ex) = line.trim().strip_prefix("ccmount ") else {
                    continue;
                };
                let argv: Vec<&str> = std::iter::once("ccmount")
                    .chain(ex.split(" >").next().unwrap().split_whitespace())
                    .collect();
                let parsed = Cli::try_parse_from(&argv);
                assert!(
                    parsed.is_ok(),
                    "example `{line}` does not parse: {parsed:?}"
                );
                seen += 1;
            }
        }
        assert!(seen >= 10, "{seen} examples");
    }

    #[test]
    fn a_signed_pin_needs_a_model_name() {
        let base = [
            "ccmount",
            "verify",
            "c",
            "--passfile",
            "p",
            "--expect",
            "m.json",
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<&str> = base.to_vec();
            v.extend_from_slice(extra);
            Cli::try_parse_from(v)
        };
        assert!(with(&["--expect-signed-by", "k.pub"]).is_err());
        assert!(with(&["--expect-signed-by", "k.pub", "--expect-model", "m"]).is_ok());
        assert!(with(&["--expect-min-version", "3"]).is_err());
        assert!(with(&["--expect-model", "m", "--expect-min-version", "3"]).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn key_sources_are_exclusive() {
        let r = Cli::try_parse_from([
            "ccmount",
            "decrypt",
            "c",
            "o",
            "--passfile",
            "p",
            "--masterkey-file",
            "m",
        ]);
        assert!(r.is_err());
        let r = Cli::try_parse_from(["ccmount", "verify", "c", "--no-key", "--passfile", "p"]);
        assert!(r.is_err());
    }

    #[test]
    fn global_options_after_subcommand() {
        let cli = Cli::try_parse_from([
            "ccmount",
            "get-resource",
            "kbs:///a/b/c",
            "--kbs-url",
            "https://127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(cli.global.kbs_url.as_deref(), Some("https://127.0.0.1:1"));
    }
}
