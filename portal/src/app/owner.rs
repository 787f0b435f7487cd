//! Owner access (the "Violet" app for residential sites), the operations: an agent's owner (email and
//! on/off switch) and per-device flags set by operators, and what a signed-in owner sees and may do.
//!
//! Enforcement is here, not in the pages, so the HTML pages and the JSON API share it: another owner's
//! site or a site that does not exist is unknown; a switched-off site refuses everything; a hidden device
//! does not exist for the owner; an action needs its flag (and power an outlet binding). Permitted actions
//! run through [`App::control_device`] with the actor `owner:<email>`, which records them in the history.
//! Sign-in, invitations and sessions are in [`super::owner_auth`].

use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use outpost_cloud_link::control::{codes, DeviceRef, Outlet, OutletBinding, PowerAction};
use outpost_cloud_link::inventory::{Device, NameSource};
use outpost_cloud_link::AgentId;
use tracing::info;

use super::control::{ControlAction, DeviceControl};
use super::owner_auth::{NewInvitation, Owner};
use super::{Actor, App, OpError};
use crate::store::commands::CommandRow;
use crate::store::devices::{vlan_column, DeviceKey};
use crate::store::history::{self, Line};
use crate::store::owners::{self, Flags, OwnerRow, VisibleDevice};
use crate::store::StoreError;

/// Longest email address accepted (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// What owner access refuses or fails with; the API maps each to a status and code.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("email: {0}")]
    InvalidEmail(String),
    #[error("password: {0}")]
    Password(String),
    /// `block: true` for a device the agent cannot block; `code` is the agent side's code for why.
    #[error("{message}")]
    NotBlockable { code: String, message: String },
    #[error("this invitation link is not valid (it may have been replaced by a newer one); ask your installer for a new link")]
    UnknownInvitation,
    #[error("this invitation link has already been used; sign in with your email and password, or ask your installer for a new link")]
    InvitationUsed,
    #[error("this invitation link has expired; ask your installer for a new one")]
    InvitationExpired,
    /// The same for an unknown email and a wrong password.
    #[error("the email or password is wrong; check both and try again")]
    BadSignIn,
    #[error("you are not signed in (or your session ended); sign in at /owner/sign-in")]
    NoSession,
    #[error("the form or request is missing its security token or it does not match your session; reload the page and try again")]
    Csrf,
    #[error("there is no site {0} among yours; reload your device list")]
    UnknownSite(String),
    #[error("access to this site is switched off; ask your installer to switch it on")]
    AccessOff,
    #[error(
        "there is no device {0} among this site's devices you can see; reload your device list"
    )]
    UnknownDevice(String),
    #[error("{0}")]
    NotPermitted(&'static str),
    #[error("the portal failed internally: {0}")]
    Internal(String),
    #[error("this device has no power outlet set up, so its power cannot be switched; ask your installer to connect one")]
    NoOutlet,
}

impl From<StoreError> for OwnerError {
    fn from(e: StoreError) -> Self {
        OwnerError::Op(OpError::Store(e))
    }
}

impl From<sqlx::Error> for OwnerError {
    fn from(e: sqlx::Error) -> Self {
        OwnerError::Op(OpError::from(e))
    }
}

/// Checks an email address and returns it trimmed and lower-cased.
pub fn normalize_email(raw: &str) -> Result<String, OwnerError> {
    let email = raw.trim().to_lowercase();
    let invalid = |why: &str| {
        OwnerError::InvalidEmail(format!("{why}; give an address like name@example.com"))
    };
    if email.is_empty() {
        return Err(invalid("the email is empty"));
    }
    if email.len() > MAX_EMAIL {
        return Err(invalid("the email is longer than 254 characters"));
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"".contains(c))
    {
        return Err(invalid(&format!(
            "{email:?} contains spaces or characters an address cannot hold"
        )));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid(&format!("{email:?} has no @")));
    };
    let domain_ok = domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
        && !domain.contains('@');
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(invalid(&format!("{email:?} is not an email address")));
    }
    Ok(email)
}

/// An agent's owner settings as the operator sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSettings {
    pub email: Option<String>,
    pub enabled: bool,
    /// The email has an owner account (someone accepted an invitation).
    pub has_account: bool,
    pub updated_at: Option<DateTime<Utc>>,
}

/// What the operator asks for in `PUT /agents/{id}/owner`.
#[derive(Debug, Clone)]
pub struct OwnerChange<'a> {
    pub email: &'a str,
    pub enabled: bool,
    /// `Some(true)`: make an invitation link even if the account exists (the owner forgot the password);
    /// `Some(false)`: none; `None`: only when the email has no account yet.
    pub invite: Option<bool>,
}

