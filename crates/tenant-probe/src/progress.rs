//! A progress line on a terminal (tables and attacks done of total), nothing otherwise.

use std::io::{IsTerminal, Write};

/// Progress of a run, written to stderr when it is a terminal.
#[derive(Debug)]
pub struct Progress {
    on: bool,
    tables: usize,
    attacks: usize,
}

impl Progress {
    /// Shows progress when `wanted` and stderr is a terminal.
    pub fn new(wanted: bool, tables: usize, attacks: usize) -> Self {
        Self {
            on: wanted && std::io::stderr().is_terminal(),
            tables,
            attacks,
        }
    }

    /// Redraws the line.
    pub fn update(&self, tables_done: usize, attacks_done: usize) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\rtenant-probe: tables {tables_done}/{}, attacks {attacks_done}/{}   ",
                self.tables, self.attacks
            );
            let _ = err.flush();
        }
    }

    /// Clears the line.
    pub fn finish(&self) {
        if self.on {
            let _ = write!(std::io::stderr().lock(), "\r{:60}\r", "");
        }
    }
}
