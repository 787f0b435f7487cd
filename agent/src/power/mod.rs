//! Power control: switches a device's outlet on, off or through a cycle, and reads the state back.
//!
//! - [`snmp`]: PoE switch ports (POWER-ETHERNET-MIB `pethPsePortAdminEnable`) and APC rack PDU outlets
//!   (PowerNet-MIB `sPDUOutletCtl`) over SNMP v2c or v3 USM (async-snmp).
//! - [`shelly`]: Shelly Gen2 plugs and relays: JSON-RPC `Switch.Set` / `Switch.GetStatus` over HTTP, with
//!   RFC 7616 digest authentication (SHA-256) when a password is set.
//! - [`tasmota`]: Tasmota plugs: `/cm?cmnd=Power<relay> On|Off` over HTTP, `user`/`password` when set.
//! - [`wol`]: Wake-on-LAN: a magic packet broadcast out of the interface the device was seen on (`on` only).
//! - `http`: the HTTP client both plug drivers share and how its failures read.
//!
//! Every method is a [`Switch`] (set on/off, read back); [`act`] runs an action against one, the same way for
//! all of them: `on` and `off` set and then poll the state until it matches or `settle` has passed; `cycle` is
//! `off`, the binding's `cycle_delay_secs`, then `on` (also on an APC PDU, whose own "reboot" would use the
//! PDU's configured delay instead of the binding's). The outlet's credentials travel in the binding and never
//! reach a log line or an error message.
//!
//! ```text
//!  act(config, binding, action, target) ─▶ driver for binding.outlet ─▶ Switch::set(on) ─▶ outlet
//!                                                                   ◀─ Switch::read()  ◀─┘ (until it matches)
//! ```

mod http;
pub mod shelly;
pub mod snmp;
pub mod tasmota;
pub mod wol;

use std::net::Ipv4Addr;
use std::time::Duration;

use outpost_cloud_link::control::{
    codes, DeviceRef, Outlet, OutletBinding, PowerAction, PowerResult, PowerState,
    MAX_CYCLE_DELAY_SECS,
};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::PowerConfig;

/// What to check when a device cannot be reached.
pub(crate) const UNREACHABLE_HINT: &str = "check the address and that the device is on the network";

/// How often the state is read back while waiting for an outlet to settle.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The device a power action is for, as the agent knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerTarget {
    pub device: DeviceRef,
    /// The interface the device was seen on (where a Wake-on-LAN packet goes out).
    pub interface: Option<String>,
    pub ipv4: Option<Ipv4Addr>,
}

/// Why a power action failed; [`PowerError::code`] is the code the command's outcome carries.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The method cannot do this action (Wake-on-LAN can only turn a device on).
    #[error("{method} can only turn a device on, it cannot {what}: bind the device to a switchable outlet (a PoE port, a PDU outlet or a smart plug) for that", what = cannot(*.action))]
    Unsupported {
        method: &'static str,
        action: PowerAction,
    },
    /// The binding cannot be used as it is.
    #[error("the outlet binding is not usable: {0}; correct it in the portal")]
    BadBinding(String),
    /// The device is not where the method needs it (Wake-on-LAN: no interface known); code `bad_binding`.
    #[error("{0}")]
    BadTarget(String),
    /// No answer within the timeout (also what a wrong SNMP v2c community looks like).
    #[error("no answer from {host} within {waited}{tries}: {hint}", waited = secs(*.waited), tries = tries(*.attempts))]
    Timeout {
        host: String,
        /// How long the request waited in all.
        waited: Duration,
        attempts: u32,
        hint: &'static str,
    },
    /// The host refused the connection, or there is no route to it.
    #[error("cannot reach {host}: {detail}; {hint}")]
    Unreachable {
        host: String,
        detail: String,
        hint: &'static str,
    },
    /// Wrong community, SNMPv3 user or keys, or plug password.
    #[error("{host} refused the credentials: {detail}")]
    AuthFailed { host: String, detail: String },
    /// The outlet answered with an error or with something unreadable.
    #[error("{host} answered with an error: {detail}")]
    Outlet { host: String, detail: String },
    /// The outlet took the command but its state did not follow within `settle`.
    #[error("the outlet answered but still reports {got} after {settled}: {host} accepted the command to turn {what} {wanted}, but the outlet did not follow; check that it is not locked, scheduled or overridden on the device", got = word(*.got), settled = secs(*.settle), wanted = word(*.wanted))]
    StateMismatch {
        host: String,
        /// What was switched, e.g. "PoE port 1.4".
        what: String,
        wanted: PowerState,
        got: PowerState,
        settle: Duration,
    },
}

