//! The command line: a small hand-written parser and the help texts.
//!
//! Every option is `--name VALUE` or `--name=VALUE` (or a bare `--name` for
//! switches); there are no positional arguments. Errors are one line that
//! names the option or value at fault.

use std::fmt;
use std::time::Duration;

use nng_discovery::{wire, Error, Options};

use crate::duration;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print this text on stdout and exit 0.
    Help(&'static str),
    Version,
    Server(ServerArgs),
    Join(JoinArgs),
    Watch(WatchArgs),
}

#[derive(Debug)]
pub struct ServerArgs {
    pub survey: String,
    pub publish: String,
    pub options: Options,
}

#[derive(Debug)]
pub struct JoinArgs {
    pub survey: String,
    pub name: String,
    pub publish: Option<String>,
    pub json: bool,
}

#[derive(Debug)]
pub struct WatchArgs {
    pub publish: String,
    pub json: bool,
    pub exec: Option<String>,
    pub once: bool,
}

/// A usage error: printed as `nng-discovery: MESSAGE`, exit status 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage<T>(message: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(message.into()))
}

pub const MAIN_HELP: &str = "\
nng-discovery: service discovery over NNG, wire-compatible with gopherdiscovery

Usage:
  nng-discovery server --survey URL --publish URL [OPTIONS]
  nng-discovery join   --survey URL --name NAME [--publish URL [--json]]
  nng-discovery watch  --publish URL [--json] [--exec CMD | --once]
  nng-discovery help [COMMAND] | --help | --version

Commands:
  server   run a discovery server: survey clients, publish the list of names
  join     keep NAME in a server's list for as long as this process runs
  watch    print the list of names at each change, optionally run a command

URLs take NNG's forms: tcp://HOST:PORT (tcp://[::1]:PORT for IPv6) or
ipc:///PATH. Names are at most 1024 bytes, without '|' or control
characters.

All commands run until SIGINT or SIGTERM, then stop cleanly and exit 0.
Exit status: 0 on a clean stop or --help, 1 on a runtime failure (address in
use, invalid URL, ...), 2 on a usage error. Errors are one line on stderr.

Logging goes to stderr; set RUST_LOG to change the level (default: info),
e.g. RUST_LOG=debug or RUST_LOG=nng_discovery=warn.

Run 'nng-discovery COMMAND --help' for a command's options.
";

pub const SERVER_HELP: &str = "\
nng-discovery server: run a discovery server

Usage:
  nng-discovery server --survey URL --publish URL [OPTIONS]

Listens on the survey URL for clients (each answers every survey with its
name) and on the publish URL for subscribers, to which it publishes the
sorted list of names, joined by '|', whenever it changes. A new subscriber
gets the current list at once. Joins and leaves are logged at info level.

On startup it prints the URLs actually bound on stdout, one per line:
  survey tcp://127.0.0.1:40007
  publish tcp://127.0.0.1:40008
(with tcp://HOST:0 these carry the port the system chose).

Options:
  --survey URL              where clients connect (required)
  --publish URL             where subscribers connect (required)
  --poll-interval DURATION  time between heartbeat surveys [default: 5s]
  --survey-time DURATION    how long a survey waits for answers; shorter than
                            --poll-interval [default: 1s]
  --miss-threshold N        unanswered surveys before a connected client is
                            dropped, at least 1 [default: 2]
  --republish-interval DURATION
                            republish an unchanged list this often
                            [default: 30s]
  --max-peers N             refuse names beyond this many [default: 65536]
  -h, --help                print this help

DURATION is a number and a unit: 250ms, 2s, 1.5s, 1m, 1m30s (units ns, us,
ms, s, m, h). A client that stops or dies leaves at once (its connection
closes); one that hangs with its connection open is dropped after
miss-threshold x poll-interval + survey-time.

Stops on SIGINT or SIGTERM (exit status 0). Exit status 1 if it cannot listen
(address in use, invalid URL), 2 on a usage error.

Example:
  nng-discovery server --survey tcp://0.0.0.0:40007 \\
      --publish tcp://0.0.0.0:40008 --poll-interval 2s --survey-time 500ms
";

pub const JOIN_HELP: &str = "\
nng-discovery join: keep a name listed while this process runs

Usage:
  nng-discovery join --survey URL --name NAME [--publish URL [--json]]

Dials the server's survey URL (retrying until the server is up, and again
after it restarts) and answers every survey with NAME, so NAME stays in the
list for as long as this process runs: a sidecar for a service that cannot
link the library. On SIGINT or SIGTERM it stops answering and closes its
connection, and the server drops NAME at once.

