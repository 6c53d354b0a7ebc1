// SMTP peer: nodemailer's pooled SMTP transport against a local sink.
//
//   node smtp_nodemailer.mjs --host 127.0.0.1 --port P --connections N --messages M [--nodelay]
//
// The pool keeps up to N connections and recycles each after 100 messages (nodemailer's default
// maxMessages, the same as mailers'). 4*N sendMail calls stay outstanding so the pool always has
// queued work. Prints one JSON line on stdout; errors go to stderr; exits non-zero if any send
// failed.
//
// Stock nodemailer leaves Nagle's algorithm on. It writes the DATA payload in several pieces, so
// the final "\r\n.\r\n" waits for the server's ACK of the previous piece, and the server (which
// has nothing to say until it sees the dot) delays that ACK by its delayed-ACK timer: about 40 ms
// per message on Linux, loopback included. --nodelay hands nodemailer sockets with TCP_NODELAY
// set (through its documented getSocket hook) to show the client without that stall; the JSON
// then says "client":"nodemailer+nodelay".
import net from 'node:net';
import nodemailer from 'nodemailer';
import { FROM, TO, SUBJECT, TEXT, parseArgs, measure, report } from './common.mjs';

const args = parseArgs(
    process.argv.slice(2),
    { host: 'string', port: 'int', connections: 'int', messages: 'int', nodelay: 'flag' },
    'node smtp_nodemailer.mjs --host H --port P --connections N --messages M [--nodelay]'
);

function noDelaySocket(options, callback) {
    const socket = net.connect({ host: options.host, port: options.port });
    socket.setNoDelay(true);
    const onError = (err) => callback(err);
    socket.once('error', onError);
    socket.once('connect', () => {
        socket.removeListener('error', onError);
        callback(null, { connection: socket });
    });
}

const transport = nodemailer.createTransport({
    host: args.host,
    port: args.port,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections: args.connections,
    maxMessages: 100,
    ...(args.nodelay ? { getSocket: noDelaySocket } : {}),
});

const mail = { from: FROM, to: TO, subject: SUBJECT, text: TEXT };
const result = await measure(args.messages, 4 * args.connections, () => transport.sendMail(mail));
transport.close();
report(
    {
        client: args.nodelay ? 'nodemailer+nodelay' : 'nodemailer',
        connections: args.connections,
        messages: args.messages,
    },
    result
);
