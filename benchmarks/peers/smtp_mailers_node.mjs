// SMTP client: the mailers Node.js binding (engine and SMTP transport) against a local sink, so
// the binding's cost shows beside nodemailer's in the same run.
//
//   MAILERS_NODE_ADDON=build/bindings/node/mailers.node \
//   node smtp_mailers_node.mjs --host 127.0.0.1 --port P --connections N --messages M
//
// One Engine on a fresh SQLite file (the ledger is written as in production), one mailbox on the
// SMTP provider with max_connections=N, 4*N sends in flight as for nodemailer. Prints one JSON
// line on stdout; exits non-zero if any send failed.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FROM, TO, SUBJECT, TEXT, parseArgs, measure, report } from './common.mjs';

const args = parseArgs(
    process.argv.slice(2),
    { host: 'string', port: 'int', connections: 'int', messages: 'int' },
    'node smtp_mailers_node.mjs --host H --port P --connections N --messages M'
);

const here = dirname(fileURLToPath(import.meta.url));
const { Engine } = createRequire(import.meta.url)(join(here, '..', '..', 'bindings', 'node'));

const dir = mkdtempSync(join(tmpdir(), 'mailers-node-smtp-'));
const engine = await Engine.open({ sqlite: join(dir, 'bench.db') });
try {
    await engine.addProvider(
        'sink',
        `smtp://${args.host}:${args.port}?tls=none&max_connections=${args.connections}`
    );
    await engine.upsertMailbox({ id: 'rep', from: FROM, provider: 'sink' });
    await engine.upsertPool({ id: 'out', mailboxes: ['rep'] });
    const request = { pool: 'out', to: TO, subject: SUBJECT, text: TEXT };
    const result = await measure(args.messages, 4 * args.connections, () => engine.send(request));
    report({ client: 'mailers-node', connections: args.connections, messages: args.messages }, result);
} finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
}
