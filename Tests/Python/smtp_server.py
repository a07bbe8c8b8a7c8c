"""A mail server written by others (aiosmtpd) on loopback with STARTTLS required and
AUTH PLAIN/LOGIN for USER/PASSWORD (only after STARTTLS), certificate CERT and key KEY.
Prints "listening PORT", then one JSON line per message: {"from", "to", "subject", "key"}.
Usage: smtp_server.py CERT KEY USER PASSWORD
"""
import asyncio
import json
import socket
import ssl
import sys
from email import message_from_bytes
from email.header import decode_header, make_header

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, keyfile, user, password = sys.argv[1:5]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content)
        print(json.dumps({
            "from": envelope.mail_from, "to": envelope.rcpt_tos, "subject": str(make_header(decode_header(message["Subject"] or ""))),
            "key": message["X-Twin-Idempotency-Key"], "tls": session.ssl is not None,
        }), flush=True)
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password:
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, keyfile)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
controller = Controller(
    Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
    authenticator=authenticate, auth_require_tls=True, auth_required=True)
controller.start()
print(f"listening {port}", flush=True)
try:
    asyncio.run(asyncio.Event().wait())
finally:
    controller.stop()
