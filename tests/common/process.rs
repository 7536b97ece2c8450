//! The built server binary as a process of its own: for what only a real process shows (signals,
//! exit codes, log lines, panics).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running binary, the address it logged, and every line it writes (log lines on stdout, and
/// anything on stderr, such as a panic's message).
pub struct Binary {
    pub child: std::process::Child,
    pub address: String,
    pub logs: std::sync::mpsc::Receiver<String>,
}

/// Starts the built binary with `args` (debug logging, the chattiest level).
pub fn start_binary(args: &[&str], data_dir: &std::path::Path) -> Binary {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatroom"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-format",
            "json",
            "--bcrypt-cost",
            "4",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (sender, logs) = std::sync::mpsc::channel();
    let errors = sender.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = errors.send(line);
        }
    });
    let address = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        sender.send(line).unwrap();
        if entry["message"] == "chatroom listening" {
            break entry["address"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    Binary {
        child,
        address,
        logs,
    }
}

/// Sends `signal` and waits (at most 10 s) for the process to exit.
pub fn stop(child: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("the server did not stop within 10 s of SIG{signal}");
}
