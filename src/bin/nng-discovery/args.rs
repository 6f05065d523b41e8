//! The command line, declared with clap (derive), and its usage errors.
//!
//! clap parses (`--name VALUE`, `--name=VALUE`, switches, "did you mean",
//! `--help`, `--version`, the `help` command); this module checks what
//! clap cannot (the library's option rules, `--json` without `--publish`),
//! and turns clap's multi-line error reports into the daemon's one line
//! that names the option or value at fault ([`one_line`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use nng_discovery::{wire, Error, Options};

use crate::clap_errors::one_line;
use crate::duration;
use crate::help::{
    help_template, COMPLETIONS_AFTER_HELP, JOIN_AFTER_HELP, MAIN_AFTER_HELP, SERVER_AFTER_HELP,
    WATCH_AFTER_HELP,
};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print this text on stdout and exit 0: help, the version, or a
    /// completion script.
    Print(String),
    /// Run a server.
    Server(ServerArgs),
    /// Keep a name listed.
    Join(JoinArgs),
    /// Print (and act on) the list at each change.
    Watch(WatchArgs),
}

/// `server`: checked, with the options in the library's form.
#[derive(Debug)]
pub struct ServerArgs {
    /// `--survey`: where clients connect.
    pub survey: String,
    /// `--publish`: where subscribers connect.
    pub publish: String,
    /// The other flags, validated by [`Options::validate`].
    pub options: Options,
    /// `--metrics ADDR`: where to serve Prometheus metrics.
    pub metrics: Option<SocketAddr>,
    /// `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub tls: Option<TlsFiles>,
}

/// The three TLS files, given together (read by [`nng_discovery::Tls::new`]
/// when the command starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-ca`.
    pub ca: PathBuf,
    /// `--tls-cert`.
    pub cert: PathBuf,
    /// `--tls-key`.
    pub key: PathBuf,
}

/// `join`, checked.
#[derive(Debug)]
pub struct JoinArgs {
    /// `--survey`, once per server (at least one, none twice).
    pub survey: Vec<String>,
    /// `--name`, a valid name ([`wire::validate_name`]).
    pub name: String,
    /// `--publish`, once per server: also print the lists (the union of
    /// the servers'); empty: no lists.
    pub publish: Vec<String>,
    /// `--watch`, once per server: also print the lists, followed through
    /// the servers' watch URLs (never together with `publish`).
    pub watch: Vec<String>,
    /// `--watch-keepalive`: the servers' watch keepalive (the silence
    /// timeout is twice this).
    pub watch_keepalive: Duration,
    /// `--json` (only with `publish` or `watch`).
    pub json: bool,
    /// `--check CMD`: list the name only while CMD passes.
    pub check: Option<String>,
    /// `--check-interval`: from one check's start to the next (non-zero).
    pub check_interval: Duration,
    /// `--check-timeout`: a check running longer is killed and fails
    /// (non-zero).
    pub check_timeout: Duration,
    /// `--rise`: consecutive passes that list an unhealthy service.
    pub rise: u32,
    /// `--fall`: consecutive failures that unlist a healthy service.
    pub fall: u32,
    /// `--maintenance-file`: while it exists, the name is not listed.
    pub maintenance_file: Option<PathBuf>,
    /// `--drain`: on the first SIGINT or SIGTERM, leave and keep running
    /// this long.
    pub drain: Option<Duration>,
    /// `--silence-timeout`: warn when no survey came for this long (zero:
    /// never).
    pub silence_timeout: Duration,
    /// `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub tls: Option<TlsFiles>,
}

/// `watch`, checked.
#[derive(Debug)]
pub struct WatchArgs {
    /// `--publish`, once per server (none twice); empty with `watch`.
    pub publish: Vec<String>,
    /// `--watch`, once per server (none twice); empty with `publish`. One
    /// of the two is given.
    pub watch: Vec<String>,
    /// `--watch-keepalive`: the servers' watch keepalive (the silence
    /// timeout is twice this).
    pub watch_keepalive: Duration,
    /// `--json`: print lists as JSON arrays.
    pub json: bool,
    /// `--exec`: a non-blank shell command to run after each change.
    pub exec: Option<String>,
    /// `--once`: print the current list and stop (never with `exec`).
    pub once: bool,
    /// `--silence-timeout`: warn when no list came for this long (zero:
    /// never).
    pub silence_timeout: Duration,
    /// `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub tls: Option<TlsFiles>,
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

/// The whole command line.
#[derive(Parser, Debug)]
#[command(
    name = "nng-discovery",
    version,
    about = "Service discovery over NNG, wire-compatible with gopherdiscovery",
    help_template = help_template!(
        "nng-discovery: service discovery over NNG, wire-compatible with gopherdiscovery"
    ),
    after_help = MAIN_AFTER_HELP,
    // No command is a usage error (one line, exit 2), not the help on stderr.
    arg_required_else_help = false,
)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Run a discovery server: survey clients, publish the list of names
    #[command(
        help_template = help_template!("nng-discovery server: run a discovery server"),
        after_help = SERVER_AFTER_HELP
    )]
    Server(ServerCli),
    /// Keep NAME in a server's list for as long as this process runs
    #[command(
        help_template = help_template!(
            "nng-discovery join: keep a name listed while this process runs"
        ),
        after_help = JOIN_AFTER_HELP
    )]
    Join(JoinCli),
    /// Print the list of names at each change, optionally run a command
    #[command(
        help_template = help_template!(
            "nng-discovery watch: print the list at each change, optionally run a command"
        ),
        after_help = WATCH_AFTER_HELP
    )]
    Watch(WatchCli),
    /// Print a completion script for bash, zsh or fish
    #[command(
        help_template = help_template!(
            "nng-discovery completions: print a shell completion script"
        ),
        after_help = COMPLETIONS_AFTER_HELP
    )]
    Completions(CompletionsCli),
}

