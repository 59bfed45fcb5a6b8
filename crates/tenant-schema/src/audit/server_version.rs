//! Rule `server-version`: the server is a major tenant-safe was verified on, at a release with
//! every fix of the PostgreSQL bugs that let the application role's SQL reach another org's
//! rows (docs/threat-model.md #27).
//!
//! Two kinds of bug count. Row-level-security bypasses: a policy not applied, or its rows
//! shown through statistics, an error or a cached plan. And memory corruption any SQL user can
//! cause: code run inside the server reads every org's rows, so the database layer's promise
//! (any SQL the application sends stays in its org) holds only on a release that fixed it.
//! Each [`Advisory`] lists the first fixed release of every major it affects; a major it
//! affects with no fixed release (one past its end of life) can only be left.

use super::{Finding, Server, Severity};

/// The majors the generated migrations, the audit's comparisons and every real-server suite
/// were verified on (`cargo xtask test` on 15, `cargo xtask test-matrix` on the others).
pub const VERIFIED_MAJORS: &[i32] = &[15, 16, 17, 18];

/// A group of PostgreSQL security fixes that matter to tenant isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advisory {
    /// The CVE identifiers.
    pub cves: &'static str,
    /// What an unfixed server lets the application role do.
    pub what: &'static str,
    /// Per affected major, the first release with the fix (`server_version_num`). A major
    /// not listed is unaffected when it is newer than every listed one, and unfixed (it was
    /// past its end of life when the fix came) when it is older.
    pub fixed_in: &'static [(i32, i32)],
}

/// The advisories the rule checks, oldest first.
pub const ADVISORIES: &[Advisory] = &[
    Advisory {
        cves: "CVE-2019-10130, CVE-2023-2455, CVE-2023-39418, CVE-2024-4317, CVE-2024-10976, \
               CVE-2024-10978, CVE-2025-8713",
        what: "row-level security bypasses: policies skipped after a role change or by MERGE, \
               and rows of other orgs shown through planner statistics and pg_stats views",
        // The last of them, CVE-2025-8713, was fixed in 17.6, 16.10, 15.14, 14.19 and 13.22,
        // before 18.0 was released.
        fixed_in: &[
            (13, 130_022),
            (14, 140_019),
            (15, 150_014),
            (16, 160_010),
            (17, 170_006),
        ],
    },
    Advisory {
        cves: "CVE-2026-6473",
        what: "an integer wraparound any SQL user can trigger corrupts server memory (possible \
               code execution inside the server, which reads every org's rows)",
        fixed_in: &[
            (14, 140_023),
            (15, 150_018),
            (16, 160_014),
            (17, 170_010),
            (18, 180_004),
        ],
    },
];

/// The advisories whose fix a server of `version_num` lacks.
pub fn missing_fixes(version_num: i32) -> Vec<&'static Advisory> {
    let major = version_num / 10_000;
    ADVISORIES
        .iter()
        .filter(|a| match a.fixed_in.iter().find(|(m, _)| *m == major) {
            Some((_, fixed)) => version_num < *fixed,
            // Older than every major the advisory lists a fix for: never fixed there.
            None => a.fixed_in.iter().all(|(m, _)| major < *m),
        })
        .collect()
}

/// The first release of `major` with every fix of [`ADVISORIES`], as `major.minor`; `None`
/// when some advisory has no fix for it.
fn first_fixed_release(major: i32) -> Option<String> {
    let mut needed = major * 10_000;
    for a in ADVISORIES {
        match a.fixed_in.iter().find(|(m, _)| *m == major) {
            Some((_, fixed)) => needed = needed.max(*fixed),
            None if a.fixed_in.iter().all(|(m, _)| major < *m) => return None,
            None => {}
        }
    }
    Some(format!("{major}.{}", needed % 100))
}

fn newest_verified() -> i32 {
    VERIFIED_MAJORS.iter().copied().max().unwrap_or(15)
}

fn oldest_verified() -> i32 {
    VERIFIED_MAJORS.iter().copied().min().unwrap_or(15)
}

