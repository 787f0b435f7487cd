//! `outpost-portal`: the portal daemon (`up`) and the local admin commands (`codes new`, `token new`,
//! `users new`, `releases add|list|remove`).
//!
//! Exit codes: 0 on success or a clean shutdown, 1 on any error (printed with its whole chain).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use outpost_portal::api::rate_limit::ActivationLimiter;
use outpost_portal::api::{self, ApiOptions};
use outpost_portal::app::{activation, users, App, Deps, Settings};
use outpost_portal::broker::{self, BrokerSettings};
use outpost_portal::clock::{SettableClock, SharedClock, SystemClock};
use outpost_portal::paths::DataDir;
use outpost_portal::pki::Pki;
use outpost_portal::store::Store;
use outpost_portal::{ingest, sweeper};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "outpost-portal",
    version,
    about = "The Outpost portal: HTTPS API, broker and agent lifecycle."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the portal: HTTPS API, Mosquitto, agent link, subscription sweeper.
    Up(UpArgs),
    /// Activation codes.
    Codes {
        #[command(subcommand)]
        command: CodesCommand,
    },
    /// API tokens acting as a user.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Users: the first company admin, or anyone (admins invite the rest from the portal).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Signed agent releases (made with packaging/sign-release) the portal serves to agents.
    Releases {
        #[command(subcommand)]
        command: ReleasesCommand,
    },
}

