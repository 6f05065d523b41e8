//! Mutual TLS for `tls+tcp://` URLs (cargo feature `tls`).
//!
//! [`Tls`] holds a CA and this side's certificate and key, read from PEM
//! files. Given to a server ([`Options::tls`](crate::Options::tls)), its
//! listeners present the certificate and require every client, subscriber
//! and watcher to present one signed by the CA; given to a client or
//! subscriber, its dialers present theirs and verify the server's against
//! the CA and the URL's host (or [`Tls::server_name`]).
//!
//! The files are read and checked when the [`Tls`] is made; NNG gets the
//! PEM text in memory (`nng_tls_config_ca_chain`, `nng_tls_config_own_cert`
//! on a configuration object set as the endpoint's `tls-config`), so the
//! certificate and the key may be two files or one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A CA and this side's certificate and private key, for `tls+tcp://` URLs.
///
/// ```no_run
/// # fn main() -> Result<(), nng_discovery::Error> {
/// use nng_discovery::{Options, Server, Tls};
/// let tls = Tls::new("ca.pem", "server.pem", "server.key")?;
/// let server = Server::new("tls+tcp://0.0.0.0:40007", "tls+tcp://0.0.0.0:40008",
///                          Options::default().tls(tls))?;
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    server_name: Option<String>,
}

/// Shows the file names, never the key.
impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("server_name", &self.server_name)
            .finish()
    }
}

fn read_pem(path: &Path, what: &str, marker: impl Fn(&str) -> bool) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Tls {
        subject: path.display().to_string(),
        reason: format!("cannot read the {what}: {e}"),
    })?;
    if !marker(&text) {
        return Err(Error::Tls {
            subject: path.display().to_string(),
            reason: format!("no PEM {what} in it"),
        });
    }
    Ok(text)
}

/// Whether `text` holds a PEM block of the kind `label` (matched as the
/// end of the label, so `PRIVATE KEY` matches `RSA PRIVATE KEY` and
/// `EC PRIVATE KEY` too).
pub fn has_pem_block(text: &str, label: &str) -> bool {
    text.lines().any(|l| {
        l.trim_end()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    })
}

impl Tls {
    /// Reads the CA certificate(s) that peers' certificates must be signed
    /// by, this side's certificate (chain) and its private key (unencrypted),
    /// all PEM; `cert_file` and `key_file` may be the same file.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file that cannot be read or holds no PEM
    /// block of the expected kind; with the `tls` feature, also one that
    /// mbedTLS cannot parse. A key that does not belong to the certificate
    /// is not detected here (NNG 1.4 does not check the pair): every
    /// handshake then fails.
    pub fn new(
        ca_file: impl AsRef<Path>,
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<Tls> {
        let (ca_file, cert_file, key_file) = (
            ca_file.as_ref().to_owned(),
            cert_file.as_ref().to_owned(),
            key_file.as_ref().to_owned(),
        );
        let is_cert = |t: &str| has_pem_block(t, "CERTIFICATE");
        let ca_pem = read_pem(&ca_file, "CA certificate", is_cert)?;
        let cert_pem = read_pem(&cert_file, "certificate", is_cert)?;
        let key_pem = read_pem(&key_file, "private key", |t| {
            has_pem_block(t, "PRIVATE KEY")
        })?;
        let tls = Tls {
            ca_file,
            cert_file,
            key_file,
            ca_pem,
            cert_pem,
            key_pem,
            server_name: None,
        };
        #[cfg(feature = "tls")]
        engine::check(&tls)?;
        Ok(tls)
    }

    /// The name a client or subscriber expects in the server's certificate
    /// (a DNS entry of its subjectAltName) instead of the URL's host, e.g.
    /// when dialing an IP address. Servers ignore it.
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_owned());
        self
    }

    /// The CA file given to [`new`](Tls::new).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The certificate file given to [`new`](Tls::new).
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The key file given to [`new`](Tls::new).
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }
}

/// Whether `url` asks for TLS.
pub(crate) fn is_tls_url(url: &str) -> bool {
    url.starts_with("tls+tcp://")
        || url.starts_with("tls+tcp4://")
        || url.starts_with("tls+tcp6://")
}

