//! Everything that talks to NNG: transports and URLs, the receive loops,
//! and the TLS configuration.

pub(crate) mod receiver;
pub(crate) mod tls;
pub(crate) mod transport;
