//! Roundcube, the webmail most campuses run, against `mailctl up` as a user meets it:
//! Debian's Roundcube on PHP's own web server, driven by headless Chromium (Selenium),
//! logs in through the front's IMAP (STARTTLS, trusting the cluster's CA), lists INBOX
//! sorted by date (the server's SORT) and as threads (THREAD=REFERENCES), reads a message,
//! moves one to Archive, searches, and sends one to bob through submission. The threaded
//! list's screenshot is kept in `target/test-artifacts/roundcube-threads.png`.

mod up;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tools::mailctl::layout::Layout;
use up::{free_port_base, interrupt, password_of, up};

/// PHP's built-in web server serving Roundcube, killed on drop.
struct Php(Child);

impl Drop for Php {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where test artifacts go: beside the build, kept after the run.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Roundcube configuration directory for this cluster, with its own SQLite database,
/// temporary and log directories under `dir`.
fn configure(dir: &Path, layout: &Layout) -> PathBuf {
    let config = dir.join("config");
    for sub in ["config", "temp", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for file in ["defaults.inc.php", "mimetypes.php"] {
        std::os::unix::fs::symlink(Path::new("/etc/roundcube").join(file), config.join(file)).unwrap();
    }
    let port = |addr: String| addr.rsplit_once(':').unwrap().1.to_string();
    let ca = layout.ca_file();
    let tls = format!("['ssl' => ['cafile' => '{}', 'verify_peer' => true]]", ca.display());
    let php = format!(
        "<?php\n$config = [];\n\
         $config['db_dsnw'] = 'sqlite:///{db}?mode=0600';\n\
         $config['imap_host'] = 'tls://localhost:{imap}';\n\
         $config['imap_conn_options'] = {tls};\n\
         $config['smtp_host'] = 'tls://localhost:{smtp}';\n\
         $config['smtp_conn_options'] = {tls};\n\
         $config['smtp_user'] = '%u';\n$config['smtp_pass'] = '%p';\n\
         $config['des_key'] = 'test-only-des-key-24char';\n\
         $config['plugins'] = [];\n$config['skin'] = 'elastic';\n\
         $config['temp_dir'] = '{dir}/temp';\n$config['log_dir'] = '{dir}/logs';\n\
         $config['enable_spellcheck'] = false;\n$config['enable_installer'] = false;\n\
         $config['imap_debug'] = true;\n$config['smtp_debug'] = true;\n",
        db = dir.join("roundcube.db").display(),
        imap = port(layout.front_imap()),
        smtp = port(layout.front_submission()),
        dir = dir.display(),
    );
    std::fs::write(config.join("config.inc.php"), php).unwrap();
    let init = "$db = new PDO('sqlite:' . $argv[1]); \
                if ($db->exec(file_get_contents('/usr/share/roundcube/SQL/sqlite.initial.sql')) === false) exit(1);";
    let out = Command::new("php")
        .args(["-r", init])
        .arg(dir.join("roundcube.db"))
        .output()
        .expect("php (scripts/install-test-deps)");
    assert!(out.status.success(), "Roundcube's schema: {}", String::from_utf8_lossy(&out.stderr));
    config
}

fn serve(config: &Path, port: u16, log: &Path) -> Php {
    let child = Command::new("php")
        .args(["-S", &format!("127.0.0.1:{port}"), "-t", "/var/lib/roundcube/public_html"])
        .env("ROUNDCUBE_CONFIG_DIR", config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "PHP's server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Php(child)
}

fn subjects(v: &serde_json::Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|m| m["subject"].as_str().unwrap()).collect()
}

#[test]
fn roundcube_in_headless_chromium_reads_sorts_threads_moves_searches_and_sends() {
    let tmp = tempfile::tempdir().unwrap();
    let base = free_port_base(tmp.path());
    let dir = tmp.path().join("data");
    let (child, lines) = up(&dir, base);
    let layout = Layout::open(&dir, base).unwrap();
    let webmail = tmp.path().join("roundcube");
    let config = configure(&webmail, &layout);
    // The layout's ports start at the base; the web server takes one well above them.
    let web_port = base + 97;
    let _php = serve(&config, web_port, &webmail.join("php.log"));

    let screenshot = artifacts().join("roundcube-threads.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/roundcube.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .args(["--url", &format!("http://127.0.0.1:{web_port}/"), "--imaps", &layout.front_imaps()])
        .arg("--ca")
        .arg(layout.ca_file())
        .args(["--user", "alice@example.edu", "--password", &password_of(&lines, "alice@example.edu")])
        .args(["--to", "bob@example.edu", "--to-password", &password_of(&lines, "bob@example.edu")])
        .arg("--screenshot")
        .arg(&screenshot)
        .output()
        .unwrap();
    let imap_log = std::fs::read_to_string(webmail.join("logs/imap.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "roundcube.py failed:\n{}\n{}\nPHP log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(webmail.join("php.log")).unwrap_or_default()
    );
    let facts: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').rfind(|l| !l.is_empty()).unwrap()).unwrap();

    // Sorted by date, newest first: the welcome message of today, then the seeded ones.
    let by_date: Vec<&str> = facts["by_date"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(
        by_date,
        [
            "Welcome to your mailstore",
            "Lunch on Friday",
            "Re: Re: Project kickoff",
            "Re: Project kickoff",
            "Project kickoff",
            "Quarterly report"
        ],
        "{facts}"
    );
    // Threads: the two replies hang under the kickoff, each under the one it answers.
    let threads = facts["threads"].as_array().unwrap();
    let by_subject = |s: &str| threads.iter().find(|r| r["subject"] == s).unwrap_or_else(|| panic!("{s}: {facts}"));
    let (root, reply, reply2) =
        (by_subject("Project kickoff"), by_subject("Re: Project kickoff"), by_subject("Re: Re: Project kickoff"));
    assert_eq!(
        (root["depth"].as_u64(), reply["depth"].as_u64(), reply2["depth"].as_u64()),
        (Some(0), Some(1), Some(2))
    );
    assert_eq!((&reply["parent"], &reply2["parent"]), (&root["uid"], &reply["uid"]), "{facts}");
    assert!(std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000), "no screenshot at {screenshot:?}");
    eprintln!("screenshot of the threaded list: {}", screenshot.display());

    // Read, moved, searched, sent: what the server holds afterwards, seen over IMAPS.
    assert!(facts["read_body"].as_str().unwrap().contains("This is the body of 'Lunch on Friday'."), "{facts}");
    let inbox = facts["inbox"].as_array().unwrap();
    assert!(inbox.iter().any(|m| m["subject"] == "Lunch on Friday" && m["seen"] == true), "read is \\Seen: {facts}");
    assert!(!subjects(&facts["inbox"]).contains(&"Quarterly report"), "{facts}");
    assert_eq!(subjects(&facts["archive"]), ["Quarterly report"], "{facts}");
    let found: Vec<&str> = facts["search"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(found, ["Project kickoff", "Re: Project kickoff", "Re: Re: Project kickoff"], "{facts}");
    assert_eq!(subjects(&facts["sent_folder"]), ["Hello from Roundcube"], "{facts}");
    assert!(subjects(&facts["bob_inbox"]).contains(&"Hello from Roundcube"), "{facts}");

    // Roundcube asked the server to sort and thread, and never got BAD.
    assert!(imap_log.contains(" UID SORT (DATE) "), "no SORT in the IMAP log");
    assert!(imap_log.contains(" UID THREAD REFERENCES "), "no THREAD in the IMAP log");
    let refused: Vec<&str> = imap_log
        .lines()
        .filter(|l| {
            let status = l.split_once("] S: ").and_then(|(_, r)| r.split_whitespace().nth(1));
            matches!(status, Some("BAD" | "NO"))
        })
        .collect();
    assert!(refused.is_empty(), "refused commands: {refused:#?}");
    interrupt(child);
}