#[derive(Args, Debug)]
struct ServerCli {
    /// Where clients connect
    #[arg(
        long,
        env = "NNG_DISCOVERY_SURVEY",
        hide_env = true,
        value_name = "URL"
    )]
    survey: String,
    /// Where subscribers connect
    #[arg(
        long,
        env = "NNG_DISCOVERY_PUBLISH",
        hide_env = true,
        value_name = "URL"
    )]
    publish: String,
    /// Time between surveys
    #[arg(long, env = "NNG_DISCOVERY_POLL_INTERVAL", hide_env = true, value_name = "DURATION", default_value = "5s", value_parser = duration_arg)]
    poll_interval: Duration,
    /// How long each survey waits
    #[arg(long, env = "NNG_DISCOVERY_SURVEY_TIME", hide_env = true, value_name = "DURATION", default_value = "1s", value_parser = duration_arg)]
    survey_time: Duration,
    /// Missed surveys before a drop
    #[arg(long, env = "NNG_DISCOVERY_MISS_THRESHOLD", hide_env = true, value_name = "N", default_value = "2", value_parser = count_arg::<u32>)]
    miss_threshold: u32,
    /// Resend an unchanged list
    #[arg(long, env = "NNG_DISCOVERY_REPUBLISH_INTERVAL", hide_env = true, value_name = "DURATION", default_value = "30s", value_parser = duration_arg)]
    republish_interval: Duration,
    /// Maximum number of names
    #[arg(long, env = "NNG_DISCOVERY_MAX_PEERS", hide_env = true, value_name = "N", default_value = "65536", value_parser = count_arg::<usize>)]
    max_peers: usize,
    /// Serve Prometheus metrics on IP:PORT
    #[arg(long, env = "NNG_DISCOVERY_METRICS", hide_env = true, value_name = "ADDR", value_parser = socket_addr_arg)]
    metrics: Option<SocketAddr>,
    /// Where watchers connect
    #[arg(long, env = "NNG_DISCOVERY_WATCH", hide_env = true, value_name = "URL")]
    watch: Option<String>,
    /// Where followers subscribe
    #[arg(
        long,
        env = "NNG_DISCOVERY_WATCH_BROADCAST",
        hide_env = true,
        value_name = "URL",
        requires = "watch"
    )]
    watch_broadcast: Option<String>,
    /// Keepalive for watchers
    #[arg(long, env = "NNG_DISCOVERY_WATCH_KEEPALIVE", hide_env = true, value_name = "DURATION", default_value = "10s", value_parser = nonzero_duration_arg)]
    watch_keepalive: Duration,
    /// Accept TCP only from CIDR (repeatable)
    #[arg(
        long,
        env = "NNG_DISCOVERY_ALLOW_FROM",
        hide_env = true,
        value_name = "CIDR"
    )]
    allow_from: Vec<String>,
    /// Connection limit [default: files - 128]
    #[arg(long, env = "NNG_DISCOVERY_MAX_CONNECTIONS", hide_env = true, value_name = "N", value_parser = count_arg::<usize>)]
    max_connections: Option<usize>,
    /// Names must carry the TCP peer's IP
    #[arg(long, env = "NNG_DISCOVERY_REQUIRE_PEER_HOST", hide_env = true)]
    require_peer_host: bool,
    /// Octal mode of ipc:// socket files
    #[arg(long, env = "NNG_DISCOVERY_IPC_MODE", hide_env = true, value_name = "MODE", value_parser = octal_mode_arg)]
    ipc_mode: Option<u32>,
    #[command(flatten)]
    tls: TlsCli,
}

/// `--tls-ca`, `--tls-cert`, `--tls-key`: all three or none.
#[derive(Args, Debug)]
struct TlsCli {
    /// TLS: CA that signs every peer (PEM)
    #[arg(long, env = "NNG_DISCOVERY_TLS_CA", hide_env = true, value_name = "FILE", value_parser = path_arg, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// TLS: this side's certificate (PEM)
    #[arg(long, env = "NNG_DISCOVERY_TLS_CERT", hide_env = true, value_name = "FILE", value_parser = path_arg, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// TLS: its private key (PEM)
    #[arg(long, env = "NNG_DISCOVERY_TLS_KEY", hide_env = true, value_name = "FILE", value_parser = path_arg, requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
}

