//! Signed agent releases over HTTPS: the staff list and removal (`GET /releases`, `DELETE /releases/{id}`)
//! and what agents fetch with their own credentials (HTTP Basic, as `GET /agent/status`):
//! `GET /agent/releases/{id}/manifest` (the signed release file exactly as stored) and
//! `GET /agent/releases/{id}/binary` (the binary, with `Range: bytes=N-` so an interrupted download
//! resumes: 206 and `Content-Range`; a range that cannot be served is 416).
//!
//! Releases are added with `outpost-portal releases add` (the CLI), not over the API.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_cloud_link::enrollment::ApiError;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tracing::error;

use super::auth::{AuthenticatedAgent, Operator};
use super::error::AppError;
use super::ApiState;
use crate::app::releases::ReleaseOpError;
use crate::app::OpError;
use crate::store::releases::{Filter, ReleaseRow};

/// A release as the API shows it (the signed file is served to agents, not listed).
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseView {
    pub id: i64,
    pub name: &'static str,
    pub version: String,
    pub target: String,
    pub size: u64,
    pub sha256: String,
    pub rollback: bool,
    pub notes: Option<String>,
    pub key_ids: Vec<String>,
    pub added_at: String,
    pub added_by: String,
}

impl From<ReleaseRow> for ReleaseView {
    fn from(r: ReleaseRow) -> Self {
        ReleaseView {
            id: r.id,
            name: outpost_cloud_link::release::AGENT_NAME,
            version: r.version,
            target: r.target,
            size: r.size,
            sha256: r.sha256,
            rollback: r.rollback,
            notes: r.notes,
            key_ids: r.key_ids,
            added_at: r.added_at.to_rfc3339(),
            added_by: r.added_by,
        }
    }
}

/// What a release route answers instead of success.
#[derive(Debug)]
pub enum ReleaseApiError {
    App(AppError),
    /// No release with this id (or an id that is not a number).
    NotFound(String),
    /// The `Range` header cannot be served for a binary of this size.
    BadRange {
        size: u64,
        reason: String,
    },
}

impl From<AppError> for ReleaseApiError {
    fn from(e: AppError) -> Self {
        ReleaseApiError::App(e)
    }
}

impl From<ReleaseOpError> for ReleaseApiError {
    fn from(e: ReleaseOpError) -> Self {
        match e {
            ReleaseOpError::Unknown(id) => ReleaseApiError::NotFound(id.to_string()),
            ReleaseOpError::Store(e) => ReleaseApiError::App(OpError::Store(e).into()),
            // Adding is the CLI's; anything else here is the portal's own failure.
            other => ReleaseApiError::App(OpError::Internal(other.to_string()).into()),
        }
    }
}

fn error_body(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ApiError {
            error: code.to_owned(),
            message,
        }),
    )
        .into_response()
}

