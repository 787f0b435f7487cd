//! SSDP/UPnP discovery: an M-SEARCH on one interface, the devices that answer, and what their UPnP device
//! descriptions say they are (friendly name, manufacturer, model, device type, UDN).
//!
//! [`search`] sends `M-SEARCH * HTTP/1.1` (`ST: ssdp:all`, `MX: 1`) to 239.255.255.250:1900 from a UDP socket
//! bound to the interface's own IPv4 address, with multicast TTL 2 (the UPnP default) and without loopback,
//! and collects the unicast replies for a window. Binding to the address is what picks the interface: Linux
//! sends multicast from a socket bound to a local address out of the interface that owns it (no multicast
//! route needed; setting `IP_MULTICAST_IF` as well would need `socket2`: std, tokio and nix 0.29 do not offer
//! it, and this crate forbids `unsafe`). Replies are parsed with `httparse` ([`parse_reply`]) and deduplicated by `LOCATION`.
//!
//! The device description at `LOCATION` is fetched (HTTP GET, no proxy, no redirects, short timeout, at most
//! [`MAX_DESCRIPTION_BYTES`]) only when the URL is `http://` and its host is the literal IPv4 address that sent
//! the reply ([`description_url`]): a reply can never make the agent connect anywhere else. It is parsed with
//! `roxmltree` ([`parse_description`]), which refuses DTDs (no entity expansion).
//!
//! Only replies from addresses inside the interface's network count. Everything taken from the network is
//! cleaned ([`super::mdns::clean_text`]) and bounded.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::mdns::clean_text;
use super::sweep::Cidr;

/// The SSDP multicast group and port.
pub const SSDP_GROUP: (Ipv4Addr, u16) = (Ipv4Addr::new(239, 255, 255, 250), 1900);
/// The `MX` of our M-SEARCH: devices answer within this many seconds.
pub const SEARCH_MX: u8 = 1;
/// Multicast TTL of the M-SEARCH (UPnP Device Architecture's default).
pub const SEARCH_TTL: u32 = 2;
/// How many times the M-SEARCH is sent (UDP may lose one), and how far apart.
const SEARCH_COPIES: u32 = 2;
const SEARCH_SPACING: Duration = Duration::from_millis(250);
/// Largest description read; a longer one is not parsed.
pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;
/// Time allowed for one description fetch (connect, request, body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many distinct LOCATIONs are kept per search.
pub const MAX_DEVICES: usize = 256;
/// Longest LOCATION accepted (longer replies are dropped, not cut).
pub const MAX_LOCATION_CHARS: usize = 512;
/// Longest header or description field kept, in characters.
pub const MAX_FIELD_CHARS: usize = 256;
/// Largest reply datagram read.
const MAX_DATAGRAM: usize = 4096;

/// A device that answered the M-SEARCH, with its description when it could be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SsdpDevice {
    /// The address that sent the reply.
    pub ip: Ipv4Addr,
    /// Where its description is (as it said, cleaned).
    pub location: String,
    /// `SERVER` header, e.g. `Linux/5.10 UPnP/1.0 Sony-BRAVIA/1.0`.
    pub server: Option<String>,
    /// `USN` header of the first reply for this location.
    pub usn: Option<String>,
    pub friendly_name: Option<String>,
    pub manufacturer: Option<String>,
    pub model_name: Option<String>,
    pub model_number: Option<String>,
    pub device_type: Option<String>,
    /// The description's `UDN`, e.g. `uuid:4d696e69-444c-164e-9d41-b827eb5c1e0f`.
    pub udn: Option<String>,
}

/// The headers of one M-SEARCH reply that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsdpReply {
    pub location: String,
    pub server: Option<String>,
    pub usn: Option<String>,
    pub st: Option<String>,
}

/// What a UPnP device description says about its root device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    pub friendly_name: Option<String>,
    pub manufacturer: Option<String>,
    pub model_name: Option<String>,
    pub model_number: Option<String>,
    pub device_type: Option<String>,
    pub udn: Option<String>,
}

