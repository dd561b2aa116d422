//! `bonus usage`: what a function was used and charged, per period.

use crate::commands::GlobalArgs;
use crate::commands::deploy::ledger_client;
use crate::output;
use bonus_ledger::limits::SETTLEMENT_WINDOW_PERIODS;

/// Show a function's invocations (vouched for by routers, settled by
/// workers) and what its owner was charged, per settlement period still on
/// the ledger (older periods are pruned).
#[derive(clap::Args, Debug)]
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
    let rows = runtime.block_on(async {
        let status = ledger.status().await?;
        let mut rows = Vec::new();
        let oldest = (status.period + 1).saturating_sub(SETTLEMENT_WINDOW_PERIODS);
        for period in oldest..=status.period {
            let usage = ledger.usage(period).await?;
            let lines = usage.lines.iter().filter(|l| l.name == args.name);
            let (attested, settled) =
                lines.fold((0u64, 0u64), |(a, s), l| (a + l.attested, s + l.settled));
            let charged = usage
                .charged
                .iter()
                .find(|c| c.name == args.name)
                .map_or(0, |c| c.amount);
            rows.push((period, attested, settled, charged));
        }
        Ok::<_, anyhow::Error>(rows)
    })?;
    if global.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(p, a, s, c)| serde_json::json!({ "period": p, "attested": a.to_string(), "settled": s.to_string(), "charged": c.to_string() }))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "name": args.name, "periods": rows })
        );
        return Ok(());
    }
    println!(
        "{:>10} {:>12} {:>12} {:>12}",
        "period", "routed", "settled", "charged"
    );
    for (period, attested, settled, charged) in &rows {
        println!("{period:>10} {attested:>12} {settled:>12} {charged:>12}");
    }
    output::status(
        global.quiet,
        "Note",
        "only periods in the ledger's settlement window are kept",
    );
    Ok(())
}
