//! The multi-site world map: one inline SVG drawn from Natural Earth's 1:110m country outlines shipped with
//! the portal (`portal/assets/world-110m.txt`; no tile server, no network), in the Equal Earth projection
//! cropped to 84° N – 60° S, with a keyboard-focusable link marker per site.
//!
//! The page's stylesheet owns the colours: `svg.map`, its land `path.land` (country outlines filled with
//! the even-odd rule), and each site's `circle.on` / `circle.off` inside an `<a>`. Strokes do not scale
//! with the map (`vector-effect: non-scaling-stroke`), so a stroke width in CSS is in screen pixels.

use std::fmt::Write as _;
use std::sync::OnceLock;

use maud::{html, Markup, PreEscaped};

/// The country outlines: one ring per line of `lon,lat` pairs (see the file's header and
/// `scripts/make-world-map`, which regenerates it).
const ASSET: &str = include_str!("../../assets/world-110m.txt");

/// The northernmost latitude drawn (Greenland's north coast is at 83.7° N).
pub const NORTH: f64 = 84.0;
/// The southernmost latitude drawn: Antarctica (all south of 60° S) would take a fifth of the height.
pub const SOUTH: f64 = -60.0;
/// The map's width in `viewBox` units; one unit is about 0.18° of longitude at the equator.
pub const WIDTH: f64 = 2000.0;
/// A marker's radius in `viewBox` units (the page may override it with the CSS property `r`).
pub const MARKER_RADIUS: f64 = 14.0;

/// A site to show on the map.
#[derive(Debug, Clone, Copy)]
pub struct Marker<'a> {
    /// The site's name, shown as the marker's tooltip and accessible name.
    pub label: &'a str,
    /// Where the marker leads (the site's page). A link with a scheme other than `http`/`https`
    /// (`javascript:`, `data:`...) is refused: the marker is not drawn.
    pub href: &'a str,
    pub latitude: f64,
    pub longitude: f64,
    pub online: bool,
}

/// What is wrong with the map asset (a test reads it; at run time the map is drawn without land).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AssetError {
    #[error("world map asset line {line}: {pair:?} is not a \"lon,lat\" pair of numbers; regenerate it with scripts/make-world-map")]
    Pair { line: usize, pair: String },
    #[error("world map asset line {line}: ({lon}, {lat}) is not a longitude in [-180, 180] and a latitude in [-90, 90]; regenerate it with scripts/make-world-map")]
    OutOfRange { line: usize, lon: f64, lat: f64 },
    #[error("world map asset line {line}: a ring needs at least 3 points, it has {points}; regenerate it with scripts/make-world-map")]
    TooShort { line: usize, points: usize },
    #[error("world map asset has no rings; regenerate it with scripts/make-world-map")]
    Empty,
}

/// A closed ring of `(longitude, latitude)` points in degrees (the last point joins the first).
type Ring = Vec<(f64, f64)>;

/// Parses the asset: `#` lines and blank lines are comments, every other line is a ring.
fn parse(text: &str) -> Result<Vec<Ring>, AssetError> {
    let mut rings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut ring = Vec::new();
        for pair in line.split_ascii_whitespace() {
            let bad = || AssetError::Pair {
                line: line_no,
                pair: pair.to_owned(),
            };
            let (lon, lat) = pair.split_once(',').ok_or_else(bad)?;
            let lon: f64 = lon.parse().map_err(|_| bad())?;
            let lat: f64 = lat.parse().map_err(|_| bad())?;
            if !valid(lat, lon) {
                return Err(AssetError::OutOfRange {
                    line: line_no,
                    lon,
                    lat,
                });
            }
            ring.push((lon, lat));
        }
        if ring.len() < 3 {
            return Err(AssetError::TooShort {
                line: line_no,
                points: ring.len(),
            });
        }
        rings.push(ring);
    }
    if rings.is_empty() {
        return Err(AssetError::Empty);
    }
    Ok(rings)
}

/// Whether a coordinate pair is a real place (finite, latitude within ±90°, longitude within ±180°).
fn valid(latitude: f64, longitude: f64) -> bool {
    (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude)
}

