//! `tenant_sql!`: raw SQL for what the DSL cannot express, checked at compile time; and
//! `#[derive(TenantChangeset)]` (in `changeset`), which tells the compiler the columns an
//! update struct sets.
//!
//! Re-exported as `tenant_core::tenant_sql!`; see its documentation there. The macro parses
//! the SQL with `tenant-sqlcheck` in symbolic mode (the registry is a Rust item the macro
//! cannot read) and turns each requirement into a `const` assertion the compiler evaluates
//! against the registry's traits, so a tenant table read without its org predicate, written
//! without it, or assigned its org column fails the build, with the error on the SQL literal.
//! Structural problems (a `set_config` call, a non-DML statement, SQL that does not parse) are
//! reported directly. `$org` is the session's org: the macro turns it into a bind parameter
//! that the scoped handle fills in; the user never types the org.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, LitStr, Path, Token, Type};
use tenant_sqlcheck::{Requirement, requirements};

struct Bind {
    ty: Type,
    value: Expr,
}

impl Parse for Bind {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let ty = input.parse()?;
        input.parse::<Token![:]>()?;
        let value = input.parse()?;
        Ok(Self { ty, value })
    }
}

struct Input {
    schema: Path,
    /// The registry, when the statement calls functions of the service's own.
    registry: Option<Path>,
    sql: LitStr,
    binds: Vec<Bind>,
}

mod kw {
    syn::custom_keyword!(registry);
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut schema = None;
        let mut registry = None;
        loop {
            if input.peek(Token![in]) {
                input.parse::<Token![in]>()?;
                schema = Some(input.parse()?);
                input.parse::<Token![;]>()?;
            } else if input.peek(kw::registry) {
                input.parse::<kw::registry>()?;
                registry = Some(input.parse()?);
                input.parse::<Token![;]>()?;
            } else {
                break;
            }
        }
        let schema = schema.unwrap_or_else(|| syn::parse_quote!(crate::schema));
        let sql = input.parse()?;
        let mut binds = Vec::new();
        if input.parse::<Option<Token![,]>>()?.is_some() {
            let rest: Punctuated<Bind, Token![,]> = Punctuated::parse_terminated(input)?;
            binds.extend(rest);
        }
        Ok(Self {
            schema,
            registry,
            sql,
            binds,
        })
    }
}

mod changeset;

