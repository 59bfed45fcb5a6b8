//! What the generator is asked for: the names it uses, the org context's mode and the policy
//! form. The bottom layer of the generator: it depends on nothing else in the crate.

/// How the policies learn the session's org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextMode {
    /// A token signed by the service (`tenant.org_token`), verified by the database: SQL in a
    /// session cannot switch its org, so row-level security holds whatever statement the
    /// application sends (the default).
    #[default]
    Signed,
    /// The opt-in plain mode: a transaction-local setting (`tenant.org_id`) that the policies
    /// believe. It trusts every statement the application sends: any statement can set the
    /// setting to another org (`set_config`, `SET LOCAL`, an injected sub-select) and row-level
    /// security then shows and changes that org's rows (docs/threat-model.md #5). What Citus
    /// needs today (`citus::generate`); the audit reports it (`org-context-trusts-every-statement`).
    TrustEveryStatement,
}

/// Which server the shared objects are written for: break-glass access works differently on
/// Citus (`operator_citus.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// One PostgreSQL server.
    Postgres,
    /// A Citus coordinator and its workers.
    Citus,
}

/// How a policy reads the org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyForm {
    /// Once per statement, in a sub-select (PostgreSQL; about 1.1x of no RLS on a scan).
    #[default]
    SubSelect,
    /// Inline, with no sub-select (what Citus accepts on distributed tables).
    Inline,
}

/// Names the generated SQL uses; the defaults are docs/design.md's conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsOptions {
    /// The session setting holding the org id (`tenant.org_id`).
    pub setting: String,
    /// Owns the tables and runs migrations; NOLOGIN (`tenant_owner`).
    pub owner_role: String,
    /// The application's role; NOBYPASSRLS (`tenant_app`).
    pub app_role: String,
    /// The name of the restrictive tenant policy (`tenant_isolation`).
    pub policy: String,
    /// The name of the permissive policy for the app role (`tenant_app_access`): it carries the
    /// org predicate too (PostgreSQL needs a permissive policy to let any row through; one of
    /// `USING (true)` beside the restrictive one reads as "every row" to a linter that looks at
    /// it alone, and the planner folds the repeated predicate into one: no cost measured).
    pub base_policy: String,
    /// The role people's logins are granted for break-glass access (`tenant_operator`).
    pub operator_role: String,
    /// The role that may read the access log (`tenant_auditor`).
    pub auditor_role: String,
    /// The schema of the access log and its functions (`tenant_audit`).
    pub audit_schema: String,
    /// The operator's read policy (`tenant_operator_read`).
    pub operator_read_policy: String,
    /// The operator's write policy (`tenant_operator_write`).
    pub operator_write_policy: String,
    /// The owner's lookup policy, for the check that an org exists (`tenant_owner_lookup`).
    pub owner_lookup_policy: String,
    /// What a ticket id must match (a PostgreSQL regular expression; `^[A-Z][A-Z0-9]*-[0-9]+$`).
    pub ticket_pattern: String,
    /// The longest access window, in minutes (240).
    pub max_window_minutes: u32,
    /// How the policies learn the org: a token the service signs (the default), or the opt-in
    /// plain setting that trusts every statement (`ContextMode::TrustEveryStatement`).
    pub context: ContextMode,
    /// How the policies read the org: once per statement in a sub-select (PostgreSQL), or
    /// inline (Citus; see `citus::generate`).
    pub policy_form: PolicyForm,
}

impl Default for RlsOptions {
    fn default() -> Self {
        Self {
            setting: "tenant.org_id".into(),
            owner_role: "tenant_owner".into(),
            app_role: "tenant_app".into(),
            policy: "tenant_isolation".into(),
            base_policy: "tenant_app_access".into(),
            operator_role: "tenant_operator".into(),
            auditor_role: "tenant_auditor".into(),
            audit_schema: "tenant_audit".into(),
            operator_read_policy: "tenant_operator_read".into(),
            operator_write_policy: "tenant_operator_write".into(),
            owner_lookup_policy: "tenant_owner_lookup".into(),
            ticket_pattern: "^[A-Z][A-Z0-9]*-[0-9]+$".into(),
            max_window_minutes: 240,
            context: ContextMode::Signed,
            policy_form: PolicyForm::SubSelect,
        }
    }
}

impl RlsOptions {
    /// Checks the options before generating: the setting must be a name `set_config` accepts
    /// (`prefix.name`, letters, digits, `_` and `$`; with any other name the policies would
    /// never see an org), every role, policy and schema name must be non-empty and at most 63
    /// bytes (PostgreSQL cuts longer names, and two could become one), and the access window
    /// positive. Quotes and other characters in names are fine: the SQL quotes every name.
    ///
    /// # Errors
    /// The first problem, naming the option and what to do.
    pub fn validate(&self) -> Result<(), String> {
        let word = |w: &str| {
            w.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        let parts: Vec<&str> = self.setting.split('.').collect();
        if parts.len() < 2 || !parts.iter().all(|w| word(w)) || self.setting.len() > 63 {
            return Err(format!(
                "setting {:?} is not a name set_config accepts: use prefix.name of letters, digits and _ (like tenant.org_id)",
                self.setting
            ));
        }
        for (option, name) in [
            ("owner_role", &self.owner_role),
            ("app_role", &self.app_role),
            ("operator_role", &self.operator_role),
            ("auditor_role", &self.auditor_role),
            ("policy", &self.policy),
            ("base_policy", &self.base_policy),
            ("operator_read_policy", &self.operator_read_policy),
            ("operator_write_policy", &self.operator_write_policy),
            ("owner_lookup_policy", &self.owner_lookup_policy),
            ("audit_schema", &self.audit_schema),
        ] {
            if name.is_empty() || name.len() > 63 || name.contains('\0') {
                return Err(format!(
                    "{option} {name:?} is not a usable PostgreSQL name: use 1 to 63 bytes, no NUL"
                ));
            }
        }
        if self.max_window_minutes == 0 {
            return Err("max_window_minutes is 0: no access window could be granted".into());
        }
        Ok(())
    }
}
