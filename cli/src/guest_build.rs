//! Turning what the user pointed at into a `.wasm` file: either it is one,
//! or it is a Rust project that `cargo` builds for `wasm32-wasip2`, or a
//! JavaScript/TypeScript handler that sdk-js's `bonus-build-js` builds.

use anyhow::{Context, bail};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `.wasm` to serve for `path`, building it first if `path` is a project.
pub fn resolve(path: &Path, quiet: bool) -> anyhow::Result<PathBuf> {
    if is_js_handler(path) {
        return build_js(path, None, quiet);
    }
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
            "{} is neither a .wasm file, a Rust project (no Cargo.toml) nor a JS handler (no index.js or index.ts); pass a component or a project directory",
            path.display()
        );
    }
    bail!(
        "{} does not exist; pass a .wasm component or a Rust project directory",
        path.display()
    )
}

const JS_EXTENSIONS: [&str; 4] = ["js", "mjs", "ts", "mts"];

/// A JS/TS handler file, or a directory holding one (and no Cargo.toml).
pub fn is_js_handler(path: &Path) -> bool {
    if path.is_file() {
        return path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| JS_EXTENSIONS.contains(&ext));
    }
    path.is_dir()
        && !path.join("Cargo.toml").is_file()
        && [
            "package.json",
            "index.js",
            "index.ts",
            "src/index.js",
            "src/index.ts",
        ]
        .iter()
        .any(|name| path.join(name).is_file())
}

/// Builds a JS/TS handler with sdk-js's `bonus-build-js` (componentize-js,
/// pre-initialized) and returns the component's path. Its errors (with
/// file and line) go straight to the terminal.
pub fn build_js(path: &Path, output: Option<&Path>, quiet: bool) -> anyhow::Result<PathBuf> {
    let script = sdk_js_build_script(path)?;
    let mut command = Command::new("node");
    command.arg(&script).arg(path).stdout(Stdio::piped());
    if let Some(output) = output {
        command.arg("-o").arg(output);
    }
    if quiet {
        command.arg("--quiet");
    }
    let child = command
        .spawn()
        .context("cannot run node; install Node.js 20 or later (https://nodejs.org)")?;
    let result = child
        .wait_with_output()
        .context("waiting for bonus-build-js")?;
    if !result.status.success() {
        bail!(
            "building {} failed (see the error above); fix the handler and retry",
            path.display()
        );
    }
    let built = String::from_utf8_lossy(&result.stdout).trim().to_string();
    if built.is_empty() {
        bail!(
            "bonus-build-js printed no output path; is {} the sdk-js build script?",
            script.display()
        );
    }
    Ok(PathBuf::from(built))
}

/// sdk-js's build script: `$BONUS_SDK_JS` (the `@bonus/sdk` package
/// directory), else `node_modules/@bonus/sdk` above the handler, else this
/// source tree's `sdk-js` once `npm ci` has run there.
fn sdk_js_build_script(handler: &Path) -> anyhow::Result<PathBuf> {
    const SCRIPT: &str = "bin/bonus-build-js.js";
    if let Some(dir) = std::env::var_os("BONUS_SDK_JS") {
        let script = PathBuf::from(dir).join(SCRIPT);
        if !script.is_file() {
            bail!("BONUS_SDK_JS has no {SCRIPT}; point it at the @bonus/sdk package directory");
        }
        return Ok(script);
    }
    let handler = handler
        .canonicalize()
        .unwrap_or_else(|_| handler.to_path_buf());
    if let Some(script) = handler
        .ancestors()
        .map(|dir| dir.join("node_modules/@bonus/sdk").join(SCRIPT))
        .find(|script| script.is_file())
    {
        return Ok(script);
    }
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-js");
    let script = tree.join("packages/sdk").join(SCRIPT);
    if !script.is_file() {
        bail!(
            "no JavaScript SDK found: `npm install @bonus/sdk` in your project, or set BONUS_SDK_JS to its directory"
        );
    }
    if !tree
        .join("node_modules/@bytecodealliance/componentize-js")
        .is_dir()
    {
        bail!(
            "the JavaScript SDK in {} is not installed; run `npm ci` there and retry",
            tree.display()
        );
    }
    Ok(script)
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
