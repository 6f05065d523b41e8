//! Everything that talks to NNG: transports and URLs, the receive loops,
//! the TLS configuration, and every workaround for NNG 1.4's bugs
//! ([`workarounds`], which lists them).

pub(crate) mod receiver;
pub(crate) mod tls;
pub(crate) mod transport;
pub(crate) mod workarounds;
