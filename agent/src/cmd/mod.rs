//! One module per subcommand. Each exposes `run(&GlobalArgs, Args) -> anyhow::Result<Exit>`.

mod attest;
mod get_resource;

use anyhow::Result;

use crate::cli::{Command, GlobalArgs};
use crate::exit::{Exit, coded};

/// Runs one parsed command.
pub(crate) fn dispatch(global: &GlobalArgs, command: Command) -> Result<Exit> {
    let name = match command {
        Command::GetResource(args) => return get_resource::run(global, args),
        Command::Attest(args) => return attest::run(global, &args),
        Command::Encrypt(_) => "encrypt",
        Command::Decrypt(_) => "decrypt",
        Command::Verify(_) => "verify",
        Command::Info(_) => "info",
        Command::Manifest(_) => "manifest",
        Command::Mount(_) => "mount",
        Command::Umount(_) => "umount",
        Command::Secrets(_) => "secrets",
        Command::LoadGpu(_) => "load-gpu",
        Command::Demo(_) => "demo",
    };
    let _ = global;
    Err(coded(
        Exit::Usage,
        format!("`ccmount {name}` is not available in this build yet"),
    ))
}
