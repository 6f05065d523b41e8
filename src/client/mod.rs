//! Registering a service with a discovery server.

pub(crate) mod builder;

use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use nng::{Protocol, RawSocket, Socket};
use parking_lot::Mutex;

use builder::ClientBuilder;

use crate::error::{Error, Result};
use crate::nng::receiver::{self, Next, Receiver as NngReceiver, Stopper, WakeSignal};
use crate::nng::transport;
use crate::options::{DialSettings, Options};
use crate::subscriber::Subscriber;
use crate::urls::{self, Urls};
use crate::wire;

/// The largest survey a client accepts. Surveys are empty; anything larger
/// than this closes the connection (which is then dialed again).
const MAX_SURVEY_BYTES: usize = 64 << 10;

/// What a client follows besides answering surveys.
pub(crate) enum Follow {
    Nothing,
    Publish(Vec<String>),
    Watch(Vec<String>),
}

/// A service that announces itself to a discovery server, or to several
/// redundant ones.
///
/// The client dials the server's survey URL in the background (the server
/// may start later, or restart). As soon as a connection is up it
/// announces its service name on it, unasked (an answer with survey id
/// [`ANNOUNCE_ID`](crate::wire::ANNOUNCE_ID); see `docs/PROTOCOL.md` ("Join announcement")),
/// and a server of this crate lists it then, without surveying anyone;
/// servers that do not know announcements (the Go original, older
/// versions, nngcat) drop it and survey the connection as they always did.
/// After that the client answers every survey with its name: the survey is
/// the heartbeat, and answering it is what keeps the name listed. Every
/// new connection announces once: after a redial, a server restart, or
/// [`set_available(true)`](Client::set_available). When the client shuts
/// down or is dropped it stops answering at once and its connection
/// closes, which the server sees within milliseconds.
///
/// Given several survey URLs (any [`Urls`] form), it answers every server:
/// one socket with a dialer per server, each dialing and redialing its
/// server on its own, and each answer routed back to the server that asked.
/// A server that is down delays nothing for the others.
///
/// Made with [`with_subscription`](Client::with_subscription), it also
/// receives the list of live services, like a [`Subscriber`] (the union of
/// the servers' lists when given several publish URLs); made with
/// [`with_watch`](Client::with_watch), it receives the same lists through
/// the servers' watch URLs, like [`Subscriber::watch`].
///
/// Threads: one (it answers surveys and sends the announcements), two with
/// a subscription (either kind), whatever the number of servers, plus
/// NNG's shared pool.
///
/// # Availability and draining
///
/// [`set_available(false)`](Client::set_available) takes the name out of
/// every server's list within milliseconds, while the client keeps running
/// (its threads, and its subscription, which goes on delivering lists);
/// [`set_available(true)`](Client::set_available) brings it back as fast.
/// It needs nothing from the server: an unavailable client closes its
/// survey connection (a server drops a name at once when the connection
/// that answered for it closes) and an available one dials again and
/// announces itself on the new connection.
///
/// To drain before stopping, so that no peer picks a process that is about
/// to go: `set_available(false)`, wait while in-flight requests finish and
/// peers see the new list (a few milliseconds for the list; your requests'
/// own time for the rest), then drop the client or call
/// [`shutdown`](Client::shutdown).
///
/// ```no_run
/// # fn main() -> Result<(), nng_discovery::Error> {
/// # let serve_requests_until_idle = |_| {};
/// use std::time::Duration;
/// use nng_discovery::Client;
///
/// let client = Client::new("tcp://10.0.0.5:40007", "http://10.0.0.1:8080")?;
/// // ... serve ...
/// client.set_available(false); // leaves every list within milliseconds
/// serve_requests_until_idle(Duration::from_secs(10));
/// client.shutdown();
/// # Ok(()) }
/// ```
///
/// ```no_run
/// # fn main() -> Result<(), nng_discovery::Error> {
/// use nng_discovery::Client;
///
/// let client = Client::with_subscription(
///     "tcp://127.0.0.1:40007",
///     "tcp://127.0.0.1:40008",
///     "http://10.0.0.1:8080",
/// )?;
/// for peers in client.peers()? {
///     println!("peers now: {peers:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a Client shuts it down at once"]
pub struct Client {
    service: String,
    survey_urls: Vec<String>,
    socket: Socket,
    dial: DialSettings,
    /// The survey dialers, one per server, while the client is available.
    dialing: Mutex<Option<Vec<nng::Dialer>>>,
    link: std::sync::Arc<transport::Link>,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
    subscriber: Option<Subscriber>,
    /// Surveys received, from any server (see [`Client::surveys_received`]).
    surveys: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Client {
    /// Answers every survey from the server(s) at `survey_urls` (one URL
    /// or several, see [`Urls`]) with `service`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] if `service` is empty, longer than
    /// [`wire::MAX_NAME_LEN`] bytes, or contains `|` or a control character;
    /// [`Error::InvalidUrl`] for a malformed URL; [`Error::InvalidUrlList`]
    /// for an empty list or a URL given twice; [`Error::Setup`] if NNG
    /// cannot open the socket or the thread cannot start.
    pub fn new(survey_urls: impl Urls, service: &str) -> Result<Client> {
        Client::with_options(survey_urls, None, service, &Options::default())
    }

    /// Like [`new`](Client::new), and also subscribes to the lists published
    /// at `publish_urls` (one URL or several: the union of the servers'
    /// lists, as a [`Subscriber`] of them delivers it); read them from
    /// [`peers`](Client::peers).
    ///
    /// # Errors
    /// As [`new`](Client::new), and the same for `publish_urls`.
    pub fn with_subscription(
        survey_urls: impl Urls,
        publish_urls: impl Urls,
        service: &str,
    ) -> Result<Client> {
        Client::builder(survey_urls, service)
            .subscribe(publish_urls)
            .build()
    }

    /// The general form of [`new`](Client::new) and
    /// [`with_subscription`](Client::with_subscription) for one publish URL
    /// or none: subscribes when `publish_url` is given, redials with the
    /// reconnect timing of `options` ([`Options::reconnect_min`],
    /// [`Options::reconnect_max`]), and starts unavailable (not listed)
    /// with [`Options::available`]`(false)`. With several publish URLs, or
    /// watch URLs, use [`builder`](Client::builder) (`publish_url` stays a
    /// plain `Option<&str>` so that `None` needs no type annotation).
    ///
    /// # Errors
    /// As [`with_subscription`](Client::with_subscription), and
    /// [`Error::InvalidOption`] for nonsense options.
    pub fn with_options(
        survey_urls: impl Urls,
        publish_url: Option<&str>,
        service: &str,
        options: &Options,
    ) -> Result<Client> {
        let follow = match publish_url {
            Some(url) => Follow::Publish(vec![url.to_owned()]),
            None => Follow::Nothing,
        };
        Client::open(&survey_urls, follow, service, options)
    }

    /// [`with_options`](Client::with_options) with a subscription to one
    /// publish URL or several.
    ///
    /// # Errors
    /// As [`with_options`](Client::with_options).
    #[deprecated(
        since = "0.2.0",
        note = "use Client::builder(survey_urls, service).subscribe(publish_urls).options(options).build()"
    )]
    pub fn with_subscription_options(
        survey_urls: impl Urls,
        publish_urls: impl Urls,
        service: &str,
        options: &Options,
    ) -> Result<Client> {
        Client::builder(survey_urls, service)
            .subscribe(publish_urls)
            .options(options.clone())
            .build()
    }

    /// Like [`with_subscription`](Client::with_subscription), but follows
    /// the list through the servers' watch URLs ([`Options::watch_url`]
    /// on the server, `server --watch` in the daemon) instead of their
    /// publish URLs, as [`Subscriber::watch`] does: each server sends this
    /// client only what changed. The lists arrive on
    /// [`peers`](Client::peers) just the same. When every service of a
    /// large cluster follows the list, this is the form that scales; with
    /// a server that also broadcasts ([`Options::watch_broadcast_url`]),
    /// each change costs that server one message for all its followers.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nng_discovery::{Client, Options, Server};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = Options::default().watch_url("tcp://127.0.0.1:0");
    /// let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)?;
    /// let watch_url = server.watch_url().expect("a watch URL was given");
    /// let client = Client::with_watch(server.survey_url(), watch_url, "http://10.0.0.1:8080")?;
    /// // The bound is generous for a busy or slow machine: about a second here.
    /// let peers = client.peers()?;
    /// while peers.recv_timeout(Duration::from_secs(30))? != ["http://10.0.0.1:8080"] {}
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`with_subscription`](Client::with_subscription), and the same
    /// for `watch_urls`.
    pub fn with_watch(
        survey_urls: impl Urls,
        watch_urls: impl Urls,
        service: &str,
    ) -> Result<Client> {
        Client::builder(survey_urls, service)
            .watch(watch_urls)
            .build()
    }

    /// [`with_watch`](Client::with_watch) with `options`: those of
    /// [`with_options`](Client::with_options), and for the watch side those
    /// of [`Subscriber::watch_with_options`] (its silence timeout is
    /// 2 × [`Options::watch_keepalive`]).
    ///
    /// # Errors
    /// As [`with_watch`](Client::with_watch), and
    /// [`Error::InvalidOption`] for nonsense options.
    #[deprecated(
        since = "0.2.0",
        note = "use Client::builder(survey_urls, service).watch(watch_urls).options(options).build()"
    )]
    pub fn with_watch_options(
        survey_urls: impl Urls,
        watch_urls: impl Urls,
        service: &str,
        options: &Options,
    ) -> Result<Client> {
        Client::builder(survey_urls, service)
            .watch(watch_urls)
            .options(options.clone())
            .build()
    }

    /// A [`ClientBuilder`]: the one form that takes any mix of survey
    /// URLs with publish URLs or watch URLs, and options.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nng_discovery::{Client, Options, Server};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", Options::default())?;
    /// let client = Client::builder(server.survey_url(), "http://10.0.0.1:8080")
    ///     .subscribe(server.publish_url())
    ///     .options(Options::default().reconnect_max(Duration::from_millis(500)))
    ///     .build()?;
    /// let peers = client.peers()?;
    /// while peers.recv_timeout(Duration::from_secs(30))? != ["http://10.0.0.1:8080"] {}
    /// # Ok(()) }
    /// ```
    pub fn builder(survey_urls: impl Urls, service: &str) -> ClientBuilder {
        ClientBuilder::new(survey_urls.to_urls(), service)
    }

    pub(crate) fn open(
        survey_urls: &dyn Urls,
        follow: Follow,
        service: &str,
        options: &Options,
    ) -> Result<Client> {
        // The name is checked before any socket opens or dials.
        wire::validate_name(service).map_err(|reason| Error::InvalidName {
            name: service.to_owned(),
            reason,
        })?;
        // Each role's settings and every URL, validated once, before any
        // socket opens.
        let settings = options.client_settings()?;
        let survey_urls = urls::checked(survey_urls)?;
        let follow = match follow {
            Follow::Nothing => None,
            Follow::Publish(urls) => {
                Some((false, urls::checked(&urls)?, options.follow_settings()?))
            }
            Follow::Watch(urls) => Some((true, urls::checked(&urls)?, options.follow_settings()?)),
        };
        // Raw mode: NNG 1.4's cooked respondent can touch a freed connection
        // when one closes with a survey pending (see nng::workarounds). The
        // raw socket queues messages, not connections, and routes each
        // answer by the id in its header.
        let socket = RawSocket::new(Protocol::Respondent0)
            .map_err(Error::nng("open a raw RESPONDENT socket"))?
            .socket;
        transport::limit(&socket, MAX_SURVEY_BYTES)?;
        // Each new connection is announced by the client's thread: the
        // callback, on NNG's threads, only hands its pipe id over.
        let (connected_tx, connected) = crossbeam_channel::unbounded();
        let (wake, woken) = receiver::wake()?;
        let link = transport::Link::watch_with(&socket, &survey_urls, move |pipe, event| {
            if event == nng::PipeEvent::AddPost {
                let _ = connected_tx.send(transport::pipe_id(pipe));
                wake.raise();
            }
        })?;
        // Every URL is checked before any is dialed, and before the
        // subscription starts (and when starting unavailable all the same:
        // a bad URL must not wait to be found until `set_available(true)`).
        for url in &survey_urls {
            transport::check_dial_url(&socket, url, &settings.dial)?;
        }
        let subscriber = match follow {
            None => None,
            Some((false, urls, follow)) => Some(Subscriber::open_publish(urls, &follow)?),
            Some((true, urls, follow)) => Some(Subscriber::open_watch(urls, &follow)?),
        };
        let dialers = if settings.available {
            let mut dialers = Vec::with_capacity(survey_urls.len());
            for url in &survey_urls {
                match transport::dial(&socket, url, &settings.dial) {
                    Ok(dialer) => dialers.push(dialer),
                    Err(e) => {
                        link.close(dialers);
                        socket.close();
                        return Err(e);
                    }
                }
            }
            Some(dialers)
        } else {
            None
        };

        let name = service.to_owned();
        let counter = std::sync::Arc::default();
        let count = std::sync::Arc::clone(&counter);
        let started = receiver::receiver(&socket).and_then(|(stopper, surveys)| {
            std::thread::Builder::new()
                .name("nng-discovery-client".into())
                .spawn(move || answer_surveys(surveys, connected, woken, name, &count))
                .map(|thread| (stopper, thread))
                .map_err(Error::spawn)
        });
        let (stopper, thread) = match started {
            Ok(started) => started,
            Err(e) => {
                // No connection attempt is left half-made (see Link).
                link.close(dialers.into_iter().flatten());
                socket.close();
                return Err(e);
            }
        };
        Ok(Client {
            service: service.to_owned(),
            survey_urls,
            socket,
            dial: settings.dial,
            dialing: Mutex::new(dialers),
            link,
            stopper,
            thread: Some(thread),
            subscriber,
            surveys: counter,
        })
    }

    /// The channel on which lists of live services arrive (see
    /// [`Subscriber::changes`] for its behaviour).
    ///
    /// # Errors
    /// [`Error::NoSubscription`] if the client was made with
    /// [`new`](Client::new) (or with no publish URL).
    pub fn peers(&self) -> Result<Receiver<Vec<String>>> {
        self.subscriber
            .as_ref()
            .map(Subscriber::changes)
            .ok_or(Error::NoSubscription)
    }

    /// The service name this client answers with.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The survey URL this client dials: the first one given.
    pub fn survey_url(&self) -> &str {
        &self.survey_urls[0]
    }

    /// Every survey URL this client dials, in the order given.
    pub fn survey_urls(&self) -> &[String] {
        &self.survey_urls
    }

    /// How many surveys this client has received so far, from all its
    /// servers together. A count that stays still while the client is
    /// [available](Client::is_available) means no server is surveying it:
    /// none reachable at the URLs given (a mistyped host, a firewall), or
    /// all down. The daemon's `join --silence-timeout` warns on it.
    pub fn surveys_received(&self) -> u64 {
        self.surveys.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the client is available: listed by the servers it reaches.
    /// See [`set_available`](Client::set_available).
    pub fn is_available(&self) -> bool {
        self.dialing.lock().is_some()
    }

    /// Makes the client unavailable (`false`): every server drops its name
    /// within milliseconds, while the client keeps its threads and its
    /// subscription (lists keep arriving); or available again (`true`):
    /// it dials the server again and is listed within milliseconds of
    /// connecting. Setting the value it already has does nothing; calls
    /// from several threads are serialised.
    ///
    /// Going unavailable closes the survey connections, one per server (the
    /// socket and its thread stay). If a connection may still be being
    /// made, it first waits for the attempt to finish: 8 × the process's
    /// typical connection time, 30 ms to 1 s, and a client younger than
    /// 250 ms that has not connected waits until it is 250 ms old (an NNG
    /// 1.4 leak, see "NNG 1.4 traps" in `docs/INTERNALS.md`). Should NNG refuse to dial
    /// a server again (it does not for a URL it took once, short of running
    /// out of memory), the error is logged; the client is available if it
    /// dials at least one server, and stays unavailable otherwise.
    pub fn set_available(&self, available: bool) {
        let mut dialing = self.dialing.lock();
        match (dialing.take(), available) {
            (Some(current), true) => *dialing = Some(current),
            (None, false) => {}
            (Some(dialers), false) => {
                self.link.close(dialers);
                log::debug!("{} is unavailable", self.service);
            }
            (None, true) => {
                let mut dialers = Vec::with_capacity(self.survey_urls.len());
                for url in &self.survey_urls {
                    match transport::dial(&self.socket, url, &self.dial) {
                        Ok(dialer) => dialers.push(dialer),
                        Err(e) => {
                            log::error!("{} cannot dial {url} again: {}", self.service, e.report())
                        }
                    }
                }
                if dialers.is_empty() {
                    log::error!("{} stays unavailable", self.service);
                } else {
                    *dialing = Some(dialers);
                    log::debug!("{} is available", self.service);
                }
            }
        }
    }

    /// Stops answering at once, closes the connections and joins the
    /// threads. Dropping the client does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Stop the thread first and close after: NNG 1.4 must not close a
        // socket that a thread may be entering a receive on (see receiver).
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("client thread for {} panicked", self.service);
            }
        }
        // Once (shutdown and then Drop both come here): let a connection
        // attempt in flight finish first (see Link), then close.
        if let Some(dialers) = self.dialing.get_mut().take() {
            self.link.close(dialers);
        }
        self.socket.close();
        if let Some(subscriber) = self.subscriber.take() {
            subscriber.shutdown();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The client's thread: announces `name` on each connection whose pipe id
/// comes on `connected` (with `woken` raised), and answers every survey.
/// Counts the surveys it receives in `count`.
fn answer_surveys(
    mut surveys: NngReceiver,
    connected: Receiver<u32>,
    woken: WakeSignal,
    name: String,
    count: &std::sync::atomic::AtomicU64,
) {
    let what = format!("receiving a survey as {name}");
    while let Some(next) = surveys.next_or_woken(&woken, &what) {
        let msg = match next {
            Next::Woken => {
                for pipe in connected.try_iter() {
                    if !announce(surveys.socket(), pipe, &name) {
                        return;
                    }
                }
                continue;
            }
            Next::Message(msg) => msg,
        };
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !answer(surveys.socket(), msg, &name) {
            return;
        }
    }
}

/// Sends the announcement of `name` on connection `pipe`: the header
/// routes it (see [`wire::announcement_header`]). False once the socket is
/// closed.
fn announce(socket: &Socket, pipe: u32, name: &str) -> bool {
    let mut msg = nng::Message::new();
    msg.as_mut_header()
        .push_back(&wire::announcement_header(pipe));
    msg.push_back(name.as_bytes());
    match socket.send(msg) {
        Ok(()) => true,
        Err((_, nng::Error::Closed)) => false,
        // The connection dropped already: its successor announces itself.
        Err((_, e)) => {
            log::debug!("announcing {name}: {e}");
            true
        }
    }
}

/// Answers survey `msg` with `name`. False once the socket is closed.
fn answer(socket: &Socket, mut msg: nng::Message, name: &str) -> bool {
    // Reuse the survey's message: its header (the connection id and the
    // survey id) routes the answer back; the body becomes our name.
    msg.clear();
    msg.push_back(name.as_bytes());
    match socket.send(msg) {
        Ok(()) => true,
        Err((_, nng::Error::Closed)) => false,
        // The connection dropped: the next survey gets the next answer.
        Err((_, e)) => {
            log::debug!("answering a survey as {name}: {e}");
            true
        }
    }
}

// Compile-time checks of the promises in the docs: a client can be shared
// between threads and moved to another.
#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Client>();
}
