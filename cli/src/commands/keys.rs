//! `bonus keys`: the developer's ed25519 identity.

use crate::commands::GlobalArgs;
use crate::{guest_build, output};
use anyhow::{Context, bail};
use bonus_ids::SecretKey;
use std::path::PathBuf;

/// Create, show or import signing keys (stored under $BONUS_HOME/keys, mode 0600).
#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(clap::Subcommand, Debug)]
enum KeysCommand {
    /// Create a new key.
    New {
        /// Key name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Print a key's public key (the secret is never printed).
    Show {
        /// Key name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Import a secret key from a file holding its 64 hex digits.
    Import {
        /// File with the secret key.
        file: PathBuf,
        /// Key name.
        #[arg(long, default_value = "default")]
        name: String,
    },
}

/// Path of a named key.
pub fn key_path(name: &str) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        bail!("key name {name:?} may only contain letters, digits, '-' and '_'");
    }
    Ok(guest_build::bonus_home()?
        .join("keys")
        .join(format!("{name}.key")))
}

/// Loads a named key, saying how to create it if missing.
pub fn load_key(name: &str) -> anyhow::Result<SecretKey> {
    let path = key_path(name)?;
    if !path.exists() {
        bail!(
            "no signing key {name:?} in {}; run `bonus keys new`",
            path.display()
        );
    }
    Ok(SecretKey::load(&path)?)
}

pub fn run(global: &GlobalArgs, args: KeysArgs) -> anyhow::Result<()> {
    let (name, key, verb) = match args.command {
        KeysCommand::New { name } => {
            let path = key_path(&name)?;
            if path.exists() {
                bail!(
                    "key {name:?} already exists at {}; pick another --name",
                    path.display()
                );
            }
            let key = SecretKey::generate();
            key.save(&path)?;
            (name, key, "Created")
        }
        KeysCommand::Show { name } => (name.clone(), load_key(&name)?, "Key"),
        KeysCommand::Import { file, name } => {
            let key = SecretKey::load(&file)
                .with_context(|| format!("cannot import {}", file.display()))?;
            let path = key_path(&name)?;
            if path.exists() {
                bail!(
                    "key {name:?} already exists at {}; pick another --name",
                    path.display()
                );
            }
            key.save(&path)?;
            (name, key, "Imported")
        }
    };
    if global.json {
        println!(
            "{}",
            serde_json::json!({ "name": name, "public_key": key.public().to_string() })
        );
    } else {
        output::status(
            global.quiet,
            verb,
            format!("{name} ({})", key_path(&name)?.display()),
        );
        println!("{}", key.public());
    }
    Ok(())
}
