#!/usr/bin/env python3
"""A local SMTP server that keeps every e-mail it accepts in a folder.

    python3 scripts/mailbox.py --dir data/mail [--host 127.0.0.1] [--port 2525]
                               [--reject REGEX] [--defer REGEX]
                               [--tls-cert PEM --tls-key PEM [--smtps]] [--auth USER:PASSWORD]

Each accepted message is written twice, atomically (a reader never sees half a
file): `<dir>/<time>-<n>.eml`, the message as received (open it in any mail
program), and `<dir>/<time>-<n>.json`: envelope sender and recipients,
Message-ID, Subject, To, and the plain-text and HTML bodies, decoded.

Recipients matching --reject are refused with a permanent 550, those matching
--defer with a temporary 451 (tests of notify-service's error handling).
With --tls-cert and --tls-key the server offers STARTTLS and requires it (with
--smtps too, it speaks TLS from the first byte instead, as on port 465); with
--auth it requires a login (PLAIN or LOGIN, only over TLS) with that password.
Needs aiosmtpd (Debian: python3-aiosmtpd). Stops on SIGTERM or Ctrl-C.
"""

import argparse
import email
import email.policy
import itertools
import json
import os
import re
import signal
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Mailbox:
    def __init__(self, folder, reject, defer):
        self.folder = folder
        self.reject = re.compile(reject) if reject else None
        self.defer = re.compile(defer) if defer else None
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject and self.reject.search(address):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if self.defer and self.defer.search(address):
            return "451 4.3.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)

        def body(kind):
            part = message.get_body(preferencelist=(kind,))
            return part.get_content() if part is not None else None

        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "message_id": message.get("Message-ID"),
            "subject": message.get("Subject"),
            "from": message.get("From"),
            "to": message.get("To"),
            "date": message.get("Date"),
            "text": body("plain"),
            "html": body("html"),
        }
        stem = "%d-%06d" % (time.time_ns(), next(self.counter))
        self._write(stem + ".eml", raw)
        self._write(stem + ".json", json.dumps(record, indent=2).encode())
        print("mail %s to %s: %s" % (stem, ", ".join(envelope.rcpt_tos), record["subject"]), flush=True)
        return "250 2.0.0 Ok: queued as %s" % stem

    @staticmethod
    def authenticator(user, password):
        def check(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd itself answers 535 to a failed login.
            return AuthResult(success=ok, handled=False)

        return check

    def _write(self, name, data):
        path = os.path.join(self.folder, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="folder for the received e-mails")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--reject", help="refuse recipients matching this regex with 550")
    parser.add_argument("--defer", help="defer recipients matching this regex with 451")
    parser.add_argument("--tls-cert", help="certificate chain (PEM): offer and require STARTTLS")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--smtps", action="store_true", help="TLS from the first byte, not STARTTLS")
    parser.add_argument("--auth", help="USER:PASSWORD: require this login")
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    options = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.smtps:
            # aiosmtpd counts only STARTTLS as TLS when it decides to offer
            # AUTH; here every byte is encrypted already.
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, _, password = args.auth.partition(":")
        options.update(authenticator=Mailbox.authenticator(user, password), auth_required=True)
    controller = Controller(
        Mailbox(args.dir, args.reject, args.defer), hostname=args.host, port=args.port, **options
    )
    controller.start()
    print("mailbox: SMTP on %s:%d, e-mails in %s" % (args.host, args.port, os.path.abspath(args.dir)), flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