/// The rule's findings on `server`.
pub(super) fn findings(server: &Server) -> Vec<Finding> {
    let num = server.version_num;
    let major = num / 10_000;
    let object = format!("server {num}");
    let mut findings = Vec::new();
    let missing = missing_fixes(num);
    if !missing.is_empty() {
        let why = missing
            .iter()
            .map(|a| format!("{} ({})", a.what, a.cves))
            .collect::<Vec<_>>()
            .join("; ");
        let fix = match first_fixed_release(major) {
            Some(release) => format!("upgrade to {release} or newer (the latest minor of {major})"),
            None => format!(
                "PostgreSQL {major} has no release with these fixes: upgrade to a supported \
                 major ({}-{}) at its latest minor",
                oldest_verified(),
                newest_verified()
            ),
        };
        findings.push(Finding {
            rule: "server-version",
            severity: Severity::Error,
            object: object.clone(),
            why: format!(
                "this release predates fixes that matter to tenant isolation (docs/threat-model.md #27): {why}"
            ),
            fix,
        });
    }
    if major < oldest_verified() {
        findings.push(Finding {
            rule: "server-version",
            severity: Severity::Error,
            object,
            why: format!(
                "PostgreSQL {major} is older than every major tenant-safe supports ({}-{}): the \
                 generated migrations and the audit's comparisons were never verified on it",
                oldest_verified(),
                newest_verified()
            ),
            fix: format!("upgrade to PostgreSQL {} or newer", oldest_verified()),
        });
    } else if !VERIFIED_MAJORS.contains(&major) {
        findings.push(Finding {
            rule: "server-version",
            severity: Severity::Warning,
            object,
            why: format!(
                "PostgreSQL {major} is newer than the majors tenant-safe was verified on ({}-{}): \
                 the suites never ran on it, so a change in how it applies or prints policies is \
                 unknown (the probe's attacks still tell whether isolation holds)",
                oldest_verified(),
                newest_verified()
            ),
            fix: format!(
                "run the probe against it, and check for a tenant-safe release verified on \
                 {major}; until then keep a verified major ({}-{}) in production",
                oldest_verified(),
                newest_verified()
            ),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(version_num: i32) -> Server {
        Server {
            version_num,
            version: format!("PostgreSQL {version_num}"),
        }
    }

    fn verdict(version_num: i32) -> Vec<(Severity, String)> {
        findings(&server(version_num))
            .into_iter()
            .map(|f| (f.severity, f.fix))
            .collect()
    }

    #[test]
    fn every_verified_major_has_a_release_with_every_fix() {
        for major in VERIFIED_MAJORS {
            let release = first_fixed_release(*major);
            assert!(release.is_some(), "PostgreSQL {major}");
        }
        assert_eq!(first_fixed_release(15).as_deref(), Some("15.18"));
        assert_eq!(first_fixed_release(17).as_deref(), Some("17.10"));
        assert_eq!(first_fixed_release(18).as_deref(), Some("18.4"));
    }

    #[test]
    fn the_release_before_each_fix_is_an_error_naming_the_release_that_fixes_it() {
        // The minor just before each major's last fix, and that fix.
        for (major, before, fixed, release) in [
            (15, 150_017, 150_018, "15.18"),
            (16, 160_013, 160_014, "16.14"),
            (17, 170_009, 170_010, "17.10"),
            (18, 180_003, 180_004, "18.4"),
        ] {
            assert_eq!(
                verdict(before),
                vec![(
                    Severity::Error,
                    format!("upgrade to {release} or newer (the latest minor of {major})")
                )],
                "{before}"
            );
            assert_eq!(verdict(fixed), vec![], "{fixed}");
        }
        // An RLS bypass fix is reported by its CVEs (17.5 lacks CVE-2025-8713's fix).
        let why = &findings(&server(170_005))[0].why;
        assert!(
            why.contains("CVE-2025-8713") && why.contains("CVE-2026-6473"),
            "{why}"
        );
        let why = &findings(&server(170_007))[0].why;
        assert!(
            !why.contains("CVE-2025-8713") && why.contains("CVE-2026-6473"),
            "{why}"
        );
    }

    #[test]
    fn a_major_past_its_end_of_life_or_older_than_the_supported_ones_fails() {
        // 13 got the RLS fixes but not CVE-2026-6473's: no release of it is safe.
        let v = verdict(130_022);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].1.contains("has no release with these fixes"), "{v:?}");
        assert_eq!(
            v[1],
            (Severity::Error, "upgrade to PostgreSQL 15 or newer".into())
        );
        // 14.23 has every fix but is not supported.
        assert_eq!(
            verdict(140_023),
            vec![(Severity::Error, "upgrade to PostgreSQL 15 or newer".into())]
        );
        // 12 predates every fix.
        assert_eq!(missing_fixes(120_022).len(), ADVISORIES.len());
    }

    #[test]
    fn a_major_newer_than_the_verified_ones_is_a_warning_not_a_pass() {
        let v = verdict(190_000);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, Severity::Warning);
        assert!(missing_fixes(190_000).is_empty());
    }

    #[test]
    fn every_advisory_lists_majors_in_order_with_releases_of_that_major() {
        for a in ADVISORIES {
            assert!(a.fixed_in.windows(2).all(|w| w[0].0 < w[1].0), "{}", a.cves);
            for (major, fixed) in a.fixed_in {
                assert_eq!(fixed / 10_000, *major, "{}", a.cves);
            }
        }
    }
}
