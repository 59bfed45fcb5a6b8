//! The generator of the SQL differential: statements over the story's tables, from a seed
//! (the test's campaigns) or from a fuzzer's bytes (`fuzz/fuzz_targets/sql_differential.rs`).

/// Functions the generator calls that the checker must refuse wherever they appear.
pub const REFUSED_CALLS: &[&str] = &[
    "query_to_xml(",
    "set_config(",
    "table_to_xml(",
    "current_setting(",
    "ts_diff.others(",
];

/// Functions the generator calls that the checker allows.
pub const ALLOWED_CALLS: &[&str] = &["lower(", "coalesce(upper(", "abs(length(btrim(", "md5("];

/// Where the generator's choices come from: xorshift64* from a seed (the test's campaigns),
/// or a fuzzer's input, one byte a choice (0 once it is used up), so that a mutation of the
/// input is a change of the statement's shape.
enum Rng {
    Seeded(u64),
    Bytes { bytes: Vec<u8>, at: usize },
}

impl Rng {
    fn next(&mut self) -> u64 {
        match self {
            Self::Seeded(s) => {
                *s ^= *s >> 12;
                *s ^= *s << 25;
                *s ^= *s >> 27;
                s.wrapping_mul(0x2545_f491_4f6c_dd1d)
            }
            Self::Bytes { bytes, at } => {
                let b = bytes.get(*at).copied().unwrap_or(0);
                *at += 1;
                u64::from(b)
            }
        }
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// A table the generator uses: name, org column (None: global), other columns.
struct Table {
    name: &'static str,
    org: Option<&'static str>,
    columns: &'static [&'static str],
}

const TABLES: &[Table] = &[
    Table {
        name: "customers",
        org: Some("org_id"),
        columns: &["id", "name", "email"],
    },
    Table {
        name: "deals",
        org: Some("org_id"),
        columns: &["id", "customer_id", "title", "amount_cents", "stage"],
    },
    Table {
        name: "orgs",
        org: Some("id"),
        columns: &["name"],
    },
    Table {
        name: "currencies",
        org: None,
        columns: &["code", "name"],
    },
];

/// Statements over the story's tables: joins, subqueries, CTEs, set operations, aggregates,
/// UPDATE/DELETE/INSERT with RETURNING, ON CONFLICT; the org predicate mostly present, and
/// the ways of getting it wrong (another org, `OR`, `<>`, `IN`, `NOT`, a bare column) and of
/// calling a function that hops orgs or reads by name.
///
/// ```
/// use tenant_testkit::differential::Gen;
///
/// let mut seeded = Gen::seeded(7);
/// assert_eq!(seeded.statement(), Gen::seeded(7).statement());
/// // A fuzzer's bytes choose the branches; all zeros is the first branch everywhere.
/// assert!(Gen::from_bytes(&[0; 8]).statement().starts_with("SELECT"));
/// ```
pub struct Gen {
    rng: Rng,
    aliases: usize,
}

impl Gen {
    /// A generator whose choices follow `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            rng: Rng::Seeded(seed | 1),
            aliases: 0,
        }
    }

    /// A generator whose choices are `bytes`, one each.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            rng: Rng::Bytes {
                bytes: bytes.to_vec(),
                at: 0,
            },
            aliases: 0,
        }
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("t{}", self.aliases)
    }

    fn table(&mut self) -> &'static Table {
        // Tenant tables more often than the global one.
        &TABLES[[0, 0, 1, 1, 1, 2, 3][self.rng.below(7)]]
    }

    /// A predicate on `alias` of `t`.
    fn predicate(&mut self, t: &Table, alias: &str) -> String {
        if let Some(org) = t.org
            && self.rng.chance(55)
        {
            return match self.rng.below(12) {
                0 => format!("{alias}.{org} = $2"),
                1 => format!("{alias}.{org} <> $1"),
                2 => format!("$1 = {alias}.{org}"),
                3 => format!("{alias}.{org} IN ($1, $2)"),
                4 => format!("({alias}.{org} = $1 OR true)"),
                5 => format!("{alias}.{org} IS NOT NULL"),
                6 => format!("NOT ({alias}.{org} = $1)"),
                7 => format!("{org} = $1"),
                _ => format!("{alias}.{org} = $1"),
            };
        }
        let col = t.columns[self.rng.below(t.columns.len())];
        if self.rng.chance(12) {
            return self.call(alias, col);
        }
        match self.rng.below(10) {
            0 => "true".into(),
            1 => format!("{alias}.{col} IS NOT NULL"),
            2 => format!("{alias}.{col}::text <> 'zzz'"),
            3 => format!("{alias}.{col}::text LIKE '%1%'"),
            4 => format!("({alias}.{col}::text = 'x' OR {alias}.{col}::text <> 'y')"),
            // Conditions that fail on another org's values and not on org A's (the harness
            // gives A names and titles that are years and numbers): if PostgreSQL evaluates
            // one before the org predicate, the bypassing run fails where RLS's does not.
            5 => format!("to_date({alias}.{col}::text, 'YYYY') IS NOT NULL"),
            6 => format!("coalesce(to_date({alias}.{col}::text, 'YYYY')) IS NOT NULL"),
            7 => format!("{alias}.{col}::text::int8 > 0"),
            8 => format!("(length({alias}.{col}::text) / (length({alias}.{col}::text) - 2)) > -9"),
            _ => format!("length({alias}.{col}::text) > 1"),
        }
    }

    /// A predicate calling a function: one the checker allows, or one it must refuse (each
    /// of those would hop to org B, read a table by name, or read the session's context).
    fn call(&mut self, alias: &str, col: &str) -> String {
        match self.rng.below(10) {
            0 => format!("lower({alias}.{col}::text) <> 'zzz'"),
            1 => format!("coalesce(upper({alias}.{col}::text), '') <> 'zzz'"),
            2 => format!("abs(length(btrim({alias}.{col}::text))) >= 0"),
            3 => format!("md5({alias}.{col}::text) IS NOT NULL"),
            4 => "query_to_xml('SELECT set_config(''tenant.org_id'', ''' || $2::text || ''', true)', true, true, '') IS NOT NULL".into(),
            5 => "set_config('tenant.org_id', $2::text, true) IS NOT NULL".into(),
            6 => "table_to_xml('customers', true, true, '') IS NOT NULL".into(),
            7 => "current_setting('tenant.org_id') IS NOT NULL".into(),
            8 => "ts_diff.others($1) IS NOT NULL".into(),
            _ => "pg_catalog.set_config('tenant.org_id', $2::text, true) IS NOT NULL".into(),
        }
    }

    /// A WHERE body: the org predicate mostly present, other conjuncts, sometimes a subquery.
    fn condition(&mut self, t: &Table, alias: &str, depth: u32) -> String {
        let mut parts = Vec::new();
        if let Some(org) = t.org
            && self.rng.chance(75)
        {
            parts.push(format!("{alias}.{org} = $1"));
        }
        for _ in 0..self.rng.below(3) {
            parts.push(self.predicate(t, alias));
        }
        if depth < 2 && self.rng.chance(25) {
            let inner = self.subquery_of_ids(depth + 1);
            parts.push(match (t.name, self.rng.below(3)) {
                ("deals", 0) => format!("{alias}.customer_id IN ({inner})"),
                (_, 1) => format!("EXISTS ({inner})"),
                _ => format!("{alias}.id::text IN (SELECT x::text FROM ({inner}) s(x))"),
            });
        }
        if parts.is_empty() {
            parts.push("true".into());
        }
        let joined = parts.join(" AND ");
        if self.rng.chance(8) {
            format!("({joined}) OR {}", self.predicate(t, alias))
        } else {
            joined
        }
    }

    /// `SELECT <one uuid column> FROM ...`.
    fn subquery_of_ids(&mut self, depth: u32) -> String {
        let t = &TABLES[self.rng.below(2)];
        let a = self.alias();
        let cond = self.condition(t, &a, depth);
        format!("SELECT {a}.id FROM {} {a} WHERE {cond}", t.name)
    }

    fn select(&mut self, depth: u32) -> String {
        let t = self.table();
        let a = self.alias();
        let mut from = format!("{} {a}", t.name);
        let mut cond = self.condition(t, &a, depth);
        let mut columns = vec![format!(
            "{a}.{}",
            t.columns[self.rng.below(t.columns.len())]
        )];
        if self.rng.chance(35) {
            let u = self.table();
            let b = self.alias();
            let on = match (t.org, u.org) {
                (Some(x), Some(y)) if self.rng.chance(60) => {
                    let mut on = format!("{b}.{y} = {a}.{x}");
                    if self.rng.chance(50) {
                        on.push_str(&format!(" AND {b}.{y} = $1"));
                    }
                    on
                }
                _ => self.predicate(u, &b),
            };
            match self.rng.below(4) {
                0 => from.push_str(&format!(" JOIN {} {b} ON {on}", u.name)),
                1 => from.push_str(&format!(" LEFT JOIN {} {b} ON {on}", u.name)),
                2 => {
                    from.push_str(&format!(", {} {b}", u.name));
                    cond = format!("{cond} AND {}", self.condition(u, &b, depth + 1));
                }
                _ => from.push_str(&format!(" CROSS JOIN {} {b}", u.name)),
            }
            columns.push(format!(
                "{b}.{}",
                u.columns[self.rng.below(u.columns.len())]
            ));
        }
        let list = match self.rng.below(6) {
            0 => "count(*) AS n".to_owned(),
            1 if depth < 2 => {
                let inner_alias = self.alias();
                let filter = if self.rng.chance(60) {
                    format!(" AND {inner_alias}.org_id = $1")
                } else {
                    String::new()
                };
                format!(
                    "{}, (SELECT count(*) FROM deals {inner_alias} WHERE {inner_alias}.amount_cents > 0{filter}) AS n",
                    columns.join(", ")
                )
            }
            _ => columns.join(", "),
        };
        let mut sql = format!("SELECT {list} FROM {from} WHERE {cond}");
        if list.starts_with("count") && self.rng.chance(30) {
            sql = format!(
                "SELECT {}, count(*) AS n FROM {from} WHERE {cond} GROUP BY 1",
                columns[0]
            );
        }
        sql
    }

    /// The next statement.
    pub fn statement(&mut self) -> String {
        self.aliases = 0;
        match self.rng.below(14) {
            0 => {
                let (x, y) = (self.select(1), self.select(1));
                // Whole rows as text: both sides have one column of one type.
                let op = self
                    .rng
                    .pick(&["UNION", "UNION ALL", "EXCEPT", "INTERSECT"]);
                format!("SELECT l::text AS v FROM ({x}) l {op} SELECT r::text AS v FROM ({y}) r")
            }
            1 => format!("WITH w AS ({}) SELECT * FROM w", self.select(1)),
            2 => format!("SELECT * FROM ({}) s", self.select(1)),
            3 | 4 => self.update(),
            5 | 6 => self.delete(),
            7 | 8 => self.insert(),
            _ => self.select(0),
        }
    }

    fn update(&mut self) -> String {
        let t = &TABLES[self.rng.below(3)];
        let a = self.alias();
        let set = match (t.name, self.rng.below(8)) {
            (_, 0) => format!("{} = $2", t.org.unwrap_or("id")),
            ("deals", 1..=3) => "title = title || 'u', amount_cents = amount_cents + 1".into(),
            ("deals", _) => "stage = 'won'".into(),
            _ => "name = name || 'u'".into(),
        };
        let cond = self.condition(t, &a, 1);
        if t.name == "deals" && self.rng.chance(25) {
            let b = self.alias();
            let extra = if self.rng.chance(60) {
                format!(" AND {b}.org_id = $1")
            } else {
                String::new()
            };
            return format!(
                "UPDATE deals {a} SET {set} FROM customers {b} WHERE {a}.customer_id = {b}.id AND {cond}{extra} RETURNING {a}.title, {a}.stage"
            );
        }
        format!(
            "UPDATE {} {a} SET {set} WHERE {cond} RETURNING {a}.*",
            t.name
        )
    }

    fn delete(&mut self) -> String {
        // Deals only: customers and orgs are referenced, so deleting them mostly fails in both.
        let a = self.alias();
        let cond = self.condition(&TABLES[1], &a, 1);
        format!("DELETE FROM deals {a} WHERE {cond} RETURNING {a}.title")
    }

    fn insert(&mut self) -> String {
        let org = self.rng.pick(&["$1", "$1", "$1", "$2"]);
        match self.rng.below(4) {
            0 => {
                let a = self.alias();
                let cond = self.condition(&TABLES[0], &a, 1);
                format!(
                    "INSERT INTO customers (org_id, name, email) SELECT {org}, {a}.name || 'i', {a}.email || 'i' FROM customers {a} WHERE {cond} RETURNING org_id, name, email"
                )
            }
            1 => format!(
                "INSERT INTO customers (org_id, name, email) VALUES ({org}, 'new', 'c1@x') \
                 ON CONFLICT (org_id, email) DO UPDATE SET name = excluded.name RETURNING org_id, name, email"
            ),
            _ => format!(
                "INSERT INTO customers (org_id, name, email) VALUES ({org}, 'new', 'new@x') RETURNING org_id, name, email"
            ),
        }
    }
}
