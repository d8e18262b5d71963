//! `user` and `group` administration commands over the data directory.
//!
//! They run in their own process beside (or without) a running server; the server picks the
//! changes up on its next login check. Passwords are only ever read from standard input.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::directory::{Directory, NewExperimenter};
use super::password::Password;

/// Default data directory of the server and these commands.
pub const DEFAULT_DATA_DIR: &str = "./omero-sessiond-data";

/// Administration commands; the binary nests them under its own command line.
#[derive(Debug, Clone, Subcommand)]
pub enum AuthCommand {
    /// Manage experimenters (users).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
}

/// Where the server keeps its users: the options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct DataDir {
    /// Data directory of the server.
    #[arg(long = "data", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// The server's database, as given to `serve --database` (default: the embedded
    /// database in the data directory).
    #[arg(long = "database", value_name = "URL")]
    pub database: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Add a user. Every user is a member of `user`; the default group is the first --group
    /// other than `system`/`user`, else `user`. --admin adds membership of `system`.
    Add {
        name: String,
        /// Make the user an administrator (member of `system`).
        #[arg(long)]
        admin: bool,
        /// A group to join (repeatable, in order).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// A group the user owns (repeatable); implies membership.
        #[arg(long = "owner-of", value_name = "GROUP")]
        owner_of: Vec<String>,
        #[arg(long = "first", value_name = "FIRST")]
        first_name: Option<String>,
        #[arg(long = "last", value_name = "LAST")]
        last_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Set a user's password (read from standard input).
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// List users.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Remove a user (root and guest cannot be removed).
    Remove {
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum GroupCommand {
    /// Add a group.
    Add {
        name: String,
        /// Permissions: rw---- (private), rwr--- (read-only), rwra-- (read-annotate),
        /// rwrw-- (read-write).
        #[arg(long, default_value = "rw----")]
        perms: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List groups.
    List {
        #[command(flatten)]
        data: DataDir,
    },
}

/// Runs a command with the process's standard input and output.
pub fn run(cmd: AuthCommand) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_with(cmd, &mut input, &mut out)
}

/// Runs a command reading passwords from `input` and writing results to `out`.
pub fn run_with(
    cmd: AuthCommand,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        AuthCommand::User(user) => run_user(user, input, out),
        AuthCommand::Group(group) => run_group(group, out),
    }
}

fn run_user(cmd: UserCommand, input: &mut dyn BufRead, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            name,
            admin,
            groups,
            owner_of,
            first_name,
            last_name,
            email,
            password_stdin: _,
            data,
        } => {
            let dir = open(&data)?;
            let password = read_password(input)?;
            let info = dir.add_experimenter(NewExperimenter {
                ome_name: name,
                first_name,
                last_name,
                email,
                password,
                admin,
                groups,
                owner_of,
            })?;
            let default = info
                .default_group_id()
                .and_then(|g| dir.group(g))
                .map(|g| g.name)
                .unwrap_or_default();
            writeln!(
                out,
                "added user {} (id {}), default group {}{}",
                info.ome_name,
                info.id,
                default,
                if info.is_admin() {
                    ", administrator"
                } else {
                    ""
                }
            )?;
        }
        UserCommand::Passwd { name, data, .. } => {
            let dir = open(&data)?;
            let password = read_password(input)?;
            dir.set_password(&name, &password)?;
            writeln!(out, "password of {name} changed")?;
        }
        UserCommand::List { data } => list_users(&open(&data)?, out)?,
        UserCommand::Remove { name, data } => {
            open(&data)?.remove_experimenter(&name)?;
            writeln!(out, "removed user {name}")?;
        }
    }
    Ok(())
}

fn run_group(cmd: GroupCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::Add { name, perms, data } => {
            let group = open(&data)?.add_group(&name, &perms)?;
            writeln!(
                out,
                "added group {} (id {}, permissions {})",
                group.name, group.id, group.permissions
            )?;
        }
        GroupCommand::List { data } => {
            let dir = open(&data)?;
            writeln!(out, "ID\tNAME\tPERMISSIONS")?;
            for g in dir.groups() {
                writeln!(out, "{}\t{}\t{}", g.id, g.name, g.permissions)?;
            }
        }
    }
    Ok(())
}

fn list_users(dir: &Directory, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "ID\tNAME\tFIRST\tLAST\tEMAIL\tADMIN\tGROUPS (default first)"
    )?;
    for e in dir.experimenters() {
        let groups: Vec<String> = e
            .member_of
            .iter()
            .map(|gid| {
                let name = dir
                    .group(*gid)
                    .map(|g| g.name)
                    .unwrap_or_else(|| gid.to_string());
                if e.leads(*gid) {
                    format!("{name}(owner)")
                } else {
                    name
                }
            })
            .collect();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.id,
            e.ome_name,
            e.first_name,
            e.last_name,
            e.email.as_deref().unwrap_or("-"),
            if e.is_admin() { "yes" } else { "no" },
            groups.join(",")
        )?;
    }
    Ok(())
}

fn open(data: &DataDir) -> anyhow::Result<Directory> {
    Directory::open_database(&data.data, data.database.as_deref())
        .with_context(|| format!("cannot open data directory {}", data.data.display()))
}

