//! `tenant-safe`: tenant-cli's commands for any database, its tables read from its catalog
//! (`tenant-safe audit --database-url APP_URL`, `evidence`, `probe`, `org`, `access`,
//! `context-key`, `lint`; `--org-column` and `--schema` say where the tenant data is).

fn main() -> std::process::ExitCode {
    tenant_cli::run_standalone(std::env::args_os())
}
