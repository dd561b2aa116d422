//! What a validator's restart costs before it rejoins consensus:
//! `Chain::open` on a store of BLOCKS blocks of TXS transfers each (read
//! back the applied state and refill the index of recent finalized
//! transactions from the newest blocks), against opening the same store
//! alone (`ChainStore::open` + `applied`), the anchor, in the same run.
//!
//! The blocks are stored, not executed (opening does not re-execute
//! them), and their transactions carry one signature copied to every
//! nonce (opening does not verify them either): only their bytes and ids
//! matter here.
//!
//! Usage: `chain-open [BLOCKS] [TXS] [RUNS]` (defaults 1024 1000 5).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bonus_ids::SecretKey;
use bonus_ledger::chain::{Block, Chain, ChainStore};
use bonus_ledger::{ChainId, GenesisSpec, Params, SignedTx, State, TxBody};
use commonware_cryptography::Digestible as _;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: u64| -> anyhow::Result<u64> {
        Ok(args
            .next()
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (blocks, txs, runs) = (arg(1024)?, arg(1000)?, arg(5)?.max(1));
    let key = SecretKey::from_seed([3; 32]);
    let chain_id = ChainId([9; 32]);
    let spec = GenesisSpec {
        balances: vec![(key.public(), 1 << 40)],
        validators: vec![],
    };
    let genesis = State::genesis(chain_id, Params::DEV, &spec)?;
    let signed = SignedTx::sign(
        &key,
        &chain_id,
        0,
        TxBody::Transfer {
            to: key.public(),
            amount: 1,
        },
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("chain.redb");
    {
        let store = ChainStore::open(&path)?;
        let mut parent = Block::genesis(genesis.root());
        for height in 1..=blocks {
            let block = Block {
                parent: parent.digest(),
                height,
                time_ms: height,
                state_root: genesis.root(),
                txs: (0..txs)
                    .map(|i| SignedTx {
                        nonce: height * txs + i,
                        ..signed.clone()
                    })
                    .collect(),
            };
            store.commit_deferred(&block, None, &genesis)?;
            parent = block;
        }
        store.sync()?;
    }
    let (mut store_ms, mut chain_ms) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let store = ChainStore::open(&path)?;
        let applied = store.applied()?;
        store_ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(applied.is_some_and(|a| a.height == blocks));
        drop(store);
        let started = Instant::now();
        let chain = Chain::open(ChainStore::open(&path)?, genesis.clone())?;
        chain_ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(chain.height() == blocks);
    }
    let (store, chain) = (median(store_ms), median(chain_ms));
    println!("{blocks} blocks of {txs} transfers, medians of {runs}:");
    println!("  store open + applied state    {store:8.1} ms");
    println!("  Chain::open (+ tx index)      {chain:8.1} ms");
    println!(
        "  the index's refill            {:8.1} ms ({:.2}x the store's open)",
        chain - store,
        chain / store
    );
    Ok(())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
