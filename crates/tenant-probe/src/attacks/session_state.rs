//! Session state left on a pooled connection (the pool family): as org A, a statement leaves
//! something in the session and commits; the next checkout from the same pool (which must have
//! one connection) reads whether it is still there. A pool passes a kind when the plant is
//! refused (a privilege the role lacks), when the next checkout runs on another backend (the
//! connection was discarded), or when it runs on the same backend and the state is gone (the
//! opening undid it). Otherwise whatever one org leaves reaches the next org's transaction:
//! a setting carrying data, a search path that redirects names, a prepared statement under a
//! name the application's driver reuses, a temporary table that shadows a tenant table.

use uuid::Uuid;

use super::pool::PoolUnderTest;

/// One kind of state: what A plants, what the next checkout reads, and the value that says the
/// state is gone.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The attack's name in reports.
    pub name: &'static str,
    /// Run as A, then committed.
    pub plant: &'static str,
    /// One text value, read at the next checkout.
    pub observe: &'static str,
    /// What `observe` reads when the state is gone.
    pub gone: &'static str,
    /// Whether undoing it takes effect only when the undoing transaction commits (`UNLISTEN`
    /// is transactional): then the checkout after next reads it.
    pub at_commit: bool,
}

/// Every kind the probe plants.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "state_session_setting",
        plant: "SELECT set_config('tenant_probe.marker', 'planted', false)",
        observe: "coalesce(current_setting('tenant_probe.marker', true), '')",
        gone: "",
        at_commit: false,
    },
    Kind {
        name: "state_search_path",
        plant: "SET search_path = pg_temp, public",
        observe: "(current_setting('search_path') NOT LIKE 'pg_temp%')::text",
        gone: "true",
        at_commit: false,
    },
    Kind {
        name: "state_read_only_default",
        plant: "SET default_transaction_read_only = on",
        observe: "current_setting('transaction_read_only')",
        gone: "off",
        at_commit: false,
    },
    Kind {
        name: "state_holdable_cursor",
        plant: "DECLARE tenant_probe_cursor CURSOR WITH HOLD FOR SELECT 1",
        observe: "(SELECT count(*) FROM pg_cursors WHERE name = 'tenant_probe_cursor')::text",
        gone: "0",
        at_commit: false,
    },
    Kind {
        name: "state_listen",
        plant: "LISTEN tenant_probe",
        observe: "(SELECT count(*) FROM pg_listening_channels() c WHERE c = 'tenant_probe')::text",
        gone: "0",
        at_commit: true,
    },
    Kind {
        name: "state_advisory_lock",
        plant: "SELECT pg_advisory_lock(741900)",
        observe: "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
                  AND objid = 741900)::text",
        gone: "0",
        at_commit: false,
    },
    Kind {
        name: "state_prepared_statement",
        plant: "PREPARE tenant_probe_statement AS SELECT 1",
        observe: "(SELECT count(*) FROM pg_prepared_statements WHERE name = 'tenant_probe_statement')::text",
        gone: "0",
        at_commit: false,
    },
    Kind {
        name: "state_temporary_table",
        plant: "CREATE TEMP TABLE tenant_probe_temp (x int)",
        observe: "(pg_my_temp_schema() = 0)::text",
        gone: "true",
        at_commit: false,
    },
];

/// What became of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The plant was refused (the reason).
    Refused(String),
    /// The next checkout ran on another backend.
    Discarded,
    /// The next checkout ran on the same backend and the state was gone.
    Undone,
    /// The next checkout ran on the same backend and read this instead.
    Reached(String),
}

/// Plants `kind` as `a` through `pool` and looks at the next checkout.
///
/// # Errors
/// The reason when the next checkout failed (the attack did not run).
pub fn attack(pool: &dyn PoolUnderTest, a: Uuid, kind: &Kind) -> Result<Fate, String> {
    let planted = match pool.execute_in_org(a, kind.plant) {
        Ok(pid) => pid,
        Err(why) => return Ok(Fate::Refused(why)),
    };
    if kind.at_commit {
        pool.query_in_org(a, "1")?;
    }
    let next = pool.query_in_org(a, &format!("({}) || ' ' || pg_backend_pid()", kind.observe))?;
    let (seen, pid) = next.rsplit_once(' ').unwrap_or(("", next.as_str()));
    Ok(if pid != planted {
        Fate::Discarded
    } else if seen == kind.gone {
        Fate::Undone
    } else {
        Fate::Reached(seen.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_name_and_reads_one_value() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        assert!(
            KINDS
                .iter()
                .all(|k| k.name.starts_with("state_") && !k.observe.contains(';'))
        );
    }
}
