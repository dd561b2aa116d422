//! `bonus keys`: the developer's ed25519 identity.

use crate::commands::GlobalArgs;
use crate::{guest_build, output};
use anyhow::{Context, bail};
use bonus_ids::SecretKey;
use std::path::PathBuf;

/// Create, list, show or import signing keys (stored under $BONUS_HOME/keys,
/// mode 0600).
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
    /// List every key: its name and public key.
    List,
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

/// Every stored key, by name; a file that is not a key is reported, not
/// fatal.
fn list(global: &GlobalArgs) -> anyhow::Result<()> {
    let dir = guest_build::bonus_home()?.join("keys");
    let mut keys = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.collect::<Result<Vec<_>, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".key"))
        else {
            continue;
        };
        match SecretKey::load(&path) {
            Ok(key) => keys.push((name.to_string(), key.public().to_string())),
            Err(e) => output::status(
                global.quiet,
                "Skipped",
                format!("{}: not a key ({e})", path.display()),
            ),
        }
    }
    keys.sort();
    if global.json {
        let keys: Vec<_> = keys
            .iter()
            .map(|(name, public)| serde_json::json!({ "name": name, "public_key": public }))
            .collect();
        println!("{}", serde_json::json!({ "keys": keys }));
    } else if keys.is_empty() {
        output::status(
            global.quiet,
            "Note",
            format!("no keys in {}; run `bonus keys new`", dir.display()),
        );
    } else {
        let width = keys.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, public) in &keys {
            println!("{name:<width$}  {public}");
        }
    }
    Ok(())
}

pub fn run(global: &GlobalArgs, args: KeysArgs) -> anyhow::Result<()> {
    let (name, key, verb) = match args.command {
        KeysCommand::List => return list(global),
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
