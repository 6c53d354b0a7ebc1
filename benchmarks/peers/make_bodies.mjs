// Writes bodies/: one request body per provider, carrying the benchmark's 1 KiB message in the
// provider's documented send format, field for field what the official SDK sends (checked
// against captured SDK requests). wrk_post.lua replays them. Run `node make_bodies.mjs` after
// changing the message in common.mjs; the output is deterministic.
//
//   ses.json            POST /v2/email/outbound-emails          SESv2 SendEmail, Content.Raw.Data
//                                                               = base64 of the MIME
//   sendgrid.json       POST /v3/mail/send                      v3 Mail Send
//   postmark.json       POST /email                             single email
//   mailgun.multipart   POST /v3/mg.example.com/messages.mime   multipart/form-data: `to` field
//   mailgun.type                                                and the MIME as the `message`
//                                                               file part; .type holds the
//                                                               Content-Type with its boundary
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FROM, FROM_ADDRESS, FROM_NAME, TO, SUBJECT, TEXT, MIME } from './common.mjs';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bodies');
fs.mkdirSync(dir, { recursive: true });

const write = (name, data) => {
    fs.writeFileSync(path.join(dir, name), data);
    process.stdout.write(`${name}: ${Buffer.byteLength(data)} bytes\n`);
};

write(
    'ses.json',
    JSON.stringify({
        Content: { Raw: { Data: MIME.toString('base64') } },
        FromEmailAddress: FROM,
        Destination: { ToAddresses: [TO] },
    })
);

write(
    'sendgrid.json',
    JSON.stringify({
        from: { email: FROM_ADDRESS, name: FROM_NAME },
        subject: SUBJECT,
        personalizations: [{ to: [{ email: TO }] }],
        content: [{ value: TEXT, type: 'text/plain' }],
    })
);

write(
    'postmark.json',
    JSON.stringify({ From: FROM, To: TO, Subject: SUBJECT, TextBody: TEXT, MessageStream: 'outbound' })
);

// Same layout as the form-data package mailgun.js uses, with a fixed boundary.
const boundary = '--------------------------' + 'bench20261128'.padEnd(24, '0');
const multipart = Buffer.concat([
    Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="to"\r\n\r\n${TO}\r\n` +
            `--${boundary}\r\nContent-Disposition: form-data; name="message"; filename="MimeMessage"\r\n` +
            'Content-Type: application/octet-stream\r\n\r\n'
    ),
    MIME,
    Buffer.from(`\r\n--${boundary}--\r\n`),
]);
write('mailgun.multipart', multipart);
write('mailgun.type', `multipart/form-data; boundary=${boundary}\n`);
