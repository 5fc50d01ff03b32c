#!/usr/bin/env python3
"""A real SMTP server for the tests: aiosmtpd on a free loopback port.

Every accepted message is written to DIR as NNNN.json with the envelope, the raw
message and its decoded parts (subject, To, Message-ID, text/plain and text/html bodies),
parsed by Python's email package, so the Rust tests check what a mail client would see.

--fail-first N answers the first N DATA commands with 451 (a transient refusal), to test
retries; --reject answers every DATA with 550. --tls-cert/--tls-key offer STARTTLS (and
require it), or with --implicit-tls speak TLS from the first byte; --auth USER:PASS
requires that login (AUTH PLAIN or LOGIN, over TLS only) and answers 535 to any other.
Prints "PORT <n>" once listening.
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, directory, fail_first, reject):
        self.directory = directory
        self.fail_left = fail_first
        self.reject = reject
        self.count = 0
        self.refused = 0

    async def handle_DATA(self, server, session, envelope):
        if self.reject:
            self.refused += 1
            self._note_refusal()
            return "550 5.7.1 rejected by test sink"
        if self.fail_left > 0:
            self.fail_left -= 1
            self.refused += 1
            self._note_refusal()
            return "451 4.3.0 try again later (test sink)"
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = {"text/plain": None, "text/html": None}
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype in parts and parts[ctype] is None and not part.is_multipart():
                # Mail clients show SMTP's CRLF line ends as plain newlines.
                parts[ctype] = part.get_content().replace("\r\n", "\n")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg.get("Subject", "")),
            "to": str(msg.get("To", "")),
            "from": str(msg.get("From", "")),
            "message_id": str(msg.get("Message-ID", "")),
            "content_type": msg.get_content_type(),
            "text": parts["text/plain"],
            "html": parts["text/html"],
            "raw": raw.decode("utf-8", errors="replace"),
            "size": len(raw),
            # The transport knows, whether STARTTLS upgraded it or it began encrypted.
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "login": self.login(session),
        }
        self.count += 1
        path = os.path.join(self.directory, "%04d.json" % self.count)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, path)  # readers never see half a file
        return "250 OK"

    @staticmethod
    def login(session):
        data = getattr(session, "auth_data", None)
        if isinstance(data, LoginPassword):
            return data.login.decode("utf-8", errors="replace")
        return None

    def _note_refusal(self):
        with open(os.path.join(self.directory, "refused.count"), "w") as f:
            f.write(str(self.refused))


# aiosmtpd warns about AUTH without STARTTLS, which is what implicit TLS looks like to it.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--reject", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--auth")
    args = ap.parse_args()
    sink = Sink(args.dir, args.fail_first, args.reject)
    ctx = None
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    options = {"hostname": "sink.test", "decode_data": False}
    if ctx is not None and not args.implicit_tls:
        options.update(tls_context=ctx, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == user.encode()
                and auth_data.password == password.encode()
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        # aiosmtpd only recognises STARTTLS as TLS; with implicit TLS the whole connection
        # is encrypted already, so it must not withhold AUTH.
        options.update(
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=not args.implicit_tls,
        )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, **options),
        host="127.0.0.1",
        port=0,
        ssl=ctx if args.implicit_tls else None,
    )
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
