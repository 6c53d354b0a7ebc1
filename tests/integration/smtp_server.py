#!/usr/bin/python3
"""A real SMTP server for the SMTP transport's integration tests (aiosmtpd).

Listens on 127.0.0.1, on a free port unless --port is given, and prints
"PORT <n>" on stdout once it accepts connections. Exits when its stdin
closes (so it never outlives the test that started it) or on SIGTERM.

Behaviour is chosen per message by the envelope, so one server serves many
cases. Recipient local parts:
  code-XYZ-a.b.c   RCPT gets "XYZ a.b.c Refused by test rule"
  reject550        550 5.1.1 (no such user)     quota     550 5.4.5 (sender quota)
  throttle         421 4.7.0 (Gmail throttling) unauth    550 5.7.26
  blocked          554 5.7.1 (client blocked)   tenant    550 5.7.233
  dropbeforedata   the connection is dropped at RCPT, before DATA
  dropdata         the content is received and saved, then the connection is
                   dropped before the reply to the final dot
  slowdata         the reply to the final dot comes after --slow seconds
  toobig           552 5.3.4 after the final dot
Sender local parts: "quota" (550 5.4.5 at MAIL), "badsender" (553 5.7.1).

Every accepted (or dropped-after-DATA) message is saved as msg-<n>.eml (the
octets received, after dot-unstuffing) with msg-<n>.json (envelope). The log
file gets one line per event: CONNECT <id> active=<n>, EHLO, HELO, STARTTLS,
AUTH <mech> <user>, MAIL, RCPT, DATA, DROP, QUIT <id>, CLOSE <id>.
"""

import argparse
import asyncio
import base64
import json
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

RULES = {
    "reject550": "550 5.1.1 The email account that you tried to reach does not exist.",
    "quota": "550 5.4.5 Daily user sending quota exceeded.",
    "throttle": "421 4.7.0 Try again later, closing connection.",
    "unauth": "550 5.7.26 This mail is unauthenticated, which poses a security risk to the "
              "sender and Gmail users, and has been blocked.",
    "blocked": "554 5.7.1 Service unavailable; client host [127.0.0.1] blocked",
    "tenant": "550 5.7.233 Your tenant has exceeded its limit",
}


class State:
    def __init__(self, args):
        self.args = args
        self.active = 0
        self.next_conn = 0
        self.next_msg = 0
        self.log = open(args.log, "a", buffering=1) if args.log else None

    def write(self, line):
        if self.log:
            self.log.write(line + "\n")


class Handler:
    def __init__(self, state):
        self.state = state

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.state.write(f"EHLO {server.conn_id} {hostname}")
        out = []
        for r in responses:
            if r == "250-8BITMIME" and self.state.args.no_8bitmime:
                continue
            if r == "250 HELP" and self.state.args.pipelining:
                out.append("250-PIPELINING")
                out.append("250-ENHANCEDSTATUSCODES")
            out.append(r)
        return out

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self.state.write(f"HELO {server.conn_id} {hostname}")
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.state.write(f"MAIL {server.conn_id} {address} {' '.join(mail_options)}")
        local = address.split("@")[0] if address else ""
        if local == "quota":
            return RULES["quota"]
        if local == "badsender":
            return "553 5.7.1 <%s>: Sender address rejected: not owned by user" % address
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.state.write(f"RCPT {server.conn_id} {address}")
        local = address.split("@")[0]
        if local.startswith("code-"):
            parts = local.split("-")
            return f"{parts[1]} {parts[2]} Refused by test rule"
        if local in RULES:
            return RULES[local]
        if local == "dropbeforedata":
            self.state.write(f"DROP {server.conn_id} rcpt")
            server.transport.abort()
            return "250 2.1.5 OK"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        self.state.write(f"DATA {server.conn_id} {len(data)}")
        locals_ = [r.split("@")[0] for r in envelope.rcpt_tos]
        if "toobig" in locals_:
            return "552 5.3.4 Message size exceeds fixed limit"
        self.state.next_msg += 1
        n = self.state.next_msg
        out_dir = self.state.args.out
        if out_dir:
            with open(os.path.join(out_dir, f"msg-{n}.eml.tmp"), "wb") as f:
                f.write(data)
            with open(os.path.join(out_dir, f"msg-{n}.json"), "w") as f:
                json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                           "mail_options": envelope.mail_options,
                           "connection": server.conn_id,
                           "tls": server.transport.get_extra_info("ssl_object") is not None,
                           "auth": session.auth_data.login.decode() if isinstance(
                               session.auth_data, LoginPassword) else None}, f)
            os.rename(os.path.join(out_dir, f"msg-{n}.eml.tmp"),
                      os.path.join(out_dir, f"msg-{n}.eml"))
        if "dropdata" in locals_:
            self.state.write(f"DROP {server.conn_id} data")
            server.transport.abort()
            return "250 2.0.0 never seen"
        if "slowdata" in locals_:
            await asyncio.sleep(self.state.args.slow)
        if "noverdict" in locals_:
            # Neither acceptance nor refusal, with the message already written out.
            return "354 2.0.0 go ahead"
        return f"250 2.0.0 Ok: queued as TEST{n}"

    async def auth_XOAUTH2(self, server, args):
        # Google's SASL XOAUTH2: "user=U\x01auth=Bearer T\x01\x01"; a bad token
        # gets a 334 with a JSON error, then 535 after the client's empty line.
        st = self.state
        try:
            blob = base64.b64decode(args[1], validate=True) if len(args) > 1 else b""
        except Exception:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode")
        expected = (f"user={st.args.user}\x01auth=Bearer {st.args.xoauth2_token}"
                    "\x01\x01").encode()
        if st.args.xoauth2_token and blob == expected:
            st.write(f"AUTH {server.conn_id} XOAUTH2 {st.args.user}")
            return AuthResult(success=True, auth_data=LoginPassword(st.args.user.encode(), b""))
        st.write(f"AUTHFAIL {server.conn_id} XOAUTH2")
        err = json.dumps({"status": "401", "schemes": "bearer",
                          "scope": "https://mail.google.com/"})
        await server.challenge_auth(err)
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Username and Password not accepted.")