/// Equal Earth (Šavrič, Patterson, Jenny 2018) on the unit sphere: radians in, unscaled `(x, y)` out,
/// `y` growing northwards.
fn equal_earth_raw(lambda: f64, phi: f64) -> (f64, f64) {
    const A1: f64 = 1.340264;
    const A2: f64 = -0.081106;
    const A3: f64 = 0.000893;
    const A4: f64 = 0.003796;
    let m = 3f64.sqrt() / 2.0;
    let theta = (m * phi.sin()).asin();
    let t2 = theta * theta;
    let t6 = t2 * t2 * t2;
    let x = lambda * theta.cos() / (m * (A1 + 3.0 * A2 * t2 + t6 * (7.0 * A3 + 9.0 * A4 * t2)));
    let y = theta * (A1 + A2 * t2 + t6 * (A3 + A4 * t2));
    (x, y)
}

/// `viewBox` units per unit of [`equal_earth_raw`], and its `y` at [`NORTH`].
fn frame() -> (f64, f64) {
    let (x_max, _) = equal_earth_raw(std::f64::consts::PI, 0.0);
    let (_, y_top) = equal_earth_raw(0.0, NORTH.to_radians());
    (WIDTH / 2.0 / x_max, y_top)
}

/// Where a place lands in the map's `viewBox`: `x` from 0 (180° W) to [`WIDTH`] (180° E), `y` from 0
/// ([`NORTH`]) to [`height`] ([`SOUTH`]). Places outside that band project outside the box.
pub fn project(latitude: f64, longitude: f64) -> (f64, f64) {
    let (scale, y_top) = frame();
    let (x, y) = equal_earth_raw(longitude.to_radians(), latitude.to_radians());
    (WIDTH / 2.0 + x * scale, (y_top - y) * scale)
}

/// The map's height in `viewBox` units (the projection of [`SOUTH`]).
pub fn height() -> f64 {
    project(SOUTH, 0.0).1
}

/// Writes SVG path data compactly: relative commands, integers, a separator only where needed.
struct PathData {
    out: String,
    after_number: bool,
}

impl PathData {
    fn command(&mut self, c: char) {
        self.out.push(c);
        self.after_number = false;
    }

    fn number(&mut self, v: i64) {
        if v >= 0 && self.after_number {
            self.out.push(' ');
        }
        let _ = write!(self.out, "{v}");
        self.after_number = true;
    }
}

/// The land as one path's data: every ring that reaches north of [`SOUTH`], projected and rounded to
/// whole `viewBox` units; rounding is done on absolute positions, so the relative steps never drift.
fn land_path(rings: &[Ring]) -> String {
    let mut data = PathData {
        out: String::with_capacity(96 * 1024),
        after_number: false,
    };
    // After `z` the current point is the start of the subpath just closed: each `m` is relative to it.
    let mut origin = (0i64, 0i64);
    for ring in rings {
        if ring.iter().all(|&(_, lat)| lat < SOUTH) {
            continue;
        }
        let mut points: Vec<(i64, i64)> = Vec::with_capacity(ring.len());
        for &(lon, lat) in ring {
            let (x, y) = project(lat, lon);
            let p = (x.round() as i64, y.round() as i64);
            if points.last() != Some(&p) {
                points.push(p);
            }
        }
        while points.len() > 1 && points.last() == points.first() {
            points.pop();
        }
        if points.len() < 3 {
            continue; // an islet smaller than a unit
        }
        data.command('m');
        data.number(points[0].0 - origin.0);
        data.number(points[0].1 - origin.1);
        for pair in points.windows(2) {
            data.number(pair[1].0 - pair[0].0);
            data.number(pair[1].1 - pair[0].1);
        }
        data.command('z');
        origin = points[0];
    }
    data.out
}

/// The land's path data, built once; `None` (logged once) if the asset cannot be read.
fn land() -> Option<&'static str> {
    static LAND: OnceLock<Option<String>> = OnceLock::new();
    LAND.get_or_init(|| match parse(ASSET) {
        Ok(rings) => Some(land_path(&rings)),
        Err(e) => {
            tracing::error!(error = %e, "world map asset unreadable: the map shows the sites without land");
            None
        }
    })
    .as_deref()
}

/// Whether `href` is safe in a link: relative, or with the scheme `http` or `https`.
fn safe_href(href: &str) -> bool {
    let scheme_end = href.find([':', '/', '?', '#']);
    match scheme_end {
        Some(i) if href[i..].starts_with(':') => {
            let scheme = href[..i].to_ascii_lowercase();
            scheme == "http" || scheme == "https"
        }
        _ => !href.chars().any(char::is_control),
    }
}

