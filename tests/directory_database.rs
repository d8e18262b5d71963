//! The user directory in the embedded database, through the real binary: a damaged database
//! stops the server by name, and the `user` command and a running directory share one store.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use omero_sessiond::auth::{Directory, Password};
use omero_sessiond::store::sqlite::DATABASE_FILE;

const BIN: &str = env!("CARGO_BIN_EXE_omero-sessiond");
/// How long a server that should refuse to start may run before the test gives up on it
/// (a bound against hanging, not a speed requirement).
const EXIT_BOUND: Duration = Duration::from_secs(300);

fn serve_until_exit(data: &Path, extra: &[&str]) -> (bool, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--ssl",
            "127.0.0.1:0",
            "--https",
            "off",
        ])
        .arg("--data")
        .arg(data)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start omero-sessiond");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for omero-sessiond") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
            }
            return (status.success(), stderr);
        }
        if started.elapsed() > EXIT_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("omero-sessiond kept running on a damaged database");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_damaged_database_stops_the_server_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(DATABASE_FILE);
    std::fs::write(&db, vec![0x5a; 16 * 1024]).unwrap();
    let (ok, stderr) = serve_until_exit(tmp.path(), &[]);
    assert!(!ok, "the server must refuse a damaged database");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    // Never a silent reset: the damaged file is still there as it was.
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x5a; 16 * 1024]);
}

#[test]
fn the_database_config_key_and_flag_choose_the_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "database = \"mysql://u:secret@127.0.0.1/db\"\n").unwrap();
    let config = config.to_str().unwrap();
    let data = tmp.path().join("data");
    let (ok, stderr) = serve_until_exit(&data, &["--config", config]);
    assert!(!ok);
    assert!(
        stderr.contains("unsupported database scheme \"mysql\""),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    // The flag wins over the file.
    let (ok, stderr) = serve_until_exit(&data, &["--config", config, "--database", "nope://x"]);
    assert!(!ok);
    assert!(
        stderr.contains("unsupported database scheme \"nope\""),
        "{stderr}"
    );
}

#[test]
fn the_user_command_and_a_running_directory_share_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Directory::open(tmp.path()).unwrap();
    let mut child = Command::new(BIN)
        .args(["user", "add", "late", "--group", "user", "--password-stdin"])
        .arg("--data")
        .arg(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start omero-sessiond user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"late-pw\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The next login check sees the new user without a restart.
    let info = server
        .verify_password("late", &Password::new("late-pw"))
        .unwrap();
    assert_eq!(info.ome_name, "late");
    // And the command line sees the server's changes.
    server.add_group("from-server", "rwr---").unwrap();
    let listed = Command::new(BIN)
        .args(["group", "list", "--data"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("from-server"));
    assert!(tmp.path().join(DATABASE_FILE).exists());
    assert!(!tmp.path().join("directory.json").exists());
}

#[test]
fn the_backend_contract_is_reachable_from_integration_tests() {
    use omero_sessiond::store::directory::contract::check_backend;
    use omero_sessiond::store::directory::sqlite::SqliteDirectory;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(DATABASE_FILE);
    check_backend(&|| Box::new(SqliteDirectory::open(&path).unwrap()));
}