class TestSMTP(SMTP):
    def __init__(self, state, *a, **kw):
        self.state = state
        state.next_conn += 1
        self.conn_id = state.next_conn
        self.counted = False
        super().__init__(*a, **kw)

    def connection_made(self, transport):
        if not self.counted:
            self.counted = True
            self.state.active += 1
            self.state.write(f"CONNECT {self.conn_id} active={self.state.active}")
        else:
            self.state.write(f"STARTTLS {self.conn_id}")
        super().connection_made(transport)

    def connection_lost(self, error):
        if self.counted:
            self.counted = False
            self.state.active -= 1
            self.state.write(f"CLOSE {self.conn_id}")
        super().connection_lost(error)

    async def smtp_QUIT(self, arg):
        self.state.write(f"QUIT {self.conn_id}")
        await super().smtp_QUIT(arg)

    async def smtp_EHLO(self, hostname):
        if self.state.args.helo_only:
            await self.push("502 5.5.2 Error: command not recognized")
            return
        await super().smtp_EHLO(hostname)


class Sink(asyncio.Protocol):
    """--sink: a minimal pipelining SMTP sink that accepts everything and
    answers all the commands of one read in one write, like postfix's
    smtp-sink, so a throughput figure measures the client, not aiosmtpd."""

    def __init__(self, state):
        self.state = state
        self.buf = b""
        self.in_data = False

    def connection_made(self, transport):
        self.transport = transport
        self.state.active += 1
        self.state.next_conn += 1
        self.state.write(f"CONNECT {self.state.next_conn} active={self.state.active}")
        transport.write(b"220 sink ESMTP\r\n")

    def connection_lost(self, exc):
        self.state.active -= 1
        self.state.write("CLOSE")

    def data_received(self, data):
        self.buf += data
        out = []
        while True:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                self.buf = self.buf[end + 5:]
                self.in_data = False
                self.state.next_msg += 1
                out.append(b"250 2.0.0 Ok: queued as SINK%d" % self.state.next_msg)
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                break
            line, self.buf = self.buf[:nl], self.buf[nl + 2:]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0")
            elif verb == b"DATA":
                out.append(b"354 go ahead")
                self.in_data = True
                # The content follows the 354; "\r\n.\r\n" needs the CRLF
                # before the dot, which a message that ends in CRLF supplies.
                self.buf = b"\r\n" + self.buf
            elif verb == b"QUIT":
                out.append(b"221 bye")
            else:
                out.append(b"250 2.0.0 OK")
        if out:
            self.transport.write(b"\r\n".join(out) + b"\r\n")


def authenticator(state):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == state.args.user
              and auth_data.password.decode() == state.args.password)
        state.write(f"{'AUTH' if ok else 'AUTHFAIL'} {server.conn_id} {mechanism} "
                    f"{auth_data.login.decode() if isinstance(auth_data, LoginPassword) else ''}")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
    return check


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--xoauth2-token")
    p.add_argument("--pipelining", action="store_true")
    p.add_argument("--smtputf8", action="store_true")
    p.add_argument("--no-8bitmime", action="store_true")
    p.add_argument("--size", type=int, default=33554432)
    p.add_argument("--helo-only", action="store_true")
    p.add_argument("--slow", type=float, default=3.0)
    p.add_argument("--idle-timeout", type=float, default=300)
    p.add_argument("--sink", action="store_true")
    p.add_argument("--out")
    p.add_argument("--log")
    args = p.parse_args()

    state = State(args)
    handler = Handler(state)
    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    def factory():
        return TestSMTP(
            state, handler,
            hostname="test.smtp.local",
            timeout=args.idle_timeout,
            data_size_limit=args.size,
            enable_SMTPUTF8=args.smtputf8,
            tls_context=None if (args.implicit_tls or args.no_starttls) else tls_context,
            authenticator=authenticator(state),
            auth_required=bool(args.user),
            # aiosmtpd only knows STARTTLS; with implicit TLS the
            # connection is already protected.
            auth_require_tls=not args.implicit_tls,
            auth_exclude_mechanism=[] if args.xoauth2_token else ["XOAUTH2"])

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        (lambda: Sink(state)) if args.sink else factory, host="127.0.0.1", port=args.port,
        ssl=tls_context if args.implicit_tls else None)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(
        sys.stdin.fileno(), 4096) else None)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
