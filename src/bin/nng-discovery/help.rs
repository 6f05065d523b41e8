//! The long help texts of `nng-discovery --help` and each command's
//! `--help` (clap's `after_help`), and the layout they share. Kept apart
//! from the argument declarations (`args`) so that either can be read
//! without scrolling through the other. Lines are laid out to fit 80
//! columns: clap wraps nothing (its `wrap_help` feature is left out).

/// The help layout of every command: a heading naming the command, then
/// clap's usage line and options, then our own text.
macro_rules! help_template {
    ($heading:literal) => {
        concat!(
            $heading,
            "\n\n{usage-heading} {usage}\n\n{all-args}{after-help}"
        )
    };
}
pub(crate) use help_template;

pub const MAIN_AFTER_HELP: &str = "\
URLs take NNG's forms: tcp://HOST:PORT (tcp://[::1]:PORT for IPv6) or
ipc:///PATH. Names are at most 1024 bytes, without '|' or control
characters.

All commands run until SIGINT or SIGTERM, then stop cleanly and exit 0.
Exit status: 0 on a clean stop or --help, 1 on a runtime failure (address in
use, invalid URL, ...), 2 on a usage error. Errors are one line on stderr.

Logging goes to stderr; set RUST_LOG to change the level (default: info),
e.g. RUST_LOG=debug or RUST_LOG=nng_discovery=warn. Each line starts with
its time (RFC 3339, UTC) and level:
  [2026-12-07T01:43:00.123Z INFO  nng_discovery::server] ...

Environment: every flag can also come from a variable NNG_DISCOVERY_<FLAG>,
the flag's name in upper case with '-' as '_' (--poll-interval:
NNG_DISCOVERY_POLL_INTERVAL=2s; switches such as --json take true or false).
A flag on the command line wins over its variable, which wins over the
default. A repeatable flag (--survey on join, --allow-from, ...) takes one
value from its variable; give several on the command line.

Run 'nng-discovery COMMAND --help' for a command's options, and
'nng-discovery completions --help' to install shell completions.";

pub const SERVER_AFTER_HELP: &str = "\
Listens on the survey URL for clients (each answers every survey with its
name) and on the publish URL for subscribers, to which it publishes the
sorted list of names, joined by '|', whenever it changes. A new subscriber
gets the current list at once. Joins and leaves are logged at info level.

On startup it prints the URLs actually bound on stdout, one per line:
  survey tcp://127.0.0.1:40007
  publish tcp://127.0.0.1:40008