impl TlsCli {
    fn files(self) -> Option<TlsFiles> {
        match (self.tls_ca, self.tls_cert, self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            _ => None,
        }
    }
}

#[derive(Args, Debug)]
struct JoinCli {
    /// A server's survey URL (repeatable)
    #[arg(
        long,
        env = "NNG_DISCOVERY_SURVEY",
        hide_env = true,
        value_name = "URL",
        required = true
    )]
    survey: Vec<String>,
    /// Name to announce, e.g. the service's URL
    #[arg(long, env = "NNG_DISCOVERY_NAME", hide_env = true, value_name = "NAME", value_parser = name_arg)]
    name: String,
    /// Also print the lists (repeatable)
    #[arg(
        long,
        env = "NNG_DISCOVERY_PUBLISH",
        hide_env = true,
        value_name = "URL",
        conflicts_with = "watch"
    )]
    publish: Vec<String>,
    /// Or print them via a watch URL (repeatable)
    #[arg(long, env = "NNG_DISCOVERY_WATCH", hide_env = true, value_name = "URL")]
    watch: Vec<String>,
    /// Servers' --watch-keepalive [default: 10s]
    #[arg(long, env = "NNG_DISCOVERY_WATCH_KEEPALIVE", hide_env = true, value_name = "DURATION", value_parser = nonzero_duration_arg)]
    watch_keepalive: Option<Duration>,
    /// With --publish or --watch, print JSON arrays
    #[arg(long, env = "NNG_DISCOVERY_JSON", hide_env = true)]
    json: bool,
    /// List NAME only while 'sh -c CMD' passes
    #[arg(long, env = "NNG_DISCOVERY_CHECK", hide_env = true, value_name = "CMD", value_parser = command_arg)]
    check: Option<String>,
    /// Time between checks
    #[arg(long, env = "NNG_DISCOVERY_CHECK_INTERVAL", hide_env = true, value_name = "DURATION", default_value = "5s", value_parser = nonzero_duration_arg)]
    check_interval: Duration,
    /// A check running longer fails
    #[arg(long, env = "NNG_DISCOVERY_CHECK_TIMEOUT", hide_env = true, value_name = "DURATION", default_value = "2s", value_parser = nonzero_duration_arg, requires = "check")]
    check_timeout: Duration,
    /// Failures in a row to unlist
    #[arg(long, env = "NNG_DISCOVERY_FALL", hide_env = true, value_name = "N", default_value = "1", value_parser = count_arg::<u32>, requires = "check")]
    fall: u32,
    /// Passes in a row to relist
    #[arg(long, env = "NNG_DISCOVERY_RISE", hide_env = true, value_name = "N", default_value = "1", value_parser = count_arg::<u32>, requires = "check")]
    rise: u32,
    /// Unlist NAME while PATH exists
    #[arg(long, env = "NNG_DISCOVERY_MAINTENANCE_FILE", hide_env = true, value_name = "PATH", value_parser = path_arg)]
    maintenance_file: Option<PathBuf>,
    /// On a signal, leave and exit DURATION later
    #[arg(long, env = "NNG_DISCOVERY_DRAIN", hide_env = true, value_name = "DURATION", value_parser = duration_arg)]
    drain: Option<Duration>,
    /// Warn after this long unheard
    #[arg(long, env = "NNG_DISCOVERY_SILENCE_TIMEOUT", hide_env = true, value_name = "DURATION", default_value = crate::silence::DEFAULT, value_parser = duration_arg)]
    silence_timeout: Duration,
    #[command(flatten)]
    tls: TlsCli,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("follow").required(true).args(["publish", "watch"])))]
struct WatchCli {
    /// A server's publish URL (repeatable)
    #[arg(
        long,
        env = "NNG_DISCOVERY_PUBLISH",
        hide_env = true,
        value_name = "URL",
        conflicts_with = "watch"
    )]
    publish: Vec<String>,
    /// A server's watch URL (repeatable)
    #[arg(long, env = "NNG_DISCOVERY_WATCH", hide_env = true, value_name = "URL")]
    watch: Vec<String>,
    /// Servers' --watch-keepalive [default: 10s]
    #[arg(long, env = "NNG_DISCOVERY_WATCH_KEEPALIVE", hide_env = true, value_name = "DURATION", value_parser = nonzero_duration_arg)]
    watch_keepalive: Option<Duration>,
    /// Print each list as a JSON array of strings
    #[arg(long, env = "NNG_DISCOVERY_JSON", hide_env = true)]
    json: bool,
    /// Run 'sh -c CMD' at each change (see below)
    #[arg(long, env = "NNG_DISCOVERY_EXEC", hide_env = true, value_name = "CMD", value_parser = command_arg)]
    exec: Option<String>,
    /// Print the current list and exit 0
    #[arg(
        long,
        env = "NNG_DISCOVERY_ONCE",
        hide_env = true,
        conflicts_with = "exec"
    )]
    once: bool,
    /// Warn after this long unheard
    #[arg(long, env = "NNG_DISCOVERY_SILENCE_TIMEOUT", hide_env = true, value_name = "DURATION", default_value = crate::silence::DEFAULT, value_parser = duration_arg)]
    silence_timeout: Duration,
    #[command(flatten)]
    tls: TlsCli,
}

