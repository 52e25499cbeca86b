//! The scripts run what cargo built where cargo put it: `scripts/chaos.sh` runs the
//! `chaos` and `clockwise` binaries from `$CARGO_TARGET_DIR` when it is set (issue #17),
//! checked with a stand-in `cargo` on `PATH` and stand-in binaries in a temp target dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use clockwise_tests::{unique_temp_dir, workspace_root};

fn executable(path: &Path, script: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn chaos_sh_runs_the_binaries_in_cargo_target_dir() {
    let dir = unique_temp_dir();
    let target = dir.join("target");
    // `cargo build` succeeds without building; `chaos` says what it was given.
    executable(&dir.join("bin/cargo"), "#!/bin/sh\nexit 0\n");
    executable(
        &target.join("debug/chaos"),
        "#!/bin/sh\necho \"chaos $CLOCKWISE_BIN $*\"\n",
    );
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/chaos.sh"))
        .args(["--seed", "7"])
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target)
        .env("CLOCKWISE_PROFILE", "debug")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chaos.sh failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("chaos {}/debug/clockwise --seed 7", target.display())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