impl PowerError {
    /// The error code of `outpost_cloud_link::control::codes` this failure carries.
    pub fn code(&self) -> &'static str {
        match self {
            PowerError::Unsupported { .. } => codes::ACTION_UNSUPPORTED,
            PowerError::BadBinding(_) | PowerError::BadTarget(_) => codes::BAD_BINDING,
            PowerError::Timeout { .. } => codes::TIMEOUT,
            PowerError::Unreachable { .. } => codes::UNREACHABLE,
            PowerError::AuthFailed { .. } => codes::AUTH_FAILED,
            PowerError::Outlet { .. } => codes::OUTLET_ERROR,
            PowerError::StateMismatch { .. } => codes::STATE_MISMATCH,
        }
    }
}

/// What a method that can only turn devices on cannot do.
fn cannot(action: PowerAction) -> &'static str {
    match action {
        PowerAction::On => "turn one on",
        PowerAction::Off => "turn one off",
        PowerAction::Cycle => "power-cycle one",
    }
}

/// "on", "off" or "unknown".
fn word(state: PowerState) -> &'static str {
    match state {
        PowerState::On => "on",
        PowerState::Off => "off",
        PowerState::Unknown => "unknown",
    }
}

/// A duration as people write it: `3s`, `1.5s`, `250ms`.
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) && !d.is_zero() {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let s = format!("{:.1}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches(".0"))
    }
}

/// ` (N tries)` when a request was sent more than once.
fn tries(attempts: u32) -> String {
    if attempts > 1 {
        format!(" ({attempts} tries)")
    } else {
        String::new()
    }
}

/// One way of switching an outlet: the drivers of this module. Drivers hold their connection details (built
/// from the binding) and are used for one action.
pub(crate) trait Switch {
    /// Where the outlet is, for messages: `10.0.0.2:161`.
    fn host(&self) -> &str;
    /// What is switched, for messages: `PoE port 1.4`, `Shelly switch 0`.
    fn what(&self) -> String;
    /// The method's name, for messages.
    fn method(&self) -> &'static str;
    /// Whether the method can do `action` at all.
    fn supports(&self, _action: PowerAction) -> bool {
        true
    }
    /// Whether the method can read a state back (Wake-on-LAN cannot).
    fn readable(&self) -> bool {
        true
    }
    /// Switches the outlet on or off.
    async fn set(&self, on: bool) -> Result<(), PowerError>;
    /// The outlet's state now (`Unknown` for a state the method has no word for, e.g. a PDU rebooting).
    async fn read(&self) -> Result<PowerState, PowerError>;
}

/// Runs `action` against the outlet of `binding` and reads the state back.
pub async fn act(
    config: &PowerConfig,
    binding: &OutletBinding,
    action: PowerAction,
    target: &PowerTarget,
) -> Result<PowerResult, PowerError> {
    let outcome = drive(config, binding, action, target).await;
    if let Err(e) = &outcome {
        warn!(device = %target.device, outlet = binding.outlet.kind(), %action, code = e.code(), error = %e, "power action failed");
    }
    outcome
}