/// Checks that `url` and the TLS settings agree: a `tls+tcp://` URL needs
/// `tls` (and a build with the feature), and `tls` needs such a URL.
pub(crate) fn check_url(url: &str, tls: Option<&Tls>) -> Result<()> {
    let err = |reason: &str| {
        Err(Error::Tls {
            subject: url.to_owned(),
            reason: reason.to_owned(),
        })
    };
    match (is_tls_url(url), tls) {
        (true, _) if !cfg!(feature = "tls") => err(
            "this build has no TLS: enable the cargo feature `tls` of nng-discovery (it needs mbedTLS 2.x, e.g. Debian's libmbedtls-dev)",
        ),
        (true, None) => err("a tls+tcp:// URL needs TLS settings: Options::tls(Tls::new(ca, cert, key)), or the daemon's --tls-ca, --tls-cert and --tls-key"),
        (false, Some(_)) => err("TLS options are set, but the URL is not tls+tcp://"),
        _ => Ok(()),
    }
}

/// The host part of a `tls+tcp://HOST:PORT` URL, brackets removed.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(feature = "tls")]
pub(crate) use engine::{configure_dialer, configure_listener};

#[cfg(feature = "tls")]
mod engine {
    //! NNG's TLS configuration objects (NNG built with mbedTLS through
    //! `nng-sys`'s `nng-tls` feature). The `nng_tls_config_*` functions are
    //! in NNG's supplemental API, which `nng-sys` only binds with bindgen,
    //! so the few used are declared here.

    use std::ffi::{c_char, c_int, c_void, CString};

    use super::Tls;
    use crate::error::{Error, Result};

    type Config = c_void;
    const MODE_CLIENT: c_int = 0;
    const MODE_SERVER: c_int = 1;
    const AUTH_REQUIRED: c_int = 2;

    extern "C" {
        fn nng_tls_config_alloc(cfg: *mut *mut Config, mode: c_int) -> c_int;
        fn nng_tls_config_free(cfg: *mut Config);
        fn nng_tls_config_ca_chain(
            cfg: *mut Config,
            chain: *const c_char,
            crl: *const c_char,
        ) -> c_int;
        fn nng_tls_config_own_cert(
            cfg: *mut Config,
            cert: *const c_char,
            key: *const c_char,
            pass: *const c_char,
        ) -> c_int;
        fn nng_tls_config_auth_mode(cfg: *mut Config, mode: c_int) -> c_int;
        fn nng_tls_config_server_name(cfg: *mut Config, name: *const c_char) -> c_int;
        fn nng_strerror(err: c_int) -> *const c_char;
    }

    fn strerror(rv: c_int) -> String {
        // SAFETY: nng_strerror returns a static NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(nng_strerror(rv)) }
            .to_string_lossy()
            .into_owned()
    }

