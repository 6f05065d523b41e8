//! Service discovery without a cluster store: one tiny server process, and a
//! library for the services that announce themselves and for those that
//! want the list of who is up.
//!
//! This is a Rust take on the Go library `gopherdiscovery`, on NNG's
//! "scalability protocols", and stays wire-compatible with it:
//!
//! * the [`Server`] owns a SURVEYOR socket and a PUB socket, both listening;
//! * every [`Client`] dials the surveyor and answers each survey with its
//!   service name (usually its own URL). The survey is the heartbeat: who
//!   answers is up;
//! * whenever the set of names changes, the server publishes the whole list,
//!   which [`Subscriber`]s (and clients made with
//!   [`Client::with_subscription`]) receive as a sorted `Vec<String>` on a
//!   `crossbeam_channel::Receiver`.
//! * with [`Options::watch_url`], the server also answers watchers over
//!   REQ/REP (the watch protocol: [`watch_wire`], [`history`],
//!   [`watch_state`]), sending each only what changed since the revision it
//!   holds; [`Subscriber::watch`] and [`Client::with_watch`] follow it and
//!   deliver the same lists as the publish URL.
//!
//! Clients and subscribers take one URL or several ([`Urls`]): with two or
//! three redundant servers, a client answers them all and a subscriber
//! delivers the union of their lists, so losing a server changes nothing
//! the application sees.
//!
//! Beyond the original: joins and leaves are seen within milliseconds from
//! connection events, not at the next poll; a peer is dropped for hanging
//! only after [`Options::miss_threshold`] missed surveys; a subscriber that
//! connects late gets the current list at once; the empty list is `[]`, not
//! `[""]`; names that would corrupt the list are refused.
//!
//! Everything is synchronous: each object owns a few background OS threads
//! (stated on each type) doing blocking NNG calls, and `shutdown` or `Drop`
//! closes its sockets and joins them. There is no async runtime.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use nng_discovery::{Client, Options, Server, Subscriber};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", Options::default())?;
//! let subscriber = Subscriber::new(server.publish_url())?;
//! let client = Client::new(server.survey_url(), "http://10.0.0.1:8080")?;
//!
//! // Lists arrive when they change: wait for the one naming our client
//! // (about a second here: the first list goes out when the first survey
//! // ends; the bound is generous for a busy or slow machine).
//! let changes = subscriber.changes();
//! let timeout = Duration::from_secs(30);
//! while changes.recv_timeout(timeout)? != ["http://10.0.0.1:8080"] {}
//!
//! client.shutdown(); // its connection closes: it leaves at once
//! while !changes.recv_timeout(timeout)?.is_empty() {}
//! # Ok(()) }
//! ```
//!
//! # Logging
//!
//! Through the [`log`](https://docs.rs/log) crate only: joins and leaves at
//! `info`, anomalies (invalid answers, corrupt lists) at `warn`. The library
//! never installs a logger.
//!
//! # Wire format
//!
//! See [`wire`]: surveys are empty, an answer is the name's bytes, a list is
//! the sorted names joined by `|`, and the empty body is the empty list.

#![warn(missing_docs)]

mod cidr;
mod client;
mod error;
mod nng;
mod options;
mod server;
mod subscriber;
mod urls;
mod watch;
pub mod wire;

// The pure protocol modules, public for the fuzz targets, the property
// tests and the load generator; not part of the API (no semver promise).
#[doc(hidden)]
pub use server::admission;
#[doc(hidden)]
pub use server::membership;
#[doc(hidden)]
pub use subscriber::merge;
#[doc(hidden)]
pub use watch::follower;
#[doc(hidden)]
pub use watch::held_requests;
#[doc(hidden)]
pub use watch::history;
#[doc(hidden)]
pub use watch::state as watch_state;
#[doc(hidden)]
pub use watch::wire as watch_wire;

pub use client::builder::ClientBuilder;
pub use client::Client;
pub use error::{Error, Result, SetupError, UrlListError};
pub use nng::tls::Tls;
pub use options::{
    default_max_connections, ClientSettings, DialSettings, FollowSettings, Options, ServerSettings,
};
pub use server::stats::Stats;
pub use server::Server;
pub use subscriber::Subscriber;
pub use urls::Urls;
pub use watch::history::HistoryLimits;
pub use wire::MAX_LIST_BYTES;