impl IntoResponse for ReleaseApiError {
    fn into_response(self) -> Response {
        match self {
            ReleaseApiError::App(e) => e.into_response(),
            ReleaseApiError::NotFound(id) => error_body(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("there is no release {id}; GET /api/v1/releases lists them"),
            ),
            ReleaseApiError::BadRange { size, reason } => {
                let mut r = error_body(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!(
                        "{reason}; the binary is {size} bytes: ask for `Range: bytes=N-` with N below {size}, or for the whole file without a Range header"
                    ),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                r
            }
        }
    }
}

fn release_id(raw: &str) -> Result<i64, ReleaseApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ReleaseApiError::NotFound(raw.to_owned()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub target: Option<String>,
    pub version: Option<String>,
}

/// `GET /releases[?target=T&version=V]`: the stored releases, newest first.
pub async fn list(
    _op: Operator,
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ReleaseApiError> {
    let Query(q) = query.map_err(AppError::from_query)?;
    let filter = Filter {
        target: q.target.filter(|t| !t.is_empty()),
        version: q.version.filter(|v| !v.is_empty()),
    };
    let releases: Vec<ReleaseView> = state
        .app
        .releases(&filter)
        .await?
        .into_iter()
        .map(ReleaseView::from)
        .collect();
    Ok(Json(serde_json::json!({ "releases": releases })))
}

/// `DELETE /releases/{id}`: removes the release and its binary.
pub async fn remove(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ReleaseApiError> {
    let id = release_id(&id)?;
    state.app.remove_release(id, &op.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /agent/releases/{id}/manifest`: the signed release file as stored.
pub async fn manifest(
    AuthenticatedAgent(_agent): AuthenticatedAgent,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ReleaseApiError> {
    let row = state.app.release(release_id(&id)?).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        row.release_file,
    )
        .into_response())
}

/// The bytes to send: all of them, or one range (inclusive `start..=end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Whole,
    Range { start: u64, end: u64 },
}

/// Reads a `Range` header against a file of `size` bytes. One range of bytes is served: `bytes=N-`,
/// `bytes=N-M` (clipped to the end) or `bytes=-K` (the last K bytes); another unit is ignored (the whole
/// file, as RFC 9110 allows); anything else in bytes (several ranges, a malformed one, one starting at or
/// past the end) is refused with the reason.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Span, String> {
    let Some(value) = header.map(str::trim) else {
        return Ok(Span::Whole);
    };
    let Some(spec) = value.strip_prefix("bytes=") else {
        return Ok(Span::Whole);
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Err(format!("several ranges ({spec}) are not served, only one"));
    }
    let malformed = || format!("the range `{spec}` is not `N-`, `N-M` or `-K`");
    let (first, last) = spec.split_once('-').ok_or_else(malformed)?;
    let number = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        s.parse::<u64>().map_err(|_| malformed())
    };
    if first.is_empty() {
        let k = number(last)?;
        if k == 0 || size == 0 {
            return Err(format!("the range `{spec}` asks for no bytes"));
        }
        return Ok(Span::Range {
            start: size.saturating_sub(k),
            end: size - 1,
        });
    }
    let start = number(first)?;
    if start >= size {
        return Err(format!("the range starts at byte {start}, past the end"));
    }
    let end = if last.is_empty() {
        size - 1
    } else {
        let end = number(last)?;
        if end < start {
            return Err(format!("the range `{spec}` ends before it starts"));
        }
        end.min(size - 1)
    };
    Ok(Span::Range { start, end })
}

/// `GET /agent/releases/{id}/binary`: the binary (`Range: bytes=N-` resumes a download).
pub async fn binary(
    AuthenticatedAgent(_agent): AuthenticatedAgent,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ReleaseApiError> {
    let (row, path) = state.app.release_binary(release_id(&id)?).await?;
    let read_failed = |source| ReleaseOpError::Read {
        path: path.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(read_failed)?;
    let size = file.metadata().await.map_err(read_failed)?.len();
    if size != row.size {
        let e = ReleaseOpError::Damaged {
            path: path.clone(),
            expected: row.size,
            got: size,
        };
        error!(release = row.id, error = %e, "release binary changed on disk");
        return Err(e.into());
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let span =
        parse_range(range, size).map_err(|reason| ReleaseApiError::BadRange { size, reason })?;
    let (status, start, len) = match span {
        Span::Whole => (StatusCode::OK, 0, size),
        Span::Range { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(read_failed)?;
    // Streamed from the file in pieces: a download costs no more memory than its buffer.
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(len)));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", row.sha256)) {
        h.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", start + len - 1);
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_header_or_another_unit_is_the_whole_file() {
        assert_eq!(parse_range(None, 10), Ok(Span::Whole));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(Span::Whole));
    }

    #[test]
    fn one_range_is_served_clipped_to_the_end() {
        assert_eq!(
            parse_range(Some("bytes=4-"), 10),
            Ok(Span::Range { start: 4, end: 9 })
        );
        assert_eq!(
            parse_range(Some("bytes=0-0"), 10),
            Ok(Span::Range { start: 0, end: 0 })
        );
        assert_eq!(
            parse_range(Some("bytes=2-99"), 10),
            Ok(Span::Range { start: 2, end: 9 })
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            Ok(Span::Range { start: 7, end: 9 })
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            Ok(Span::Range { start: 0, end: 9 })
        );
    }

    #[test]
    fn ranges_that_cannot_be_served_say_why() {
        for (h, why) in [
            ("bytes=10-", "past the end"),
            ("bytes=11-12", "past the end"),
            ("bytes=5-2", "ends before it starts"),
            ("bytes=0-1,4-5", "several ranges"),
            ("bytes=x-", "is not `N-`"),
            ("bytes=-", "is not `N-`"),
            ("bytes=1", "is not `N-`"),
            ("bytes=+1-", "is not `N-`"),
            ("bytes=-0", "asks for no bytes"),
        ] {
            let e = parse_range(Some(h), 10).unwrap_err();
            assert!(e.contains(why), "{h}: {e}");
        }
        assert!(parse_range(Some("bytes=0-"), 0).is_err());
    }
}
