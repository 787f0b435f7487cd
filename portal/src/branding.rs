//! A company's branding, pure: its details checked ([`Details::check`]) and its logo checked and
//! re-encoded ([`reencode_logo`]): only PNG or JPEG, at most [`MAX_LOGO_BYTES`], decoded under size and
//! memory limits, scaled to fit [`LOGO_BOX`] and written out as a fresh PNG, so nothing of the uploaded
//! file but its pixels is ever served.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};

/// Largest logo upload accepted.
pub const MAX_LOGO_BYTES: usize = 1024 * 1024;
/// Largest picture decoded (either side, pixels).
pub const MAX_LOGO_SIDE: u32 = 4096;
/// The box a logo is scaled down to fit (width, height).
pub const LOGO_BOX: (u32, u32) = (400, 200);
/// Longest detail field, in characters.
pub const MAX_FIELD: usize = 200;

/// What a company shows its site owners besides the logo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Details {
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

/// A detail that cannot be saved: the field and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadDetail {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> BadDetail {
    BadDetail {
        field,
        message: message.into(),
    }
}

impl Details {
    /// The details trimmed and checked: a name of 1 to 64 characters, every field at most [`MAX_FIELD`]
    /// characters without control characters (the address may have line breaks), an email that looks like
    /// one, a website that is an `https://` or `http://` address.
    pub fn check(&self) -> Result<Details, BadDetail> {
        let field = |name: &'static str, value: &str, lines: bool| -> Result<String, BadDetail> {
            let v = value.trim().replace("\r\n", "\n");
            if v.chars().count() > MAX_FIELD {
                return Err(bad(name, format!("at most {MAX_FIELD} characters")));
            }
            if v.chars().any(|c| c.is_control() && !(lines && c == '\n')) {
                return Err(bad(name, "remove control characters"));
            }
            Ok(v)
        };
        let name = field("name", &self.name, false)?;
        if name.is_empty() || name.chars().count() > 64 {
            return Err(bad("name", "give the company's name, 1 to 64 characters"));
        }
        let contact_email = field("contact_email", &self.contact_email, false)?;
        if !contact_email.is_empty() && !email_address::EmailAddress::is_valid(&contact_email) {
            return Err(bad(
                "contact_email",
                "give an address like support@example.com, or leave it empty",
            ));
        }
        let contact_phone = field("contact_phone", &self.contact_phone, false)?;
        if contact_phone
            .chars()
            .any(|c| !(c.is_ascii_digit() || " +-.()/".contains(c)))
        {
            return Err(bad(
                "contact_phone",
                "use digits, spaces and + - . ( ) / only, like +351 21 000 0000",
            ));
        }
        let website = field("website", &self.website, false)?;
        let web_address = website.starts_with("https://") || website.starts_with("http://");
        if (!website.is_empty() && !web_address) || website.contains(char::is_whitespace) {
            return Err(bad(
                "website",
                "give a full address like https://example.com, or leave it empty",
            ));
        }
        let address = field("address", &self.address, true)?;
        Ok(Details {
            name,
            contact_email,
            contact_phone,
            website,
            address,
        })
    }
}

/// Why a logo was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoError {
    #[error("the logo is empty; choose a PNG or JPEG file")]
    Empty,
    #[error(
        "the logo is {0} bytes; the limit is 1 MiB (1048576 bytes): upload a smaller PNG or JPEG"
    )]
    TooLarge(usize),
    #[error("the logo is not a PNG or JPEG image; convert it to PNG or JPEG and upload it again")]
    NotAnImage,
    #[error(
        "the logo could not be read as a {0} image ({1}); export it again and upload the new file"
    )]
    Unreadable(&'static str, String),
    #[error("the logo is {0}×{1} pixels; the limit is 4096 on each side: scale it down first")]
    TooManyPixels(u32, u32),
    #[error("the logo could not be re-encoded: {0}")]
    Encode(String),
}

/// The format of an upload by its first bytes: PNG or JPEG only.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

