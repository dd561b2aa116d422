//! Cranelift in a child process, under a CPU and memory budget.
//!
//! Winch compiles in one pass, in time linear in the code. Cranelift does
//! not: one 1 MB function with 50 000 locals live across a loop takes it
//! 24 s, a 7 MB one more than 10 minutes (bench/README.md, "compile
//! bombs"), and a deployer pays nothing for the compile its artifact costs
//! each worker. Wasmtime cannot cancel a compile, so a node that owns its
//! CPU compiles in a child process of its own executable, which the kernel
//! stops at the budget (`RLIMIT_CPU`, `RLIMIT_AS`) and which dies with the
//! thread that started it. A component past its budget stays on Winch's
//! code.
//!
//! The child reads the component on stdin and answers on stdout with one
//! status byte, then either its per-function cache's counts (three u64,
//! little-endian: hits, misses, functions cached) and the serialized
//! component ([`CHILD_OK`]), or the compiler's error message
//! ([`CHILD_INVALID`]). It compiles with the
//! engine settings of the parent, so the parent can deserialize the code;
//! it shares the parent's per-function cache directory (the log is
//! appended under a file lock).

use crate::fncache::FunctionCache;
use crate::{ArtifactId, Error, Result};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

/// The environment variable that makes an executable a compile child.
pub const CHILD_ENV: &str = "BONUS_COMPILE_CHILD";
const FUEL_ENV: &str = "BONUS_COMPILE_FUEL";
const CACHE_ENV: &str = "BONUS_COMPILE_CACHE_DIR";

const CHILD_OK: u8 = b'K';
const CHILD_INVALID: u8 = b'E';
/// Exit code of a child whose compiler refused the component.
const EXIT_INVALID: u8 = 2;

/// Largest component a child reads (the registry's artifact bound is
/// 50 MiB).
const CHILD_INPUT_BYTES_MAX: u64 = 256 << 20;
/// Largest answer the parent reads: the code Cranelift makes for the
/// 12.4 MiB hello-js is about 60 MB.
const CHILD_OUTPUT_BYTES_MAX: u64 = 2 << 30;

/// How much one optimizing compile may use before it is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileBudget {
    /// CPU seconds every compile may use (all its threads together).
    pub cpu_seconds_base: u64,
    /// More CPU seconds per started MiB of component: Cranelift takes
    /// about 16 s of CPU on hello-js (12.4 MiB), 1.3 s per MiB.
    pub cpu_seconds_per_mib: u64,
    /// Address space of the child (`RLIMIT_AS`).
    pub memory_bytes: u64,
}

impl CompileBudget {
    /// About 5× what ordinary code needs: hello-js gets 82 s of CPU (and
    /// 8 GiB of address space for its 620 MB), a 50 MiB component 230 s.
    pub const DEFAULT: CompileBudget = CompileBudget {
        cpu_seconds_base: 30,
        cpu_seconds_per_mib: 4,
        memory_bytes: 8 << 30,
    };

    /// CPU seconds for a component of `len` bytes.
    pub fn cpu_seconds(&self, len: usize) -> u64 {
        let mib = (len as u64).div_ceil(1 << 20);
        self.cpu_seconds_base
            .saturating_add(self.cpu_seconds_per_mib.saturating_mul(mib))
    }
}

impl Default for CompileBudget {
    fn default() -> Self {
        CompileBudget::DEFAULT
    }
}

/// Where optimizing compiles run when they must not run in this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileChild {
    /// An executable whose `main` first calls [`serve_if_child`] (the
    /// `bonus` binary).
    pub program: PathBuf,
    /// The limits the kernel enforces on each compile.
    pub budget: CompileBudget,
}

impl CompileChild {
    /// This process's own executable, with the default budget.
    pub fn this_program() -> std::io::Result<CompileChild> {
        Ok(CompileChild {
            program: std::env::current_exe()?,
            budget: CompileBudget::DEFAULT,
        })
    }
}

/// What a compile child needs of the parent's configuration.
pub(crate) struct ChildSettings<'a> {
    pub(crate) fuel: bool,
    pub(crate) cache_dir: Option<&'a std::path::Path>,
}

