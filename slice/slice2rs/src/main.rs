//! The `slice2rs` command: `check` validates Slice files, `gen` writes the Rust for them.

use std::path::PathBuf;
use std::process::ExitCode;

use slice2rs::Options;

const USAGE: &str = "usage: slice2rs check [-I DIR]... FILE...
       slice2rs gen [-I DIR]... [--proxy ::M::I|*]... [--check-modes] --out DIR FILE...";

struct Args {
    command: String,
    opts: Options,
    out: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let (command, rest) = args.split_first().ok_or("missing command")?;
    let mut opts = Options::default();
    let mut out = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if a == "-I" || a == "--out" || a == "--proxy" {
            let v = it.next().ok_or(format!("{a} needs a value"))?;
            match a.as_str() {
                "-I" => opts.include_dirs.push(v.into()),
                "--out" => out = Some(v.into()),
                _ => opts.proxies.push(v.clone()),
            }
        } else if a == "--check-modes" {
            opts.check_modes = true;
        } else if let Some(dir) = a.strip_prefix("-I") {
            opts.include_dirs.push(dir.into());
        } else if a.starts_with('-') {
            return Err(format!("unknown option {a}"));
        } else {
            opts.files.push(a.into());
        }
    }
    if opts.files.is_empty() {
        return Err("no Slice files given".into());
    }
    Ok(Args {
        command: command.clone(),
        opts,
        out,
    })
}

fn run(args: Args) -> Result<(), String> {
    match args.command.as_str() {
        "check" => slice2rs::check(&args.opts).map(|_| ()).map_err(report),
        "gen" => {
            let out = args.out.ok_or("gen needs --out DIR")?;
            let code = slice2rs::compile(&args.opts).map_err(report)?;
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let file = out.join("slice.rs");
            std::fs::write(&file, code).map_err(|e| format!("{}: {e}", file.display()))
        }
        other => Err(format!("unknown command {other}\n{USAGE}")),
    }
}

fn report(diags: Vec<slice2rs::Diagnostic>) -> String {
    for d in &diags {
        eprintln!("{d}");
    }
    format!("{} error(s)", diags.len())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&args)
        .map_err(|e| format!("{e}\n{USAGE}"))
        .and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slice2rs: {e}");
            ExitCode::FAILURE
        }
    }
}
