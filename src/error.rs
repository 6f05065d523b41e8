//! The crate's error type.

use std::fmt;

use crate::wire::NameError;

/// Everything that can go wrong when creating a [`Server`](crate::Server),
/// [`Client`](crate::Client) or [`Subscriber`](crate::Subscriber).
///
/// Each message names the URL, name or value at fault. Where the cause is
/// another error (NNG's, or a [`NameError`] or [`UrlListError`] to match
/// on), the message leaves it out and
/// [`source`](std::error::Error::source) returns it, as the Rust API
/// guidelines ask: print the whole chain with [`Error::report`]. Errors after creation
/// (a peer misbehaving, a connection dropping) are not returned: they are
/// logged through the `log` crate and the background threads carry on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A URL could not be parsed, or names a transport NNG does not support.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// NNG's error.
        source: nng::Error,
    },
    /// A list of URLs (see [`Urls`](crate::Urls)) is empty or names a URL
    /// twice.
    InvalidUrlList {
        /// The URLs as given.
        urls: Vec<String>,
        /// What is wrong with the list.
        reason: UrlListError,
    },
    /// Another socket is already listening on this address.
    AddressInUse {
        /// The URL as given.
        url: String,
    },
    /// Listening on a URL failed for another reason (permissions, a missing
    /// directory for `ipc://`, ...).
    Listen {
        /// The URL as given.
        url: String,
        /// NNG's error.
        source: nng::Error,
    },
    /// Starting to dial a URL failed.
    Dial {
        /// The URL as given.
        url: String,
        /// NNG's error.
        source: nng::Error,
    },
    /// A service name breaks the wire rules (see [`crate::wire::validate_name`]).
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// An [`Options`](crate::Options) value makes no sense.
    InvalidOption {
        /// The option's name, as its setter is called.
        option: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// TLS settings or a `tls+tcp://` URL are unusable: an unreadable or
    /// invalid PEM file, a `tls+tcp://` URL without
    /// [`Options::tls`](crate::Options::tls) (or in a build without the
    /// `tls` feature), or TLS options with another URL.
    Tls {
        /// The file or URL at fault.
        subject: String,
        /// What is wrong.
        reason: String,
    },
    /// [`Client::peers`](crate::Client::peers) was called on a client made
    /// without a subscription.
    NoSubscription,
    /// NNG failed to open or configure a socket or start a thread.
    Setup {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: SetupError,
    },
}

/// What is wrong with a list of URLs ([`Error::InvalidUrlList`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlListError {
    /// No URL was given.
    Empty,
    /// This URL is given more than once.
    Duplicate(String),
}

impl fmt::Display for UrlListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlListError::Empty => f.write_str("no URL given: name at least one server"),
            UrlListError::Duplicate(url) => write!(f, "{url:?} is given twice: each server once"),
        }
    }
}

impl std::error::Error for UrlListError {}

