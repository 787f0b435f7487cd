//! The site and customer configuration form on the agent page: the owner's contact, Customer and Contract
//! IDs, the PSA mapping, the address and map pin, the note. The form's fields map one to one onto the
//! site document the API takes ([`SiteInput`]); the same validation runs, and a refused form comes back
//! as typed with each bad field's message next to it.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use outpost_cloud_link::AgentId;
use serde::Deserialize;

use super::agent;
use super::auth::{redirect, Tech};
use super::layout::Notice;
use super::WebState;
use crate::api::owner::Problem;
use crate::app::{App, OpError};
use crate::listing::AgentListItem;
use crate::site::{
    ContactInput, FieldError, Pin, PinInput, PsaInput, PsaSystem, SiteConfig, SiteInput,
    MAX_ADDRESS, MAX_EMAIL, MAX_ID, MAX_NAME, MAX_NOTE, MAX_ORG_ID, MAX_PHONES,
};

/// The form as typed (every field a string).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FormInput {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// One phone number per line.
    #[serde(default)]
    pub phones: String,
    #[serde(default)]
    pub customer_id: String,
    #[serde(default)]
    pub contract_id: String,
    #[serde(default)]
    pub psa_system: String,
    #[serde(default)]
    pub psa_org_id: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub pin_latitude: String,
    #[serde(default)]
    pub pin_longitude: String,
    #[serde(default)]
    pub note: String,
}

/// A form the server refused: what was typed and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub input: FormInput,
    pub errors: Vec<FieldError>,
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| s.to_owned())
}

/// A coordinate as typed: empty is none; anything that is not a number is a field error.
fn coordinate(raw: &str, field: &str, label: &str, errors: &mut Vec<FieldError>) -> Option<f64> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    match t.replace(',', ".").parse::<f64>() {
        Ok(v) if v.is_finite() => Some(v),
        _ => {
            errors.push(FieldError {
                field: field.into(),
                message: format!(
                    "{label} {t:?} is not a number; give decimal degrees such as 48.8566"
                ),
            });
            None
        }
    }
}

impl FormInput {
    /// The site document this form stands for, and the errors only the form can make (a coordinate
    /// that is not a number).
    pub fn to_input(&self) -> (SiteInput, Vec<FieldError>) {
        let mut errors = Vec::new();
        let latitude = coordinate(
            &self.pin_latitude,
            "pin.latitude",
            "The pin's latitude",
            &mut errors,
        );
        let longitude = coordinate(
            &self.pin_longitude,
            "pin.longitude",
            "The pin's longitude",
            &mut errors,
        );
        let phones: Vec<String> = self
            .phones
            .lines()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let input = SiteInput {
            contact: Some(ContactInput {
                email: opt(&self.email),
                first_name: opt(&self.first_name),
                last_name: opt(&self.last_name),
                phones,
            }),
            customer_id: opt(&self.customer_id),
            contract_id: opt(&self.contract_id),
            psa: opt(&self.psa_system).map(|system| PsaInput {
                system: Some(system),
                org_id: opt(&self.psa_org_id),
            }),
            address: opt(&self.address),
            pin: (latitude.is_some() || longitude.is_some()).then_some(PinInput {
                latitude,
                longitude,
            }),
            note: opt(&self.note),
        };
        (input, errors)
    }

    /// The form filled in with a stored configuration.
    pub fn from_config(c: &SiteConfig) -> Self {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            email: s(&c.contact.email),
            first_name: s(&c.contact.first_name),
            last_name: s(&c.contact.last_name),
            phones: c.contact.phones.join("\n"),
            customer_id: s(&c.customer_id),
            contract_id: s(&c.contract_id),
            psa_system: c
                .psa
                .as_ref()
                .map(|p| p.system.as_str().to_owned())
                .unwrap_or_default(),
            psa_org_id: c.psa.as_ref().map(|p| s(&p.org_id)).unwrap_or_default(),
            address: s(&c.address),
            pin_latitude: c.pin.map(|p| p.latitude.to_string()).unwrap_or_default(),
            pin_longitude: c.pin.map(|p| p.longitude.to_string()).unwrap_or_default(),
            note: s(&c.note),
        }
    }
}

/// The form's input name for a document path (`contact.phones[1]` → `phones`).
fn input_of(field: &str) -> &'static str {
    let base = field.split('[').next().unwrap_or(field);
    match base {
        "contact.email" => "email",
        "contact.first_name" => "first_name",
        "contact.last_name" => "last_name",
        "contact.phones" => "phones",
        "customer_id" => "customer_id",
        "contract_id" => "contract_id",
        "psa.system" | "psa" => "psa_system",
        "psa.org_id" => "psa_org_id",
        "address" => "address",
        "pin.latitude" | "pin" => "pin_latitude",
        "pin.longitude" => "pin_longitude",
        "note" => "note",
        _ => "",
    }
}

