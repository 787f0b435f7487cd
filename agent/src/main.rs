//! `outpost-agent`: see `outpost_agent::commands` for the CLI and its exit codes.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    outpost_agent::commands::main()
}