/// What a child compiled.
pub(crate) struct Compiled {
    /// wasmtime's serialized component.
    pub(crate) code: Vec<u8>,
    /// Functions the child found in the per-function cache, and compiled.
    pub(crate) function_hits: u64,
    pub(crate) function_misses: u64,
    /// Functions in that cache once the child was done.
    pub(crate) functions_cached: u64,
}

const COUNTS_LEN: usize = 3 * 8;

/// Compiles `wasm` in a child process, or says why not.
pub(crate) fn compile(
    child: &CompileChild,
    settings: &ChildSettings<'_>,
    artifact_id: &ArtifactId,
    wasm: &[u8],
) -> Result<Compiled> {
    let cpu_seconds = child.budget.cpu_seconds(wasm.len());
    let memory_bytes = child.budget.memory_bytes;
    let failed = |reason: String| Error::CompileChild {
        artifact_id: *artifact_id,
        reason,
    };
    let mut command = Command::new(&child.program);
    command
        .env(CHILD_ENV, "1")
        .env(FUEL_ENV, if settings.fuel { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match settings.cache_dir {
        Some(dir) => command.env(CACHE_ENV, dir),
        None => command.env_remove(CACHE_ENV),
    };
    limit_child(&mut command, cpu_seconds, memory_bytes);
    let mut process = command
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", child.program.display())))?;
    // Until it has been waited for (dropped last).
    let _running = Running::register(process.id());
    // The child reads all its input before it writes, so writing first
    // cannot deadlock; a child that died early shows in its status below.
    if let Some(mut stdin) = process.stdin.take() {
        let _ = stdin.write_all(wasm);
    }
    let mut answer = Vec::new();
    let read = match process.stdout.take() {
        Some(stdout) => stdout
            .take(CHILD_OUTPUT_BYTES_MAX + 1)
            .read_to_end(&mut answer)
            .map(|_| ()),
        None => Ok(()),
    };
    let status = process
        .wait()
        .map_err(|e| failed(format!("cannot wait for the compile process: {e}")))?;
    read.map_err(|e| failed(format!("cannot read the compile process's answer: {e}")))?;
    if answer.len() as u64 > CHILD_OUTPUT_BYTES_MAX {
        return Err(failed("the compiled code is larger than 2 GiB".into()));
    }
    match (answer.split_first(), status.code()) {
        (Some((&CHILD_OK, answer)), Some(0)) if answer.len() >= COUNTS_LEN => {
            let (counts, code) = answer.split_at(COUNTS_LEN);
            let count = |i: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&counts[i * 8..i * 8 + 8]);
                u64::from_le_bytes(bytes)
            };
            Ok(Compiled {
                code: code.to_vec(),
                function_hits: count(0),
                function_misses: count(1),
                functions_cached: count(2),
            })
        }
        (Some((&CHILD_INVALID, message)), Some(c)) if c == i32::from(EXIT_INVALID) => {
            Err(Error::InvalidComponent {
                artifact_id: *artifact_id,
                reason: String::from_utf8_lossy(message).into_owned(),
            })
        }
        // Stopped by the kernel at its CPU limit (SIGXCPU), or aborted when
        // an allocation failed at its memory limit or its stack overflowed.
        // Not SIGKILL: the out-of-memory killer or an operator, not the
        // component, and the budget's verdict is remembered.
        (_, None) if over_budget_signal(&status) => Err(Error::CompileBudget {
            artifact_id: *artifact_id,
            cpu_seconds,
            memory_mib: memory_bytes >> 20,
        }),
        (_, None) => Err(failed(format!("the compile process was ended ({status})"))),
        (_, Some(code)) => Err(failed(format!(
            "the compile process exited with status {code} and {} bytes of answer",
            answer.len()
        ))),
    }
}

/// Compile children running now, by process id.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// The process ids of this process's compile children running now: their
/// CPU time is the node's own (an `--idle-only` worker must not take its
/// own compile for the owner using the machine). A child's time moves to
/// the `cutime` of `/proc/self/stat` once it has been waited for.
pub fn running_children() -> Vec<u32> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Lists a child in [`RUNNING`] until dropped (after it was waited for).
struct Running(u32);

