#!/usr/bin/env python3
"""E-mails end to end: registrations through the gateway until their welcomes
are in the mailbox folder. Against a running `bash scripts/up.sh`:

    python3 scripts/load_mail.py [--gateway http://127.0.0.1:8080]
                                 [--mail-dir data/mail] [--users 300] [--threads 8]

Prints registrations per second, e-mails per second (first registration to
last welcome), and how long after the last registration the last welcome came.
Standard library only.
"""

import argparse
import glob
import json
import os
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor


def register(gateway, email):
    body = json.dumps({"email": email, "password": "correct horse battery"}).encode()
    request = urllib.request.Request(
        gateway + "/api/auth/users", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201, response.status


def welcomed(mail_dir, run):
    count = 0
    for path in glob.glob(os.path.join(mail_dir, "*.json")):
        with open(path) as f:
            if any(run in to for to in json.load(f)["rcpt_tos"]):
                count += 1
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--mail-dir", default="data/mail")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the welcomes")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    emails = ["load-%s-%d@example.com" % (run, i) for i in range(args.users)]
    start = time.monotonic()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(lambda e: register(args.gateway, e), emails))
    registered = time.monotonic()
    while welcomed(args.mail_dir, run) < args.users:
        if time.monotonic() - registered > args.timeout:
            raise SystemExit("only %d of %d welcomes after %.0f s" % (welcomed(args.mail_dir, run), args.users, args.timeout))
        time.sleep(0.05)
    done = time.monotonic()
    print("%d users, %d threads" % (args.users, args.threads))
    print("  registrations   %7.1f /s" % (args.users / (registered - start)))
    print("  e-mails         %7.1f /s  (first registration to last welcome)" % (args.users / (done - start)))
    print("  last e-mail     %7.2f s after the last registration" % (done - registered))


if __name__ == "__main__":
    main()