/// The world map with a marker per site, as one inline `<svg>`.
///
/// Markers with coordinates outside ±90°/±180° (or not finite) or an unsafe link are skipped (and
/// logged); places north of [`NORTH`] or south of [`SOUTH`] are drawn on that edge. Markers are drawn in
/// the given order, later ones on top. Every text is escaped.
pub fn world_map(markers: &[Marker<'_>]) -> Markup {
    let shown: Vec<(&Marker<'_>, (f64, f64))> = markers
        .iter()
        .filter(|m| {
            let ok = valid(m.latitude, m.longitude) && safe_href(m.href);
            if !ok {
                tracing::warn!(
                    label = m.label,
                    latitude = m.latitude,
                    longitude = m.longitude,
                    href = m.href,
                    "map marker skipped: coordinates out of range or an unsafe link"
                );
            }
            ok
        })
        .map(|m| (m, project(m.latitude.clamp(SOUTH, NORTH), m.longitude)))
        .collect();
    let online = shown.iter().filter(|(m, _)| m.online).count();
    let title = format!(
        "World map of {} site{}: {online} online, {} offline",
        shown.len(),
        if shown.len() == 1 { "" } else { "s" },
        shown.len() - online
    );
    let view_box = format!("0 0 {WIDTH} {}", height().ceil());
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="map" viewBox=(view_box) role="img" {
            title { (title) }
            @if let Some(land) = land() {
                path class="land" fill-rule="evenodd" vector-effect="non-scaling-stroke" d=(PreEscaped(land)) {}
            }
            @for (m, (x, y)) in &shown {
                @let state = if m.online { "online" } else { "offline" };
                @let name = format!("{} ({state})", m.label);
                a href=(m.href) aria-label=(name) {
                    circle class=(if m.online { "on" } else { "off" })
                        cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r=(MARKER_RADIUS)
                        vector-effect="non-scaling-stroke" {
                        title { (name) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Even-odd point in polygon over all rings, in degrees (the fill rule the map uses).
    fn on_land(rings: &[Ring], latitude: f64, longitude: f64) -> bool {
        let mut inside = false;
        for ring in rings {
            for i in 0..ring.len() {
                let (x1, y1) = ring[i];
                let (x2, y2) = ring[(i + 1) % ring.len()];
                if (y1 > latitude) != (y2 > latitude)
                    && longitude < x1 + (latitude - y1) * (x2 - x1) / (y2 - y1)
                {
                    inside = !inside;
                }
            }
        }
        inside
    }

    fn rings() -> Vec<Ring> {
        parse(ASSET).unwrap()
    }

    #[test]
    fn the_asset_parses_and_puts_known_places_on_land_and_the_oceans_in_water() {
        let rings = rings();
        assert!(rings.len() > 200, "{} rings", rings.len());
        let land = [
            ("Paris", 48.8566, 2.3522),
            ("Nairobi", -1.2864, 36.8172),
            ("Denver", 39.7392, -104.9903),
            ("Alice Springs", -23.698, 133.8807),
            ("Manaus", -3.119, -60.0217),
            // Lesotho is a hole in South Africa's outline and a country of its own: even-odd keeps it land.
            ("Maseru (Lesotho)", -29.31, 27.48),
            ("Johannesburg", -26.2041, 28.0473),
            // Russia east of 180°, cut at the antimeridian.
            ("Chukotka", 66.5, -175.0),
            // Antarctica, closed along -90°.
            ("South Pole", -89.9, 45.0),
        ];
        for (name, lat, lon) in land {
            assert!(
                on_land(&rings, lat, lon),
                "{name} ({lat}, {lon}) is on land"
            );
        }
        let water = [
            ("mid-Atlantic", 30.0, -40.0),
            ("mid-Pacific", 0.0, -150.0),
            ("Indian Ocean", -20.0, 80.0),
            ("Caspian Sea", 42.0, 51.0),
            ("Bering Sea", 58.0, -178.0),
            ("Southern Ocean", -55.0, 0.0),
        ];
        for (name, lat, lon) in water {
            assert!(!on_land(&rings, lat, lon), "{name} ({lat}, {lon}) is water");
        }
    }

    #[test]
    fn no_ring_crosses_the_antimeridian() {
        for (i, ring) in rings().iter().enumerate() {
            for j in 0..ring.len() {
                let (a, b) = (ring[j], ring[(j + 1) % ring.len()]);
                let along_pole = a.1 == -90.0 && b.1 == -90.0;
                assert!(
                    (a.0 - b.0).abs() < 180.0 || along_pole,
                    "ring {i} jumps from {a:?} to {b:?}: it would draw a stripe across the map"
                );
            }
        }
    }

    #[test]
    fn a_broken_asset_is_an_error_naming_its_line() {
        assert_eq!(
            parse("# header\n1,2 3,4 5,6\n1,2 x,4 5,6\n"),
            Err(AssetError::Pair {
                line: 3,
                pair: "x,4".into()
            })
        );
        assert!(matches!(
            parse("1,2 3,4 200,6\n"),
            Err(AssetError::OutOfRange { line: 1, .. })
        ));
        assert_eq!(
            parse("1,2 3,4\n"),
            Err(AssetError::TooShort { line: 1, points: 2 })
        );
        assert_eq!(parse("# only a header\n"), Err(AssetError::Empty));
    }

    #[test]
    fn equal_earth_matches_d3_geo() {
        // Reference values from d3-geo 3.1's geoEqualEarthRaw (an independent implementation).
        let cases = [
            ((0.0, 180.0), (2.7066299836960748, 0.0)),
            ((90.0, 0.0), (0.0, 1.3173627591574133)),
            ((45.0, 90.0), (1.1598544991029835, 0.8602310855220102)),
            ((-60.0, -120.0), (-1.3593733917143729, -1.0883008355053194)),
        ];
        for ((lat, lon), (x, y)) in cases {
            let (px, py) = equal_earth_raw(f64::to_radians(lon), f64::to_radians(lat));
            assert!(
                (px - x).abs() < 1e-9 && (py - y).abs() < 1e-9,
                "({lat}, {lon})"
            );
        }
    }

    #[test]
    fn project_fills_the_view_box_and_keeps_areas_equal() {
        let (x, _) = project(0.0, -180.0);
        assert!(x.abs() < 1e-9);
        let (x, _) = project(0.0, 180.0);
        assert!((x - WIDTH).abs() < 1e-9);
        let (x, y) = project(NORTH, 0.0);
        assert!((x - WIDTH / 2.0).abs() < 1e-9 && y.abs() < 1e-9);
        assert!((project(SOUTH, 77.0).1 - height()).abs() < 1e-9);
        // Mirror symmetry, and north is up.
        let (a, b) = (project(35.0, 120.0), project(35.0, -120.0));
        assert!((a.0 + b.0 - WIDTH).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9);
        assert!(project(10.0, 0.0).1 < project(0.0, 0.0).1);
        // Equal area: a 1° cell at 60° N covers sin(61°) - sin(60°) of what one at the equator does.
        let area = |lat: f64| {
            let (x0, y0) = project(lat, 0.0);
            let (x1, y1) = project(lat + 1.0, 1.0);
            let (x2, _) = project(lat + 1.0, 0.0);
            let (x3, _) = project(lat, 1.0);
            // A trapezoid: the parallels are straight lines.
            ((x3 - x0) + (x1 - x2)) / 2.0 * (y0 - y1)
        };
        let expected =
            (61f64.to_radians().sin() - 60f64.to_radians().sin()) / 1f64.to_radians().sin();
        let ratio = area(60.0) / area(0.0);
        assert!(
            (ratio - expected).abs() / expected < 0.005,
            "{ratio} vs {expected}"
        );
    }

    fn circles(svg: &str) -> Vec<(String, f64, f64)> {
        svg.split("<circle ")
            .skip(1)
            .map(|c| {
                let attr = |name: &str| {
                    let start = c.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                    c[start..start + c[start..].find('"').unwrap()].to_owned()
                };
                (
                    attr("class"),
                    attr("cx").parse().unwrap(),
                    attr("cy").parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn markers_sit_where_project_puts_them_with_a_class_by_online_state() {
        let markers = [
            Marker {
                label: "Paris office",
                href: "/sites/ag-1",
                latitude: 48.8566,
                longitude: 2.3522,
                online: true,
            },
            Marker {
                label: "Sydney shop",
                href: "/sites/ag-2",
                latitude: -33.8688,
                longitude: 151.2093,
                online: false,
            },
        ];
        let svg = world_map(&markers).into_string();
        let found = circles(&svg);
        assert_eq!(found.len(), 2, "{svg}");
        for (m, (class, cx, cy)) in markers.iter().zip(&found) {
            let (x, y) = project(m.latitude, m.longitude);
            assert!((cx - x).abs() <= 0.05 && (cy - y).abs() <= 0.05, "{m:?}");
            assert_eq!(class, if m.online { "on" } else { "off" });
        }
        assert!(svg.contains("<a href=\"/sites/ag-1\" aria-label=\"Paris office (online)\">"));
        assert!(svg.contains("<title>Sydney shop (offline)</title>"));
        assert!(svg.contains("<title>World map of 2 sites: 1 online, 1 offline</title>"));
        assert!(
            svg.starts_with("<svg ")
                && svg.contains(" role=\"img\"")
                && svg.contains(" viewBox=\"0 0 2000 ")
        );
        assert_eq!(svg.matches("<path ").count(), 1, "land is one path");
    }

    #[test]
    fn labels_and_links_are_escaped() {
        let svg = world_map(&[Marker {
            label: "<script>alert(1)</script> & \"Co\"",
            href: "/sites/x?a=1&b=\"2\"",
            latitude: 0.0,
            longitude: 0.0,
            online: true,
        }])
        .into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;"));
        assert!(svg.contains("href=\"/sites/x?a=1&amp;b=&quot;2&quot;\""));
    }

    #[test]
    fn invalid_coordinates_and_unsafe_links_are_skipped() {
        let marker = |latitude, longitude, href| Marker {
            label: "site",
            href,
            latitude,
            longitude,
            online: false,
        };
        let bad = [
            marker(91.0, 0.0, "/a"),
            marker(-90.5, 0.0, "/a"),
            marker(0.0, 180.5, "/a"),
            marker(0.0, -181.0, "/a"),
            marker(f64::NAN, 0.0, "/a"),
            marker(0.0, f64::INFINITY, "/a"),
            marker(0.0, 0.0, "javascript:alert(1)"),
            marker(0.0, 0.0, " JavaScript:alert(1)"),
            marker(0.0, 0.0, "data:text/html,x"),
        ];
        let good = [
            marker(90.0, 180.0, "/a"),
            marker(-90.0, -180.0, "https://portal.example/sites/1"),
            marker(0.0, 0.0, "sites/ag-1?tab=map#top"),
        ];
        let svg = world_map(&bad).into_string();
        assert!(circles(&svg).is_empty(), "{svg}");
        assert!(svg.contains("World map of 0 sites"));
        let found = circles(&world_map(&good).into_string());
        assert_eq!(found.len(), 3);
        // The poles are drawn on the map's edges.
        assert!(found[0].2.abs() < 0.05, "{:?}", found[0]);
        assert!((found[1].2 - height()).abs() < 0.05, "{:?}", found[1]);
    }

    #[test]
    fn the_land_is_one_compact_path_within_budget() {
        let svg = world_map(&[]).into_string();
        eprintln!("world map without markers: {} bytes", svg.len());
        assert!(svg.len() <= 120 * 1024, "{} bytes", svg.len());
        let d = land().unwrap();
        assert!(d.starts_with('m') && d.ends_with('z'));
        assert!(
            d.chars().all(|c| c.is_ascii_digit() || " -mz".contains(c)),
            "relative commands and integers only"
        );
        // Every subpath stays within the map: no stripe across it from an antimeridian crossing.
        let mut start = (0i64, 0i64);
        for sub in d.split('z').filter(|s| !s.is_empty()) {
            let nums: Vec<i64> = sub[1..]
                .replace('-', " -")
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect();
            start = (start.0 + nums[0], start.1 + nums[1]);
            let mut pos = start;
            for step in nums[2..].chunks(2) {
                assert!(step[0].abs() < (WIDTH / 4.0) as i64, "a step of {step:?}");
                pos = (pos.0 + step[0], pos.1 + step[1]);
                assert!((-1..=WIDTH as i64 + 1).contains(&pos.0), "{pos:?}");
            }
        }
    }
}