/// [`act`] without its log line.
async fn drive(
    config: &PowerConfig,
    binding: &OutletBinding,
    action: PowerAction,
    target: &PowerTarget,
) -> Result<PowerResult, PowerError> {
    if binding.cycle_delay_secs > MAX_CYCLE_DELAY_SECS {
        return Err(PowerError::BadBinding(format!(
            "cycle_delay_secs is {}, at most {MAX_CYCLE_DELAY_SECS} is accepted",
            binding.cycle_delay_secs
        )));
    }
    let steps = Steps {
        cycle_delay: Duration::from_secs(binding.cycle_delay_secs.into()),
        settle: config.settle,
        poll: POLL_INTERVAL,
    };
    match &binding.outlet {
        Outlet::PoeSnmp {
            host,
            group,
            port,
            snmp,
        } => {
            let switch = snmp::SnmpSwitch::poe(config, host, *group, *port, snmp).await?;
            run(&switch, action, &steps, target).await
        }
        Outlet::ApcPdu { host, outlet, snmp } => {
            let switch = snmp::SnmpSwitch::apc_pdu(config, host, *outlet, snmp).await?;
            run(&switch, action, &steps, target).await
        }
        Outlet::Shelly {
            host,
            switch_id,
            password,
        } => {
            let switch = shelly::ShellySwitch::new(config, host, *switch_id, password.as_deref())?;
            run(&switch, action, &steps, target).await
        }
        Outlet::Tasmota {
            host,
            relay,
            user,
            password,
        } => {
            let switch = tasmota::TasmotaSwitch::new(
                config,
                host,
                *relay,
                user.as_deref(),
                password.as_deref(),
            )?;
            run(&switch, action, &steps, target).await
        }
        Outlet::WakeOnLan { secureon } => {
            // Refused before the target is looked at: whatever it is, this cannot be done.
            if action != PowerAction::On {
                return Err(PowerError::Unsupported {
                    method: wol::METHOD,
                    action,
                });
            }
            let switch = wol::WakeOnLan::new(target, secureon.as_deref())?;
            run(&switch, action, &steps, target).await
        }
    }
}

/// The timing of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Steps {
    pub cycle_delay: Duration,
    pub settle: Duration,
    pub poll: Duration,
}

/// `action` against `switch`: set, then read back until the state matches (see the module docs).
pub(crate) async fn run<S: Switch>(
    switch: &S,
    action: PowerAction,
    steps: &Steps,
    target: &PowerTarget,
) -> Result<PowerResult, PowerError> {
    if !switch.supports(action) {
        return Err(PowerError::Unsupported {
            method: switch.method(),
            action,
        });
    }
    info!(device = %target.device, method = switch.method(), host = switch.host(), what = %switch.what(), %action, "power action");
    let state = match action {
        PowerAction::On => switch_to(switch, true, steps).await?,
        PowerAction::Off => switch_to(switch, false, steps).await?,
        PowerAction::Cycle => {
            switch_to(switch, false, steps).await?;
            tokio::time::sleep(steps.cycle_delay).await;
            switch_to(switch, true, steps).await?
        }
    };
    info!(device = %target.device, method = switch.method(), %action, state = word(state), "power action done");
    Ok(PowerResult { action, state })
}

/// Sets the outlet and polls its state until it is the one asked for, or `settle` has passed.
async fn switch_to<S: Switch>(
    switch: &S,
    on: bool,
    steps: &Steps,
) -> Result<PowerState, PowerError> {
    switch.set(on).await?;
    if !switch.readable() {
        return Ok(PowerState::Unknown);
    }
    let wanted = if on { PowerState::On } else { PowerState::Off };
    let deadline = Instant::now() + steps.settle;
    loop {
        let got = switch.read().await?;
        if got == wanted {
            return Ok(got);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(PowerError::StateMismatch {
                host: switch.host().to_owned(),
                what: switch.what(),
                wanted,
                got,
                settle: steps.settle,
            });
        }
        tokio::time::sleep(steps.poll.min(deadline - now)).await;
    }
}

/// A binding's `host` or `host:port`, split, with `default_port` when it names none. IPv6 addresses are
/// written in brackets when they carry a port (`[fe80::1]:161`).
pub(crate) fn split_host(raw: &str, default_port: u16) -> Result<(String, u16), PowerError> {
    let bad = |why: &str| PowerError::BadBinding(format!("host {raw:?} {why}"));
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad("is empty"));
    }
    if raw
        .chars()
        .any(|c| c.is_whitespace() || "/?#@\\".contains(c))
    {
        return Err(bad(
            "is not a host name or address (give `host` or `host:port`)",
        ));
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("has an unclosed `[`"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(bad("has something after `]` that is not `:port`")),
            },
        }
    } else if raw.matches(':').count() > 1 {
        // A bare IPv6 address.
        (raw, None)
    } else {
        match raw.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    if host.is_empty() {
        return Err(bad("has no host part"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("has a bad port (1 to 65535)")),
        },
    };
    Ok((host.to_owned(), port))
}

