//! The command line: clap definitions, one file per subcommand, documented exit codes. This is the top of
//! the binary: subcommands return `anyhow` errors, printed here with their whole chain.

pub mod activate;
pub mod devices;
pub mod launch;
pub mod run;
pub mod scan;
pub mod status;
pub mod uci;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::state_dir::{StateDir, DEFAULT_STATE_DIR};
use crate::update::launcher::{self, Restart};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error (the message says what went wrong and what to do)
  2  usage error
  3  this agent was deleted in the portal; its state was wiped, ready for a new activation code
 75  (run, under `launch`) an update is installed: the launcher starts the agent again";

/// How a command ended, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    Error,
    Usage,
    /// The portal deleted this agent; the state directory was wiped.
    Deleted,
    /// An update is staged: the supervising launcher starts the agent again
    /// (`update::launcher::RESTART_EXIT`).
    Restart,
    /// The exit status of the agent a launcher ran.
    Code(i32),
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::Deleted => 3,
            Exit::Restart => crate::update::launcher::RESTART_EXIT,
            Exit::Code(c) => c,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(u8::try_from(e.code()).unwrap_or(1))
    }
}

/// The Outpost on-site agent.
#[derive(Debug, Parser)]
#[command(name = "outpost-agent", version = crate::build_info::VERSION, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// State directory (identity, database, runtime status).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Activate this agent with a code from the portal.
    Activate(activate::Args),
    /// Run the daemon: keep the link to the portal.
    Run(run::Args),
    /// Start the daemon so it can install over-the-air updates: runs the installed update (or this binary),
    /// counts the starts of a new version and rolls it back when it is not confirmed healthy.
    Launch(launch::Args),
    /// Show the agent's state.
    Status(status::Args),
    /// Sweep a LAN with ARP once, listen for names briefly, and print the hosts found (standalone: no
    /// activation, no state directory).
    Scan(scan::Args),
    /// List the devices this agent knows (from the running daemon, or the database when it is stopped).
    Devices(devices::Args),
    /// Print the documented default configuration.
    PrintConfig,
    /// Turn OpenWrt's UCI file (/etc/config/outpost) into the agent's TOML configuration.
    ConfigFromUci(uci::Args),
}

/// Parses the command line, runs the command, prints any error, and returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let state = StateDir::new(&cli.state);
    if let Command::PrintConfig = cli.command {
        print!("{}", crate::config::DEFAULT_TOML);
        return Exit::Ok.into();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Activate(args) => activate::activate(&state, args).await,
            Command::Run(args) => run::run(&state, args).await,
            Command::Launch(args) => launch::launch(&state, args).await,
            Command::Status(args) => status::status(&state, args),
            Command::Scan(args) => scan::scan(args).await,
            Command::Devices(args) => devices::devices(&state, args),
            Command::PrintConfig => Ok(Exit::Ok),
            Command::ConfigFromUci(args) => uci::config_from_uci(args),
        }
    });
    // Do not wait for stray blocking work (a DNS lookup) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    // An installed update: everything is closed and flushed; an agent its launcher executed directly
    // executes the launcher again (same PID for the service manager), a supervised one exits 75.
    if let Ok(Exit::Restart) = result {
        if let Some(Restart::ExecLauncher { launcher, argv }) = launcher::restart_from_env() {
            let e = launcher::exec_launcher(&launcher, &argv);
            eprintln!(
                "error: cannot start the launcher {} again: {e}; the update starts with the next service restart",
                launcher.display()
            );
            return Exit::Error.into();
        }
    }
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Error.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn state_may_come_before_or_after_the_subcommand() {
        let a = Cli::try_parse_from(["outpost-agent", "--state", "/tmp/s", "status", "--json"])
            .unwrap();
        let b = Cli::try_parse_from(["outpost-agent", "status", "--state", "/tmp/s"]).unwrap();
        assert_eq!(a.state, PathBuf::from("/tmp/s"));
        assert_eq!(b.state, PathBuf::from("/tmp/s"));
        let d = Cli::try_parse_from(["outpost-agent", "run"]).unwrap();
        assert_eq!(d.state, PathBuf::from(DEFAULT_STATE_DIR));
    }

    #[test]
    fn activate_needs_a_portal() {
        let err = Cli::try_parse_from(["outpost-agent", "activate", "ABCD"]).unwrap_err();
        assert_eq!(err.exit_code(), Exit::Usage.code());
        let ok = Cli::try_parse_from([
            "outpost-agent",
            "activate",
            "ABCD",
            "--portal",
            "https://127.0.0.1:8443",
            "--platform",
            "router",
        ])
        .unwrap();
        let Command::Activate(args) = ok.command else {
            panic!("not activate")
        };
        assert_eq!(
            args.platform,
            Some(outpost_cloud_link::protocol::Platform::Router)
        );
        assert!(Cli::try_parse_from([
            "outpost-agent",
            "activate",
            "ABCD",
            "--portal",
            "https://x",
            "--platform",
            "toaster",
        ])
        .is_err());
    }
}