/// One line from `input` without its line ending; an empty password is refused.
fn read_password(input: &mut dyn BufRead) -> anyhow::Result<Password> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let trimmed = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if trimmed.is_empty() {
        bail!("empty password refused (give it on standard input, one line)");
    }
    Ok(Password::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: AuthCommand,
    }

    fn exec(args: &[&str], stdin: &str) -> anyhow::Result<String> {
        let parsed = TestCli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))?;
        let mut out = Vec::new();
        run_with(parsed.cmd, &mut stdin.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn add_list_passwd_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("d");
        let data = data.to_str().unwrap();
        let out = exec(
            &["group", "add", "lab", "--perms", "rwr---", "--data", data],
            "",
        )
        .unwrap();
        assert_eq!(out, "added group lab (id 3, permissions rwr---)\n");
        let out = exec(
            &[
                "user",
                "add",
                "alice",
                "--group",
                "lab",
                "--first",
                "Alice",
                "--last",
                "Liddell",
                "--email",
                "a@example.org",
                "--password-stdin",
                "--data",
                data,
            ],
            "s3cret\n",
        )
        .unwrap();
        assert_eq!(out, "added user alice (id 2), default group lab\n");
        let out = exec(
            &[
                "user",
                "add",
                "boss",
                "--admin",
                "--password-stdin",
                "--data",
                data,
            ],
            "x\r\n",
        )
        .unwrap();
        assert_eq!(
            out,
            "added user boss (id 3), default group user, administrator\n"
        );

        let dir = Directory::open(Path::new(data)).unwrap();
        assert!(dir
            .verify_password("alice", &Password::new("s3cret"))
            .is_ok());
        assert!(dir.verify_password("boss", &Password::new("x")).is_ok());

        let list = exec(&["user", "list", "--data", data], "").unwrap();
        assert!(
            list.contains("2\talice\tAlice\tLiddell\ta@example.org\tno\tlab,user\n"),
            "{list}"
        );
        assert!(
            list.contains("0\troot\troot\troot\t-\tyes\tsystem,user\n"),
            "{list}"
        );
        assert!(
            list.contains("3\tboss\tboss\tboss\t-\tyes\tuser,system\n"),
            "{list}"
        );
        assert!(!list.contains("argon2"));

        exec(
            &[
                "user",
                "passwd",
                "alice",
                "--password-stdin",
                "--data",
                data,
            ],
            "n3w\n",
        )
        .unwrap();
        assert!(dir.verify_password("alice", &Password::new("n3w")).is_ok());

        assert_eq!(
            exec(&["user", "remove", "alice", "--data", data], "").unwrap(),
            "removed user alice\n"
        );
        let groups = exec(&["group", "list", "--data", data], "").unwrap();
        assert!(groups.contains("3\tlab\trwr---\n"));
    }

    #[test]
    fn clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_str().unwrap();
        let add = |name: &str, extra: &[&str], stdin: &str| {
            let mut args = vec!["user", "add", name, "--password-stdin", "--data", data];
            args.extend_from_slice(extra);
            exec(&args, stdin).map_err(|e| e.to_string())
        };
        assert_eq!(
            add("u", &["--group", "nope"], "pw\n").unwrap_err(),
            "no such group: nope"
        );
        assert!(add("u", &[], "\n").unwrap_err().contains("empty password"));
        assert!(add("u", &[], "").unwrap_err().contains("empty password"));
        add("u", &[], "pw").unwrap();
        assert_eq!(add("u", &[], "pw\n").unwrap_err(), "user u already exists");
        assert_eq!(
            exec(&["user", "remove", "root", "--data", data], "")
                .unwrap_err()
                .to_string(),
            "root is a built-in account and cannot be removed"
        );
        assert_eq!(
            exec(&["user", "remove", "zed", "--data", data], "")
                .unwrap_err()
                .to_string(),
            "no such user: zed"
        );
        assert!(exec(
            &["group", "add", "g", "--perms", "bogus", "--data", data],
            ""
        )
        .unwrap_err()
        .to_string()
        .contains("invalid permissions"));
        // The password flag is mandatory.
        assert!(exec(&["user", "add", "v", "--data", data], "pw\n").is_err());
    }

    #[test]
    fn passwd_root_removes_initial_password_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(tmp.path()).unwrap();
        let path = dir.ensure_root_password().unwrap().unwrap();
        let data = tmp.path().to_str().unwrap();
        exec(
            &["user", "passwd", "root", "--password-stdin", "--data", data],
            "mine\n",
        )
        .unwrap();
        assert!(!path.exists());
        assert!(dir.verify_password("root", &Password::new("mine")).is_ok());
    }

    #[test]
    fn database_flag_chooses_the_backend() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_str().unwrap();
        let pg = [
            "--data",
            data,
            "--database",
            "postgres://u:secret@127.0.0.1:1/db",
        ];
        let err = exec(&[&["user", "list"][..], &pg[..]].concat(), "").unwrap_err();
        let text = format!("{err:#}");
        // PostgreSQL is chosen; nothing listens on port 1, so it says so, without the password.
        assert!(text.contains("postgres://127.0.0.1:1/db"), "{text}");
        assert!(text.contains("unavailable"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        let other = ["--data", data, "--database", "mysql://u:secret@h/db"];
        let err = exec(&[&["group", "list"][..], &other[..]].concat(), "").unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("unsupported database scheme \"mysql\""),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        // No flag: the embedded database, which the next command sees.
        exec(&["group", "add", "lab", "--data", data], "").unwrap();
        assert!(exec(&["group", "list", "--data", data], "")
            .unwrap()
            .contains("lab"));
    }

    #[test]
    fn default_data_dir() {
        let parsed = TestCli::try_parse_from(["t", "user", "list"]).unwrap();
        let AuthCommand::User(UserCommand::List { data }) = parsed.cmd else {
            panic!("wrong command");
        };
        assert_eq!(data.data, PathBuf::from(DEFAULT_DATA_DIR));
    }
}
