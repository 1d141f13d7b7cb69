//! Running the harness's helper programs and collecting what they print.

use std::{
    io::Write,
    os::unix::process::CommandExt,
    process::{Command, Output, Stdio},
    thread,
};

use crate::{
    bins::Account,
    error::{HarnessError, Result},
};

/// Makes `cmd` run as `account` (when there is one).
pub(crate) fn run_as(cmd: &mut Command, account: Option<Account>) -> &mut Command {
    if let Some(account) = account {
        // std drops root's supplementary groups before switching user.
        cmd.gid(account.gid).uid(account.uid);
    }
    cmd
}

/// Runs `cmd` with no input and returns its standard output; `what` names the step in errors.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(HarnessError::io(format!("starting {what}")))?;
    check(output, what)
}

/// Runs `cmd` with `input` on its standard input and returns its standard output.
pub(crate) fn run_with_input(cmd: &mut Command, input: &str, what: &str) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(HarnessError::io(format!("starting {what}")))?;
    let mut stdin = child.stdin.take().expect("stdin was configured as a pipe");
    let input = input.to_owned();
    // Write from another thread so a program that prints a lot before reading everything cannot
    // deadlock against us.
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(HarnessError::io(format!("waiting for {what}")))?;
    let written = writer
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let output = check(output, what)?;
    written.map_err(HarnessError::io(format!("writing the input of {what}")))?;
    Ok(output)
}

fn check(output: Output, what: &str) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detail = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    Err(HarnessError::CommandFailed {
        what: what.to_owned(),
        status: output.status.to_string(),
        stderr: detail.to_owned(),
    })
}
