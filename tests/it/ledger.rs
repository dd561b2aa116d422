//! The ledger over real TCP: four `bonus validator` processes on loopback
//! reach consensus; one is killed -9, the rest keep finalizing, and the
//! restarted one catches up to the same state root. The CLI's ledger
//! commands run against them.

use bonus_ledger::api::{AccountView, BlockView};
use bonus_ledger::genesis::Genesis;
use bonus_tests::{ValidatorProcess, bonus, ledger_genesis, wait_until};
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn transfer(home: &Path, net: &Path, api: &str, to: &str, amount: u64) -> String {
    let faucet = net.join("faucet.key");
    let (ok, stdout, stderr) = bonus(
        home,
        &[
            "transfer",
            to,
            &amount.to_string(),
            "--key-file",
            faucet.to_str().expect("utf-8 path"),
            "--ledger",
            api,
            "--json",
        ],
    );
    assert!(ok, "transfer failed: {stderr}");
    stdout
}

/// An account's balance as one validator sees it (None if unreachable).
fn balance(v: &ValidatorProcess, key: &str) -> Option<u64> {
    serde_json::from_value::<AccountView>(v.get(&format!("/v1/ledger/accounts/{key}")))
        .ok()
        .map(|a| a.balance)
}

fn root_at(v: &ValidatorProcess, height: u64) -> Option<String> {
    v.get(&format!("/v1/ledger/blocks/{height}"))["state_root"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn four_validator_processes_agree_and_a_killed_one_catches_up() {
    let dir = tempdir("ledger-net");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let net = dir.join("net");
    ledger_genesis(&home, &net, 4);
    let genesis: serde_json::Value =
        serde_json::from_slice(&std::fs::read(net.join("genesis.json")).expect("genesis"))
            .expect("genesis json");
    let keys: Vec<String> = genesis["validators"]
        .as_array()
        .expect("validators")
        .iter()
        .map(|v| v["key"].as_str().expect("key").to_string())
        .collect();

    let started = std::time::Instant::now();
    let phase = |name: &str| eprintln!("[{:>6.1} s] {name}", started.elapsed().as_secs_f64());
    let mut validators: Vec<ValidatorProcess> =
        (0..4).map(|i| ValidatorProcess::start(&net, i)).collect();
    assert!(
        wait_until(DEADLINE, || validators.iter().all(|v| v.height() >= 3)),
        "no finality with 4 validators; validator 0 said:\n{}",
        validators[0].stderr()
    );

    phase("4 validators finalize");
    // A transfer through validator 1 is final everywhere.
    transfer(&home, &net, &validators[1].api, &keys[2], 700);
    for v in &validators {
        assert!(
            wait_until(DEADLINE, || balance(v, &keys[2]) == Some(1_000_700)),
            "the transfer did not reach {}",
            v.api
        );
    }

    phase("transfer final everywhere");
    // kill -9 validator 3; three of four are a quorum and keep going.
    validators[3].kill();
    let before = validators[0].height();
    transfer(&home, &net, &validators[0].api, &keys[1], 5);
    assert!(
        wait_until(DEADLINE, || validators[..3]
            .iter()
            .all(|v| v.height() >= before + 5)),
        "no progress with one validator down"
    );

    phase("progress with one validator killed");
    // Restarted from its data directory, it catches up.
    validators[3] = ValidatorProcess::start(&net, 3);
    let target = validators[0].height();
    assert!(
        wait_until(DEADLINE, || validators[3].height() >= target),
        "the restarted validator did not catch up to {target}; it said:\n{}",
        validators[3].stderr()
    );
    phase("restarted validator caught up");
    let roots: Vec<Option<String>> = validators.iter().map(|v| root_at(v, target)).collect();
    assert!(roots[0].is_some(), "no block at height {target}");
    assert!(
        roots.iter().all(|r| *r == roots[0]),
        "validators disagree at height {target}: {roots:?}"
    );
    assert_eq!(
        balance(&validators[3], &keys[1]),
        Some(1_000_005),
        "the restarted validator lacks a transfer finalized while it was down"
    );

    // SIGTERM stops a validator cleanly: exit 0, and every block it had
    // applied is on disk (it syncs the group commit before exiting).
    let applied = validators[2].height();
    let status = validators[2].terminate(DEADLINE);
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM did not stop the validator cleanly: {status:?}; it said:\n{}",
        validators[2].stderr()
    );
    assert!(
        wait_until(DEADLINE, || validators[2].stderr().contains("Stopped")),
        "{}",
        validators[2].stderr()
    );
    let store = bonus_ledger::chain::ChainStore::open(&net.join("v2/chain.redb")).expect("store");
    let on_disk = store.applied().expect("readable").map_or(0, |a| a.height);
    assert!(
        on_disk >= applied,
        "blocks up to {applied} were applied but only {on_disk} are on disk"
    );
    drop(store);
    validators[2] = ValidatorProcess::start(&net, 2);
    assert!(
        wait_until(DEADLINE, || validators[2].height() >= target),
        "the validator stopped by SIGTERM did not resume; it said:\n{}",
        validators[2].stderr()
    );
    phase("SIGTERM: clean stop, resumed");

    // Stored blocks carry their finalization certificates (an ancestor
    // finalized by a descendant's certificate has none of its own): each
    // one present finalizes exactly that block, signed by a quorum of the
    // genesis validators on this network, and fails for any other block.
    let genesis = Genesis::load(&net.join("genesis.json")).expect("genesis");
    let validator_keys = genesis
        .validator_keys()
        .expect("keys")
        .into_iter()
        .collect();
    let mut certified = 0;
    for height in 1..=target {
        let block: BlockView =
            serde_json::from_value(validators[3].get(&format!("/v1/ledger/blocks/{height}")))
                .expect("a stored block");
        let Some(certificate) = block.certificate else {
            continue;
        };
        let bytes = hex_decode(&certificate);
        let digest = digest_of(&block.digest);
        bonus_ledger::evidence::verify_finalization(
            &bytes,
            &digest,
            &genesis.chain_id(),
            &validator_keys,
        )
        .unwrap_or_else(|e| panic!("block {height}'s certificate: {e}"));
        let other = digest_of(&block.parent);
        assert!(
            bonus_ledger::evidence::verify_finalization(
                &bytes,
                &other,
                &genesis.chain_id(),
                &validator_keys
            )
            .is_err(),
            "a certificate also proves another block"
        );
        certified += 1;
    }
    assert!(
        certified > 0,
        "no block up to {target} carries a certificate"
    );

    // CLI reads.
    let (ok, stdout, _) = bonus(
        &home,
        &["ledger", "status", "--json", "--ledger", &validators[2].api],
    );
    assert!(ok);
    let status: bonus_ledger::api::Status = serde_json::from_str(&stdout).expect("status json");
    assert!(status.height >= target);
    assert_eq!(status.chain_id, genesis.chain_id().to_string());
    let (ok, stdout, _) = bonus(
        &home,
        &["balance", &keys[1], "--ledger", &validators[2].api],
    );
    assert!(ok && stdout.contains("balance 1000005,"), "{stdout}");
    let (ok, stdout, _) = bonus(&home, &["names", "--ledger", &validators[2].api]);
    assert!(ok && stdout.contains("no names"), "{stdout}");
}

#[test]
fn bad_transactions_get_clear_errors() {
    let dir = tempdir("ledger-bad");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let net = dir.join("net");
    ledger_genesis(&home, &net, 1);
    let v = ValidatorProcess::start(&net, 0);
    assert!(
        wait_until(DEADLINE, || v.height() >= 1),
        "a single validator does not finalize"
    );

    // Garbage bytes: refused with the decoder's reason, nothing pending.
    let response =
        bonus_tests::http_request(&v.api, "POST", "/v1/ledger/txs", &[], b"not a transaction");
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("transaction"),
        "{}",
        response.text()
    );
    assert_eq!(v.get("/v1/ledger/status")["mempool"].as_u64(), Some(0));

    // A batch: each transaction judged as it would be alone, in order; a
    // forgery and garbage among them take nothing from the honest one.
    use bonus_ledger::api::{BatchResult, SubmittedBatch};
    use bonus_ledger::tx::push_frame;
    use bonus_ledger::{SignedTx, TxBody};
    let faucet = bonus_ids::SecretKey::load(&net.join("faucet.key")).expect("faucet key");
    let chain_id = Genesis::load(&net.join("genesis.json"))
        .expect("genesis")
        .chain_id();
    let to = bonus_ids::SecretKey::from_seed([0x42; 32]).public();
    let honest = SignedTx::sign(&faucet, &chain_id, 0, TxBody::Transfer { to, amount: 3 });
    let mut forged = SignedTx::sign(&faucet, &chain_id, 1, TxBody::Transfer { to, amount: 3 });
    forged.body = TxBody::Transfer { to, amount: 3_000 };
    let mut body = Vec::new();
    for frame in [&honest.encode()[..], &forged.encode(), b"garbage"] {
        push_frame(&mut body, frame);
    }
    let response = bonus_tests::http_request(&v.api, "POST", "/v1/ledger/txs/batch", &[], &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let batch: SubmittedBatch = serde_json::from_str(&response.text()).expect("a batch answer");
    let [accepted, bad_signature, garbage] = &batch.results[..] else {
        panic!("one result per transaction: {batch:?}");
    };
    assert!(
        matches!(accepted, BatchResult::Accepted(s) if s.id == blake3::hash(&honest.encode()).to_hex().as_str()),
        "{accepted:?}"
    );
    assert!(
        matches!(bad_signature, BatchResult::Refused(e) if e.error.contains("signature")),
        "{bad_signature:?}"
    );
    assert!(matches!(garbage, BatchResult::Refused(_)), "{garbage:?}");
    assert!(
        wait_until(DEADLINE, || balance(&v, &to.to_string()) == Some(3)),
        "the honest transfer of the batch is final, the forged one never"
    );
    // Batches sent at once (more than the API reads at a time): each is
    // answered, every transaction in them accepted and final.
    let senders: Vec<_> = (0..8u64)
        .map(|thread| {
            let mut body = Vec::new();
            for n in 0..8 {
                let nonce = 1 + thread * 8 + n;
                let tx = SignedTx::sign(
                    &faucet,
                    &chain_id,
                    nonce,
                    TxBody::Transfer { to, amount: 1 },
                );
                push_frame(&mut body, &tx.encode());
            }
            let api = v.api.clone();
            std::thread::spawn(move || {
                bonus_tests::http_request(&api, "POST", "/v1/ledger/txs/batch", &[], &body)
            })
        })
        .collect();
    for sender in senders {
        let response = sender.join().expect("batch thread");
        assert_eq!(response.status, 200, "{}", response.text());
        let batch: SubmittedBatch = serde_json::from_str(&response.text()).expect("a batch answer");
        assert!(
            batch
                .results
                .iter()
                .all(|r| matches!(r, BatchResult::Accepted(_))),
            "{batch:?}"
        );
    }
    assert!(
        wait_until(DEADLINE, || balance(&v, &to.to_string()) == Some(3 + 64)),
        "all 64 transfers of the concurrent batches are final"
    );

    // A truncated frame, one item too many, a body too large: refused
    // whole with what a batch must be.
    let mut truncated = body.clone();
    truncated.truncate(body.len() - 3);
    let mut too_many = Vec::new();
    for _ in 0..=bonus_ledger::api::BATCH_TXS_MAX {
        push_frame(&mut too_many, b"x");
    }
    for refused in [truncated, too_many, Vec::new()] {
        let response =
            bonus_tests::http_request(&v.api, "POST", "/v1/ledger/txs/batch", &[], &refused);
        assert_eq!(response.status, 400, "{}", response.text());
        assert!(response.text().contains("batch"), "{}", response.text());
    }
    let huge = vec![0u8; bonus_ledger::api::BATCH_BYTES_MAX + 1];
    let response = bonus_tests::http_request(&v.api, "POST", "/v1/ledger/txs/batch", &[], &huge);
    assert_eq!(response.status, 413, "{}", response.text());
    assert_eq!(v.get("/v1/ledger/status")["mempool"].as_u64(), Some(0));

    // Overdraft: the CLI says what the account has and what it needs,
    // before sending anything.
    let (ok, _, stderr) = bonus(
        &home,
        &[
            "transfer",
            "ed25519:8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
            "999999999999999",
            "--key-file",
            net.join("faucet.key").to_str().expect("utf-8"),
            "--ledger",
            &v.api,
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("to spend") && stderr.contains("needs 1000000000000000"),
        "{stderr}"
    );
    assert_eq!(v.get("/v1/ledger/status")["mempool"].as_u64(), Some(0));

    // Not a validator's key: a clear refusal at start.
    let (ok, _, _) = bonus(&home, &["keys", "new", "--name", "stranger"]);
    assert!(ok);
    let stranger = home.join("keys").join("stranger.key");
    let (ok, _, stderr) = bonus(
        &home,
        &[
            "validator",
            "--genesis",
            net.join("genesis.json").to_str().expect("utf-8"),
            "--key-file",
            stranger.to_str().expect("utf-8"),
            "--data-dir",
            dir.join("stranger").to_str().expect("utf-8"),
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("not a validator"), "{stderr}");
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bonus-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn digest_of(text: &str) -> bonus_ledger::chain::Digest {
    use commonware_codec::DecodeExt as _;
    bonus_ledger::chain::Digest::decode(hex_decode(text)).expect("a 32-byte digest")
}
