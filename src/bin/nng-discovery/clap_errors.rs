//! clap's multi-line error reports turned into the daemon's one line that
//! names the option, value or command at fault ([`one_line`]), with clap's
//! "did you mean" suggestion when it has one. The wording is tested through
//! `args::parse` (args.rs tests, tests/cli.rs).

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::args::COMMANDS;

/// One line for a clap error, naming the option, value or command at
/// fault, with clap's suggestion if it has one. `args` is the command line
/// (without the program name), to name the command in the message.
pub fn one_line(e: &clap::Error, args: &[String]) -> String {
    let string = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let strings = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::StyledStrs(v)) => v.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    // The command given, if any, e.g. "server".
    let command = args
        .first()
        .map(String::as_str)
        .filter(|a| COMMANDS.contains(a));
    let see = match command {
        Some(c) => format!(" (see 'nng-discovery {c} --help')"),
        None => " (see 'nng-discovery --help')".to_owned(),
    };
    let for_command = command.map_or(String::new(), |c| format!(" for {c}"));
    let arg = string(ContextKind::InvalidArg).map(flag_name);
    let value = string(ContextKind::InvalidValue);
    let message = match (e.kind(), arg, value) {
        (ErrorKind::MissingSubcommand, ..) => {
            return "a command is needed: server, join, watch or completions (see 'nng-discovery --help')"
                .to_owned()
        }
        (ErrorKind::InvalidSubcommand, ..) => {
            let given = string(ContextKind::InvalidSubcommand).unwrap_or_default();
            let mut m = format!("unknown command {given:?}");
            if let Some(s) = strings(ContextKind::SuggestedSubcommand).first() {
                m.push_str(&format!(": did you mean {s:?}?"));
            }
            m.push_str(&see);
            return m;
        }
        (ErrorKind::UnknownArgument, Some(arg), _) => {
            let mut m = if arg.starts_with('-') {
                format!("unknown option {arg}{for_command}")
            } else {
                format!("unexpected argument {arg:?}{for_command}")
            };
            if let Some(s) = string(ContextKind::SuggestedArg) {
                m.push_str(&format!(": did you mean {s}?"));
            } else if let Some(s) = strings(ContextKind::Suggested).first() {
                m.push_str(&format!(": {s}"));
            }
            m
        }
        (ErrorKind::MissingRequiredArgument, ..) => {
            // A required group, `<--publish <URL>|--watch <URL>>`, reads
            // "--publish URL or --watch URL".
            let missing: Vec<String> = strings(ContextKind::InvalidArg)
                .iter()
                .map(|a| a.replace(['<', '>'], "").replace('|', " or "))
                .collect();
            // A flag that only makes sense with --check names itself.
            let needs_check = ["--check-timeout", "--fall", "--rise"];
            let given = args.iter().find_map(|a| {
                let flag = a.split('=').next().unwrap_or(a);
                needs_check.iter().find(|f| **f == flag)
            });
            if let Some(flag) = given.filter(|_| missing == ["--check CMD"]) {
                return format!("{flag} needs --check CMD{see}");
            }
            format!(
                "{} needs {}",
                command.unwrap_or("nng-discovery"),
                missing.join(" and ")
            )
        }
        (ErrorKind::ArgumentConflict, Some(arg), _) => {
            let prior: Vec<String> = strings(ContextKind::PriorArg)
                .iter()
                .map(|a| flag_name(a))
                .collect();
            if prior.iter().any(|p| p == &arg) {
                return format!("{arg} given more than once");
            }
            format!("{arg} and {} cannot be used together", prior.join(", "))
        }
        (ErrorKind::InvalidValue, Some(arg), Some("")) => {
            let mut m = format!("{arg} needs a value");
            // clap takes a following "--x" as an option, not as the value.
            let next = args.iter().skip_while(|a| **a != arg).nth(1);
            if let Some(next) = next.filter(|n| n.starts_with('-')) {
                m.push_str(&format!(
                    ", not the option {next} (write {arg}=VALUE for a value that starts with -)"
                ));
            }
            return m;
        }
        (ErrorKind::InvalidValue, Some(arg), Some(value)) => {
            let mut m = format!(
                "invalid {arg} {value:?}: expected {}",
                strings(ContextKind::ValidValue).join(", ")
            );
            if let Some(s) = string(ContextKind::SuggestedValue) {
                m.push_str(&format!(" (did you mean {s:?}?)"));
            }
            m
        }
        (ErrorKind::ValueValidation, Some(arg), Some(value)) => {
            let reason = std::error::Error::source(e)
                .map_or_else(|| "not valid".to_owned(), ToString::to_string);
            let from = from_env(&arg, args);
            return format!("invalid {arg} {value:?}{from}: {reason}");
        }
        (ErrorKind::TooManyValues, Some(arg), Some(value)) => {
            format!("{arg} takes no value, not {value:?}")
        }
        _ => first_line(e),
    };
    format!("{message}{see}")
}

/// `--poll-interval` from clap's `--poll-interval <DURATION>`, and `SHELL`
/// from `<SHELL>`.
fn flag_name(arg: &str) -> String {
    let first = arg.split_whitespace().next().unwrap_or(arg);
    first
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// The first line of clap's own report, without its `error: ` prefix: the
/// fallback for errors we do not word ourselves.
fn first_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let line = rendered.lines().next().unwrap_or("invalid command line");
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// " (from NNG_DISCOVERY_FLAG)" when `flag`'s value came from its
/// environment variable (the flag is not on the command line `args` and the
/// variable is set), else "": an operator must learn which of the two to fix.
fn from_env(flag: &str, args: &[String]) -> String {
    let Some(name) = flag.strip_prefix("--") else {
        return String::new();
    };
    let with_value = format!("{flag}=");
    if args.iter().any(|a| a == flag || a.starts_with(&with_value)) {
        return String::new();
    }
    let var = env_var(name);
    if std::env::var_os(&var).is_some() {
        format!(" (from {var})")
    } else {
        String::new()
    }
}

/// The environment variable of the flag `--name`: NNG_DISCOVERY_ and the
/// name in upper case with '-' as '_' (the `env` of every flag in args.rs).
pub fn env_var(name: &str) -> String {
    format!(
        "NNG_DISCOVERY_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}
