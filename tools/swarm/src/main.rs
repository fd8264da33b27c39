//! `hearth-swarm`: load a Hearth server with bots; print the report; exit 1 when a promise
//! broke, 2 when the run could not start.

use std::io::Write;

use clap::Parser;
use hearth_swarm::Config;

fn main() {
    let config = Config::parse();
    let json = config.json.clone();
    let report = match hearth_swarm::run(config) {
        Ok(report) => report,
        Err(reason) => {
            eprintln!("hearth-swarm: {reason}");
            std::process::exit(2);
        }
    };
    print!("{}", hearth_swarm::report::markdown(&report.steps));
    if report.steps.iter().any(|s| s.zones.is_some()) {
        println!();
        print!("{}", hearth_swarm::report::zones_markdown(&report.steps));
    }
    if !report.reconnects.is_empty() {
        println!();
        print!("{}", hearth_swarm::reconnect::markdown(&report.reconnects));
    }
    if let Some(path) = json {
        let written = std::fs::File::create(&path).and_then(|mut file| {
            for step in &report.steps {
                let line = serde_json::to_string(step).expect("a report serialises");
                writeln!(file, "{line}")?;
            }
            Ok(())
        });
        if let Err(e) = written {
            eprintln!("hearth-swarm: cannot write {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    for failure in &report.failures {
        eprintln!("FAILED: {failure}");
    }
    std::process::exit(report.exit_code());
}
