//! The service's own command set, as docs/adopting.md step 4 gives every service: tenant-cli's
//! commands with this crate's registry and migrations directory. From the workspace root:
//!
//! ```text
//! cargo run -p saas-patterns --example xtask -- gen      # write the RLS migration for a registry change
//! cargo run -p saas-patterns --example xtask -- check    # fail when the migrations lag the registry (CI)
//! cargo run -p saas-patterns --example xtask -- audit --database-url APP_URL
//! ```

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    tenant_cli::run(
        &tenant_cli::Service::new(&saas_patterns::REGISTRY, migrations),
        std::env::args_os(),
    )
}