Options:
  --survey URL     the server's survey URL (required)
  --name NAME      the name to announce, usually the service's own URL
                   (required; at most 1024 bytes, no '|', no control
                   characters)
  --publish URL    also subscribe to the server's publish URL and print the
                   list each time it changes, as 'watch' does
  --json           with --publish, print each list as a JSON array
  -h, --help       print this help

Exit status: 0 after SIGINT or SIGTERM, 1 on a runtime failure, 2 on a usage
error (including an invalid NAME).

Example:
  nng-discovery join --survey tcp://10.0.0.5:40007 --name http://10.0.0.7:8080
";

pub const WATCH_HELP: &str = "\
nng-discovery watch: print the list at each change, optionally run a command

Usage:
  nng-discovery watch --publish URL [--json] [--exec CMD | --once]

Subscribes to the server's publish URL (retrying until the server is up) and
prints one line per change: the sorted names separated by spaces (an empty
line for the empty list), or with --json a JSON array (\"[]\" when empty). The
first line is the current list, printed as soon as the connection is made (a
server that has just started sends it when its first survey has ended).

Options:
  --publish URL   the server's publish URL (required)
  --json          print each list as a JSON array of strings
  --exec CMD      run CMD with 'sh -c' after each change (see below)
  --once          print the current list and exit 0 (it waits for the
                  server, so bound it with e.g. 'timeout 5' in scripts)
  -h, --help      print this help

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

Exit status: 0 after SIGINT or SIGTERM, after --once, or when printing a
list finds stdout closed; 1 on a runtime failure, 2 on a usage error.

Examples:
  nng-discovery watch --publish tcp://10.0.0.5:40008 --json
  timeout 5 nng-discovery watch --publish tcp://10.0.0.5:40008 --once
  nng-discovery watch --publish tcp://10.0.0.5:40008 \\
      --exec 'cat > /etc/app/peers.new && mv /etc/app/peers.new /etc/app/peers'
";

/// What an option takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    Value,
    Nothing,
}

/// The options of a command, in order of appearance, after checking that
/// each is known and given at most once.
struct Given<'a> {
    command: &'static str,
    values: Vec<(&'static str, Option<&'a str>)>,
}

impl<'a> Given<'a> {
    fn value(&self, flag: &str) -> Option<&'a str> {
        self.values
            .iter()
            .find(|(f, _)| *f == flag)
            .and_then(|(_, v)| *v)
    }

    fn has(&self, flag: &str) -> bool {
        self.values.iter().any(|(f, _)| *f == flag)
    }

    fn required(&self, flag: &str, what: &str) -> Result<&'a str, UsageError> {
        match self.value(flag) {
            Some(v) => Ok(v),
            None => usage(format!(
                "{} needs {flag} {what} (see 'nng-discovery {} --help')",
                self.command, self.command
            )),
        }
    }
}

/// Reads `args` (the arguments after the command's name) against `spec`.
/// Returns `None` if help was asked for.
fn read<'a>(
    command: &'static str,
    spec: &[(&'static str, Takes)],
    args: &'a [String],
) -> Result<Option<Given<'a>>, UsageError> {
    let mut values: Vec<(&'static str, Option<&'a str>)> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        if !arg.starts_with("--") || arg == "--" {
            return usage(format!(
                "unexpected argument {arg:?} for {command} (see 'nng-discovery {command} --help')"
            ));
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.as_str(), None),
        };
        let Some(&(flag, takes)) = spec.iter().find(|(f, _)| *f == name) else {
            return usage(format!(
                "unknown option {name} for {command} (see 'nng-discovery {command} --help')"
            ));
        };
        if values.iter().any(|(f, _)| *f == flag) {
            return usage(format!("{flag} given more than once"));
        }
        let value = match (takes, inline) {
            (Takes::Nothing, None) => None,
            (Takes::Nothing, Some(_)) => return usage(format!("{flag} takes no value")),
            (Takes::Value, Some(v)) => Some(v),
            (Takes::Value, None) => match iter.next() {
                Some(v) if v.starts_with("--") => {
                    return usage(format!(
                        "{flag} needs a value, not the option {v} (write {flag}=VALUE for a value that starts with --)"
                    ))
                }
                Some(v) => Some(v.as_str()),
                None => return usage(format!("{flag} needs a value")),
            },
        };
        values.push((flag, value));
    }
    Ok(Some(Given { command, values }))
}

