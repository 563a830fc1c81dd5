"""A real SMTP server (aiosmtpd) for the notification tests.

Binds 127.0.0.1 on a port the system picks, prints `port N`, then one JSON
line per message accepted: envelope sender and recipients, the headers the
tests read, and the plain-text and HTML parts decoded (Python's own MIME
parser, not ours). With --fail-first N, the first N messages are answered
`451 try again later` (a transient failure) before mail is accepted.
"""

import argparse
import asyncio
import email
import email.policy
import json
import sys

import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, fail_first):
        self.fail_first = fail_first

    async def handle_DATA(self, server, session, envelope):
        if self.fail_first > 0:
            self.fail_first -= 1
            return "451 4.3.0 try again later"
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        line = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "message_id": str(message["message-id"]),
            "event": str(message["x-vpn-registry-event"]),
            "language": str(message["content-language"]),
            "text": message.get_body(("plain",)).get_content(),
            "html": message.get_body(("html",)).get_content(),
        }
        print(json.dumps(line), flush=True)
        return "250 OK"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-first", type=int, default=0)
    # Accept connections and never say a word: a delivery to it hangs.
    parser.add_argument("--silent", action="store_true")
    # STARTTLS required with this certificate and key (PEM), and AUTH with
    # this user and password before any mail.
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    handler = Handler(args.fail_first)
    loop = asyncio.get_running_loop()
    if args.silent:
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    elif args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (
                auth_data.login.decode(), auth_data.password.decode()) == (args.user, args.password)
            return AuthResult(success=ok)

        server = await loop.create_server(
            lambda: SMTP(handler, require_starttls=True, tls_context=context,
                         authenticator=authenticate, auth_required=True),
            "127.0.0.1", 0)
    else:
        server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    # Ends when the test closes our stdin (or kills us).
    await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
