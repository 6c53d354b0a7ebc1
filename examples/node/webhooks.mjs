// Receiving provider webhooks with Node's own HTTP server: each request is
// handed to the engine as received, which verifies it, suppresses hard
// bounces, complaints and unsubscribes (exactly once, across redeliveries),
// and emits the events.
//
//   MAILGUN_WEBHOOK_KEY=... node examples/node/webhooks.mjs [workspace.db]
//
// Point the providers at http://<host>:8080/hooks/<provider> (ses, mailgun,
// sendgrid, postmark) through a TLS-terminating proxy.
import { Engine } from 'mailers';
import { createServer } from 'node:http';

const engine = await Engine.open({ sqlite: process.argv[2] ?? 'workspace.db', actor: 'webhooks' });
engine.on('event', (e) => console.log(`${e.provider}: ${e.type} ${e.recipient} (${e.dedupKey})`));

const options = {
  mailgunSigningKey: process.env.MAILGUN_WEBHOOK_KEY ?? '',
  sendgridPublicKey: process.env.SENDGRID_WEBHOOK_PUBLIC_KEY ?? '',
  postmarkHeaderName: 'X-Webhook-Secret',
  postmarkHeaderValue: process.env.POSTMARK_WEBHOOK_SECRET ?? '',
};

const server = createServer(async (req, res) => {
  const match = /^\/hooks\/(ses|mailgun|sendgrid|postmark)$/.exec(req.url ?? '');
  if (!match) return res.writeHead(404).end();
  const chunks = [];
  for await (const c of req) chunks.push(c);
  try {
    // The raw bytes, never re-encoded: the signatures cover them.
    const r = await engine.ingestWebhook(match[1], { method: req.method, headers: req.headers, body: Buffer.concat(chunks) }, options);
    if (r.outcome === 'subscription_confirmation') console.log(`confirm the SNS subscription: GET ${r.confirmUrl}`);
    if (r.outcome === 'rejected') console.log(`refused: ${r.reason}`);
    res.writeHead(r.httpStatus).end();
  } catch (err) {
    // A store failure: answer 5xx so the provider delivers again later.
    console.error(err);
    res.writeHead(500).end();
  }
});
server.listen(8080, () => console.log('listening on :8080'));

const stop = () => server.close(() => engine.close());
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