#[derive(Debug, Args)]
struct UpArgs {
    /// The data directory (created 0700 on first run): database, certificates, broker files.
    #[arg(long)]
    data: PathBuf,
    /// Where the HTTPS API listens.
    #[arg(long, default_value = "127.0.0.1:8443")]
    https: SocketAddr,
    /// Where the broker's MQTT/TLS listener listens.
    #[arg(long, default_value = "127.0.0.1:8883")]
    mqtts: SocketAddr,
    /// The broker address agents are told (`HOST:PORT`); defaults to --mqtts.
    #[arg(long)]
    public_mqtts: Option<String>,
    /// A name (DNS or IP) the server certificate must cover; repeat for several.
    #[arg(long = "hostname")]
    hostnames: Vec<String>,
    /// Activation attempts allowed per minute per source address.
    #[arg(long, default_value_t = 10)]
    activation_rate: u32,
    /// An agent not heard from for this many seconds counts as offline.
    #[arg(long, default_value_t = 120)]
    offline_after: u64,
    /// Seconds between subscription sweeps.
    #[arg(long, default_value_t = 60)]
    sweep_interval: u64,
    /// The portal's configuration file (TOML: `[web]` public URL, `[smtp]` server; see
    /// portal.example.toml). Without it the portal sends no email and shows links instead.
    #[arg(long, value_name = "FILE", env = "OUTPOST_PORTAL_CONFIG")]
    config: Option<PathBuf>,
    /// Enable `PUT /api/v1/dev/clock` (tests only).
    #[arg(long, hide = true)]
    dev_clock: bool,
    /// A MaxMind DB City database (GeoLite2-City or DB-IP City Lite, .mmdb) to locate agents that have
    /// none of their own; without it only agents with a database are located.
    #[arg(long, value_name = "FILE", env = "OUTPOST_PORTAL_GEOIP_DB")]
    geoip_db: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum CodesCommand {
    /// Make an activation code and print it.
    New {
        #[arg(long)]
        data: PathBuf,
        /// How long the code is valid: `7d`, `12h`, `30m`, `90s` or seconds.
        #[arg(long, default_value = "7d", value_parser = parse_lifetime)]
        expires: chrono::Duration,
        /// How many agents may activate with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// The plan of the agents it activates: monthly (the default), prepaid (with --prepaid-months),
        /// yearly or quarterly (renewed every 12 or 3 months from the activation).
        #[arg(long)]
        plan: Option<String>,
        /// Agents activated with it are prepaid for this many months (alone, it means --plan prepaid).
        #[arg(long)]
        prepaid_months: Option<u32>,
        /// The company its agents join (default: the install's only company).
        #[arg(long)]
        company: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make an API token acting as a user and print it. Without --user it acts as the first company
    /// admin (on an install without one, a token-only admin `admin` is made).
    New {
        #[arg(long)]
        data: PathBuf,
        /// The email of the user the token acts as.
        #[arg(long)]
        user: Option<String>,
        /// The token may only read.
        #[arg(long)]
        read_only: bool,
        /// The token's name, shown in the tokens list.
        #[arg(long, default_value = "admin")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user and print the one-time link where they set their password.
    New {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        email: String,
        /// The company (created if new; default: the install's only company, made with its first user).
        #[arg(long)]
        company: Option<String>,
        #[arg(long, default_value = "company-admin")]
        role: outpost_portal::access::Role,
        /// The group a group admin or supervisor is assigned to (created if new).
        #[arg(long)]
        group: Option<String>,
        /// The name shown in the pages (default: the email's local part).
        #[arg(long)]
        name: Option<String>,
        /// The portal's address in the link (default: what `up` last served, else https://localhost:8443).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ReleasesCommand {
    /// Store a signed release: checks the release file and that the binary has its manifest's size and
    /// SHA-256, then prints `ID VERSION TARGET SIZE` (tab-separated).
    Add {
        #[arg(long)]
        data: PathBuf,
        /// The signed release file (`BINARY.release.json`, written by packaging/sign-release).
        manifest: PathBuf,
        /// The agent binary it was signed for.
        binary: PathBuf,
        /// Also require a valid signature by one of the `*.pub` release keys in this folder.
        #[arg(long, value_name = "DIR")]
        release_keys: Option<PathBuf>,
    },
    /// List the stored releases, newest first.
    List {
        #[arg(long)]
        data: PathBuf,
        /// Print JSON (as GET /api/v1/releases) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored release and its binary.
    Remove {
        #[arg(long)]
        data: PathBuf,
        /// The release's id (`releases list` shows it).
        id: i64,
    },
}

fn parse_lifetime(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 7d, 12h, 30m or 90s"))?;
    let d = match unit {
        "d" => chrono::Duration::try_days(n),
        "h" => chrono::Duration::try_hours(n),
        "m" => chrono::Duration::try_minutes(n),
        "s" => chrono::Duration::try_seconds(n),
        other => return Err(format!("unknown unit {other:?}: use d, h, m or s")),
    };
    d.filter(|d| *d > chrono::Duration::zero())
        .ok_or_else(|| format!("{s:?} must be a positive duration"))
}

/// Logs to stderr, filtered by `OUTPOST_LOG` (default `info`), coloured only on a terminal, without
/// timestamps under journald (which adds its own).
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("OUTPOST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// Creates the data directory (0700) if it does not exist.
fn ensure_data_dir(path: &Path) -> Result<DataDir> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("create the data directory {}", path.display()))?;
    } else if !path.is_dir() {
        bail!(
            "{} exists and is not a directory; give another --data",
            path.display()
        );
    }
    let mode = std::fs::metadata(path)
        .with_context(|| format!("read the permissions of {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        warn!(data = %path.display(), mode = format!("{:o}", mode & 0o777), "data directory is readable by others; chmod 700 it");
    }
    Ok(DataDir::new(path))
}

async fn open_store(data: &DataDir) -> Result<Store> {
    Store::open(&data.database())
        .await
        .context("open the portal database")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Up(args) => up(args).await,
        Command::Codes {
            command:
                CodesCommand::New {
                    data,
                    expires,
                    uses,
                    plan,
                    prepaid_months,
                    company,
                },
        } => {
            codes_new(
                &data,
                expires,
                uses,
                (plan.as_deref(), prepaid_months),
                company.as_deref(),
            )
            .await
        }
        Command::Token {
            command:
                TokenCommand::New {
                    data,
                    user,
                    read_only,
                    name,
                },
        } => token_new(&data, user.as_deref(), read_only, &name).await,
        Command::Users {
            command:
                UsersCommand::New {
                    data,
                    email,
                    company,
                    role,
                    group,
                    name,
                    url,
                },
        } => {
            let member = users::NewMember {
                email: &email,
                name: name.as_deref(),
                role,
                require_2fa: false,
            };
            users_new(&data, &member, company.as_deref(), group.as_deref(), url).await
        }
        Command::Releases { command } => releases_command(command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost-portal: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn codes_new(
    data: &Path,
    lifetime: chrono::Duration,
    uses: u32,
    (plan, prepaid_months): (Option<&str>, Option<u32>),
    company: Option<&str>,
) -> Result<()> {
    let plan = activation::CodePlan::parse(plan, prepaid_months)
        .context("choose the code's plan (--plan, --prepaid-months)")?;
    let data = ensure_data_dir(data)?;
    let store = open_store(&data).await?;
    let now = chrono::Utc::now();
    let company = {
        let mut conn = store.conn().await?;
        users::company_for(&mut conn, company, now)
            .await
            .context("choose the company")?
    };
    let new = activation::create_code_with(&store, now, lifetime, uses, plan, (company, None))
        .await
        .context("make an activation code")?;
    store.close().await;
    println!("{}", new.code.display());
    Ok(())
}

async fn token_new(data: &Path, user: Option<&str>, read_only: bool, name: &str) -> Result<()> {
    let data = ensure_data_dir(data)?;
    let store = open_store(&data).await?;
    let token = users::bootstrap_token(&store, user, name, read_only, chrono::Utc::now())
        .await
        .context("make an API token")?;
    store.close().await;
    println!("{token}");
    Ok(())
}

/// The file where `up` records the address people reach the portal at, for `users new`'s links.
fn public_url_file(data: &DataDir) -> PathBuf {
    data.root().join("public-url")
}

async fn users_new(
    data: &Path,
    member: &users::NewMember<'_>,
    company: Option<&str>,
    group: Option<&str>,
    url: Option<String>,
) -> Result<()> {
    let data = ensure_data_dir(data)?;
    let base = match url {
        Some(url) => url,
        None => std::fs::read_to_string(public_url_file(&data))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "https://localhost:8443".to_owned()),
    };
    let store = open_store(&data).await?;
    let link = users::bootstrap_user(&store, member, company, group, &base, chrono::Utc::now())
        .await
        .context("create the user")?;
    store.close().await;
    println!("{}", link.url);
    Ok(())
}

async fn releases_command(command: ReleasesCommand) -> Result<()> {
    use outpost_portal::app::releases;
    match command {
        ReleasesCommand::Add {
            data,
            manifest,
            binary,
            release_keys,
        } => {
            let keys = match &release_keys {
                Some(dir) => {
                    let keys = outpost_cloud_link::release::TrustedKeys::load_dir(dir)
                        .context("read --release-keys")?;
                    if keys.is_empty() {
                        bail!(
                            "--release-keys {} holds no *.pub key file; put the publisher's public keys there or leave --release-keys out",
                            dir.display()
                        );
                    }
                    Some(keys)
                }
                None => None,
            };
            let file_bytes = std::fs::read(&manifest).with_context(|| {
                format!(
                    "read the release file {} (check the path)",
                    manifest.display()
                )
            })?;
            let binary_file = std::fs::File::open(&binary).with_context(|| {
                format!("open the binary {} (check the path)", binary.display())
            })?;
            let data = ensure_data_dir(&data)?;
            let store = open_store(&data).await?;
            let added = releases::add(
                &store,
                chrono::Utc::now(),
                &file_bytes,
                binary_file,
                keys.as_ref(),
                &releases::local_actor("releases add"),
            )
            .await;
            store.close().await;
            let row = added.with_context(|| format!("add the release {}", manifest.display()))?;
            println!("{}\t{}\t{}\t{}", row.id, row.version, row.target, row.size);
        }
        ReleasesCommand::List { data, json } => {
            let data = ensure_data_dir(&data)?;
            let store = open_store(&data).await?;
            let rows = releases::list(&store, &Default::default()).await;
            store.close().await;
            let rows = rows.context("list the releases")?;
            let views: Vec<api::releases::ReleaseView> = rows.into_iter().map(Into::into).collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "releases": views }))?
                );
            } else if views.is_empty() {
                println!("no releases stored; add one with `outpost-portal releases add`");
            } else {
                println!("ID\tVERSION\tTARGET\tSIZE\tROLLBACK\tSHA256\tADDED\tBY");
                for r in views {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.id,
                        r.version,
                        r.target,
                        r.size,
                        if r.rollback { "yes" } else { "no" },
                        r.sha256,
                        r.added_at,
                        r.added_by
                    );
                }
            }
        }
        ReleasesCommand::Remove { data, id } => {
            let data = ensure_data_dir(&data)?;
            let store = open_store(&data).await?;
            let removed = releases::remove(
                &store,
                chrono::Utc::now(),
                id,
                &releases::local_actor("releases remove"),
            )
            .await;
            store.close().await;
            let row = removed.with_context(|| format!("remove release {id}"))?;
            println!("removed release {id}: {} for {}", row.version, row.target);
        }
    }
    Ok(())
}