/// The cause of an [`Error::Setup`]: which layer refused. The refusal
/// itself is its [`source`](std::error::Error::source).
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// NNG refused.
    Nng(nng::Error),
    /// The operating system refused to start a thread.
    Io(std::io::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Nng(_) => f.write_str("NNG refused"),
            SetupError::Io(_) => f.write_str("the operating system refused"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Nng(e) => Some(e),
            SetupError::Io(e) => Some(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl { url, .. } => write!(
                f,
                "invalid URL {url:?}: expected tcp://HOST:PORT, ipc:///PATH or inproc://NAME"
            ),
            Error::InvalidUrlList { urls, .. } => write!(f, "invalid list of URLs {urls:?}"),
            Error::AddressInUse { url } => {
                write!(f, "cannot listen on {url:?}: the address is already in use")
            }
            Error::Listen { url, .. } => write!(f, "cannot listen on {url:?}"),
            Error::Dial { url, .. } => write!(f, "cannot dial {url:?}"),
            Error::InvalidName { name, .. } => write!(f, "invalid service name {name:?}"),
            Error::InvalidOption { option, reason } => {
                write!(f, "invalid option {option}: {reason}")
            }
            Error::Tls { subject, reason } => write!(f, "TLS: {subject}: {reason}"),
            Error::NoSubscription => f.write_str(
                "this client has no subscription: create it with Client::with_subscription to receive peer lists",
            ),
            Error::Setup { what, .. } => write!(f, "cannot {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidUrl { source, .. }
            | Error::Listen { source, .. }
            | Error::Dial { source, .. } => Some(source),
            Error::InvalidName { reason, .. } => Some(reason),
            Error::InvalidUrlList { reason, .. } => Some(reason),
            Error::Setup { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// The message followed by each of its sources', joined by `": "`: the
    /// whole story on one line, for a log or a terminal.
    ///
    /// ```
    /// let e = nng_discovery::Client::new("bogus", "x").unwrap_err();
    /// assert_eq!(e.to_string(), r#"invalid URL "bogus": expected tcp://HOST:PORT, ipc:///PATH or inproc://NAME"#);
    /// assert!(e.report().starts_with(&e.to_string()));
    /// assert!(e.report().len() > e.to_string().len());
    /// ```
    #[must_use]
    pub fn report(&self) -> String {
        let mut line = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            line.push_str(": ");
            line.push_str(&cause.to_string());
            source = cause.source();
        }
        line
    }

    /// Wraps an NNG error met while setting up a socket.
    pub(crate) fn nng(what: &'static str) -> impl FnOnce(nng::Error) -> Error {
        move |e| Error::Setup {
            what,
            source: SetupError::Nng(e),
        }
    }

    /// Wraps an OS error met while spawning a thread.
    pub(crate) fn spawn(e: std::io::Error) -> Error {
        Error::Setup {
            what: "start a background thread",
            source: SetupError::Io(e),
        }
    }
}

/// The crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}

    #[test]
    fn error_is_a_thread_safe_std_error() {
        assert_error::<Error>();
    }

    #[test]
    fn messages_name_the_input() {
        let e = Error::InvalidName {
            name: "a|b".into(),
            reason: NameError::ContainsSeparator,
        };
        assert_eq!(e.to_string(), "invalid service name \"a|b\"");
        assert_eq!(
            e.report(),
            "invalid service name \"a|b\": '|' separates names on the wire"
        );
        let e = Error::AddressInUse {
            url: "tcp://127.0.0.1:40000".into(),
        };
        assert!(e.to_string().contains("tcp://127.0.0.1:40000"));
        let e = Error::InvalidUrl {
            url: "bogus".into(),
            source: nng::Error::AddressInvalid,
        };
        assert!(e.to_string().starts_with("invalid URL \"bogus\""));
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn no_message_repeats_its_source() {
        let errors = [
            Error::InvalidUrl {
                url: "bogus".into(),
                source: nng::Error::AddressInvalid,
            },
            Error::Listen {
                url: "ipc:///nowhere/x".into(),
                source: nng::Error::PermissionDenied,
            },
            Error::Dial {
                url: "tcp://h:1".into(),
                source: nng::Error::ConnectionRefused,
            },
            Error::InvalidUrlList {
                urls: vec!["a".into(), "a".into()],
                reason: UrlListError::Duplicate("a".into()),
            },
            Error::Setup {
                what: "open a socket",
                source: SetupError::Nng(nng::Error::OutOfMemory),
            },
        ];
        for e in &errors {
            let source = std::error::Error::source(e).expect("a source");
            assert!(
                !e.to_string().contains(&source.to_string()),
                "{e} repeats {source}"
            );
            assert!(e.report().contains(&source.to_string()), "{}", e.report());
        }
        let setup = &errors[4];
        assert_eq!(
            setup.report(),
            format!(
                "cannot open a socket: NNG refused: {}",
                nng::Error::OutOfMemory
            )
        );
        assert_error::<SetupError>();
        assert_error::<UrlListError>();
    }
}