/// `host:port` for messages (`[v6]:port` for IPv6 addresses).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A recording switch whose state follows a set after `lag` reads, or never when `stuck`.
    struct Fake {
        state: Cell<PowerState>,
        pending: Cell<Option<(PowerState, u32)>>,
        lag_reads: u32,
        stuck: bool,
        readable: bool,
        log: RefCell<Vec<(Duration, String)>>,
        start: Instant,
    }

    impl Fake {
        fn new(state: PowerState) -> Self {
            Fake {
                state: Cell::new(state),
                pending: Cell::new(None),
                lag_reads: 0,
                stuck: false,
                readable: true,
                log: RefCell::new(Vec::new()),
                start: Instant::now(),
            }
        }
        fn record(&self, what: String) {
            self.log.borrow_mut().push((self.start.elapsed(), what));
        }
        fn sets(&self) -> Vec<(Duration, String)> {
            self.log
                .borrow()
                .iter()
                .filter(|(_, w)| w.starts_with("set"))
                .cloned()
                .collect()
        }
    }

    impl Switch for Fake {
        fn host(&self) -> &str {
            "10.0.0.2:161"
        }
        fn what(&self) -> String {
            "PoE port 1.4".into()
        }
        fn method(&self) -> &'static str {
            "fake"
        }
        fn supports(&self, action: PowerAction) -> bool {
            self.readable || action == PowerAction::On
        }
        fn readable(&self) -> bool {
            self.readable
        }
        async fn set(&self, on: bool) -> Result<(), PowerError> {
            self.record(format!("set {on}"));
            if !self.stuck {
                let to = if on { PowerState::On } else { PowerState::Off };
                self.pending.set(Some((to, self.lag_reads)));
            }
            Ok(())
        }
        async fn read(&self) -> Result<PowerState, PowerError> {
            if let Some((to, left)) = self.pending.get() {
                if left == 0 {
                    self.state.set(to);
                    self.pending.set(None);
                } else {
                    self.pending.set(Some((to, left - 1)));
                }
            }
            self.record("read".into());
            Ok(self.state.get())
        }
    }

    fn target() -> PowerTarget {
        PowerTarget {
            device: DeviceRef::new("aa:bb:cc:dd:ee:01", None).unwrap(),
            interface: Some("lan0".into()),
            ipv4: None,
        }
    }

    fn steps(delay_s: u64, settle_s: u64) -> Steps {
        Steps {
            cycle_delay: Duration::from_secs(delay_s),
            settle: Duration::from_secs(settle_s),
            poll: POLL_INTERVAL,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn on_and_off_set_once_and_read_the_state_back() {
        let fake = Fake::new(PowerState::Off);
        let r = run(&fake, PowerAction::On, &steps(5, 5), &target())
            .await
            .unwrap();
        assert_eq!(
            r,
            PowerResult {
                action: PowerAction::On,
                state: PowerState::On
            }
        );
        let r = run(&fake, PowerAction::Off, &steps(5, 5), &target())
            .await
            .unwrap();
        assert_eq!(r.state, PowerState::Off);
        let sets: Vec<String> = fake.sets().into_iter().map(|(_, w)| w).collect();
        assert_eq!(sets, ["set true", "set false"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_outlet_is_polled_until_it_follows() {
        let mut fake = Fake::new(PowerState::Off);
        fake.lag_reads = 3;
        let r = run(&fake, PowerAction::On, &steps(5, 5), &target())
            .await
            .unwrap();
        assert_eq!(r.state, PowerState::On);
        let log = fake.log.borrow();
        let reads: Vec<&Duration> = log
            .iter()
            .filter(|(_, w)| w == "read")
            .map(|(t, _)| t)
            .collect();
        assert_eq!(reads.len(), 4, "{log:?}");
        assert_eq!(*reads[3], POLL_INTERVAL * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn cycle_is_off_the_delay_then_on() {
        let fake = Fake::new(PowerState::On);
        let r = run(&fake, PowerAction::Cycle, &steps(7, 5), &target())
            .await
            .unwrap();
        assert_eq!(
            r,
            PowerResult {
                action: PowerAction::Cycle,
                state: PowerState::On
            }
        );
        let sets = fake.sets();
        assert_eq!(sets.len(), 2, "{sets:?}");
        assert_eq!(sets[0].1, "set false");
        assert_eq!(sets[1].1, "set true");
        assert_eq!(sets[1].0 - sets[0].0, Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_outlet_is_a_state_mismatch_after_settle() {
        let mut fake = Fake::new(PowerState::On);
        fake.stuck = true;
        let started = Instant::now();
        let err = run(&fake, PowerAction::Off, &steps(5, 2), &target())
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(err.code(), codes::STATE_MISMATCH);
        let text = err.to_string();
        assert!(
            text.starts_with("the outlet answered but still reports on after 2s"),
            "{text}"
        );
        assert!(text.contains("10.0.0.2:161"), "{text}");
        // A cycle stops at the off that did not happen: it never switches on.
        let err = run(&fake, PowerAction::Cycle, &steps(1, 1), &target())
            .await
            .unwrap_err();
        assert_eq!(err.code(), codes::STATE_MISMATCH);
        assert_eq!(fake.sets().last().unwrap().1, "set false");
    }

    #[tokio::test(start_paused = true)]
    async fn a_method_that_cannot_read_reports_unknown_and_refuses_what_it_cannot_do() {
        let mut fake = Fake::new(PowerState::Unknown);
        fake.readable = false;
        let r = run(&fake, PowerAction::On, &steps(5, 5), &target())
            .await
            .unwrap();
        assert_eq!(r.state, PowerState::Unknown);
        for action in [PowerAction::Off, PowerAction::Cycle] {
            let err = run(&fake, action, &steps(5, 5), &target())
                .await
                .unwrap_err();
            assert_eq!(err.code(), codes::ACTION_UNSUPPORTED);
            assert!(err.to_string().contains(cannot(action)), "{err}");
        }
        assert_eq!(fake.sets().len(), 1);
    }

    #[tokio::test]
    async fn a_too_long_cycle_delay_is_a_bad_binding() {
        let binding = OutletBinding {
            outlet: Outlet::WakeOnLan { secureon: None },
            cycle_delay_secs: MAX_CYCLE_DELAY_SECS + 1,
        };
        let err = act(
            &PowerConfig::default(),
            &binding,
            PowerAction::On,
            &target(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), codes::BAD_BINDING);
    }

    #[tokio::test]
    async fn wake_on_lan_refuses_off_and_cycle_whatever_the_target() {
        let binding = OutletBinding {
            outlet: Outlet::WakeOnLan { secureon: None },
            cycle_delay_secs: 1,
        };
        let unseen = PowerTarget {
            interface: None,
            ..target()
        };
        let config = PowerConfig::default();
        for action in [PowerAction::Off, PowerAction::Cycle] {
            let err = act(&config, &binding, action, &unseen).await.unwrap_err();
            assert_eq!(err.code(), codes::ACTION_UNSUPPORTED, "{err}");
        }
        let err = act(&config, &binding, PowerAction::On, &unseen)
            .await
            .unwrap_err();
        assert_eq!(err.code(), codes::BAD_BINDING, "{err}");
    }

    #[test]
    fn actions_can_run_on_spawned_tasks() {
        fn assert_send<T: Send>(_: &T) {}
        let binding = OutletBinding {
            outlet: Outlet::WakeOnLan { secureon: None },
            cycle_delay_secs: 1,
        };
        let (config, target) = (PowerConfig::default(), target());
        let action = act(&config, &binding, PowerAction::On, &target);
        assert_send(&action);
    }

    #[test]
    fn hosts_split_with_default_ports() {
        assert_eq!(
            split_host("10.0.0.2", 161).unwrap(),
            ("10.0.0.2".into(), 161)
        );
        assert_eq!(
            split_host("switch.lan:1161", 161).unwrap(),
            ("switch.lan".into(), 1161)
        );
        assert_eq!(
            split_host("[fe80::1]:8080", 80).unwrap(),
            ("fe80::1".into(), 8080)
        );
        assert_eq!(split_host("fe80::1", 80).unwrap(), ("fe80::1".into(), 80));
        assert_eq!(host_port("fe80::1", 80), "[fe80::1]:80");
        for bad in [
            "", "h:0", "h:99999", "h:x", "http://h", "u@h", "h/x", "[fe80::1", ":80",
        ] {
            let err = split_host(bad, 80).unwrap_err();
            assert_eq!(err.code(), codes::BAD_BINDING, "{bad:?}");
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(secs(Duration::from_secs(3)), "3s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(secs(Duration::from_millis(250)), "250ms");
        assert_eq!(secs(Duration::ZERO), "0s");
    }
}