/// Checks an uploaded logo and returns it re-encoded as PNG, scaled down to fit [`LOGO_BOX`] (never up).
pub fn reencode_logo(bytes: &[u8]) -> Result<Vec<u8>, LogoError> {
    if bytes.is_empty() {
        return Err(LogoError::Empty);
    }
    if bytes.len() > MAX_LOGO_BYTES {
        return Err(LogoError::TooLarge(bytes.len()));
    }
    let format = sniff(bytes).ok_or(LogoError::NotAnImage)?;
    let label = if format == ImageFormat::Png {
        "PNG"
    } else {
        "JPEG"
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_LOGO_SIDE);
    limits.max_image_height = Some(MAX_LOGO_SIDE);
    limits.max_alloc = Some(128 * 1024 * 1024);
    reader.limits(limits);
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| LogoError::Unreadable(label, e.to_string()))?;
    if w > MAX_LOGO_SIDE || h > MAX_LOGO_SIDE {
        return Err(LogoError::TooManyPixels(w, h));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_LOGO_SIDE);
    limits.max_image_height = Some(MAX_LOGO_SIDE);
    limits.max_alloc = Some(128 * 1024 * 1024);
    reader.limits(limits);
    let picture = reader
        .decode()
        .map_err(|e| LogoError::Unreadable(label, e.to_string()))?;
    let (bw, bh) = LOGO_BOX;
    let picture = if picture.width() > bw || picture.height() > bh {
        picture.thumbnail(bw, bh)
    } else {
        picture
    };
    let mut out = Cursor::new(Vec::new());
    picture
        .to_rgba8()
        .write_to(&mut out, ImageFormat::Png)
        .map_err(|e| LogoError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgba};

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img: ImageBuffer<Rgba<u8>, Vec<u8>> = ImageBuffer::from_fn(w, h, |x, y| {
            Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, _| image::Rgb([(x % 256) as u8, 10, 200]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    fn dimensions(png: &[u8]) -> (u32, u32) {
        let img = image::load_from_memory_with_format(png, ImageFormat::Png).unwrap();
        (img.width(), img.height())
    }

    #[test]
    fn pngs_and_jpegs_come_back_as_fresh_pngs_scaled_to_fit() {
        let out = reencode_logo(&png(120, 60)).unwrap();
        assert_eq!(sniff(&out), Some(ImageFormat::Png));
        assert_eq!(dimensions(&out), (120, 60), "small logos are not scaled up");
        let out = reencode_logo(&jpeg(1600, 400)).unwrap();
        assert_eq!(sniff(&out), Some(ImageFormat::Png));
        assert_eq!(dimensions(&out), (400, 100));
        let out = reencode_logo(&png(300, 900)).unwrap();
        assert_eq!(dimensions(&out), (67, 200));
    }

    #[test]
    fn extra_bytes_after_the_image_are_not_kept() {
        let mut bytes = png(10, 10);
        bytes.extend_from_slice(b"<script>alert(1)</script>");
        let out = reencode_logo(&bytes).unwrap();
        assert!(!out.windows(8).any(|w| w == b"<script>"));
    }

    #[test]
    fn what_is_not_a_png_or_jpeg_is_refused_with_what_to_do() {
        assert_eq!(reencode_logo(b""), Err(LogoError::Empty));
        assert_eq!(reencode_logo(b"GIF89a...."), Err(LogoError::NotAnImage));
        assert_eq!(
            reencode_logo(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            Err(LogoError::NotAnImage)
        );
        let mut broken = png(10, 10);
        broken.truncate(40);
        assert!(matches!(
            reencode_logo(&broken),
            Err(LogoError::Unreadable("PNG", _))
        ));
        let e = reencode_logo(&vec![0xff; MAX_LOGO_BYTES + 1]).unwrap_err();
        assert_eq!(e, LogoError::TooLarge(MAX_LOGO_BYTES + 1));
        assert!(e.to_string().contains("1 MiB"));
    }

    #[test]
    fn huge_dimensions_are_refused_before_decoding() {
        // A tiny file claiming 10000×10000 pixels (a decompression bomb) is refused from its header.
        let bytes = png(5000, 1);
        let e = reencode_logo(&bytes).unwrap_err();
        assert!(
            matches!(e, LogoError::Unreadable(..) | LogoError::TooManyPixels(..)),
            "{e:?}"
        );
    }

    #[test]
    fn details_are_trimmed_and_checked_by_field() {
        let ok = Details {
            name: "  Acme Networks ".into(),
            contact_email: "help@acme.example".into(),
            contact_phone: "+351 21 000 0000".into(),
            website: "https://acme.example".into(),
            address: "Rua 1\r\n1000-001 Lisboa".into(),
        }
        .check()
        .unwrap();
        assert_eq!(ok.name, "Acme Networks");
        assert_eq!(ok.address, "Rua 1\n1000-001 Lisboa");
        for (d, field) in [
            (
                Details {
                    name: "".into(),
                    ..Details::default()
                },
                "name",
            ),
            (
                Details {
                    name: "A".into(),
                    contact_email: "nope".into(),
                    ..Details::default()
                },
                "contact_email",
            ),
            (
                Details {
                    name: "A".into(),
                    contact_phone: "call me".into(),
                    ..Details::default()
                },
                "contact_phone",
            ),
            (
                Details {
                    name: "A".into(),
                    website: "javascript:alert(1)".into(),
                    ..Details::default()
                },
                "website",
            ),
        ] {
            assert_eq!(d.check().unwrap_err().field, field);
        }
    }
}
