//! The message that opens every scoped transaction: `BEGIN`, the check that the connection
//! carries nothing from an earlier transaction, the reset of what SQL can leave in a session,
//! and the org (a setting or a signed token), as one simple-query message (one round trip).
//!
//! Invariant: nothing a transaction leaves in its session reaches the next transaction on the
//! connection. What the role can leave by SQL falls in three groups:
//!
//! - **Undone here**, in the new transaction, before anything reads the session: every setting changed at
//!   session level (`RESET ALL`: `search_path`, `standard_conforming_strings`, timeouts,
//!   custom settings used to carry data from one transaction to the next, ...), `SET ROLE`
//!   (`RESET ROLE`), `WITH HOLD` cursors (`CLOSE ALL`), `LISTEN` (`UNLISTEN *`), the values
//!   `currval`/`lastval` remember (`DISCARD SEQUENCES`), and session advisory locks
//!   (`pg_advisory_unlock_all()`), and the generator behind `random()` is seeded afresh
//!   (`setseed`, from the client's random source). Then diesel's own connection settings (`TimeZone` UTC,
//!   `client_encoding` UTF8) are set again, since `RESET ALL` took them back too.
//! - **Refused here** (the transaction fails, the pool discards the connection): a temporary
//!   schema (`pg_my_temp_schema() <> 0`: the session created a temporary object, which would
//!   shadow a tenant table for the next user; the generated migration revokes `TEMP`, and the
//!   pool refuses to start for a role that has it), a statement prepared with SQL `PREPARE`
//!   (which could stand in for one of diesel's cached statements, under its name, and run in
//!   the next org's transaction: this cannot be undone without undoing diesel's own prepared
//!   statements, `DEALLOCATE ALL`), and an org or token that survives the reset (a role's or
//!   database's default, which the pool also refuses at start-up).
//! - **Impossible** by privileges (the generated migration, checked by the pool at start-up
//!   and by the audit): creating objects of any kind (temporary ones included: `TEMP` is
//!   revoked from `PUBLIC`; `CREATE` on the database and on schemas), large objects.

use crate::context::{ContextKey, TOKEN_SETTING, past_recorded_text};
use crate::{ORG_SETTING, OrgId};

/// What the opening message says when it finds state it cannot undo.
pub(crate) const LEFTOVER: &str = "was left on this connection by an earlier transaction";

/// The opening message's refusal: reading a setting of this name fails with "unrecognized
/// configuration parameter" and the name, which carries [`LEFTOVER`]. The name has no dot, so
/// no SQL can ever create it (a custom setting needs a prefix and a dot): were it settable,
/// its value would be read instead of failing. One stable function call: the planner keeps it
/// for run time.
const REFUSE_LEFTOVER: &str =
    "current_setting('tenant session state was left on this connection by an earlier transaction')";

/// What the opening cannot undo (see the module docs), read after the reset.
fn stale() -> String {
    format!(
        "current_setting('{ORG_SETTING}', true) > '' OR current_setting('{TOKEN_SETTING}', true) > '' \
         OR pg_my_temp_schema() <> 0 \
         OR EXISTS (SELECT FROM pg_catalog.pg_prepared_statement() p WHERE p.from_sql)"
    )
}

/// What the opening undoes first (see the module docs). `BEGIN` itself names every
/// characteristic of the transaction, since the session defaults apply at `BEGIN`.
const RESET_SESSION: &str = "RESET ALL; RESET ROLE; CLOSE ALL; UNLISTEN *; DISCARD SEQUENCES";
/// The settings part of [`RESET_SESSION`] (what Citus sends on to its workers).
const RESET_SETTINGS: &str = "RESET ALL; RESET ROLE";
/// The rest of [`RESET_SESSION`].
const RESET_OBJECTS: &str = "CLOSE ALL; UNLISTEN *; DISCARD SEQUENCES";

/// diesel's connection settings, which `RESET ALL` took back to the role's defaults, and the
/// session advisory locks.
const CONNECTION_SETTINGS: &str = "set_config('TimeZone', 'UTC', false), \
     set_config('client_encoding', 'UTF8', false), pg_advisory_unlock_all()";

/// `setseed(..)` with a fresh random value: the generator behind `random()` is per backend,
/// not transactional, and exempt from `RESET ALL`, so without it the next transaction on the
/// connection would continue the stream the last one used (a seed set by one org predicts
/// the next org's `random()`, and the values drawn count its rows). In the tail of the
/// message, past what `pg_stat_activity` shows, where the form hides anything.
fn reseed() -> String {
    let bits = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    // 53 random bits mapped onto [-1, 1], the range setseed takes.
    let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
    format!("setseed({:.17})", unit * 2.0 - 1.0)
}

/// How the opening message sets the org: exactly one of these forms.
#[derive(Clone, Copy)]
pub(crate) enum Opening<'k> {
    /// `set_config('tenant.org_id', ..., true)`.
    Setting,
    /// `set_config('tenant.org_id', ..., true)`, the org id placed past the first `usize`
    /// bytes of the message, the statement text other sessions see in `pg_stat_activity`.
    HiddenSetting(usize),
    /// `SET LOCAL tenant.org_id = '...'` (Citus).
    SetLocal,
    /// A signed token for this backend, and the plain setting as well when `org_setting` (a
    /// database where some tenant table's policy or default still reads the setting).
    Signed {
        /// The service's context key.
        key: &'k ContextKey,
        /// The connection's backend, which the token names.
        backend: crate::context::Backend,
        /// Whether to set `tenant.org_id` too.
        org_setting: bool,
    },
}

