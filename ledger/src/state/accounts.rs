//! Balances, fees, stake and unbonding: the only code that moves money.
//! Every helper keeps the running supply, so a transition that creates or
//! destroys money stops the node at the next check.

use super::State;
use crate::TxError;
use crate::params::BlockCtx;
use bonus_ids::PublicKey;

impl State {
    /// Takes `amount` from `account`'s balance.
    pub(super) fn debit(&mut self, account: PublicKey, amount: u64) -> Result<(), TxError> {
        if amount == 0 {
            return Ok(());
        }
        let debited = self.accounts.try_modify(&account, |entry| {
            entry.balance = entry.balance.checked_sub(amount).ok_or(entry.balance)?;
            Ok(())
        });
        match debited.unwrap_or(Err(0)) {
            Ok(()) => {
                self.supply -= u128::from(amount);
                Ok(())
            }
            Err(available) => Err(TxError::InsufficientFunds {
                account,
                available,
                needed: amount,
            }),
        }
    }

    /// Takes a transaction's fee from its signer and uses up its nonce, in
    /// one walk to the account. Refuses a nonce other than the next one,
    /// then a fee the balance does not cover; refused, nothing changes.
    pub(super) fn take_fee_and_nonce(
        &mut self,
        signer: PublicKey,
        nonce: u64,
        fee: u64,
    ) -> Result<(), TxError> {
        let wrong_nonce = |expected| TxError::WrongNonce {
            signer,
            expected,
            got: nonce,
        };
        let cannot_pay = TxError::CannotPayFee { signer, fee };
        let taken = self.accounts.try_modify(&signer, |entry| {
            if entry.nonce != nonce {
                return Err(wrong_nonce(entry.nonce));
            }
            let Some(balance) = entry.balance.checked_sub(fee) else {
                return Err(cannot_pay.clone());
            };
            entry.balance = balance;
            entry.nonce += 1;
            Ok(())
        });
        match taken {
            Some(result) => result?,
            // No account: its next nonce is 0 and it has nothing to pay
            // with (the fee is at least 1, see `Params::validate`).
            None if nonce != 0 => return Err(wrong_nonce(0)),
            None => return Err(cannot_pay),
        }
        self.supply -= u128::from(fee);
        Ok(())
    }

    /// Undoes [`State::take_fee_and_nonce`] for a transaction whose body
    /// was refused (and changed nothing), so it leaves no trace.
    pub(super) fn return_fee_and_nonce(&mut self, signer: PublicKey, fee: u64) {
        let entry = self.accounts.or_default(signer);
        entry.nonce -= 1;
        entry.balance = entry
            .balance
            .checked_add(fee)
            .expect("a balance exceeds the total supply");
        self.supply += u128::from(fee);
    }

    /// Adds `amount` to `account`'s balance. Never overflows: every amount
    /// is part of a supply that genesis checked fits in u64.
    pub(super) fn credit(&mut self, account: PublicKey, amount: u64) {
        if amount == 0 {
            return;
        }
        self.accounts.modify_or_default(account, |entry| {
            entry.balance = entry
                .balance
                .checked_add(amount)
                .expect("a balance exceeds the total supply");
        });
        self.supply += u128::from(amount);
    }

    pub(super) fn add_to_fee_pool(&mut self, amount: u64) {
        self.fee_pool = self
            .fee_pool
            .checked_add(amount)
            .expect("the fee pool exceeds the total supply");
        self.globals_dirty = true;
        self.supply += u128::from(amount);
    }

    /// Moves `amount` of `account`'s balance to its stake.
    pub(super) fn bond(&mut self, account: PublicKey, amount: u64) -> Result<(), TxError> {
        self.debit(account, amount)?;
        let entry = self.accounts.or_default(account);
        entry.stake = entry
            .stake
            .checked_add(amount)
            .expect("a stake exceeds the total supply");
        self.supply += u128::from(amount);
        Ok(())
    }

    /// Moves `amount` of bonded stake to unbonding, returned to the balance
    /// `unbonding_ms` of block time later. Slashable until then.
    pub(super) fn start_unbonding(&mut self, account: PublicKey, amount: u64, ctx: BlockCtx) {
        if amount == 0 {
            return;
        }
        let at = ctx.time_ms.saturating_add(self.params.unbonding_ms);
        let entry = self.accounts.or_default(account);
        assert!(entry.stake >= amount, "unbonding more than the stake");
        entry.stake -= amount;
        entry.unbonding.push((amount, at));
        self.releases.insert((at, account));
    }

    /// Returns unbonding entries due at `now_ms` to their balances.
    pub(super) fn release_unbonded(&mut self, now_ms: u64) {
        while let Some(&(at, account)) = self.releases.get_min() {
            if at > now_ms {
                break;
            }
            self.releases.remove_min();
            let entry = self.accounts.or_default(account);
            let (due, kept): (Vec<_>, Vec<_>) =
                entry.unbonding.iter().partition(|(_, at)| *at <= now_ms);
            entry.unbonding = kept;
            let released: u64 = due.iter().map(|(amount, _)| amount).sum();
            // Unbonding → balance: the supply does not change.
            entry.balance = entry
                .balance
                .checked_add(released)
                .expect("a balance exceeds the total supply");
        }
    }

    /// Takes `account`'s whole stake and unbonding (a slash); returns it.
    pub(super) fn seize_stake(&mut self, account: PublicKey) -> u64 {
        let Some(entry) = self.accounts.get_mut(&account) else {
            return 0;
        };
        let unbonding: u64 = entry.unbonding.drain(..).map(|(amount, _)| amount).sum();
        let taken = entry.stake + unbonding;
        entry.stake = 0;
        // Rare (a slash) and bounded by the unbonding queue.
        let released: Vec<_> = self
            .releases
            .iter()
            .filter(|(_, key)| *key == account)
            .copied()
            .collect();
        for entry in released {
            self.releases.remove(&entry);
        }
        self.supply -= u128::from(taken);
        taken
    }

    pub(super) fn transfer(
        &mut self,
        from: PublicKey,
        to: PublicKey,
        amount: u64,
    ) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::Malformed("transfer of zero"));
        }
        self.debit(from, amount)?;
        self.accounts.modify_or_default(to, |entry| {
            entry.balance = entry
                .balance
                .checked_add(amount)
                .expect("a balance exceeds the total supply");
            if from != to {
                // A top-up: the owner can pay again.
                entry.unpaid = false;
            }
        });
        self.supply += u128::from(amount);
        Ok(())
    }

    pub(super) fn stake(&mut self, signer: PublicKey, amount: u64) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::Malformed("stake of zero"));
        }
        self.bond(signer, amount)
    }

    pub(super) fn unstake(
        &mut self,
        signer: PublicKey,
        amount: u64,
        ctx: BlockCtx,
    ) -> Result<(), TxError> {
        let staked = self.accounts.read(&signer, |a| a.stake).unwrap_or(0);
        if amount == 0 || staked < amount {
            return Err(TxError::InsufficientFunds {
                account: signer,
                available: staked,
                needed: amount,
            });
        }
        if let Some(node) = self.nodes.get(&signer) {
            let minimum = self.stake_min(node.role);
            if staked - amount < minimum {
                return Err(TxError::StakeBelowMinimum {
                    role: node.role.as_str(),
                    minimum,
                    stake: staked - amount,
                });
            }
        }
        self.start_unbonding(signer, amount, ctx);
        Ok(())
    }
}