/// A device's flags and what the agent can do with it, for the operator.
#[derive(Debug, Clone)]
pub struct DeviceFlags {
    pub device: DeviceRef,
    pub flags: Flags,
    pub control: DeviceControl,
}

/// Why the agent cannot block a device, in a sentence, for the code [`DeviceControl::unblockable_reason`]
/// gives.
pub fn unblockable_sentence(code: &str) -> &'static str {
    match code {
        codes::VLAN_TAGGED_UNBLOCKABLE => {
            "the agent is a box and sees this device through a tagged VLAN, where it cannot pause devices \
             (a box blocks only on its untagged LAN; a router can block on VLANs)"
        }
        codes::BLOCKING_UNSUPPORTED_PLATFORM => {
            "the agent runs on a plain Linux host (platform linux), which cannot block devices; a box or a \
             router can"
        }
        _ => "the agent cannot block this device",
    }
}

/// The power actions a binding can do (Wake-on-LAN only turns a device on).
pub fn power_actions(binding: &OutletBinding) -> &'static [PowerAction] {
    match binding.outlet {
        Outlet::WakeOnLan { .. } => &[PowerAction::On],
        _ => &PowerAction::ALL,
    }
}

/// One site as its owner sees it.
#[derive(Debug, Clone)]
pub struct OwnerSite {
    pub agent_id: AgentId,
    pub name: String,
    /// The owner switch; a switched-off site lists no devices.
    pub enabled: bool,
    pub online: bool,
    pub devices: Vec<OwnerDevice>,
    /// The branding of the company that looks after the site.
    pub branding: Option<crate::store::branding::BrandingRow>,
}

/// One visible device as its owner sees it.
#[derive(Debug, Clone)]
pub struct OwnerDevice {
    pub device: DeviceRef,
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub online: bool,
    /// The agent reports it blocked.
    pub blocked: bool,
    /// Block and Unblock are offered (flag set, and the agent can block it).
    pub can_block: bool,
    /// The power buttons offered: none unless the flag is set and an outlet is bound.
    pub power: Vec<PowerAction>,
}

/// A device the owner may reach, found by [`App::owned_device`].
#[derive(Debug, Clone)]
pub struct OwnedDevice {
    pub agent: AgentId,
    pub device: DeviceRef,
    pub flags: Flags,
}

/// How an owner action is described to people.
pub fn action_label(action: &ControlAction) -> String {
    match action {
        ControlAction::Block => "block".to_owned(),
        ControlAction::Unblock => "unblock".to_owned(),
        ControlAction::Power(p) => format!("power {p}"),
    }
}

fn key_of(device: &DeviceRef) -> DeviceKey {
    DeviceKey {
        vlan: vlan_column(device.vlan),
        mac: device.mac.clone(),
    }
}

/// The name an owner sees: the friendliest name the agent found (UPnP, mDNS, DHCP, DNS), else the
/// vendor, else the MAC.
pub fn display_name(d: &Device) -> String {
    let rank = |s: &NameSource| match s {
        NameSource::Upnp => 0,
        NameSource::Mdns => 1,
        NameSource::Dhcp => 2,
        NameSource::Dns => 3,
    };
    d.names
        .iter()
        .min_by_key(|n| rank(&n.source))
        .map(|n| n.name.clone())
        .or_else(|| d.vendor.clone())
        .unwrap_or_else(|| d.mac.clone())
}

/// One visible device as its owner sees it: buttons only where the flags and the agent allow.
fn owner_device(v: &VisibleDevice, control: &DeviceControl) -> OwnerDevice {
    OwnerDevice {
        device: control.device.clone(),
        name: display_name(&v.device),
        ipv4: v.device.ipv4,
        online: v.device.online,
        blocked: control.blocked,
        can_block: v.flags.block && control.blockable,
        power: match (&control.power_outlet, v.flags.power) {
            (Some(binding), true) => power_actions(binding).to_vec(),
            _ => Vec::new(),
        },
    }
}

impl App {
    // -----------------------------------------------------------------------------------------------------
    // Operator side
    // -----------------------------------------------------------------------------------------------------

    pub async fn owner_settings(&self, agent: &AgentId) -> Result<OwnerSettings, OwnerError> {
        self.agent(agent).await?;
        let mut conn = self.store().conn().await?;
        let row = owners::get_owner(&mut conn, agent).await?;
        Ok(match row {
            None => OwnerSettings {
                email: None,
                enabled: false,
                has_account: false,
                updated_at: None,
            },
            Some(OwnerRow {
                email,
                enabled,
                updated_at,
                ..
            }) => OwnerSettings {
                has_account: owners::account_by_email(&mut conn, &email).await?.is_some(),
                email: Some(email),
                enabled,
                updated_at: Some(updated_at),
            },
        })
    }

