//! What every room's settings are made of. Each room declares its own settings, with their
//! environment variables, defaults and help, as a clap `Args` struct (`db::settings`,
//! `http::settings`, …); `settings` gathers them and applies the rules that span rooms. This
//! module holds what they share: the value parsers (durations, numbers in a range,
//! switches, lists), the reading of the environment (or of a map, in tests) through clap,
//! and [`ConfigError`], the one line a bad value stops start-up with.
//!
//! A variable that is set but empty counts as unset, as in most shells' `VAR=` idiom.

use std::{collections::HashMap, ffi::OsString, fmt, time::Duration};

use clap::{Args, Command, FromArgMatches, error::ContextKind, error::ContextValue};

/// A setting that could not be used. `Display` is the one line `main` prints before exiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Reads `T` (a struct of settings) from the process environment.
pub fn from_env<T: Args + FromArgMatches>() -> Result<T, ConfigError> {
    let command = without_empty_env(T::augment_args(Command::new("taskql")));
    read(&command, vec![OsString::from("taskql")])
}

/// Reads `T` from `vars` alone, as if they were the environment: the process environment is
/// not looked at (tests run many servers in one process, each with settings of its own).
pub fn from_vars<T: Args + FromArgMatches>(
    vars: &HashMap<String, String>,
) -> Result<T, ConfigError> {
    let command = T::augment_args(Command::new("taskql")).mut_args(|arg| arg.env(None::<&str>));
    let source = T::augment_args(Command::new("taskql"));
    let mut args = vec![OsString::from("taskql")];
    for arg in source.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        if let Some(value) = env.to_str().and_then(|env| vars.get(env))
            && !value.trim().is_empty()
        {
            args.push(OsString::from(format!("--{long}={value}")));
        }
    }
    read(&command, args).map_err(|mut err| {
        // The command had its variables removed: name the one of the source.
        if let Some(env) = source
            .get_arguments()
            .find(|arg| arg.get_long() == Some(err.var.as_str()))
            .and_then(|arg| arg.get_env())
        {
            err.var = env.to_string_lossy().into_owned();
        }
        err
    })
}

/// `command` without the variables that are set but empty, so that they count as unset.
pub fn without_empty_env(command: Command) -> Command {
    let mut command = command.mut_args(|arg| {
        let empty = arg
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|value| value.to_string_lossy().trim().is_empty());
        if empty { arg.env(None::<&str>) } else { arg }
    });
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, without_empty_env);
    }
    command
}

fn read<T: FromArgMatches>(command: &Command, args: Vec<OsString>) -> Result<T, ConfigError> {
    let matches = command
        .clone()
        .try_get_matches_from(args)
        .map_err(|err| setting_error(command, &err))?;
    T::from_arg_matches(&matches).map_err(|err| setting_error(command, &err))
}

/// The setting a clap error is about, named by its environment variable (or, failing that,
/// its long flag), and what is wrong with its value, in one line.
pub fn setting_error(command: &Command, err: &clap::Error) -> ConfigError {
    let invalid = err
        .get(ContextKind::InvalidArg)
        .and_then(|value| match value {
            ContextValue::String(name) => Some(name.clone()),
            _ => None,
        });
    let arg = invalid.as_deref().and_then(|name| {
        // "--port <PORT>": the flag's long name.
        let long = name.trim_start_matches('-').split([' ', '=']).next()?;
        all_arguments(command).find(|arg| arg.get_long() == Some(long))
    });
    let var = arg
        .and_then(|arg| {
            arg.get_env()
                .map(|env| env.to_string_lossy().into_owned())
                .or_else(|| arg.get_long().map(str::to_owned))
        })
        .unwrap_or_else(|| "arguments".to_owned());
    // The value parser's own message when there is one; clap's first line otherwise.
    let problem = std::error::Error::source(err).map_or_else(
        || {
            err.to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned()
        },
        ToString::to_string,
    );
    ConfigError::new(var, problem)
}

fn all_arguments(command: &Command) -> Box<dyn Iterator<Item = &clap::Arg> + '_> {
    Box::new(
        command
            .get_arguments()
            .chain(command.get_subcommands().flat_map(all_arguments)),
    )
}

/// The environment variables `command` reads, with their subcommands'.
pub fn variables(command: &Command) -> Vec<String> {
    let mut vars: Vec<String> = all_arguments(command)
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    vars.sort();
    vars.dedup();
    vars
}

/// The longest duration a setting may have: ten years.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `10s`, `500ms`, `2m`, `3h`, `30d` or a bare number of seconds, above zero.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(raw)?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

/// A duration where 0 means "off": `0`, `10s`, `500ms`, `2m`, `3h` or `30d`.
pub fn parse_duration_or_zero(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let expected = || "expected a duration such as 10s, 500ms, 2m, 3h or 30d".to_owned();
    let amount: u64 = digits.parse().map_err(|_| expected())?;
    let seconds = |per: u64| Duration::from_secs(amount.saturating_mul(per));
    let duration = match unit.trim() {
        "" | "s" => seconds(1),
        "ms" => Duration::from_millis(amount),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => return Err(expected()),
    };
    // Durations become deadlines (`Instant + Duration`, which panics past the clock's range):
    // nothing taskql waits for is longer than this.
    if duration > MAX_DURATION {
        return Err("must be at most 3650d".to_owned());
    }
    Ok(duration)
}

/// A whole number from `MIN` to `MAX`.
pub fn whole<T, const MIN: i128, const MAX: i128>(raw: &str) -> Result<T, String>
where
    T: TryFrom<i128>,
{
    let raw = raw.trim();
    let expected = format!("expected a whole number from {MIN} to {MAX}");
    let value: i128 = raw.parse().map_err(|_| {
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            format!("{raw} is out of range; {expected}")
        } else {
            format!("{raw:?} is not a number; {expected}")
        }
    })?;
    if !(MIN..=MAX).contains(&value) {
        return Err(format!("{value} is out of range; {expected}"));
    }
    T::try_from(value).map_err(|_| format!("{value} is out of range; {expected}"))
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
pub fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{raw:?} is not a boolean; expected true or false")),
    }
}

/// The non-empty items of a comma-separated list, trimmed.
pub fn items(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_duration_or_zero("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("3651d").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
    }

    #[test]
    fn numbers_say_why_they_are_refused() {
        assert_eq!(whole::<u16, 0, 65535>("8080"), Ok(8080));
        assert!(whole::<u16, 0, 65535>("eighty").is_err_and(|e| e.contains("not a number")));
        assert!(whole::<u16, 0, 65535>("70000").is_err_and(|e| e.contains("out of range")));
        assert!(
            whole::<u16, 0, 65535>("99999999999999999999999999999999999999999")
                .is_err_and(|e| e.contains("out of range"))
        );
        assert!(whole::<u32, 1, 10>("0").is_err_and(|e| e.contains("out of range")));
        assert_eq!(boolean(" Yes "), Ok(true));
        assert!(boolean("later").is_err_and(|e| e.contains("not a boolean")));
        assert_eq!(items(" a, ,b ,").collect::<Vec<_>>(), ["a", "b"]);
    }
}