impl Running {
    fn register(pid: u32) -> Running {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        Running(pid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|&pid| pid != self.0);
    }
}

/// Whether a child ended by a signal that its budget sends (see
/// [`limit_child`]) or that running out of it causes.
fn over_budget_signal(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(
        status.signal(),
        Some(libc::SIGXCPU | libc::SIGABRT | libc::SIGSEGV)
    )
}

#[cfg(target_os = "linux")]
fn limit_child(command: &mut Command, cpu_seconds: u64, memory_bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure makes only syscalls
    // (setrlimit, prctl), which are async-signal-safe, and allocates
    // nothing.
    unsafe {
        command.pre_exec(move || {
            let limit = |resource, soft: u64, hard: u64| {
                let value = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                match libc::setrlimit(resource, &value) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            };
            // SIGXCPU at the budget; SIGKILL a second later if it is caught.
            limit(libc::RLIMIT_CPU, cpu_seconds, cpu_seconds.saturating_add(1))?;
            limit(libc::RLIMIT_AS, memory_bytes, memory_bytes)?;
            // No core file of a compile that was stopped.
            limit(libc::RLIMIT_CORE, 0, 0)?;
            // A node that dies takes its compiles with it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn limit_child(_command: &mut Command, _cpu_seconds: u64, _memory_bytes: u64) {}

/// The compile child's whole life, when this process was started as one
/// (its environment holds [`CHILD_ENV`]); `None` otherwise. Call it first
/// thing in `main` of the program named in [`CompileChild`], and exit with
/// the code it returns.
pub fn serve_if_child() -> Option<ExitCode> {
    std::env::var_os(CHILD_ENV)?;
    Some(match child_main() {
        Ok(code) => code,
        Err(e) => {
            let _ = std::io::stderr().write_all(format!("compile child: {e}\n").as_bytes());
            ExitCode::FAILURE
        }
    })
}

fn child_main() -> std::io::Result<ExitCode> {
    let mut wasm = Vec::new();
    std::io::stdin()
        .take(CHILD_INPUT_BYTES_MAX)
        .read_to_end(&mut wasm)?;
    let fuel = std::env::var_os(FUEL_ENV).is_none_or(|v| v != "0");
    let cache_dir = std::env::var_os(CACHE_ENV).map(PathBuf::from);
    let functions = std::sync::Arc::new(match &cache_dir {
        Some(dir) => FunctionCache::open(dir)?,
        None => FunctionCache::in_memory(),
    });
    let mut stdout = std::io::stdout().lock();
    let compiled = crate::engine::optimizing_engine(fuel, &functions)
        .map_err(|e| format!("{e}"))
        .and_then(|engine| {
            wasmtime::component::Component::new(&engine, &wasm).map_err(|e| format!("{e:#}"))
        });
    let component = match compiled {
        Ok(component) => component,
        Err(message) => {
            stdout.write_all(&[CHILD_INVALID])?;
            stdout.write_all(message.as_bytes())?;
            stdout.flush()?;
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    functions.flush();
    let serialized = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let (hits, misses) = functions.lookups();
    stdout.write_all(&[CHILD_OK])?;
    for count in [hits, misses, functions.len() as u64] {
        stdout.write_all(&count.to_le_bytes())?;
    }
    stdout.write_all(&serialized)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended_by(signal: &str) -> std::process::ExitStatus {
        Command::new("sh")
            .args(["-c", &format!("kill -{signal} $$")])
            .status()
            .expect("sh runs")
    }

    /// Only what the budget causes is the budget's verdict, which is
    /// remembered across restarts: not the out-of-memory killer's SIGKILL.
    #[test]
    fn only_the_budgets_signals_mean_over_budget() {
        assert!(over_budget_signal(&ended_by("XCPU")));
        assert!(over_budget_signal(&ended_by("ABRT")));
        assert!(!over_budget_signal(&ended_by("KILL")));
        assert!(!over_budget_signal(&ended_by("TERM")));
        let exited = Command::new("sh").args(["-c", "exit 1"]).status();
        assert!(!over_budget_signal(&exited.expect("sh runs")));
    }
}