/// Which columns an `AsChangeset` struct sets; see `tenant_core::TenantChangeset`.
#[proc_macro_derive(TenantChangeset, attributes(diesel))]
pub fn derive_tenant_changeset(input: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(input as syn::DeriveInput);
    changeset::expand(&item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Raw SQL whose tenant tables are checked at compile time; see `tenant_core::tenant_sql!`.
#[proc_macro]
pub fn tenant_sql(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as Input);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &Input) -> syn::Result<TokenStream2> {
    let sql = input.sql.value();
    let span = input.sql.span();
    let reqs = requirements(&sql, &|p: &str| p == "$org")
        .map_err(|v| syn::Error::new(span, format!("tenant_sql!: {v}")))?;
    if reqs.is_empty() {
        return Err(syn::Error::new(
            span,
            "tenant_sql!: the statement reads no table; nothing to scope",
        ));
    }
    let highest = highest_placeholder(&sql);
    if highest != input.binds.len() {
        return Err(syn::Error::new(
            span,
            format!(
                "tenant_sql!: the SQL uses ${highest} as its highest parameter but {} values are bound; \
                 pass one `Type: value` per $n, and write the session's org as $org",
                input.binds.len()
            ),
        ));
    }
    let org_param = format!("${}", highest + 1);
    let rewritten = replace_org(&sql, &org_param);
    if rewritten == sql {
        return Err(syn::Error::new(
            span,
            "tenant_sql!: the SQL never uses $org; every tenant table must be constrained to the session's org with `<table>.<org column> = $org`",
        ));
    }
    let schema = &input.schema;
    let checks = reqs
        .iter()
        .map(|r| assertion(schema, input.registry.as_ref(), r, span))
        .collect::<syn::Result<Vec<_>>>()?;
    let binds = input.binds.iter().map(|b| {
        let (ty, value) = (&b.ty, &b.value);
        quote! { .bind::<#ty, _>(#value) }
    });
    let rewritten = LitStr::new(&rewritten, span);
    Ok(quote_spanned! {span=>
        {
            #(#checks)*
            ::tenant_core::TenantSql::new(#rewritten)
                #(#binds)*
        }
    })
}

/// One `const` assertion for one requirement.
fn assertion(
    schema: &Path,
    registry: Option<&Path>,
    r: &Requirement,
    span: Span,
) -> syn::Result<TokenStream2> {
    let table_ident = |t: &str| syn::Ident::new(t, span);
    let reg = quote!(::tenant_core::__private::RegisteredTable);
    let contains = quote!(::tenant_core::__private::contains);
    Ok(match r {
        Requirement::Read { table, constrained } => {
            let t = table_ident(table);
            let msg = format!(
                "tenant_sql!: tenant table `{table}` is read without its org column constrained to $org: \
                 add `{table}.<org column> = $org` (ANDed, not inside OR) where it is read"
            );
            quote_spanned! {span=>
                const _: () = {
                    let t = <#schema::#t::table as #reg>::ORG_COLUMN;
                    if <#schema::#t::table as #reg>::IS_TENANT && !#contains(&[#(#constrained),*], t) {
                        ::core::panic!(#msg);
                    }
                };
            }
        }
        Requirement::Write { table, assigned } => {
            let t = table_ident(table);
            let global = format!(
                "tenant_sql!: `{table}` is a global table; write it through tenant_core::admin::GlobalWriter"
            );
            let moves = format!(
                "tenant_sql!: the statement assigns the org column of `{table}`: rows cannot move between orgs"
            );
            quote_spanned! {span=>
                const _: () = {
                    if !<#schema::#t::table as #reg>::IS_TENANT {
                        ::core::panic!(#global);
                    }
                    if #contains(&[#(#assigned),*], <#schema::#t::table as #reg>::ORG_COLUMN) {
                        ::core::panic!(#moves);
                    }
                };
            }
        }
        Requirement::Insert { table, org_columns } => {
            let t = table_ident(table);
            let global = format!(
                "tenant_sql!: `{table}` is a global table; write it through tenant_core::admin::GlobalWriter"
            );
            let missing = format!(
                "tenant_sql!: the INSERT into `{table}` must set its org column to $org in every row"
            );
            quote_spanned! {span=>
                const _: () = {
                    if !<#schema::#t::table as #reg>::IS_TENANT {
                        ::core::panic!(#global);
                    }
                    if !#contains(&[#(#org_columns),*], <#schema::#t::table as #reg>::ORG_COLUMN) {
                        ::core::panic!(#missing);
                    }
                };
            }
        }
        Requirement::ConflictTarget { table, columns } => {
            let t = table_ident(table);
            let msg = format!(
                "tenant_sql!: the ON CONFLICT of the INSERT into `{table}` must name its org column in the \
                 target (`ON CONFLICT (<org column>, ...)`): a conflict on a key without it could be with \
                 another org's row"
            );
            quote_spanned! {span=>
                const _: () = {
                    if <#schema::#t::table as #reg>::IS_TENANT
                        && !#contains(&[#(#columns),*], <#schema::#t::table as #reg>::ORG_COLUMN)
                    {
                        ::core::panic!(#msg);
                    }
                };
            }
        }
        Requirement::Function { name } => {
            let Some(registry) = registry else {
                return Err(syn::Error::new(
                    span,
                    format!(
                        "tenant_sql!: the statement calls `{name}`, which is not a PostgreSQL built-in known to be safe in an \
                         org-scoped statement (it may run SQL of its own, change session state, or read rows outside the \
                         statement); if it is your own function that runs no SQL, changes no setting and reads only its \
                         arguments, register it (`function {name} => \"<why it is safe>\";` in `tenant_lint::registry!`) and \
                         name the registry: `tenant_sql!(registry crate::REGISTRY; \"...\")`"
                    ),
                ));
            };
            let msg = format!(
                "tenant_sql!: the statement calls `{name}`, which the registry does not list: register it \
                 (`function {name} => \"<why it is safe>\";` in `tenant_lint::registry!`) if it runs no SQL, changes no \
                 setting and reads only its arguments"
            );
            quote_spanned! {span=>
                const _: () = {
                    if !#registry.allows_function(#name) {
                        ::core::panic!(#msg);
                    }
                };
            }
        }
    })
}

/// The highest `$n` in `sql`, outside string literals.
fn highest_placeholder(sql: &str) -> usize {
    let mut highest = 0;
    for (i, _) in code_positions(sql).filter(|&(_, c)| c == '$') {
        let digits: String = sql[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse::<usize>() {
            highest = highest.max(n);
        }
    }
    highest
}

/// `sql` with every `$org` outside string literals replaced by `param`.
fn replace_org(sql: &str, param: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for (i, _) in code_positions(sql).filter(|&(_, c)| c == '$') {
        let rest = &sql[i + 1..];
        let follows_ident = rest
            .chars()
            .nth(3)
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if rest.starts_with("org") && !follows_ident {
            out.push_str(&sql[last..i]);
            out.push_str(param);
            last = i + 4;
        }
    }
    out.push_str(&sql[last..]);
    out
}

/// Characters of `sql` outside single-quoted string literals, with their byte offsets.
fn code_positions(sql: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut in_string = false;
    sql.char_indices().filter(move |&(_, c)| {
        if c == '\'' {
            in_string = !in_string;
            return false;
        }
        !in_string
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_becomes_the_next_parameter_outside_strings() {
        let sql = "SELECT * FROM t WHERE org_id = $org AND name = '$org' AND x = $1 AND $organ = 1";
        assert_eq!(highest_placeholder(sql), 1);
        assert_eq!(
            replace_org(sql, "$2"),
            "SELECT * FROM t WHERE org_id = $2 AND name = '$org' AND x = $1 AND $organ = 1"
        );
    }
}