/// The form; `errors` are shown next to their fields and in a summary at the top.
pub fn form(csrf: &str, id: &AgentId, v: &FormInput, errors: &[FieldError]) -> Markup {
    let error_of = |name: &str| -> Vec<&str> {
        errors
            .iter()
            .filter(|e| input_of(&e.field) == name)
            .map(|e| e.message.as_str())
            .collect()
    };
    let field =
        |name: &'static str, label: &str, value: &str, kind: &str, max: usize, wide: bool| {
            let errs = error_of(name);
            let described = format!("{name}-error");
            html! {
                div.wide[wide] {
                    label for=(name) { (label) }
                    input id=(name) name=(name) type=(kind) value=(value) maxlength=(max)
                        aria-invalid=[(!errs.is_empty()).then_some("true")]
                        aria-describedby=[(!errs.is_empty()).then_some(described.as_str())];
                    @for e in &errs { p.field-error id=(described) { (e) } }
                }
            }
        };
    let area = |name: &'static str, label: &str, value: &str, max: usize, hint: Option<&str>| {
        let errs = error_of(name);
        let described = format!("{name}-error");
        html! {
            div.wide {
                label for=(name) { (label) @if let Some(h) = hint { " " span.muted { (h) } } }
                textarea id=(name) name=(name) maxlength=(max)
                    aria-invalid=[(!errs.is_empty()).then_some("true")]
                    aria-describedby=[(!errs.is_empty()).then_some(described.as_str())] { (value) }
                @for e in &errs { p.field-error id=(described) { (e) } }
            }
        }
    };
    let psa_errors = error_of("psa_system");
    let unmapped: Vec<&FieldError> = errors
        .iter()
        .filter(|e| input_of(&e.field).is_empty())
        .collect();
    html! {
        @if !errors.is_empty() {
            div.notice.error role="alert" #site-errors {
                p { "The site configuration was not saved; fix " (errors.len()) " field" @if errors.len() != 1 { "s" } ":" }
                ul { @for e in errors { li { (e.message) } } }
            }
        }
        form #site method="post" action={ "/agents/" (id) "/site" } {
            input type="hidden" name="csrf" value=(csrf);
            fieldset {
                legend { "Contact of the site's owner" }
                div.grid {
                    (field("first_name", "First name", &v.first_name, "text", MAX_NAME, false))
                    (field("last_name", "Last name", &v.last_name, "text", MAX_NAME, false))
                    (field("email", "Email", &v.email, "email", MAX_EMAIL, false))
                    (area("phones", "Phone numbers", &v.phones, 200, Some(&format!("(one per line, at most {MAX_PHONES})"))))
                }
            }
            fieldset {
                legend { "Customer and contract" }
                div.grid {
                    (field("customer_id", "Customer ID", &v.customer_id, "text", MAX_ID, false))
                    (field("contract_id", "Contract ID", &v.contract_id, "text", MAX_ID, false))
                    div {
                        label for="psa_system" { "PSA / ticketing system" }
                        select #psa_system name="psa_system" aria-invalid=[(!psa_errors.is_empty()).then_some("true")] {
                            option value="" selected[v.psa_system.is_empty()] { "None" }
                            @for s in PsaSystem::ALL {
                                option value=(s.as_str()) selected[v.psa_system == s.as_str()] { (s.label()) }
                            }
                        }
                        @for e in &psa_errors { p.field-error { (e) } }
                    }
                    (field("psa_org_id", "Organization / site id in the PSA", &v.psa_org_id, "text", MAX_ORG_ID, false))
                }
            }
            fieldset {
                legend { "Where the site is" }
                p.muted { "The agent's GeoIP location places the site on the map unless a pin is set here." }
                div.grid {
                    (area("address", "Address", &v.address, MAX_ADDRESS, None))
                    (field("pin_latitude", "Pin latitude", &v.pin_latitude, "text", 32, false))
                    (field("pin_longitude", "Pin longitude", &v.pin_longitude, "text", 32, false))
                }
            }
            div.grid {
                (area("note", "Note", &v.note, MAX_NOTE, None))
            }
            @for e in &unmapped { p.field-error { (e.message) } }
            div.actions { button #save-site type="submit" { "Save site configuration" } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SiteForm {
    pub csrf: Option<String>,
    #[serde(flatten)]
    pub input: FormInput,
}