#[derive(Args, Debug)]
struct CompletionsCli {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: Shell,
}

/// The shells we print completions for (clap_complete has more; these are
/// the ones we name and test).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The subcommands, for naming the one at fault in an error.
pub const COMMANDS: [&str; 4] = ["server", "join", "watch", "completions"];

/// Parses the whole command line (without the program name).
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let argv = std::iter::once("nng-discovery").chain(args.iter().map(String::as_str));
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                return Ok(Command::Print(e.render().to_string()))
            }
            _ => return usage(one_line(&e, args)),
        },
    };
    match cli.command {
        CliCommand::Server(s) => server(s),
        CliCommand::Join(j) => join(j),
        CliCommand::Watch(w) => watch(w),
        CliCommand::Completions(c) => Ok(Command::Print(completions(c.shell))),
    }
}

fn server(s: ServerCli) -> Result<Command, UsageError> {
    let options = Options::default()
        .poll_interval(s.poll_interval)
        .survey_time(s.survey_time)
        .miss_threshold(s.miss_threshold)
        .republish_interval(s.republish_interval)
        .max_peers(s.max_peers)
        .watch_keepalive(s.watch_keepalive)
        .allow_from(&s.allow_from)
        .require_peer_host(s.require_peer_host);
    let options = match s.watch {
        Some(url) => options.watch_url(url),
        None => options,
    };
    let options = match s.watch_broadcast {
        Some(url) => options.watch_broadcast_url(url),
        None => options,
    };
    let options = match s.max_connections {
        Some(n) => options.max_connections(n),
        None => options,
    };
    let options = match s.ipc_mode {
        Some(mode) => options.ipc_permissions(mode),
        None => options,
    };
    check_options(&options)?;
    Ok(Command::Server(ServerArgs {
        survey: s.survey,
        publish: s.publish,
        options,
        metrics: s.metrics,
        tls: s.tls.files(),
    }))
}

fn join(j: JoinCli) -> Result<Command, UsageError> {
    if j.json && j.publish.is_empty() && j.watch.is_empty() {
        return usage(
            "--json needs --publish URL or --watch URL (join prints lists only with one of them)",
        );
    }
    once_each("--survey", &j.survey)?;
    once_each("--publish", &j.publish)?;
    once_each("--watch", &j.watch)?;
    let watch_keepalive = watch_keepalive(j.watch_keepalive, &j.watch, "join")?;
    Ok(Command::Join(JoinArgs {
        survey: j.survey,
        name: j.name,
        publish: j.publish,
        watch: j.watch,
        watch_keepalive,
        json: j.json,
        check: j.check,
        check_interval: j.check_interval,
        check_timeout: j.check_timeout,
        rise: j.rise,
        fall: j.fall,
        maintenance_file: j.maintenance_file,
        drain: j.drain,
        silence_timeout: j.silence_timeout,
        tls: j.tls.files(),
    }))
}

fn watch(w: WatchCli) -> Result<Command, UsageError> {
    once_each("--publish", &w.publish)?;
    once_each("--watch", &w.watch)?;
    let watch_keepalive = watch_keepalive(w.watch_keepalive, &w.watch, "watch")?;
    Ok(Command::Watch(WatchArgs {
        publish: w.publish,
        watch: w.watch,
        watch_keepalive,
        json: w.json,
        exec: w.exec,
        once: w.once,
        silence_timeout: w.silence_timeout,
        tls: w.tls.files(),
    }))
}

/// The watch keepalive of `join` or `watch` (`command`): as given, which
/// needs `--watch`, or the library's default.
fn watch_keepalive(
    given: Option<Duration>,
    watch: &[String],
    command: &str,
) -> Result<Duration, UsageError> {
    match given {
        Some(_) if watch.is_empty() => usage(format!(
            "--watch-keepalive needs --watch URL (see 'nng-discovery {command} --help')"
        )),
        Some(d) => Ok(d),
        None => Ok(default_watch_keepalive()),
    }
}

/// The library's default watch keepalive (the default options are valid).
fn default_watch_keepalive() -> Duration {
    Options::default()
        .follow_settings()
        .map_or(Duration::from_secs(10), |s| s.watch_keepalive)
}

/// Refuses a URL given twice to a repeatable `flag` (one per server: a
/// duplicate is almost always a configuration mistake).
fn once_each(flag: &str, urls: &[String]) -> Result<(), UsageError> {
    for (i, url) in urls.iter().enumerate() {
        if urls[..i].contains(url) {
            return usage(format!("{flag} {url} given twice (give each server once)"));
        }
    }
    Ok(())
}

