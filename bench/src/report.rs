//! The markdown table e2e.sh prints, one row per figure, and how numbers read in it.

use std::io::Write;
use std::time::Duration;

/// A duration in milliseconds, two decimals below 10 ms.
pub(crate) fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// One row of the table e2e.sh prints.
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub target: String,
    pub met: Option<bool>,
    pub notes: String,
}

impl Row {
    /// Prints the row on stdout as one markdown table line.
    pub fn print(&self) {
        let met = match self.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        // A closed stdout (`| head`) is no reason to panic.
        let _ = writeln!(
            std::io::stdout(),
            "| {} | {} | {} | {met} | {} |",
            self.figure,
            self.measured,
            self.target,
            self.notes
        );
    }
}

pub(crate) fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// " (N reconnects after 4008)", or nothing when the gateway closed no one early.
pub(crate) fn reconnected(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} reconnects after 4008)")
    }
}
