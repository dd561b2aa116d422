//! `bonus usage`: what a function was used and charged, per period.

use crate::commands::GlobalArgs;
use crate::commands::deploy::ledger_client;
use crate::output;
use bonus_ledger::api::NamePeriod;
use bonus_ledger::limits::USAGE_HISTORY_PERIODS;
use std::time::{Duration, SystemTime};

/// Show a function's invocations (vouched for by routers, settled by
/// workers), their fuel and what its owner was charged, per settlement
/// period, as the ledger records them (the last 360 periods: an hour on
/// the local network).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  bonus usage hello\n  bonus --json usage hello")]
pub struct UsageArgs {
    /// The function's name.
    name: String,
    /// A ledger validator's API (repeatable) [default: the local network's].
    #[arg(long = "ledger", value_name = "URL")]
    ledger: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: UsageArgs) -> anyhow::Result<()> {
    let ledger = ledger_client(&args.ledger)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let view = runtime
        .block_on(ledger.name_usage(&args.name))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no function named {:?} on the ledger (`bonus names` lists them)",
                args.name
            )
        })?;
    let total = view.periods.iter().fold(Total::default(), Total::add);
    if global.json {
        let mut json = serde_json::to_value(&view)?;
        json["total"] = serde_json::json!({
            "routed": total.routed.to_string(),
            "settled": total.settled.to_string(),
            "fuel": total.fuel.to_string(),
            "charged": total.charged.to_string(),
        });
        println!("{json}");
        return Ok(());
    }
    let kept = Duration::from_millis(view.period_ms.saturating_mul(USAGE_HISTORY_PERIODS));
    if view.periods.is_empty() {
        output::status(
            global.quiet,
            "Note",
            format!(
                "no invocations of {} recorded in the last {USAGE_HISTORY_PERIODS} periods ({})",
                view.name,
                span(kept)
            ),
        );
        return Ok(());
    }
    println!(
        "{:>10}  {:<20} {:>10} {:>10} {:>14} {:>12}",
        "period", "starts (UTC)", "routed", "settled", "fuel", "charged"
    );
    for p in &view.periods {
        println!(
            "{:>10}  {:<20} {:>10} {:>10} {:>14} {:>12}",
            p.period,
            utc(p.start_ms),
            p.routed,
            p.settled,
            p.fuel,
            p.charged
        );
    }
    println!(
        "{:>10}  {:<20} {:>10} {:>10} {:>14} {:>12}",
        "total", "", total.routed, total.settled, total.fuel, total.charged
    );
    output::status(
        global.quiet,
        "Note",
        format!(
            "periods of {} s; the ledger keeps the last {USAGE_HISTORY_PERIODS} ({}); \
             routed invocations settle after their period ends",
            view.period_ms / 1_000,
            span(kept)
        ),
    );
    Ok(())
}

#[derive(Default)]
struct Total {
    routed: u128,
    settled: u128,
    fuel: u128,
    charged: u128,
}

impl Total {
    fn add(self, p: &NamePeriod) -> Total {
        Total {
            routed: self.routed + u128::from(p.routed),
            settled: self.settled + u128::from(p.settled),
            fuel: self.fuel + u128::from(p.fuel),
            charged: self.charged + u128::from(p.charged),
        }
    }
}

/// `07 Dec 2026 02:57:40`: a block time, to the second.
pub(crate) fn utc(ms: u64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    // "Mon, 07 Dec 2026 02:57:40 GMT" without the weekday and the zone.
    let http = httpdate::fmt_http_date(time);
    http.get(5..25).unwrap_or(&http).to_string()
}

fn span(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        s if s % 86_400 == 0 && s > 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 && s > 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_times_read_as_utc_dates() {
        assert_eq!(utc(1_796_612_260_000), "07 Dec 2026 02:57:40");
        assert_eq!(utc(0), "01 Jan 1970 00:00:00");
    }

    #[test]
    fn spans_use_the_largest_whole_unit() {
        assert_eq!(span(Duration::from_secs(3_600)), "1 h");
        assert_eq!(span(Duration::from_secs(120)), "2 min");
        assert_eq!(span(Duration::from_secs(90)), "90 s");
        assert_eq!(span(Duration::from_secs(2 * 86_400)), "2 d");
    }
}
