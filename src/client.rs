//! Registering a service with a discovery server.

use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use nng::{Protocol, RawSocket, Socket};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::nng::receiver::{self, Receiver as NngReceiver, Stopper};
use crate::nng::transport;
use crate::options::Options;
use crate::subscriber::Subscriber;
use crate::urls::{self, Urls};
use crate::wire;

/// The largest survey a client accepts. Surveys are empty; anything larger
/// than this closes the connection (which is then dialed again).
const MAX_SURVEY_BYTES: usize = 64 << 10;

/// What a client follows besides answering surveys.
enum Follow {
    Nothing,
    Publish(Vec<String>),
    Watch(Vec<String>),
}

/// A service that announces itself to a discovery server, or to several
/// redundant ones.
///
/// The client dials the server's survey URL in the background (the server
/// may start later, or restart) and answers every survey with its service
/// name: the survey is the heartbeat, and answering it is what keeps the
/// name listed. When the client shuts down or is dropped it stops answering
/// at once and its connection closes, which the server sees within
/// milliseconds.
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
/// Threads: one, two with a subscription (either kind), whatever the number of servers,
/// plus NNG's shared pool.
///
/// # Availability and draining
///
/// [`set_available(false)`](Client::set_available) takes the name out of
/// every server's list within milliseconds, while the client keeps running
/// (its threads, and its subscription, which goes on delivering lists);
/// [`set_available(true)`](Client::set_available) brings it back as fast.
/// It needs nothing from the server: an unavailable client closes its
/// survey connection (a server drops a name at once when the connection
/// that answered for it closes) and an available one dials again (a server
/// surveys a new connection at once).
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
pub struct Client {
    service: String,
    survey_urls: Vec<String>,
    socket: Socket,
    options: Options,
    /// The survey dialers, one per server, while the client is available.
    dialing: Mutex<Option<Vec<nng::Dialer>>>,
    link: std::sync::Arc<transport::Link>,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
    subscriber: Option<Subscriber>,
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
        Client::with_subscription_options(survey_urls, publish_urls, service, &Options::default())
    }

    /// The general form of [`new`](Client::new) and
    /// [`with_subscription`](Client::with_subscription) for one publish URL
    /// or none: subscribes when `publish_url` is given, redials with the
    /// reconnect timing of `options` ([`Options::reconnect_min`],
    /// [`Options::reconnect_max`]), and starts unavailable (not listed)
    /// with [`Options::available`]`(false)`. With several publish URLs,
    /// use [`with_subscription_options`](Client::with_subscription_options)
    /// (`publish_url` stays a plain `Option<&str>` so that `None` needs no
    /// type annotation).
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
    pub fn with_subscription_options(
        survey_urls: impl Urls,
        publish_urls: impl Urls,
        service: &str,
        options: &Options,
    ) -> Result<Client> {
        Client::open(
            &survey_urls,
            Follow::Publish(publish_urls.to_urls()),
            service,
            options,
        )
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
        Client::with_watch_options(survey_urls, watch_urls, service, &Options::default())
    }

    /// [`with_watch`](Client::with_watch) with `options`: those of
    /// [`with_options`](Client::with_options), and for the watch side those
    /// of [`Subscriber::watch_with_options`] (its silence timeout is
    /// 2 × [`Options::watch_keepalive`]).
    ///
    /// # Errors
    /// As [`with_watch`](Client::with_watch), and
    /// [`Error::InvalidOption`] for nonsense options.
    pub fn with_watch_options(
        survey_urls: impl Urls,
        watch_urls: impl Urls,
        service: &str,
        options: &Options,
    ) -> Result<Client> {
        Client::open(
            &survey_urls,
            Follow::Watch(watch_urls.to_urls()),
            service,
            options,
        )
    }

    fn open(
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
        options.validate()?;
        let survey_urls = urls::checked(survey_urls)?;
        let subscriber = match follow {
            Follow::Nothing => None,
            Follow::Publish(urls) => Some(Subscriber::with_options(urls, options)?),
            Follow::Watch(urls) => Some(Subscriber::watch_with_options(urls, options)?),
        };
        // Raw mode: NNG 1.4's cooked respondent can touch a freed connection
        // when one closes with a survey pending (NNG issue 1959; see
        // tests/respondent_stress.rs). The raw socket queues messages, not
        // connections, and routes each answer by the id in its header.
        let socket = RawSocket::new(Protocol::Respondent0)
            .map_err(Error::nng("open a raw RESPONDENT socket"))?
            .socket;
        transport::limit(&socket, MAX_SURVEY_BYTES)?;
        let link = transport::Link::watch(&socket, &survey_urls)?;
        // Every URL is checked before any is dialed (and when starting
        // unavailable all the same: a bad URL must not wait to be found
        // until `set_available(true)`).
        for url in &survey_urls {
            transport::check_dial_url(&socket, url, options)?;
        }
        let dialers = if options.get_available() {
            let mut dialers = Vec::with_capacity(survey_urls.len());
            for url in &survey_urls {
                match transport::dial(&socket, url, options) {
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

        let (stopper, surveys) = receiver::receiver(&socket)?;
        let name = service.to_owned();
        let thread = std::thread::Builder::new()
            .name("nng-discovery-client".into())
            .spawn(move || answer_surveys(surveys, name))
            .map_err(Error::spawn)?;
        Ok(Client {
            service: service.to_owned(),
            survey_urls,
            socket,
            options: options.clone(),
            dialing: Mutex::new(dialers),
            link,
            stopper,
            thread: Some(thread),
            subscriber,
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
    /// socket and its thread stay). If a connection was still being made,
    /// it waits up to 30 ms for the attempt to finish first (an NNG 1.4
    /// leak, see the README's "NNG 1.4 traps"). Should NNG refuse to dial
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
                    match transport::dial(&self.socket, url, &self.options) {
                        Ok(dialer) => dialers.push(dialer),
                        Err(e) => log::error!("{} cannot dial {url} again: {e}", self.service),
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

fn answer_surveys(mut surveys: NngReceiver, name: String) {
    let what = format!("receiving a survey as {name}");
    while let Some(mut msg) = surveys.next(&what) {
        // Reuse the survey's message: its header (the connection id and the
        // survey id) routes the answer back; the body becomes our name.
        msg.clear();
        msg.push_back(name.as_bytes());
        match surveys.socket().send(msg) {
            Ok(()) => {}
            Err((_, nng::Error::Closed)) => return,
            // The connection dropped: the next survey gets the next answer.
            Err((_, e)) => log::debug!("answering a survey as {name}: {e}"),
        }
    }
}
