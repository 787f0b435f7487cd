//! Company branding: details checked by field, logos accepted only as PNG or JPEG within 1 MiB and served
//! re-encoded under a fresh key, refusals that change nothing, the page's multipart upload, who may change
//! it, and what the site owner's page shows (in owner.rs).

use std::io::Cursor;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use image::{ImageFormat, RgbImage};
use outpost_portal::access::Role;
use serde_json::{json, Value};

use crate::harness::{request, Harness, Req};

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, _| image::Rgb([(x % 256) as u8, 99, 20]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A raw request: `(status, content type, body bytes)`.
pub async fn raw(
    h: &Harness,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, String, Vec<u8>) {
    use tower::ServiceExt;
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_001,
        ))));
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, ctype, bytes)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// Uploads `bytes` as the logo with the harness's admin token.
pub async fn upload(h: &Harness, bytes: Vec<u8>) -> (StatusCode, Value) {
    let (status, _, body) = raw(
        h,
        Method::PUT,
        "/api/v1/branding/logo",
        Some(&h.token),
        "image/png",
        bytes,
    )
    .await;
    (status, json_of(&body))
}

#[tokio::test]
async fn details_are_saved_and_refused_by_field() {
    let h = Harness::new().await;
    let got = h.op(Method::GET, "/api/v1/branding", None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["name"], "My company");
    assert!(got.body["logo"].is_null());

    let saved = h
        .op(
            Method::PUT,
            "/api/v1/branding",
            Some(json!({
                "name": " Acme Networks ",
                "contact_email": "help@acme.example",
                "contact_phone": "+351 21 000 0000",
                "website": "https://acme.example",
                "address": "Rua 1\n1000-001 Lisboa"
            })),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.body);
    assert_eq!(saved.body["name"], "Acme Networks");
    for (body, field) in [
        (json!({ "name": "" }), "name"),
        (
            json!({ "name": "A", "website": "javascript:alert(1)" }),
            "website",
        ),
        (
            json!({ "name": "A", "contact_email": "nope" }),
            "contact_email",
        ),
    ] {
        let r = h.op(Method::PUT, "/api/v1/branding", Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert!(
            r.body["message"].as_str().unwrap().starts_with(field),
            "{:?}",
            r.body
        );
    }
    let unchanged = h.op(Method::GET, "/api/v1/branding", None).await;
    assert_eq!(
        unchanged.body["name"], "Acme Networks",
        "a refusal changes nothing"
    );
    assert_eq!(unchanged.body["website"], "https://acme.example");
}

#[tokio::test]
async fn logos_are_re_encoded_served_under_a_fresh_key_and_bad_ones_change_nothing() {
    let h = Harness::new().await;
    let (status, body) = upload(&h, jpeg(1600, 400)).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let first = body["logo"].as_str().unwrap().to_owned();
    assert!(first.starts_with("/branding/logo/"), "{first}");
    // Served to anyone who has the (random) address, always as PNG, scaled to fit 400×200.
    let (status, ctype, png_bytes) = raw(&h, Method::GET, &first, None, "", vec![]).await;
    assert_eq!((status, ctype.as_str()), (StatusCode::OK, "image/png"));
    let img = image::load_from_memory_with_format(&png_bytes, ImageFormat::Png).unwrap();
    assert_eq!((img.width(), img.height()), (400, 100));

    let mut not_an_image = b"GIF89a".to_vec();
    not_an_image.extend_from_slice(&[0; 64]);
    let mut truncated = png(50, 50);
    truncated.truncate(60);
    let oversized = {
        let mut b = png(10, 10);
        b.resize(1024 * 1024 + 1, 0);
        b
    };
    for (bytes, needle) in [
        (b"hello, not an image".to_vec(), "not a PNG or JPEG"),
        (not_an_image, "not a PNG or JPEG"),
        (truncated, "could not be read as a PNG"),
        (oversized, "1 MiB"),
        (Vec::new(), "empty"),
    ] {
        let (status, body) = upload(&h, bytes).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{body:?}"
        );
    }
    let now = h.op(Method::GET, "/api/v1/branding", None).await;
    assert_eq!(
        now.body["logo"],
        first.as_str(),
        "refused uploads keep the logo"
    );

    let (status, body) = upload(&h, png(64, 64)).await;
    assert_eq!(status, StatusCode::OK);
    let second = body["logo"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "a new upload gets a new address");
    let (status, _, _) = raw(&h, Method::GET, &first, None, "", vec![]).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the old address stops serving"
    );

    let (status, _, _) = raw(
        &h,
        Method::DELETE,
        "/api/v1/branding/logo",
        Some(&h.token),
        "",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = raw(&h, Method::GET, &second, None, "", vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let history = h.op(Method::GET, "/api/v1/history?action=logo", None).await;
    let actions: Vec<&str> = history.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["logo-changed", "logo-changed", "logo-removed"]);
}

