//! Headless Chromium for the end-to-end tests of the portal's pages: Debian's `chromium`, driven through
//! Debian's `chromedriver` (WebDriver, plain HTTP on a free loopback port) with `fantoccini`.
//!
//! [`Browser::start`] runs chromedriver in a process group of its own, with Chromium's flags for a closed
//! network (no sync, no component updates, no QUIC, a fresh empty profile); dropping the [`Browser`]
//! (also when a test panics) ends that process group — chromedriver and the Chromium it started — by
//! its id, and removes the profile. Every step's error names the selector or URL it was about.
//! Screenshots go to `<target>/screenshots/<test>/<name>.png` (not committed).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Debian's chromedriver (package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's Chromium (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A phone's viewport (CSS pixels).
pub const PHONE: (u32, u32) = (390, 844);
/// A desktop's viewport (CSS pixels).
pub const DESKTOP: (u32, u32) = (1280, 900);

/// How long a WebDriver step that loads a page may take (a click that submits a form waits for the answer:
/// a debug build of the portal spends 10–30 s on one PBKDF2 password hash on a busy 2-core machine).
const PAGE_LOAD: Duration = Duration::from_secs(120);
/// How often the `wait_for*` helpers look again.
const POLL: Duration = Duration::from_millis(50);

/// Chromium's flags: headless, and nothing that reaches the network by itself (the network is closed):
/// no background services, and every host name but `localhost` fails to resolve without a DNS query.
fn chromium_args(profile: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--no-default-browser-check",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        // No name lookups at all (Chromium resolves accounts.google.com and clients2.google.com even with
        // the flags above): the tests open `localhost` and IP literals on loopback and the labs' uplinks
        // (10.254.0.0/16), which the rule would otherwise map away too.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE 10.254.*",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(format!("--window-size={},{}", DESKTOP.0, DESKTOP.1));
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

/// A headless Chromium session of one test.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    /// Chromium's profile and chromedriver's log; removed on drop.
    dir: TempDir,
    screenshots: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a Chromium session through it, at desktop
    /// size. `test_name` names the screenshots' folder. Fails (never skips) when Chromium or chromedriver
    /// is missing, naming the Debian packages.
    pub async fn start(test_name: &str) -> Result<Browser> {
        for (bin, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            if !Path::new(bin).exists() {
                bail!(
                    "{bin} not found: the browser tests need the Debian packages chromium and \
                     chromium-driver (apt-get install chromium chromium-driver, or scripts/setup-debian --test); \
                     {package} provides {bin}"
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("outpost-browser-")
            .tempdir()
            .context("creating the browser's temporary directory")?;
        let profile = dir.path().join("profile");
        fs::create_dir(&profile).context("creating Chromium's profile directory")?;
        let port = crate::free_port()?;
        let log = fs::File::create(dir.path().join("chromedriver.log"))
            .context("creating chromedriver's log")?;
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                // Chromium keeps its crash database and caches under these, not in the user's home.
                .env("XDG_CONFIG_HOME", dir.path().join("config"))
                .env("XDG_CACHE_HOME", dir.path().join("cache"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group: dropping the browser ends chromedriver and its Chromium together.
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {CHROMEDRIVER}"))?
        };
        let mut browser = Browser {
            client: None,
            driver,
            dir,
            screenshots: screenshots_dir(test_name),
        };
        let url = format!("http://127.0.0.1:{port}");
        browser.wait_driver(&url).await?;

        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        // The portal serves HTTPS with a certificate from its own CA.
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "timeouts".into(),
            json!({ "pageLoad": PAGE_LOAD.as_millis() as u64, "script": 10_000, "implicit": 0 }),
        );
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": chromium_args(&profile) }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .map_err(|e| {
                anyhow!(
                    "opening a Chromium session through chromedriver at {url}: {e}\n{}",
                    browser.driver_log()
                )
            })?;
        browser.client = Some(client);
        browser.desktop_size().await?;
        Ok(browser)
    }

    /// Polls chromedriver's `/status` until it says it is ready.
    async fn wait_driver(&mut self, url: &str) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.driver.try_wait()? {
                bail!(
                    "chromedriver exited with {status} while starting:\n{}",
                    self.driver_log()
                );
            }
            if let Ok(resp) = http.get(format!("{url}/status")).send().await {
                if let Ok(v) = resp.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "chromedriver did not answer on {url} within 15 s:\n{}",
                    self.driver_log()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The process id of chromedriver, which leads the process group of everything the browser runs.
    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }

    /// The last lines of chromedriver's log (with Chromium's own output), for error messages.
    pub fn driver_log(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn client(&self) -> Result<&Client> {
        self.client
            .as_ref()
            .context("the browser session is closed")
    }

    async fn find(&self, css: &str) -> Result<Element> {
        match self.client()?.find(Locator::Css(css)).await {
            Ok(e) => Ok(e),
            Err(e) => {
                let url = self.url_for_errors().await;
                Err(e).with_context(|| format!("finding {css:?} on {url}"))
            }
        }
    }

    /// The current URL for an error message (never fails).
    async fn url_for_errors(&self) -> String {
        match self.client() {
            Ok(c) => c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_else(|e| format!("<no URL: {e}>")),
            Err(e) => format!("<{e}>"),
        }
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client()?
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// The URL of the page shown.
    pub async fn current_url(&self) -> Result<String> {
        Ok(self
            .client()?
            .current_url()
            .await
            .context("reading the current URL")?
            .to_string())
    }

    /// Empties the field at `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let field = self.find(css).await?;
        field
            .clear()
            .await
            .with_context(|| format!("clearing {css:?}"))?;
        field
            .send_keys(text)
            .await
            .with_context(|| format!("typing into {css:?}"))
    }

    /// Chooses the option with `value` in the `<select>` at `css`.
    pub async fn select(&self, css: &str, value: &str) -> Result<()> {
        self.find(css)
            .await?
            .select_by_value(value)
            .await
            .with_context(|| format!("selecting {value:?} in {css:?}"))
    }

    /// Clicks the element at `css` (a click that navigates returns once the new page has loaded).
    pub async fn click(&self, css: &str) -> Result<()> {
        self.find(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking {css:?}"))
    }

    /// Submits the form at `css` with its submit button, as a person would.
    pub async fn submit(&self, css: &str) -> Result<()> {
        let form = match self.client()?.form(Locator::Css(css)).await {
            Ok(form) => form,
            Err(e) => {
                let url = self.url_for_errors().await;
                return Err(e).with_context(|| format!("finding the form {css:?} on {url}"));
            }
        };
        form.submit()
            .await
            .with_context(|| format!("submitting the form {css:?} with its submit button"))
    }

    /// The rendered text of the first element at `css`.
    pub async fn text(&self, css: &str) -> Result<String> {
        self.find(css)
            .await?
            .text()
            .await
            .with_context(|| format!("reading the text of {css:?}"))
    }

    /// The rendered texts of every element at `css` (none: empty).
    pub async fn texts(&self, css: &str) -> Result<Vec<String>> {
        let all = self
            .client()?
            .find_all(Locator::Css(css))
            .await
            .with_context(|| format!("finding every {css:?}"))?;
        let mut out = Vec::with_capacity(all.len());
        for e in all {
            out.push(
                e.text()
                    .await
                    .with_context(|| format!("reading the text of {css:?}"))?,
            );
        }
        Ok(out)
    }

    /// The attribute `name` of the first element at `css` (`None` when it has none).
    pub async fn attr(&self, css: &str, name: &str) -> Result<Option<String>> {
        self.find(css)
            .await?
            .attr(name)
            .await
            .with_context(|| format!("reading the attribute {name:?} of {css:?}"))
    }

    /// Waits until an element matches `css`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.client()?.find(Locator::Css(css)).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_no_such_element() => {}
                Err(e) => return Err(e).with_context(|| format!("looking for {css:?}")),
            }
            if Instant::now() > deadline {
                bail!(
                    "no {css:?} appeared within {timeout:?} on {}",
                    self.url_for_errors().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the text of the first element at `css` contains `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Ok(e) = self.client()?.find(Locator::Css(css)).await {
                if let Ok(text) = e.text().await {
                    if text.contains(needle) {
                        return Ok(());
                    }
                    last = Some(text);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{css:?} did not show {needle:?} within {timeout:?} on {}; its text: {}; the page says: {:?}",
                    self.url_for_errors().await,
                    last.map_or_else(|| "(no such element)".to_owned(), |t| format!("{t:?}")),
                    self.page_text().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The start of the page's visible text, for error messages (never fails).
    async fn page_text(&self) -> String {
        match self
            .execute(
                "return document.body ? document.body.innerText.slice(0, 400) : '';",
                vec![],
            )
            .await
        {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(e) => format!("<unreadable: {e:#}>"),
        }
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client()?.execute(script, args).await.with_context(|| {
            format!(
                "running the script {:?}",
                script.chars().take(80).collect::<String>()
            )
        })
    }

    /// Sets the viewport (the page's `innerWidth` × `innerHeight`) to `width` × `height` CSS pixels.
    pub async fn viewport(&self, width: u32, height: u32) -> Result<()> {
        let client = self.client()?;
        client
            .set_window_size(width, height)
            .await
            .with_context(|| format!("resizing the window to {width}×{height}"))?;
        // The window may be larger than its viewport: correct by the difference once.
        let inner = self
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await?;
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(u64::from(width)),
            inner[1].as_u64().unwrap_or(u64::from(height)),
        );
        if (iw, ih) != (u64::from(width), u64::from(height)) {
            let w = (u64::from(width) * 2).saturating_sub(iw);
            let h = (u64::from(height) * 2).saturating_sub(ih);
            client
                .set_window_size(w as u32, h as u32)
                .await
                .with_context(|| format!("resizing the window to {w}×{h}"))?;
        }
        Ok(())
    }

    /// A phone's viewport: 390 × 844.
    pub async fn phone_size(&self) -> Result<()> {
        self.viewport(PHONE.0, PHONE.1).await
    }

    /// A desktop's viewport: 1280 × 900.
    pub async fn desktop_size(&self) -> Result<()> {
        self.viewport(DESKTOP.0, DESKTOP.1).await
    }

    /// Presses and releases `key` on the keyboard (WebDriver key actions: real key events).
    pub async fn press(&self, key: Key) -> Result<()> {
        let value = char::from(key);
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        self.client()?
            .perform_actions(keys)
            .await
            .with_context(|| format!("pressing {key:?}"))
    }

    /// Presses Tab from the top of the page until the focused element matches `css`; returns how many
    /// presses that took. Fails after `max` presses, listing what the focus went through: the element
    /// is not reachable by keyboard.
    pub async fn press_tab_until(&self, css: &str, max: usize) -> Result<usize> {
        // Start from the top: focus a marker put before everything (blurring would leave Chromium's
        // sequential focus starting point where the focus was); the first Tab leaves it, then it goes.
        self.execute(
            "const start = document.createElement('span');
             start.id = 'outpost-tab-start';
             start.tabIndex = -1;
             document.body.prepend(start);
             start.focus();
             window.scrollTo(0, 0);",
            vec![],
        )
        .await?;
        let mut path = Vec::new();
        for presses in 1..=max {
            self.press(Key::Tab).await?;
            let focused = self
                .execute(
                    "const start = document.getElementById('outpost-tab-start');
                     if (start) start.remove();
                     const e = document.activeElement;
                     if (!e || e === document.body) return [false, 'body'];
                     let name = e.tagName.toLowerCase();
                     if (e.id) name += '#' + e.id;
                     if (e.getAttribute('name')) name += '[name=' + e.getAttribute('name') + ']';
                     const text = (e.innerText || e.value || '').trim().slice(0, 30);
                     if (text) name += ' \"' + text + '\"';
                     return [e.matches(arguments[0]), name];",
                    vec![json!(css)],
                )
                .await?;
            if focused[0] == true {
                return Ok(presses);
            }
            path.push(focused[1].as_str().unwrap_or("?").to_owned());
        }
        bail!(
            "{css:?} was not reached with {max} Tab presses on {}; the focus went through: {}",
            self.url_for_errors().await,
            path.join(" → ")
        )
    }

    /// The cookie `name` of the current page's site, if it is set.
    pub async fn cookie(&self, name: &str) -> Result<Option<Cookie<'static>>> {
        match self.client()?.get_named_cookie(name).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.is_no_such_cookie() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading the cookie {name:?}")),
        }
    }

    /// Saves a PNG of the viewport as `<target>/screenshots/<test>/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self
            .client()?
            .screenshot()
            .await
            .with_context(|| format!("taking the screenshot {name:?}"))?;
        fs::create_dir_all(&self.screenshots)
            .with_context(|| format!("creating {}", self.screenshots.display()))?;
        let path = self.screenshots.join(format!("{}.png", sanitize(name)));
        fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Ends the session (Chromium quits) and stops chromedriver.
    pub async fn close(mut self) -> Result<()> {
        if let Some(client) = self.client.take() {
            client
                .close()
                .await
                .context("closing the browser session")?;
        }
        Ok(())
        // Drop stops chromedriver.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The process group chromedriver leads: chromedriver and the Chromium it started, nothing else.
        let group = Pid::from_raw(-(self.driver.id() as i32));
        let _ = kill(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.driver.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (Chromium's processes, or chromedriver itself), until none is.
        let _ = kill(group, Signal::SIGKILL);
        let _ = self.driver.wait();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !group_members(self.driver.id()).is_empty() && Instant::now() < deadline {
            let _ = kill(group, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A path component made of letters, digits, `-` and `_` only.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unnamed".into()
    } else {
        s
    }
}

/// `<target>/screenshots/<test>`: the target directory is `CARGO_TARGET_DIR` (relative to the workspace
/// when relative), else the workspace's `target/`.
fn screenshots_dir(test_name: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    };
    target.join("screenshots").join(sanitize(test_name))
}

/// The live (not zombie) processes in process group `group`, from `/proc`.
pub fn group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() != Some(&"Z")
                && fields.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(group)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_test_that_panics_leaves_no_chromedriver_or_chromium_behind() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let browser = Browser::start("harness_panics").await.unwrap();
            browser.goto("about:blank").await.unwrap();
            let group = browser.driver_pid();
            let members = group_members(group);
            tx.send((group, members)).unwrap();
            panic!("a failing test while the browser is open");
        });
        assert!(task.await.unwrap_err().is_panic());
        let (group, members) = rx.await.unwrap();
        assert!(
            members.len() >= 2,
            "chromedriver and Chromium ran in group {group}: {members:?}"
        );
        let left = group_members(group);
        assert!(left.is_empty(), "still running in group {group}: {left:?}");
    }

    #[test]
    fn screenshot_names_stay_inside_their_folder() {
        assert_eq!(sanitize("../../etc/passwd"), "______etc_passwd");
        assert_eq!(sanitize("owner-home_phone"), "owner-home_phone");
        assert_eq!(sanitize(""), "unnamed");
        let dir = screenshots_dir("a/b");
        assert!(dir.ends_with("screenshots/a_b"), "{}", dir.display());
    }
}
