// HTTP peers: each provider's official Node SDK sending to a local fake of its API.
//
//   node http_sdks.mjs --sdk ses|sendgrid|postmark|mailgun --base http://127.0.0.1:P
//                      --concurrency C --messages M
//
// C sends stay outstanding (closed loop); prints one JSON line on stdout; errors go to stderr;
// exits non-zero if any send failed.
//
// How each SDK is pointed at the fake, and how it keeps connections alive:
//   ses       @aws-sdk/client-sesv2: `endpoint: base`. `requestHandler` takes the options of the
//             SDK's NodeHttpHandler (@smithy/node-http-handler), given here as a plain object so
//             no transitive package is imported: httpAgent = our keep-alive agent with
//             maxSockets C (the SDK's own default agent is keep-alive but capped at 50 sockets).
//             Sends SendEmail with Content.Raw.Data = the MIME bytes; the SDK signs each request
//             with SigV4 and base64-encodes the MIME into the JSON body.
//   sendgrid  @sendgrid/mail: `client.setDefaultRequest('baseUrl', base)` after setApiKey (which
//             resets it); the default request is merged into every axios request config, so
//             `setDefaultRequest('httpAgent', agent)` installs our keep-alive agent.
//   postmark  postmark: ServerClient options { requestHost: '127.0.0.1:P', useHttps: false }. It
//             builds its own axios instance and takes no agent, so it uses Node's global agent,
//             which is keep-alive (Node >= 19) with unlimited sockets.
//   mailgun   mailgun.js: client({ url: base }). Takes no agent either (global agent as above).
//             messages.create(domain, { to, message: <MIME Buffer> }) posts multipart/form-data to
//             /v3/<domain>/messages.mime with the MIME as the `message` file part.
import http from 'node:http';
import { FROM, FROM_ADDRESS, FROM_NAME, TO, SUBJECT, TEXT, MIME, parseArgs, measure, report } from './common.mjs';

const SDKS = ['ses', 'sendgrid', 'postmark', 'mailgun'];
const usage = `node http_sdks.mjs --sdk ${SDKS.join('|')} --base http://127.0.0.1:P --concurrency C --messages M`;
const args = parseArgs(
    process.argv.slice(2),
    { sdk: 'string', base: 'string', concurrency: 'int', messages: 'int' },
    usage
);
if (!SDKS.includes(args.sdk)) {
    process.stderr.write(`--sdk must be one of ${SDKS.join(', ')}, got '${args.sdk}'\nusage: ${usage}\n`);
    process.exit(2);
}
const base = new URL(args.base);
if (base.protocol !== 'http:') {
    process.stderr.write(`--base must be an http:// URL, got '${args.base}'\n`);
    process.exit(2);
}
const baseUrl = base.origin; // no trailing slash
const agent = new http.Agent({ keepAlive: true, maxSockets: args.concurrency });

// Each factory returns [npm package name, async send function].
const factories = {
    async ses() {
        const { SESv2Client, SendEmailCommand } = await import('@aws-sdk/client-sesv2');
        const client = new SESv2Client({
            region: 'us-east-1',
            endpoint: baseUrl,
            credentials: {
                accessKeyId: 'AKIDEXAMPLE',
                secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
            },
            requestHandler: { httpAgent: agent },
            maxAttempts: 1,
        });
        const input = {
            FromEmailAddress: FROM,
            Destination: { ToAddresses: [TO] },
            Content: { Raw: { Data: new Uint8Array(MIME) } },
        };
        return [
            '@aws-sdk/client-sesv2',
            async () => {
                const out = await client.send(new SendEmailCommand(input));
                if (!out.MessageId) throw new Error('SES reply without MessageId');
            },
        ];
    },

    async sendgrid() {
        const { default: sgMail } = await import('@sendgrid/mail');
        sgMail.setApiKey('SG.x');
        sgMail.client.setDefaultRequest('baseUrl', baseUrl);
        sgMail.client.setDefaultRequest('httpAgent', agent);
        const msg = { to: TO, from: { email: FROM_ADDRESS, name: FROM_NAME }, subject: SUBJECT, text: TEXT };
        return [
            '@sendgrid/mail',
            async () => {
                const [response] = await sgMail.send(msg);
                if (response.statusCode !== 202) throw new Error(`SendGrid status ${response.statusCode}`);
            },
        ];
    },

    async postmark() {
        const postmark = await import('postmark');
        const client = new postmark.ServerClient('00000000-0000-0000-0000-000000000000', {
            requestHost: base.host,
            useHttps: false,
        });
        const msg = { From: FROM, To: TO, Subject: SUBJECT, TextBody: TEXT, MessageStream: 'outbound' };
        return [
            'postmark',
            async () => {
                const out = await client.sendEmail(msg);
                if (out.ErrorCode !== 0) throw new Error(`Postmark ErrorCode ${out.ErrorCode}: ${out.Message}`);
            },
        ];
    },

    async mailgun() {
        const { default: Mailgun } = await import('mailgun.js');
        const { default: FormData } = await import('form-data');
        const client = new Mailgun(FormData).client({ username: 'api', key: 'key-x', url: baseUrl });
        return [
            'mailgun.js',
            async () => {
                const out = await client.messages.create('mg.example.com', { to: TO, message: MIME });
                if (out.status !== 200 || !out.id) throw new Error(`Mailgun status ${out.status}: ${out.message}`);
            },
        ];
    },
};

const [client, send] = await factories[args.sdk]();
const result = await measure(args.messages, args.concurrency, send);
agent.destroy();
report(
    { client, provider: args.sdk, concurrency: args.concurrency, messages: args.messages },
    result
);
