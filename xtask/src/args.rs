//! One parser for every command's options: `--name value` pairs and bare `--flag`s. An
//! unknown name, a repeated one, or a name without its value is refused with the usage, so a
//! typo never silently falls back to a default (an operator's `--minute 5` is not 30 minutes).

use std::collections::HashMap;

/// `args` parsed against the names `valued` (each takes a value) and `flags` (none).
pub fn options<'a>(
    args: &[&'a str],
    valued: &[&str],
    flags: &[&str],
) -> Result<HashMap<&'a str, &'a str>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let value = if flags.contains(&arg) {
            ""
        } else if valued.contains(&arg) {
            match it.next() {
                Some(v) if !v.starts_with("--") => *v,
                _ => return Err(format!("{arg} needs a value\n{}", crate::USAGE)),
            }
        } else {
            let known: Vec<&str> = valued.iter().chain(flags).copied().collect();
            return Err(format!(
                "unknown argument `{arg}` (this command takes {})\n{}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
                crate::USAGE
            ));
        };
        if out.insert(arg, value).is_some() {
            return Err(format!("{arg} is given twice"));
        }
    }
    Ok(out)
}

/// The value of `name`, which the command needs.
pub fn required<'a>(o: &HashMap<&'a str, &'a str>, name: &str) -> Result<&'a str, String> {
    o.get(name)
        .copied()
        .ok_or_else(|| format!("{name} is required\n{}", crate::USAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_repeated_and_valueless_options_are_refused_by_name() {
        let valued = ["--org", "--minutes"];
        let ok = options(&["--org", "x", "--write"], &valued, &["--write"]).unwrap();
        assert_eq!((ok["--org"], ok.contains_key("--write")), ("x", true));
        for (args, says) in [
            (
                &["--minute", "5"][..],
                "unknown argument `--minute` (this command takes --org, --minutes, --write)",
            ),
            (&["--org", "a", "--org", "b"], "--org is given twice"),
            (&["--org"], "--org needs a value"),
            (&["--org", "--write"], "--org needs a value"),
            (&["stray"], "unknown argument `stray`"),
        ] {
            let err = options(args, &valued, &["--write"]).unwrap_err();
            assert!(err.contains(says), "{args:?}: {err}");
        }
        let o = options(&["--org", "not-a-uuid"], &valued, &[]).unwrap();
        assert!(
            required(&o, "--minutes")
                .unwrap_err()
                .starts_with("--minutes is required")
        );
    }
}