/// Parses the whole command line (without the program name).
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((first, rest)) = args.split_first() else {
        return usage("a command is needed: server, join or watch (see 'nng-discovery --help')");
    };
    match first.as_str() {
        "-h" | "--help" => Ok(Command::Help(MAIN_HELP)),
        "-V" | "--version" => Ok(Command::Version),
        "help" => match rest {
            [] => Ok(Command::Help(MAIN_HELP)),
            [topic] => match topic.as_str() {
                "server" => Ok(Command::Help(SERVER_HELP)),
                "join" => Ok(Command::Help(JOIN_HELP)),
                "watch" => Ok(Command::Help(WATCH_HELP)),
                other => usage(format!(
                    "no help for {other:?}: the commands are server, join and watch"
                )),
            },
            _ => usage("help takes at most one command name"),
        },
        "server" => parse_server(rest),
        "join" => parse_join(rest),
        "watch" => parse_watch(rest),
        other => usage(format!(
            "unknown command {other:?}: expected server, join or watch (see 'nng-discovery --help')"
        )),
    }
}

fn parse_server(args: &[String]) -> Result<Command, UsageError> {
    use Takes::Value;
    let spec = [
        ("--survey", Value),
        ("--publish", Value),
        ("--poll-interval", Value),
        ("--survey-time", Value),
        ("--miss-threshold", Value),
        ("--republish-interval", Value),
        ("--max-peers", Value),
    ];
    let Some(given) = read("server", &spec, args)? else {
        return Ok(Command::Help(SERVER_HELP));
    };
    let survey = given.required("--survey", "URL")?.to_owned();
    let publish = given.required("--publish", "URL")?.to_owned();
    let mut options = Options::default();
    if let Some(v) = given.value("--poll-interval") {
        options = options.poll_interval(parse_duration("--poll-interval", v)?);
    }
    if let Some(v) = given.value("--survey-time") {
        options = options.survey_time(parse_duration("--survey-time", v)?);
    }
    if let Some(v) = given.value("--republish-interval") {
        options = options.republish_interval(parse_duration("--republish-interval", v)?);
    }
    if let Some(v) = given.value("--miss-threshold") {
        options = options.miss_threshold(parse_count("--miss-threshold", v)?);
    }
    if let Some(v) = given.value("--max-peers") {
        options = options.max_peers(parse_count("--max-peers", v)?);
    }
    check_options(&options)?;
    Ok(Command::Server(ServerArgs {
        survey,
        publish,
        options,
    }))
}

fn parse_join(args: &[String]) -> Result<Command, UsageError> {
    use Takes::{Nothing, Value};
    let spec = [
        ("--survey", Value),
        ("--name", Value),
        ("--publish", Value),
        ("--json", Nothing),
    ];
    let Some(given) = read("join", &spec, args)? else {
        return Ok(Command::Help(JOIN_HELP));
    };
    let survey = given.required("--survey", "URL")?.to_owned();
    let name = given.required("--name", "NAME")?.to_owned();
    if let Err(reason) = wire::validate_name(&name) {
        return usage(format!("invalid --name {name:?}: {reason}"));
    }
    let publish = given.value("--publish").map(str::to_owned);
    let json = given.has("--json");
    if json && publish.is_none() {
        return usage("--json needs --publish URL (join prints lists only with --publish)");
    }
    Ok(Command::Join(JoinArgs {
        survey,
        name,
        publish,
        json,
    }))
}