/// The search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SsdpError {
    #[error("{ip} is not in {network}: give the interface's own IPv4 address and network")]
    NotInNetwork { ip: Ipv4Addr, network: Cidr },
    #[error("bind a UDP socket to {ip}: {source} (is {ip} an address of this machine, on an interface that is up?)")]
    Bind { ip: Ipv4Addr, source: io::Error },
    #[error("set up the SSDP socket on {ip}: {source}")]
    Socket { ip: Ipv4Addr, source: io::Error },
    #[error("send the M-SEARCH from {ip} to 239.255.255.250:1900: {source} (is the interface up and does it allow multicast?)")]
    Send { ip: Ipv4Addr, source: io::Error },
    #[error("receive SSDP replies on {ip}: {source}")]
    Recv { ip: Ipv4Addr, source: io::Error },
    #[error("build the HTTP client for device descriptions: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// A description could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DescriptionError {
    #[error("not well-formed XML: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("no <device> element")]
    NoDevice,
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("larger than {MAX_DESCRIPTION_BYTES} bytes")]
    TooLarge,
    #[error("no answer within {FETCH_TIMEOUT:?}")]
    Timeout,
}

/// The M-SEARCH datagram.
pub fn msearch() -> String {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: {SEARCH_MX}\r\n\
         ST: ssdp:all\r\nUSER-AGENT: Linux UPnP/1.1 outpost-agent/{}\r\n\r\n",
        env!("OUTPOST_AGENT_VERSION")
    )
}

/// Parses an M-SEARCH reply (`HTTP/1.1 200 OK` and headers); `None` for anything else (NOTIFYs, other
/// statuses, garbage, no or an over-long LOCATION). A reply that lacks the final empty line is accepted.
pub fn parse_reply(datagram: &[u8]) -> Option<SsdpReply> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let complete = matches!(response.parse(datagram), Ok(httparse::Status::Complete(_)));
    if !complete {
        // Some devices end the headers with a single CRLF: finish them and try once more.
        let mut finished = datagram.to_vec();
        finished.extend_from_slice(b"\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        return match response.parse(&finished) {
            Ok(httparse::Status::Complete(_)) => reply_of(&response),
            _ => None,
        };
    }
    reply_of(&response)
}

fn reply_of(response: &httparse::Response<'_, '_>) -> Option<SsdpReply> {
    if response.code != Some(200) {
        return None;
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| clean_text(&String::from_utf8_lossy(h.value), usize::MAX))
    };
    let location = header("location")?;
    if location.chars().count() > MAX_LOCATION_CHARS {
        return None;
    }
    let bounded = |v: Option<String>| v.and_then(|v| clean_text(&v, MAX_FIELD_CHARS));
    Some(SsdpReply {
        location,
        server: bounded(header("server")),
        usn: bounded(header("usn")),
        st: bounded(header("st")),
    })
}

/// The URL to fetch a description from, only when `location` is `http://` with the IPv4 address `sender` as
/// its host (any port, no user info). Host names, other addresses, IPv6 and other schemes give `None`: the
/// agent never connects anywhere but to the device that answered. (The host is compared after URL parsing,
/// so `http://10.77.11/` is 10.77.0.11, where a client would really connect.)
pub fn description_url(location: &str, sender: Ipv4Addr) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(location).ok()?;
    let host: Ipv4Addr = url.host_str()?.parse().ok()?;
    (url.scheme() == "http"
        && host == sender
        && url.username().is_empty()
        && url.password().is_none())
    .then_some(url)
}

/// Reads a UPnP device description: the fields of its root device (`<root><device>`, or the first `<device>`
/// anywhere when the document is not shaped like that). Elements are matched by local name, so a missing or
/// wrong namespace does not matter; missing or empty fields are `None`.
pub fn parse_description(xml: &str) -> Result<Description, DescriptionError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    let is =
        |n: &roxmltree::Node<'_, '_>, name: &str| n.is_element() && n.tag_name().name() == name;
    let device = root
        .children()
        .find(|n| is(n, "device"))
        .or_else(|| root.descendants().find(|n| is(n, "device")))
        .ok_or(DescriptionError::NoDevice)?;
    let field = |name: &str| {
        device.children().find(|n| is(n, name)).and_then(|n| {
            let text: String = n
                .children()
                .filter(|c| c.is_text())
                .filter_map(|c| c.text())
                .collect();
            clean_text(&text, MAX_FIELD_CHARS)
        })
    };
    Ok(Description {
        friendly_name: field("friendlyName"),
        manufacturer: field("manufacturer"),
        model_name: field("modelName"),
        model_number: field("modelNumber"),
        device_type: field("deviceType"),
        udn: field("UDN"),
    })
}