/// The completion script for `shell`, generated from the command line
/// declared above.
fn completions(shell: Shell) -> String {
    use clap_complete::shells::{Bash, Fish, Zsh};
    // Into memory first: clap_complete panics on a write error, and a
    // closed stdout is no reason to. Each generator is named by its own
    // type, not through clap_complete::Shell, whose match would link the
    // elvish and PowerShell generators too (about 10 KB we never call).
    let mut script = Vec::new();
    let (cli, name) = (&mut Cli::command(), "nng-discovery");
    match shell {
        Shell::Bash => clap_complete::generate(Bash, cli, name, &mut script),
        Shell::Zsh => clap_complete::generate(Zsh, cli, name, &mut script),
        Shell::Fish => clap_complete::generate(Fish, cli, name, &mut script),
    }
    String::from_utf8_lossy(&script).into_owned()
}

fn duration_arg(value: &str) -> Result<Duration, String> {
    duration::parse(value).ok_or_else(|| "expected a duration like 250ms or 2s".to_owned())
}

fn nonzero_duration_arg(value: &str) -> Result<Duration, String> {
    match duration::parse(value) {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err("expected a duration greater than zero".to_owned()),
        None => Err("expected a duration like 250ms or 2s".to_owned()),
    }
}

fn path_arg(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        Err("expected a file path".to_owned())
    } else {
        Ok(PathBuf::from(value))
    }
}

fn count_arg<T: std::str::FromStr + TryFrom<u8> + PartialOrd>(value: &str) -> Result<T, String> {
    let one = T::try_from(1u8).ok();
    match value.parse::<T>() {
        // Leading '+' is accepted by FromStr; refuse it for clarity.
        Ok(n) if !value.starts_with('+') && one.is_some_and(|one| n >= one) => Ok(n),
        _ => Err("expected a whole number of at least 1".to_owned()),
    }
}

fn octal_mode_arg(value: &str) -> Result<u32, String> {
    match u32::from_str_radix(value, 8) {
        Ok(mode) if mode <= 0o777 && !value.starts_with('+') => Ok(mode),
        _ => Err("expected an octal file mode from 0 to 777, e.g. 660".to_owned()),
    }
}

fn socket_addr_arg(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:9464 or [::]:9464".to_owned())
}

fn name_arg(value: &str) -> Result<String, String> {
    match wire::validate_name(value) {
        Ok(()) => Ok(value.to_owned()),
        Err(reason) => Err(reason.to_string()),
    }
}

fn command_arg(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err("expected a shell command".to_owned())
    } else {
        Ok(value.to_owned())
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
        Err(e) => usage(e.report()),
    }
}

