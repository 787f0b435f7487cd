//! `outpost-release`: makes and checks signed agent releases (`outpost_cloud_link::release`): `keygen` writes
//! an Ed25519 release key pair, `sign` writes `BINARY.release.json` (the manifest and its signature), `verify`
//! checks a release file against a directory of trusted `*.pub` keys and, with a binary, every check the
//! agent makes before installing it. Runs on the publisher's machine, never on the portal.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use outpost_cloud_link::release::{
    self, Manifest, ReleaseError, SigningKey, TrustedKeys, Verified, DEFAULT_KEYS_DIR,
    RELEASE_FILE_SUFFIX,
};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (verify: the release passed every check asked for)
  1  error or refusal (the message says what was wrong and what to do)
  2  usage error";

/// Makes and checks signed Outpost agent releases.
#[derive(Debug, Parser)]
#[command(
    name = "outpost-release",
    version,
    about = "Makes and checks signed Outpost agent releases: keygen, sign, verify.",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new Ed25519 release key pair: the private key (PKCS#8 PEM, mode 0600; keep it offline) and
    /// the public key file agents trust (install it in /etc/outpost/release-keys/).
    Keygen(KeygenArgs),
    /// Sign an agent binary: write its manifest (name, version, target, size, SHA-256) and the signature.
    Sign(SignArgs),
    /// Check a release file against trusted keys; with --binary, also every check the agent makes before
    /// installing it.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// The private key file to write (refused if it exists).
    #[arg(long, value_name = "KEY.pem")]
    out: PathBuf,
    /// The public key file to write (refused if it exists).
    #[arg(long = "pub", value_name = "KEY.pub")]
    public: PathBuf,
}

#[derive(Debug, Args)]
struct SignArgs {
    /// The private key (PKCS#8, PEM or DER).
    #[arg(long, value_name = "KEY.pem")]
    key: PathBuf,
    /// The outpost-agent binary to sign.
    #[arg(value_name = "BINARY")]
    binary: PathBuf,
    /// Its version, MAJOR.MINOR.PATCH[-pre].
    #[arg(long, value_name = "V")]
    version: String,
    /// The target triple it is built for, e.g. aarch64-unknown-linux-musl.
    #[arg(long, value_name = "TRIPLE")]
    target: String,
    /// Mark it as a rollback: agents accept it even when it is older than what they run.
    #[arg(long)]
    rollback: bool,
    /// Notes for people (what changed).
    #[arg(long, value_name = "TEXT")]
    notes: Option<String>,
    /// The release file to write [default: BINARY.release.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The directory of trusted *.pub key files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_KEYS_DIR)]
    keys: PathBuf,
    /// The release file (*.release.json).
    #[arg(value_name = "MANIFEST")]
    manifest: PathBuf,
    /// The binary to check as the agent would before installing it (needs --running-version and
    /// --running-target).
    #[arg(long, value_name = "BINARY", requires_all = ["running_version", "running_target"])]
    binary: Option<PathBuf>,
    /// The version the agent runs (no downgrade unless the release is a rollback).
    #[arg(long, value_name = "V", requires = "binary")]
    running_version: Option<String>,
    /// The target triple the agent runs on.
    #[arg(long, value_name = "T", requires = "binary")]
    running_target: Option<String>,
    /// Print one JSON object on stdout: {"ok":true,"key":..,"manifest":{..},"install_checked":..} or
    /// {"ok":false,"kind":..,"error":..}.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Keygen(args) => report(keygen(&args)),
        Command::Sign(args) => report(sign(&args)),
        Command::Verify(args) => verify(&args),
    }
}

fn report(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost-release: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Creates `path` (refusing an existing file) with `mode` and writes `content`.
fn write_new(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn keygen(args: &KeygenArgs) -> Result<()> {
    if args.out == args.public {
        bail!("--out and --pub are the same file; give two different paths");
    }
    for path in [&args.out, &args.public] {
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} already exists: refusing to overwrite a key; choose another path or move the old file away",
                path.display()
            );
        }
    }
    let (key, pkcs8) = SigningKey::generate()?;
    write_new(&args.out, release::pkcs8_to_pem(&pkcs8).as_bytes(), 0o600)?;
    if let Err(e) = write_new(&args.public, key.public_key().to_line().as_bytes(), 0o644) {
        // No half pair left behind: the private key is useless without its public file.
        let _ = std::fs::remove_file(&args.out);
        return Err(e);
    }
    println!("key id {}", key.key_id());
    println!(
        "private key: {} (mode 0600; keep it offline)",
        args.out.display()
    );
    println!(
        "public key:  {} (install it on agents in {DEFAULT_KEYS_DIR}/)",
        args.public.display()
    );
    Ok(())
}