    /// Sets the agent's owner and switch; makes an invitation link as [`OwnerChange::invite`] says.
    pub async fn set_owner(
        &self,
        agent: &AgentId,
        change: OwnerChange<'_>,
        actor: &Actor,
    ) -> Result<(OwnerSettings, Option<NewInvitation>), OwnerError> {
        let email = normalize_email(change.email)?;
        let row = self.agent(agent).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let has_account = owners::account_by_email(&mut tx, &email).await?.is_some();
        owners::put_owner(&mut tx, agent, &email, change.enabled, now).await?;
        let dropped = owners::drop_invitations_not_for(&mut tx, agent, &email).await?;
        let invitation = match change.invite.unwrap_or(!has_account) {
            true => Some(self.invite(&mut tx, agent, &email, now).await?),
            false => None,
        };
        let details = format!(
            "{email}, access {}{}",
            if change.enabled { "on" } else { "off" },
            match &invitation {
                Some(i) => format!(
                    "; invitation link made, valid until {}",
                    i.expires_at.to_rfc3339()
                ),
                None => String::new(),
            }
        );
        history::append(
            &mut tx,
            Line {
                agent,
                agent_name: &row.name,
                action: "owner_set",
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent, enabled = change.enabled, invited = invitation.is_some(),
            invitations_dropped = dropped, actor = actor.as_str(), "owner settings changed");
        let settings = OwnerSettings {
            email: Some(email),
            enabled: change.enabled,
            has_account,
            updated_at: Some(now),
        };
        Ok((settings, invitation))
    }

    /// The device's flags alone (all off when never set), for a caller that has its control view already.
    pub async fn device_owner_flags(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
    ) -> Result<Flags, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(owners::flags(&mut conn, agent, &key_of(device)).await?)
    }

    /// The device's flags (all off when never set) and what the agent can do with it.
    pub async fn owner_flags(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
    ) -> Result<DeviceFlags, OwnerError> {
        let control = self.device_control(agent, device).await?;
        let flags = self.device_owner_flags(agent, device).await?;
        Ok(DeviceFlags {
            device: device.clone(),
            flags,
            control,
        })
    }

