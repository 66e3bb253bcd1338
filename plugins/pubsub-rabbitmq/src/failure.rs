//! What a failed call tells the host: the WIT error kinds, with a message that says what
//! happened and, where the user can act, what to change.

use crate::config::Endpoint;
use crate::conn::AmqpError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The metadata or the request is wrong (including a refused login or permission).
    InvalidArgument(String),
    /// The broker cannot be reached or refused for now; retrying later may succeed.
    Unavailable(String),
    Internal(String),
}

/// AMQP reply codes (spec 0-9-1, section 1.9 "constants").
const CONNECTION_FORCED: u16 = 320;
const ACCESS_REFUSED: u16 = 403;
const NOT_FOUND: u16 = 404;
const RESOURCE_LOCKED: u16 = 405;
const PRECONDITION_FAILED: u16 = 406;
const NOT_ALLOWED: u16 = 530;
const RESOURCE_ERROR: u16 = 506;
const INTERNAL_ERROR: u16 = 541;

impl Failure {
    pub fn from_amqp(e: &AmqpError, endpoint: &Endpoint) -> Self {
        Self::from_amqp_at(e, &endpoint.addr.to_string()).with_login_hint(
            e,
            &endpoint.username,
            &endpoint.vhost,
        )
    }

    pub fn from_amqp_at(e: &AmqpError, addr: &str) -> Self {
        let what = describe(e);
        match e {
            AmqpError::Dial(_) => {
                Failure::Unavailable(format!("cannot connect to RabbitMQ at {addr}: {what}"))
            }
            AmqpError::Io(_) | AmqpError::Timeout(_) => {
                Failure::Unavailable(format!("RabbitMQ at {addr}: {what}"))
            }
            AmqpError::LoginDropped => Failure::InvalidArgument(format!(
                "RabbitMQ at {addr} closed the connection after the login: {what}"
            )),
            AmqpError::ConnectionClosed { code, .. } | AmqpError::ChannelClosed { code, .. } => {
                match *code {
                    ACCESS_REFUSED | NOT_ALLOWED | PRECONDITION_FAILED | NOT_FOUND => {
                        Failure::InvalidArgument(format!("RabbitMQ at {addr} refused: {what}"))
                    }
                    CONNECTION_FORCED | RESOURCE_ERROR | RESOURCE_LOCKED | INTERNAL_ERROR => {
                        Failure::Unavailable(format!("RabbitMQ at {addr}: {what}"))
                    }
                    _ => Failure::Internal(format!("RabbitMQ at {addr}: {what}")),
                }
            }
            AmqpError::Protocol(_) => Failure::Internal(format!("RabbitMQ at {addr}: {what}")),
            AmqpError::Invalid(_) => Failure::InvalidArgument(what),
        }
    }

    /// Adds what to check when the broker refused the login or the vhost.
    fn with_login_hint(self, e: &AmqpError, user: &str, vhost: &str) -> Self {
        let hint = match e {
            AmqpError::LoginDropped
            | AmqpError::ConnectionClosed {
                code: ACCESS_REFUSED,
                ..
            } => format!(
                " (check the user name ({user}) and password in connectionString, or username / password)"
            ),
            AmqpError::ConnectionClosed {
                code: NOT_ALLOWED, ..
            } => format!(
                " (check that the vhost {vhost:?} exists and that user {user} may use it)"
            ),
            _ => return self,
        };
        match self {
            Failure::InvalidArgument(m) => Failure::InvalidArgument(m + &hint),
            other => other,
        }
    }
}

/// One line about an AMQP error, for messages and logs.
pub fn describe(e: &AmqpError) -> String {
    match e {
        AmqpError::Dial(e) => e.to_string(),
        AmqpError::Io(e) => format!("connection lost: {e}"),
        AmqpError::Timeout(what) => format!(
            "no answer to {what} within {:?}",
            crate::conn::REPLY_TIMEOUT
        ),
        AmqpError::ConnectionClosed { code, text } => {
            format!("the broker closed the connection ({code}): {text}")
        }
        AmqpError::LoginDropped => "the login was refused".into(),
        AmqpError::ChannelClosed { code, text } => format!("{text} ({code})"),
        AmqpError::Protocol(m) => format!("AMQP protocol error: {m}"),
        AmqpError::Invalid(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        crate::config::parse_uri("amqp://app:pw@127.0.0.1:5672/shop").unwrap()
    }

    #[test]
    fn login_and_vhost_refusals_say_what_to_check() {
        let refused = AmqpError::ConnectionClosed {
            code: 403,
            text: "ACCESS_REFUSED - Login was refused".into(),
        };
        match Failure::from_amqp(&refused, &endpoint()) {
            Failure::InvalidArgument(m) => {
                assert!(
                    m.contains("ACCESS_REFUSED") && m.contains("user name (app)"),
                    "{m}"
                );
                assert!(!m.contains("pw"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let vhost = AmqpError::ConnectionClosed {
            code: 530,
            text: "NOT_ALLOWED - vhost shop not found".into(),
        };
        match Failure::from_amqp(&vhost, &endpoint()) {
            Failure::InvalidArgument(m) => assert!(m.contains("\"shop\" exists"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outages_are_unavailable() {
        let refused = AmqpError::Dial(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            Failure::from_amqp(&refused, &endpoint()),
            Failure::Unavailable(m) if m.contains("127.0.0.1:5672")
        ));
        let forced = AmqpError::ConnectionClosed {
            code: 320,
            text: "CONNECTION_FORCED - broker forced connection closure".into(),
        };
        assert!(matches!(
            Failure::from_amqp(&forced, &endpoint()),
            Failure::Unavailable(_)
        ));
        let mismatch = AmqpError::ChannelClosed {
            code: 406,
            text: "PRECONDITION_FAILED - inequivalent arg 'durable'".into(),
        };
        assert!(matches!(
            Failure::from_amqp_at(&mismatch, "x"),
            Failure::InvalidArgument(_)
        ));
    }
}