/// What agents are told: --public-mqtts, else the first --hostname with the listener's port when it
/// listens on every address, else the listener itself. A listener on every address (`0.0.0.0`, `[::]`)
/// with neither option is refused: agents would be told to connect to `0.0.0.0`.
fn public_broker_address(args: &UpArgs) -> Result<String> {
    if let Some(public) = &args.public_mqtts {
        return Ok(public.clone());
    }
    let port = args.mqtts.port();
    if !args.mqtts.ip().is_unspecified() {
        return Ok(args.mqtts.to_string());
    }
    match args.hostnames.first() {
        Some(host) if host.parse::<std::net::Ipv6Addr>().is_ok() => Ok(format!("[{host}]:{port}")),
        Some(host) => Ok(format!("{host}:{port}")),
        None => bail!(
            "--mqtts {} listens on every address, which is no address an agent can connect to; add \
             --public-mqtts HOST:{port} (the address agents reach the broker at) or --hostname HOST (a name \
             of this machine the agents resolve: the certificate covers it and agents are told HOST:{port})",
            args.mqtts
        ),
    }
}

async fn up(args: UpArgs) -> Result<()> {
    // Before anything is created or started: what agents are told must be an address they can reach.
    let broker_address = public_broker_address(&args)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = ensure_data_dir(&args.data)?;
    let store = open_store(&data).await?;
    let pki = Pki::load_or_create(&data, &args.hostnames).context("prepare the certificates")?;
    let tls = pki
        .server_tls_config()
        .context("build the HTTPS TLS configuration")?;
    let geoip = match &args.geoip_db {
        Some(path) => {
            let db = outpost_cloud_link::geoip::GeoIpDb::open(path).context("open --geoip-db")?;
            info!(path = %path.display(), database = db.database(), built = db.built(), "GeoIP database opened");
            Some(db)
        }
        None => None,
    };
    let mut running = broker::start(&data, &pki, BrokerSettings { listen: args.mqtts })
        .await
        .context("start the broker")?;
    let (_, closed) = tokio::sync::mpsc::channel(1);
    let incoming = std::mem::replace(&mut running.incoming, closed);

    let dev_clock = args.dev_clock.then(|| Arc::new(SettableClock::new()));
    let clock: SharedClock = match &dev_clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let config = match &args.config {
        Some(path) => outpost_portal::config::load(path).context("read --config")?,
        None => outpost_portal::config::PortalConfig::default(),
    };
    let public_url = match &config.web.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = args
                .hostnames
                .first()
                .cloned()
                .unwrap_or_else(|| args.https.ip().to_string());
            format!("https://{host}:{}", args.https.port())
        }
    };
    if let Err(e) = std::fs::write(public_url_file(&data), format!("{public_url}\n")) {
        warn!(error = %e, "could not record the portal's address for `users new`");
    }
    let mailer = match &config.smtp {
        Some(smtp) => Some(Arc::new(
            outpost_portal::mail::Mailer::new(smtp).context("set up [smtp] from --config")?,
        )),
        None => {
            info!("no [smtp] configured: invitation and reset links are shown instead of mailed");
            None
        }
    };
    let app = App::new(Deps {
        store: store.clone(),
        broker: running.admin.clone(),
        sender: Arc::new(running.link.clone()),
        clock,
        dev_clock,
        settings: Settings {
            broker_address: broker_address.clone(),
            ca_pem: pki.ca_cert_pem.clone(),
            offline_after: Duration::from_secs(args.offline_after),
            public_url,
        },
        mailer,
    });
    // The admin session is connected: agents the store refuses must be refused by the broker too (a
    // transition changes the broker before it commits). The sweeper checks again at every pass.
    match app.reconcile_broker().await {
        Ok(0) => {}
        Ok(n) => info!(
            disabled = n,
            "deactivated or expired agents disabled in the broker"
        ),
        Err(e) => {
            warn!(error = %e, "deactivated and expired agents not checked in the broker; the first sweep retries")
        }
    }
    let limiter = Arc::new(ActivationLimiter::per_minute(args.activation_rate));
    let locator = outpost_portal::app::location::Locator::new(
        geoip,
        Some(Arc::new(running.link.clone()) as Arc<dyn outpost_portal::app::location::NoticeSender>),
    );
    let ingest_task = tokio::spawn(ingest::run(app.clone(), incoming, locator));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper_task = tokio::spawn(sweeper::run(
        app.clone(),
        limiter.clone(),
        Duration::from_secs(args.sweep_interval),
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
        },
    ));

    let router = api::router(
        app,
        limiter,
        ApiOptions {
            dev_clock: args.dev_clock,
        },
    );
    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone()));
    tokio::spawn(notify_when_listening(
        handle.clone(),
        broker_address,
        args.dev_clock,
    ));
    let served = axum_server::bind_rustls(
        args.https,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .handle(handle)
    .serve(router.into_make_service_with_connect_info::<SocketAddr>())
    .await
    .with_context(|| format!("serve HTTPS on {}", args.https));

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = sweeper_task.await;
    let stopped = running.shutdown().await.context("stop the broker");
    // The link's channel closed with the broker; the ingest loop ends by itself.
    if tokio::time::timeout(Duration::from_secs(5), ingest_task)
        .await
        .is_err()
    {
        warn!("ingest did not finish within 5 s of the broker stopping");
    }
    store.close().await;
    served?;
    stopped?;
    info!("portal stopped");
    Ok(())
}