(with tcp://HOST:0 these carry the port the system chose).

--watch URL also serves the watch protocol there (REQ/REP: each watcher is
sent only what changed since the revision it holds; see docs/PROTOCOL.md),
and prints the line
  watch tcp://127.0.0.1:40009
after the publish line. A watch request that is up to date is held until the
list changes, or answered with a keepalive after --watch-keepalive (default
10s; keep it well below NNG's 60 s REQ resend time).

--watch-broadcast URL (with --watch) also broadcasts each change once there
(PUB/SUB), and a keepalive every --watch-keepalive; watchers that can follow
it (nng-discovery's own) learn this URL from the watch URL and then cost the
server one message per change for all of them. Prints the line
  watch broadcast tcp://127.0.0.1:40010
after the watch line.

--metrics ADDR (IP:PORT, e.g. 127.0.0.1:9464) serves the server's counters
at http://ADDR/metrics in Prometheus's text format, and adds the line
  metrics http://127.0.0.1:9464/metrics
after those two (docs/OPERATIONS.md lists the metrics). The same port serves
/healthz (200 while the server runs, else 503) and /peers (the list as a
JSON array).

DURATION is a number and a unit: 250ms, 2s, 1.5s, 1m, 1m30s (units ns, us,
ms, s, m, h). --survey-time must be shorter than --poll-interval, and
--miss-threshold and --max-peers at least 1. A client that stops or dies
leaves at once (its connection closes); one that hangs with its connection
open is dropped after miss-threshold x poll-interval + survey-time (the
surveys it missed). Names beyond --max-peers are refused.

Security (see docs/OPERATIONS.md): nothing is restricted by default.
--allow-from 10.0.0.0/8 (repeatable; IPv4 or IPv6) closes TCP connections
from other addresses on both URLs; --max-connections N closes connections
beyond N (default: the open-file limit minus 128); --require-peer-host lists
a TCP peer's name only if it is scheme://IP[:PORT][/...] or IP:PORT with the
peer's own IP; --ipc-mode 660 sets the ipc:// socket files' mode. Refusals
are logged at warn level. ipc:// and inproc:// peers have no IP address:
--allow-from and --require-peer-host do not apply to them.

Mutual TLS (a build with the cargo feature tls): tls+tcp://HOST:PORT URLs
with --tls-ca, --tls-cert and --tls-key (PEM files, all three; the same
flags on join and watch). Peers need a certificate signed by the CA.

Every flag can also be set as NNG_DISCOVERY_<FLAG>, e.g.
NNG_DISCOVERY_SURVEY; the command line wins (see 'nng-discovery --help').

systemd Type=notify: with $NOTIFY_SOCKET set, it sends READY=1 there once
every URL is bound, and STOPPING=1 when a signal starts its shutdown.

Stops on SIGINT or SIGTERM (exit status 0). Exit status 1 if it cannot listen
(address in use, invalid URL), 2 on a usage error.

Example:
  nng-discovery server --survey tcp://0.0.0.0:40007 \\
      --publish tcp://0.0.0.0:40008 --poll-interval 2s --survey-time 500ms";

pub const JOIN_AFTER_HELP: &str = "\
Dials the server's survey URL (retrying until the server is up, and again
after it restarts) and answers every survey with NAME, so NAME stays in the
list for as long as this process runs: a sidecar for a service that cannot
link the library. On SIGINT or SIGTERM it stops answering and closes its
connection, and the server drops NAME at once.

Redundant servers: give --survey once per server (and --publish once per
server); NAME answers every server, each dialed on its own, and the lists
printed are the union of the servers' lists.

--watch URL prints the same lists, followed through the servers' watch URLs
(servers started with --watch) instead of their publish URLs: each server
sends only what changed. Repeatable like --publish, but not together with
it. Give --watch-keepalive the servers' value if it is not the default 10s
(see 'nng-discovery watch --help').

--silence-timeout DURATION (default 30s, 0s: never): while NAME is listed,
a warning is logged when no server has surveyed it for this long (a
mistyped host, a firewall, every server down); dialing goes on, and a line
is logged when surveys resume. Give more than the servers' --poll-interval.

NAME: at most 1024 bytes, no '|', no control characters.

Health checks: with --check CMD, NAME is listed only while CMD passes (exits
with status 0). CMD runs through 'sh -c', in its own process group, with its
stdout discarded, every --check-interval; one that runs past
--check-timeout is killed with its process group and counts as a failure.
The first check runs before joining, and its result decides at once (a
service down at start is never listed); after that --fall consecutive
failures take NAME out and --rise consecutive passes bring it back. Each
change is logged at info level with CMD's exit status and the first line of
its stderr.

--maintenance-file PATH: while PATH exists, NAME is not listed, whatever the
checks say (touch it to take a host out, remove it to put it back). It is
looked at every --check-interval, and at least once a second.

--drain DURATION: on SIGINT or SIGTERM, NAME leaves the list at once and the
process keeps running for DURATION (the service behind it finishes its
requests and gets no new ones), then exits 0. A second signal ends the drain
early. Without --drain, a signal leaves and exits at once.

Every flag can also be set as NNG_DISCOVERY_<FLAG>, e.g.
NNG_DISCOVERY_SURVEY; the command line wins (see 'nng-discovery --help').

Exit status: 0 after SIGINT or SIGTERM, 1 on a runtime failure, 2 on a usage
error (including an invalid NAME).

Examples:
  nng-discovery join --survey tcp://10.0.0.5:40007 --name http://10.0.0.7:8080
  nng-discovery join --survey tcp://10.0.0.5:40007 --name http://10.0.0.7:8080 \\
      --check 'curl -fsS http://10.0.0.7:8080/health' --check-interval 2s \\
      --fall 3 --maintenance-file /etc/app/maintenance --drain 10s";

pub const WATCH_AFTER_HELP: &str = "\
Subscribes to the server's publish URL (retrying until the server is up) and
prints one line per change: the sorted names separated by spaces (an empty
line for the empty list), or with --json a JSON array (\"[]\" when empty). The
first line is the current list, printed as soon as the connection is made (a
server that has just started sends it when its first survey has ended).
--once waits for the server, so bound it with e.g. 'timeout 5' in scripts.

Redundant servers: give --publish once per server; the list printed is the
union of the lists of the servers that count. A server stops counting when
its connection closes, or when it has published nothing for 90s (three of
the default 30s republishes: a hung server); when none counts, the last
list stands.

--watch URL follows a server's watch URL (a server started with --watch)
instead of its publish URL: the same lines, but each server sends this
watcher only what changed since the list it holds, which scales to
thousands of watchers. Repeatable for redundant servers like --publish (the
union again); --publish and --watch cannot be used together. A server that
sends nothing for twice --watch-keepalive stops counting (a hung server)
and is dialed again: give the servers' --watch-keepalive if it is not the
default 10s.

--silence-timeout DURATION (default 30s, 0s: never): a warning is logged
when no server has sent the first list for this long (a mistyped host, a
firewall, no server running); dialing goes on. Lists come only when they
change, so after the first one a server's silence is logged by its own line
('... no longer counts') instead.

--exec CMD: after printing each list, CMD runs through 'sh -c', in its own
process group, with stdout and stderr inherited, and receives the list in
three forms:
  NNG_DISCOVERY_PEERS       the names separated by single spaces
  NNG_DISCOVERY_PEERS_JSON  the names as a JSON array
  NNG_DISCOVERY_COUNT       the number of names
  standard input            each name followed by a newline
The first run gets the current list, even when it is empty. Never two runs at
once: lists that arrive while CMD runs are printed, and when it exits CMD runs
once more with the newest of them only. Names may contain spaces: read stdin
or the JSON form if yours might. A list longer than 65536 bytes in a form
leaves that variable unset (the system limits a variable's size); stdin
always has the whole list. A failing CMD is logged and watching goes on.
On SIGINT or SIGTERM a running CMD's process group gets SIGTERM, and SIGKILL
5 s later if it is still running.

Every flag can also be set as NNG_DISCOVERY_<FLAG>, e.g.
NNG_DISCOVERY_SURVEY; the command line wins (see 'nng-discovery --help').

Exit status: 0 after SIGINT or SIGTERM, after --once, or when printing a
list finds stdout closed; 1 on a runtime failure, 2 on a usage error.

Examples:
  nng-discovery watch --publish tcp://10.0.0.5:40008 --json
  nng-discovery watch --watch tcp://10.0.0.5:40009 --watch tcp://10.0.0.6:40009
  timeout 5 nng-discovery watch --publish tcp://10.0.0.5:40008 --once
  nng-discovery watch --publish tcp://10.0.0.5:40008 \\
      --exec 'cat > /etc/app/peers.new && mv /etc/app/peers.new /etc/app/peers'";

pub const COMPLETIONS_AFTER_HELP: &str = "\
Prints the script on stdout. To install it for your user:
  bash  nng-discovery completions bash \\
          > ~/.local/share/bash-completion/completions/nng-discovery
  zsh   nng-discovery completions zsh > ~/.zfunc/_nng-discovery
        (with fpath=(~/.zfunc $fpath) before compinit in ~/.zshrc)
  fish  nng-discovery completions fish \\
          > ~/.config/fish/completions/nng-discovery.fish
then start a new shell.";