fn parse_watch(args: &[String]) -> Result<Command, UsageError> {
    use Takes::{Nothing, Value};
    let spec = [
        ("--publish", Value),
        ("--json", Nothing),
        ("--exec", Value),
        ("--once", Nothing),
    ];
    let Some(given) = read("watch", &spec, args)? else {
        return Ok(Command::Help(WATCH_HELP));
    };
    let publish = given.required("--publish", "URL")?.to_owned();
    let exec = given.value("--exec").map(str::to_owned);
    if exec.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return usage("invalid --exec \"\": expected a shell command");
    }
    let once = given.has("--once");
    if once && exec.is_some() {
        return usage("--once and --exec cannot be used together");
    }
    Ok(Command::Watch(WatchArgs {
        publish,
        json: given.has("--json"),
        exec,
        once,
    }))
}

fn parse_duration(flag: &str, value: &str) -> Result<Duration, UsageError> {
    match duration::parse(value) {
        Some(d) => Ok(d),
        None => usage(format!(
            "invalid {flag} {value:?}: expected a duration like 250ms or 2s"
        )),
    }
}

fn parse_count<T: std::str::FromStr + TryFrom<u8> + PartialOrd>(
    flag: &str,
    value: &str,
) -> Result<T, UsageError> {
    let one = T::try_from(1u8).ok();
    match value.parse::<T>() {
        // Leading '+' is accepted by FromStr; refuse it for clarity.
        Ok(n) if !value.starts_with('+') && one.is_some_and(|one| n >= one) => Ok(n),
        _ => usage(format!(
            "invalid {flag} {value:?}: expected a whole number of at least 1"
        )),
    }
}

/// The library's own check, with its option names turned into our flags.
fn check_options(options: &Options) -> Result<(), UsageError> {
    match options.validate() {
        Ok(()) => Ok(()),
        Err(Error::InvalidOption { option, reason }) => usage(format!(
            "invalid {}: {}",
            flag_of(option),
            reason
                .replace("republish_interval", "--republish-interval")
                .replace("poll_interval", "--poll-interval")
        )),
        Err(e) => usage(e.to_string()),
    }
}

