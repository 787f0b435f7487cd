//! The company's branding page (company admins): name and contact details, and the logo (a PNG or JPEG
//! upload, re-encoded by the portal), with a preview of what site owners see.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::auth::{internal, redirect, Tech};
use super::layout::{html_response, page, Notice};
use super::WebState;
use crate::api::auth::PeerAddr;
use crate::app::branding::logo_path;
use crate::app::OpError;
use crate::branding::{Details, MAX_LOGO_BYTES};
use crate::store::branding::BrandingRow;

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    pub ok: Option<String>,
}

fn render(
    tech: &Tech,
    b: &BrandingRow,
    shown: &Details,
    notice: Option<&Notice>,
    status: StatusCode,
) -> Response {
    let csrf = tech.csrf();
    let body = html! {
        h1 { "Branding" }
        p.muted { "What your customers see on their own page: your company's name, how to reach you, and your logo." }
        h2 { "Company" }
        form method="post" action="/branding" {
            input type="hidden" name="csrf" value=(csrf);
            div.grid {
                div { label for="name" { "Company name" }
                    input #name type="text" name="name" value=(shown.name) maxlength="64" required; }
                div { label for="contact_email" { "Contact email" }
                    input #contact_email type="email" name="contact_email" value=(shown.contact_email); }
                div { label for="contact_phone" { "Contact phone" }
                    input #contact_phone type="tel" name="contact_phone" value=(shown.contact_phone); }
                div { label for="website" { "Website" }
                    input #website type="url" name="website" value=(shown.website) placeholder="https://"; }
                div.wide { label for="address" { "Address" }
                    textarea #address name="address" { (shown.address) } }
            }
            div.actions { button #save-branding type="submit" { "Save" } }
        }
        h2 { "Logo" }
        @if let Some(key) = &b.logo_key {
            p { img #logo src=(logo_path(key)) alt={ (b.details.name) " logo" } style="max-width:12rem;max-height:4rem"; }
            form method="post" action="/branding/logo/delete" {
                input type="hidden" name="csrf" value=(csrf);
                div.actions { button.quiet #remove-logo type="submit" { "Remove the logo" } }
            }
        } @else {
            p.muted #no-logo { "No logo yet." }
        }
        form method="post" action={ "/branding/logo?csrf=" (csrf) } enctype="multipart/form-data" {
            div.grid { div.wide {
                label for="logo" { "PNG or JPEG, at most 1 MiB; it is scaled to fit 400×200 pixels" }
                input #logo-file type="file" name="logo" accept="image/png,image/jpeg" required;
            } }
            div.actions { button #upload-logo type="submit" { "Upload" } }
        }
    };
    html_response(status, page("Branding", Some(tech.viewer()), notice, body))
}

async fn show_with(
    state: &WebState,
    tech: &Tech,
    shown: Option<Details>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    match state.app.my_branding(&tech.caller).await {
        Ok(b) => {
            let shown = shown.unwrap_or_else(|| b.details.clone());
            render(tech, &b, &shown, notice.as_ref(), status)
        }
        Err(e) => internal(e),
    }
}

fn done_notice(ok: Option<&str>) -> Option<Notice> {
    match ok {
        Some("saved") => Some(Notice::ok("Branding saved.")),
        Some("logo") => Some(Notice::ok("Logo saved.")),
        Some("removed") => Some(Notice::ok("Logo removed.")),
        _ => None,
    }
}

/// `GET /branding`.
pub async fn show(State(state): State<WebState>, tech: Tech, Query(done): Query<Done>) -> Response {
    show_with(
        &state,
        &tech,
        None,
        done_notice(done.ok.as_deref()),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct DetailsForm {
    pub csrf: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub contact_email: String,
    #[serde(default)]
    pub contact_phone: String,
    #[serde(default)]
    pub website: String,
    #[serde(default)]
    pub address: String,
}

fn refusal(e: &OpError) -> Option<(StatusCode, Notice)> {
    match e {
        OpError::Invalid { .. } => Some((StatusCode::BAD_REQUEST, Notice::error(e.to_string()))),
        OpError::Conflict(_) => Some((StatusCode::CONFLICT, Notice::error(e.to_string()))),
        _ => None,
    }
}

/// `POST /branding`: the details; a refusal shows the form as typed with the reason.
pub async fn save(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    PeerAddr(peer): PeerAddr,
    form: Result<Form<DetailsForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Some(refused) = tech.refuse_post(&headers, form.as_ref().and_then(|f| f.csrf.as_deref()))
    {
        return refused;
    }
    let Some(f) = form else {
        return show_with(
            &state,
            &tech,
            None,
            Some(Notice::error("the form arrived incomplete; try again")),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let details = Details {
        name: f.name,
        contact_email: f.contact_email,
        contact_phone: f.contact_phone,
        website: f.website,
        address: f.address,
    };
    let address = peer.map(|p| p.to_string());
    match state
        .app
        .set_branding(&tech.caller, &details, address.as_deref())
        .await
    {
        Ok(_) => redirect("/branding?ok=saved", None),
        Err(e) => match refusal(&e) {
            Some((status, notice)) => {
                show_with(&state, &tech, Some(details), Some(notice), status).await
            }
            None => internal(e),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfQuery {
    pub csrf: Option<String>,
}

/// `POST /branding/logo` (multipart, the CSRF token in the query because the body is the file).
pub async fn upload(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    PeerAddr(peer): PeerAddr,
    Query(q): Query<CsrfQuery>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    if let Some(refused) = tech.refuse_post(&headers, q.csrf.as_deref()) {
        return refused;
    }
    let bad = |text: String| async {
        show_with(
            &state,
            &tech,
            None,
            Some(Notice::error(text)),
            StatusCode::BAD_REQUEST,
        )
        .await
    };
    let Ok(mut multipart) = multipart else {
        return bad("the upload arrived incomplete; choose the file again".into()).await;
    };
    let mut file = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("logo") => match field.bytes().await {
                Ok(bytes) => file = Some(bytes.to_vec()),
                Err(_) => {
                    return bad(format!(
                        "the logo could not be received; it must be at most {MAX_LOGO_BYTES} bytes"
                    ))
                    .await
                }
            },
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                return bad("the upload arrived incomplete; choose the file again".into()).await
            }
        }
    }
    let Some(file) = file else {
        return bad("choose a PNG or JPEG file to upload".into()).await;
    };
    let address = peer.map(|p| p.to_string());
    match state
        .app
        .set_logo(&tech.caller, file, address.as_deref())
        .await
    {
        Ok(_) => redirect("/branding?ok=logo", None),
        Err(e) => match refusal(&e) {
            Some((status, notice)) => show_with(&state, &tech, None, Some(notice), status).await,
            None => internal(e),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// `POST /branding/logo/delete`.
pub async fn remove_logo(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    PeerAddr(peer): PeerAddr,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let given = form.ok().and_then(|Form(f)| f.csrf);
    if let Some(refused) = tech.refuse_post(&headers, given.as_deref()) {
        return refused;
    }
    let address = peer.map(|p| p.to_string());
    match state
        .app
        .delete_logo(&tech.caller, address.as_deref())
        .await
    {
        Ok(()) => redirect("/branding?ok=removed", None),
        Err(e) => internal(e),
    }
}
