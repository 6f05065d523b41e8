//! systemd's readiness protocol (`Type=notify`, sd_notify(3)) without
//! libsystemd: when `$NOTIFY_SOCKET` names a Unix datagram socket, `server`
//! sends `READY=1` there once every URL is bound, and `STOPPING=1` when a
//! signal starts its shutdown. Each is one datagram, sent with std's
//! `UnixDatagram`; a name starting with `@` is an abstract socket (Linux).
//! Without `$NOTIFY_SOCKET` nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Where to send the notifications, from `$NOTIFY_SOCKET`'s value.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// A socket file.
    Path(&'a OsStr),
    /// An abstract socket: the name after the `@`.
    Abstract(&'a [u8]),
}

/// `$NOTIFY_SOCKET`'s value read as a [`Target`]: `/path` or `@name`;
/// `None` for anything else (empty or relative: systemd sends neither).
pub fn target(value: &OsStr) -> Option<Target<'_>> {
    match value.as_bytes() {
        [b'@', name @ ..] => Some(Target::Abstract(name)),
        [b'/', ..] => Some(Target::Path(value)),
        _ => None,
    }
}

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`, if it is set. A
/// failure is logged at warn level (systemd then times the start out,
/// which the log line explains) and is no reason to stop serving.
pub fn notify(state: &str) {
    let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = match target(&value) {
        Some(target) => send(&target, state),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path or an @abstract name",
        )),
    };
    match result {
        Ok(()) => log::debug!("sent {state} to NOTIFY_SOCKET {value:?}"),
        Err(e) => log::warn!("cannot send {state} to NOTIFY_SOCKET {value:?}: {e}"),
    }
}

fn send(target: &Target<'_>, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let sent = match target {
        Target::Path(path) => socket.send_to(state.as_bytes(), path)?,
        Target::Abstract(name) => send_abstract(&socket, name, state)?,
    };
    if sent == state.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "datagram cut short",
        ))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], state: &str) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(state.as_bytes(), &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paths_and_abstract_names() {
        assert_eq!(
            target(OsStr::new("/run/systemd/notify")),
            Some(Target::Path(OsStr::new("/run/systemd/notify")))
        );
        assert_eq!(
            target(OsStr::new("@/org/x")),
            Some(Target::Abstract(b"/org/x"))
        );
        assert_eq!(target(OsStr::new("")), None);
        assert_eq!(target(OsStr::new("run/notify")), None);
    }

    #[test]
    fn sends_one_datagram_to_a_path() {
        let dir = std::env::temp_dir().join(format!("nngd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send(&Target::Path(path.as_os_str()), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
