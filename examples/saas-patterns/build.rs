//! Rebuilds the crate when a migration is added or changed: `embed_migrations!` reads
//! `migrations/` when the crate compiles, and a proc macro cannot ask cargo to watch a
//! directory, so without this an incremental build keeps embedding the old list
//! (docs/adopting.md, step 4).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
