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