/// `POST /agents/{id}/site`.
pub async fn save(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<SiteForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Some(refused) = tech.refuse_post(&headers, form.as_ref().and_then(|f| f.csrf.as_deref()))
    {
        return refused;
    }
    let Some(form) = form else {
        return redirect("/agents", None);
    };
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let (input, form_errors) = form.input.to_input();
    let refused = |errors: Vec<FieldError>| Refused {
        input: form.input.clone(),
        errors,
    };
    if !form_errors.is_empty() {
        // Report the form's own errors together with the validation's.
        let mut errors = form_errors;
        if let Err(more) = crate::site::validate(&input) {
            errors.extend(more);
        }
        return agent::render(
            &state,
            &tech,
            &id,
            None,
            Some(refused(errors)),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    match state.app.set_site(&id, &input, &tech.actor()).await {
        Ok(_) => redirect(&format!("/agents/{id}?ok=site#site"), None),
        Err(OpError::InvalidSite(crate::site::InvalidSite(errors))) => {
            agent::render(
                &state,
                &tech,
                &id,
                None,
                Some(refused(errors)),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => {
            let problem = Problem::from(e);
            agent::render(
                &state,
                &tech,
                &id,
                Some(Notice::error(problem.message)),
                None,
                problem.status,
            )
            .await
        }
    }
}

/// Where a site is on the map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub latitude: f64,
    pub longitude: f64,
    /// `pin` (typed in the site configuration) or `geoip`.
    pub source: &'static str,
}

/// The site's place: its pin, else the agent's GeoIP location (the agent's own lookup or the portal's).
pub async fn place(app: &App, item: &AgentListItem) -> Option<Place> {
    if let Some(pin) = item.site.pin {
        return Some(Place {
            latitude: pin.latitude,
            longitude: pin.longitude,
            source: "pin",
        });
    }
    let report = app.location(&item.agent.id).await.ok().flatten()?;
    let found = report.location?;
    Some(Place {
        latitude: found.latitude,
        longitude: found.longitude,
        source: "geoip",
    })
}

/// Where the agent is, as the facts box shows it: the GeoIP location (city, region, country, coordinates,
/// accuracy, who looked it up and in which database), or why there is none; and the site's `pin` when one
/// overrides it on the map.
pub async fn location_markup(app: &App, id: &AgentId, pin: Option<Pin>) -> Markup {
    let report = match app.location(id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(agent = %id, error = %e, "location unreadable");
            None
        }
    };
    html! {
        @if let Some(pin) = pin {
            "Pinned at " (format!("{:.4}, {:.4}", pin.latitude, pin.longitude)) " (the pin places the site on the map)"
            br;
        }
        @match &report {
            None => { span.muted { "No GeoIP location yet." } }
            Some(r) => {
                @if let Some(l) = &r.location {
                    @let place: Vec<&str> = [l.city.as_deref(), l.region.as_deref(), l.country.as_deref()]
                        .into_iter().flatten().collect();
                    @if place.is_empty() { "Somewhere" } @else { (place.join(", ")) }
                    " " span.muted {
                        "(" (format!("{:.4}, {:.4}", l.latitude, l.longitude))
                        @if let Some(km) = l.accuracy_radius_km { ", within " (km) " km" }
                        "; GeoIP of " (l.ip) " by the " (r.source.as_str()) ", " (l.database) " built " (l.database_built) ")"
                    }
                } @else if let Some(err) = &r.error {
                    span.muted { "No GeoIP location: " (err.message) " (" (r.source.as_str()) ")" }
                } @else {
                    span.muted { "No GeoIP location yet." }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_maps_onto_the_site_document() {
        let form = FormInput {
            email: "ana@example.com".into(),
            phones: "+351 21 000 0000\n\n 555-1234 \n".into(),
            psa_system: "syncro".into(),
            psa_org_id: "42".into(),
            pin_latitude: "38,72".into(),
            pin_longitude: "-9.14".into(),
            ..FormInput::default()
        };
        let (input, errors) = form.to_input();
        assert!(errors.is_empty(), "{errors:?}");
        let contact = input.contact.unwrap();
        assert_eq!(contact.phones, ["+351 21 000 0000", "555-1234"]);
        assert_eq!(input.psa.unwrap().system.as_deref(), Some("syncro"));
        let pin = input.pin.unwrap();
        assert_eq!((pin.latitude, pin.longitude), (Some(38.72), Some(-9.14)));
        assert!(input.customer_id.is_none(), "empty fields are absent");
    }

    #[test]
    fn a_coordinate_that_is_not_a_number_is_named() {
        let form = FormInput {
            pin_latitude: "north".into(),
            ..FormInput::default()
        };
        let (_, errors) = form.to_input();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "pin.latitude");
        assert!(errors[0].message.contains("latitude"));
    }

    #[test]
    fn errors_land_next_to_their_fields() {
        assert_eq!(input_of("contact.phones[2]"), "phones");
        assert_eq!(input_of("contact.email"), "email");
        assert_eq!(input_of("pin"), "pin_latitude");
        let id: AgentId = "agent-1".parse().unwrap();
        let errors = vec![FieldError {
            field: "contact.email".into(),
            message: "The contact's email is not an address".into(),
        }];
        let html = form("tok", &id, &FormInput::default(), &errors).into_string();
        assert!(html.contains("id=\"email-error\""), "{html}");
        assert!(html.contains("aria-invalid=\"true\""));
        assert!(
            html.contains("The contact&#39;s email is not an address")
                || html.contains("The contact's email is not an address")
        );
    }
}