fn default_out(binary: &Path) -> PathBuf {
    let mut name = binary.as_os_str().to_owned();
    name.push(RELEASE_FILE_SUFFIX);
    PathBuf::from(name)
}

fn sign(args: &SignArgs) -> Result<()> {
    let key = SigningKey::load(&args.key)?;
    let binary = File::open(&args.binary)
        .with_context(|| format!("opening the binary {}", args.binary.display()))?;
    let manifest = Manifest::for_binary(
        binary,
        &args.version,
        &args.target,
        args.rollback,
        args.notes.clone(),
    )
    .with_context(|| format!("reading {}", args.binary.display()))?;
    let signed = release::sign_with(&manifest, &key)?;
    let bytes = signed.to_json();
    // What is written must pass the agent's own check with this key's public half.
    let own = TrustedKeys::from_keys(&args.key, [key.public_key()]);
    release::verify(&bytes, &own).context("the release just signed does not verify (a bug)")?;

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.binary));
    let tmp = {
        let mut name = out.as_os_str().to_owned();
        name.push(format!(".tmp-{}", std::process::id()));
        PathBuf::from(name)
    };
    let written = write_new(&tmp, &bytes, 0o644).and_then(|()| {
        std::fs::rename(&tmp, &out).with_context(|| format!("renaming to {}", out.display()))
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    println!(
        "signed {} {} for {}{}",
        manifest.name,
        manifest.version,
        manifest.target,
        if manifest.rollback { " (rollback)" } else { "" }
    );
    println!("key id  {}", key.key_id());
    println!("size    {} bytes", manifest.size);
    println!("sha256  {}", manifest.sha256);
    println!("wrote   {}", out.display());
    Ok(())
}

/// What `verify` found: the verified release and whether the install checks ran.
fn verify_checks(args: &VerifyArgs) -> Result<(Verified, bool)> {
    let trusted = TrustedKeys::load_dir(&args.keys)?;
    let bytes = std::fs::read(&args.manifest)
        .with_context(|| format!("reading the release file {}", args.manifest.display()))?;
    let verified = release::verify_release(&bytes, &trusted)?;
    let Some(binary) = &args.binary else {
        return Ok((verified, false));
    };
    // clap requires both with --binary.
    let (Some(running_version), Some(running_target)) =
        (&args.running_version, &args.running_target)
    else {
        bail!("--binary needs --running-version and --running-target");
    };
    let file =
        File::open(binary).with_context(|| format!("opening the binary {}", binary.display()))?;
    release::check_install(&verified.manifest, running_version, running_target, file)?;
    Ok((verified, true))
}

fn verify(args: &VerifyArgs) -> ExitCode {
    match verify_checks(args) {
        Ok((verified, install_checked)) => {
            if args.json {
                let out = serde_json::json!({
                    "ok": true,
                    "key": verified.key_id,
                    "manifest": verified.manifest,
                    "install_checked": install_checked,
                });
                println!("{out}");
            } else {
                let m = &verified.manifest;
                println!("OK: signed by trusted key {}", verified.key_id);
                println!("name      {}", m.name);
                println!("version   {}", m.version);
                println!("target    {}", m.target);
                println!("size      {} bytes", m.size);
                println!("sha256    {}", m.sha256);
                println!("rollback  {}", if m.rollback { "yes" } else { "no" });
                if let Some(notes) = &m.notes {
                    println!("notes     {notes}");
                }
                if install_checked {
                    let running = args.running_version.as_deref().unwrap_or_default();
                    println!(
                        "install checks passed: target {}, version {}, size and SHA-256 of {}",
                        args.running_target.as_deref().unwrap_or_default(),
                        if m.rollback {
                            format!("other than {running} (a rollback)")
                        } else {
                            format!("newer than {running}")
                        },
                        args.binary.as_deref().unwrap_or(Path::new("")).display()
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let kind = e
                .downcast_ref::<ReleaseError>()
                .map_or("error", ReleaseError::kind);
            if args.json {
                let out =
                    serde_json::json!({ "ok": false, "kind": kind, "error": format!("{e:#}") });
                println!("{out}");
            } else {
                eprintln!("outpost-release: refused: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}
