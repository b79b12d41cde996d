//! One module per subcommand. Each exposes `run(&GlobalArgs, Args) -> anyhow::Result<Exit>`.

mod attest;
mod decrypt;
#[cfg(feature = "demo")]
mod demo;
mod encrypt;
mod get_resource;
mod info;
mod load_gpu;
mod manifest;
#[cfg(feature = "fuse")]
mod mount;
mod secrets;
#[cfg(feature = "fuse")]
mod secure_mount;
#[cfg(feature = "fuse")]
mod umount;
mod unseal;
mod verify;

use anyhow::Result;
use std::ffi::OsString;

use crate::cli::{Command, GlobalArgs};
use crate::exit::{Exit, coded};
use crate::plan::DecryptPlan;

/// Runs one parsed command. `argv` is the command line as parsed (after the mount-helper
/// rewrite): the background mount daemon is started with it.
// With every feature on, each arm returns and the refusal below is unreachable.
#[cfg_attr(
    all(feature = "fuse", feature = "demo"),
    allow(unreachable_code, unused_variables, reason = "feature-gated arms")
)]
pub(crate) fn dispatch(global: &GlobalArgs, command: Command, argv: &[OsString]) -> Result<Exit> {
    #[cfg(not(feature = "fuse"))]
    let _ = argv;
    let name = match command {
        Command::GetResource(args) => return get_resource::run(global, args),
        Command::Attest(args) => return attest::run(global, &args),
        Command::Unseal(a) => return unseal::run(&a),
        Command::Encrypt(a) => return encrypt::run(global, a),
        Command::Decrypt(a) => return decrypt::run(global, &DecryptPlan::from_args(a)?),
        Command::Verify(a) => return verify::run(global, a),
        Command::Info(a) => return info::run(global, a),
        Command::Manifest(a) => return manifest::run(global, a),
        #[cfg(feature = "fuse")]
        Command::Mount(a) => return mount::run(global, &a, argv),
        #[cfg(feature = "fuse")]
        Command::Umount(a) => return umount::run(a),
        #[cfg(feature = "fuse")]
        Command::SecureMount(a) => return secure_mount::run(global, &a, argv),
        #[cfg(not(feature = "fuse"))]
        Command::Mount(_) => "mount (this build has no `fuse` feature)",
        #[cfg(not(feature = "fuse"))]
        Command::Umount(_) => "umount (this build has no `fuse` feature)",
        #[cfg(not(feature = "fuse"))]
        Command::SecureMount(_) => "secure-mount (this build has no `fuse` feature)",
        Command::Secrets(a) => return secrets::run(global, &a),
        Command::LoadGpu(a) => return load_gpu::run(global, a),
        Command::BenchH2d(a) => return load_gpu::bench_h2d(global, a),
        Command::Completions(a) => return completions(a.shell),
        Command::Man => return man_page(),
        #[cfg(feature = "demo")]
        Command::Demo(a) => return demo::run(global, &a),
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => "demo",
    };
    Err(coded(
        Exit::Usage,
        format!("`ccmount {name}` is not available in this build yet"),
    ))
}

/// `ccmount completions SHELL`: the completion script on stdout.
fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    use clap::CommandFactory as _;
    let mut cmd = crate::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ccmount", &mut out);
    write_stdout(&out)
}

/// `ccmount man`: the manual page (roff) on stdout.
fn man_page() -> Result<Exit> {
    use clap::CommandFactory as _;
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::cli::Cli::command()).render(&mut out)?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<Exit> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(Exit::Ok)
}