fn flag_of(option: &str) -> String {
    format!("--{}", option.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn err(s: &[&str]) -> String {
        match parse(&args(s)) {
            Err(UsageError(m)) => m,
            Ok(c) => panic!("{s:?} parsed as {c:?}"),
        }
    }

    #[test]
    fn server_with_all_options() {
        let c = parse(&args(&[
            "server",
            "--survey",
            "tcp://127.0.0.1:0",
            "--publish=ipc:///tmp/x",
            "--poll-interval",
            "1s",
            "--survey-time=250ms",
            "--miss-threshold",
            "3",
            "--republish-interval",
            "1m",
            "--max-peers",
            "100",
        ]))
        .unwrap();
        let Command::Server(s) = c else {
            panic!("{c:?}")
        };
        assert_eq!(s.survey, "tcp://127.0.0.1:0");
        assert_eq!(s.publish, "ipc:///tmp/x");
        let o = s.options;
        assert_eq!(o.get_poll_interval(), Duration::from_secs(1));
        assert_eq!(o.get_survey_time(), Duration::from_millis(250));
        assert_eq!(o.get_miss_threshold(), 3);
        assert_eq!(o.get_republish_interval(), Duration::from_secs(60));
        assert_eq!(o.get_max_peers(), 100);
    }

    #[test]
    fn server_defaults_are_the_library_defaults() {
        let Command::Server(s) =
            parse(&args(&["server", "--survey", "a", "--publish", "b"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.options, Options::default());
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert_eq!(
            err(&[
                "server",
                "--survey",
                "a",
                "--publish",
                "b",
                "--poll-interval",
                "abc"
            ]),
            r#"invalid --poll-interval "abc": expected a duration like 250ms or 2s"#
        );
        assert_eq!(
            err(&[
                "server",
                "--survey",
                "a",
                "--publish",
                "b",
                "--miss-threshold",
                "0"
            ]),
            r#"invalid --miss-threshold "0": expected a whole number of at least 1"#
        );
        assert!(err(&[
            "server",
            "--survey",
            "a",
            "--publish",
            "b",
            "--max-peers=-4"
        ])
        .starts_with("invalid --max-peers \"-4\""));
        let m = err(&[
            "server",
            "--survey",
            "a",
            "--publish",
            "b",
            "--survey-time",
            "2s",
            "--poll-interval",
            "1s",
        ]);
        assert!(m.starts_with("invalid --survey-time: "), "{m}");
        assert!(m.contains("--poll-interval"), "{m}");
        let m = err(&[
            "server",
            "--survey",
            "a",
            "--publish",
            "b",
            "--poll-interval",
            "0s",
        ]);
        assert!(m.starts_with("invalid --poll-interval: "), "{m}");
    }

    #[test]
    fn structural_errors() {
        assert!(err(&[]).contains("a command is needed"));
        assert!(err(&["serve"]).starts_with("unknown command \"serve\""));
        assert!(err(&["server", "--publish", "b"]).starts_with("server needs --survey URL"));
        assert!(err(&["server", "--survey", "a"]).starts_with("server needs --publish URL"));
        assert!(err(&["server", "--survey"]).starts_with("--survey needs a value"));
        assert!(err(&["server", "--survey", "--publish", "b"])
            .starts_with("--survey needs a value, not the option --publish"));
        assert!(
            err(&["server", "--surveyy", "a"]).starts_with("unknown option --surveyy for server")
        );
        assert!(err(&["server", "x"]).starts_with("unexpected argument \"x\" for server"));
        assert!(err(&["server", "--survey", "a", "--survey", "b"])
            .starts_with("--survey given more than once"));
        assert!(
            err(&["watch", "--publish", "a", "--json=yes"]).starts_with("--json takes no value")
        );
        assert!(err(&["join", "--survey", "a", "--name", "a|b"])
            .starts_with("invalid --name \"a|b\": "));
        assert!(err(&["join", "--survey", "a", "--name", ""]).starts_with("invalid --name \"\": "));
        assert!(err(&["join", "--survey", "a", "--name", "n", "--json"])
            .starts_with("--json needs --publish"));
        assert!(err(&["watch", "--publish", "a", "--exec", " "]).starts_with("invalid --exec"));
        assert!(err(&["watch", "--publish", "a", "--exec", "x", "--once"])
            .starts_with("--once and --exec cannot be used together"));
        assert!(err(&["help", "nope"]).starts_with("no help for \"nope\""));
    }

    #[test]
    fn help_everywhere() {
        for (a, want) in [
            (&["--help"][..], MAIN_HELP),
            (&["-h"][..], MAIN_HELP),
            (&["help"][..], MAIN_HELP),
            (&["help", "watch"][..], WATCH_HELP),
            (&["server", "--help"][..], SERVER_HELP),
            (&["server", "--survey", "a", "-h"][..], SERVER_HELP),
            (&["join", "-h"][..], JOIN_HELP),
            (&["watch", "--help"][..], WATCH_HELP),
            // Help wins over errors that come after it.
            (&["watch", "--help", "--bogus"][..], WATCH_HELP),
        ] {
            match parse(&args(a)) {
                Ok(Command::Help(text)) => assert_eq!(text, want, "{a:?}"),
                other => panic!("{a:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn join_and_watch() {
        let Command::Join(j) = parse(&args(&[
            "join",
            "--survey",
            "s",
            "--name",
            "http://a b",
            "--publish",
            "p",
            "--json",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                j.survey.as_str(),
                j.name.as_str(),
                j.publish.as_deref(),
                j.json
            ),
            ("s", "http://a b", Some("p"), true)
        );
        let Command::Watch(w) =
            parse(&args(&["watch", "--exec", "echo $X", "--publish", "p"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (w.publish.as_str(), w.json, w.exec.as_deref()),
            ("p", false, Some("echo $X"))
        );
        // A value may start with dashes when given with '='.
        let Command::Watch(w) = parse(&args(&["watch", "--publish", "p", "--exec=--x"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(w.exec.as_deref(), Some("--x"));
        let Command::Watch(w) = parse(&args(&["watch", "--publish", "p", "--once"])).unwrap()
        else {
            panic!()
        };
        assert!(w.once && w.exec.is_none());
    }
}