/// Fetches and parses one description (the URL already checked by [`description_url`]).
async fn fetch_description(
    client: &reqwest::Client,
    url: reqwest::Url,
) -> Result<Description, DescriptionError> {
    let fetch = async {
        let mut response = client.get(url).send().await?;
        if !response.status().is_success() {
            return Err(DescriptionError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DESCRIPTION_BYTES as u64)
        {
            return Err(DescriptionError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_DESCRIPTION_BYTES {
                return Err(DescriptionError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse_description(&String::from_utf8_lossy(&body))
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| DescriptionError::Timeout)?
}

/// Sends the M-SEARCH from `local_ip` (the interface's own address, which picks the interface), collects
/// replies from addresses inside `network` for `window`, and fetches the descriptions of those whose
/// LOCATION is on the replying address. Returns one entry per LOCATION, sorted by address and LOCATION.
/// Takes at most `window` + [`FETCH_TIMEOUT`].
pub async fn search(
    local_ip: Ipv4Addr,
    network: Cidr,
    window: Duration,
) -> Result<Vec<SsdpDevice>, SsdpError> {
    if Cidr::containing(local_ip, network.prefix) != network {
        return Err(SsdpError::NotInNetwork {
            ip: local_ip,
            network,
        });
    }
    let socket = UdpSocket::bind((local_ip, 0))
        .await
        .map_err(|source| SsdpError::Bind {
            ip: local_ip,
            source,
        })?;
    let setup = |source| SsdpError::Socket {
        ip: local_ip,
        source,
    };
    socket.set_multicast_ttl_v4(SEARCH_TTL).map_err(setup)?;
    socket.set_multicast_loop_v4(false).map_err(setup)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(local_ip))
        .connect_timeout(FETCH_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .pool_max_idle_per_host(0)
        .http1_only()
        .build()
        .map_err(SsdpError::HttpClient)?;

    let request = msearch();
    let group = SocketAddr::from(SSDP_GROUP);
    let start = tokio::time::Instant::now();
    let deadline = start + window;
    let mut sent = 0;
    let mut next_send = start;
    let mut devices: Vec<SsdpDevice> = Vec::new();
    let mut by_location: HashMap<String, usize> = HashMap::new();
    let mut fetches: JoinSet<(usize, Result<Description, DescriptionError>)> = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let wake = if sent < SEARCH_COPIES {
            next_send.min(deadline)
        } else {
            deadline
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                socket
                    .send_to(request.as_bytes(), group)
                    .await
                    .map_err(|source| SsdpError::Send { ip: local_ip, source })?;
                sent += 1;
                next_send += SEARCH_SPACING;
            }
            received = socket.recv_from(&mut buf) => {
                let (len, from) = match received {
                    Ok(r) => r,
                    // ICMP errors of earlier datagrams and the like: not fatal for a search.
                    Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted) => continue,
                    Err(source) => return Err(SsdpError::Recv { ip: local_ip, source }),
                };
                let SocketAddr::V4(from) = from else { continue };
                let ip = *from.ip();
                if Cidr::containing(ip, network.prefix) != network || ip == local_ip {
                    tracing::debug!(%ip, "SSDP: ignoring a reply from outside {network}");
                    continue;
                }
                let Some(reply) = parse_reply(&buf[..len]) else {
                    tracing::debug!(%ip, "SSDP: ignoring a datagram that is not an M-SEARCH reply");
                    continue;
                };
                if by_location.contains_key(&reply.location) || devices.len() >= MAX_DEVICES {
                    continue;
                }
                let index = devices.len();
                by_location.insert(reply.location.clone(), index);
                match description_url(&reply.location, ip) {
                    Some(url) => {
                        let client = client.clone();
                        fetches.spawn(async move { (index, fetch_description(&client, url).await) });
                    }
                    None => tracing::info!(
                        %ip,
                        location = %reply.location,
                        "SSDP: not fetching a description that is not on the replying address"
                    ),
                }
                devices.push(SsdpDevice {
                    ip,
                    location: reply.location,
                    server: reply.server,
                    usn: reply.usn,
                    friendly_name: None,
                    manufacturer: None,
                    model_name: None,
                    model_number: None,
                    device_type: None,
                    udn: None,
                });
            }
        }
    }

    // Every fetch has its own timeout; this bound is only a safety net.
    let all_fetched = async {
        while let Some(joined) = fetches.join_next().await {
            let Ok((index, result)) = joined else {
                continue;
            };
            let Some(device) = devices.get_mut(index) else {
                continue;
            };
            match result {
                Ok(d) => {
                    device.friendly_name = d.friendly_name;
                    device.manufacturer = d.manufacturer;
                    device.model_name = d.model_name;
                    device.model_number = d.model_number;
                    device.device_type = d.device_type;
                    device.udn = d.udn;
                }
                Err(e) => tracing::debug!(
                    ip = %device.ip,
                    location = %device.location,
                    "SSDP: device description unusable: {e}"
                ),
            }
        }
    };
    if tokio::time::timeout(FETCH_TIMEOUT + Duration::from_millis(500), all_fetched)
        .await
        .is_err()
    {
        tracing::debug!("SSDP: some descriptions did not arrive in time");
    }
    devices.sort_by(|a, b| (a.ip, &a.location).cmp(&(b.ip, &b.location)));
    tracing::debug!(%local_ip, devices = devices.len(), "SSDP search done");
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_msearch_asks_for_everything_within_one_second() {
        let m = msearch();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(m.as_bytes()).unwrap().is_complete());
        assert_eq!((req.method, req.path), (Some("M-SEARCH"), Some("*")));
        let h = |n: &str| {
            req.headers
                .iter()
                .find(|h| h.name == n)
                .map(|h| std::str::from_utf8(h.value).unwrap())
        };
        assert_eq!(h("HOST"), Some("239.255.255.250:1900"));
        assert_eq!(h("MAN"), Some("\"ssdp:discover\""));
        assert_eq!(h("MX"), Some("1"));
        assert_eq!(h("ST"), Some("ssdp:all"));
    }

    #[test]
    fn replies_are_parsed_with_any_header_case() {
        let raw = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\n\
            location: http://10.77.0.12:49152/description.xml\r\nServer: Linux/5.10 UPnP/1.0 Sony-BRAVIA/1.0\r\n\
            ST: upnp:rootdevice\r\nUSN: uuid:abc::upnp:rootdevice\r\n\r\n";
        assert_eq!(
            parse_reply(raw),
            Some(SsdpReply {
                location: "http://10.77.0.12:49152/description.xml".into(),
                server: Some("Linux/5.10 UPnP/1.0 Sony-BRAVIA/1.0".into()),
                usn: Some("uuid:abc::upnp:rootdevice".into()),
                st: Some("upnp:rootdevice".into()),
            })
        );
        // Without the final empty line, as some devices send it.
        let short = b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1/d.xml\r\n";
        assert_eq!(
            parse_reply(short).map(|r| r.location),
            Some("http://10.0.0.1/d.xml".into())
        );
    }

    #[test]
    fn other_datagrams_are_not_replies() {
        // A NOTIFY (a request), another status, no LOCATION, garbage, an empty datagram.
        let notify = b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nLOCATION: http://10.0.0.1/\r\nNTS: ssdp:alive\r\n\r\n";
        assert_eq!(parse_reply(notify), None);
        assert_eq!(
            parse_reply(b"HTTP/1.1 404 Not Found\r\nLOCATION: http://10.0.0.1/\r\n\r\n"),
            None
        );
        assert_eq!(
            parse_reply(b"HTTP/1.1 200 OK\r\nST: ssdp:all\r\n\r\n"),
            None
        );
        assert_eq!(parse_reply(b"\x00\x01\x02garbage\xff"), None);
        assert_eq!(parse_reply(b""), None);
        let long = format!(
            "HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1/{}\r\n\r\n",
            "a".repeat(MAX_LOCATION_CHARS)
        );
        assert_eq!(parse_reply(long.as_bytes()), None);
    }

    #[test]
    fn header_values_are_cleaned_and_bounded() {
        let raw = format!(
            "HTTP/1.1 200 OK\r\nLOCATION:   http://10.0.0.1/d.xml  \r\nSERVER: {}\r\n\r\n",
            "s".repeat(1000)
        );
        let r = parse_reply(raw.as_bytes()).unwrap();
        assert_eq!(r.location, "http://10.0.0.1/d.xml");
        assert_eq!(r.server.map(|s| s.len()), Some(MAX_FIELD_CHARS));
    }

    #[test]
    fn descriptions_are_fetched_only_from_the_replying_address() {
        let sender = ip("10.77.0.12");
        let ok = description_url("http://10.77.0.12:49152/description.xml", sender).unwrap();
        assert_eq!(ok.as_str(), "http://10.77.0.12:49152/description.xml");
        assert!(description_url("http://10.77.0.12/", sender).is_some());
        // The same address written another way is still that address.
        assert!(description_url("http://10.77.12/", sender).is_some());
        for elsewhere in [
            "http://10.77.0.13:49152/description.xml",
            "http://192.0.2.1/description.xml",
            "http://router.local/description.xml",
            "http://[::1]/description.xml",
            "https://10.77.0.12/description.xml",
            "ftp://10.77.0.12/description.xml",
            "http://user:pw@10.77.0.12/description.xml",
            "http://10.77.0.12.nip.io/description.xml",
            "/description.xml",
            "not a url",
        ] {
            assert_eq!(description_url(elsewhere, sender), None, "{elsewhere}");
        }
    }

    const SONY: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" xmlns:dlna="urn:schemas-dlna-org:device-1-0"
      xmlns:av="urn:schemas-sony-com:av">
  <specVersion><major>1</major><minor>0</minor></specVersion>
  <device>
    <deviceType>urn:schemas-upnp-org:device:MediaRenderer:1</deviceType>
    <friendlyName>Living Room TV</friendlyName>
    <manufacturer>Sony Corporation</manufacturer>
    <manufacturerURL>http://www.sony.net/</manufacturerURL>
    <modelName>BRAVIA XR-55A80J</modelName>
    <modelNumber> XR-55A80J </modelNumber>
    <UDN>uuid:4d696e69-444c-164e-9d41-b827eb5c1e0f</UDN>
    <dlna:X_DLNADOC>DMR-1.50</dlna:X_DLNADOC>
    <av:X_ScreenSize>55</av:X_ScreenSize>
    <iconList><icon><mimetype>image/png</mimetype><url>/icon.png</url></icon></iconList>
    <deviceList>
      <device>
        <deviceType>urn:schemas-upnp-org:device:Embedded:1</deviceType>
        <friendlyName>Not this one</friendlyName>
      </device>
    </deviceList>
  </device>
</root>"#;

    #[test]
    fn a_description_with_namespaces_gives_its_root_device() {
        assert_eq!(
            parse_description(SONY).unwrap(),
            Description {
                friendly_name: Some("Living Room TV".into()),
                manufacturer: Some("Sony Corporation".into()),
                model_name: Some("BRAVIA XR-55A80J".into()),
                model_number: Some("XR-55A80J".into()),
                device_type: Some("urn:schemas-upnp-org:device:MediaRenderer:1".into()),
                udn: Some("uuid:4d696e69-444c-164e-9d41-b827eb5c1e0f".into()),
            }
        );
    }

    #[test]
    fn missing_and_empty_fields_are_none_and_text_is_cleaned() {
        let xml = "<root><device><friendlyName>\n  Printer &amp;\tScanner\n</friendlyName>\
                   <manufacturer>  </manufacturer><modelName><![CDATA[M404]]></modelName></device></root>";
        assert_eq!(
            parse_description(xml).unwrap(),
            Description {
                friendly_name: Some("Printer & Scanner".into()),
                manufacturer: None,
                model_name: Some("M404".into()),
                ..Description::default()
            }
        );
        // No namespace on an unusual root: the first <device> anywhere.
        let odd = "<x:envelope xmlns:x='urn:x'><x:device><x:modelName>Y</x:modelName></x:device></x:envelope>";
        assert_eq!(
            parse_description(odd).unwrap().model_name.as_deref(),
            Some("Y")
        );
        let long = format!(
            "<root><device><friendlyName>{}</friendlyName></device></root>",
            "n".repeat(5000)
        );
        assert_eq!(
            parse_description(&long)
                .unwrap()
                .friendly_name
                .map(|s| s.len()),
            Some(MAX_FIELD_CHARS)
        );
    }

    #[test]
    fn garbage_and_dtds_are_errors() {
        assert!(matches!(
            parse_description("<root><device>"),
            Err(DescriptionError::Xml(_))
        ));
        assert!(matches!(
            parse_description("not xml at all"),
            Err(DescriptionError::Xml(_))
        ));
        assert!(matches!(
            parse_description(""),
            Err(DescriptionError::Xml(_))
        ));
        assert!(matches!(
            parse_description("<root><specVersion/></root>"),
            Err(DescriptionError::NoDevice)
        ));
        // Entity expansion ("billion laughs") never happens: DTDs are refused.
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>
            <root><device><friendlyName>&lol2;</friendlyName></device></root>"#;
        assert!(matches!(
            parse_description(bomb),
            Err(DescriptionError::Xml(_))
        ));
    }

    /// A one-connection HTTP server on loopback that answers `response`; returns its URL and a handle that
    /// yields how many connections it accepted before `wait` ended.
    async fn serve_once(
        response: Vec<u8>,
        wait: Duration,
    ) -> (reqwest::Url, tokio::task::JoinHandle<usize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/description.xml", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let mut accepted = 0;
            let end = tokio::time::Instant::now() + wait;
            while let Ok(Ok((mut conn, _))) = tokio::time::timeout_at(end, listener.accept()).await
            {
                accepted += 1;
                let mut buf = [0u8; 2048];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(&response).await;
                let _ = conn.shutdown().await;
            }
            accepted
        });
        (url.parse().unwrap(), handle)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_description_is_fetched_and_parsed() {
        let body = SONY.as_bytes();
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(body);
        let (url, server) = serve_once(response, Duration::from_millis(500)).await;
        let d = fetch_description(&client(), url).await.unwrap();
        assert_eq!(d.friendly_name.as_deref(), Some("Living Room TV"));
        assert_eq!(server.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        // The device answers with a redirect to another server: that server is never contacted.
        let (elsewhere, other) = serve_once(Vec::new(), Duration::from_millis(500)).await;
        let response = format!(
            "HTTP/1.1 302 Found\r\nLocation: {elsewhere}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (url, device) = serve_once(response.into_bytes(), Duration::from_millis(500)).await;
        let err = fetch_description(&client(), url).await.unwrap_err();
        assert!(matches!(err, DescriptionError::Status(302)), "{err}");
        assert_eq!(device.await.unwrap(), 1);
        assert_eq!(other.await.unwrap(), 0, "the redirect was followed");
    }

    #[tokio::test]
    async fn oversized_descriptions_are_refused() {
        // Announced as too large, and too large without a length (chunked until the bound is crossed).
        let announced = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            MAX_DESCRIPTION_BYTES + 1
        );
        let (url, _s) = serve_once(announced.into_bytes(), Duration::from_millis(500)).await;
        let err = fetch_description(&client(), url).await.unwrap_err();
        assert!(matches!(err, DescriptionError::TooLarge), "{err}");

        let mut streamed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n<root><device>".to_vec();
        streamed.extend(std::iter::repeat_n(b'x', MAX_DESCRIPTION_BYTES + 10));
        let (url, _s) = serve_once(streamed, Duration::from_millis(500)).await;
        let err = fetch_description(&client(), url).await.unwrap_err();
        assert!(matches!(err, DescriptionError::TooLarge), "{err}");
    }

    #[tokio::test]
    async fn a_local_address_outside_the_network_is_refused() {
        let err = search(
            ip("127.0.0.1"),
            Cidr::containing(ip("10.77.0.0"), 24),
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SsdpError::NotInNetwork { .. }), "{err}");
        assert!(
            err.to_string().contains("127.0.0.1 is not in 10.77.0.0/24"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_address_that_is_not_ours_cannot_be_bound() {
        // TEST-NET-3: no interface here has it.
        let err = search(
            ip("203.0.113.77"),
            Cidr::containing(ip("203.0.113.0"), 24),
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SsdpError::Bind { .. }), "{err}");
    }
}
