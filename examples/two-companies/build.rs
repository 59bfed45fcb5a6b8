//! Rebuilds the crate when a migration is added or changed: `embed_migrations!` reads
//! `../../migrations` when the crate compiles, and a proc macro cannot ask cargo to watch a
//! directory, so without this an incremental build keeps embedding the old list (diesel_migrations'
//! documentation, "Automatic rebuilds").

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
