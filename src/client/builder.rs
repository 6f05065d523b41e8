//! Building a [`Client`] from any mix of URLs and options.

use crate::client::{Client, Follow};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::urls::Urls;

/// Builds a [`Client`]: its survey URLs and name, and optionally what it
/// follows (publish URLs or watch URLs) and its [`Options`]. Made by
/// [`Client::builder`]; nothing opens or dials before
/// [`build`](ClientBuilder::build).
///
/// The other constructors are shorthands for it:
///
/// | shorthand | builder |
/// |---|---|
/// | `Client::new(s, name)` | `Client::builder(s, name).build()` |
/// | `Client::with_subscription(s, p, name)` | `Client::builder(s, name).subscribe(p).build()` |
/// | `Client::with_watch(s, w, name)` | `Client::builder(s, name).watch(w).build()` |
/// | `Client::with_options(s, Some(p), name, &o)` | `Client::builder(s, name).subscribe(p).options(o).build()` |
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct ClientBuilder {
    survey_urls: Vec<String>,
    service: String,
    publish_urls: Option<Vec<String>>,
    watch_urls: Option<Vec<String>>,
    options: Options,
}

impl ClientBuilder {
    pub(crate) fn new(survey_urls: Vec<String>, service: &str) -> ClientBuilder {
        ClientBuilder {
            survey_urls,
            service: service.to_owned(),
            publish_urls: None,
            watch_urls: None,
            options: Options::default(),
        }
    }

    /// Also receive the lists published at `publish_urls` (one URL or
    /// several: their union), on [`Client::peers`].
    pub fn subscribe(mut self, publish_urls: impl Urls) -> ClientBuilder {
        self.publish_urls = Some(publish_urls.to_urls());
        self
    }

    /// Also follow the list through the servers' watch URLs (one or
    /// several: their union), on [`Client::peers`], as
    /// [`Subscriber::watch`](crate::Subscriber::watch) does.
    pub fn watch(mut self, watch_urls: impl Urls) -> ClientBuilder {
        self.watch_urls = Some(watch_urls.to_urls());
        self
    }

    /// The client's options (reconnect timing, availability, TLS, and for
    /// what it follows, the subscriber's settings). The default:
    /// [`Options::default`].
    pub fn options(mut self, options: Options) -> ClientBuilder {
        self.options = options;
        self
    }

    /// Validates everything, then opens the client's sockets and starts
    /// its threads.
    ///
    /// # Errors
    /// As [`Client::with_options`]; and [`Error::InvalidOption`] naming
    /// `watch` when both [`subscribe`](ClientBuilder::subscribe) and
    /// [`watch`](ClientBuilder::watch) were given: a client follows one
    /// kind of URL.
    pub fn build(self) -> Result<Client> {
        let follow = match (self.publish_urls, self.watch_urls) {
            (None, None) => Follow::Nothing,
            (Some(urls), None) => Follow::Publish(urls),
            (None, Some(urls)) => Follow::Watch(urls),
            (Some(_), Some(_)) => {
                return Err(Error::InvalidOption {
                    option: "watch",
                    reason: "a client follows publish URLs or watch URLs, not both".into(),
                })
            }
        };
        Client::open(&self.survey_urls, follow, &self.service, &self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_watch_together_are_refused_before_anything_opens() {
        let e = Client::builder("tcp://127.0.0.1:1", "x")
            .subscribe("tcp://127.0.0.1:2")
            .watch("tcp://127.0.0.1:3")
            .build()
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidOption {
                    option: "watch",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn the_builder_checks_what_the_constructors_check() {
        let e = Client::builder("tcp://127.0.0.1:1", "a|b")
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidName { .. }), "{e:?}");
        let empty: [&str; 0] = [];
        let e = Client::builder(empty, "a").build().unwrap_err();
        assert!(matches!(e, Error::InvalidUrlList { .. }), "{e:?}");
    }
}
