//! `outpost-agent config-from-uci FILE [--out FILE]`: OpenWrt's `/etc/config/outpost` (UCI) turned into the
//! agent's TOML configuration (see [`crate::uci`]); the procd init script runs it before every start.

use std::path::PathBuf;

use anyhow::Context;

use super::Exit;
use crate::state_dir::atomic_write;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The UCI file, e.g. /etc/config/outpost.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the TOML here (atomically, creating its directory) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn config_from_uci(args: Args) -> anyhow::Result<Exit> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read the UCI file {}", args.file.display()))?;
    let converted = crate::uci::convert(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; fix it (uci set / edit the file) and start again",
            args.file.display()
        )
    })?;
    for section in &converted.disabled_interfaces {
        eprintln!("note: {section} has option enabled '0': not watched");
    }
    if converted.config.interfaces.is_none() {
        eprintln!(
            "note: {} has no enabled interface section: the agent watches the interface of the default route (on a router: the WAN)",
            args.file.display()
        );
    }
    let body = format!(
        "# Generated from {} by `outpost-agent config-from-uci`: edit that file instead.\n{}",
        args.file.display(),
        converted.toml
    );
    match &args.out {
        None => print!("{body}"),
        Some(out) => {
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create the directory {}", dir.display()))?;
            }
            atomic_write(out, body.as_bytes(), 0o644, false)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::commands::{Cli, Command};

    #[test]
    fn the_command_line_takes_a_file_and_an_optional_output() {
        let cli = Cli::try_parse_from([
            "outpost-agent",
            "config-from-uci",
            "/etc/config/outpost",
            "--out",
            "/var/etc/outpost/agent.toml",
        ])
        .unwrap();
        let Command::ConfigFromUci(args) = cli.command else {
            panic!("not config-from-uci")
        };
        assert_eq!(args.file, PathBuf::from("/etc/config/outpost"));
        assert_eq!(
            args.out.as_deref(),
            Some(std::path::Path::new("/var/etc/outpost/agent.toml"))
        );
        assert!(Cli::try_parse_from(["outpost-agent", "config-from-uci"]).is_err());
    }

    #[test]
    fn it_writes_the_toml_into_a_new_directory_or_names_the_file_in_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let uci = dir.path().join("outpost");
        std::fs::write(
            &uci,
            "config interface 'lan'\n\toption device 'br-lan'\n\toption vlan '1'\n",
        )
        .unwrap();
        let out = dir.path().join("var/etc/outpost/agent.toml");
        let exit = config_from_uci(Args {
            file: uci.clone(),
            out: Some(out.clone()),
        })
        .unwrap();
        assert_eq!(exit, Exit::Ok);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("# Generated from "), "{text}");
        let config = crate::config::Config::from_toml(&text, &out).unwrap();
        assert_eq!(
            config.interfaces.as_deref().unwrap_or_default()[0].name,
            "br-lan"
        );
        assert_eq!(
            config.interfaces.as_deref().unwrap_or_default()[0].vlan,
            Some(1)
        );

        std::fs::write(&uci, "config interface 'lan'\n\toption vlan '1'\n").unwrap();
        let err = config_from_uci(Args {
            file: uci.clone(),
            out: Some(out.clone()),
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(
                "{}: line 1: interface 'lan': option device is missing",
                uci.display()
            )),
            "{err}"
        );
        // The previous output stays as it was.
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
        let missing = config_from_uci(Args {
            file: dir.path().join("nope"),
            out: None,
        })
        .unwrap_err()
        .to_string();
        assert!(missing.contains("cannot read the UCI file"), "{missing}");
    }
}
