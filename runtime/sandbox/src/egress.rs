//! Egress: which hosts a step's outbound posts (WIT `http-out`) may reach.
//! Deny by default: a post goes only to a host that the step's own config
//! (`allowed_hosts`, the journey author's grant) or the deployment
//! (`[http_out] allowed_hosts` in channels.toml) names exactly. The step host
//! applies the check while the step runs, so a refused post fails the step
//! with the host's name instead of being queued.

/// Whether `url` is an http(s) URL whose host is in `allowed` (exactly, case
/// aside). The error names the host, so a journey author knows what to grant.
pub fn check_host(url: &str, allowed: &[String]) -> Result<(), String> {
    let host = host_of(url)?;
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
        Ok(())
    } else {
        Err(format!(
            "host `{host}` is not granted: add it to the step's `allowed_hosts` or to \
             `[http_out] allowed_hosts` in channels.toml"
        ))
    }
}

/// The host of an `http://` or `https://` URL, lower-cased, without port.
pub fn host_of(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("url `{url}` must start with https:// or http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("url must not carry credentials".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(format!("url `{url}` has no host"));
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_granted_hosts_pass_and_the_refusal_names_the_host() {
        let allowed = vec!["crm.example.com".to_string()];
        assert!(check_host("https://CRM.example.com:8443/tasks?x=1", &allowed).is_ok());
        let err = check_host("https://evil.example.net/x", &allowed).unwrap_err();
        assert!(err.contains("evil.example.net"), "{err}");
        assert!(check_host("https://crm.example.com@evil.net/", &allowed).is_err());
        assert!(check_host("ftp://crm.example.com/", &allowed).is_err());
    }
}
