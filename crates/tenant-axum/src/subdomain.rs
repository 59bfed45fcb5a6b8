//! [`SubdomainOrg`]: the org named by the request's subdomain (`acme.example.com`).

use std::sync::Arc;

use axum::http::header::HOST;
use axum::http::request::Parts;
use tenant_core::OrgId;

use crate::resolve::{OrgRejection, OrgResolver};

/// The org whose slug is the one label before `base` in the `Host` header
/// (`acme.example.com` with base `example.com`: slug `acme`), looked up by `lookup`.
///
/// Exactly one label of lowercase letters, digits and `-` is accepted (`a.b.example.com`,
/// `example.com.evil.net` and an empty label are malformed); a slug `lookup` does not know
/// gets the same 403 as one the caller may not use, so that no one can probe which exist.
/// The `Host` header is the client's: pair this with authentication that checks the caller
/// belongs to the org (your own resolver wrapping this one).
#[derive(Clone)]
pub struct SubdomainOrg {
    base: String,
    lookup: Lookup,
}

/// The service's map from slug to org.
type Lookup = Arc<dyn Fn(&str) -> Option<OrgId> + Send + Sync>;

impl std::fmt::Debug for SubdomainOrg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubdomainOrg")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl SubdomainOrg {
    /// Slugs under `base` (`"example.com"`), resolved by `lookup` (a map the service keeps).
    pub fn new(
        base: impl Into<String>,
        lookup: impl Fn(&str) -> Option<OrgId> + Send + Sync + 'static,
    ) -> Self {
        Self {
            base: base.into().to_ascii_lowercase(),
            lookup: Arc::new(lookup),
        }
    }

    /// The slug of `host` (without its port), or why there is none.
    fn slug<'h>(&self, host: &'h str) -> Result<&'h str, OrgRejection> {
        let host = host.split_once(':').map_or(host, |(h, _)| h);
        if host.eq_ignore_ascii_case(&self.base) {
            return Err(OrgRejection::Missing("the request is for the bare domain"));
        }
        let slug = host
            .len()
            .checked_sub(self.base.len() + 1)
            .filter(|&at| {
                host.as_bytes().get(at) == Some(&b'.')
                    && host[at + 1..].eq_ignore_ascii_case(&self.base)
            })
            .map(|at| &host[..at])
            .ok_or(OrgRejection::Malformed(
                "the host is not under the service's domain",
            ))?;
        let well_formed = !slug.is_empty()
            && slug.len() <= 63
            && slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed {
            return Err(OrgRejection::Malformed(
                "the subdomain is not one label of lowercase letters, digits and -",
            ));
        }
        Ok(slug)
    }
}

impl OrgResolver for SubdomainOrg {
    async fn resolve(&self, parts: &Parts) -> Result<OrgId, OrgRejection> {
        let host = host(parts)?;
        let slug = self.slug(host)?;
        (self.lookup)(slug).ok_or(OrgRejection::Forbidden(
            "no org of that name is open to you",
        ))
    }
}

/// The one host the request names: its `Host` header, which must appear once and be text,
/// and agree with the target's authority when the target has one (an absolute-form HTTP/1.1
/// target, HTTP/2's `:authority`); the authority alone when there is no `Host`. Anything
/// ambiguous is malformed: a proxy in front may have routed or authenticated by the other.
fn host(parts: &Parts) -> Result<&str, OrgRejection> {
    let mut headers = parts.headers.get_all(HOST).iter();
    let header = headers.next();
    if headers.next().is_some() {
        return Err(OrgRejection::Malformed(
            "the request has more than one Host header",
        ));
    }
    let authority = parts.uri.authority().map(|a| a.as_str());
    match (header, authority) {
        (Some(h), authority) => {
            let h = h
                .to_str()
                .map_err(|_| OrgRejection::Malformed("the Host header is not text"))?;
            if authority.is_some_and(|a| !a.eq_ignore_ascii_case(h)) {
                return Err(OrgRejection::Malformed(
                    "the Host header and the request target name different hosts",
                ));
            }
            Ok(h)
        }
        (None, Some(a)) => Ok(a),
        (None, None) => Err(OrgRejection::Malformed("the request has no host")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_well_formed_label_under_the_base_is_a_slug() {
        let r = SubdomainOrg::new("example.com", |_| None);
        assert_eq!(r.slug("acme.example.com"), Ok("acme"));
        assert_eq!(r.slug("acme.example.com:8443"), Ok("acme"));
        assert_eq!(r.slug("acme.EXAMPLE.com"), Ok("acme"));
        for (host, class) in [
            ("example.com", "org_missing"),
            ("a.b.example.com", "org_malformed"),
            ("acme.example.com.evil.net", "org_malformed"),
            ("acmeexample.com", "org_malformed"),
            (".example.com", "org_malformed"),
            ("ACME.example.com", "org_malformed"),
            ("ac%me.example.com", "org_malformed"),
            ("evil.net", "org_malformed"),
        ] {
            assert_eq!(r.slug(host).map_err(|e| e.class()), Err(class), "{host}");
        }
    }
}