    /// Sets the device's flags; `block` is refused when the agent cannot block the device.
    pub async fn set_owner_flags(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
        flags: Flags,
        actor: &Actor,
    ) -> Result<DeviceFlags, OwnerError> {
        let row = self.agent(agent).await?;
        let control = self.device_control(agent, device).await?;
        if let (true, Some(code)) = (flags.block, control.unblockable_reason) {
            return Err(OwnerError::NotBlockable {
                code: code.to_owned(),
                message: format!(
                    "block: {device} cannot be made blockable: {}; send block false",
                    unblockable_sentence(code)
                ),
            });
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        owners::put_flags(&mut tx, agent, &key_of(device), flags, now).await?;
        let yes_no = |on: bool, what: &str| format!("{}{what}", if on { "" } else { "no " });
        let details = format!(
            "{device}: {}, {}, {}",
            if flags.visible { "visible" } else { "hidden" },
            yes_no(flags.power, "power"),
            yes_no(flags.block, "block"),
        );
        history::append(
            &mut tx,
            Line {
                agent,
                agent_name: &row.name,
                action: "owner_flags",
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent, device = %device, visible = flags.visible, power = flags.power,
            block = flags.block, actor = actor.as_str(), "owner flags changed");
        Ok(DeviceFlags {
            device: device.clone(),
            flags,
            control,
        })
    }

    // -----------------------------------------------------------------------------------------------------
    // Owner side
    // -----------------------------------------------------------------------------------------------------

    /// The owner's sites (by name) with their visible devices; switched-off sites list none.
    pub async fn owner_sites(&self, owner: &Owner) -> Result<Vec<OwnerSite>, OwnerError> {
        let sites = {
            let mut conn = self.store().conn().await?;
            owners::sites_of(&mut conn, &owner.email).await?
        };
        let mut out = Vec::with_capacity(sites.len());
        for site in sites {
            let agent = self.agent(&site.agent_id).await?;
            let devices = match site.enabled {
                true => self.owner_devices(&site.agent_id).await?,
                false => Vec::new(),
            };
            let branding = match agent.company_id {
                Some(company) => {
                    let mut conn = self.store().conn().await?;
                    crate::store::branding::get(&mut conn, company).await?
                }
                None => None,
            };
            out.push(OwnerSite {
                online: self.is_online(&agent),
                agent_id: site.agent_id,
                name: site.name,
                enabled: site.enabled,
                devices,
                branding,
            });
        }
        Ok(out)
    }

    /// The agent's visible devices as its owner sees them.
    async fn owner_devices(&self, agent: &AgentId) -> Result<Vec<OwnerDevice>, OwnerError> {
        let visible = {
            let mut conn = self.store().conn().await?;
            owners::visible_devices(&mut conn, agent).await?
        };
        let facts = self.control_facts(agent).await?;
        Ok(visible
            .iter()
            .map(|v| owner_device(v, &facts.device(&v.row)))
            .collect())
    }

    /// The device as the owner may reach it: their site, switched on, the device visible and in the
    /// inventory. Ids that do not parse are unknown like any other.
    pub async fn owned_device(
        &self,
        owner: &Owner,
        agent_raw: &str,
        device_raw: &str,
    ) -> Result<OwnedDevice, OwnerError> {
        let unknown_site = || OwnerError::UnknownSite(agent_raw.to_owned());
        let agent = AgentId::parse(agent_raw).map_err(|_| unknown_site())?;
        let mut conn = self.store().conn().await?;
        let site = owners::get_owner(&mut conn, &agent)
            .await?
            .filter(|s| s.email == owner.email)
            .ok_or_else(unknown_site)?;
        if !site.enabled {
            return Err(OwnerError::AccessOff);
        }
        let unknown_device = || OwnerError::UnknownDevice(device_raw.to_owned());
        let device: DeviceRef = device_raw.parse().map_err(|_| unknown_device())?;
        let key = key_of(&device);
        let flags = owners::flags(&mut conn, &agent, &key).await?;
        if !flags.visible || !owners::device_exists(&mut conn, &agent, &key).await? {
            return Err(unknown_device());
        }
        Ok(OwnedDevice {
            agent,
            device,
            flags,
        })
    }

    /// The device's name and state as its owner sees it (for a confirmation page).
    pub async fn owned_device_view(
        &self,
        owner: &Owner,
        agent_raw: &str,
        device_raw: &str,
    ) -> Result<OwnerDevice, OwnerError> {
        let owned = self.owned_device(owner, agent_raw, device_raw).await?;
        self.owner_devices(&owned.agent)
            .await?
            .into_iter()
            .find(|d| d.device == owned.device)
            .ok_or_else(|| OwnerError::UnknownDevice(device_raw.to_owned()))
    }

    /// Runs an owner's action if their flags allow it, waiting up to `wait` for the agent's answer.
    pub async fn owner_act(
        &self,
        owner: &Owner,
        agent_raw: &str,
        device_raw: &str,
        action: ControlAction,
        wait: Duration,
    ) -> Result<CommandRow, OwnerError> {
        let owned = self.owned_device(owner, agent_raw, device_raw).await?;
        let label = action_label(&action);
        let refused = |why: &'static str| {
            info!(agent = %owned.agent, device = %owned.device, owner = owner.id, action = %label,
                "owner action refused by the device's flags");
            OwnerError::NotPermitted(why)
        };
        match action {
            ControlAction::Block | ControlAction::Unblock if !owned.flags.block => {
                return Err(refused(
                    "you may not block or unblock this device; ask your installer if you need to",
                ))
            }
            ControlAction::Power(_) if !owned.flags.power => {
                return Err(refused(
                    "you may not switch this device's power; ask your installer if you need to",
                ))
            }
            ControlAction::Power(_) => {
                let control = self.device_control(&owned.agent, &owned.device).await?;
                if control.power_outlet.is_none() {
                    return Err(OwnerError::NoOutlet);
                }
            }
            _ => {}
        }
        let row = self
            .control_device(&owned.agent, &owned.device, action, &owner.actor(), wait)
            .await?;
        info!(agent = %owned.agent, device = %owned.device, owner = owner.id, action = %label,
            command_id = row.id, status = %row.status, "owner action sent");
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email("  Ann.Owner@Example.COM ").unwrap(),
            "ann.owner@example.com"
        );
        assert_eq!(
            normalize_email("a+tag@sub.example.org").unwrap(),
            "a+tag@sub.example.org"
        );
    }

    #[test]
    fn bad_emails_are_refused_naming_the_field() {
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann@@example.com",
            "ann@exa mple.com",
            "ann@example..com",
            "<ann@example.com>",
            "ann@-example.com",
        ] {
            let e = normalize_email(bad).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("email: "), "{bad:?}: {text}");
            assert!(text.contains("name@example.com"), "{bad:?}: {text}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(normalize_email(&long).is_err());
    }
}