async fn notify_when_listening(handle: axum_server::Handle, broker: String, dev_clock: bool) {
    let Some(addr) = handle.listening().await else {
        return;
    };
    info!(https = %addr, broker = %broker, dev_clock, "portal serving");
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "could not notify systemd that the portal is ready");
    }
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let every = Duration::from_micros(usec / 2);
        info!(
            interval_ms = every.as_millis() as u64,
            "systemd watchdog enabled"
        );
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }
}

async fn shutdown_on_signal(handle: axum_server::Handle) {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "cannot listen for SIGTERM/SIGINT; stop the portal with SIGKILL");
            return;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(signal = name, "shutting down");
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_with_units() {
        assert_eq!(parse_lifetime("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(parse_lifetime("12h").unwrap(), chrono::Duration::hours(12));
        assert_eq!(
            parse_lifetime("30m").unwrap(),
            chrono::Duration::minutes(30)
        );
        assert_eq!(parse_lifetime("90").unwrap(), chrono::Duration::seconds(90));
        assert!(parse_lifetime("0d").is_err());
        assert!(parse_lifetime("7w").is_err());
        assert!(parse_lifetime("x").is_err());
    }

    fn up_args(args: &[&str]) -> UpArgs {
        let cli = Cli::try_parse_from(["outpost-portal", "up"].iter().chain(args.iter())).unwrap();
        let Command::Up(args) = cli.command else {
            panic!("not up")
        };
        args
    }

    #[test]
    fn up_listens_on_loopback_by_default() {
        let args = up_args(&["--data", "d"]);
        assert_eq!(args.https, "127.0.0.1:8443".parse::<SocketAddr>().unwrap());
        assert_eq!(args.mqtts, "127.0.0.1:8883".parse::<SocketAddr>().unwrap());
        assert_eq!(args.data, Path::new("d"));
        assert_eq!(public_broker_address(&args).unwrap(), "127.0.0.1:8883");
    }

    #[test]
    fn a_broker_on_every_address_needs_the_address_agents_are_told() {
        for listen in ["0.0.0.0:8883", "[::]:8883"] {
            let args = up_args(&["--data", "d", "--mqtts", listen]);
            let e = public_broker_address(&args).unwrap_err().to_string();
            assert!(
                e.contains(&format!("--mqtts {listen} listens on every address"))
                    && e.contains("--public-mqtts HOST:8883")
                    && e.contains("--hostname HOST"),
                "{e}"
            );
            let args = up_args(&[
                "--data",
                "d",
                "--mqtts",
                listen,
                "--public-mqtts",
                "broker.example:443",
            ]);
            assert_eq!(public_broker_address(&args).unwrap(), "broker.example:443");
            let args = up_args(&["--data", "d", "--mqtts", listen, "--hostname", "gw.lan"]);
            assert_eq!(public_broker_address(&args).unwrap(), "gw.lan:8883");
            let args = up_args(&["--data", "d", "--mqtts", listen, "--hostname", "fd00::1"]);
            assert_eq!(public_broker_address(&args).unwrap(), "[fd00::1]:8883");
        }
        // A listener on one address is what agents are told.
        let args = up_args(&["--data", "d", "--mqtts", "192.0.2.7:8883"]);
        assert_eq!(public_broker_address(&args).unwrap(), "192.0.2.7:8883");
    }

    #[test]
    fn the_cli_parses_every_documented_flag() {
        let cli = Cli::try_parse_from([
            "outpost-portal",
            "up",
            "--data",
            "/tmp/x",
            "--https",
            "127.0.0.1:1",
            "--mqtts",
            "0.0.0.0:2",
            "--hostname",
            "portal.example",
            "--activation-rate",
            "3",
            "--offline-after",
            "5",
            "--sweep-interval",
            "1",
            "--dev-clock",
        ])
        .unwrap();
        let Command::Up(args) = cli.command else {
            panic!("not up")
        };
        assert!(args.dev_clock && args.activation_rate == 3 && args.offline_after == 5);
        assert_eq!(public_broker_address(&args).unwrap(), "portal.example:2");
        assert!(Cli::try_parse_from([
            "outpost-portal",
            "codes",
            "new",
            "--data",
            "d",
            "--expires",
            "1h",
            "--uses",
            "2",
            "--prepaid-months",
            "12"
        ])
        .is_ok());
        let cli = Cli::try_parse_from([
            "outpost-portal",
            "codes",
            "new",
            "--data",
            "d",
            "--plan",
            "quarterly",
        ])
        .unwrap();
        let Command::Codes {
            command: CodesCommand::New { plan, .. },
        } = cli.command
        else {
            panic!("not codes new")
        };
        assert_eq!(plan.as_deref(), Some("quarterly"));
        assert!(Cli::try_parse_from([
            "outpost-portal",
            "token",
            "new",
            "--data",
            "d",
            "--name",
            "ci",
            "--user",
            "a@example.com",
            "--read-only"
        ])
        .is_ok());
        let cli = Cli::try_parse_from([
            "outpost-portal",
            "users",
            "new",
            "--data",
            "d",
            "--email",
            "a@example.com",
            "--role",
            "group-admin",
            "--group",
            "North",
            "--company",
            "Acme",
        ])
        .unwrap();
        let Command::Users {
            command: UsersCommand::New { role, .. },
        } = cli.command
        else {
            panic!("not users new")
        };
        assert_eq!(role, outpost_portal::access::Role::GroupAdmin);
        let cli = Cli::try_parse_from([
            "outpost-portal",
            "releases",
            "add",
            "--data",
            "d",
            "agent.release.json",
            "agent",
            "--release-keys",
            "keys",
        ])
        .unwrap();
        let Command::Releases {
            command:
                ReleasesCommand::Add {
                    manifest,
                    binary,
                    release_keys,
                    ..
                },
        } = cli.command
        else {
            panic!("not releases add")
        };
        assert_eq!(manifest, Path::new("agent.release.json"));
        assert_eq!(binary, Path::new("agent"));
        assert_eq!(release_keys.as_deref(), Some(Path::new("keys")));
        for args in [
            &["releases", "list", "--data", "d", "--json"][..],
            &["releases", "remove", "--data", "d", "7"][..],
        ] {
            assert!(
                Cli::try_parse_from(std::iter::once("outpost-portal").chain(args.iter().copied()))
                    .is_ok(),
                "{args:?}"
            );
        }
        assert!(
            Cli::try_parse_from(["outpost-portal", "releases", "remove", "--data", "d", "x"])
                .is_err()
        );
        assert!(Cli::try_parse_from([
            "outpost-portal",
            "users",
            "new",
            "--data",
            "d",
            "--email",
            "a@example.com",
            "--role",
            "boss"
        ])
        .is_err());
    }
}
