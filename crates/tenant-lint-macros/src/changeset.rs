//! `#[derive(TenantChangeset)]`: tells the compiler which columns an `AsChangeset` struct
//! sets, so that a scoped update whose struct sets the org column does not compile.
//!
//! diesel's `AsChangeset` derive turns the struct into private diesel types the scoped layer
//! cannot look into. This derive reads the same `#[diesel(...)]` attributes (`table_name`,
//! `primary_key`, `column_name`, `skip_update`, `embed`) and implements
//! `ValidGrouping<tenant_core::OrgColumnProbe<table>>` for the struct (diesel forwards it to a
//! reference) as the tuple of the columns it sets: the probe that `ScopedUpdate::set` requires, and that
//! fails, naming the column, for the org column.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Path, Type};

/// What the struct-level and field-level `#[diesel(...)]` attributes say, as far as the
/// columns an update sets are concerned.
#[derive(Default)]
struct DieselAttrs {
    table_name: Option<Path>,
    primary_key: Option<Vec<Ident>>,
    column_name: Option<Ident>,
    skip_update: bool,
    embed: bool,
}

fn diesel_attrs(attrs: &[syn::Attribute]) -> syn::Result<DieselAttrs> {
    let mut out = DieselAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("diesel")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table_name") {
                out.table_name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("column_name") {
                out.column_name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("primary_key") {
                let mut keys = Vec::new();
                meta.parse_nested_meta(|key| {
                    keys.push(key.path.require_ident()?.clone());
                    Ok(())
                })?;
                out.primary_key = Some(keys);
            } else if meta.path.is_ident("skip_update") {
                out.skip_update = true;
            } else if meta.path.is_ident("embed") {
                out.embed = true;
            } else if meta.input.peek(syn::Token![=]) {
                // Another diesel option with a value (`treat_none_as_null = true`, ...).
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                // Another diesel option with arguments (`check_for_backend(..)`, ...).
                let content;
                syn::parenthesized!(content in meta.input);
                let _: TokenStream2 = content.parse()?;
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// diesel's rule for a struct without `table_name`: snake case plus `s`.
fn infer_table_name(name: &Ident) -> Ident {
    let mut snake = String::new();
    for (i, c) in name.to_string().chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake.push('s');
    Ident::new(&snake, name.span())
}

pub(crate) fn expand(item: &DeriveInput) -> syn::Result<TokenStream2> {
    let attrs = diesel_attrs(&item.attrs)?;
    let table: Path = match attrs.table_name {
        Some(p) => p,
        None => infer_table_name(&item.ident).into(),
    };
    let primary_key = attrs
        .primary_key
        .unwrap_or_else(|| vec![Ident::new("id", item.ident.span())]);
    let Data::Struct(data) = &item.data else {
        return Err(syn::Error::new(
            item.span(),
            "`TenantChangeset` is derived for structs, like `AsChangeset`",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            item.span(),
            "`TenantChangeset` needs named fields: each names the column it sets",
        ));
    };

    let mut columns: Vec<TokenStream2> = Vec::new();
    let mut embedded: Vec<&Type> = Vec::new();
    for field in &fields.named {
        let f = diesel_attrs(&field.attrs)?;
        if f.skip_update {
            continue;
        }
        if f.embed {
            embedded.push(&field.ty);
            continue;
        }
        let Some(column) = f.column_name.or_else(|| field.ident.clone()) else {
            continue;
        };
        // diesel's AsChangeset never sets the primary key.
        if primary_key.contains(&column) {
            continue;
        }
        columns.push(quote!(#table::#column));
    }

    let name = &item.ident;
    let probe = quote!(::tenant_core::OrgColumnProbe<#table::table>);
    let vg = quote!(::tenant_core::__private::diesel::expression::ValidGrouping);
    let is_aggregate = if columns.is_empty() && embedded.is_empty() {
        quote!(::tenant_core::__private::diesel::expression::is_aggregate::Never)
    } else {
        quote!(<(#(#columns,)* #(#embedded,)*) as #vg<#probe>>::IsAggregate)
    };

    // diesel forwards `ValidGrouping` from `T` to `&T`, so `set(&changes)` is covered too.
    let (impl_generics, ty_generics, _) = item.generics.split_for_impl();
    let impl_generics_params = &item.generics.params;
    // An embedded struct must derive this too; saying so up front gives the better message.
    let mut generics = item.generics.clone();
    let where_clause = generics.make_where_clause();
    for ty in &embedded {
        where_clause
            .predicates
            .push(syn::parse_quote!(#ty: ::tenant_core::ScopedChangeset<#table::table>));
    }
    // A struct's fields are values, bound as parameters: nothing to probe for subqueries.
    let values = quote!(::tenant_core::ChangesValuesProbe<#table::table>);
    Ok(quote! {
        impl #impl_generics #vg<#probe> for #name #ty_generics #where_clause {
            type IsAggregate = #is_aggregate;
        }
        impl #impl_generics #values for #name #ty_generics #where_clause {}
        impl<'__tenant_ref, #impl_generics_params> #values for &'__tenant_ref #name #ty_generics #where_clause {}
    })
}