#[tokio::test]
async fn only_company_admins_change_the_branding() {
    let h = Harness::new().await;
    h.add_user(
        "sup@example.com",
        Role::Supervisor,
        Some("North"),
        "x-long-enough-password-1",
    )
    .await;
    let sup = outpost_portal::app::users::bootstrap_token(
        h.app.store(),
        Some("sup@example.com"),
        "sup",
        false,
        h.app.now(),
    )
    .await
    .unwrap();
    let (status, _, body) = raw(&h, Method::GET, "/api/v1/branding", Some(&sup), "", vec![]).await;
    assert_eq!(status, StatusCode::OK, "any member may read it");
    assert_eq!(json_of(&body)["name"], "My company");
    let (status, _, body) = raw(
        &h,
        Method::PUT,
        "/api/v1/branding",
        Some(&sup),
        "application/json",
        br#"{"name":"Mine now"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json_of(&body)["error"], "forbidden");
    let (status, _, _) = raw(
        &h,
        Method::PUT,
        "/api/v1/branding/logo",
        Some(&sup),
        "image/png",
        png(5, 5),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_page_uploads_a_logo_as_multipart_and_shows_refusals() {
    let h = Harness::new().await;
    h.add_user(
        "boss@example.com",
        Role::CompanyAdmin,
        None,
        "x-long-enough-password-1",
    )
    .await;
    let signed = request(
        &h,
        Method::POST,
        "/sign-in",
        Req {
            form: Some(crate::harness::form(&[
                ("email", "boss@example.com"),
                ("password", "x-long-enough-password-1"),
            ])),
            ..Req::default()
        },
    )
    .await;
    let cookie = signed.session();
    let page = request(
        &h,
        Method::GET,
        "/branding",
        Req {
            cookie: Some(&cookie),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("No logo yet."));
    let at = page.text.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page.text[at..].split('"').next().unwrap().to_owned();

    let post = |bytes: Vec<u8>, csrf: String| {
        let cookie = cookie.clone();
        let h = &h;
        async move {
            let boundary = "----outposttestboundary";
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"logo\"; filename=\"logo.png\"\r\n\
                 Content-Type: image/png\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(&bytes);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            use tower::ServiceExt;
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(format!("/branding/logo?csrf={csrf}"))
                .header("host", "portal.example:8443")
                .header("cookie", cookie)
                .header("sec-fetch-site", "same-origin")
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from(body))
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    40_002,
                ))));
            let resp = h.router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let text =
                String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
                    .into_owned();
            (status, location, text)
        }
    };
    let (status, _, text) = post(b"%PDF-1.7 not a picture".to_vec(), csrf.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("not a PNG or JPEG"), "{text}");
    let (status, _, _) = post(png(20, 20), "forged".into()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the CSRF token is checked");
    let (status, location, _) = post(png(20, 20), csrf).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/branding?ok=logo")
    );
    let page = request(
        &h,
        Method::GET,
        "/branding?ok=logo",
        Req {
            cookie: Some(&cookie),
            ..Req::default()
        },
    )
    .await;
    assert!(page.text.contains("Logo saved.") && page.text.contains("src=\"/branding/logo/"));
}
