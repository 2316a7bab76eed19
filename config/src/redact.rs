//! Connection strings as they may be logged: a URI's user info and the
//! values of its query parameters (`password`, `authSource`,
//! `tlsCertificateKeyFilePassword`, …) never leave the process.

/// `uri` with its user info and every query value replaced by
/// `<redacted>`; a comma-separated list is redacted part by part.
pub fn redact_uri(uri: &str) -> String {
    uri.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

/// The secret pieces of `uri` (user info and query values), for scrubbing
/// them out of messages that may quote it (a driver's error, say).
pub fn uri_secrets(uri: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    for part in uri.split(',') {
        let (authority, query) = split(part);
        if let Some((user_info, _)) = authority.rsplit_once('@') {
            // `user:password`, or a bare token; the user name alone is not
            // secret.
            let user_info = user_info.rsplit("://").next().unwrap_or(user_info);
            secrets.push(user_info.to_owned());
            if let Some((_, password)) = user_info.split_once(':') {
                secrets.push(password.to_owned());
            }
        }
        if let Some(query) = query {
            for pair in query.split('&') {
                if let Some((_, value)) = pair.split_once('=') {
                    secrets.push(value.to_owned());
                }
            }
        }
    }
    // Longest first, so a whole secret is replaced before its parts.
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `text` with every one of `secrets` replaced by `<redacted>`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), "<redacted>")
    })
}

/// `(scheme://user-info@host/path, query)` of one URI.
fn split(uri: &str) -> (&str, Option<&str>) {
    let (before, query) = match uri.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (uri, None),
    };
    // The authority ends at the first '/' after the scheme's "//".
    let start = before.find("://").map_or(0, |i| i + 3);
    let end = before[start..]
        .find('/')
        .map_or(before.len(), |i| start + i);
    (&before[..end], query)
}

fn redact_one(uri: &str) -> String {
    let (authority, query) = split(uri);
    let rest = &uri[authority.len()..];
    let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
    let start = authority.find("://").map_or(0, |i| i + 3);
    let authority = match authority[start..].rsplit_once('@') {
        Some((_, host)) => format!("{}<redacted>@{host}", &authority[..start]),
        None => authority.to_owned(),
    };
    let query = query.map(|query| {
        query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}=<redacted>"),
                None => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(query) => format!("{authority}{rest}?{query}"),
        None => format!("{authority}{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_query_values_are_redacted() {
        assert_eq!(
            redact_uri("mongodb://app:s3cret@db1:27017,db2:27017/chat?authSource=admin&tls=true"),
            "mongodb://<redacted>@db1:27017,db2:27017/chat?authSource=<redacted>&tls=<redacted>"
        );
        assert_eq!(
            redact_uri("nats://edge:pw@n1:4222,nats://tok@n2:4222,nats://n3:4222"),
            "nats://<redacted>@n1:4222,nats://<redacted>@n2:4222,nats://n3:4222"
        );
        assert_eq!(redact_uri("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_uri("127.0.0.1:4222"), "127.0.0.1:4222");
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let uri = "mongodb://app:s3cret@db:27017/?authSource=vault";
        let secrets = uri_secrets(uri);
        let message = format!("cannot connect to {uri}: bad password s3cret for app");
        let scrubbed = scrub(&message, &secrets);
        assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
        assert!(!scrubbed.contains("vault"), "{scrubbed}");
    }
}
