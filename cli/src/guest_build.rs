//! Turning what the user pointed at into a `.wasm` file: either it is one,
//! or it is a Rust project that `cargo` builds for `wasm32-wasip2`.

use anyhow::{Context, bail};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `.wasm` to serve for `path`, building it first if `path` is a project.
pub fn resolve(path: &Path, quiet: bool) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.join("Cargo.toml").is_file() {
        ensure_wasip2_target(quiet)?;
        crate::output::status(
            quiet,
            "Building",
            format!("{} for wasm32-wasip2", path.display()),
        );
        return cargo_build(path);
    }
    if path.exists() {
        bail!(
            "{} is neither a .wasm file nor a Rust project (no Cargo.toml); pass a component or a project directory",
            path.display()
        );
    }
    bail!(
        "{} does not exist; pass a .wasm component or a Rust project directory",
        path.display()
    )
}

/// Installs the `wasm32-wasip2` target through rustup if it is missing, as
/// a first build on a fresh machine needs it.
fn ensure_wasip2_target(quiet: bool) -> anyhow::Result<()> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: the toolchain is managed otherwise; cargo will say
        // what is missing.
        return Ok(());
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|target| target.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    crate::output::status(
        quiet,
        "Installing",
        "the wasm32-wasip2 target (rustup target add wasm32-wasip2)",
    );
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("`rustup target add wasm32-wasip2` failed; run it yourself and retry");
    }
    Ok(())
}

fn cargo_build(project: &Path) -> anyhow::Result<PathBuf> {
    let project = project
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", project.display()))?;
    let manifest = project.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(&project)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo; install Rust from https://rustup.rs")?;
    let stdout = child
        .stdout
        .take()
        .context("cargo's stdout is not captured")?;
    let mut wasm = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact"
            || message["manifest_path"].as_str().map(Path::new) != Some(manifest.as_path())
        {
            continue;
        }
        let files = message["filenames"].as_array().into_iter().flatten();
        if let Some(file) = files
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        {
            let file = PathBuf::from(file);
            wasm = Some(file.canonicalize().unwrap_or(file));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "building {} failed (see cargo's errors above); if the target is missing run `rustup target add wasm32-wasip2`",
            project.display()
        );
    }
    wasm.with_context(|| {
        format!(
            "cargo built {} but produced no .wasm; set `crate-type = [\"cdylib\"]` in its [lib] section",
            project.display()
        )
    })
}

/// Bonus' home directory: `$BONUS_HOME`, else `~/.bonus`.
pub fn bonus_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("BONUS_HOME") {
        return Ok(PathBuf::from(home));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".bonus")),
        None => bail!("neither BONUS_HOME nor HOME is set; set BONUS_HOME to a writable directory"),
    }
}
