//! One URL or several, wherever a client or subscriber takes a server's URL.
//!
//! Redundant servers (two or three independent ones, see `docs/OPERATIONS.md`,
//! "Running more than one server") are given as a list: a client answers
//! every server, a subscriber merges what they all publish. One URL is the
//! list of one, so single-server code is unchanged:
//!
//! ```no_run
//! # fn main() -> Result<(), nng_discovery::Error> {
//! use nng_discovery::{Client, Subscriber};
//!
//! let one = Subscriber::new("tcp://10.0.0.5:40008")?;
//! let three = Subscriber::new(["tcp://10.0.0.5:40008", "tcp://10.0.0.6:40008", "tcp://10.0.0.7:40008"])?;
//! let from_config: Vec<String> = vec!["tcp://10.0.0.5:40007".into(), "tcp://10.0.0.6:40007".into()];
//! let client = Client::new(&from_config, "http://10.0.0.1:8080")?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result, UrlListError};

/// One URL or a list of them: implemented for `&str`, `String`, `&String`,
/// slices, arrays and vectors of either (`&[&str]`, `[&str; N]`,
/// `Vec<String>`, `&[String]`, ...).
///
/// The list must not be empty and must not name a URL twice:
/// constructors refuse both with [`Error::InvalidUrlList`] (a duplicate is
/// refused rather than dropped, since it is almost always a mistake in a
/// configuration, such as one server listed where two were meant). URLs
/// are compared as written: `tcp://127.0.0.1:1` and `tcp://localhost:1`
/// count as two.
pub trait Urls {
    /// The URLs, in the order given.
    fn to_urls(&self) -> Vec<String>;
}

impl Urls for str {
    fn to_urls(&self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl Urls for String {
    fn to_urls(&self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<T: Urls + ?Sized> Urls for &T {
    fn to_urls(&self) -> Vec<String> {
        (**self).to_urls()
    }
}

impl<T: AsRef<str>> Urls for [T] {
    fn to_urls(&self) -> Vec<String> {
        self.iter().map(|u| u.as_ref().to_owned()).collect()
    }
}

impl<T: AsRef<str>, const N: usize> Urls for [T; N] {
    fn to_urls(&self) -> Vec<String> {
        self[..].to_urls()
    }
}

impl<T: AsRef<str>> Urls for Vec<T> {
    fn to_urls(&self) -> Vec<String> {
        self[..].to_urls()
    }
}

/// The URLs of `urls`, checked: at least one, none twice.
pub(crate) fn checked(urls: &(impl Urls + ?Sized)) -> Result<Vec<String>> {
    let urls = urls.to_urls();
    if urls.is_empty() {
        return Err(Error::InvalidUrlList {
            urls,
            reason: UrlListError::Empty,
        });
    }
    for (i, url) in urls.iter().enumerate() {
        if urls[..i].contains(url) {
            let reason = UrlListError::Duplicate(url.clone());
            return Err(Error::InvalidUrlList { urls, reason });
        }
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn takes(urls: impl Urls) -> Vec<String> {
        urls.to_urls()
    }

    #[test]
    // The borrowed forms are the point: callers write them.
    #[allow(clippy::needless_borrows_for_generic_args)]
    fn every_form_gives_its_urls_in_order() {
        let s = String::from("tcp://a:1");
        let v = vec![String::from("tcp://a:1"), String::from("tcp://b:2")];
        let two = ["tcp://a:1".to_string(), "tcp://b:2".to_string()];
        assert_eq!(takes("tcp://a:1"), ["tcp://a:1"]);
        assert_eq!(takes(&s), ["tcp://a:1"]);
        assert_eq!(takes(s.clone()), ["tcp://a:1"]);
        assert_eq!(takes(&&s), ["tcp://a:1"]);
        assert_eq!(takes(&["tcp://a:1", "tcp://b:2"][..]), two);
        assert_eq!(takes(["tcp://a:1", "tcp://b:2"]), two);
        assert_eq!(takes(&["tcp://a:1", "tcp://b:2"]), two);
        assert_eq!(takes(&v), two);
        assert_eq!(takes(&v[..]), two);
        assert_eq!(takes(v), two);
        assert_eq!(takes(vec!["tcp://a:1"]), ["tcp://a:1"]);
    }

    #[test]
    fn an_empty_list_is_refused_with_the_reason() {
        let none: [&str; 0] = [];
        let e = checked(&none).unwrap_err();
        assert!(matches!(e, Error::InvalidUrlList { .. }), "{e:?}");
        assert!(e.report().contains("no URL given"), "{e}");
        assert!(checked(&Vec::<String>::new()).is_err());
    }

    #[test]
    fn a_duplicate_is_refused_naming_it() {
        let e = checked(&["tcp://a:1", "tcp://b:2", "tcp://a:1"]).unwrap_err();
        let msg = e.report();
        assert!(msg.contains("\"tcp://a:1\" is given twice"), "{msg}");
        assert!(
            matches!(&e, Error::InvalidUrlList { reason: UrlListError::Duplicate(url), .. } if url == "tcp://a:1"),
            "{e:?}"
        );
        assert_eq!(
            checked(&["tcp://a:1", "tcp://b:2"]).unwrap(),
            ["tcp://a:1", "tcp://b:2"]
        );
    }
}