    /// An owned configuration object, freed on drop (endpoints hold their
    /// own reference).
    struct Owned(*mut Config);

    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: allocated by nng_tls_config_alloc, freed once.
            unsafe { nng_tls_config_free(self.0) }
        }
    }

    fn cstring(text: &str, file: &std::path::Path) -> Result<CString> {
        CString::new(text).map_err(|_| Error::Tls {
            subject: file.display().to_string(),
            reason: "the file contains a NUL byte".into(),
        })
    }

    fn build(tls: &Tls, server: bool, server_name: Option<&str>) -> Result<Owned> {
        let mut cfg = std::ptr::null_mut();
        let mode = if server { MODE_SERVER } else { MODE_CLIENT };
        // SAFETY: cfg is written by NNG on success.
        let rv = unsafe { nng_tls_config_alloc(&mut cfg, mode) };
        if rv != 0 {
            return Err(Error::Tls {
                subject: "TLS configuration".into(),
                reason: format!("NNG cannot make one: {}", strerror(rv)),
            });
        }
        let cfg = Owned(cfg);
        let ca = cstring(&tls.ca_pem, &tls.ca_file)?;
        // SAFETY: valid config and NUL-terminated strings (copied by NNG).
        let rv = unsafe { nng_tls_config_ca_chain(cfg.0, ca.as_ptr(), std::ptr::null()) };
        if rv != 0 {
            return Err(Error::Tls {
                subject: tls.ca_file.display().to_string(),
                reason: format!("not a usable CA certificate: {}", strerror(rv)),
            });
        }
        let cert = cstring(&tls.cert_pem, &tls.cert_file)?;
        let key = cstring(&tls.key_pem, &tls.key_file)?;
        // SAFETY: as above.
        let rv = unsafe {
            nng_tls_config_own_cert(cfg.0, cert.as_ptr(), key.as_ptr(), std::ptr::null())
        };
        if rv != 0 {
            return Err(Error::Tls {
                subject: format!("{} and {}", tls.cert_file.display(), tls.key_file.display()),
                reason: format!(
                    "not a usable certificate and unencrypted private key: {}",
                    strerror(rv)
                ),
            });
        }
        // SAFETY: as above.
        let rv = unsafe { nng_tls_config_auth_mode(cfg.0, AUTH_REQUIRED) };
        if rv != 0 {
            return Err(Error::Tls {
                subject: "TLS configuration".into(),
                reason: format!("cannot require peer certificates: {}", strerror(rv)),
            });
        }
        if let Some(name) = server_name {
            let c = CString::new(name).map_err(|_| Error::Tls {
                subject: name.to_owned(),
                reason: "a server name cannot contain a NUL byte".into(),
            })?;
            // SAFETY: as above.
            let rv = unsafe { nng_tls_config_server_name(cfg.0, c.as_ptr()) };
            if rv != 0 {
                return Err(Error::Tls {
                    subject: name.to_owned(),
                    reason: format!("cannot set the expected server name: {}", strerror(rv)),
                });
            }
        }
        Ok(cfg)
    }

    /// Parses the PEM text with mbedTLS now, so a bad file is an error
    /// from [`Tls::new`] naming it.
    pub(super) fn check(tls: &Tls) -> Result<()> {
        build(tls, true, None).map(drop)
    }

    fn set(rv: c_int, url: &str) -> Result<()> {
        if rv == 0 {
            Ok(())
        } else {
            Err(Error::Tls {
                subject: url.to_owned(),
                reason: format!("cannot apply the TLS configuration: {}", strerror(rv)),
            })
        }
    }

    /// Presents the certificate and requires peers to present one signed
    /// by the CA.
    pub(crate) fn configure_listener(l: &nng::ListenerBuilder, tls: &Tls, url: &str) -> Result<()> {
        let cfg = build(tls, true, None)?;
        // SAFETY: a valid, unstarted listener; NNG takes its own reference.
        let rv = unsafe {
            nng::ffi::nng_listener_setopt_ptr(
                l.nng_listener(),
                nng::ffi::NNG_OPT_TLS_CONFIG.as_ptr() as *const c_char,
                cfg.0,
            )
        };
        set(rv, url)
    }

    /// Presents the certificate and verifies the server's against the CA
    /// and the expected name ([`Tls::server_name`], else the URL's host).
    pub(crate) fn configure_dialer(d: &nng::DialerBuilder, tls: &Tls, url: &str) -> Result<()> {
        let name = tls
            .server_name
            .as_deref()
            .unwrap_or_else(|| super::url_host(url));
        let cfg = build(tls, false, Some(name))?;
        // SAFETY: a valid, unstarted dialer; NNG takes its own reference.
        let rv = unsafe {
            nng::ffi::nng_dialer_setopt_ptr(
                d.nng_dialer(),
                nng::ffi::NNG_OPT_TLS_CONFIG.as_ptr() as *const c_char,
                cfg.0,
            )
        };
        set(rv, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks() {
        assert!(has_pem_block(
            "x\n-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
            "CERTIFICATE"
        ));
        assert!(has_pem_block(
            "-----BEGIN PRIVATE KEY-----\r\n",
            "PRIVATE KEY"
        ));
        assert!(has_pem_block(
            "-----BEGIN EC PRIVATE KEY-----",
            "PRIVATE KEY"
        ));
        assert!(has_pem_block(
            "-----BEGIN RSA PRIVATE KEY-----",
            "PRIVATE KEY"
        ));
        assert!(!has_pem_block("-----BEGIN CERTIFICATE-----", "PRIVATE KEY"));
        assert!(!has_pem_block("BEGIN CERTIFICATE", "CERTIFICATE"));
        assert!(!has_pem_block("", "CERTIFICATE"));
    }

    #[test]
    fn urls_and_settings_must_agree() {
        assert!(check_url("tcp://h:1", None).is_ok());
        assert!(check_url("ipc:///x", None).is_ok());
        let e = check_url("tls+tcp://h:1", None).unwrap_err().to_string();
        assert!(e.contains("tls+tcp://h:1"), "{e}");
        if cfg!(feature = "tls") {
            assert!(e.contains("Options::tls"), "{e}");
        } else {
            assert!(e.contains("cargo feature `tls`"), "{e}");
        }
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("tls+tcp://127.0.0.1:40007"), "127.0.0.1");
        assert_eq!(url_host("tls+tcp://[::1]:1"), "::1");
        assert_eq!(url_host("tls+tcp://db1.example:1"), "db1.example");
        assert_eq!(url_host("tls+tcp://h"), "h");
    }

    #[test]
    fn files_are_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("nngd-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = Tls::new(&missing, &missing, &missing)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read the CA"),
            "{e}"
        );
        let e = Tls::new(&not_pem, &not_pem, &not_pem)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not.pem") && e.contains("no PEM CA certificate"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