fn flag_of(option: &str) -> String {
    if option == "ipc_permissions" {
        return "--ipc-mode".to_owned();
    }
    format!("--{}", option.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    /// `server --survey a --publish b` followed by `extra`.
    fn server<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["server", "--survey", "a", "--publish", "b"];
        a.extend_from_slice(extra);
        a
    }

    fn err(s: &[&str]) -> String {
        match parse(&args(s)) {
            Err(UsageError(m)) => {
                assert_eq!(m.lines().count(), 1, "{s:?}: not one line: {m}");
                m
            }
            Ok(c) => panic!("{s:?} parsed as {c:?}"),
        }
    }

    fn printed(s: &[&str]) -> String {
        match parse(&args(s)) {
            Ok(Command::Print(text)) => text,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn clap_accepts_the_declaration() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_its_environment_variable() {
        let cli = Cli::command();
        let mut seen = 0;
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if long == "help" {
                    continue;
                }
                let want = crate::clap_errors::env_var(long);
                assert_eq!(
                    arg.get_env().and_then(|e| e.to_str()),
                    Some(want.as_str()),
                    "{} --{long}",
                    command.get_name()
                );
                seen += 1;
            }
        }
        assert!(seen >= 30, "{seen} flags");
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
            "--watch",
            "tcp://127.0.0.1:0",
            "--watch-keepalive",
            "2s",
            "--watch-broadcast",
            "tcp://127.0.0.1:0",
        ]))
        .unwrap();
        let Command::Server(s) = c else {
            panic!("{c:?}")
        };
        assert_eq!(s.survey, "tcp://127.0.0.1:0");
        assert_eq!(s.publish, "ipc:///tmp/x");
        let o = s.options.server_settings().unwrap();
        assert_eq!(o.poll_interval, Duration::from_secs(1));
        assert_eq!(o.survey_time, Duration::from_millis(250));
        assert_eq!(o.miss_threshold, 3);
        assert_eq!(o.republish_interval, Duration::from_secs(60));
        assert_eq!(o.max_peers, 100);
        assert_eq!(o.watch_url.as_deref(), Some("tcp://127.0.0.1:0"));
        assert_eq!(o.watch_keepalive, Duration::from_secs(2));
        assert_eq!(o.watch_broadcast_url.as_deref(), Some("tcp://127.0.0.1:0"));
    }

    #[test]
    fn tls_files_come_in_threes() {
        let three = [
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "c.key",
        ];
        let Command::Server(s) = parse(&args(&server(&three))).unwrap() else {
            panic!()
        };
        let want = TlsFiles {
            ca: "ca.pem".into(),
            cert: "c.pem".into(),
            key: "c.key".into(),
        };
        assert_eq!(s.tls, Some(want.clone()));
        let mut join = vec!["join", "--survey", "tcp://h:1", "--name", "n"];
        join.extend(three);
        let Command::Join(j) = parse(&args(&join)).unwrap() else {
            panic!()
        };
        assert_eq!(j.tls, Some(want.clone()));
        let mut watch = vec!["watch", "--publish", "tcp://h:1"];
        watch.extend(three);
        let Command::Watch(w) = parse(&args(&watch)).unwrap() else {
            panic!()
        };
        assert_eq!(w.tls, Some(want));
        let Command::Server(s) = parse(&args(&server(&[]))).unwrap() else {
            panic!()
        };
        assert_eq!(s.tls, None);
        let m = err(&server(&["--tls-ca", "ca.pem"]));
        assert!(m.contains("--tls-cert") && m.contains("--tls-key"), "{m}");
    }

    #[test]
    fn server_security_flags() {
        let Command::Server(s) = parse(&args(&server(&[
            "--allow-from",
            "10.0.0.0/8",
            "--allow-from=fd00::/8",
            "--max-connections",
            "500",
            "--require-peer-host",
            "--ipc-mode",
            "660",
        ])))
        .unwrap() else {
            panic!()
        };
        let o = s.options.server_settings().unwrap();
        assert_eq!(o.allow_from, ["10.0.0.0/8", "fd00::/8"]);
        assert_eq!(o.max_connections, 500);
        assert!(o.require_peer_host);
        assert_eq!(o.ipc_permissions, Some(0o660));

        let m = err(&server(&["--allow-from", "10.0.0.1/8"]));
        assert!(m.starts_with("invalid --allow-from: \"10.0.0.1/8\""), "{m}");
        assert!(err(&server(&["--ipc-mode", "888"])).starts_with("invalid --ipc-mode \"888\""));
        assert!(err(&server(&["--ipc-mode", "1777"])).starts_with("invalid --ipc-mode \"1777\""));
        assert!(err(&server(&["--max-connections", "0"]))
            .starts_with("invalid --max-connections \"0\""));
    }

    #[test]
    fn server_defaults_are_the_library_defaults() {
        let Command::Server(s) = parse(&args(&server(&[]))).unwrap() else {
            panic!()
        };
        assert_eq!(s.options, Options::default());
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert_eq!(
            err(&server(&["--poll-interval", "abc"])),
            r#"invalid --poll-interval "abc": expected a duration like 250ms or 2s"#
        );
        assert_eq!(
            err(&server(&["--miss-threshold", "0"])),
            r#"invalid --miss-threshold "0": expected a whole number of at least 1"#
        );
        assert!(err(&server(&["--max-peers=-4"])).starts_with("invalid --max-peers \"-4\""));
        assert!(err(&server(&["--max-peers=+4"])).starts_with("invalid --max-peers \"+4\""));
        let m = err(&server(&["--survey-time", "2s", "--poll-interval", "1s"]));
        assert!(m.starts_with("invalid --survey-time: "), "{m}");
        assert!(m.contains("--poll-interval"), "{m}");
        let m = err(&server(&["--poll-interval", "0s"]));
        assert!(m.starts_with("invalid --poll-interval: "), "{m}");
        assert_eq!(
            err(&server(&["--watch-keepalive", "0s"])),
            r#"invalid --watch-keepalive "0s": expected a duration greater than zero"#
        );
        assert!(err(&server(&["--watch"])).starts_with("--watch needs a value"));
    }

    #[test]
    fn metrics_takes_an_ip_and_port() {
        let parsed = |extra: &[&str]| {
            let a = server(extra);
            match parse(&args(&a)) {
                Ok(Command::Server(s)) => s.metrics,
                other => panic!("{a:?}: {other:?}"),
            }
        };
        assert_eq!(parsed(&[]), None);
        assert_eq!(
            parsed(&["--metrics", "127.0.0.1:9464"]),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            parsed(&["--metrics=[::1]:0"]),
            Some("[::1]:0".parse().unwrap())
        );
        for bad in ["localhost:9464", "127.0.0.1", "9464", "1.2.3.4:99999", ""] {
            let m = err(&server(&["--metrics", bad]));
            assert_eq!(
                m,
                format!(
                    "invalid --metrics {bad:?}: expected IP:PORT, e.g. 127.0.0.1:9464 or [::]:9464"
                )
            );
        }
        assert!(err(&server(&["--metrics"])).starts_with("--metrics needs a value"));
    }

    #[test]
    fn structural_errors() {
        assert!(err(&[]).contains("a command is needed"));
        assert_eq!(
            err(&["serve"]),
            "unknown command \"serve\": did you mean \"server\"? (see 'nng-discovery --help')"
        );
        assert!(err(&["server", "--publish", "b"]).starts_with("server needs --survey URL"));
        assert!(err(&["server", "--survey", "a"]).starts_with("server needs --publish URL"));
        assert!(err(&["server", "--survey"]).starts_with("--survey needs a value"));
        assert!(err(&["server", "--survey", "--publish", "b"])
            .starts_with("--survey needs a value, not the option --publish"));
        assert_eq!(
            err(&["server", "--surveyy", "a"]),
            "unknown option --surveyy for server: did you mean --survey? \
             (see 'nng-discovery server --help')"
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
        for flag in ["--check-timeout=1s", "--fall=2", "--rise=2"] {
            let m = err(&["join", "--survey", "a", "--name", "n", flag]);
            let name = flag.split('=').next().unwrap();
            assert!(m.starts_with(&format!("{name} needs --check CMD")), "{m}");
        }
        for (flag, value) in [
            ("--check-interval", "0s"),
            ("--check-timeout", "0ms"),
            ("--fall", "0"),
            ("--rise", "x"),
            ("--drain", "soon"),
            ("--maintenance-file", ""),
        ] {
            let m = err(&[
                "join", "--survey", "a", "--name", "n", "--check", "true", flag, value,
            ]);
            assert!(m.starts_with(&format!("invalid {flag} ")), "{m}");
        }
        assert!(
            err(&["join", "--survey", "a", "--name", "n", "--check", " "])
                .starts_with("invalid --check \" \": ")
        );
        assert!(err(&["watch", "--publish", "a", "--exec", " "]).starts_with("invalid --exec"));
        let m = err(&["watch", "--publish", "a", "--exec", "x", "--once"]);
        assert!(
            m.starts_with("--exec and --once cannot be used together"),
            "{m}"
        );
        assert!(err(&["help", "nope"]).starts_with("unknown command \"nope\""));
        assert!(err(&["completions", "tcsh"])
            .starts_with("invalid SHELL \"tcsh\": expected bash, zsh, fish"));
        assert!(err(&["completions"]).starts_with("completions needs SHELL"));
        // Only the top level has --version.
        assert!(err(&["server", "--version"]).starts_with("unknown option --version for server"));
    }

    #[test]
    fn help_everywhere() {
        let main = printed(&["--help"]);
        assert!(
            main.starts_with("nng-discovery: service discovery"),
            "{main}"
        );
        let server = printed(&["server", "--help"]);
        assert!(server.starts_with("nng-discovery server: "), "{server}");
        let join = printed(&["join", "--help"]);
        let watch = printed(&["watch", "--help"]);
        let completions = printed(&["completions", "--help"]);
        assert!(completions.contains("bash") && completions.contains("fish"));
        // clap wraps nothing without its `wrap_help` feature (left out: it
        // probes the terminal), so the texts are laid out to fit.
        for text in [&main, &server, &join, &watch, &completions] {
            for line in text.lines() {
                assert!(line.chars().count() <= 80, "too long: {line:?}");
            }
        }
        for (a, want) in [
            (&["-h"][..], &main),
            (&["help"][..], &main),
            (&["help", "watch"][..], &watch),
            (&["server", "--survey", "a", "-h"][..], &server),
            (&["join", "-h"][..], &join),
            (&["help", "join"][..], &join),
            (&["watch", "-h"][..], &watch),
            // Help wins over errors that come after it.
            (&["watch", "--help", "--bogus"][..], &watch),
        ] {
            assert_eq!(&printed(a), want, "{a:?}");
        }
        assert_eq!(
            printed(&["--version"]),
            format!("nng-discovery {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(printed(&["-V"]), printed(&["--version"]));
    }

    #[test]
    fn help_shows_the_defaults() {
        let server = printed(&["server", "--help"]);
        for default in [
            "[default: 5s]",
            "[default: 1s]",
            "[default: 2]",
            "[default: 30s]",
            "[default: 65536]",
        ] {
            assert!(server.contains(default), "{default}:\n{server}");
        }
    }

    #[test]
    fn completions_for_each_shell() {
        for shell in ["bash", "zsh", "fish"] {
            let script = printed(&["completions", shell]);
            // fish writes options as `-l poll-interval`.
            for word in ["server", "join", "watch", "poll-interval", "exec"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }

    #[test]
    fn join_health_flags() {
        let join = |extra: &[&str]| {
            let mut a = vec!["join", "--survey", "s", "--name", "n"];
            a.extend_from_slice(extra);
            match parse(&args(&a)) {
                Ok(Command::Join(j)) => j,
                other => panic!("{a:?}: {other:?}"),
            }
        };
        let j = join(&[]);
        assert_eq!(
            (j.check, j.check_interval, j.check_timeout, j.rise, j.fall),
            (None, Duration::from_secs(5), Duration::from_secs(2), 1, 1)
        );
        assert_eq!((j.maintenance_file, j.drain), (None, None));
        assert_eq!(j.silence_timeout, Duration::from_secs(30));
        let j = join(&[
            "--check",
            "test -e /x",
            "--check-interval=100ms",
            "--check-timeout",
            "50ms",
            "--fall",
            "3",
            "--rise=2",
            "--maintenance-file",
            "/tmp/m",
            "--drain",
            "1s",
        ]);
        assert_eq!(j.check.as_deref(), Some("test -e /x"));
        assert_eq!(j.check_interval, Duration::from_millis(100));
        assert_eq!(j.check_timeout, Duration::from_millis(50));
        assert_eq!((j.fall, j.rise), (3, 2));
        assert_eq!(j.maintenance_file, Some(PathBuf::from("/tmp/m")));
        assert_eq!(j.drain, Some(Duration::from_secs(1)));
        // Without --check, the maintenance file and drain work alone.
        let j = join(&["--maintenance-file=/m", "--drain=0s", "--check-interval=1s"]);
        assert_eq!(j.drain, Some(Duration::ZERO));
        let help = printed(&["join", "--help"]);
        for flag in [
            "--check <CMD>",
            "--check-interval <DURATION>",
            "--check-timeout <DURATION>",
            "--fall <N>",
            "--rise <N>",
            "--maintenance-file <PATH>",
            "--drain <DURATION>",
        ] {
            assert!(help.contains(flag), "{flag}:\n{help}");
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
            (j.survey, j.name.as_str(), j.publish, j.json),
            (
                vec!["s".to_string()],
                "http://a b",
                vec!["p".to_string()],
                true
            )
        );
        let Command::Watch(w) =
            parse(&args(&["watch", "--exec", "echo $X", "--publish", "p"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (w.publish, w.json, w.exec.as_deref()),
            (vec!["p".to_string()], false, Some("echo $X"))
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
        assert_eq!(w.silence_timeout, Duration::from_secs(30));
        let Command::Watch(w) =
            parse(&args(&["watch", "--publish", "p", "--silence-timeout=0s"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(w.silence_timeout, Duration::ZERO);
    }

    #[test]
    fn join_and_watch_take_several_servers() {
        let Command::Join(j) = parse(&args(&[
            "join",
            "--survey",
            "s1",
            "--name",
            "n",
            "--survey",
            "s2",
            "--publish",
            "p1",
            "--publish=p2",
            "--survey",
            "s3",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(j.survey, ["s1", "s2", "s3"]);
        assert_eq!(j.publish, ["p1", "p2"]);
        let Command::Join(j) = parse(&args(&["join", "--survey", "s", "--name", "n"])).unwrap()
        else {
            panic!()
        };
        assert!(j.publish.is_empty());
        let Command::Watch(w) =
            parse(&args(&["watch", "--publish", "p1", "--publish", "p2"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(w.publish, ["p1", "p2"]);
        assert_eq!(
            err(&["join", "--survey", "a", "--survey", "a", "--name", "n"]),
            "--survey a given twice (give each server once)"
        );
        assert_eq!(
            err(&[
                "watch",
                "--publish",
                "a",
                "--publish",
                "b",
                "--publish",
                "a"
            ]),
            "--publish a given twice (give each server once)"
        );
        assert!(err(&["join", "--name", "n"]).starts_with("join needs --survey URL"));
        assert!(err(&["watch"]).starts_with("watch needs --publish URL or --watch URL"));
    }

    #[test]
    fn join_and_watch_follow_watch_urls_and_never_both_kinds() {
        let Command::Watch(w) = parse(&args(&["watch", "--watch", "w1", "--watch=w2"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(w.watch, ["w1", "w2"]);
        assert!(w.publish.is_empty());
        assert_eq!(w.watch_keepalive, Duration::from_secs(10));
        let Command::Watch(w) = parse(&args(&[
            "watch",
            "--watch-keepalive",
            "250ms",
            "--watch",
            "w",
            "--json",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (w.watch_keepalive, w.json),
            (Duration::from_millis(250), true)
        );
        let Command::Join(j) = parse(&args(&[
            "join", "--survey", "s", "--name", "n", "--watch", "w", "--json",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (j.watch, j.publish.len(), j.json),
            (vec!["w".to_string()], 0, true)
        );
        assert_eq!(j.watch_keepalive, Duration::from_secs(10));

        for command in [
            &["watch", "--publish", "p", "--watch", "w"][..],
            &["watch", "--watch", "w", "--publish", "p"],
            &[
                "join",
                "--survey",
                "s",
                "--name",
                "n",
                "--publish",
                "p",
                "--watch",
                "w",
            ],
        ] {
            let e = err(command);
            assert!(
                e.contains("--publish")
                    && e.contains("--watch")
                    && e.contains("cannot be used together"),
                "{command:?}: {e}"
            );
        }
        assert_eq!(
            err(&["watch", "--watch", "w", "--watch", "w"]),
            "--watch w given twice (give each server once)"
        );
        for command in [
            &["watch", "--publish", "p", "--watch-keepalive", "1s"][..],
            &[
                "join",
                "--survey",
                "s",
                "--name",
                "n",
                "--watch-keepalive",
                "1s",
            ],
        ] {
            assert!(
                err(command).starts_with("--watch-keepalive needs --watch URL"),
                "{command:?}: {}",
                err(command)
            );
        }
        assert!(err(&["watch", "--watch", "w", "--watch-keepalive", "0s"])
            .starts_with("invalid --watch-keepalive \"0s\""));
    }
}
