//! `outpost-agent launch [--deadline-secs N] [--max-tries N] -- run --config FILE`: how the service manager
//! starts the agent so it can install updates (`update::launcher`).

use std::ffi::OsString;
use std::time::Duration;

use anyhow::Context;

use super::Exit;
use crate::state_dir::StateDir;
use crate::update::launcher::{self, LaunchOptions, DEFAULT_MAX_TRIES};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds a new version has to be confirmed healthy by the portal before it is rolled back.
    #[arg(long, value_name = "SECS", default_value_t = launcher::DEFAULT_DEADLINE.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub deadline_secs: u64,
    /// Starts of a new version that stops before it is confirmed, before it is rolled back.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_TRIES,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_tries: u32,
    /// The agent's command and its arguments (`run --config /etc/outpost/agent.toml`).
    #[arg(last = true, required = true, value_name = "AGENT_ARGS")]
    pub agent_args: Vec<OsString>,
}

pub async fn launch(state: &StateDir, args: Args) -> anyhow::Result<Exit> {
    crate::logging::init(crate::config::LogFormat::Text, "info");
    // The launcher's own arguments, to be executed again after an update (`--state` first: it is global).
    let mut launch_argv: Vec<OsString> = vec![
        "--state".into(),
        state.root().as_os_str().to_owned(),
        "launch".into(),
        "--deadline-secs".into(),
        args.deadline_secs.to_string().into(),
        "--max-tries".into(),
        args.max_tries.to_string().into(),
        "--".into(),
    ];
    launch_argv.extend(args.agent_args.iter().cloned());
    let code = launcher::launch(LaunchOptions {
        state: state.root().to_path_buf(),
        agent_args: args.agent_args,
        launch_argv,
        deadline: Duration::from_secs(args.deadline_secs),
        max_tries: args.max_tries,
    })
    .await
    .context("the launcher failed")?;
    Ok(Exit::Code(code))
}
