//! Every unchanged Slice file of Ice 3.7 (package zeroc-ice-slice) must pass `check`.

use std::path::{Path, PathBuf};

/// Where Debian's zeroc-ice-slice puts them; `ICE_SLICE_DIR` overrides.
const DEBIAN_SLICE_DIR: &str = "/usr/share/ice/slice";
const DIRS: &[&str] = &[
    "Ice",
    "Glacier2",
    "IceSSL",
    "IceGrid",
    "IceStorm",
    "IceBox",
    "IcePatch2",
];

fn upstream_dir() -> PathBuf {
    std::env::var_os("ICE_SLICE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_SLICE_DIR))
}

/// The upstream Slice files; missing, they fail the calling test (interop/setup installs
/// them before CI runs the tests).
fn upstream_files() -> Vec<PathBuf> {
    let dir = upstream_dir();
    let root = Path::new(&dir);
    assert!(
        root.is_dir(),
        "{} is absent: run interop/setup (Debian package zeroc-ice-slice) or set ICE_SLICE_DIR",
        root.display()
    );
    let mut files = Vec::new();
    for d in DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(d)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "ice") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_upstream_file_checks() {
    let files = upstream_files();
    assert!(files.len() > 50, "only {} upstream files", files.len());
    let opts = slice2rs::Options {
        include_dirs: vec![upstream_dir()],
        files,
        ..Default::default()
    };
    let checked = match slice2rs::check(&opts) {
        Ok(c) => c,
        Err(diags) => {
            let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
            panic!("upstream files rejected:\n{}", text.join("\n"));
        }
    };
    for name in [
        "::Ice::Identity",
        "::Glacier2::Router",
        "::IceGrid::Admin",
        "::Ice::Locator",
    ] {
        assert!(checked.symbols.contains_key(name), "{name} missing");
    }
    // Generation over the non-local parts must not panic either.
    let all = ["*".to_string()];
    let settings = slice2rs::gen::Settings {
        proxies: &all,
        check_modes: true,
    };
    let code = slice2rs::gen::generate_with(&checked, &settings);
    assert!(code.contains("pub trait Router"));
    assert!(code.contains("pub struct LocatorPrx"));
}

#[test]
fn the_cli_accepts_upstream_and_reports_a_broken_file() {
    let files = upstream_files();
    let bin = env!("CARGO_BIN_EXE_slice2rs");
    let status = std::process::Command::new(bin)
        .arg("check")
        .arg("-I")
        .arg(upstream_dir())
        .args(&files)
        .status()
        .unwrap();
    assert!(status.success());

    let dir = std::env::temp_dir().join(format!("slice2rs-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("Broken.ice");
    std::fs::write(
        &broken,
        "#include <Ice/Identity.ice>\nmodule M\n{\n    struct S { Ice::Identiti id; };\n};\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .arg("check")
        .arg("-I")
        .arg(upstream_dir())
        .arg(&broken)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Broken.ice:4:16: error[E005]: type `Ice::Identiti` is not defined"),
        "{stderr}"
    );
}

#[test]
fn gen_writes_slice_rs() {
    let dir = std::env::temp_dir().join(format!("slice2rs-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("A.ice");
    std::fs::write(&src, "module A { interface I { void f(); }; };\n").unwrap();
    let out = dir.join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_slice2rs"))
        .arg("gen")
        .args(["--proxy", "::A::I", "--out"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    let code = std::fs::read_to_string(out.join("slice.rs")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(status.success());
    assert!(code.contains("pub trait I: Send + Sync"));
    assert!(code.contains("pub struct IPrx"));
}
