#!/usr/bin/python3
"""Roundcube (Debian's package, on PHP's own server) driven by headless Chromium through
Selenium, against a `mailctl up` cluster: log in, list INBOX sorted by date, switch to
threads, read a message, move one to Archive, search, and send one to bob. Prints JSON facts
for the Rust test to assert on; writes a screenshot of the threaded list to --screenshot.

It seeds alice's INBOX over IMAPS itself (imaplib) and checks results over IMAPS too.
Chromium resolves no name but localhost and makes no background connections: the test
network is loopback only.
"""
import argparse
import imaplib
import json
import ssl
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

THREAD = [
    # (subject, message-id, in-reply-to, date)
    ("Project kickoff", "<root@example.org>", None, "Mon, 02 Nov 2026 09:00:00 +0000"),
    ("Re: Project kickoff", "<reply1@example.org>", "<root@example.org>", "Tue, 03 Nov 2026 09:00:00 +0000"),
    ("Re: Re: Project kickoff", "<reply2@example.org>", "<reply1@example.org>", "Wed, 04 Nov 2026 09:00:00 +0000"),
    ("Lunch on Friday", "<lunch@example.org>", None, "Thu, 05 Nov 2026 09:00:00 +0000"),
    ("Quarterly report", "<report@example.org>", None, "Sun, 01 Nov 2026 09:00:00 +0000"),
]


def imap(a, user, password):
    host, port = a.imaps.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=a.ca)
    m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
    m.login(user, password)
    return m


def seed(a):
    m = imap(a, a.user, a.password)
    for subject, mid, parent, date in THREAD:
        refs = f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n" if parent else ""
        msg = (f"From: Dana <dana@example.org>\r\nTo: {a.user}\r\nSubject: {subject}\r\n"
               f"Date: {date}\r\nMessage-ID: {mid}\r\n{refs}\r\n"
               f"This is the body of '{subject}'.\r\n").encode()
        typ, _ = m.append("INBOX", None, None, msg)
        assert typ == "OK"
    m.logout()


def subjects_of(a, user, password, mailbox):
    m = imap(a, user, password)
    typ, data = m.select(mailbox)
    assert typ == "OK", data
    out = []
    if int(data[0]):
        typ, parts = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        for p in parts:
            if isinstance(p, tuple):
                subject = p[1].decode().split(":", 1)[1].strip()
                out.append({"subject": subject, "seen": b"\\Seen" in p[0]})
    m.logout()
    return out


def browser():
    o = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-default-apps", "--disable-extensions",
                "--dns-prefetch-disable", "--disable-dev-shm-usage",
                # Every name but localhost fails: nothing leaves the machine.
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"]:
        o.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def wait(d, what, timeout=30):
    return WebDriverWait(d, timeout).until(lambda d: d.execute_script(what))


def list_rows(d):
    """Rows of the message list in display order: subject, depth, parent UID, UID."""
    return d.execute_script("""
        const l = rcmail.message_list; const out = [];
        for (const tr of l.tbody.rows) {
            if (tr.style.display === 'none') continue;
            const r = l.rows[tr.uid]; if (!r) continue;
            const s = tr.querySelector('span.subject a, td.subject a');
            out.push({uid: String(tr.uid), subject: s ? s.textContent.trim() : '',
                      depth: r.depth || 0, parent: r.parent_uid ? String(r.parent_uid) : null});
        }
        return out;""")


def row(d, uid):
    """The list's row of a message, to click like a user."""
    return d.execute_script("return rcmail.message_list.rows[arguments[0]].obj", uid)


def list_ready(d):
    wait(d, "return window.rcmail && rcmail.message_list && !rcmail.busy "
            "&& rcmail.message_list.rowcount > 0")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--imaps", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--to-password", required=True)
    ap.add_argument("--screenshot", required=True)
    a = ap.parse_args()
    seed(a)
    facts = {}
    d = browser()
    try:
        d.get(a.url)
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.ID, "rcmloginuser"))
        d.find_element(By.ID, "rcmloginuser").send_keys(a.user)
        d.find_element(By.ID, "rcmloginpwd").send_keys(a.password)
        d.find_element(By.ID, "rcmloginsubmit").click()
        list_ready(d)
        facts["logged_in"] = True

        # Sorted by date, newest first (the server's SORT).
        d.execute_script("rcmail.set_list_options(null, 'date', 'DESC', 0)")
        time.sleep(0.5)
        list_ready(d)
        facts["by_date"] = [r["subject"] for r in list_rows(d)]

        # Threads (the server's THREAD REFERENCES), every thread expanded.
        d.execute_script("rcmail.set_list_options(null, 'date', 'DESC', 1)")
        time.sleep(0.5)
        list_ready(d)
        # The Threads menu's "Expand all".
        d.execute_script("rcmail.command('expand-all')")
        wait(d, "return Array.from(rcmail.message_list.tbody.rows).every(r => r.style.display !== 'none')")
        facts["threads"] = list_rows(d)
        d.save_screenshot(a.screenshot)

        # Read: click the lunch message; its body shows in the preview frame.
        rows = {r["subject"]: r["uid"] for r in facts["threads"]}
        row(d, rows["Lunch on Friday"]).click()
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.ID, "messagecontframe"))
        frame = d.find_element(By.ID, "messagecontframe")
        d.switch_to.frame(frame)
        # The frame may reload under us: its body is read afresh each time, in one script.
        body = WebDriverWait(d, 30).until(
            lambda d: (lambda t: t if t and "body of" in t else None)(
                d.execute_script("return document.body ? document.body.innerText : ''")))
        facts["read_body"] = body
        d.switch_to.default_content()

        # Move the report to Archive.
        row(d, rows["Quarterly report"]).click()
        time.sleep(0.5)
        d.execute_script("rcmail.move_messages('Archive')")
        wait(d, "return !rcmail.busy")
        time.sleep(1)

        # Back to the plain list, and search for "kickoff" in the quick search box.
        d.execute_script("rcmail.set_list_options(null, 'date', 'DESC', 0)")
        time.sleep(0.5)
        list_ready(d)
        box = d.find_element(By.CSS_SELECTOR, "input[name=_q]")
        box.send_keys("kickoff" + Keys.ENTER)
        time.sleep(1)
        list_ready(d)
        facts["search"] = sorted(r["subject"] for r in list_rows(d))

        # Send a message to bob.
        d.get(a.url + "?_task=mail&_action=compose")
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.ID, "compose-subject"))
        to = d.find_element(By.CSS_SELECTOR, "#compose_to input, .recipient-input input")
        to.send_keys(a.to + ",")
        d.find_element(By.ID, "compose-subject").send_keys("Hello from Roundcube")
        d.find_element(By.ID, "composebody").send_keys("Sent through the front's submission port.")
        d.find_element(By.CSS_SELECTOR, "button.send, a.send").click()
        wait(d, "return window.rcmail && rcmail.task == 'mail' && rcmail.env.action != 'compose'", 60)
        facts["sent"] = True
    finally:
        d.quit()

    # What the server holds now, seen by another client.
    facts["inbox"] = subjects_of(a, a.user, a.password, "INBOX")
    facts["archive"] = subjects_of(a, a.user, a.password, "Archive")
    facts["sent_folder"] = subjects_of(a, a.user, a.password, "Sent")
    for _ in range(60):
        facts["bob_inbox"] = subjects_of(a, a.to, a.to_password, "INBOX")
        if any(m["subject"] == "Hello from Roundcube" for m in facts["bob_inbox"]):
            break
        time.sleep(0.5)
    print(json.dumps(facts))


if __name__ == "__main__":
    sys.exit(main())
