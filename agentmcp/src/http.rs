//! HTTP hygiene for remote servers: configured headers only ever go to the server's own
//! origin; redirects are followed only within that origin (at most 10).

use std::time::Duration;

use reqwest::Url;

/// (scheme, lowercase host, port) — the origin of a URL.
pub(crate) fn origin(u: &Url) -> (String, String, u16) {
    (
        u.scheme().to_ascii_lowercase(),
        u.host_str().unwrap_or_default().to_ascii_lowercase(),
        u.port_or_known_default().unwrap_or(0),
    )
}

/// A client whose redirects stay on `base`'s origin.
pub(crate) fn same_origin_client(base: &Url) -> reqwest::Result<reqwest::Client> {
    let o = origin(base);
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::custom(move |att| {
            if att.previous().len() >= 10 {
                att.error("too many redirects")
            } else if origin(att.url()) == o {
                att.follow()
            } else {
                att.error("cross-origin redirect refused")
            }
        }))
        .connect_timeout(Duration::from_secs(10))
        .build()
}
