// Signs requests with @smithy/signature-v4 (the signer of the AWS SDK for
// JavaScript) for tests/integration/sigv4_smithy_test.cpp.
//
// Input on stdin, one JSON object per line:
//   {"method","path","query":{key:[values]},"headers":{name:value},"body",
//    "region","service","epoch","access_key","secret","token"}
// Output, one line per request: the Authorization header value.
// Exits 77 when the package is not installed (`npm ci` in this folder).
"use strict";

let SignatureV4, Sha256;
try {
    ({ SignatureV4 } = require("@smithy/signature-v4"));
    ({ Sha256 } = require("@aws-crypto/sha256-js"));
} catch (e) {
    process.stderr.write(`sigv4_smithy: ${e.message}\n`);
    process.exit(77);
}

async function main() {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    const lines = Buffer.concat(chunks).toString("utf8").split("\n").filter((l) => l.length > 0);
    const out = [];
    for (const line of lines) {
        const r = JSON.parse(line);
        const credentials = { accessKeyId: r.access_key, secretAccessKey: r.secret };
        if (r.token) credentials.sessionToken = r.token;
        // applyChecksum: false, so that no x-amz-content-sha256 header is added;
        // the C++ side signs exactly the headers it is given.
        const signer = new SignatureV4({
            credentials, region: r.region, service: r.service, sha256: Sha256,
            applyChecksum: false, uriEscapePath: true,
        });
        const signed = await signer.sign({
            method: r.method, protocol: "https:", hostname: r.headers.host, path: r.path,
            query: r.query, headers: r.headers, body: r.body,
        }, { signingDate: new Date(r.epoch * 1000) });
        out.push(signed.headers.authorization);
    }
    process.stdout.write(out.join("\n") + "\n");
}

main().catch((e) => {
    process.stderr.write(`sigv4_smithy: ${e.stack}\n`);
    process.exit(1);
});