impl Opening<'_> {
    /// How the org is set, as tracing names it.
    pub(crate) fn mode(&self) -> &'static str {
        match self {
            Opening::Setting => "setting",
            Opening::HiddenSetting(_) => "hidden_setting",
            Opening::SetLocal => "set_local",
            Opening::Signed { .. } => "signed",
        }
    }

    /// The whole message for `org`, opening with `begin` (`BEGIN` and the isolation level).
    ///
    /// The org is formatted by us as 36 characters of `[0-9a-f-]`, a token's characters are
    /// `[0-9a-zA-Z_.-]`: nothing to inject.
    pub(crate) fn message(self, begin: &str, org: OrgId) -> String {
        let head = format!("{begin}; {RESET_SESSION}; SELECT {CONNECTION_SETTINGS}, ");
        // The value set only when nothing stale is found: `{guard}'<value>' END`. The hidden
        // forms split the message after the guard, so that the value is past what other
        // sessions see.
        let guard = format!("CASE WHEN {} THEN {REFUSE_LEFTOVER} ELSE ", stale());
        let org_id = org.sql_literal();
        let seed = reseed();
        match self {
            // Citus sends SET LOCAL (not set_config) on to its workers, and every RESET, as
            // the text of the query that ran it: for a statement of this message, the whole
            // message. In DO blocks, the text it sends is the statement's own, so that the
            // workers run the resets and the org, and nothing else of the opening.
            Opening::SetLocal => format!(
                "{begin}; DO $$BEGIN {RESET_SETTINGS}; END$$; {RESET_OBJECTS}; \
                 SELECT {CONNECTION_SETTINGS}, {guard}NULL END, {seed}; \
                 DO $$BEGIN SET LOCAL {ORG_SETTING} = '{org_id}'; END$$"
            ),
            Opening::Setting => {
                format!("{head}set_config('{ORG_SETTING}', {guard}'{org_id}' END, true), {seed}")
            }
            Opening::HiddenSetting(recorded) => past_recorded_text(
                &format!("{head}set_config('{ORG_SETTING}', {guard}"),
                &format!("'{org_id}' END, true), {seed}"),
                recorded,
            ),
            Opening::Signed {
                key,
                backend,
                org_setting,
            } => {
                // The plain setting only where something still reads it: it costs about 3%
                // of a point lookup's transaction (the bench, side by side), and is one more
                // thing SQL in the session could change. Both go past the statement text
                // PostgreSQL records for pg_stat_activity, where other sessions of the role
                // could read them.
                let plain = if org_setting {
                    format!(", set_config('{ORG_SETTING}', '{org_id}', true)")
                } else {
                    String::new()
                };
                past_recorded_text(
                    &format!("{head}set_config('{TOKEN_SETTING}', {guard}"),
                    &format!(
                        "'{}' END, true){plain}, {seed}",
                        key.token(org, backend.pid())
                    ),
                    backend.recorded_text(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_a_setting_no_sql_can_create() {
        // A custom setting needs a dot in its name; this one has none, so reading it always
        // fails, and the message carries LEFTOVER.
        let name = REFUSE_LEFTOVER
            .strip_prefix("current_setting('")
            .and_then(|r| r.strip_suffix("')"))
            .unwrap();
        assert!(name.ends_with(LEFTOVER), "{name}");
        assert!(!name.contains('.') && !name.contains('\''), "{name}");
    }

    #[test]
    fn the_reset_parts_make_the_whole_reset() {
        assert_eq!(RESET_SESSION, format!("{RESET_SETTINGS}; {RESET_OBJECTS}"));
    }

    /// Citus sends a top-level SET LOCAL or RESET on to the workers as the text of the whole
    /// message: in the Citus form, each is alone in a DO block.
    #[test]
    fn the_citus_form_runs_every_set_and_reset_in_a_do_block_of_its_own() {
        let org: OrgId = "7f9c2ad8-4c49-4f6c-9d0e-3c5b0d8a1e21".parse().unwrap();
        let m = Opening::SetLocal.message("BEGIN", org);
        let outside_do: String = m
            .split("DO $$")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    part.split_once("END$$").map_or("", |(_, rest)| rest)
                }
            })
            .collect();
        assert!(
            !outside_do.contains("RESET") && !outside_do.contains("SET LOCAL"),
            "{m}"
        );
        assert!(
            m.ends_with(&format!(
                "DO $$BEGIN SET LOCAL tenant.org_id = '{org}'; END$$"
            )),
            "{m}"
        );
    }

    #[test]
    fn every_form_resets_then_checks_and_sets_the_org_last() {
        let org: OrgId = "7f9c2ad8-4c49-4f6c-9d0e-3c5b0d8a1e21".parse().unwrap();
        let key = ContextKey::new("k1", &[7; 32]).unwrap();
        let backend = crate::context::Backend::for_tests(4242, 1024);
        for opening in [
            Opening::Setting,
            Opening::HiddenSetting(1024),
            Opening::SetLocal,
            Opening::Signed {
                key: &key,
                backend,
                org_setting: true,
            },
        ] {
            let m = opening.message("BEGIN", org);
            let reset = m.find("RESET ALL").unwrap_or(usize::MAX);
            let settings = m.find("'TimeZone'").unwrap_or(usize::MAX);
            let check = m.find("pg_my_temp_schema").unwrap_or(usize::MAX);
            let set = m
                .rfind("'7f9c2ad8")
                .or_else(|| m.rfind("'v1."))
                .unwrap_or(0);
            assert!(
                m.starts_with("BEGIN; RESET ALL;")
                    || m.starts_with("BEGIN; DO $$BEGIN RESET ALL; RESET ROLE; END$$;"),
                "{m}"
            );
            assert!(reset < settings && settings < check && check < set, "{m}");
        }
    }
}
