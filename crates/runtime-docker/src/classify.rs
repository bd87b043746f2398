//! Turns bollard's errors into the domain's, so the heartbeat can tell a dead node (count a
//! miss) from a bad request (do not).

use std::time::Duration;

use bollard::errors::Error as DockerError;
use orchestrator_core::Error;
use orchestrator_core::error::Kind;

pub fn engine_error(node: &str, operation: &'static str, error: DockerError) -> Error {
    match error {
        DockerError::DockerResponseServerError { status_code: 404, message } => {
            Error::not_found(Kind::Container, message)
        }
        DockerError::DockerResponseServerError { status_code, message } => {
            Error::Engine { node: node.to_string(), message: format!("{operation}: HTTP {status_code}: {message}") }
        }
        DockerError::RequestTimeoutError => Error::Timeout { node: node.to_string(), operation, after: Duration::ZERO },
        DockerError::SocketNotFoundError(path) => {
            Error::Unreachable { node: node.to_string(), message: format!("no socket at {path}") }
        }
        e @ (DockerError::HyperLegacyError { .. }
        | DockerError::IOError { .. }
        | DockerError::HttpClientError { .. }) => {
            Error::Unreachable { node: node.to_string(), message: format!("{operation}: {e}") }
        }
        other => Error::Engine { node: node.to_string(), message: format!("{operation}: {other}") },
    }
}

/// Docker answers 404 both for a missing container and for a missing image on create; only the
/// message tells them apart.
pub fn is_missing_image(error: &DockerError) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code: 404, message }
        if message.contains("No such image") || message.contains("not found"))
}

pub fn is_status(error: &DockerError, code: u16) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// Why an engine's pull failed, in words first, then the engine's own: the engine says it with
/// a 404 or a 500, or as an error in the pull's progress stream, always in text.
pub fn pull_failure(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let why = if has(&["unauthorized", "authentication required", "no basic auth credentials", "denied"]) {
        "unauthorized (no or wrong registry credentials)"
    } else if has(&["manifest unknown", "not found", "does not exist"]) {
        "not in the registry (manifest unknown)"
    } else if has(&["no space left"]) {
        "the node's disk is full"
    } else if has(&[
        "connection refused",
        "no such host",
        "i/o timeout",
        "dial tcp",
        "tls handshake",
        "no route to host",
    ]) {
        "registry unreachable"
    } else {
        return message.to_string();
    };
    format!("{why}: {message}")
}

/// What the engine said, without the client's wrapping.
pub fn docker_message(error: &DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::pull_failure;

    #[test]
    fn a_failed_pull_says_why_first_then_the_engines_words() {
        let said = |m: &str| pull_failure(m);
        assert!(
            said("Head \"https://r:5000/v2/app/manifests/1\": no basic auth credentials").starts_with("unauthorized")
        );
        assert!(said("manifest for r:5000/app:9 not found: manifest unknown").starts_with("not in the registry"));
        assert!(
            said("Get \"https://r:5000/v2/\": dial tcp 10.123.0.1:5000: connect: connection refused")
                .starts_with("registry unreachable")
        );
        assert!(said("write /var/lib/docker/tmp/x: no space left on device").starts_with("the node's disk is full"));
        assert_eq!(said("something else"), "something else");
    }
}
