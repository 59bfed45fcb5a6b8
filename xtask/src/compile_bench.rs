//! `cargo xtask compile-bench`: what the type-level layer costs a user's build.
//!
//! Builds the two-companies example (tenant-safe) and the same story in plain diesel
//! (`examples/two-companies-plain`) from clean, crate only (dependencies already built),
//! interleaved over several rounds, and prints the median of each and their ratio. The
//! target is a ratio of at most 1.5.

use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const TARGET: f64 = 1.5;

fn build(package: &str) -> Result<Duration, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let clean = Command::new(&cargo)
        .args(["clean", "--quiet", "--package", package])
        .current_dir(crate::workspace())
        .status()
        .map_err(|e| e.to_string())?;
    if !clean.success() {
        return Err(format!("cargo clean -p {package} failed"));
    }
    let start = Instant::now();
    let status = Command::new(&cargo)
        .args(["build", "--quiet", "--lib", "--package", package])
        .current_dir(crate::workspace())
        .status()
        .map_err(|e| e.to_string())?;
    let took = start.elapsed();
    status
        .success()
        .then_some(took)
        .ok_or_else(|| format!("cargo build -p {package} failed"))
}

/// Runs the measurement and prints the table.
pub fn run() -> Result<(), String> {
    // Warm the dependencies of both, so only the example crates are measured.
    build("two-companies-plain")?;
    build("two-companies")?;
    let (mut plain, mut scoped, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let p = build("two-companies-plain")?.as_secs_f64();
        let s = build("two-companies")?.as_secs_f64();
        println!(
            "round {round}: plain diesel {p:.2} s, tenant-safe {s:.2} s, ratio {:.2}",
            s / p
        );
        plain.push(p);
        scoped.push(s);
        ratios.push(s / p);
    }
    let ratio = crate::median(ratios.clone());
    let spread = ratios.iter().copied().fold(f64::MIN, f64::max)
        - ratios.iter().copied().fold(f64::MAX, f64::min);
    println!();
    println!("| build of the example crate (deps built) | median s |");
    println!("|---|---|");
    println!(
        "| plain diesel (two-companies-plain) | {:.2} |",
        crate::median(plain)
    );
    println!(
        "| tenant-safe (two-companies) | {:.2} |",
        crate::median(scoped)
    );
    println!("| ratio tenant-safe / plain | {ratio:.2} (spread {spread:.2}; target <= {TARGET}) |");
    Ok(())
}
